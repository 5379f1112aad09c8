"""The backbone registry: how each kind of network builds, trains, exports and describes itself.

The orchestrator (`train.py`), the exporter and the model card ask the registry instead of
testing backbone names, so a new backbone is one `Backbone` entry in one module (timm's pattern).
Entries: `compact` (compact_training.py: a segmentation net trained from scratch or from a start), and the frozen
pretrained ones in pretrained.py, `efficientnet_b0` and `tfhub:HANDLE`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from training.config import HUB_PREFIX, TrainConfig


@dataclass(frozen=True)
class Backbone:
    name: str
    # (config, fit samples, validation samples, tf.distribute strategy, run folder)
    #   -> (classifier, history, validation P(defects))
    train: Callable
    # (Keras 3 classifier, config) -> the same network in tf-keras for the legacy loader; None when
    # the trained classifier is a tf-keras model already (it is then the only saved form)
    legacy_twin: Callable | None
    # config dict -> (where the weights come from, what was trained), for the model card
    describe: Callable[[dict], tuple[str, str]]
    # config -> orientations a whole image is judged in
    views: Callable[[TrainConfig], int] = lambda config: 1
    # bytes per pixel of a decoded training image (grey or RGB, 8 bits each)
    decoded_channels: int = 3
    # whether large images are judged in tiles (defect_inference/tiling.py): for a net whose defect
    # map has the tiles' stride and whose features were learned on crops
    tiles_large_images: bool = False


_REGISTRY: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    _REGISTRY[backbone.name] = backbone
    return backbone


def backbone_for(choice: str) -> Backbone:
    """The registry entry of a `--backbone` value (`tfhub:HANDLE` -> the `tfhub` entry)."""
    import training.compact_training  # noqa: F401 - each module registers its backbones
    import training.pretrained  # noqa: F401

    key = "tfhub" if choice.startswith(HUB_PREFIX) else choice
    if key not in _REGISTRY:
        raise ValueError(f"unknown backbone {choice!r}: choose {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def fit_verbosity() -> int:
    """Keras `fit(verbose=...)`: a line per epoch, unless the command runs with --quiet."""
    return 2 if logging.getLogger("training").isEnabledFor(logging.INFO) else 0
