"""Generalisation: train and test the default pipeline on surfaces and defects it was not designed on.

`training/synthetic_unseen.py` draws a DAGM-like set from other processes than the generator every
setting was chosen on (other texture families under uneven illumination, other defect kinds), in
the DAGM 2007 competition layout. This script writes two draws, trains `train` with its defaults
on the first, and scores the model on its test split and on the second draw (another seed), with
recall per kind of defect.

    python benchmarks/unseen_surfaces.py --out runs/unseen [--per-class-good 140]

Takes about 11 minutes on 2 cores with the default sizes (1,260 images per draw). The last line is
the headline: accuracy, recall, false alarms and ROC AUC on the second draw.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.data import Sample  # noqa: E402
from training.synthetic_unseen import write_set  # noqa: E402


def summary(metrics: dict) -> str:
    return (
        f"accuracy {metrics['accuracy']:.3f} (best threshold {metrics['best_accuracy']:.3f}: regret "
        f"{metrics['best_accuracy'] - metrics['accuracy']:.3f}), recall {metrics['recall']:.3f}, "
        f"false alarms {100 * metrics['false_alarm_rate']:.1f} %, ROC AUC {metrics['roc_auc']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/unseen"))
    parser.add_argument("--per-class-good", type=int, default=140)
    parser.add_argument("--per-class-defective", type=int, default=70)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from training.config import TrainConfig
    from training.train import train

    sizes = (args.per_class_good, args.per_class_defective)
    first = write_set(args.out / "data", args.seed, *sizes)
    second = write_set(args.out / "second_draw", args.seed + 1, *sizes)
    train(TrainConfig(data=str(args.out / "data"), out=str(args.out / "run"), seed=args.seed))
    second_draw = report(args.out / "run" / "model", first["test"], second["train"] + second["test"])
    print(f"unseen surfaces, default training, second draw: {summary(second_draw)}")


def report(model_dir: Path, own_test: list[Sample], second_draw: list[Sample]) -> dict:
    """Score the model on both sets with the kinds of defect the DAGM layout cannot carry; return
    the second draw's metrics."""
    from training.evaluate import evaluate_model

    results = {}
    for name, samples in (("its test split", own_test), ("a second draw", second_draw)):
        metrics = results[name] = evaluate_model(model_dir, samples)
        print(f"{name} ({metrics['n_test']} images): {summary(metrics)}")
        print("  recall per kind: " + ", ".join(f"{k} {v['recall']:.2f} ({v['n']})" for k, v in metrics["per_defect"].items()))
        print("  accuracy per family: " + ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in metrics["per_texture"].items()))
    return results["a second draw"]


if __name__ == "__main__":
    main()
