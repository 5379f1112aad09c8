"""Measure a saved model on labelled images, through the same inference path users get.

Metrics come from scikit-learn; the decision threshold is the one stored with the model, or the one
an operating point asks for on its stored curve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import metrics as skm
from tqdm import tqdm

from defect_inference import DefectClassifier, Prediction, read_image
from training.data import CLASS_NAMES, Sample, read_mask


def compute_metrics(labels, p_defects, threshold: float, textures=None, defects=None) -> dict:
    """Classification metrics with `defects` as the positive class; accuracy per texture and
    recall per kind of defect where those are known."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(p_defects, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    both = len(set(y)) == 2
    cm = skm.confusion_matrix(y, pred, labels=[1, 0])
    result = {
        "n_test": int(len(y)),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, p)) if both else None,
        "pr_auc": float(skm.average_precision_score(y, p)) if both else None,
        "false_alarm_rate": float(cm[1, 0] / max(1, cm[1].sum())),
        "recall_at_false_alarms": recall_at_false_alarms(y, p) if both else None,
        "confusion_matrix": {"labels": list(CLASS_NAMES), "rows_true_columns_predicted": cm.tolist()},
    }
    if textures is not None and any(t is not None for t in textures):
        textures = np.array([t or "unknown" for t in textures])
        result["per_texture"] = {
            t: {"n": int((textures == t).sum()), "accuracy": float((pred == y)[textures == t].mean())}
            for t in sorted(set(textures))
        }
    if defects is not None and any(defects):
        kinds = np.array([d or "" for d in defects])[y == 1]
        caught = pred[y == 1]
        result["per_defect"] = {
            k: {"n": int((kinds == k).sum()), "recall": float(caught[kinds == k].mean())} for k in sorted(set(kinds) - {""})
        }
    return result


def recall_at_false_alarms(labels, p_defects, rates=(0.01, 0.05)) -> dict[str, float]:
    """The best recall any threshold reaches while flagging at most each share of the defect-free
    images: how well the scores rank, wherever the stored threshold sits."""
    fpr, tpr, _ = skm.roc_curve(labels, p_defects)
    return {f"{rate:g}": float(tpr[fpr <= rate + 1e-12].max()) for rate in rates}


def best_accuracy(labels, p_defects) -> float:
    """The highest accuracy any threshold reaches on these labels: the stored threshold's regret
    is this minus its own accuracy."""
    y = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(p_defects, dtype=np.float64), kind="stable")
    p = np.asarray(p_defects, dtype=np.float64)[order]
    caught = np.concatenate([[0], np.cumsum(y[order])])  # defects at or above each cut
    alarms = np.concatenate([[0], np.cumsum(~y[order])])
    distinct = np.concatenate([[True], p[1:] != p[:-1], [True]])  # cut only between different scores
    correct = caught + ((~y).sum() - alarms)
    return float(correct[distinct].max() / len(y))


def predict_samples(classifier: DefectClassifier, samples: list[Sample], batch_size: int = 16, threshold=None) -> list[Prediction]:
    results = []
    for start in tqdm(range(0, len(samples), batch_size), desc="evaluating", unit="batch", leave=False):
        results += classifier.predict([read_image(s.image) for s in samples[start : start + batch_size]], threshold)
    return results


# A box "on the defect" may be at most this many times the area of the mask's bounding box: a box
# over half the part touches every defect without pointing at it.
BOX_AREA_LIMIT = 4.0


def box_on_defect(sample: Sample, box) -> bool | None:
    """Whether a detected defect's box points at the labelled defect, None where nothing is
    located: against a pixel mask, the box holds mask pixels and is at most BOX_AREA_LIMIT times
    the mask's bounding box; against an ellipse (a weak label), the box centre lies inside it."""
    x0, y0, x1, y1 = box
    if sample.mask is None:
        return None if sample.ellipse is None else bool(sample.ellipse.contains((x0 + x1) / 2, (y0 + y1) / 2))
    mask = read_mask(sample.mask)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    bound = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
    return bool(mask[y0:y1, x0:x1].any()) and (x1 - x0) * (y1 - y0) <= BOX_AREA_LIMIT * bound


def box_hit_rate(samples: list[Sample], results: list[Prediction]) -> tuple[float | None, int]:
    """Share of detected, located defects (mask or ellipse) whose box is on the defect."""
    judged = [box_on_defect(s, r.box) for s, r in zip(samples, results) if s.defective and r.box is not None]
    hits = [hit for hit in judged if hit is not None]
    return (float(np.mean(hits)) if hits else None), len(hits)


def evaluate_model(
    model_dir, samples: list[Sample], plots_dir=None, history: dict | None = None, operating_point=None, trust_savedmodel=None,
    backend=None,
) -> dict:
    """Metrics of the saved model on `samples`, at its stored threshold or at `operating_point`;
    with `plots_dir`, also the evaluation plots there."""
    from training.plots import PLOT_FILES, write_plots, write_worst_misclassified

    classifier = DefectClassifier(model_dir, trust_savedmodel, backend)
    threshold = classifier.threshold_for(operating_point)
    results = predict_samples(classifier, samples, threshold=threshold)
    labels = np.array([s.defective for s in samples])
    p = [r.p_defects for r in results]
    metrics = compute_metrics(labels, p, threshold, [s.texture for s in samples], [s.defect for s in samples])
    metrics["best_accuracy"] = best_accuracy(labels, p)
    metrics["box_hit_rate"], metrics["box_hit_n"] = box_hit_rate(samples, results)
    if plots_dir is not None:
        write_plots(plots_dir, labels, p, threshold, history)
        wrong = [i for i, (y, q) in enumerate(zip(labels, p)) if y != (q >= threshold)]
        images = {i: read_image(samples[i].image) for i in wrong}
        write_worst_misclassified(
            Path(plots_dir) / PLOT_FILES[3], [images.get(i) for i in range(len(samples))],
            [Path(s.name).name for s in samples], labels, p, threshold, [r.heatmap for r in results],
        )
    return metrics
