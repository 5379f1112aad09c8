"""The ONNX Runtime backend: the same classifier from `model.onnx`, without TensorFlow.

`defect-classifier export MODEL --format onnx` writes `model.onnx` into a model folder: the
network's two outputs (P(defects) and the defect map's logits) for images already at the working
size, with what decides a verdict in its metadata. It is used only when asked for (`backend="onnx"`,
`--backend onnx`, or DEFECT_BACKEND=onnx for the Space and the handler), never because a folder
happens to hold one, and only when its metadata agrees with the folder's `defect_config.json`, so
a re-decided threshold or another model's file cannot change verdicts unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from defect_inference.model_folder import CONFIG_FILE, ModelConfig, ModelFolderError

ONNX_FILE = "model.onnx"
# Its outputs agree with the Keras model's within this (P(defects) and the map's logits).
ONNX_TOLERANCE = 1e-4


def onnx_metadata(config: ModelConfig) -> dict[str, str]:
    """What `model.onnx` carries about the decision, as ONNX metadata (strings)."""
    return {
        "output": config.output,
        "class_names": json.dumps(list(config.class_names)),
        "threshold": repr(float(config.threshold)),
        "image_size": str(config.image_size),
        "resize": config.preprocessing.resize,
    }


class OnnxRunner:
    """Runs `model.onnx` of a model folder: a batch at the working size -> (P(defects), map logits)."""

    def __init__(self, model_dir: Path, config: ModelConfig):
        path = Path(model_dir) / ONNX_FILE
        if not path.is_file():
            raise ModelFolderError(
                f"{model_dir} has no {ONNX_FILE}, which the ONNX backend runs: write it with "
                "`defect-classifier export MODEL --format onnx`, or use the Keras backend"
            )
        try:
            import onnxruntime
        except ImportError:
            raise ModelFolderError("the ONNX backend needs onnxruntime: pip install onnxruntime") from None
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        stored = self.session.get_modelmeta().custom_metadata_map
        expected = onnx_metadata(config)
        stale = sorted(key for key, value in expected.items() if stored.get(key) != value)
        if stale:
            raise ModelFolderError(
                f"{path} does not match {CONFIG_FILE} ({', '.join(f'{k}: {stored.get(k)!r} there, {expected[k]!r} here' for k in stale)}): "
                f"it was exported from another state of the model; export it again with `defect-classifier export "
                f"{model_dir} --format onnx`"
            )
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, logits = self.session.run(None, {self.input_name: np.asarray(batch, np.float32)})
        return probs, logits
