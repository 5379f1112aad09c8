"""The operating point: a policy that holds on new data, a curve that travels with the model, and
decisions that move along it in `evaluate`, `rethreshold`, the Space, its API and the handler."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats

from defect_inference import DefectClassifier, OperatingCurve, Request, load_model_config, read_image
from training.config import DEFAULT_OPERATING_POINT
from training.operating_curve import fit_curve, support_warning

EXAMPLES = Path(__file__).resolve().parents[1] / "space" / "examples"
COMMAND = str(Path(sys.executable).parent / "defect-classifier")


def _draw(rng, n_defects=150, n_good=300, gap=4.0):
    """Scores whose logits are N(+gap/2, 1) for defects and N(-gap/2, 1) for defect-free images."""
    logits = np.concatenate([rng.normal(gap / 2, 1, n_defects), rng.normal(-gap / 2, 1, n_good)])
    labels = np.concatenate([np.ones(n_defects, bool), np.zeros(n_good, bool)])
    return labels, special.expit(logits)


@pytest.mark.parametrize("request_text", ["recall=0.9", "false-alarms=0.05", "cost=1", "cost=20"])
def test_the_policy_lands_where_the_known_distributions_say_and_its_intervals_cover(request_text):
    request = Request.parse(request_text)
    share = 150 / 450
    covered, errors = 0, []
    for seed in range(40):
        labels, p = _draw(np.random.default_rng(seed))
        point = fit_curve(labels, p).choose(request)
        t = special.logit(point.threshold)
        true_recall, true_alarms = stats.norm.sf(t - 2), stats.norm.sf(t + 2)
        if request.kind == "recall":
            errors.append(true_recall - request.value)
        elif request.kind == "false-alarms":
            errors.append(true_alarms - request.value)
        else:  # the least expected cost for two unit-variance normals 4 apart
            errors.append(t - np.log(request.value * share / (1 - share)) / -4.0)
        covered += point.recall_interval[0] <= true_recall <= point.recall_interval[1] and \
            point.false_alarm_interval[0] <= true_alarms <= point.false_alarm_interval[1]
    tolerance = 0.35 if request.kind == "cost" else 0.04
    assert abs(np.mean(errors)) < tolerance / 2 and np.max(np.abs(errors)) < 2 * tolerance, errors
    assert covered >= 0.8 * 40  # both 95 % intervals cover the truth together nearly always


def test_one_weak_validation_defect_does_not_set_the_default_threshold():
    """78 validation defects, one of them scored like a defect-free image: a recall of 0.99 would
    rest on it (and says so); the default does not spend the good parts on it."""
    rng = np.random.default_rng(0)
    labels, p = _draw(rng, 78, 300, gap=6.0)
    p[0] = special.expit(-3.0)  # the weakest defect, among the defect-free scores
    curve = fit_curve(labels, p)
    assert support_warning(curve, "recall=0.99") and "78" in support_warning(curve, "recall=0.99")
    assert curve.choose("recall=0.99").false_alarm_rate > 0.02
    default = curve.choose(DEFAULT_OPERATING_POINT)
    assert default.false_alarm_rate < 0.02 and default.recall > 0.95
    assert support_warning(curve, DEFAULT_OPERATING_POINT) is None


@pytest.mark.parametrize(
    "text, parsed",
    [("recall=0.95", ("recall", 0.95)), ("false-alarms=0.01", ("false-alarms", 0.01)), ("cost=20", ("cost", 20.0)),
     ("threshold=0.3", ("threshold", 0.3)), ("0.25", ("threshold", 0.25)), (" Recall = 0.9 ", ("recall", 0.9)),
     ("false_alarms=0.02", ("false-alarms", 0.02))],
)
def test_requests_are_read_as_quality_engineers_write_them(text, parsed):
    assert (Request.parse(text).kind, Request.parse(text).value) == parsed


@pytest.mark.parametrize("text", ["recall=1.5", "precision=0.9", "cost=0", "recall=", "threshold=nan", "fast"])
def test_bad_requests_name_the_forms(text):
    with pytest.raises(ValueError, match="operating point"):
        Request.parse(text)


def test_the_curve_travels_with_the_model_folder_and_through_the_hub(trained, hub, hf_token):
    from training.publish import push_model

    out, metrics = trained
    local = load_model_config(out / "model")
    assert isinstance(local.operating_curve, OperatingCurve) and local.operating_point == DEFAULT_OPERATING_POINT
    assert local.operating_curve.at(local.threshold).recall == pytest.approx(metrics["validation"]["expected_recall"])
    assert (out / "model" / "operating_curve.png").stat().st_size > 10_000
    push_model(out / "model", "tester/with-curve")
    remote = DefectClassifier.from_pretrained("tester/with-curve")
    assert remote.config.operating_curve == local.operating_curve and remote.threshold == local.threshold
    assert "operating_curve.png" in hub.files("model", "tester/with-curve")


def test_evaluate_and_predict_decide_at_any_operating_point(trained, tiny_data, tmp_path):
    out, _ = trained
    classifier = DefectClassifier(out / "model")
    request = "false-alarms=0.2"
    expected = classifier.threshold_for(request)
    assert expected != classifier.threshold
    run = subprocess.run([COMMAND, "evaluate", "--model", str(out / "model"), "--data", str(tiny_data), "--operating-point", request],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["threshold"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="operating point"):
        classifier.threshold_for("recal=0.9")


def _digest(folder: Path, names) -> dict:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def test_rethreshold_changes_only_the_decision(trained, tiny_data, tmp_path):
    out, _ = trained
    model = tmp_path / "model"
    shutil.copytree(out / "model", model)
    kept = ["model.weights.h5", "config.json", "saved_model.pb", "metrics.json", "roc_curve.png", "handler.py"]
    kept += [str(p.relative_to(model)) for p in (model / "variables").iterdir()]
    before, info = _digest(model, kept), load_model_config(model)
    run = subprocess.run([COMMAND, "rethreshold", "--model", str(model), "--data", str(tiny_data), "--operating-point",
                          "false-alarms=0.1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    after = load_model_config(model)
    assert _digest(model, kept) == before  # weights, twin, test metrics untouched
    assert after.threshold == pytest.approx(report["threshold"]) and after.threshold != info.threshold
    assert after.operating_point == "false-alarms=0.1" and after.training_config == info.training_config
    assert after.operating_curve.n_defects + after.operating_curve.n_good == 160  # every labelled image of the folder
    assert after.operating_curve.source == f"labelled images of {tiny_data.name}"
    assert report["expected_false_alarm_rate"] <= 0.1
    assert f"{after.threshold:.4f}" in (model / "README.md").read_text()
    bad = subprocess.run([COMMAND, "rethreshold", "--model", str(model), "--data", str(tiny_data), "--operating-point", "recall"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "operating point" in bad.stderr


def _flipping_example(classifier):
    """A bundled example whose verdict differs between the two ends of the Space's presets."""
    low, high = classifier.threshold_for("recall=0.99"), classifier.threshold_for("false-alarms=0.01")
    for path in sorted(EXAMPLES.glob("*.png")):
        p = classifier.predict([read_image(path)])[0].p_defects
        if low <= p < high:
            return path, p
    pytest.skip("no bundled example scores between the presets' thresholds for this model")


def test_the_space_api_takes_a_threshold_or_an_operating_point(served):
    from gradio_client import Client, handle_file

    url, classifier = served
    client = Client(url, verbose=False)
    path, p = _flipping_example(classifier)
    at = {}
    for kwargs in ({"threshold": 0.0}, {"threshold": 1.0}, {"operating_point": "recall=0.99"}, {"operating_point": "false-alarms=0.01"}, {}):
        label, _, verdict = client.predict(handle_file(str(path)), api_name="/predict", **kwargs)
        at[json.dumps(kwargs)] = label["label"]
    assert at['{"threshold": 0.0}'] == "defects" and at['{"threshold": 1.0}'] == "no_defects"
    assert at['{"operating_point": "recall=0.99"}'] == "defects" and at['{"operating_point": "false-alarms=0.01"}'] == "no_defects"
    assert at["{}"] == classifier.predict([read_image(path)])[0].label  # the stored threshold by default
    table, _ = client.predict([handle_file(str(path))], api_name="/predict_batch", operating_point="false-alarms=0.01")
    assert table["data"][0][2] == "no_defects"
    with pytest.raises(Exception, match="operating point"):
        client.predict(handle_file(str(path)), api_name="/predict", operating_point="precision=1")


def test_the_handler_takes_an_operating_point_in_its_parameters(trained):
    import importlib.util

    out, _ = trained
    spec = importlib.util.spec_from_file_location("handler_with_parameters", out / "model" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(str(out / "model"))
    path, _ = _flipping_example(handler.classifier)
    data = path.read_bytes()
    verdict = lambda **parameters: handler({"inputs": data, "parameters": parameters})[0]["verdict"]  # noqa: E731
    assert verdict(operating_point="recall=0.99") == "defects" and verdict(operating_point="false-alarms=0.01") == "no_defects"
    assert verdict(threshold=0.0) == "defects" and verdict(threshold=1.0) == "no_defects"
    assert handler({"inputs": data})[0]["verdict"] == handler.classifier.predict([read_image(path)])[0].label


def test_a_curve_of_saturated_scores_round_trips():
    curve = fit_curve([1, 1, 1, 0, 0, 0], [1.0, 1 - 1e-12, 0.97, 0.0, 1e-12, 0.2])
    assert OperatingCurve.from_dict(json.loads(json.dumps(curve.to_dict()))) == curve
    assert np.all(np.diff(curve.thresholds) > 0)
