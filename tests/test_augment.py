"""Training-time augmentation: every generic synthetic anomaly is visible and inside its mask; scaled and
gamma-jittered crops keep their target map on the defect."""

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


def _bright_area_and_overlap(scale_jitter: float, gamma_jitter: float):
    """Crops of one image with a bright ellipse: its area in each crop, and how well the stride-8
    target map covers it."""
    from training.config import TrainConfig
    from training.data import Ellipse
    from training.compact_training import CropSampler
    from defect_inference.tiling import MAP_STRIDE as STRIDE

    ellipse = Ellipse(256.0, 256.0, 40.0, 25.0, 0.3)
    images = np.full((2, 512, 512), 100, np.uint8)
    images[0][ellipse.mask(512, 512)] = 200
    masks = np.zeros((2, 64, 64), np.float32)
    masks[0] = ellipse.mask(64, 64, scale=STRIDE)
    config = TrainConfig(batch_size=2, synthetic_fraction=0.0, scale_jitter=scale_jitter, gamma_jitter=gamma_jitter)
    sampler = CropSampler(images, masks, np.ones(2, np.float32), np.array([1, 0]), [np.array([[256, 256]]), np.array([[0, 0]])], config)
    areas, overlaps = [], []
    for index in range(20):
        x, targets, _ = sampler[index]
        j = int(np.argmax(targets["p_defects"][:, 0]))
        crop = x[j, ..., 0]
        bright = crop > (crop.min() + crop.max()) / 2
        cells = np.kron(targets["seg"][j, ..., 0], np.ones((STRIDE, STRIDE))) > 0.5
        areas.append(bright.sum())
        overlaps.append((bright & cells).sum() / (bright | cells).sum())
    return np.array(areas), np.array(overlaps)


def test_scale_and_gamma_jitter_keep_the_target_on_the_defect():
    areas, overlaps = _bright_area_and_overlap(0.0, 0.0)
    assert np.ptp(areas) == 0  # rotations and flips keep the defect's size
    assert overlaps.min() > 0.75
    areas, overlaps = _bright_area_and_overlap(0.125, 0.25)
    assert areas.std() / areas.mean() > 0.05  # the defect's size in the crop varies with the scale
    assert overlaps.min() > 0.75  # and its target map still lies on it
