"""What the Hub's conventions ask of the pushed repos, against the local Hub stand-in with the
unmodified clients: datasets of every layout that load back, cards that say what the data and
model are and keep edits made on the Hub, logs, widget examples, lean downloads, Space examples."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import DatasetCard, HfApi, ModelCard

from defect_inference import DefectClassifier, read_image, resolve_model_dir
from tests.test_data import _disc_mask, _mvtec_category, _photo
from training.data import load_splits, read_mask
from training.publish import PublishError, push_dataset, push_model, push_space

SPACE_DIR = Path(__file__).resolve().parents[1] / "space"


def _dagm_development(root):
    for c in (1, 2):
        for i in range(1, 4):
            _photo(root / f"Class{c}" / f"{i:04d}.png", seed=c * 10 + i)
            _photo(root / f"Class{c}_def" / f"{i}.png", seed=c * 20 + i)
        (root / f"Class{c}_def" / "labels.txt").write_text("1\t20\t10\t0.5\t60\t40\n2\t10\t5\t1.0\t30\t30\n3\t8\t4\t0\t32\t32\n")
    return root


def _dagm_competition(root):
    for part in ("Train", "Test"):
        folder = root / "Class1" / part
        lines = []
        for n in range(1, 5):
            _photo(folder / f"{n:04d}.PNG", seed=n + (10 if part == "Test" else 0))
            defective = n % 2 == 0
            if defective:
                _disc_mask(folder / "Label" / f"{n:04d}_label.PNG", centre=(30 + 5 * n, 40))
            lines.append(f"{n}\t{int(defective)}\t{n:04d}.PNG\t0\t{f'{n:04d}_label.PNG' if defective else '0'}")
        (folder / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")
    return root


def _imagefolder_with_masks(root):
    for split in ("train", "test"):
        for i in range(3):
            _photo(root / split / "no_defects" / f"good_{i}.jpg", seed=i)
            _photo(root / split / "defects" / f"bad_{i}.jpg", seed=10 + i)
            _disc_mask(root / split / "defects" / f"bad_{i}.png", centre=(20 + 10 * i, 30))
        rows = [f"{label}/{stem}_{i}.jpg,part{i}" for label, stem in (("no_defects", "good"), ("defects", "bad")) for i in range(3)]
        (root / split / "metadata.csv").write_text("file_name,group\n" + "\n".join(rows) + "\n")
    return root


LAYOUTS = {
    "dagm-development": _dagm_development, "dagm-competition": _dagm_competition,
    "mvtec-ad": lambda root: _mvtec_category(root / "tile").parent, "imagefolder": _imagefolder_with_masks,
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_pushes_as_a_dataset_that_loads_back(layout, hub, hf_token, tmp_path):
    import datasets

    data = LAYOUTS[layout](tmp_path / layout)
    repo = f"tester/layout-{layout}"
    push_dataset(data, repo, license="cc-by-4.0")
    local = load_splits(data)
    remote = load_splits(repo)
    loaded = datasets.load_dataset(repo)
    assert set(remote) == set(local) == set(loaded)
    for split, samples in local.items():
        assert loaded[split].features["label"].names == ["defects", "no_defects"]
        assert [(s.defective, s.texture, s.defect, s.ellipse, s.group) for s in remote[split]] == [
            (s.defective, s.texture, s.defect, s.ellipse, s.group) for s in samples
        ]
        for mine, theirs in zip(samples, remote[split]):
            np.testing.assert_array_equal(read_image(theirs.image), read_image(mine.image))
            assert (mine.mask is None) == (theirs.mask is None)
            if mine.mask is not None:
                np.testing.assert_array_equal(read_mask(theirs.mask), read_mask(mine.mask))
    card = DatasetCard(hub.files("dataset", repo)["README.md"].decode())
    assert card.data.license == "cc-by-4.0" and "synthetic" not in card.data.tags and "Synthetic" not in card.text
    assert "defect-classifier" in card.text and layout.split("-")[0].upper() in card.text.upper()
    if any(s.mask is not None for split in local.values() for s in split):
        assert "`mask`" in card.text and "mask" in loaded["train"].column_names
    assert any(name.startswith("examples/defects_") for name in hub.files("dataset", repo))


def test_real_data_without_a_licence_is_refused_before_any_upload(hub, hf_token, tmp_path):
    data = _dagm_development(tmp_path / "dagm")
    with pytest.raises(PublishError, match="pass --license .*nothing was uploaded"):
        push_dataset(data, "tester/no-licence")
    assert ("dataset", "tester/no-licence") not in hub.repos


def test_the_generated_dataset_card_says_synthetic_and_how_it_was_made(tiny_data, hub, hf_token):
    push_dataset(tiny_data, "tester/generated-card")
    card = DatasetCard(hub.files("dataset", "tester/generated-card")["README.md"].decode())
    assert card.data.license == "apache-2.0" and "synthetic" in card.data.tags
    data = card.data.to_dict()
    assert data["task_categories"] == ["image-classification"] and data["size_categories"] == ["n<1K"]
    assert "dataset_info" in data or "configs" in data  # what push_to_hub wrote is kept
    assert "defect-classifier generate" in card.text and "seed=1" in card.text and str(tiny_data) not in card.text
    assert "| train | 60 | 60 |" in card.text and "| test | 20 | 20 |" in card.text
    from training.data import describe_source

    # The record travels with the data: a model trained from the Hub copy knows it is generated.
    assert describe_source("tester/generated-card") == {"layout": "hub-dataset", "generated": True, "made_by": "defect-classifier generate"}
    assert describe_source("tester/no-such-dataset")["generated"] is False


def test_model_card_widget_metric_names_threshold_and_licence(trained, tiny_data, hub, hf_token):
    out, metrics = trained
    push_dataset(tiny_data, "tester/widget-data")
    push_model(out / "model", "tester/widget-model", dataset_repo="tester/widget-data")
    data = ModelCard(hub.files("model", "tester/widget-model")["README.md"].decode()).data.to_dict()
    examples = sorted(n for n in hub.files("dataset", "tester/widget-data") if n.startswith("examples/"))
    assert [w["src"] for w in data["widget"]] == [f"{hub.url}/datasets/tester/widget-data/resolve/main/{n}" for n in examples]
    import httpx  # the widget's URLs resolve on the Hub

    assert httpx.get(data["widget"][0]["src"], follow_redirects=True).content == hub.files("dataset", "tester/widget-data")[examples[0]]
    results = {m["type"]: m for m in data["model-index"][0]["results"][0]["metrics"]}
    assert results["recall"]["name"] == "Recall (defects)" and results["recall"]["args"] == {"threshold": round(metrics["threshold"], 4)}
    assert results["roc_auc"]["name"] == "ROC AUC" and "args" not in results["roc_auc"]
    assert data["license"] == "apache-2.0"  # trained on generated data
    push_model(out / "model", "tester/licensed-model", license="cc-by-nc-4.0")
    assert ModelCard(hub.files("model", "tester/licensed-model")["README.md"].decode()).data.license == "cc-by-nc-4.0"


def test_a_second_push_keeps_what_was_edited_on_the_hub(trained, hub, hf_token, tmp_path):
    out, _ = trained
    push_model(out / "model", "tester/edited")
    card = ModelCard(hub.files("model", "tester/edited")["README.md"].decode())
    card.data.language = "en"
    card.data.tags = card.data.tags + ["line-3"]
    card.text = "\n## Our line\n\nUsed on line 3 since May.\n" + card.text + "\n## Contact\n\nqa@example.com\n"
    HfApi().upload_file(path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id="tester/edited")
    folder = tmp_path / "model"
    shutil.copytree(out / "model", folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["accuracy"] = 0.123456
    (folder / "metrics.json").write_text(json.dumps(metrics))
    push_model(folder, "tester/edited")
    again = ModelCard(hub.files("model", "tester/edited")["README.md"].decode())
    assert again.data.language == "en" and "line-3" in again.data.tags and "keras" in again.data.tags
    assert again.text.index("Used on line 3 since May.") < again.text.index("## How to use") < again.text.index("qa@example.com")
    assert again.text.count("## How to use") == 1 and "| accuracy | 0.1235 |" in again.text
    accuracy = {m["type"]: m["value"] for m in again.data.to_dict()["model-index"][0]["results"][0]["metrics"]}["accuracy"]
    assert accuracy == pytest.approx(0.1235)


def test_logs_and_history_are_pushed_without_the_host_name(trained, hub, hf_token):
    out, _ = trained
    push_model(out / "model", "tester/logged")
    files = hub.files("model", "tester/logged")
    events = sorted(n for n in files if n.startswith("logs/") and ".tfevents." in n)
    local = sorted((out / "logs").rglob("events.out.tfevents.*"))
    assert len(events) == len(local) > 0 and {n.split("/")[1] for n in events} == {p.parent.name for p in local}
    assert all(re.fullmatch(r"logs/\w+/events\.out\.tfevents\.\d+\.defect-classifier\.\d+\.v2", n) for n in events), events
    assert not any(socket.gethostname() in n for n in files)
    assert sorted(files[n] for n in events) == sorted(p.read_bytes() for p in local)
    assert json.loads(files["logs/history.json"]) == json.loads((out / "history.json").read_text())


def test_loading_from_the_hub_fetches_only_what_loading_needs(trained, hub, hf_token):
    out, _ = trained
    push_model(out / "model", "tester/lean")
    folder = resolve_model_dir("tester/lean")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "defect_config.json", "metadata.json", "model.weights.h5"]
    assert list(DefectClassifier(folder).class_names) == ["defects", "no_defects"]
    assert len(hub.files("model", "tester/lean")) > 15


def test_the_space_bundles_examples_that_fit_its_model(trained, tiny_data, hub, hf_token, tmp_path):
    out, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(out / "model", folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["data"] = {"layout": "dagm-competition", "generated": False}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    push_model(out / "model", "tester/generated-model")
    push_space(SPACE_DIR, "tester/real-space", "tester/generated-model")
    assert any(n.startswith("examples/") for n in hub.files("space", "tester/real-space"))
    push_model(folder, "tester/real-model", license="cc-by-4.0")
    card = ModelCard(hub.files("model", "tester/real-model")["README.md"].decode())
    assert "synthetic" not in card.data.tags and "radial streaks" not in card.text and "dagm" in card.data.tags
    push_space(SPACE_DIR, "tester/real-space", "tester/real-model")  # the same Space, now serving the other model
    assert not any(n.startswith("examples/") for n in hub.files("space", "tester/real-space"))
    data = _dagm_competition(tmp_path / "dagm")
    push_space(SPACE_DIR, "tester/real-space-examples", "tester/real-model", examples_from=data)
    shown = sorted(n for n in hub.files("space", "tester/real-space-examples") if n.startswith("examples/"))
    assert shown == ["examples/defects_Class1.png", "examples/no_defects_Class1.png"]


def test_a_push_sends_this_versions_handler_and_inference_core(trained, hub, hf_token, tmp_path):
    out, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(out / "model", folder)
    (folder / "handler.py").write_text("# the handler of an older version\n")
    (folder / "defect_inference" / "operating_point.py").unlink()
    push_model(folder, "tester/refreshed")
    files = hub.files("model", "tester/refreshed")
    root = Path(__file__).resolve().parents[1]
    assert files["handler.py"] == (root / "training" / "model_repo" / "handler.py").read_bytes()
    assert files["defect_inference/operating_point.py"] == (root / "defect_inference" / "operating_point.py").read_bytes()
    assert (folder / "handler.py").read_text() == "# the handler of an older version\n"  # the local folder is left as it was


def test_a_second_push_removes_what_the_first_left_and_nothing_else(trained, hub, hf_token, tmp_path):
    out, _ = trained
    push_model(out / "model", "tester/stale")
    HfApi().upload_file(path_or_fileobj=b"ours", path_in_repo="NOTES.md", repo_id="tester/stale")
    folder = tmp_path / "run" / "model"
    shutil.copytree(out / "model", folder)
    (folder / "worst_misclassified.png").unlink()  # a run with no mistakes has none
    push_model(folder, "tester/stale")  # a run folder without logs: the old logs go too
    files = hub.files("model", "tester/stale")
    assert "worst_misclassified.png" not in files and not any(n.startswith("logs/") for n in files)
    assert files["NOTES.md"] == b"ours" and "model.weights.h5" in files
