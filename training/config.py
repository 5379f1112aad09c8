"""Every training choice in one typed object, saved beside the model so any run can be repeated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


BACKBONES = ("compact", "efficientnet_b0")
HUB_PREFIX = "tfhub:"
DISTRIBUTE = ("none", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
TEST_TIME_VIEWS = (1, 2, 4, 8)
SAVED_BEFORE = {"test_time_views": 1}


@dataclass
class TrainConfig:
    # data
    data: str = "data/synthetic"
    out: str = "runs/compact"
    val_fraction: float = 0.15
    test_fraction: float = 0.25  # used only when the data has no test split
    seed: int = 0
    # model
    backbone: str = "compact"  # or "efficientnet_b0", or "tfhub:HANDLE" (a TF-Hub feature-vector module)
    weights: str = "imagenet"  # efficientnet_b0 only: "imagenet" (downloaded), "none", or a weights file
    fine_tune: bool = False  # pretrained backbones: then unfreeze the top blocks at a low learning rate
    fine_tune_epochs: int = 5
    image_size: int = 512
    widths: tuple[int, ...] = (16, 32, 32, 64, 64, 64, 64)
    norm: str = "instance"  # or "batch"
    # training
    crop_size: int = 256
    batch_size: int = 16
    epochs: int = 64
    steps_per_epoch: int = 50  # compact: batches per epoch, whatever the dataset size
    # Epochs without a better validation score before stopping. Half the default run: the score is
    # noisy, and one lucky early epoch must not end a run before the learning rate has decayed.
    patience: int = 32
    learning_rate: float = 2e-3
    seg_loss_weight: float = 1.0
    hard_negative_fraction: float = 0.5
    synthetic_fraction: float = 0.3  # defect-free crops that get a generic synthetic anomaly
    # compact: each crop is taken up to this fraction larger or smaller and resized back, and its grey
    # levels raised to a power in [1/(1+g), 1+g]: more normal looks of each surface than the images
    # hold, the one lever that moved recall at 1 % false alarms being more distinct training images
    scale_jitter: float = 0.125
    gamma_jitter: float = 0.25
    mine_every: int = 6  # compact: epochs between hard-negative searches over whole images
    validate_every: int = 2  # compact: epochs between whole-image validations (and the last)
    # compact: whole images are judged in 1, 2, 4 or 8 orientations, the decision features averaged
    # (model.py); 4 costs 4x the inference time (still well under 0.1 s per image on a CPU)
    test_time_views: int = 4
    distribute: str = "none"  # or "mirrored" (all local devices), "multiworker" (TF_CONFIG cluster)
    precision: str = "auto"  # compact: mixed precision where the hardware has it (see devices.py)
    # decision
    target_recall: float = 0.99
    class_names: tuple[str, str] = field(default=("defects", "no_defects"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        # Settings added later, at the value that configs saved before them ran with.
        values = {**SAVED_BEFORE, **values}
        return cls(**values)

    def validate(self) -> None:
        """Refuse settings that cannot work, before any long work starts."""
        if self.backbone not in BACKBONES and not (self.backbone.startswith(HUB_PREFIX) and len(self.backbone) > len(HUB_PREFIX)):
            raise ValueError(
                f"unknown backbone {self.backbone!r}: choose compact, efficientnet_b0, or "
                f"{HUB_PREFIX}HANDLE (a TF-Hub image feature-vector module URL or folder)"
            )
        if self.fine_tune and self.backbone != "efficientnet_b0":
            raise ValueError(f"--fine-tune needs --backbone efficientnet_b0 (got {self.backbone})")
        if self.distribute not in DISTRIBUTE:
            raise ValueError(f"--distribute must be one of {', '.join(DISTRIBUTE)}, got {self.distribute!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.backbone == "efficientnet_b0" and self.weights not in ("imagenet", "none"):
            from pathlib import Path

            if not Path(self.weights).is_file():
                raise ValueError(
                    f"--weights {self.weights!r} is neither 'imagenet', 'none' nor an existing weights file"
                )
        if not 0.0 < self.target_recall <= 1.0:
            raise ValueError(f"--target-recall must be in (0, 1], got {self.target_recall}")
        if self.image_size < 64 or self.image_size % 8:
            # EfficientNet-B0 downsamples 32x; below 64 px its last map is 1x1 and the heat map is empty.
            raise ValueError(f"--image-size must be a multiple of 8 and at least 64, got {self.image_size}")
        if self.backbone == "compact" and (not 32 <= self.crop_size <= self.image_size or self.crop_size % 8):
            raise ValueError(
                f"--crop-size must be a multiple of 8 between 32 and --image-size ({self.image_size}), "
                f"got {self.crop_size}"
            )
        if not 0.0 <= self.scale_jitter < 0.5 or not 0.0 <= self.gamma_jitter < 1.0:
            raise ValueError(
                f"--scale-jitter must be in [0, 0.5) and --gamma-jitter in [0, 1), got {self.scale_jitter} and {self.gamma_jitter}"
            )
        if self.test_time_views not in TEST_TIME_VIEWS:
            raise ValueError(f"--test-time-views must be one of {', '.join(map(str, TEST_TIME_VIEWS))}, got {self.test_time_views}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"--val-fraction must be in (0, 0.5), got {self.val_fraction}")
        for name in ("epochs", "steps_per_epoch", "batch_size", "mine_every", "validate_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
