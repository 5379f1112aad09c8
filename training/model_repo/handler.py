"""Inference Endpoints handler: `EndpointHandler(path)({"inputs": image, "parameters": {...}})`.

Answers as the Hub's image-classification task does, so `InferenceClient.image_classification`
and other callers that take the first element get the most probable class: a list of
`{"label", "score"}` sorted by score, highest first. The decision is not always the top score
(the stored threshold is rarely 0.5), so every element also carries `verdict`, the label the
model's operating point gives, and the `threshold` it used.

`inputs` may be image bytes, a base64 string of them (optionally a `data:` URL), or a PIL image.
Send 16-bit or other high-bit-depth images as JSON, `{"inputs": "<base64 of the file>"}`:
the serving toolkit turns a raw `image/*` request body into an 8-bit RGB image before this handler
sees it, which clips 16-bit grey levels to white. `InferenceClient` sends JSON whenever a
parameter is given (e.g. `top_k=2`).

`parameters` (all optional): `top_k` (how many labels: 1, or 2 and more for both), `function_to_apply` ("sigmoid" or
"softmax": the same scores for a single sigmoid unit), `operating_point` ("recall=0.95",
`false-alarms=F`, `cost=C`: a point on the stored operating curve) or `threshold` (0 to 1). The
`defect_inference` package beside this file is the same code the Space runs. The Endpoint's
environment variable DEFECT_BACKEND=onnx runs the repo's `model.onnx` on ONNX Runtime instead of Keras.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from defect_inference import DefectClassifier, read_image  # noqa: E402

KNOWN_PARAMETERS = {"top_k", "function_to_apply", "operating_point", "threshold"}


class EndpointHandler:
    def __init__(self, path: str = ""):
        self.classifier = DefectClassifier(path or os.path.dirname(os.path.abspath(__file__)))
        self.classifier.warm_up()

    def __call__(self, data: dict) -> list[dict]:
        inputs = data.get("inputs") if isinstance(data, dict) else data
        if isinstance(inputs, str):
            try:
                inputs = base64.b64decode("".join(inputs.split(",", 1)[-1].split()), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("`inputs` is a string but not base64: send the image file's bytes base64-encoded") from None
        if inputs is None or isinstance(inputs, (dict, list)):
            raise ValueError(
                "`inputs` must be one image: its file's bytes, a base64 string of them, or a PIL image; got "
                + ("nothing" if inputs is None else f"a {type(inputs).__name__}")
            )
        parameters = (data.get("parameters") if isinstance(data, dict) else None) or {}
        top_k, threshold = self._parameters(parameters)
        result = self.classifier.predict([read_image(inputs)], threshold)[0]
        names = self.classifier.class_names
        scores = [{"label": names[0], "score": result.p_defects}, {"label": names[1], "score": 1.0 - result.p_defects}]
        scores.sort(key=lambda s: -s["score"])
        return [{**s, "verdict": result.label, "threshold": threshold} for s in scores[:top_k]]

    def _parameters(self, parameters) -> tuple[int, float]:
        """(top_k, threshold) from the request's parameters; anything else is refused by name."""
        if not isinstance(parameters, dict):
            raise ValueError(f"`parameters` must be a JSON object, got {type(parameters).__name__}")
        unknown = sorted(set(parameters) - KNOWN_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}: this handler takes {', '.join(sorted(KNOWN_PARAMETERS))}")
        top_k = parameters.get("top_k")
        top_k = 2 if top_k is None else top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"`top_k` must be a whole number of at least 1, got {top_k!r}")
        function = parameters.get("function_to_apply")
        if function not in (None, "sigmoid", "softmax"):
            raise ValueError(f"`function_to_apply` {function!r} is not offered: the model's scores are probabilities (sigmoid)")
        request = parameters.get("operating_point")
        if request is None and parameters.get("threshold") is not None:
            request = f"threshold={parameters['threshold']}"
        return top_k, self.classifier.threshold_for(request)
