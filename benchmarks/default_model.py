"""What the default pipeline achieves on the project's own data: the README's results table.

Generates the synthetic dataset (as `make data` does) if it is missing, trains with the default
settings (what `make demo` runs), and prints a markdown table of the test-split metrics at the stored threshold, the box
hit rate, the training time and the peak memory; the headline (accuracy, recall, false alarms,
ROC AUC) is the last line.

    .venv/bin/python benchmarks/default_model.py [--data data/synthetic] [--out runs/default] [--seed 0] [--reuse] [TRAIN OPTIONS]

Any `train` option after the benchmark's own (e.g. `--time-budget 0`) changes that setting; the
command printed above the table names them.

`--reuse` takes the model that an earlier run of the same settings wrote to OUT instead of training
again, and re-decides its threshold on the same validation split as `train` does (training does not
depend on the decision policy), then measures it: for a change that touches only the decision.
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

def reuse(config) -> dict:
    """The metrics `train` would report for the model already in config.out, decided anew."""
    import json
    from dataclasses import replace

    from training.config import TrainConfig
    from training.data import check_readable
    from training.evaluate import evaluate_model
    from training.rethreshold import redecide
    from training.splits import held_out_splits

    model_dir = Path(config.out) / "model"
    saved = TrainConfig.from_file(model_dir / "defect_config.json")
    fit, val, test, _ = held_out_splits(config)
    if replace(saved, operating_point=config.operating_point) != config.with_working_size(check_readable(fit)):
        raise SystemExit(f"{model_dir} was trained with other settings than the defaults: train it again")
    old = json.loads((model_dir / "metrics.json").read_text())
    report = redecide(model_dir, val, config.operating_point, "validation split")
    metrics = evaluate_model(model_dir, test, plots_dir=model_dir)
    metrics.update(train_seconds=old["train_seconds"], epochs_run=old["epochs_run"], validation=report)
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--out", type=Path, default=Path("runs/default"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="re-decide and re-measure the model already in OUT")
    args, rest = parser.parse_known_args()
    from training.cli import train_overrides

    changed = train_overrides(rest, parser.prog)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from training.config import TrainConfig
    from training.synthetic import GenerateConfig, generate
    from training.train import train

    if not (args.data / "train" / "metadata.csv").is_file():
        generate(GenerateConfig(args.data))
    config = TrainConfig(data=str(args.data), out=str(args.out), seed=args.seed, **changed)
    config.validate()
    started = time.time()
    metrics = reuse(config) if args.reuse else train(config)
    wall = time.time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    cost = "(the earlier run)" if args.reuse else f"({wall / 60:.1f} min with decoding and the test, peak memory {peak:.1f} GB)"
    cm = metrics["confusion_matrix"]["rows_true_columns_predicted"]
    val = metrics["validation"]
    rows = [
        ("test images (defective / defect-free)", f"{metrics['n_test']} ({sum(cm[0])} / {sum(cm[1])})"),
        ("accuracy at the stored threshold (best any threshold reaches)", f"{metrics['accuracy']:.3f} ({metrics['best_accuracy']:.3f})"),
        ("defect recall (expected on validation data, 95 % interval)", f"{metrics['recall']:.3f} ({val['expected_recall']:.3f}, {val['expected_recall_interval'][0]:.3f}-{val['expected_recall_interval'][1]:.3f})"),
        ("false alarms (expected, 95 % interval)", f"{100 * metrics['false_alarm_rate']:.1f} % ({100 * val['expected_false_alarm_rate']:.1f} %, {100 * val['expected_false_alarm_interval'][0]:.1f}-{100 * val['expected_false_alarm_interval'][1]:.1f} %)"),
        ("ROC AUC", f"{metrics['roc_auc']:.3f}"),
        ("box centre inside the labelled defect", f"{metrics['box_hit_rate']:.2f} of {metrics['box_hit_n']} found defects"),
        ("training on 2 CPU cores", f"{metrics['train_seconds'] / 60:.1f} min {cost}"),
    ]
    given = "".join(f" {shlex.quote(option)}" for option in rest)
    print(f"\n`defect-classifier train --data {shlex.quote(str(args.data))} --seed {args.seed}{given}` (operating point {val['operating_point']}):\n")
    print("| on the generated test split | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(
        f"\ndefault model: accuracy {metrics['accuracy']:.3f}, recall {metrics['recall']:.3f}, "
        f"false alarms {100 * metrics['false_alarm_rate']:.1f} %, ROC AUC {metrics['roc_auc']:.3f}"
    )


if __name__ == "__main__":
    main()
