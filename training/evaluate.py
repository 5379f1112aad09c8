"""Measure a saved model on labelled images, through the same inference path users get.

Metrics come from scikit-learn; the decision threshold is the one stored with the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import metrics as skm
from tqdm import tqdm

from defect_inference import DefectClassifier, Prediction, read_image
from training.data import CLASS_NAMES, Sample


def defects_to_catch(target_recall: float, n_defects: int) -> int:
    """How many of `n_defects` labelled defects a threshold must catch to reach `target_recall`."""
    return int(np.ceil(target_recall * n_defects))


def choose_threshold(labels: np.ndarray, p_defects: np.ndarray, target_recall: float) -> float:
    """The threshold that reaches `target_recall` on these labels with the fewest false alarms.

    It sits halfway between the lowest defect score that must be caught and the highest
    defect-free score below it, so unseen images get the widest margin on both sides.
    """
    labels = np.asarray(labels).astype(bool)
    p_defects = np.asarray(p_defects, dtype=np.float64)
    positives = np.sort(p_defects[labels])[::-1]
    if len(positives) == 0:
        return 0.5
    must_catch = positives[max(0, defects_to_catch(target_recall, len(positives)) - 1)]
    below = p_defects[~labels & (p_defects < must_catch)]
    lower = below.max() if len(below) else 0.0
    return float((must_catch + lower) / 2)


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


def predict_samples(classifier: DefectClassifier, samples: list[Sample], batch_size: int = 16) -> list[Prediction]:
    results = []
    for start in tqdm(range(0, len(samples), batch_size), desc="evaluating", unit="batch", leave=False):
        results += classifier.predict([read_image(s.image) for s in samples[start : start + batch_size]])
    return results


def box_hit_rate(samples: list[Sample], results: list[Prediction]) -> tuple[float | None, int]:
    """Share of detected, ellipse-labelled defects whose box centre lies inside the ellipse."""
    hits = [
        s.ellipse.contains((r.box[0] + r.box[2]) / 2, (r.box[1] + r.box[3]) / 2)
        for s, r in zip(samples, results)
        if s.defective and s.ellipse is not None and r.box is not None
    ]
    return (float(np.mean(hits)) if hits else None), len(hits)


def evaluate_model(model_dir, samples: list[Sample], plots_dir=None, history: dict | None = None) -> dict:
    """Metrics of the saved model on `samples`; with `plots_dir`, also the evaluation plots there."""
    from training.plots import PLOT_FILES, write_plots, write_worst_misclassified

    classifier = DefectClassifier(model_dir)
    results = predict_samples(classifier, samples)
    labels = np.array([s.defective for s in samples])
    p = [r.p_defects for r in results]
    metrics = compute_metrics(labels, p, classifier.threshold, [s.texture for s in samples], [s.defect for s in samples])
    metrics["box_hit_rate"], metrics["box_hit_n"] = box_hit_rate(samples, results)
    if plots_dir is not None:
        write_plots(plots_dir, labels, p, classifier.threshold, history)
        wrong = [i for i, (y, q) in enumerate(zip(labels, p)) if y != (q >= classifier.threshold)]
        images = {i: read_image(samples[i].image) for i in wrong}
        write_worst_misclassified(
            Path(plots_dir) / PLOT_FILES[3], [images.get(i) for i in range(len(samples))],
            [Path(s.name).name for s in samples], labels, p, classifier.threshold, [r.heatmap for r in results],
        )
    return metrics
