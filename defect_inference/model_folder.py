"""The model-folder contract: which files a model folder holds and what `defect_config.json` says.

A model folder is what `train` writes and the Hub receives: the Keras 3 files (`config.json`,
`metadata.json`, `model.weights.h5`), a tf-keras SavedModel of the same network for the legacy
loader, and `defect_config.json`, which carries everything a consumer needs besides the weights:
class names, what the single output means, how images are prepared, and the decision threshold.
It is validated here, once, on every load, so a hand-edited or damaged file is refused with the
field and the fix named instead of flipping verdicts or failing deep inside TensorFlow.

Schema versions: 1 (written before versions existed: no `schema_version`, no `preprocessing`;
such folders resized inside the model with "area" and stretched to a square, which is what version
1 is read as), 2 (adds both), 3 (adds `operating_point`, the request the threshold was chosen by,
and `operating_curve`: see operating_point.py), 4 (adds `preprocessing.tile_above` and `tile_scale`:
see tiling.py; a folder without tiling is still written as version 3), 5 (adds `preprocessing.aspect`
"fit"; a folder that stretches is written as before). Older folders load with no curve and judge
every image whole.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from defect_inference.operating_point import OperatingCurve, Request

CONFIG_FILE = "defect_config.json"
KERAS_FILES = ("config.json", "metadata.json", "model.weights.h5")
SAVEDMODEL_FILES = (CONFIG_FILE, "saved_model.pb", "keras_metadata.pb", "fingerprint.pb", "variables/*", "assets/*")
HEATMAP_LAYER = "seg_logits"
SCHEMA_VERSION = 5
# The largest working resolution a model folder may have (a square of it is one network input).
MAX_IMAGE_SIZE = 8192


class ModelFolderError(ValueError):
    """A model folder or `defect_config.json` that cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB uint8 image becomes the network's input; the saved model does the same inside.

    `resize` is the interpolation of the resize into the `image_size` square (the saved model's
    `resize` layer uses it too). `aspect` is "stretch" (an image is scaled to the square on both
    axes) or "fit" (scaled alike on both axes until its longer side fills the square, the rest of
    the square filled with the image's mirror images: see preprocessing.py); heat maps and boxes
    are mapped back to the original pixels either way. An image whose longer
    side is above `tile_above` pixels (0: none) is instead scaled by `tile_scale` and judged in
    working-size tiles (tiling.py), so a small defect on a large frame keeps the size the model
    learned defects at.
    """

    resize: str = "area"
    aspect: str = "stretch"
    tile_above: int = 0
    tile_scale: float = 1.0


RESIZE_METHODS = ("area", "bilinear")
TILING_FIELDS = ("tile_above", "tile_scale")
ASPECTS = ("stretch", "fit")


@dataclass(frozen=True)
class ModelConfig:
    """The parsed, validated `defect_config.json`."""

    class_names: tuple[str, str]
    image_size: int
    threshold: float
    heatmap_layer: str | None = HEATMAP_LAYER
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    training_config: dict = field(default_factory=dict)
    operating_point: str | None = None  # the request the threshold was chosen by, e.g. "recall=0.95"
    operating_curve: OperatingCurve | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def output(self) -> str:
        return f"a single sigmoid unit: P({self.class_names[0]})"

    def to_json(self) -> str:
        values = asdict(self)
        values["class_names"] = list(self.class_names)
        values["operating_curve"] = self.operating_curve.to_dict() if self.operating_curve else None
        version, tiled = values.pop("schema_version"), bool(self.preprocessing.tile_above)
        fitted = self.preprocessing.aspect != "stretch"
        if not fitted:
            # Older copies of the core still read a file that needs nothing newer: version 4 with
            # tiling, version 3 without.
            version = min(version, 4 if tiled else 3)
        if not tiled:
            values["preprocessing"] = {k: v for k, v in values["preprocessing"].items() if k not in TILING_FIELDS}
        values = {
            "schema_version": version,
            "output": self.output,
            "input": "RGB or grayscale-as-RGB images, values 0-255, any size (resized inside the model"
                     + ("; the defect_inference classifier judges images longer than preprocessing.tile_above px in tiles" if tiled else "")
                     + ("; the defect_inference classifier keeps their aspect, the saved model alone stretches them)" if fitted else ")"),
            **values,
        }
        return json.dumps(values, indent=2)

    def save(self, model_dir) -> Path:
        path = Path(model_dir) / CONFIG_FILE
        path.write_text(self.to_json())
        return path


def load_model_config(model_dir) -> ModelConfig:
    """Read and validate `model_dir/defect_config.json`; every problem is a ModelFolderError."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise ModelFolderError(
            f"{path} is missing: {model_dir} is not a model folder written by `defect-classifier train` or `export`"
        )
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path} is not valid JSON ({err}): re-export the model folder") from None
    return parse_model_config(values, str(path))


def parse_model_config(values, where: str = CONFIG_FILE) -> ModelConfig:
    def bad(name: str, problem: str):
        return ModelFolderError(f"{where}: `{name}` {problem}; re-export the model folder or restore the file")

    if not isinstance(values, dict):
        raise bad("(top level)", "is not a JSON object")
    version = values.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad("schema_version", f"must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ModelFolderError(
            f"{where} has schema version {version}, newer than this version of the tool reads "
            f"({SCHEMA_VERSION}): upgrade the package"
        )
    names = values.get("class_names")
    if not (isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) and n for n in names)
            and names[0] != names[1]):
        raise bad("class_names", f"must be two different names, the defect class first; got {names!r}")
    size = values.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= MAX_IMAGE_SIZE:
        raise bad("image_size", f"must be a whole number of pixels from 8 to {MAX_IMAGE_SIZE}, got {size!r}")
    threshold = values.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or not 0.0 <= threshold <= 1.0:
        raise bad("threshold", f"must be a probability from 0 to 1, got {threshold!r}")
    heatmap = values.get("heatmap_layer")
    if heatmap is not None and not (isinstance(heatmap, str) and heatmap):
        raise bad("heatmap_layer", f"must be a layer name or null, got {heatmap!r}")
    training = values.get("training_config", {})
    if not isinstance(training, dict):
        raise bad("training_config", "must be a JSON object")
    if "image_size" in training and training["image_size"] != size:
        raise bad("image_size", f"is {size} but the model was trained at {training['image_size']} (training_config)")
    steps = values.get("preprocessing", {})
    if not isinstance(steps, dict) or set(steps) - {f.name for f in fields(Preprocessing)}:
        raise bad("preprocessing", f"must hold only {', '.join(f'`{f.name}`' for f in fields(Preprocessing))}, got {steps!r}")
    preprocessing = Preprocessing(**steps)
    request = values.get("operating_point")
    if request is not None:
        try:
            request = str(Request.parse(request))
        except ValueError as err:
            raise bad("operating_point", str(err)) from None
    curve = values.get("operating_curve")
    if curve is not None:
        if not isinstance(curve, dict):
            raise bad("operating_curve", "must be a JSON object")
        try:
            curve = OperatingCurve.from_dict(curve)
        except ValueError as err:
            raise bad("operating_curve", str(err)) from None
    if preprocessing.resize not in RESIZE_METHODS:
        raise bad("preprocessing.resize", f"must be one of {', '.join(RESIZE_METHODS)}, got {preprocessing.resize!r}")
    if preprocessing.aspect not in ASPECTS:
        raise bad("preprocessing.aspect", f"must be one of {', '.join(ASPECTS)}, got {preprocessing.aspect!r}")
    if preprocessing.aspect != "stretch" and version < 5:
        raise bad("preprocessing.aspect", f"{preprocessing.aspect!r} needs schema version 5, the file says {version}")
    above, scale = preprocessing.tile_above, preprocessing.tile_scale
    if not isinstance(above, int) or isinstance(above, bool) or above < 0:
        raise bad("preprocessing.tile_above", f"must be 0 (never tile) or a whole number of pixels, got {above!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 < scale < math.inf:
        raise bad("preprocessing.tile_scale", f"must be a scale factor above 0, got {scale!r}")
    return ModelConfig(tuple(names), size, float(threshold), heatmap, preprocessing, training, request, curve)


HUB_SCHEME = "hf://"
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+(@[\w./-]+)?")


def is_hub_repo_id(model_id: str) -> bool:
    """Whether `model_id` names a Hub repo (`user/name`, `user/name@revision` or `hf://user/name`)
    rather than a local folder. Anything that looks like a path is a path: a local folder whose
    name has a typo must fail as a missing folder, never download and run a repo of that name."""
    if model_id.startswith(HUB_SCHEME):
        return True
    if not _REPO_ID.fullmatch(model_id) or Path(model_id).exists():
        return False
    return not Path(model_id.split("/", 1)[0]).is_dir()


def resolve_model_dir(model_id: str | os.PathLike, only: tuple[str, ...] = ()) -> Path:
    """A local model folder as it is, or a Hub repo id (optionally `id@revision`) downloaded: the
    files `only` names with `defect_config.json`, or without it what the Keras backend loads."""
    text = os.fspath(model_id)
    if isinstance(model_id, os.PathLike) or not is_hub_repo_id(text):
        path = Path(text).expanduser()
        if not path.is_dir():
            raise ModelFolderError(
                f"{text} is not a folder: pass a model folder, or a Hub repo as user/name or {HUB_SCHEME}user/name"
            )
        return path
    from huggingface_hub import snapshot_download

    repo_id, _, revision = text.removeprefix(HUB_SCHEME).partition("@")
    if only:
        return Path(snapshot_download(repo_id=repo_id, revision=revision or None, allow_patterns=[CONFIG_FILE, *only]))
    # Only what loading needs (not the legacy twin, plots, logs or the bundled code): the Keras 3
    # files, or for a TF-Hub model, which has none, its SavedModel.
    folder = Path(snapshot_download(repo_id=repo_id, revision=revision or None, allow_patterns=[CONFIG_FILE, *KERAS_FILES]))
    if not (folder / KERAS_FILES[0]).is_file():
        folder = Path(snapshot_download(repo_id=repo_id, revision=revision or None, allow_patterns=list(SAVEDMODEL_FILES)))
    return folder
