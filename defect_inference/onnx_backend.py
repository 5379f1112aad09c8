"""The ONNX Runtime backend: the same classifier from `model.onnx`, without TensorFlow.

`defect-classifier export --model DIR --format onnx` writes `model.onnx` into a model folder: the
network's two outputs (P(defects) and the defect map's logits) for images already at the working
size (its input is that square; the resize happens before, as `to_working_size` does it), with
what decides a verdict and a digest of the run's settings in its metadata. It is used only when
asked for (`backend="onnx"`, `--backend onnx`, or DEFECT_BACKEND=onnx for the Space and the
handler), never because a folder happens to hold one, and only when its metadata agrees with the
folder's `defect_config.json`, so a re-decided threshold or another run's file cannot change
verdicts unnoticed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from defect_inference.model_folder import CONFIG_FILE, ModelConfig, ModelFolderError

ONNX_FILE = "model.onnx"
# Its P(defects) and heat map (the map's logits through the sigmoid) agree with the Keras model's within this.
ONNX_TOLERANCE = 1e-4


def onnx_metadata(config: ModelConfig) -> dict[str, str]:
    """What `model.onnx` carries about the decision and the model it was exported from, as ONNX
    metadata (strings); `training_config` is a digest of every setting of the run."""
    settings = json.dumps(config.training_config, sort_keys=True)
    return {
        "output": config.output,
        "class_names": json.dumps(list(config.class_names)),
        "threshold": repr(float(config.threshold)),
        "image_size": str(config.image_size),
        "resize": config.preprocessing.resize,
        "aspect": config.preprocessing.aspect,
        "heatmap_layer": str(config.heatmap_layer),
        "training_config": hashlib.sha256(settings.encode()).hexdigest(),
    }


def stale_fields(stored: dict[str, str], config: ModelConfig) -> list[str]:
    """The metadata fields of a `model.onnx` that disagree with `config`, as "field: there, here"."""
    expected = onnx_metadata(config)
    return [f"{key}: {stored.get(key)!r} there, {value!r} here" for key, value in expected.items() if stored.get(key) != value]


def export_command(model_dir) -> str:
    return (f"`defect-classifier export --model {model_dir} --format onnx` on the model folder (then push it again, "
            "if it came from the Hub)")


class OnnxRunner:
    """Runs `model.onnx` of a model folder: a batch at the working size -> (P(defects), map logits)."""

    def __init__(self, model_dir: Path, config: ModelConfig):
        path = Path(model_dir) / ONNX_FILE
        if not path.is_file():
            raise ModelFolderError(
                f"{model_dir} has no {ONNX_FILE}, which the ONNX backend runs: write it with {export_command(model_dir)}, "
                "or use the Keras backend"
            )
        try:
            import onnxruntime
        except ImportError:
            raise ModelFolderError("the ONNX backend needs onnxruntime: pip install onnxruntime") from None
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        stale = stale_fields(self.session.get_modelmeta().custom_metadata_map, config)
        if stale:
            raise ModelFolderError(
                f"{path} does not match {CONFIG_FILE} ({'; '.join(stale)}): it was exported from another model or "
                f"another state of it; export it again with {export_command(model_dir)}"
            )
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, logits = self.session.run(None, {self.input_name: np.asarray(batch, np.float32)})
        return probs, logits
