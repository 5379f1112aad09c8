"""The inference core of the surface defect classifier: read an image, classify it, locate the defect.

This package is the bottom of the project: training, the CLI, the Space and the Inference
Endpoints handler import it, and it imports none of them, so a Space or a model repo runs with
only this folder beside it. It depends only on what a model folder holds (the Keras files and
`defect_config.json`).
"""

from defect_inference.batch import ROW_COLUMNS, predict_rows
from defect_inference.classifier import DefectClassifier, Prediction, defect_box
from defect_inference.images import IMAGE_SUFFIXES, MAX_PIXELS, ImageError, read_image
from defect_inference.model_folder import (
    CONFIG_FILE,
    HEATMAP_LAYER,
    ModelConfig,
    ModelFolderError,
    Preprocessing,
    load_model_config,
    resolve_model_dir,
)
from defect_inference.operating_point import OperatingCurve, Point, Request
from defect_inference.preprocessing import to_gray, to_working_size

__all__ = [
    "CONFIG_FILE", "HEATMAP_LAYER", "IMAGE_SUFFIXES", "MAX_PIXELS", "ROW_COLUMNS", "DefectClassifier", "ImageError",
    "ModelConfig", "ModelFolderError", "OperatingCurve", "Point", "Prediction", "Request", "Preprocessing", "defect_box", "load_model_config",
    "predict_rows", "read_image", "resolve_model_dir", "to_gray", "to_working_size",
]
