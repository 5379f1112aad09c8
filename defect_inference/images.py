"""Reading images: any path, bytes, PIL image or array becomes an (H, W, 3) uint8 RGB array.

Every consumer (training, the CLI, the Space, the Inference Endpoints handler) reads images here,
so a 16-bit PNG, a CMYK JPEG or a rotated phone photo means the same everywhere.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Larger images are refused before decoding: PIL only warns up to twice its own bomb limit.
MAX_PIXELS = 64_000_000
# How PIL names an in-memory file in its messages; users are shown "the data" instead.
PYTHON_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


class ImageError(ValueError):
    """An input that is not a usable image; the message names the problem and the fix."""


def read_image(source, max_pixels: int = MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """Decode a path, bytes, PIL image or array into an (H, W, 3) uint8 RGB array.

    Handles every PIL mode (16-bit and float grayscale are scaled, not clipped), EXIF
    orientation, and refuses images too large to decode safely before decoding them. Errors
    name the image `name` when given (a server shows the uploaded file's name, never its own path).
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    is_path = isinstance(source, (str, os.PathLike))
    name = name or (str(source) if is_path else "the uploaded data")
    try:
        return _read(source, max_pixels, name)
    except ImageError as err:
        message = str(err).replace(str(source), name) if is_path else str(err)
        raise ImageError(PYTHON_REPR.sub("the data", message)) from None


def _read(source, max_pixels: int, name: str) -> np.ndarray:
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, (bytes, bytearray)):
            if not source:
                raise ImageError("the uploaded data is empty: choose an image file (PNG, JPEG, BMP, TIFF)")
            image = Image.open(io.BytesIO(source))
        else:
            image = Image.open(source)
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"{name} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), more than "
                f"the {max_pixels / 1e6:.0f}-megapixel limit: downscale it before classifying"
            )
        if width < 1 or height < 1:
            raise ImageError(f"{name} has no pixels ({width}x{height})")
        image = ImageOps.exif_transpose(image)
        image.load()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name} does not exist: check the path") from None
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"{name} is refused as a decompression bomb ({err}), over the "
            f"{max_pixels / 1e6:.0f}-megapixel limit: downscale it before classifying"
        ) from None
    except UnidentifiedImageError as err:
        raise ImageError(f"{name} is not a readable image ({err}): use a PNG, JPEG, BMP or TIFF file") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{name} is corrupt or truncated ({err}): re-export or re-upload the image") from None
    return _pil_to_rgb(image)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(image))
    # An RGB image is copied once (into the array), not twice.
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """Scale any numeric array to 8 bits: 16-bit data by /257, [0, 1] floats by x255."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3) or array.size == 0:
        raise ImageError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = array.astype(np.float64)
        peak = float(array.max()) if array.size else 0.0
        if np.issubdtype(array.dtype, np.floating) and peak <= 1.0 and array.min() >= 0.0:
            array = array * 255.0
        elif peak > 255:
            array = array / 257.0
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return np.ascontiguousarray(array)
