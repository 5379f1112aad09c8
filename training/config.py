"""Every training choice in one typed object, saved beside the model so any run can be repeated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    # data
    data: str = "data/synthetic"
    out: str = "runs/compact"
    val_fraction: float = 0.15
    test_fraction: float = 0.25  # used only when the data has no test split
    seed: int = 0
    # model
    backbone: str = "compact"
    image_size: int = 512
    widths: tuple[int, ...] = (16, 32, 32, 64, 64, 64, 64)
    norm: str = "instance"  # or "batch"
    # training
    crop_size: int = 256
    batch_size: int = 16
    epochs: int = 24
    patience: int = 12
    learning_rate: float = 2e-3
    seg_loss_weight: float = 1.0
    hard_negative_fraction: float = 0.5
    synthetic_fraction: float = 0.3  # defect-free crops that get a generic synthetic anomaly
    mine_every: int = 3
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
        return cls(**values)

    def validate(self) -> None:
        """Refuse settings that cannot work, before any long work starts."""
        if self.backbone != "compact":
            raise ValueError(f"unknown backbone {self.backbone!r}: this version trains 'compact'")
        if not 0.0 < self.target_recall <= 1.0:
            raise ValueError(f"--target-recall must be in (0, 1], got {self.target_recall}")
        if self.image_size < 64 or self.image_size % 8:
            raise ValueError(f"--image-size must be a multiple of 8 and at least 64, got {self.image_size}")
        if not 32 <= self.crop_size <= self.image_size or self.crop_size % 8:
            raise ValueError(
                f"--crop-size must be a multiple of 8 between 32 and --image-size ({self.image_size}), "
                f"got {self.crop_size}"
            )
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"--val-fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("--epochs and --batch-size must be at least 1")
