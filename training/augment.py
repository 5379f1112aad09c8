"""Generic synthetic anomalies pasted on defect-free crops, to multiply the defect examples.

Real datasets hold few defective images per surface (DAGM: 150 per class; ours: ~45 per texture
in training), too few to learn "a local deviation from this surface" from scratch. Following
CutPaste (Li et al. 2021) and DRAEM (Zavrtanik et al. 2021), defect-free crops get an irregular
region whose content is swapped for another surface, shifted in intensity, or crossed by a thin
line, with the region as its exact mask. The shapes come from thresholded smooth noise, not from
any dataset's defect generator, so the model learns deviations, not one generator's drawings.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

KINDS = ("patch", "intensity", "line")


def _blob_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """An irregular region of 1-15 % of the crop, soft-edged, values in [0, 1].

    The region is smooth, so it is drawn on a 4x coarser grid and enlarged: 16x less work in
    the batch preparation, which shares the CPU with the training step.
    """
    coarse = max(size // 4, 8)
    sigma = rng.uniform(4, 12) * coarse / size
    for _ in range(20):
        field = ndimage.gaussian_filter(rng.standard_normal((coarse, coarse)), sigma)
        field = (field - field.mean()) / (field.std() + 1e-8)
        region = field > rng.uniform(1.2, 2.2)
        labels, n = ndimage.label(region)
        if n:
            sizes = ndimage.sum(region, labels, range(1, n + 1))
            keep = labels == (1 + int(np.argmax(sizes)))
            if 0.01 * coarse * coarse <= keep.sum() <= 0.15 * coarse * coarse:
                keep = ndimage.zoom(keep.astype(np.float32), size / coarse, order=1) > 0.5
                return ndimage.gaussian_filter(keep.astype(np.float32), 1.5) * keep
    yy, xx = np.mgrid[0:size, 0:size]
    r = size * rng.uniform(0.08, 0.15)
    return (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) <= r * r).astype(np.float32)


def _line_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = rng.uniform(0.25 * size, 0.75 * size, size=2)
    angle = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    width, half_length = rng.uniform(0.8, 2.5), rng.uniform(0.1, 0.4) * size
    return np.exp(-(v**2) / (2 * width**2)) * (np.abs(u) < half_length)


def paste_anomaly(crop: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return (crop with an anomaly, its mask in [0, 1]); `donor` is a crop of another surface."""
    size = crop.shape[0]
    image = crop.astype(np.float32)
    std = image.std() + 1.0
    kind = KINDS[rng.integers(len(KINDS))]
    if kind == "line":
        mask = _line_mask(rng, size)
        out = image + rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 5.0) * std * mask
    else:
        mask = _blob_mask(rng, size)
        if kind == "patch":
            other = donor.astype(np.float32)
            # The donor may be the same surface: only a clear change of contrast keeps such a
            # patch visible, else it would teach that normal texture can be a defect.
            contrast = rng.uniform(1.7, 2.5) if rng.random() < 0.5 else rng.uniform(0.3, 0.55)
            other = (other - other.mean()) / (other.std() + 1.0) * std * contrast + image.mean()
            out = image * (1 - mask) + other * mask
        else:
            out = image + rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 4.0) * std * mask
    return np.clip(out, 0, 255), (mask > 0.3).astype(np.float32)
