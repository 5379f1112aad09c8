"""Every augmentation of the training data, in one place.

- Crops of the compact net (`CropSampler` in compact_training.py): a scale jitter (a region up to
  `scale_jitter` larger or smaller, resized back), a gamma jitter, and one of the eight
  orientations; all with the sampler's seeded generator, so a seed repeats a run.
- Synthetic anomalies pasted on defect-free crops (below).
- Whole images of the fine-tuned pretrained backbone (`augment_image`, in TensorFlow: it runs
  inside a `tf.data` pipeline).

Synthetic anomalies multiply the defect examples. Real datasets hold few defective images per surface (DAGM: 150 per class; ours: ~45 per texture
in training), too few to learn "a local deviation from this surface" from scratch. Following
CutPaste (Li et al. 2021) and DRAEM (Zavrtanik et al. 2021), defect-free crops get an irregular
region whose content is swapped for another surface, shifted in intensity, or crossed by a thin
line, with the region as its exact mask. The shapes come from thresholded smooth noise, not from
any dataset's defect generator, so the model learns deviations, not one generator's drawings.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

KINDS = ("patch", "intensity", "line")


def jittered_region(rng: np.random.Generator, crop: int, scale_jitter: float, stride: int, size: int) -> int:
    """The side of the region a crop is cut from: `crop` changed by up to `scale_jitter`, in
    whole `stride` steps (the map's cells stay aligned), at most the image."""
    steps = int(round(crop * scale_jitter / stride))
    return min(size, crop + stride * int(rng.integers(-steps, steps + 1)))


def resize_crop(image: np.ndarray, mask: np.ndarray, crop: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """A jittered region and its cell mask resized back to the crop and its grid."""
    image = np.asarray(Image.fromarray(image.astype(np.float32), "F").resize((crop, crop), Image.BILINEAR))
    mask = (np.asarray(Image.fromarray(mask, "F").resize((cells, cells), Image.BILINEAR)) > 0.5).astype(np.float32)
    return image, mask


def jitter_gamma(image: np.ndarray, rng: np.random.Generator, gamma_jitter: float) -> np.ndarray:
    """Grey levels (0-255) raised to a power in [1/(1+g), 1+g]: another exposure of the same surface."""
    gamma = rng.uniform(1 / (1 + gamma_jitter), 1 + gamma_jitter)
    return 255.0 * (image / 255.0) ** gamma


def random_orientation(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One of the eight rotations and mirror images, the same for the crop and its mask."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    image, mask = np.rot90(image, k), np.rot90(mask, k)
    return (image[:, ::-1], mask[:, ::-1]) if flip else (image, mask)


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


def augment_image(image, seed):
    """Texture-safe augmentation of a whole RGB image in TensorFlow: flips, 90-degree turns, shifts
    of up to 1/16, brightness."""
    import tensorflow as tf

    size = tf.shape(image)[0]
    seeds = tf.random.experimental.stateless_split(tf.stack([seed, seed // 7]), 5)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    k = tf.random.stateless_uniform([], seeds[1], 0, 4, dtype=tf.int32)
    image = tf.image.rot90(image, k)
    pad = size // 16
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    image = tf.image.stateless_random_crop(padded, tf.shape(image), seeds[2])
    image = tf.image.stateless_random_brightness(image, 20.0, seeds[3])
    return tf.clip_by_value(image, 0.0, 255.0)
