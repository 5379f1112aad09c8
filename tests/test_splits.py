"""Splits that measure generalisation: whole groups on one side, MVTec's defects brought into training, stated in the card."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.card import split_summary
from training.config import TrainConfig
from training.data import Sample, load_splits
from training.evaluate import box_on_defect
from training.splits import held_out_splits, split_holdout, with_groups


def _tiles(n_tiles=40, exposures=3, defective_every=4):
    """Each tile photographed under several exposures, named as the magnetic-tile photographs are."""
    return [
        Sample(f"/data/exp{e}_num_{tile}{e:03d}.jpg", tile % defective_every == 0)
        for tile in range(10, 10 + n_tiles)
        for e in range(1, exposures + 1)
    ]


def test_a_group_pattern_keeps_every_exposure_of_a_tile_on_one_side():
    samples = with_groups(_tiles(), r"num_(\d+)\d{3}")
    assert len({s.group for s in samples}) == 40
    keep, hold = split_holdout(samples, 0.25, seed=0)
    assert not {s.group for s in keep} & {s.group for s in hold}
    assert len(keep) + len(hold) == 120 and 24 <= len(hold) <= 36
    assert 0.15 <= np.mean([s.defective for s in hold]) <= 0.35  # still stratified by class
    # without groups, a random split puts exposures of one tile on both sides
    keep, hold = split_holdout(_tiles(), 0.25, seed=0)
    tile = lambda s: s.name.split("_num_")[1][:-7]  # noqa: E731
    assert {tile(s) for s in keep} & {tile(s) for s in hold}


def test_unmatched_names_are_groups_of_one(caplog):
    samples = with_groups(_tiles(n_tiles=4) + [Sample("/data/odd.jpg", False)], r"num_(\d+)\d{3}")
    assert samples[-1].group is None and "matches 12 of 13" in caplog.text


def _photo(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(60, 190, (32, 32), dtype=np.uint8)).save(path)


def test_mvtec_defects_move_into_training_stratified_and_stated(tmp_path):
    for i in range(30):
        _photo(tmp_path / "train" / "good" / f"{i:03d}.png", i)
    for kind, n in (("good", 20), ("crack", 24), ("hole", 16)):
        for i in range(n):
            _photo(tmp_path / "test" / kind / f"{i:03d}.png", 100 + i)
    fit, val, test, how = held_out_splits(TrainConfig(data=str(tmp_path)))
    assert how["moved_from_test"] == {"defects": 20, "no_defects": 10}
    assert Counter(s.defect for s in test if s.defective) == {"crack": 12, "hole": 8}
    assert not {s.name for s in fit + val} & {s.name for s in test}
    assert (how["fit"], how["validation"], how["test"]) == (len(fit), len(val), len(test)) == (51, 9, 30)
    text = split_summary(how)
    assert "20 defective and 10 defect-free images of its test split" in text and "51 training" in text


def test_the_box_is_on_a_masked_defect_only_when_it_touches_it_and_is_not_huge(tmp_path):
    mask = np.zeros((100, 200), np.uint8)
    mask[40:50, 60:80] = 255  # bounding box 20 x 10 = 200 px
    Image.fromarray(mask).save(tmp_path / "m.png")
    sample = Sample("x.png", True, mask=str(tmp_path / "m.png"))
    assert box_on_defect(sample, (55, 35, 85, 55))  # 30 x 20 = 600 px around it
    assert not box_on_defect(sample, (0, 0, 50, 100))  # beside it
    assert not box_on_defect(sample, (0, 0, 200, 100))  # touches it, 100 times its area
    assert box_on_defect(sample, (70, 45, 110, 65))  # overlaps a corner, 800 px


@pytest.mark.parametrize("pattern", ["(", "[a-"])
def test_a_bad_group_pattern_is_refused_before_any_work(pattern):
    with pytest.raises(ValueError, match="--group-pattern"):
        TrainConfig(group_pattern=pattern).validate()


MAGNETIC_TILES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "magnetic_tile"


@pytest.mark.skipif(not MAGNETIC_TILES.is_dir(), reason="the magnetic-tile photographs are not beside the repo (../shared)")
def test_the_real_surfaces_benchmark_splits_the_photographs_by_tile_and_kind(tmp_path):
    """The photographs read as an imagefolder with masks beside them; no tile is in both splits."""
    run = subprocess.run(
        [sys.executable, "benchmarks/real_surfaces.py", "--data", str(MAGNETIC_TILES), "--out", str(tmp_path), "--layout-only"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 0, run.stderr
    splits = load_splits(tmp_path / "data")
    train, test = splits["train"], splits["test"]
    assert len(train) + len(test) == 1344 and sum(s.defective for s in train + test) == 392
    assert all(s.mask is not None and s.mask.endswith(".png") and s.name.endswith(".jpg") for s in train + test)
    assert not {s.group for s in train} & {s.group for s in test}
    for kind, n in Counter(s.defect for s in train + test).items():
        share = sum(s.defect == kind for s in test) / n
        assert 0.15 <= share <= 0.35, (kind, share)
