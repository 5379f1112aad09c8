"""What the default pipeline achieves on the project's own data: the README's results table.

Generates the synthetic dataset (as `make data` does) if it is missing, trains with the settings of
`make demo`, and prints a markdown table of the test-split metrics at the stored threshold, the box
hit rate, the training time and the peak memory; the headline (accuracy, recall, false alarms,
ROC AUC) is the last line.

    .venv/bin/python benchmarks/default_model.py [--data data/synthetic] [--out runs/default] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shlex
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The demo's flags (Makefile DEMO_TRAIN_FLAGS): `train` defaults otherwise.
DEMO_FLAGS = {"target_recall": 0.9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--out", type=Path, default=Path("runs/default"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from training.config import TrainConfig
    from training.synthetic import GenerateConfig, generate
    from training.train import train

    if not (args.data / "train" / "metadata.csv").is_file():
        generate(GenerateConfig(args.data))
    started = time.time()
    metrics = train(TrainConfig(data=str(args.data), out=str(args.out), seed=args.seed, **DEMO_FLAGS))
    wall = time.time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in DEMO_FLAGS.items())
    cm = metrics["confusion_matrix"]["rows_true_columns_predicted"]
    rows = [
        ("test images (defective / defect-free)", f"{metrics['n_test']} ({sum(cm[0])} / {sum(cm[1])})"),
        ("accuracy at the stored threshold", f"{metrics['accuracy']:.3f}"),
        ("defect recall", f"{metrics['recall']:.3f}"),
        ("false alarms (defect-free images flagged)", f"{100 * metrics['false_alarm_rate']:.1f} %"),
        ("ROC AUC", f"{metrics['roc_auc']:.3f}"),
        ("box centre inside the labelled defect", f"{metrics['box_hit_rate']:.2f} of {metrics['box_hit_n']} found defects"),
        ("training + test, 2 CPU cores", f"{wall / 60:.1f} min, peak memory {peak:.1f} GB"),
    ]
    print(f"\n`defect-classifier train --data {shlex.quote(str(args.data))} {flags} --seed {args.seed}`:\n")
    print("| on the generated test split | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(
        f"\ndefault model: accuracy {metrics['accuracy']:.3f}, recall {metrics['recall']:.3f}, "
        f"false alarms {100 * metrics['false_alarm_rate']:.1f} %, ROC AUC {metrics['roc_auc']:.3f}"
    )


if __name__ == "__main__":
    main()
