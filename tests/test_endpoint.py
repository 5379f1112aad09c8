"""The Inference Endpoints handler, through a real client of the serving contract:
`huggingface_hub.InferenceClient` against tests/endpoint_server.py, which does with each request
what the endpoints' serving toolkit does."""

from __future__ import annotations

import base64
import shutil

import httpx
import numpy as np
import pytest
from huggingface_hub import InferenceClient
from PIL import Image

from defect_inference import DefectClassifier, read_image
from tests.endpoint_server import EndpointServer


@pytest.fixture(scope="module")
def endpoint(trained, tmp_path_factory):
    out, _ = trained
    repo = tmp_path_factory.mktemp("endpoint") / "repo"
    shutil.copytree(out / "model", repo)
    server = EndpointServer(repo).start()
    yield server, DefectClassifier(repo)
    server.stop()


def _test_images(tiny_data, n=4):
    return sorted((tiny_data / "test" / "defects").glob("*.png"))[:n] + sorted((tiny_data / "test" / "no_defects").glob("*.png"))[:n]


def test_scores_come_highest_first_with_the_verdict_and_threshold_of_the_model(endpoint, tiny_data):
    server, classifier = endpoint
    client = InferenceClient(model=server.url)
    for path in _test_images(tiny_data):
        expected = classifier.predict([read_image(path)])[0]
        answer = client.image_classification(path)  # a raw image/png body
        assert [a.score for a in answer] == sorted((a.score for a in answer), reverse=True)
        scores = {a.label: a.score for a in answer}
        assert scores["defects"] == pytest.approx(expected.p_defects, abs=1e-5)
        assert scores["defects"] + scores["no_defects"] == pytest.approx(1.0)
        assert {a.verdict for a in answer} == {expected.label} and {a.threshold for a in answer} == {classifier.threshold}
        top = client.image_classification(path, top_k=1)  # parameters go as JSON with base64 inputs
        assert [(a.label, a.score) for a in top] == [(answer[0].label, pytest.approx(answer[0].score, abs=1e-6))]


def test_the_verdict_follows_the_threshold_not_the_top_score(endpoint, tiny_data):
    server, classifier = endpoint
    path = _test_images(tiny_data)[0]
    p = classifier.predict([read_image(path)])[0].p_defects
    body = {"inputs": base64.b64encode(path.read_bytes()).decode(), "parameters": {"threshold": p / 2 if p < 0.5 else (1 + p) / 2}}
    answer = httpx.post(server.url, json=body).json()
    top_label = "defects" if p >= 0.5 else "no_defects"
    assert answer[0]["label"] == top_label and answer[0]["verdict"] != top_label
    assert answer[0]["threshold"] == pytest.approx(body["parameters"]["threshold"])


def test_a_16_bit_image_arrives_intact_in_the_documented_json_form(endpoint, tiny_data, tmp_path):
    """The toolkit makes a raw image/* body 8-bit RGB (16-bit grey levels clip to white); the
    JSON form carries the file's bytes to the handler's own reader."""
    server, classifier = endpoint
    original = _test_images(tiny_data)[0]
    eight = np.asarray(Image.open(original).convert("L"))
    path = tmp_path / "sixteen.png"
    Image.fromarray(eight.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I")
    expected = classifier.predict([read_image(path)])[0].p_defects
    assert expected == pytest.approx(classifier.predict([read_image(original)])[0].p_defects, abs=1e-5)
    answer = InferenceClient(model=server.url).image_classification(path, top_k=2)
    assert {a.label: a.score for a in answer}["defects"] == pytest.approx(expected, abs=1e-5)
    clipped = np.asarray(Image.open(path).convert("RGB"))  # what the raw form would have sent
    assert set(np.unique(clipped)) <= {0, 255} and (clipped == 255).mean() > 0.99


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"top_k": 0}, "`top_k` must be a whole number"),
        ({"function_to_apply": "none"}, "`function_to_apply` 'none' is not offered"),
        ({"threshold": 2}, "threshold must be from 0 to 1"),
        ({"topk": 1}, "unknown parameter\\(s\\) topk"),
    ],
)
def test_bad_parameters_are_refused_by_name(endpoint, tiny_data, parameters, message):
    server, _ = endpoint
    body = {"inputs": base64.b64encode(_test_images(tiny_data)[0].read_bytes()).decode(), "parameters": parameters}
    response = httpx.post(server.url, json=body)
    assert response.status_code == 400
    assert __import__("re").search(message, response.json()["error"]), response.json()


def test_the_handler_reads_bytes_base64_data_urls_and_pil_images(endpoint, tiny_data):
    server, classifier = endpoint
    path = _test_images(tiny_data)[0]
    raw = path.read_bytes()
    expected = classifier.predict([read_image(path)])[0].p_defects
    encoded = base64.b64encode(raw).decode()
    for inputs in (raw, encoded, f"data:image/png;base64,{encoded}", Image.open(path)):
        answer = server.handler({"inputs": inputs})
        assert {a["label"]: a["score"] for a in answer}["defects"] == pytest.approx(expected, abs=1e-5)
    wrapped = base64.encodebytes(raw).decode()  # line-wrapped, as the base64 command writes it
    assert {a["label"]: a["score"] for a in server.handler({"inputs": wrapped})}["defects"] == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="not base64"):
        server.handler({"inputs": "surface.png"})
    response = httpx.post(server.url, json={"inputs": {"image": encoded}})
    assert response.status_code == 400 and "`inputs` must be one image" in response.json()["error"] and "a dict" in response.json()["error"]
    assert "got nothing" in httpx.post(server.url, json={"image": encoded}).json()["error"]

