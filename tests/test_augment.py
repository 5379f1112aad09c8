"""The generic synthetic anomalies: each mask covers what was changed, and each shape is what it claims."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
from scipy import ndimage

from training.augment import paste_anomaly
from training.data import load_splits


def test_every_anomaly_is_visible_and_inside_its_mask():
    rng = np.random.default_rng(0)
    surface = ndimage.gaussian_filter(rng.standard_normal((128, 128)), 2) * 40 + 128
    donor = ndimage.gaussian_filter(rng.standard_normal((128, 128)), 1) * 40 + 100
    for seed in range(40):
        out, mask = paste_anomaly(surface.copy(), donor, np.random.default_rng(seed))
        change = np.abs(out - surface)
        assert mask.sum() > 0
        # Visible: somewhere the change is at least the surface's own spread.
        assert change.max() >= surface.std()
        # The mask holds every pixel changed by 30 % of the peak change or more (a soft edge or a
        # spot's tail may reach a little beyond it).
        outside = ~ndimage.binary_dilation(mask > 0, iterations=3)
        assert change[outside].max() < 0.3 * change.max()


def test_unseen_surfaces_benchmark_writes_a_readable_dagm_competition_set(tmp_path, monkeypatch):
    # Imported by name: its worker processes must find the module again.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    bench = importlib.import_module("unseen_surfaces")
    written = bench.write_set(tmp_path, seed=0, good=4, defective=4)
    read = load_splits(tmp_path)
    assert {k: len(v) for k, v in read.items()} == {"train": 36, "test": 12}
    assert [s.defective for s in read["train"]] == [s.defective for s in written["train"]]
    kinds = {s.defect for s in written["train"] + written["test"] if s.defective}
    assert kinds <= set(bench.KINDS) and len(kinds) >= 3
    for sample in read["train"] + read["test"]:
        assert (sample.ellipse is not None) == sample.defective
        if sample.defective:
            assert 4 <= sample.ellipse.b <= sample.ellipse.a <= 120
