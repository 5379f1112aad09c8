"""Evaluation plots as PNG files: training curves, ROC curve, confusion matrix, worst mistakes.

Drawn with matplotlib and scikit-learn's displays; they go into the model folder, so the model
card shows them and the Hub repo holds them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

PLOT_FILES = ("training_curves.png", "roc_curve.png", "confusion_matrix.png", "worst_misclassified.png")
CURVE_FILE = "operating_curve.png"


def write_plots(folder, labels, p_defects, threshold: float, history: dict | None = None) -> list[Path]:
    folder = Path(folder)
    written = []
    labels = np.asarray(labels).astype(int)
    p_defects = np.asarray(p_defects)

    if history:
        fig, ax = plt.subplots(figsize=(6, 4))
        for key in ("loss", "seg_loss", "p_defects_loss", "val_loss", "fine_tune_loss", "fine_tune_val_loss"):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], label=key)
        if "val_auc" in history:
            ax2 = ax.twinx()
            # The compact backbone validates every few epochs only; the others leave no gaps.
            scored = [(epoch, auc) for epoch, auc in enumerate(history["val_auc"], 1) if auc is not None]
            ax2.plot(*zip(*scored), "k.--", label="validation AUC")
            ax2.set_ylabel("validation AUC")
            ax2.legend(loc="center right")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(loc="upper right")
        written.append(_save(fig, folder / PLOT_FILES[0]))

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    RocCurveDisplay.from_predictions(labels, p_defects, pos_label=1, name="P(defects)", ax=ax)
    ax.set_title("ROC on the test split")
    written.append(_save(fig, folder / PLOT_FILES[1]))

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ConfusionMatrixDisplay.from_predictions(
        labels, (p_defects >= threshold).astype(int), labels=[1, 0], display_labels=["defects", "no_defects"], ax=ax,
        colorbar=False,
    )
    ax.set_title(f"Test split at threshold {threshold:.3f}")
    written.append(_save(fig, folder / PLOT_FILES[2]))
    return written


def write_worst_misclassified(path, images, names, labels, p_defects, threshold: float, heatmaps, limit: int = 8):
    """The misclassified test images the model was most sure about, with its heat map on top.

    Missed defects first (lowest P(defects)), then false alarms (highest); nothing is written
    when every image is right.
    """
    labels = np.asarray(labels).astype(bool)
    p = np.asarray(p_defects)
    missed = [i for i in np.argsort(p) if labels[i] and p[i] < threshold]
    alarms = [i for i in np.argsort(-p) if not labels[i] and p[i] >= threshold]
    chosen = (missed[: limit // 2] + alarms[: limit // 2])[:limit]
    chosen += (missed[limit // 2 :] + alarms[limit // 2 :])[: limit - len(chosen)]
    if not chosen:
        return None
    fig, axes = plt.subplots(1, len(chosen), figsize=(2.6 * len(chosen), 3.0), squeeze=False)
    for ax, i in zip(axes[0], chosen):
        ax.imshow(images[i], cmap="gray")
        if heatmaps[i] is not None:
            ax.imshow(heatmaps[i], cmap="Reds", alpha=0.35, vmin=0, vmax=1)
        kind = "missed defect" if labels[i] else "false alarm"
        ax.set_title(f"{kind}\nP(defects)={p[i]:.2f}\n{names[i]}", fontsize=7)
        ax.axis("off")
    return _save(fig, Path(path))


def write_operating_curve(folder, curve, point) -> Path:
    """Expected recall and false-alarm rate against the threshold, with 95 % bands, and the stored point."""
    t = np.asarray(curve.thresholds)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, low, high, colour in (("recall", "recall_low", "recall_high", "tab:blue"),
                                    ("false_alarms", "false_alarms_low", "false_alarms_high", "tab:red")):
        ax.plot(t, getattr(curve, name), color=colour, label=f"expected {name.replace('_', ' ')}")
        ax.fill_between(t, getattr(curve, low), getattr(curve, high), color=colour, alpha=0.2)
    ax.axvline(point.threshold, color="k", ls="--", label=f"stored threshold {point.threshold:.3f}")
    ax.set_xscale("logit")
    ax.set_xlabel("threshold on P(defects)")
    ax.set_ylabel("share of images")
    ax.set_title(f"Operating curve ({curve.n_defects} defective, {curve.n_good} defect-free {curve.source} images)", fontsize=9)
    ax.legend(loc="center left", fontsize=8)
    return _save(fig, Path(folder) / CURVE_FILE)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
