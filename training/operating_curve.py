"""Fit the operating curve on held-out labelled scores: what each threshold is expected to do on new data.

Why smoothed: a threshold read off the validation scores themselves rests on single images (for a
high recall target, on the weakest defect), so it moves with every new draw of data. Each class's
scores are smoothed in logit space by a Gaussian kernel (scipy's `gaussian_kde` bandwidth, Scott's
rule), and the expected recall and false-alarm rate at a threshold are the smoothed shares above
it; the 95 % intervals are Wilson score intervals for that share over the images of the class.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import special, stats

from defect_inference.operating_point import OperatingCurve, Point, Request
from training.evaluate import compute_metrics

log = logging.getLogger(__name__)

GRID = 400
Z95 = 1.959963984540054


def wilson(share: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """95 % Wilson score interval of a proportion observed over n trials."""
    centre = (share + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * np.sqrt(share * (1 - share) / n + Z95**2 / (4 * n**2))
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def _smoothed_share_above(logits: np.ndarray, grid: np.ndarray) -> np.ndarray:
    if len(logits) > 1 and np.ptp(logits) > 0:
        bandwidth = stats.gaussian_kde(logits).factor * logits.std(ddof=1)
    else:
        bandwidth = 0.5
    return special.ndtr((logits[None, :] - grid[:, None]) / bandwidth).mean(axis=1)


def fit_curve(labels, p_defects, source: str = "validation split") -> OperatingCurve:
    labels = np.asarray(labels).astype(bool)
    p = np.clip(np.asarray(p_defects, dtype=np.float64), 1e-7, 1 - 1e-7)
    if labels.all() or not labels.any():
        raise ValueError(f"the {source} needs images of both classes to measure an operating curve")
    logits = special.logit(p)
    spread = max(float(logits.std()), 0.5)
    # Within +-25 logits every threshold is a distinct float64 probability.
    grid = np.linspace(max(logits.min() - 3 * spread, -25.0), min(logits.max() + 3 * spread, 25.0), GRID)
    recall = _smoothed_share_above(logits[labels], grid)
    alarms = _smoothed_share_above(logits[~labels], grid)
    n_defects, n_good = int(labels.sum()), int((~labels).sum())
    r_low, r_high = wilson(recall, n_defects)
    f_low, f_high = wilson(alarms, n_good)
    return OperatingCurve(
        tuple(special.expit(grid)), tuple(recall), tuple(r_low), tuple(r_high), tuple(alarms), tuple(f_low),
        tuple(f_high), n_defects, n_good, source,
    )


def support_warning(curve: OperatingCurve, request) -> str | None:
    """Why the curve's data cannot support a request, or None. By the rule of three, showing a
    miss (or false-alarm) rate below r at 95 % takes about 3 / r images of that class."""
    request = Request.parse(request)
    if request.kind == "recall" and request.value > 1 - 3 / curve.n_defects:
        return (
            f"recall {request.value:g} needs about {int(np.ceil(3 / max(1 - request.value, 1e-9)))} defective "
            f"validation images to be shown; the {curve.source} has {curve.n_defects}, so the threshold rests on "
            "its weakest defects: expect many false alarms, or use more data (--val-fraction, or `rethreshold` "
            "with a larger labelled folder)"
        )
    if request.kind == "false-alarms" and request.value < 3 / curve.n_good:
        return (
            f"false alarms {request.value:g} need about {int(np.ceil(3 / max(request.value, 1e-9)))} defect-free "
            f"validation images to be shown; the {curve.source} has {curve.n_good}"
        )
    return None


def decide(request, labels, p_defects, source: str = "validation split") -> tuple[OperatingCurve, Point, dict]:
    """Fit the curve on held-out scores, choose the threshold the request asks for, and log what it
    is expected to do, with a warning when the data cannot support the request."""
    request = str(Request.parse(request))
    curve = fit_curve(labels, p_defects, source)
    point = curve.choose(request)
    warning = support_warning(curve, request)
    log.info(
        "operating point %s on the %s (%d defective, %d defect-free images): %s",
        request, source, curve.n_defects, curve.n_good, point.describe(),
    )
    if warning:
        log.warning(warning)
    seen = compute_metrics(labels, p_defects, point.threshold)
    report = {
        "source": source, "n": seen["n_test"], "n_defects": curve.n_defects, "n_good": curve.n_good,
        "operating_point": request, "threshold": point.threshold,
        "expected_recall": point.recall, "expected_recall_interval": list(point.recall_interval),
        "expected_false_alarm_rate": point.false_alarm_rate, "expected_false_alarm_interval": list(point.false_alarm_interval),
        "recall": seen["recall"], "false_alarm_rate": seen["false_alarm_rate"], "warning": warning,
    }
    return curve, point, report
