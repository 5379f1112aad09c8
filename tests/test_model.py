"""The compact classifier judges a whole image in several orientations: the views really are the
image's rotations and mirror images, they survive saving, and the legacy twin computes the same."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tf_keras

from training.config import TrainConfig
from training.model import build_compact, copy_weights

SIZE = 64


def _orientations(image: np.ndarray) -> dict[str, np.ndarray]:
    turns = {f"rotated {90 * k}": np.rot90(image, k, axes=(1, 2)) for k in range(4)}
    return turns | {f"{name}, mirrored": view[:, :, ::-1] for name, view in turns.items()}


def _p(model, image: np.ndarray) -> float:
    return float(model.predict_on_batch(np.ascontiguousarray(image, np.float32))[0, 0])


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    # Bright lower-left corner and noise: every orientation looks different to an untrained net.
    rng = np.random.default_rng(0)
    gray = rng.normal(120, 30, (SIZE, SIZE))
    gray[SIZE // 2 :, : SIZE // 3] += 80
    return np.repeat(np.clip(gray, 0, 255)[None, ..., None], 3, axis=-1)


@pytest.mark.parametrize("views", [1, 2, 4, 8])
def test_the_decision_is_the_same_in_every_orientation_the_views_cover(image, views):
    models = build_compact(TrainConfig(image_size=SIZE, test_time_views=views, seed=0))
    p = {name: _p(models.classifier, view) for name, view in _orientations(image).items()}
    covered = {
        1: ["rotated 0"],
        2: ["rotated 0", "rotated 270, mirrored"],  # the image and its transpose
        4: [f"rotated {90 * k}" for k in range(4)],
        8: list(p),
    }[views]
    same = [name for name in p if abs(p[name] - p["rotated 0"]) < 1e-5]
    assert sorted(same) == sorted(covered), p


def test_views_survive_saving_and_the_legacy_twin_computes_the_same(image, tmp_path):
    config = TrainConfig(image_size=SIZE, test_time_views=4, seed=0)
    classifier = build_compact(config).classifier
    keras.saving.save_model(classifier, tmp_path / "model", zipped=False)
    reloaded = keras.saving.load_model(tmp_path / "model", compile=False)
    twin = build_compact(config, lib=tf_keras).classifier
    copy_weights(classifier, twin)
    p = _p(classifier, image)
    assert abs(_p(reloaded, image) - p) < 1e-6
    assert abs(_p(twin, image) - p) < 1e-5
    assert abs(_p(reloaded, np.rot90(image, 1, axes=(1, 2))) - p) < 1e-5


def test_a_config_saved_before_views_existed_rebuilds_its_one_view_model():
    saved = {k: v for k, v in TrainConfig().to_dict().items() if k != "test_time_views"}
    assert TrainConfig.from_dict(saved).test_time_views == 1
    assert TrainConfig().test_time_views == 4
