"""Pretrained backbones (EfficientNet-B0, TF-Hub modules), fine-tuning and tf.distribute, for real.

The ImageNet weights and tfhub.dev are unreachable here, so the download paths run against a
closed local proxy port (they must fail with a message that names the fix), and the working
paths use a local weights file and a SavedModel module written by the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from defect_inference import DefectClassifier, ModelFolderError, read_image
from training.config import TrainConfig
from training.pretrained import build_efficientnet, efficientnet_backbone

SIZE = 64  # the smallest size EfficientNet-B0 accepts here: its last map is 2x2
TUTORIAL_HANDLE = "https://tfhub.dev/tensorflow/efficientnet/b0/feature-vector/1"
ROOT = Path(__file__).resolve().parents[1]


def _config(data, out, **changes) -> TrainConfig:
    values = dict(data=str(data), out=str(out), backbone="efficientnet_b0", weights="none", image_size=SIZE,
                  epochs=3, patience=3, operating_point="recall=0.5", seed=5)
    values.update(changes)
    return TrainConfig(**values)


def _test_images(data, n=3):
    files = sorted((data / "test" / "defects").glob("*.png"))[:n] + sorted((data / "test" / "no_defects").glob("*.png"))[:n]
    return [read_image(f) for f in files]


def _run_cli(args, tmp_path, **env):
    environment = {**os.environ, "KERAS_HOME": str(tmp_path / "keras_home"), **env}
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                          env=environment, timeout=300)


@pytest.fixture(scope="module")
def weights_file(tiny_data, tmp_path_factory) -> Path:
    """EfficientNet-B0 weights (no top) as a local file.

    Freshly initialized, its deep features barely depend on the image; setting every batch norm's
    statistics from one batch of textures (data-dependent initialization) makes them informative.
    """
    keras.utils.set_random_seed(11)
    backbone = efficientnet_backbone(TrainConfig(image_size=SIZE), keras, None)
    batch = np.stack([np.asarray(tf.image.resize(i, (SIZE, SIZE), method="area")) for i in _test_images(tiny_data, 8)])
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    backbone(batch.astype(np.float32), training=True)
    path = tmp_path_factory.mktemp("weights") / "efficientnetb0_notop.weights.h5"
    backbone.save_weights(path)
    return path


def _changed_layers(model_dir: Path, weights_file: Path) -> list[str]:
    """Backbone layers whose saved weights differ from the weights file (matched in order: the
    auto-generated names of unnamed layers differ between two builds)."""
    saved = keras.saving.load_model(model_dir).get_layer("efficientnetb0")
    start = efficientnet_backbone(TrainConfig(image_size=SIZE), keras, str(weights_file))
    return [
        b.name
        for a, b in zip(start.layers, saved.layers, strict=True)
        if any(not np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))
    ]


def test_efficientnet_from_a_weights_file_trains_saves_and_loads_everywhere(tiny_data, weights_file, tmp_path):
    from training.train import train

    import tf_keras

    metrics = train(_config(tiny_data, tmp_path, weights=str(weights_file)))
    model_dir = tmp_path / "model"
    info = json.loads((model_dir / "defect_config.json").read_text())
    assert info["training_config"]["backbone"] == "efficientnet_b0" and info["threshold"] == metrics["threshold"]
    assert _changed_layers(model_dir, weights_file) == []  # the frozen backbone is exactly the file's weights
    # Keras 3, tf-keras (the legacy loaders' view) and our inference agree, heat map included.
    images = _test_images(tiny_data)
    batch = np.stack([np.asarray(tf.image.resize(i, (SIZE, SIZE), method="area")) for i in images]).round().astype(np.float32)
    model = keras.saving.load_model(model_dir)
    legacy = tf_keras.models.load_model(str(model_dir))
    k3 = model.predict(batch, verbose=0).reshape(-1)
    np.testing.assert_allclose(k3, legacy.predict(batch, verbose=0).reshape(-1), atol=1e-5)
    # Compare the backbone's feature maps too: a random-weight EfficientNet gives almost the same
    # P for every image, so equal outputs alone would not show that the networks are equal.
    maps = keras.Model(model.inputs, model.get_layer("seg_logits").input).predict(batch, verbose=0)
    legacy_maps = tf_keras.Model(legacy.inputs, legacy.get_layer("seg_logits").input).predict(batch, verbose=0)
    assert np.abs(maps - maps.mean(0)).max() > 1e-3  # the maps differ between images
    np.testing.assert_allclose(maps, legacy_maps, rtol=1e-3, atol=1e-4 * np.abs(maps).max())
    results = DefectClassifier(model_dir).predict(list(batch.astype(np.uint8)))
    np.testing.assert_allclose([r.p_defects for r in results], k3, atol=1e-4)
    assert all(r.heatmap.shape == (SIZE, SIZE) for r in results)
    # The heat map is the exact class activation map: its mean logit gives P(defects).
    cam = keras.Model(model.inputs, model.get_layer("seg_logits").output).predict(batch, verbose=0)
    np.testing.assert_allclose(1 / (1 + np.exp(-cam.mean(axis=(1, 2, 3)))), k3, atol=1e-5)
    assert (tmp_path / "logs").is_dir()


def test_fine_tune_changes_only_the_top_of_the_backbone(tiny_data, weights_file, tmp_path):
    from training.train import train

    train(_config(tiny_data, tmp_path, weights=str(weights_file), epochs=1, fine_tune=True, fine_tune_epochs=1,
                  learning_rate=0.05))
    changed = set(_changed_layers(tmp_path / "model", weights_file))
    assert "block7a_project_conv" in changed and "top_conv" in changed
    assert not any(name.startswith(("stem", "block1", "block5")) for name in changed), sorted(changed)
    assert not any(name.endswith("_bn") for name in changed), sorted(changed)  # batch norms stay frozen


def _write_hub_module(path: Path) -> Path:
    """A TF2 SavedModel image feature-vector module, the interface TF-Hub modules have."""

    class FeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(tf.random.stateless_normal((5, 5, 3, 16), seed=(1, 2)) * 0.2)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            x = tf.nn.relu(tf.nn.conv2d(images - 0.5, self.kernel, 2, "SAME"))
            return tf.concat([tf.reduce_mean(x, [1, 2]), tf.reduce_max(x, [1, 2])], -1)

    tf.saved_model.save(FeatureVector(), str(path))
    return path


def test_tfhub_module_trains_and_saves_a_self_contained_savedmodel(tiny_data, tmp_path):
    from training.train import train

    import tf_keras

    module = _write_hub_module(tmp_path / "module")
    train(_config(tiny_data, tmp_path / "run", backbone=f"tfhub:{module}"))
    model_dir = tmp_path / "run" / "model"
    assert not (model_dir / "config.json").exists()  # no Keras 3 files: Keras 3 cannot hold a hub module
    info = json.loads((model_dir / "defect_config.json").read_text())
    assert info["heatmap_layer"] is None
    # The module is inside the SavedModel: deleting it must not matter.
    import shutil

    shutil.rmtree(module)
    images = [np.asarray(tf.image.resize(i, (SIZE, SIZE))).astype(np.uint8) for i in _test_images(tiny_data)]
    legacy = tf_keras.models.load_model(str(model_dir)).predict(np.stack(images).astype(np.float32), verbose=0)
    # Its graph runs unchecked, so it loads only when trusted explicitly, by argument or environment.
    with pytest.raises(ModelFolderError, match="--trust-savedmodel"):
        DefectClassifier(model_dir)
    results = DefectClassifier(model_dir, trust_savedmodel=True).predict(images)
    np.testing.assert_allclose([r.p_defects for r in results], legacy.reshape(-1), atol=1e-5)
    run = subprocess.run([sys.executable, "-c", "import sys; from defect_inference import DefectClassifier; DefectClassifier(sys.argv[1])",
                          str(model_dir)], capture_output=True, text=True, timeout=300, env={**os.environ, "TRUST_SAVEDMODEL": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert all(r.heatmap is None and r.box is None for r in results)


def test_tutorial_handle_is_accepted_and_an_unreachable_hub_is_explained(tiny_data, tmp_path):
    TrainConfig(backbone=f"tfhub:{TUTORIAL_HANDLE}").validate()
    result = _run_cli(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--backbone",
                       f"tfhub:{TUTORIAL_HANDLE}", "--image-size", "64"], tmp_path,
                      HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", TFHUB_CACHE_DIR=str(tmp_path / "hub"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot load the TF-Hub module" in result.stderr and "internet connection" in result.stderr
    assert "decoding" not in result.stderr  # refused before any long work
    assert not (tmp_path / "run" / "model").exists()


def test_imagenet_download_failure_names_the_fix(tiny_data, tmp_path):
    result = _run_cli(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--backbone",
                       "efficientnet_b0", "--image-size", "64"], tmp_path,
                      HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot download the ImageNet weights" in result.stderr and "--weights" in result.stderr
    assert "decoding" not in result.stderr


def test_weights_of_another_network_are_refused(tiny_data, tmp_path):
    wrong = tmp_path / "b1.weights.h5"
    keras.applications.EfficientNetB1(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)).save_weights(wrong)
    with pytest.raises(ValueError, match="does not fit EfficientNet-B0"):
        build_efficientnet(TrainConfig(image_size=SIZE), weights=str(wrong))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"backbone": "tfhub:"}, "unknown backbone"),
        ({"backbone": "efficientnet_b7"}, "unknown backbone"),
        ({"backbone": "compact", "fine_tune": True}, "--fine-tune needs"),
        ({"weights": "/no/such/file.h5"}, "neither 'imagenet'"),
        ({"distribute": "tpu"}, "--distribute"),
        ({"image_size": 32}, "--image-size"),
    ],
)
def test_bad_backbone_settings_are_refused_up_front(change, message):
    values = {"backbone": "efficientnet_b0", "weights": "none", **change}
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values).validate()


def test_a_module_that_is_not_a_feature_vector_is_refused(tmp_path):
    from training.pretrained import load_hub_module

    class Maps(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            return images * 2.0

    tf.saved_model.save(Maps(), str(tmp_path / "maps"))
    with pytest.raises(ValueError, match="not a feature vector"):
        load_hub_module(str(tmp_path / "maps"), SIZE)


MIRRORED = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from training.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("backbone", ["compact", "efficientnet_b0"])
def test_mirrored_strategy_trains_on_two_cpu_devices(tiny_data, tmp_path, backbone):
    args = ["train", "--data", str(tiny_data), "--out", str(tmp_path), "--backbone", backbone, "--weights", "none",
            "--distribute", "mirrored", "--epochs", "1", "--operating-point", "recall=0.5"]
    if backbone == "compact":
        args += ["--image-size", "128", "--crop-size", "64", "--mine-every", "1", "--steps-per-epoch", "7"]
    else:
        args += ["--image-size", "64"]
    result = subprocess.run([sys.executable, "-c", MIRRORED, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training on 2 replica(s) (MirroredStrategy)" in result.stderr  # logged
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["n_test"] == 40
    assert keras.saving.load_model(tmp_path / "model").count_params() > 0
