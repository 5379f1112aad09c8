"""Train a defect classifier: data -> splits -> backbone -> threshold -> export -> test -> card.

This is the orchestrator; how each backbone trains lives behind the registry (backbones.py). The
threshold is chosen on the validation split's operating curve (operating_curve.py), the saved model folder is then measured through the
same inference path users get (`defect_inference.DefectClassifier`), and the card is rendered
from what was measured.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import keras
import tensorflow as tf

from defect_inference import Preprocessing
from defect_inference.tiling import tiling_rule
from training.backbones import backbone_for
from training.card import render_model_card
from training.config import TrainConfig
from training.devices import make_strategy
from training.evaluate import evaluate_model
from training.data import check_memory, check_readable, describe_source
from training.export import check_model_dir, export_model
from training.operating_curve import decide
from training.splits import held_out_splits

log = logging.getLogger(__name__)


def train(config: TrainConfig) -> dict:
    """Run the whole pipeline and return the test metrics; writes OUT/model and OUT/metrics.json."""
    config.validate()
    backbone = backbone_for(config.backbone)
    started = time.time()
    out = Path(config.out)
    check_model_dir(out / "model")
    fit_samples, val_samples, test_samples, how = held_out_splits(config)
    shapes = check_readable(fit_samples + val_samples + test_samples)
    config = config.with_working_size(shapes[: len(fit_samples)])
    log.info("working resolution: %d px", config.image_size)
    preprocessing = Preprocessing(aspect=config.aspect)
    if backbone.tiles_large_images:
        preprocessing = tiling_rule(shapes[: len(fit_samples) + len(val_samples)], config.image_size, config.aspect)
        log.info("images longer than %d px will be judged in tiles at scale %.3g", preprocessing.tile_above, preprocessing.tile_scale)
    held = check_memory(len(fit_samples) + len(val_samples), config.image_size, backbone.decoded_channels)
    log.info("decoded training and validation images: %.2f GB", held / 1e9)
    # OUT/logs is this run's (and is published with its model): an earlier run's curves go.
    shutil.rmtree(out / "logs", ignore_errors=True)

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.distribute)
    log.info("training on %d replica(s) (%s)", strategy.num_replicas_in_sync, type(strategy).__name__)
    classifier, history, val_p = backbone.train(config, fit_samples, val_samples, strategy, out)
    train_seconds = time.time() - started

    curve, point, validation = decide(config.operating_point, [s.defective for s in val_samples], val_p)
    model_dir = export_model(
        classifier, config, point.threshold, out / "model", history=history, curve=curve, operating_point=config.operating_point,
        preprocessing=preprocessing,
    )
    # The folder was written just now by this process: a SavedModel-only one is trusted here, and
    # it has no model.onnx whatever DEFECT_BACKEND says.
    metrics = evaluate_model(model_dir, test_samples, plots_dir=model_dir, history=history, trust_savedmodel=True, backend="keras")
    metrics.update(train_seconds=round(train_seconds, 1), epochs_run=len(history["loss"]), validation=validation, splits=how,
                   data=describe_source(config.data))
    for path in (out / "metrics.json", model_dir / "metrics.json"):
        path.write_text(json.dumps(metrics, indent=2))
    render_model_card(model_dir)
    return metrics
