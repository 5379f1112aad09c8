"""Inference Endpoints handler: `EndpointHandler(path)({"inputs": image})` -> labels with scores.

`inputs` may be image bytes, a base64 string of them, or a PIL image. The decision threshold and
class names are the ones stored with the model (defect_config.json); `parameters` may move the
decision: `{"operating_point": "recall=0.95"}` (or `false-alarms=F`, `cost=C`) along the stored
operating curve, or `{"threshold": 0.3}`. The `defect_inference` package beside this file is the
same code the Space runs.
"""

from __future__ import annotations

import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from defect_inference import DefectClassifier, read_image  # noqa: E402


class EndpointHandler:
    def __init__(self, path: str = ""):
        self.classifier = DefectClassifier(path or os.path.dirname(os.path.abspath(__file__)))
        self.classifier.warm_up()

    def __call__(self, data: dict) -> list[dict]:
        inputs = data.get("inputs", data) if isinstance(data, dict) else data
        if isinstance(inputs, str):
            inputs = base64.b64decode(inputs.split(",", 1)[-1])
        parameters = (data.get("parameters") if isinstance(data, dict) else None) or {}
        request = parameters.get("operating_point")
        if request is None and parameters.get("threshold") is not None:
            request = f"threshold={parameters['threshold']}"
        threshold = self.classifier.threshold_for(request)
        result = self.classifier.predict([read_image(inputs)], threshold)[0]
        names = self.classifier.class_names
        scores = [
            {"label": names[0], "score": result.p_defects},
            {"label": names[1], "score": 1.0 - result.p_defects},
        ]
        return sorted(scores, key=lambda s: (s["label"] != result.label, -s["score"]))
