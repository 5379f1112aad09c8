"""Command line: `python -m training {generate,train,evaluate,predict} ...`; `--help` on each."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.config import TrainConfig  # noqa: E402
from training.data import DataError  # noqa: E402


def _add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per config field, typed and defaulted from the dataclass itself."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} (saved with the model)")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        hint = hints[f.name]
        if typing.get_origin(hint) is tuple:
            inner = typing.get_args(hint)[0]
            group.add_argument(flag, type=inner, nargs="+", default=default, help=f"default: {' '.join(map(str, default))}")
        else:
            group.add_argument(flag, type=hint, default=default, help=f"default: {default}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write the synthetic DAGM-like dataset")
    gen.add_argument("--out", required=True, help="dataset folder to write")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--per-texture-good", type=int, default=120)
    gen.add_argument("--per-texture-defective", type=int, default=60)
    gen.add_argument("--examples", action="store_true", help="write the Space's example images instead")

    tr = sub.add_parser("train", help="train a model and write OUT/model and OUT/metrics.json")
    _add_dataclass_arguments(tr, TrainConfig)

    ev = sub.add_parser("evaluate", help="measure a saved model on a dataset's test split")
    ev.add_argument("--model", required=True, help="model folder or Hub repo id")
    ev.add_argument("--data", required=True, help="dataset folder or Hub dataset id")
    ev.add_argument("--out", help="folder for metrics.json")

    pr = sub.add_parser("predict", help="classify images or folders into a CSV")
    pr.add_argument("--model", required=True, help="model folder or Hub repo id")
    pr.add_argument("--out", required=True, help="CSV file to write")
    pr.add_argument("--batch-size", type=int, default=16)
    pr.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")

    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            from training.synthetic import GenerateConfig, generate, write_examples

            if args.examples:
                print("\n".join(str(p) for p in write_examples(Path(args.out))))
                return 0
            counts = generate(GenerateConfig(Path(args.out), args.seed, args.per_texture_good, args.per_texture_defective))
            print(json.dumps(counts))
        elif args.command == "train":
            from training.train import train

            values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
            metrics = train(TrainConfig.from_dict(values))
            print(json.dumps({k: v for k, v in metrics.items() if k != "per_texture"}, indent=2))
        elif args.command == "evaluate":
            from training.data import load_splits
            from training.evaluate import evaluate_model
            from space.inference import resolve_model_dir

            splits = load_splits(args.data)
            metrics = evaluate_model(resolve_model_dir(args.model), splits.get("test") or splits["train"])
            if args.out:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                (Path(args.out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
            print(json.dumps(metrics, indent=2))
        elif args.command == "predict":
            from training.predict import predict_to_csv

            counts = predict_to_csv(args.model, args.inputs, args.out, args.batch_size)
            print(f"wrote {args.out}: {counts['images']} images, {counts['errors']} unreadable")
            return 1 if counts["errors"] == counts["images"] and counts["images"] else 0
    except (DataError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
