"""Train a defect classifier: data -> splits -> backbone -> threshold -> export -> test -> card.

This is the orchestrator; how each backbone trains lives behind the registry (backbones.py). The
threshold is chosen on the validation split's operating curve (operating_curve.py), the saved model folder is then measured through the
same inference path users get (`defect_inference.DefectClassifier`), and the card is rendered
from what was measured.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import keras
import tensorflow as tf
from sklearn.model_selection import train_test_split

from training.backbones import backbone_for
from training.card import render_model_card
from training.config import TrainConfig
from training.data import DataError, Sample, load_splits
from training.devices import make_strategy
from training.evaluate import evaluate_model
from training.export import export_model
from training.operating_curve import decide

log = logging.getLogger(__name__)


def split_holdout(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split stratified by class and texture, so every surface is seen in both parts."""
    strata = [f"{s.defective}:{s.texture}" for s in samples]
    counts = {k: strata.count(k) for k in set(strata)}
    if min(counts.values()) < 2 or round(fraction * len(samples)) < len(counts):
        strata = [str(s.defective) for s in samples]
    keep, hold = train_test_split(samples, test_size=fraction, random_state=seed, stratify=strata)
    return keep, hold


def require_enough(samples: list[Sample], where: str, minimum: int = 10) -> None:
    for defective, name in ((True, "defects"), (False, "no_defects")):
        n = sum(s.defective == defective for s in samples)
        if n < minimum:
            raise DataError(f"{where} has {n} {name} image(s); at least {minimum} of each class are needed")


def held_out_splits(config: TrainConfig) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(training, validation, test) samples of `config.data`: the same for the same data and seed."""
    splits = load_splits(config.data)
    train_samples = splits["train"]
    require_enough(train_samples, "the train split")
    test_samples = splits.get("test")
    if not test_samples:
        train_samples, test_samples = split_holdout(train_samples, config.test_fraction, config.seed)
    fit_samples, val_samples = split_holdout(train_samples, config.val_fraction, config.seed)
    require_enough(fit_samples, "the training split")
    log.info("data: %d train, %d validation, %d test images", len(fit_samples), len(val_samples), len(test_samples))
    return fit_samples, val_samples, test_samples


def train(config: TrainConfig) -> dict:
    """Run the whole pipeline and return the test metrics; writes OUT/model and OUT/metrics.json."""
    config.validate()
    backbone = backbone_for(config.backbone)
    started = time.time()
    out = Path(config.out)
    fit_samples, val_samples, test_samples = held_out_splits(config)

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.distribute)
    log.info("training on %d replica(s) (%s)", strategy.num_replicas_in_sync, type(strategy).__name__)
    classifier, history, val_p = backbone.train(config, fit_samples, val_samples, strategy, out)
    train_seconds = time.time() - started

    curve, point, validation = decide(config.operating_point, [s.defective for s in val_samples], val_p)
    model_dir = export_model(
        classifier, config, point.threshold, out / "model", history=history, curve=curve, operating_point=config.operating_point
    )
    # The folder was written just now by this process: a SavedModel-only one is trusted here.
    metrics = evaluate_model(model_dir, test_samples, plots_dir=model_dir, history=history, trust_savedmodel=True)
    metrics.update(train_seconds=round(train_seconds, 1), epochs_run=len(history["loss"]), validation=validation)
    for path in (out / "metrics.json", model_dir / "metrics.json"):
        path.write_text(json.dumps(metrics, indent=2))
    render_model_card(model_dir)
    return metrics
