"""Publishing to the Hub, against the local Hub-protocol server, with the unmodified clients."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from space.inference import DefectClassifier, read_image
from tests.hub_server import Fault
from training.publish import PublishError, push_model


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


def test_timeout_mid_commit_is_reported_and_commits_nothing(trained, hub, hf_token):
    out, _ = trained
    hub.faults.append(Fault("commit", stall=8.0, status=500, times=99))
    script = (
        "import sys\n"
        "from training.publish import PublishError, push_model\n"
        "try:\n    push_model(sys.argv[1], 'tester/stalled')\n"
        "except PublishError as err:\n    print(err)\n    sys.exit(3)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(out / "model")], capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"},
    )
    hub.faults.clear()
    assert run.returncode == 3, run.stderr[-2000:]
    assert "nothing was committed" in run.stdout
    assert "model.weights.h5" not in hub.repos[("model", "tester/stalled")].head["files"]


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
