"""The classifier: a loaded model folder that says `defects` or `no_defects` and where.

The model's single sigmoid output is P(defects). Its layer `seg_logits` is a coarse map of where
the defect is; the heat map and the box come from it. A model on a TF-Hub backbone is a tf-keras
SavedModel without Keras 3 files and without such a map: it is loaded through
`keras.layers.TFSMLayer` and gives verdicts without heat map or box. The ONNX backend (see
onnx_backend.py) runs the folder's `model.onnx` instead, without TensorFlow, when asked for.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from defect_inference.model_folder import ModelFolderError, load_model_config, resolve_model_dir
from defect_inference.onnx_backend import ONNX_FILE, OnnxRunner
from defect_inference.operating_point import Point, Request
from defect_inference.preprocessing import content_shape, resized_to, to_working_size
from defect_inference.tiling import TileGrid, cut_tiles, stitch, tile_grid

# A box is drawn around the heat map's peak region: cells above this fraction of the peak.
BOX_FRACTION = 0.5
# Tiles of one large image run through the network this many at a time (bounded memory).
TILES_AT_ONCE = 16


@dataclass
class Prediction:
    """What the model says about one image; the box is in the original image's pixels."""

    p_defects: float
    label: str
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1, only when label is the defect class
    defect_map: np.ndarray | None = None  # the model's own (grid) map in [0, 1]; None without one
    image_size: tuple[int, int] = (0, 0)  # the original image's (height, width)
    tiles: int = 0  # how many tiles it was judged in (tiling.py); 0: whole

    def probabilities(self, class_names: list[str]) -> dict[str, float]:
        return {class_names[0]: self.p_defects, class_names[1]: 1.0 - self.p_defects}

    def heatmap_at(self, height: int, width: int) -> np.ndarray | None:
        """The defect map resized to (height, width), e.g. the size an image is displayed at."""
        if self.defect_map is None:
            return None
        resized = Image.fromarray(self.defect_map.astype(np.float32)).resize((width, height), Image.BILINEAR)
        return np.clip(np.asarray(resized), 0.0, 1.0)

    @functools.cached_property
    def heatmap(self) -> np.ndarray | None:
        """(H, W) in [0, 1] at the original image's size, made when first asked for (a batch of
        large images never pays for maps nobody looks at)."""
        return self.heatmap_at(*self.image_size)


TRUST_VARIABLE = "TRUST_SAVEDMODEL"
BACKEND_VARIABLE = "DEFECT_BACKEND"
BACKENDS = ("keras", "onnx")


class DefectClassifier:
    """A loaded model plus everything that travels with it (class names, image handling, threshold).

    Keras 3 files load with Keras's safe mode, which refuses code inside the model (Lambda layers).
    A folder with only a TensorFlow SavedModel (a TF-Hub backbone's) runs whatever graph it holds,
    which no safe mode checks: it loads only with `trust_savedmodel=True` (or TRUST_SAVEDMODEL=1).
    `backend` is "keras" (the default) or "onnx" (the folder's `model.onnx` on ONNX Runtime); None
    reads DEFECT_BACKEND.
    """

    def __init__(self, model_dir: str | os.PathLike, trust_savedmodel: bool | None = None, backend: str | None = None):
        self.model_dir = model_dir = Path(model_dir)
        self.config = load_model_config(model_dir)
        if trust_savedmodel is None:
            trust_savedmodel = os.environ.get(TRUST_VARIABLE, "") == "1"
        self.backend = resolve_backend(backend)
        self.class_names: list[str] = list(self.config.class_names)
        self.image_size: int = self.config.image_size
        self.threshold: float = self.config.threshold
        self.network = None
        if self.backend == "onnx":
            self.model = None
            self._run = OnnxRunner(model_dir, self.config)
            return
        import keras
        import tensorflow as tf

        if (model_dir / "config.json").is_file():
            self.model = keras.saving.load_model(model_dir, compile=False, safe_mode=True)
            heat = self.model.get_layer(self.config.heatmap_layer).output
            # The network ONNX export converts too: (P(defects), the defect map's logits).
            self.network = both = keras.Model(self.model.inputs, [self.model.outputs[0], heat])
            self._run = tf.function(lambda x: both(x, training=False), reduce_retracing=True)
        else:
            if not trust_savedmodel:
                raise ModelFolderError(
                    f"{model_dir} holds only a TensorFlow SavedModel (no Keras 3 config.json), as a TF-Hub backbone's "
                    "model does. Loading it runs the graph it contains, which no safe mode checks: load it only if you "
                    f"trust where it comes from, with --trust-savedmodel (or {TRUST_VARIABLE}=1)"
                )
            serving = keras.layers.TFSMLayer(str(model_dir), call_endpoint="serving_default")
            self.model = serving
            self._run = tf.function(lambda x: (next(iter(serving(x).values())), None), reduce_retracing=True)

    @classmethod
    def from_pretrained(cls, model_id: str, trust_savedmodel: bool | None = None, backend: str | None = None) -> "DefectClassifier":
        backend = resolve_backend(backend)
        return cls(resolve_model_dir(model_id, only=backend_files(backend)), trust_savedmodel, backend)

    def threshold_for(self, operating_point=None) -> float:
        """The decision threshold for an operating point (`recall=0.95`, `false-alarms=0.01`,
        `cost=20`, `threshold=0.3` or a bare number); None or "" is the stored one."""
        if operating_point is None or (isinstance(operating_point, str) and not operating_point.strip()):
            return self.threshold
        request = Request.parse(operating_point)
        if request.kind == "threshold":
            return request.value
        if self.config.operating_curve is None:
            raise ValueError(
                f"operating point {request} needs the model's operating curve, which this model folder has not: "
                "give a threshold, or re-decide it with `defect-classifier rethreshold`"
            )
        return self.config.operating_curve.choose(request).threshold

    def expected(self, threshold: float) -> Point | None:
        """What a threshold is expected to do on data like the curve's, or None without a curve."""
        curve = self.config.operating_curve
        return curve.at(threshold) if curve else None

    def warm_up(self) -> None:
        self.predict([np.zeros((self.image_size, self.image_size, 3), np.uint8)])

    def predict(self, images: list[np.ndarray], threshold: float | None = None) -> list[Prediction]:
        """Classify RGB uint8 arrays of any sizes (one batch; callers chunk long lists), at the
        stored threshold or the one given. An image far larger than the training images is judged
        in tiles at the training scale (tiling.py)."""
        if not images:
            return []
        threshold = self.threshold if threshold is None else float(threshold)
        grids = [tile_grid(*image.shape[:2], self.image_size, self.config.preprocessing) for image in images]
        judged: list[tuple[float, np.ndarray | None]] = [None] * len(images)
        whole = [i for i, grid in enumerate(grids) if grid is None]
        if whole:
            size, preprocessing = self.image_size, self.config.preprocessing
            batch = np.stack([to_working_size(images[i], size, preprocessing, self.backend == "keras") for i in whole])
            for i, (p, h) in zip(whole, zip(*self._judge(batch))):
                judged[i] = p, None if h is None else content_of(h, content_shape(*images[i].shape[:2], size, preprocessing), size)
        for i, grid in enumerate(grids):
            if grid is not None:
                judged[i] = self._judge_tiles(images[i], grid)
        results = []
        for image, grid, (p, h) in zip(images, grids, judged):
            height, width = image.shape[:2]
            defective = bool(p >= threshold)
            results.append(
                Prediction(
                    p_defects=float(p),
                    label=self.class_names[0] if defective else self.class_names[1],
                    box=defect_box(h, width, height) if defective and h is not None else None,
                    defect_map=h,
                    image_size=(height, width),
                    tiles=len(grid.origins) if grid else 0,
                )
            )
        return results

    def network_runs(self, height: int, width: int) -> int:
        """How many working-size squares an image of this size costs the network: its tiles, or 1."""
        grid = tile_grid(height, width, self.image_size, self.config.preprocessing)
        return len(grid.origins) if grid else 1

    def _resized(self, image: np.ndarray, height: int, width: int) -> np.ndarray:
        return resized_to(image, height, width, self.config.preprocessing, with_tensorflow=self.backend == "keras")

    def _judge(self, batch: np.ndarray) -> tuple[np.ndarray, list]:
        """Working-size squares -> (P(defects) of each, heat map of each or Nones)."""
        probs, heat = self._run(batch)
        probs = np.asarray(probs).reshape(-1)
        return probs, [None] * len(probs) if heat is None else list(heatmap_from_logits(np.asarray(heat)[..., 0]))

    def _judge_tiles(self, image: np.ndarray, grid: TileGrid) -> tuple[float, np.ndarray | None]:
        """One large image: its largest tile's P(defects) and the tiles' stitched heat map."""
        frame, size = self._resized(image, grid.height, grid.width), self.image_size
        probs, maps = [], []
        for first in range(0, len(grid.origins), TILES_AT_ONCE):
            p, h = self._judge(cut_tiles(frame, grid, size, first, TILES_AT_ONCE))
            probs.extend(p)
            maps.extend(h)
        return float(max(probs)), None if maps[0] is None else stitch(np.stack(maps), grid, size)


def content_of(heat: np.ndarray, content: tuple[int, int], size: int) -> np.ndarray:
    """The cells of a working square's map that cover the image itself (all of them unless the
    image was fitted and mirrored: preprocessing.py), so the heat map and box are the image's."""
    stride = size / heat.shape[0]
    return heat[: math.ceil(content[0] / stride), : math.ceil(content[1] / stride)]


def heatmap_from_logits(logits: np.ndarray) -> np.ndarray:
    """The defect map's logits as the heat map, in [0, 1]."""
    return 1.0 / (1.0 + np.exp(-logits))


def resolve_backend(backend: str | None) -> str:
    """The backend asked for (None: DEFECT_BACKEND, else "keras"), refused by name when unknown."""
    chosen = backend or os.environ.get(BACKEND_VARIABLE, "").strip() or "keras"
    if chosen not in BACKENDS:
        where = "backend" if backend else BACKEND_VARIABLE
        raise ValueError(f"{where} must be one of {', '.join(BACKENDS)}, got {chosen!r}")
    return chosen


def backend_files(backend: str | None) -> tuple[str, ...]:
    """The files a backend needs from a Hub repo besides `defect_config.json` (() for Keras's own)."""
    return (ONNX_FILE,) if resolve_backend(backend) == "onnx" else ()


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
