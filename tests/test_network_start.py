"""`--init-weights`: the compact net starts from another model folder's network, from a start file, or from
the start the package ships; the decision is never carried over, and a net of another shape is refused."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from training.config import TrainConfig
from training.make_start import make_start
from training.model import build_compact
from training.network_start import SHIPPED_STARTS, network_weights, start_from

LAYERS = ("conv0", "conv6", "norm3", "seg_logits")


def _fresh(**options):
    return build_compact(TrainConfig(image_size=256, crop_size=128, seed=9, **options)).trainer


def _assert_started(trainer, weights):
    for name in LAYERS:
        for ours, theirs in zip(trainer.get_layer(name).get_weights(), weights[name], strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_init_weights_start_the_network_from_another_model_and_refuse_another_shape(trained):
    out, _ = trained
    source = keras.saving.load_model(out / "model", compile=False)
    saved = TrainConfig.from_file(out / "model" / "defect_config.json")
    fresh = _fresh(widths=saved.widths)
    assert not np.array_equal(fresh.get_layer("conv3").get_weights()[0], source.get_layer("conv3").get_weights()[0])
    start_from(fresh, str(out / "model"))
    _assert_started(fresh, {name: source.get_layer(name).get_weights() for name in LAYERS})
    narrow = _fresh(widths=(8, 16, 16, 32, 32, 32, 32))
    with pytest.raises(ValueError, match="conv0 differs in shape.*--widths"):
        start_from(narrow, str(out / "model"))
    with pytest.raises(ValueError, match="--init-weights 'nowhere' is neither a Keras 3 model folder"):
        TrainConfig(init_weights="nowhere").validate()


def test_the_shipped_start_fits_the_default_net_and_says_how_it_was_made():
    path = SHIPPED_STARTS["generated-surfaces"]
    TrainConfig(init_weights="generated-surfaces").validate()
    made = json.loads(path.with_suffix(".json").read_text())
    assert made["made_by"] == "python -m training.make_start"
    # Other draws than the embedded dataset's (seed 0), whose test split must stay unseen.
    assert made["generator"]["seed"] != 0
    assert made["train_config"]["widths"] == list(TrainConfig().widths)
    fresh = _fresh()
    start_from(fresh, "generated-surfaces")
    _assert_started(fresh, network_weights("generated-surfaces"))
    # A trained net, not a fresh one: training moved the defect map's bias from its initial -3.
    assert abs(float(network_weights("generated-surfaces")["seg_logits"][1][0]) + 3.0) > 1e-3


def test_a_start_is_refused_for_another_backbone_and_a_file_not_written_as_a_start(tmp_path):
    with pytest.raises(ValueError, match="--init-weights needs --backbone compact"):
        TrainConfig(backbone="efficientnet_b0", init_weights="generated-surfaces").validate()
    stray = tmp_path / "other.npz"
    np.savez(stray, np.zeros(3))
    with pytest.raises(ValueError, match="'arr_0' is not named LAYER/INDEX.*make_start"):
        start_from(_fresh(), str(stray))
    partial = tmp_path / "partial.npz"
    np.savez(partial, **{f"conv0/{i}": w for i, w in enumerate(network_weights("generated-surfaces")["conv0"])})
    with pytest.raises(ValueError, match="it has no layer norm0"):
        start_from(_fresh(), str(partial))


def test_make_start_writes_the_network_of_the_run_it_trains(tmp_path):
    dest = tmp_path / "start.npz"
    made = make_start(
        tmp_path / "work", dest, generator={"seed": 5, "per_texture_good": 4, "per_texture_defective": 4},
        image_size=128, crop_size=64, epochs=1, steps_per_epoch=2, batch_size=4,
    )
    assert made["train_config"]["time_budget"] == 0
    assert json.loads(dest.with_suffix(".json").read_text()) == made
    from_file, from_folder = network_weights(str(dest)), network_weights(str(tmp_path / "work" / "run" / "model"))
    assert from_file.keys() == from_folder.keys() and {"conv0", "conv6", "norm0", "seg_logits"} <= from_file.keys()
    assert "p_defects" not in from_file  # the decision is fitted anew
    TrainConfig(init_weights=str(dest)).validate()
    fresh = _fresh()
    start_from(fresh, str(dest))
    _assert_started(fresh, from_folder)
