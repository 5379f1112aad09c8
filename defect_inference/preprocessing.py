"""How an image becomes the network's input: the one definition, used everywhere.

The saved model resizes inside (its `resize` layer), so `keras.saving.load_model(...).predict`
on an image of any size is right on its own. Everything outside the model that prepares images
(the classifier, before stacking images of different sizes into one batch, and training, before
cutting crops) calls `to_working_size`, which runs the very op that layer runs, so an image
gives the network the same input whichever way it arrives (except below).

With `preprocessing.aspect` "fit" an image keeps its aspect: it is scaled alike on both axes until
its longer side fills the square, placed at the top left, and the rest of the square is filled
with its mirror images (NumPy's "symmetric" padding). Why mirrors: a flat or black fill meets the
surface along an edge that looks like a defect to a net that learned defects as local changes,
and it would move the per-image statistics the net normalises by; a mirror continues the texture
without a step. The saved model's own layers cannot mirror, so it still stretches (named in the
model card): the inference core and training fit.
"""

from __future__ import annotations

import numpy as np

from defect_inference.model_folder import Preprocessing
from defect_inference.tiling import MAP_STRIDE


def to_working_size(
    image: np.ndarray, size: int, preprocessing: Preprocessing = Preprocessing(), with_tensorflow: bool = True
) -> np.ndarray:
    """(H, W, C) or (H, W) image -> float32 (size, size, C) or (size, size), as the model's `resize`
    layer does (or fitted and mirrored with `preprocessing.aspect` "fit", see above).

    The op is TensorFlow's, which is what Keras's resize runs on this backend (the same numbers),
    called on the image's own 8-bit pixels: a 64-MP photograph never exists as floats, which
    would cost gigabytes and seconds. `with_tensorflow=False` computes the same resize with SciPy
    (equal to float32 rounding, ~1e-4 of a grey level) for the ONNX backend, which runs where
    TensorFlow is not installed.
    """
    if preprocessing.aspect == "fit":
        height, width = fitted_shape(*np.shape(image)[:2], size)
        return mirror_filled(resized_to(image, height, width, preprocessing, with_tensorflow), size)
    return resized_to(image, size, size, preprocessing, with_tensorflow)


def fitted_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The (height, width) an image takes inside the working square with aspect "fit": its longer
    side the square's, its shorter one scaled alike and rounded to whole cells of the defect map,
    so the map's cells of the image and of its mirror images part exactly."""
    scale = size / max(height, width)
    return tuple(size if side == max(height, width) else min(size, max(MAP_STRIDE, round(side * scale / MAP_STRIDE) * MAP_STRIDE))
                 for side in (height, width))


def content_shape(height: int, width: int, size: int, preprocessing: Preprocessing) -> tuple[int, int]:
    """The part of the working square (from its top left) that holds the image itself."""
    return fitted_shape(height, width, size) if preprocessing.aspect == "fit" else (size, size)


def mirror_filled(image: np.ndarray, size: int) -> np.ndarray:
    """An image at its fitted size placed at the top left of a size x size square, the rest its mirror images."""
    height, width = image.shape[:2]
    return np.pad(image, ((0, size - height), (0, size - width)) + ((0, 0),) * (image.ndim - 2), mode="symmetric")


def resized_to(
    image: np.ndarray, height: int, width: int, preprocessing: Preprocessing = Preprocessing(), with_tensorflow: bool = True
) -> np.ndarray:
    """The same resize to any (height, width): what a frame judged in tiles is scaled by first."""
    array = np.asarray(image)
    if array.shape[:2] == (height, width):
        return array.astype(np.float32)
    channels = array[..., None] if array.ndim == 2 else array
    if with_tensorflow:
        import tensorflow as tf

        resized = tf.image.resize(channels, (height, width), method=preprocessing.resize).numpy().astype(np.float32, copy=False)
    else:
        resized = _resize_with_scipy(channels, height, width, preprocessing.resize)
    return resized[..., 0] if array.ndim == 2 else resized


def _axis_weights(n_in: int, n_out: int, method: str):
    """The (n_out, n_in) sparse matrix of one axis of TensorFlow's resize: "area" averages the input
    pixels an output pixel covers, weighted by the overlap; "bilinear" interpolates at half-pixel
    centres, clamped at the edges. Positions and weights follow TensorFlow's kernels in float32
    (their rounding moves a sample on a long axis by a ten-thousandth of a pixel or so)."""
    from scipy import sparse

    scale, out = np.float32(n_in) / np.float32(n_out), np.arange(n_out)
    position = np.arange(n_out + 1, dtype=np.float32)
    if method == "area":
        start, end = (position[:-1] * scale)[:, None], (position[1:] * scale)[:, None]
        cols = np.floor(start).astype(np.int64) + np.arange(int(np.ceil(scale)) + 2)
        edge = cols.astype(np.float32)
        # An input pixel's share: the part of it the output pixel covers (all of the output pixel's
        # width when it lies inside one input pixel), as resize_area_op.cc computes it.
        share = np.where(edge < start, np.where(edge + 1 > end, scale, edge + 1 - start), np.where(edge + 1 > end, end - edge, 1))
        weights = np.where(cols < np.ceil(end), share, 0).astype(np.float32) / scale
    else:
        centre = ((position[:-1] + np.float32(0.5)) * scale - np.float32(0.5)).astype(np.float64)
        low = np.floor(centre)
        cols = np.stack([low, low + 1], axis=1).astype(np.int64)
        weights = np.stack([1 - (centre - low), centre - low], axis=1)
    rows = np.broadcast_to(out[:, None], cols.shape)
    cols = np.clip(cols, 0, n_in - 1)
    return sparse.csr_matrix((weights.ravel().astype(np.float32), (rows.ravel(), cols.ravel())), shape=(n_out, n_in))


def _resize_with_scipy(channels: np.ndarray, out_height: int, out_width: int, method: str, rows_at_once: int = 256) -> np.ndarray:
    """(H, W, C) -> float32 (out_height, out_width, C): both axes' weights applied in turn, the
    input read a band of rows at a time (so a large 8-bit frame is never all floats)."""
    height, width, depth = channels.shape
    flat = channels.reshape(height, width * depth)
    vertical = _axis_weights(height, out_height, method).tocsc()
    rows = np.zeros((out_height, width * depth), np.float32)
    for start in range(0, height, rows_at_once):
        rows += vertical[:, start : start + rows_at_once] @ flat[start : start + rows_at_once].astype(np.float32)
    columns = rows.reshape(out_height, width, depth).transpose(1, 0, 2).reshape(width, out_height * depth)
    resized = (_axis_weights(width, out_width, method) @ columns).reshape(out_width, out_height, depth).transpose(1, 0, 2)
    return np.ascontiguousarray(resized, dtype=np.float32)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """The mean of the three channels, as the compact model's frozen `to_gray` layer computes it."""
    return np.asarray(rgb, dtype=np.float32).mean(axis=-1)
