"""Make the network start the package ships (`--init-weights generated-surfaces`).

    python -m training.make_start [--work runs/make_start]

Generates surfaces with their own seed (other draws than the embedded dataset's, whose test images stay
unseen), trains the compact net with the default settings on every epoch (no time budget, so the command
gives the same weights again on a machine of the same arithmetic: a CPU with bfloat16 trains in it, one
without in float32), and writes its network to `training/starts/generated_surfaces.npz` with a JSON
beside it that says how it was made.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from training.network_start import SHIPPED_STARTS, write_start

NAME = "generated-surfaces"
# Other draws than the embedded dataset (seed 0), and twice as many: more distinct surfaces kept paying.
GENERATOR = {"seed": 1, "per_texture_good": 240, "per_texture_defective": 120}


def make_start(work: Path, dest: Path, generator: dict = GENERATOR, **train_options) -> dict:
    """Generate, train and write the start to `dest`; returns what the JSON beside it says."""
    from training.config import TrainConfig
    from training.synthetic import GenerateConfig, generate
    from training.train import train

    data = work / "data"
    counts = generate(GenerateConfig(data, **generator))
    config = TrainConfig(data=str(data), out=str(work / "run"), time_budget=0, **train_options)
    metrics = train(config)
    write_start(work / "run" / "model", dest)
    made = {
        "start": NAME,
        "made_by": "python -m training.make_start",
        "generator": generator,
        "images": counts,
        "train_config": json.loads((work / "run" / "model" / "defect_config.json").read_text())["training_config"],
        "test_metrics_on_generated_surfaces": {k: metrics[k] for k in ("accuracy", "roc_auc") if k in metrics},
    }
    dest.with_suffix(".json").write_text(json.dumps(made, indent=2) + "\n")
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/make_start"), help="folder for the generated data and the run")
    parser.add_argument("--dest", type=Path, default=SHIPPED_STARTS[NAME], help="the start file to write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(make_start(args.work, args.dest), indent=2))


if __name__ == "__main__":
    main()
