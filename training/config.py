"""Every training choice in one typed object, saved beside the model so any run can be repeated.

Each field carries its help text (and its choices, where it has a fixed set) as metadata: the CLI
builds one option per field from it, `validate` refuses every setting that cannot work before any
data is read, and the model card shows the whole object. `train --config` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from defect_inference.model_folder import ASPECTS, MAX_IMAGE_SIZE
from defect_inference.operating_point import Request
from training.network_start import SHIPPED_STARTS, is_start

HUB_PREFIX = "tfhub:"
PRETRAINED = ("efficientnet_b0",)
BACKBONE_CHOICES = ("compact", *PRETRAINED)
NORMS = ("instance", "batch")
DISTRIBUTE = ("none", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
TEST_TIME_VIEWS = (1, 2, 4, 8)
COMPACT_LAYERS = 7
# Settings added later, at the value that configs saved before them ran with.
SAVED_BEFORE = {"test_time_views": 1, "time_budget": 0.0, "aspect": "stretch"}
DEFAULT_OPERATING_POINT = "cost=2"
# The largest working resolution `--image-size 0` chooses: what the default was when it was fixed.
AUTO_IMAGE_SIZE = 512


def option(default, help: str, choices=None, **kwargs):
    """A config field with its CLI help (and choices) as metadata."""
    metadata = {"help": help} if choices is None else {"help": help, "choices": choices}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class TrainConfig:
    # data
    data: str = option("data/synthetic", "Dataset to train on: a folder in any layout the tool reads, or a Hub dataset id (user/name).")
    out: str = option("runs/compact", "Run folder to write: OUT/model (what is published), OUT/metrics.json, OUT/logs.")
    val_fraction: float = option(0.15, "Share of the training images held out to pick the epoch and the decision threshold.")
    test_fraction: float = option(0.25, "Share held out for the test metrics when the data has no test split of its own.")
    group_pattern: str = option(
        "",
        "A regular expression on file names whose first group (or whole match) names each image's group: near-copies "
        "of one part or capture sequence never land in two splits. A dataset's group column does the same.",
    )
    test_to_train_fraction: float = option(
        0.5,
        "Share of the test split moved into training, stratified by kind of defect, when the train split has no "
        "defective images (MVTec AD keeps every defect under test/).",
    )
    seed: int = option(
        0, "Random seed of splits, initialisation and sampling: the same seed and data repeat a run (if --time-budget did not cut it)."
    )
    # model
    backbone: str = option(
        "compact",
        f"Network: 'compact' (a segmentation net trained from scratch or --init-weights, with a heat map), 'efficientnet_b0' "
        f"(frozen ImageNet backbone) or '{HUB_PREFIX}HANDLE' (a frozen TF-Hub image feature-vector module, URL or folder).",
    )
    weights: str = option("imagenet", "efficientnet_b0 only: 'imagenet' (downloaded once), 'none', or a local weights file.")
    fine_tune: bool = option(False, "efficientnet_b0 only: after the head, also train the backbone's top blocks at a low learning rate.")
    fine_tune_epochs: int = option(5, "efficientnet_b0 only: epochs of training with --fine-tune.")
    image_size: int = option(
        0,
        f"Working resolution: every image is resized to this square (pixels, a multiple of 8) inside the model. 0: from "
        f"the data, the median longer side of the training images rounded up to a multiple of 8, at most {AUTO_IMAGE_SIZE} "
        f"(small photographs are not blown up); the size chosen is saved with the model. Images more than half again "
        f"as large as the largest training image are judged in tiles of this size at the training images' scale.",
    )
    aspect: str = option(
        "stretch",
        "How an image that is not square becomes the working square: 'stretch' (scaled on each axis to the square) or "
        "'fit' (scaled alike on both axes until its longer side fills the square, the rest filled with its mirror "
        "images, so shapes keep their proportions; the saved model alone, without the defect_inference classifier, "
        "still stretches).",
        ASPECTS,
    )
    widths: tuple[int, ...] = option(
        (16, 32, 32, 64, 64, 64, 64), f"compact only: the number of filters of each of its {COMPACT_LAYERS} convolution layers."
    )
    norm: str = option("instance", "compact only: 'instance' (each image normalised by its own statistics, the same in training and use) or 'batch'.", NORMS)
    init_weights: str = option(
        "", "compact only: start from the network (convolutions, normalizations, defect map; same --widths and --norm) "
        "of this compact model folder, e.g. one trained on other surfaces, of a start file (.npz, python -m "
        "training.make_start), or of a start the package ships: "
        "'generated-surfaces', a net trained on generated surfaces and their synthetic defects. '': from scratch."
    )
    # training
    crop_size: int = option(
        256, "compact only: side of the square crops it trains on (a multiple of 8, at most --image-size; cut to the size --image-size 0 chooses)."
    )
    batch_size: int = option(16, "Images (compact: crops) per training step.")
    epochs: int = option(64, "Most epochs to train.")
    steps_per_epoch: int = option(50, "compact only: batches per epoch, whatever the dataset size.")
    # What a line engineer waits for on 2 CPU cores: the default run fits it where bfloat16 exists;
    # a float32 CPU gets fewer epochs and a weaker model (docs/experiments.md), or passes 0.
    time_budget: float = option(
        15.0,
        "compact only: minutes from decoding the images to the fitted decision; the epochs are sized to fit this "
        "machine's speed (measured as it trains) and the learning-rate schedule ends with them, so a run it cuts "
        "depends on the machine and its load. 0: train all --epochs. Not applied with --distribute multiworker "
        "(each worker has its own clock).",
    )
    # Half the default run: the score is noisy, and one lucky early epoch must not end a run before
    # the learning rate has decayed.
    patience: int = option(32, "Epochs without a better validation score before training stops early.")
    learning_rate: float = option(2e-3, "Initial learning rate of Adam (compact: cosine-decayed over the run).")
    seg_loss_weight: float = option(1.0, "compact only: weight of the defect-map loss beside the decision loss.")
    hard_negative_fraction: float = option(0.5, "compact only: share of defect-free crops taken where the model currently sees the most defect-like spot.")
    synthetic_fraction: float = option(0.3, "compact only: share of defect-free crops that get a generic synthetic anomaly and count as defective.")
    # More normal looks of each surface than the images hold: more distinct training images is the
    # lever that moved recall at few false alarms most (docs/experiments.md).
    scale_jitter: float = option(0.125, "compact only: each crop is taken up to this fraction larger or smaller and resized back.")
    gamma_jitter: float = option(0.25, "compact only: each crop's grey levels are raised to a random power in [1/(1+g), 1+g].")
    mine_every: int = option(6, "compact only: epochs between searches for hard negatives over whole images.")
    validate_every: int = option(2, "compact only: epochs between whole-image validations (the last epoch is always validated).")
    test_time_views: int = option(
        4, "compact only: orientations each whole image is judged in, decision features averaged (inference time grows with it).",
        TEST_TIME_VIEWS,
    )
    distribute: str = option("none", "'mirrored': all local devices; 'multiworker': the cluster in TF_CONFIG.", DISTRIBUTE)
    precision: str = option("auto", "compact only: compute precision; 'auto' is mixed precision where the hardware has it natively.", PRECISIONS)
    # decision
    operating_point: str = option(
        DEFAULT_OPERATING_POINT,
        "Where the decision threshold sits, chosen on the validation split's smoothed scores: 'recall=R' (catch at "
        "least R of the defects), 'false-alarms=F' (flag at most F of the defect-free parts), 'cost=C' (one missed "
        "defect costs as much as C false alarms) or 'threshold=T'.",
    )
    class_names: tuple[str, str] = option(("defects", "no_defects"), "The two class names, the defect class first; fixed.", init=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, saved: bool = True) -> "TrainConfig":
        """A config from its fields; `saved` (a model folder's `training_config`) fills a field it
        predates with the value such runs had, a file of settings gets the defaults."""
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        values = {k: v for k, v in values.items() if k != "class_names"}
        if "target_recall" in values:  # how configs saved before operating points said it
            values["operating_point"] = f"recall={values.pop('target_recall')}"
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**{**(SAVED_BEFORE if saved else {}), **values})

    @classmethod
    def from_file(cls, path) -> "TrainConfig":
        """A saved config: `defect_config.json` of a model folder, or a JSON file of settings."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"--config {path} cannot be read as JSON ({err})") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config {path} must hold a JSON object of settings")
        if "training_config" in values:
            return cls.from_dict(values["training_config"])
        return cls.from_dict(values, saved=False)

    def with_working_size(self, image_shapes) -> "TrainConfig":
        """The config with `image_size` 0 resolved from the training images' (height, width), and the
        crop cut to it; an explicit size is kept as given."""
        if self.image_size:
            return self
        longer = sorted(max(shape) for shape in image_shapes)
        size = min(AUTO_IMAGE_SIZE, max(64, -(-longer[len(longer) // 2] // 8) * 8))
        return dataclasses.replace(self, image_size=size, crop_size=min(self.crop_size, size))

    def validate(self) -> None:
        """Refuse settings that cannot work, all at once, before any long work starts."""
        problems = list(self.problems())
        if problems:
            raise ValueError("invalid training settings:\n  " + "\n  ".join(problems) if len(problems) > 1 else problems[0])

    def problems(self):
        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices and value not in choices:
                yield f"--{_flag(f.name)} must be one of {', '.join(map(str, choices))}, got {value!r}"
            if isinstance(value, float) and not math.isfinite(value):
                yield f"--{_flag(f.name)} must be a finite number, got {value}"
        if self.backbone not in BACKBONE_CHOICES and not (self.backbone.startswith(HUB_PREFIX) and len(self.backbone) > len(HUB_PREFIX)):
            yield (
                f"unknown backbone {self.backbone!r}: choose compact, efficientnet_b0, or "
                f"{HUB_PREFIX}HANDLE (a TF-Hub image feature-vector module URL or folder)"
            )
        if self.init_weights and not is_start(self.init_weights):
            yield (
                f"--init-weights {self.init_weights!r} is neither a Keras 3 model folder (no config.json), a start file "
                f"(.npz) nor a start the package ships ({', '.join(SHIPPED_STARTS)})"
            )
        if self.init_weights and self.backbone != "compact":
            yield f"--init-weights needs --backbone compact (got {self.backbone}): only the compact net starts from a start"
        if self.fine_tune and self.backbone != "efficientnet_b0":
            yield f"--fine-tune needs --backbone efficientnet_b0 (got {self.backbone})"
        if self.backbone == "efficientnet_b0" and self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            yield f"--weights {self.weights!r} is neither 'imagenet', 'none' nor an existing weights file"
        try:
            Request.parse(self.operating_point)
        except ValueError as err:
            yield f"--operating-point: {err}"
        if self.image_size and (not 64 <= self.image_size <= MAX_IMAGE_SIZE or self.image_size % 8):
            # EfficientNet-B0 downsamples 32x; below 64 px its last map is 1x1 and the heat map is empty.
            yield f"--image-size must be 0 (from the data) or a multiple of 8 from 64 to {MAX_IMAGE_SIZE}, got {self.image_size}"
        largest = self.image_size or AUTO_IMAGE_SIZE
        if self.backbone == "compact" and (not 32 <= self.crop_size <= largest or self.crop_size % 8):
            yield f"--crop-size must be a multiple of 8 between 32 and --image-size ({largest}), got {self.crop_size}"
        if len(self.widths) != COMPACT_LAYERS or any(not isinstance(w, int) or w < 1 for w in self.widths):
            yield f"--widths must be {COMPACT_LAYERS} positive whole numbers, got {' '.join(map(str, self.widths))}"
        if not 0.0 <= self.scale_jitter < 0.5:
            yield f"--scale-jitter must be in [0, 0.5), got {self.scale_jitter}"
        if not 0.0 <= self.gamma_jitter < 1.0:
            yield f"--gamma-jitter must be in [0, 1), got {self.gamma_jitter}"
        if not 0.0 < self.val_fraction < 0.5:
            yield f"--val-fraction must be in (0, 0.5), got {self.val_fraction}"
        if not 0.0 < self.test_fraction < 0.5:
            yield f"--test-fraction must be in (0, 0.5), got {self.test_fraction}"
        if not 0.0 < self.test_to_train_fraction < 1.0:
            yield f"--test-to-train-fraction must be in (0, 1), got {self.test_to_train_fraction}"
        try:
            re.compile(self.group_pattern)
        except re.error as err:
            yield f"--group-pattern {self.group_pattern!r} is not a regular expression ({err})"
        for name in ("hard_negative_fraction", "synthetic_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                yield f"--{_flag(name)} must be in [0, 1], got {getattr(self, name)}"
        if not self.time_budget >= 0:
            yield f"--time-budget must be 0 (no budget) or a number of minutes above 0, got {self.time_budget}"
        if not self.learning_rate > 0:
            yield f"--learning-rate must be above 0, got {self.learning_rate}"
        if not self.seg_loss_weight >= 0:
            yield f"--seg-loss-weight must be 0 or more, got {self.seg_loss_weight}"
        for name in ("epochs", "steps_per_epoch", "batch_size", "mine_every", "validate_every", "patience", "fine_tune_epochs"):
            if getattr(self, name) < 1:
                yield f"--{_flag(name)} must be at least 1, got {getattr(self, name)}"


def _flag(name: str) -> str:
    return name.replace("_", "-")
