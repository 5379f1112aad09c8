"""The generic synthetic anomalies: each is visible, and its mask covers what it changed."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from training.augment import paste_anomaly


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
