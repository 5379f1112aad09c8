"""The ONNX export and the ONNX Runtime backend: the same answers, only when asked for, without TensorFlow."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from defect_inference import DefectClassifier, ModelFolderError, load_model_config, read_image
from defect_inference.model_folder import Preprocessing
from defect_inference.onnx_backend import ONNX_FILE, ONNX_TOLERANCE, OnnxRunner
from defect_inference.preprocessing import resized_to
from training.cli import main
from training.config import COMPACT_LAYERS
from training.publish import PublishError, push_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def onnx_folder(trained, tmp_path_factory) -> Path:
    """A copy of the session model with `model.onnx`, written by the CLI."""
    out, _ = trained
    folder = tmp_path_factory.mktemp("onnx") / "model"
    shutil.copytree(out / "model", folder)
    assert main(["export", "--model", str(folder), "--format", "onnx"]) == 0
    return folder


def _images(tiny_data) -> list[np.ndarray]:
    files = sorted((tiny_data / "test" / "defects").glob("*.png"))[:4] + sorted((tiny_data / "test" / "no_defects").glob("*.png"))[:4]
    images = [read_image(f) for f in files]
    # Non-square and larger than the working size: the resize outside the network is compared too;
    # the last two are judged in tiles, the strip scaled up to the tile's height first.
    strip = np.ascontiguousarray(np.tile(images[2][:300], (1, 3, 1)))
    return images + [np.ascontiguousarray(images[0][:300, :470]), np.kron(images[1], np.ones((2, 3, 1), np.uint8)), strip]


def test_onnx_runtime_answers_as_the_keras_model(onnx_folder, tiny_data):
    images = _images(tiny_data)
    keras_answers = DefectClassifier(onnx_folder, backend="keras").predict(images)
    onnx_answers = DefectClassifier(onnx_folder, backend="onnx").predict(images)
    np.testing.assert_allclose([r.p_defects for r in onnx_answers], [r.p_defects for r in keras_answers], atol=ONNX_TOLERANCE)
    for ours, theirs in zip(onnx_answers, keras_answers):
        np.testing.assert_allclose(ours.defect_map, theirs.defect_map, atol=ONNX_TOLERANCE)
    assert [r.label for r in onnx_answers] == [r.label for r in keras_answers]
    assert {r.label for r in keras_answers} == {"defects", "no_defects"}  # both verdicts are compared
    assert [r.box for r in onnx_answers] == [r.box for r in keras_answers]


def _metadata(folder: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(folder / ONNX_FILE)).metadata_props}


def test_the_onnx_file_carries_the_decision_and_takes_images_at_the_working_size(onnx_folder):
    config = load_model_config(onnx_folder)
    metadata = _metadata(onnx_folder)
    assert json.loads(metadata["class_names"]) == list(config.class_names)
    assert float(metadata["threshold"]) == config.threshold
    assert int(metadata["image_size"]) == config.image_size and metadata["output"] == "a single sigmoid unit: P(defects)"
    graph = onnx.load(str(onnx_folder / ONNX_FILE)).graph
    # No resize inside: tf2onnx would make the "area" resize a nearest-neighbour one.
    assert graph.input[0].name == "image" and "Resize" not in {n.op_type for n in graph.node}
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:] == [config.image_size, config.image_size, 3]


def test_each_instance_normalization_is_one_onnx_op(onnx_folder):
    """tf2onnx's dozen ops per GroupNormalization are rewritten (training/onnx_graph.py): one per
    normalization layer and view, and none of its two-pass ReduceMeans left."""
    training = load_model_config(onnx_folder).training_config
    nodes = onnx.load(str(onnx_folder / ONNX_FILE)).graph.node
    assert Counter(n.op_type for n in nodes)["InstanceNormalization"] == COMPACT_LAYERS * training["test_time_views"]
    two_pass_means = [n for n in nodes if n.op_type == "ReduceMean" and any(list(a.ints) == [1, 2, 4] for a in n.attribute)]
    assert not two_pass_means


def test_a_folder_with_an_onnx_file_runs_keras_unless_onnx_is_asked_for(onnx_folder, monkeypatch):
    monkeypatch.delenv("DEFECT_BACKEND", raising=False)
    keras_classifier = DefectClassifier(onnx_folder)
    assert keras_classifier.network is not None and not isinstance(keras_classifier._run, OnnxRunner)
    monkeypatch.setenv("DEFECT_BACKEND", "onnx")  # how the Space and the handler are told
    classifier = DefectClassifier(onnx_folder)
    assert classifier.model is None and isinstance(classifier._run, OnnxRunner)
    monkeypatch.setenv("DEFECT_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="DEFECT_BACKEND must be one of keras, onnx, got 'tensorrt'"):
        DefectClassifier(onnx_folder)


def test_the_onnx_backend_without_an_onnx_file_names_the_export(trained):
    out, _ = trained
    with pytest.raises(ModelFolderError, match="no model.onnx.*`defect-classifier export --model .* --format onnx`"):
        DefectClassifier(out / "model", backend="onnx")


def test_a_stale_onnx_file_is_refused_and_rethreshold_keeps_it_current(onnx_folder, tiny_data, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(onnx_folder, folder)
    config = load_model_config(folder)
    replace(config, threshold=0.25).save(folder)  # as a hand edit, or a tool that forgot the ONNX file
    with pytest.raises(ModelFolderError, match=r"threshold: .* there, '0.25' here.*export it again"):
        DefectClassifier(folder, backend="onnx")
    replace(config, threshold=0.25, training_config={**config.training_config, "seed": 99}).save(folder)
    with pytest.raises(ModelFolderError, match=r"training_config: '[0-9a-f]+' there, '[0-9a-f]+' here"):
        DefectClassifier(folder, backend="onnx")  # another run's file, however alike its threshold
    config.save(folder)
    assert main(["rethreshold", "--model", str(folder), "--data", str(tiny_data), "--operating-point", "recall=0.9"]) == 0
    decided = load_model_config(folder).threshold
    assert decided != config.threshold and float(_metadata(folder)["threshold"]) == decided
    DefectClassifier(folder, backend="onnx")  # current again


def test_rethreshold_leaves_an_onnx_file_of_another_model_to_be_refused(onnx_folder, tiny_data, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(onnx_folder, folder)
    config = load_model_config(folder)
    replace(config, training_config={**config.training_config, "seed": 99}).save(folder)
    stamp = _metadata(folder)
    assert main(["rethreshold", "--model", str(folder), "--data", str(tiny_data), "--operating-point", "recall=0.9"]) == 0
    assert _metadata(folder) == stamp
    with pytest.raises(ModelFolderError, match="training_config"):
        DefectClassifier(folder, backend="onnx")


def test_an_export_that_does_not_match_the_keras_model_is_not_written(trained, tmp_path, monkeypatch, capsys):
    out, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(out / "model", folder)
    monkeypatch.setattr("training.export.ONNX_TOLERANCE", 0.0)  # no conversion is that exact
    assert main(["export", "--model", str(folder), "--format", "onnx"]) == 2
    assert "differs from the Keras model by more than 0" in capsys.readouterr().err
    assert not (folder / ONNX_FILE).exists()


def test_predict_and_evaluate_take_the_onnx_backend(onnx_folder, tiny_data, tmp_path):
    rows = {}
    for backend in ("keras", "onnx"):
        csv_path = tmp_path / f"{backend}.csv"
        assert main(["predict", "--model", str(onnx_folder), "--backend", backend, "--out", str(csv_path), str(tiny_data / "test")]) == 0
        rows[backend] = list(csv.DictReader(csv_path.open()))
    assert len(rows["onnx"]) == len(rows["keras"]) > 0
    for ours, theirs in zip(rows["onnx"], rows["keras"]):
        assert ours["label"] == theirs["label"] and abs(float(ours["p_defects"]) - float(theirs["p_defects"])) <= ONNX_TOLERANCE
    assert main(["evaluate", "--model", str(onnx_folder), "--backend", "onnx", "--data", str(tiny_data), "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n_test"] == len(rows["onnx"])


def test_the_onnx_backend_runs_where_tensorflow_is_not_installed(onnx_folder, tiny_data):
    image = tiny_data / "test" / "defects" / sorted(p.name for p in (tiny_data / "test" / "defects").glob("*.png"))[0]
    expected = DefectClassifier(onnx_folder, backend="keras").predict([read_image(image)])[0]
    script = (
        "import sys, json\n"
        "sys.modules['tensorflow'] = sys.modules['keras'] = sys.modules['tf_keras'] = None  # import fails, as uninstalled\n"
        "from defect_inference import DefectClassifier, read_image\n"
        f"r = DefectClassifier({str(onnx_folder)!r}, backend='onnx').predict([read_image({str(image)!r})])[0]\n"
        "print(json.dumps([r.p_defects, r.label]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    p, label = json.loads(run.stdout.strip().splitlines()[-1])
    assert abs(p - expected.p_defects) <= ONNX_TOLERANCE and label == expected.label


@pytest.mark.parametrize("method", ["area", "bilinear"])
@pytest.mark.parametrize(
    "shape, target",
    [((300, 470, 3), (512, 512)), ((1100, 900, 3), (512, 512)), ((37, 700), (512, 512)), ((512, 511, 3), (512, 512)),
     ((5, 5, 3), (512, 512)), ((1500, 2000, 3), (1128, 1504)), ((300, 470), (512, 800))],  # the last two: a tiled frame's scale
)
def test_the_resize_without_tensorflow_equals_tensorflows(shape, target, method):
    image = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    steps = Preprocessing(resize=method)
    ours = resized_to(image, *target, steps, with_tensorflow=False)
    theirs = resized_to(image, *target, steps)
    assert ours.shape == theirs.shape == target + shape[2:] and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-3)  # grey levels 0-255: float32 rounding only


def test_from_pretrained_with_the_onnx_backend_fetches_only_what_it_runs(onnx_folder, tiny_data, hub, hf_token):
    push_model(onnx_folder, "tester/onnx-defects")
    assert ONNX_FILE in hub.files("model", "tester/onnx-defects")
    classifier = DefectClassifier.from_pretrained("tester/onnx-defects", backend="onnx")
    fetched = sorted(p.name for p in classifier.model_dir.iterdir() if not p.name.startswith("."))
    assert fetched == ["defect_config.json", ONNX_FILE]
    images = _images(tiny_data)[:2]
    local = DefectClassifier(onnx_folder, backend="onnx").predict(images)
    np.testing.assert_allclose([r.p_defects for r in classifier.predict(images)], [r.p_defects for r in local], atol=1e-6)


def test_a_push_with_an_onnx_file_of_another_model_is_refused_before_upload(onnx_folder, tmp_path, hub, hf_token):
    folder = tmp_path / "model"
    shutil.copytree(onnx_folder, folder)
    config = load_model_config(folder)
    replace(config, training_config={**config.training_config, "seed": 99}).save(folder)
    with pytest.raises(PublishError, match="model.onnx was not exported from this model folder: nothing was pushed"):
        push_model(folder, "tester/stale-onnx")
    assert ("model", "tester/stale-onnx") not in hub.repos  # not even created
