"""Command line: `python -m training {generate,train,evaluate,predict,export,push,push-space}`; `--help` on each."""

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
from training.publish import PublishError  # noqa: E402


def _push(model_dir, repo, data, dataset_repo, private, revision=None, message="Upload with python -m training push"):
    from training.publish import push_dataset, push_model

    if dataset_repo:
        print(f"pushed the dataset: {push_dataset(data, dataset_repo, private=private)}")
    if repo:
        url = push_model(model_dir, repo, dataset_repo=dataset_repo, private=private, revision=revision, commit_message=message)
        print(f"pushed the model: {url}")


def _add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per config field, typed and defaulted from the dataclass itself."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} (saved with the model)")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        hint = hints[f.name]
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(hint) is tuple:
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
    hub = tr.add_argument_group("publishing (the token is checked before training starts)")
    hub.add_argument("--push-to-hub", metavar="USER/NAME", help="push OUT/model to this model repo when done")
    hub.add_argument("--dataset-repo", metavar="USER/NAME", help="also push the --data folder as this dataset repo")
    hub.add_argument("--private", action="store_true")

    ex = sub.add_parser("export", help="re-write an existing model folder (tf-keras twin, handler, card)")
    ex.add_argument("--model", required=True, help="the OUT/model folder")

    pu = sub.add_parser("push", help="push a model folder (and optionally its dataset) to the Hub")
    pu.add_argument("--model", required=True, help="the OUT/model folder")
    pu.add_argument("--repo", required=True, metavar="USER/NAME")
    pu.add_argument("--dataset", help="dataset folder to push too")
    pu.add_argument("--dataset-repo", metavar="USER/NAME")
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--revision", help="branch to push to (created if needed)")
    pu.add_argument("--commit-message", default="Upload with python -m training push")

    ps = sub.add_parser("push-space", help="push space/ as a Gradio Space that loads --model-repo")
    ps.add_argument("--repo", required=True, metavar="USER/SPACE")
    ps.add_argument("--model-repo", required=True, metavar="USER/NAME")
    ps.add_argument("--dataset-repo", metavar="USER/NAME", help="dataset repo whose examples/ the Space shows")
    ps.add_argument("--space-dir", default=str(Path(__file__).resolve().parents[1] / "space"))
    ps.add_argument("--private", action="store_true")

    ev = sub.add_parser("evaluate", help="measure a saved model on a dataset's test split")
    ev.add_argument("--model", required=True, help="model folder or Hub repo id")
    ev.add_argument("--data", required=True, help="dataset folder or Hub dataset id")
    ev.add_argument("--out", help="folder for metrics.json and the ROC / confusion-matrix plots")

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
            config = TrainConfig.from_dict(values)
            if args.push_to_hub or args.dataset_repo:
                from training.publish import check_token

                config.validate()
                print(f"Hub token belongs to {check_token()}")
            metrics = train(config)
            print(json.dumps({k: v for k, v in metrics.items() if k not in ("per_texture", "per_defect")}, indent=2))
            if args.push_to_hub or args.dataset_repo:
                _push(Path(config.out) / "model", args.push_to_hub, config.data, args.dataset_repo, args.private)
        elif args.command == "export":
            from training.export import reexport

            print(f"re-exported {reexport(args.model)}")
        elif args.command == "push":
            if bool(args.dataset) != bool(args.dataset_repo):
                parser.error("--dataset and --dataset-repo go together")
            _push(Path(args.model), args.repo, args.dataset, args.dataset_repo, args.private, args.revision, args.commit_message)
        elif args.command == "push-space":
            from training.publish import push_space

            print(f"pushed the Space: {push_space(args.space_dir, args.repo, args.model_repo, args.dataset_repo, args.private)}")
        elif args.command == "evaluate":
            from training.data import load_splits
            from training.evaluate import evaluate_model
            from space.inference import resolve_model_dir

            splits = load_splits(args.data)
            if args.out:
                Path(args.out).mkdir(parents=True, exist_ok=True)
            metrics = evaluate_model(resolve_model_dir(args.model), splits.get("test") or splits["train"], plots_dir=args.out)
            if args.out:
                (Path(args.out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
            print(json.dumps(metrics, indent=2))
        elif args.command == "predict":
            from training.predict import predict_to_csv

            counts = predict_to_csv(args.model, args.inputs, args.out, args.batch_size)
            print(f"wrote {args.out}: {counts['images']} images, {counts['errors']} unreadable")
            return 1 if counts["errors"] == counts["images"] and counts["images"] else 0
    except (DataError, ValueError, FileNotFoundError, FileExistsError, PublishError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
