"""Does the stored decision hold on data the model has not seen? Threshold regret per operating point.

Scores a trained model's validation split (the same one `train` held out), fits the operating curve
on it as `train` does, and for each operating point reports, on the test split and on any further
labelled sets: accuracy at the chosen threshold, the best accuracy any threshold reaches, their
difference (the regret), and recall and false alarms against the expected values and intervals.
The last line is the default operating point's worst regret.

    .venv/bin/python benchmarks/threshold_regret.py --model runs/default/model --data data/synthetic \\
        [--also independent=data/independent] [--points cost=1 cost=2 recall=0.95]
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder written by train")
    parser.add_argument("--data", required=True, help="the data it was trained on (its splits are rebuilt)")
    parser.add_argument("--also", nargs="*", default=[], metavar="NAME=DATA", help="further labelled sets, all splits")
    parser.add_argument("--points", nargs="*", default=["cost=1", "cost=2", "cost=3", "recall=0.9", "recall=0.95", "recall=0.99"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    import numpy as np

    from defect_inference import DefectClassifier
    from training.config import DEFAULT_OPERATING_POINT, TrainConfig
    from training.data import load_splits
    from training.evaluate import best_accuracy, compute_metrics, predict_samples
    from training.operating_curve import fit_curve
    from training.splits import held_out_splits

    classifier = DefectClassifier(args.model)
    config = TrainConfig.from_dict({**classifier.config.training_config, "data": args.data})
    _, val, test, _ = held_out_splits(config)
    sets = {"validation": val, "test split": test}
    for item in args.also:
        name, _, path = item.partition("=")
        sets[name] = [s for split in load_splits(path).values() for s in split]
    scored = {
        name: (np.array([r.p_defects for r in predict_samples(classifier, samples)]), np.array([s.defective for s in samples]))
        for name, samples in sets.items()
    }
    curve = fit_curve(scored["validation"][1], scored["validation"][0])
    print(f"operating curve of {curve.n_defects} defective and {curve.n_good} defect-free validation images")
    worst = {}
    for request in dict.fromkeys([DEFAULT_OPERATING_POINT, *args.points]):
        point = curve.choose(request)
        print(f"\n{request}: {point.describe()}")
        for name, (p, y) in scored.items():
            if name == "validation":
                continue
            m = compute_metrics(y, p, point.threshold)
            regret = best_accuracy(y, p) - m["accuracy"]
            worst[request] = max(worst.get(request, 0.0), regret)
            held = "yes" if m["recall"] >= point.recall_interval[0] else "NO"
            print(
                f"  {name} ({len(y)} images): accuracy {m['accuracy']:.3f}, regret {regret:.3f}, recall {m['recall']:.3f} "
                f"(at least the interval's low end: {held}), false alarms {100 * m['false_alarm_rate']:.1f} %"
            )
    print(f"\ndefault operating point {DEFAULT_OPERATING_POINT}: worst threshold regret {worst[DEFAULT_OPERATING_POINT]:.3f}")


if __name__ == "__main__":
    main()
