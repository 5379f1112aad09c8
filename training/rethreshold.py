"""Re-decide an existing model's threshold on a line's own labelled images, without retraining.

The images are scored through the model folder itself (the inference core), the operating curve is
fitted on them, and the threshold the operating point asks for replaces the stored one. Only
`defect_config.json` (threshold, operating point, curve), the curve plot, the card and, in a folder
with `model.onnx`, that file's metadata change: the weights, the tf-keras twin and the test metrics
stay as they were.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from defect_inference import DefectClassifier, load_model_config
from defect_inference.onnx_backend import ONNX_FILE, export_command
from training.config import DEFAULT_OPERATING_POINT
from training.data import load_splits
from training.evaluate import predict_samples
from training.export import restamp_onnx
from training.operating_curve import decide
from training.plots import write_operating_curve

log = logging.getLogger(__name__)


def redecide(model_dir, samples, request: str, source: str, trust_savedmodel=None) -> dict:
    """Re-choose the stored threshold of `model_dir` by `request` on labelled `samples`; return the report."""
    model_dir = Path(model_dir)
    info = load_model_config(model_dir)
    # The Keras model whatever DEFECT_BACKEND says: it scores what the folder's weights say.
    scores = [r.p_defects for r in predict_samples(DefectClassifier(model_dir, trust_savedmodel, backend="keras"), samples)]
    labels = np.array([s.defective for s in samples])
    curve, point, report = decide(request, labels, scores, source=source)
    decided = replace(info, threshold=point.threshold, operating_point=report["operating_point"], operating_curve=curve)
    decided.save(model_dir)
    if (model_dir / ONNX_FILE).is_file() and not restamp_onnx(model_dir / ONNX_FILE, info, decided):
        log.warning("%s was not exported from this model folder: left as it is (the ONNX backend refuses it); %s",
                    model_dir / ONNX_FILE, f"export it again with {export_command(model_dir)}")
    write_operating_curve(model_dir, curve, point)
    report["previous_threshold"] = info.threshold
    if (model_dir / "metrics.json").is_file():
        from training.card import render_model_card

        render_model_card(model_dir)
    return report


def rethreshold(model_dir, data, operating_point: str | None = None, trust_savedmodel=None) -> dict:
    """Re-choose the stored threshold of `model_dir` on every labelled image of `data`; return the report."""
    request = operating_point or load_model_config(model_dir).operating_point or DEFAULT_OPERATING_POINT
    samples = [s for split in load_splits(data).values() for s in split]
    report = redecide(model_dir, samples, request, f"labelled images of {Path(str(data)).name}", trust_savedmodel)
    (Path(model_dir) / "rethreshold.json").write_text(json.dumps(report, indent=2))
    return report
