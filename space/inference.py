"""Inference for the surface defect classifier: read any image, classify it, locate the defect.

This is the one implementation of inference. The Space imports it, `python -m training predict`
imports it, and the export step copies it into every model repo beside `handler.py`, so it must
depend only on what a model repo holds (Keras files + `defect_config.json`), never on `training/`.

The model's single sigmoid output is P(defects). Its layer `seg_logits` is a coarse map of where
the defect is; the heat map and the box come from it. A model on a TF-Hub backbone is a tf-keras
SavedModel without Keras 3 files and without such a map: it is loaded through
`keras.layers.TFSMLayer` and gives verdicts without heat map or box.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

CONFIG_FILE = "defect_config.json"
HEATMAP_LAYER = "seg_logits"
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
# A box is drawn around the heat map's peak region: cells above this fraction of the peak.
BOX_FRACTION = 0.5


class ImageError(ValueError):
    """An input that is not a usable image; the message names the problem and the fix."""


def read_image(source, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a path, bytes, PIL image or array into an (H, W, 3) uint8 RGB array.

    Handles every PIL mode (16-bit and float grayscale are scaled, not clipped), EXIF
    orientation, and refuses images too large to decode safely before decoding them.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    name = source if isinstance(source, (str, os.PathLike)) else "the uploaded data"
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
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


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


@dataclass
class Prediction:
    """What the model says about one image; the box is in the original image's pixels."""

    p_defects: float
    label: str
    heatmap: np.ndarray | None  # (H, W) in [0, 1], the original image's size; None without a map
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1, only when label is the defect class

    def probabilities(self, class_names: list[str]) -> dict[str, float]:
        return {class_names[0]: self.p_defects, class_names[1]: 1.0 - self.p_defects}


def resolve_model_dir(model_id: str) -> Path:
    """A local model folder as it is, or a Hub repo id (optionally `id@revision`) downloaded."""
    if Path(model_id).is_dir():
        return Path(model_id)
    from huggingface_hub import snapshot_download

    repo_id, _, revision = model_id.partition("@")
    return Path(snapshot_download(repo_id=repo_id, revision=revision or None))


class DefectClassifier:
    """A loaded model plus everything that travels with it (class names, size, threshold)."""

    def __init__(self, model_dir: str | os.PathLike):
        import keras
        import tensorflow as tf

        model_dir = Path(model_dir)
        config_path = model_dir / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} is missing: {model_dir} is not a model folder written by "
                "`python -m training train` or `export`"
            )
        self.config = json.loads(config_path.read_text())
        self.class_names: list[str] = self.config["class_names"]
        self.image_size: int = int(self.config["image_size"])
        self.threshold: float = float(self.config["threshold"])
        if (model_dir / "config.json").is_file():
            self.model = keras.saving.load_model(model_dir, compile=False)
            heat = self.model.get_layer(HEATMAP_LAYER).output
            both = keras.Model(self.model.inputs, [self.model.outputs[0], heat])
            self._run = tf.function(lambda x: both(x, training=False), reduce_retracing=True)
        else:
            serving = keras.layers.TFSMLayer(str(model_dir), call_endpoint="serving_default")
            self.model = serving
            self._run = tf.function(lambda x: (next(iter(serving(x).values())), None), reduce_retracing=True)

    @classmethod
    def from_pretrained(cls, model_id: str) -> "DefectClassifier":
        return cls(resolve_model_dir(model_id))

    def warm_up(self) -> None:
        self.predict([np.zeros((self.image_size, self.image_size, 3), np.uint8)])

    def _resize(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.shape[:2] == (self.image_size, self.image_size):
            return rgb
        resized = Image.fromarray(rgb).resize((self.image_size, self.image_size), Image.BILINEAR, reducing_gap=3.0)
        return np.asarray(resized)

    def predict(self, images: list[np.ndarray]) -> list[Prediction]:
        """Classify RGB uint8 arrays of any sizes (one batch; callers chunk long lists)."""
        if not images:
            return []
        batch = np.stack([self._resize(img) for img in images]).astype(np.float32)
        probs, heat = self._run(batch)
        probs = np.asarray(probs).reshape(-1)
        heat = [None] * len(images) if heat is None else 1.0 / (1.0 + np.exp(-np.asarray(heat)[..., 0]))
        results = []
        for image, p, h in zip(images, probs, heat):
            height, width = image.shape[:2]
            defective = bool(p >= self.threshold)
            full = None
            if h is not None:
                full = np.asarray(Image.fromarray(h.astype(np.float32)).resize((width, height), Image.BILINEAR))
                full = np.clip(full, 0.0, 1.0)
            results.append(
                Prediction(
                    p_defects=float(p),
                    label=self.class_names[0] if defective else self.class_names[1],
                    heatmap=full,
                    box=defect_box(h, width, height) if defective and h is not None else None,
                )
            )
        return results


def defect_box(heat: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """Box around the connected region of the heat map's peak, mapped to (width, height) pixels."""
    from scipy import ndimage

    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    regions, _ = ndimage.label(heat >= BOX_FRACTION * heat[peak])
    ys, xs = np.nonzero(regions == regions[peak])
    sy, sx = height / heat.shape[0], width / heat.shape[1]
    return (
        int(np.floor(xs.min() * sx)),
        int(np.floor(ys.min() * sy)),
        int(min(width, np.ceil((xs.max() + 1) * sx))),
        int(min(height, np.ceil((ys.max() + 1) * sy))),
    )


ROW_COLUMNS = ("file", "p_defects", "label", "box_x0", "box_y0", "box_x1", "box_y1", "error")


def predict_rows(classifier: DefectClassifier, items, batch_size: int = 16):
    """Yield one CSV-ready row per (name, source) item, in order, batch by batch.

    An unreadable item yields a row with its reason in `error` and no prediction; the others
    are unaffected. Used by the predict CLI and the Space's batch tab alike.
    """
    items = list(items)
    for start in range(0, len(items), batch_size):
        rows, images = [], []
        for name, source in items[start : start + batch_size]:
            try:
                images.append(read_image(source))
                rows.append({"file": name})
            except ImageError as err:
                rows.append({"file": name, "error": str(err)})
        results = iter(classifier.predict(images))
        for row in rows:
            if "error" not in row:
                result = next(results)
                row.update(p_defects=round(result.p_defects, 6), label=result.label)
                if result.box:
                    row.update(zip(ROW_COLUMNS[3:7], result.box))
            yield {column: row.get(column, "") for column in ROW_COLUMNS}
