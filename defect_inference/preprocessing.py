"""How an image becomes the network's input: the one definition, used everywhere.

The saved model resizes inside (its `resize` layer), so `keras.saving.load_model(...).predict`
on an image of any size is right on its own. Everything outside the model that prepares images
(the classifier below, before stacking images of different sizes into one batch, and training,
before cutting crops) calls `to_working_size`, which runs the very op that layer runs, so an image
gives the network the same input whichever way it arrives.
"""

from __future__ import annotations

import numpy as np

from defect_inference.model_folder import Preprocessing


def to_working_size(image: np.ndarray, size: int, preprocessing: Preprocessing = Preprocessing()) -> np.ndarray:
    """(H, W, C) or (H, W) image -> float32 (size, size, C) or (size, size), as the model's `resize` layer does.

    The op is TensorFlow's, which is what Keras's resize runs on this backend (the same numbers),
    called on the image's own 8-bit pixels: a 64-MP photograph never exists as floats, which
    would cost gigabytes and seconds.
    """
    array = np.asarray(image)
    if array.shape[:2] == (size, size):
        return array.astype(np.float32)
    import tensorflow as tf

    channels = array[..., None] if array.ndim == 2 else array
    resized = tf.image.resize(channels, (size, size), method=preprocessing.resize).numpy().astype(np.float32)
    return resized[..., 0] if array.ndim == 2 else resized


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """The mean of the three channels, as the compact model's frozen `to_gray` layer computes it."""
    return np.asarray(rgb, dtype=np.float32).mean(axis=-1)
