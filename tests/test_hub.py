"""Publishing to the Hub, against the local Hub-protocol server, with the unmodified clients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from defect_inference import DefectClassifier, read_image
from tests.hub_server import Fault
from training.publish import PublishError, push_model

ROOT = Path(__file__).resolve().parents[1]
SPACE_DIR = ROOT / "space"


def _images(tiny_data, n=3):
    files = sorted((tiny_data / "test" / "defects").glob("*.png"))[:n] + sorted((tiny_data / "test" / "no_defects").glob("*.png"))[:n]
    return [read_image(f) for f in files]


def test_push_then_load_with_keras_hf_gives_the_same_predictions(trained, tiny_data, hub, hf_token):
    out, _ = trained
    url = push_model(out / "model", "tester/surface-defects")
    assert url.startswith(hub.url) and "/commit/" in url
    files = hub.files("model", "tester/surface-defects")
    for name in ("config.json", "metadata.json", "model.weights.h5", "defect_config.json"):
        assert name in files
    assert hf_token not in json.dumps({k: v.decode("latin-1") for k, v in files.items()})
    images = _images(tiny_data)
    local = DefectClassifier(out / "model").predict(images)
    remote = keras.saving.load_model("hf://tester/surface-defects")
    p = remote.predict(np.stack(images).astype(np.float32), verbose=0).reshape(-1)
    np.testing.assert_allclose(p, [r.p_defects for r in local], atol=1e-5)
    via_id = DefectClassifier.from_pretrained("tester/surface-defects").predict(images)
    np.testing.assert_allclose([r.p_defects for r in via_id], [r.p_defects for r in local], atol=1e-6)


def test_second_push_of_the_same_folder_is_a_no_op(trained, hub, hf_token):
    out, _ = trained
    first = push_model(out / "model", "tester/twice")
    commits = len(hub.repos[("model", "tester/twice")].commits)
    second = push_model(out / "model", "tester/twice")
    assert len(hub.repos[("model", "tester/twice")].commits) == commits
    assert first.rsplit("/", 1)[1] == second.rsplit("/", 1)[1]


def test_push_to_a_branch(trained, hub, hf_token):
    out, _ = trained
    push_model(out / "model", "tester/branched", revision="candidate")
    repo = hub.repos[("model", "tester/branched")]
    assert "model.weights.h5" in repo.at("candidate")["files"]
    assert "model.weights.h5" not in repo.at("main")["files"]


@pytest.mark.parametrize(
    "fault, message",
    [
        (Fault("commit", status=500, times=99), "Hub failed \\(500\\)"),
        (Fault("create", status=401, times=99), "refused the token \\(401\\)"),
        (Fault("commit", status=404, times=99), "not found"),
    ],
)
def test_server_faults_give_a_clear_error_and_no_partial_commit(trained, hub, hf_token, fault, message):
    out, _ = trained
    repo_id = f"tester/fault-{fault.on}-{fault.status}"
    hub.faults.append(fault)
    with pytest.raises(PublishError, match=message):
        push_model(out / "model", repo_id)
    repo = hub.repos.get(("model", repo_id))
    assert repo is None or "model.weights.h5" not in repo.head["files"]
    hub.faults.clear()


def _push_in_a_process(model_dir, repo_id: str, **env) -> subprocess.CompletedProcess:
    """push_model in a fresh process (so a stalled push cannot hang the tests); exit 3 and the
    message on stdout for a PublishError."""
    script = (
        "import sys\n"
        "from training.publish import PublishError, push_model\n"
        "try:\n    push_model(sys.argv[1], sys.argv[2])\n"
        "except PublishError as err:\n    print(err)\n    sys.exit(3)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(model_dir), repo_id], capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, **env},
    )


def test_timeout_mid_commit_is_reported_and_commits_nothing(trained, hub, hf_token):
    out, _ = trained
    hub.faults.append(Fault("commit", stall=8.0, status=500, times=99))
    run = _push_in_a_process(out / "model", "tester/stalled", HF_HUB_ETAG_TIMEOUT="2", HF_HUB_DOWNLOAD_TIMEOUT="2")
    hub.faults.clear()
    assert run.returncode == 3, run.stderr[-2000:]
    assert "nothing was committed" in run.stdout
    assert "model.weights.h5" not in hub.repos[("model", "tester/stalled")].head["files"]


def test_a_stalled_hub_is_given_up_with_a_clear_message(trained, hub, hf_token):
    """A Hub that stops answering mid-commit (no error, no reply) ends the push after the timeout."""
    out, _ = trained
    hub.faults.append(Fault("commit", stall=60.0, times=99))
    run = _push_in_a_process(out / "model", "tester/silent", DEFECT_HUB_TIMEOUT="2")
    hub.faults.clear()
    assert run.returncode == 3, run.stderr[-2000:]
    assert "did not answer for 2 s" in run.stdout and "nothing was committed" in run.stdout
    assert "model.weights.h5" not in hub.repos[("model", "tester/silent")].head["files"]


def test_only_model_files_are_published_without_local_paths_or_local_changes(trained, hub, hf_token, tmp_path):
    import shutil

    out, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(out / "model", folder)
    (folder / ".env").write_text("HF_TOKEN=hf_secret\n")
    (folder / "notes.txt").write_text("private notes")
    card_before = (folder / "README.md").read_bytes()
    push_model(folder, "tester/clean", dataset_repo="tester/surfaces-data")
    files = hub.files("model", "tester/clean")
    assert ".env" not in files and "notes.txt" not in files
    assert {"model.weights.h5", "defect_config.json", "README.md", "handler.py", "defect_inference/classifier.py"} <= set(files)
    settings = json.loads(files["defect_config.json"])["training_config"]
    assert settings["data"] == "tester/surfaces-data" and settings["out"] == out.name
    assert str(tmp_path) not in files["README.md"].decode() and str(out) not in files["defect_config.json"].decode()
    assert (folder / "README.md").read_bytes() == card_before  # the local folder is not rewritten


def test_a_dataset_push_that_fails_halfway_says_what_is_published(tiny_data, hub, hf_token):
    from training.publish import push_dataset

    hub.faults.append(Fault("commit", status=500, skip=1))
    with pytest.raises(PublishError) as err:
        push_dataset(tiny_data, "tester/half")
    hub.faults.clear()
    assert "data files ARE published" in str(err.value) and "nothing was committed" not in str(err.value)
    assert any(name.endswith(".parquet") for name in hub.files("dataset", "tester/half"))


def test_missing_token_and_incomplete_folder_are_refused_before_upload(trained, hub, tmp_path, monkeypatch):
    out, _ = trained
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PublishError, match="no Hugging Face token"):
        push_model(out / "model", "tester/no-token")
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(PublishError, match="missing metadata.json, model.weights.h5, defect_config.json"):
        push_model(broken, "tester/broken")
    assert ("model", "tester/no-token") not in hub.repos and ("model", "tester/broken") not in hub.repos


def test_model_card_yaml_parses_and_holds_the_metrics(trained, hub, hf_token):
    from huggingface_hub import ModelCard

    out, metrics = trained
    push_model(out / "model", "tester/carded", dataset_repo="tester/surfaces")
    card = ModelCard(hub.files("model", "tester/carded")["README.md"].decode())
    data = card.data.to_dict()
    assert data["library_name"] == "keras" and data["pipeline_tag"] == "image-classification"
    assert data["datasets"] == ["tester/surfaces"] and data["license"]
    results = {r["type"]: r["value"] for r in data["model-index"][0]["results"][0]["metrics"]}
    assert results["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-4)
    assert results["recall"] == pytest.approx(metrics["recall"], abs=1e-4)
    assert 'keras.saving.load_model("hf://tester/carded")' in card.text
    assert f"{metrics['threshold']:.4f}"[:5] in card.text
    assert "from_pretrained_keras(\"tester/carded\")" in card.text and "api_name=\"/predict\"" in card.text
    assert "roc_curve.png" in card.text and "roc_curve.png" in hub.files("model", "tester/carded")


def test_dataset_push_and_load_dataset_round_trip(tiny_data, hub, hf_token):
    import datasets

    from training.publish import push_dataset

    push_dataset(tiny_data, "tester/surfaces")
    loaded = datasets.load_dataset("tester/surfaces")
    local = datasets.load_dataset("imagefolder", data_dir=str(tiny_data))
    assert set(loaded) == {"train", "test"}
    for split in ("train", "test"):
        assert loaded[split].num_rows == local[split].num_rows
        assert loaded[split].features["label"].names == ["defects", "no_defects"]
        names = loaded[split].features["label"].names
        assert sorted(names[i] for i in loaded[split]["label"]) == sorted(local[split]["label"])
    assert {"image", "texture", "defect", "cx", "cy", "a", "b", "angle"} <= set(loaded["train"].column_names)
    from training.data import load_splits

    samples = load_splits(loaded)["test"]
    assert {s.defect for s in samples if s.defective} and all(s.defect is None for s in samples if not s.defective)
    by_id = load_splits("tester/surfaces")
    for split, samples in load_splits(tiny_data).items():
        remote = by_id[split]
        assert [(s.defective, s.texture, s.defect) for s in remote] == [(s.defective, s.texture, s.defect) for s in samples]
        assert [s.ellipse for s in remote] == [s.ellipse for s in samples]
        np.testing.assert_array_equal(np.asarray(remote[0].image.convert("L")), np.asarray(read_image(samples[0].image))[..., 0])


def test_space_shows_the_dataset_repos_examples_and_falls_back_to_its_own(tiny_data, hub, hf_token):
    from space import app
    from training.publish import push_dataset

    push_dataset(tiny_data, "tester/surfaces-examples")
    pushed = {k: v for k, v in hub.files("dataset", "tester/surfaces-examples").items() if k.startswith("examples/")}
    # One defective and one defect-free image per texture, the defective one with the largest ellipse.
    assert sorted(pushed) == [f"examples/{c}_{t}.png" for c in ("defects", "no_defects") for t in ("brushed", "clouds")]
    files, source = app.example_files("tester/surfaces-examples")
    assert source == "dataset tester/surfaces-examples"
    assert {f"examples/{p.split('/')[-1]}": open(p, "rb").read() for p in files} == pushed
    bundled, _ = app.example_files(None)
    assert app.example_files("tester/no-such-dataset") == (bundled, "bundled examples")
    hub.faults.append(Fault("info", status=500, times=99))
    try:
        assert app.example_files("tester/surfaces-examples-2")[1] == "bundled examples"
    finally:
        hub.faults.clear()


def test_push_space_uploads_the_folder_and_names_the_model(trained, hub, hf_token, tmp_path):
    from huggingface_hub import RepoCard

    from training.publish import push_space

    out, _ = trained
    push_model(out / "model", "tester/space-model")  # trained on generated data: the bundled examples fit it
    url = push_space(SPACE_DIR, "tester/defect-space", "tester/space-model", dataset_repo="tester/surfaces")
    assert "/spaces/tester/defect-space/commit/" in url
    files = hub.files("space", "tester/defect-space")
    assert {"app.py", "defect_inference/__init__.py", "defect_inference/classifier.py", "requirements.txt", "README.md"} <= set(files)
    assert not any(name.startswith("examples/") is False and name.endswith(".pyc") for name in files)
    assert any(name.startswith("examples/") for name in files)
    readme = tmp_path / "README.md"
    readme.write_bytes(files["README.md"])
    data = RepoCard.load(readme).data.to_dict()
    assert data["sdk"] == "gradio" and data["models"] == ["tester/space-model"] and data["app_file"] == "app.py"
    assert data["datasets"] == ["tester/surfaces"] and data["python_version"] == "3.11"
    assert hub.repos[("space", "tester/defect-space")].variables == {"MODEL_ID": "tester/space-model"}
    assert sorted(n for n in files if n.startswith("examples/")) == sorted(f"examples/{p.name}" for p in (SPACE_DIR / "examples").glob("*.png"))


def test_train_with_push_checks_the_token_before_training(tiny_data, hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_for_this_test_only")
    run = subprocess.run(
        [sys.executable, "-m", "training", "train", "--data", str(tiny_data), "--out", str(tmp_path / "o"),
         "--push-to-hub", "tester/never"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 2 and "refused the token (401)" in run.stderr
    assert not (tmp_path / "o").exists()
    assert "hf_wrong_token_for_this_test_only" not in run.stderr + run.stdout


LEGACY = ROOT / ".venv-legacy"


def test_legacy_from_pretrained_keras_gives_the_same_predictions(trained, tiny_data, hub, hf_token, tmp_path):
    import os

    assert (LEGACY / "huggingface_hub").is_dir(), "run `make legacy` to install huggingface_hub<1.0"
    out, _ = trained
    push_model(out / "model", "tester/legacy")
    images = np.stack(_images(tiny_data)).astype(np.float32)
    np.save(tmp_path / "x.npy", images)
    script = (
        "import sys, numpy as np\n"
        "import huggingface_hub\n"
        "assert huggingface_hub.__version__.startswith('0.'), huggingface_hub.__version__\n"
        "from huggingface_hub import from_pretrained_keras\n"
        "model = from_pretrained_keras('tester/legacy')\n"
        "np.save(sys.argv[2], model.predict(np.load(sys.argv[1]), verbose=0))\n"
        "print(type(model).__module__)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{LEGACY}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path / "p.npy")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().startswith("tf_keras")
    legacy = np.load(tmp_path / "p.npy").reshape(-1)
    local = [r.p_defects for r in DefectClassifier(out / "model").predict(list(images.astype(np.uint8)))]
    np.testing.assert_allclose(legacy, local, atol=1e-5)


def test_export_rewrites_an_old_folder_that_push_refused(trained, tmp_path, tiny_data):
    import shutil

    from training.publish import check_model_folder

    out, _ = trained
    old = tmp_path / "old_model"
    shutil.copytree(out / "model", old)
    for name in ("saved_model.pb", "keras_metadata.pb", "handler.py"):
        (old / name).unlink()
    with pytest.raises(PublishError, match="missing handler.py, saved_model.pb, keras_metadata.pb"):
        check_model_folder(old)
    run = subprocess.run([sys.executable, "-m", "training", "export", "--model", str(old)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    check_model_folder(old)
    images = _images(tiny_data, 2)
    before = [r.p_defects for r in DefectClassifier(out / "model").predict(images)]
    after = [r.p_defects for r in DefectClassifier(old).predict(images)]
    np.testing.assert_allclose(before, after, atol=1e-6)
    assert json.loads((old / "metrics.json").read_text()) == json.loads((out / "model" / "metrics.json").read_text())
