"""The `defect-classifier` command: generate | train | evaluate | predict | rethreshold | export | push | push-space.

`defect-classifier COMMAND --help` explains each; `python -m training` is the same command. Status
goes through `logging` (`--verbose` for more, `--quiet` for warnings only, which also hides the
progress bars); a command's result (metrics, file names, URLs) goes to standard output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import typing
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from defect_inference.classifier import BACKENDS, backend_files  # noqa: E402
from defect_inference.operating_point import REQUEST_HELP, Request  # noqa: E402
from training.config import TrainConfig  # noqa: E402

PROG = "defect-classifier"
SPACE_DIR = Path(__file__).resolve().parents[1] / "space"
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
log = logging.getLogger(PROG)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def repo_id(text: str) -> str:
    if not REPO_ID.fullmatch(text) or ".." in text or text.endswith((".", "-")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Hub repo id: use user/name (letters, digits, . _ -)")
    return text


BACKEND_HELP = "keras (default), or onnx: the folder's model.onnx on ONNX Runtime (written by `export --model DIR --format onnx`)."
LICENSE_HELP = ("Licence of the published data and model, as a Hub licence id (e.g. cc-by-nc-sa-4.0): the data's terms. "
                "Required to push a dataset this project did not generate; default for generated data: apache-2.0.")


def license_id(text: str) -> str:
    from training.hub_dataset import check_license

    try:
        return check_license(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _describe_default(f: dataclasses.Field) -> str:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return " ".join(map(str, default)) if isinstance(default, tuple) else str(default)


def add_config_arguments(parser: argparse.ArgumentParser, cls=TrainConfig) -> None:
    """One --flag per config field, typed, with the field's help, choices and default.

    Defaults stay out of the parsed namespace (argparse.SUPPRESS), so only what was typed
    overrides `--config` or the dataclass defaults."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"training settings (saved with the model as {cls.__name__})")
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        flag, hint = "--" + f.name.replace("_", "-"), hints[f.name]
        help_text = f"{f.metadata['help']} (default: {_describe_default(f)})".replace("%", "%%")
        kwargs = dict(default=argparse.SUPPRESS, help=help_text)
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if typing.get_origin(hint) is tuple:
            kwargs.update(type=typing.get_args(hint)[0], nargs="+", metavar="N")
        else:
            kwargs.update(type=hint)
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        group.add_argument(flag, **kwargs)


def train_overrides(options: list[str], prog: str, reserved=("data", "out", "seed")) -> dict:
    """`train` options a benchmark passes on (those after its own), as TrainConfig fields; the
    `reserved` ones are the benchmark's to set."""
    settings = argparse.ArgumentParser(prog=f"{prog} TRAIN OPTIONS")
    add_config_arguments(settings)
    changed = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(settings.parse_args(options)).items()}
    if set(reserved) & set(changed):
        settings.error(f"{', '.join('--' + name for name in reserved)} are the benchmark's own: give them before any train option")
    return changed


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """`--config FILE` (or the defaults), with every setting typed on the command line on top."""
    base = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    config = dataclasses.replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    config.validate()
    return config


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    noise = common.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="also log debugging detail")
    noise.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only, no progress bars")

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary, parents=[common])

    gen = command("generate", "Write the synthetic DAGM-like dataset (imagefolder layout with ellipse labels).")
    gen.add_argument("--out", required=True, help="Dataset folder to write; it must not exist or be empty.")
    gen.add_argument("--seed", type=int, default=0, help="Seed of the textures and defects (default: 0).")
    gen.add_argument("--per-texture-good", type=positive_int, default=120, help="Defect-free images per texture (default: 120).")
    gen.add_argument("--per-texture-defective", type=positive_int, default=60, help="Defective images per texture (default: 60).")
    gen.add_argument("--examples", action="store_true", help="Write the Space's example images instead.")

    tr = command("train", "Train a model and write OUT/model (the folder to publish) and OUT/metrics.json.")
    tr.add_argument("--config", metavar="FILE", help="Repeat a saved run: a model folder's defect_config.json or a JSON "
                    "file of settings; options typed here override it.")
    add_config_arguments(tr)
    hub = tr.add_argument_group("publishing (the token is checked before training starts)")
    hub.add_argument("--push-to-hub", metavar="USER/NAME", type=repo_id, help="Push OUT/model to this model repo when done.")
    hub.add_argument("--dataset-repo", metavar="USER/NAME", type=repo_id, help="Also push the --data folder as this dataset repo.")
    hub.add_argument("--private", action="store_true", help="Create the repos as private.")
    hub.add_argument("--license", type=license_id, help=LICENSE_HELP)

    ev = command("evaluate", "Measure a saved model on a dataset's test split (or its train split if it has none).")
    ev.add_argument("--model", required=True, help="Model folder, or a Hub repo id (user/name).")
    ev.add_argument("--data", required=True, help="Dataset folder or Hub dataset id.")
    ev.add_argument("--out", help="Folder for metrics.json and the ROC / confusion-matrix plots.")
    ev.add_argument("--trust-savedmodel", action="store_true", help="Allow a model folder that holds only a TensorFlow SavedModel (a TF-Hub backbone's): loading it runs its graph unchecked.")
    ev.add_argument("--operating-point", metavar="REQUEST", help=f"Measure at this operating point on the model's stored curve ({REQUEST_HELP}) instead of the stored threshold.")
    ev.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)

    pr = command("predict", "Classify images, folders (searched recursively) into a CSV: file, P(defects), label, box.")
    pr.add_argument("--model", required=True, help="Model folder, or a Hub repo id (user/name).")
    pr.add_argument("--out", required=True, help="CSV file to write.")
    pr.add_argument("--batch-size", type=positive_int, default=16, help="Images per model call (default: 16).")
    pr.add_argument("--trust-savedmodel", action="store_true", help="Allow a model folder that holds only a TensorFlow SavedModel (a TF-Hub backbone's): loading it runs its graph unchecked.")
    pr.add_argument("--operating-point", metavar="REQUEST", help=f"Decide at this operating point ({REQUEST_HELP}) instead of the stored threshold.")
    pr.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    pr.add_argument("inputs", nargs="+", help="Image files or folders.")

    rt = command("rethreshold", "Re-decide a model's threshold on labelled images of your own line, without retraining.")
    rt.add_argument("--model", required=True, help="The model folder to update (its weights are not touched).")
    rt.add_argument("--data", required=True, help="Labelled images in any layout `train` reads; every split is used.")
    rt.add_argument("--trust-savedmodel", action="store_true", help="Allow a model folder that holds only a TensorFlow SavedModel (a TF-Hub backbone's): loading it runs its graph unchecked.")
    rt.add_argument("--operating-point", metavar="REQUEST", help=f"The operating point to choose ({REQUEST_HELP}; default: the model's own).")

    ex = command("export", "Re-write an existing model folder with this version's extras (tf-keras twin, handler, core, card), or add model.onnx to it.")
    ex.add_argument("--model", required=True, help="The OUT/model folder.")
    ex.add_argument(
        "--format", choices=BACKENDS, default="keras",
        help="keras (default): re-write the folder; onnx: add model.onnx (the network for ONNX Runtime, the decision in its "
        "metadata), kept only if its outputs equal the Keras model's.",
    )

    pu = command("push", "Push a model folder (and optionally its dataset) to the Hugging Face Hub.")
    pu.add_argument("--model", required=True, help="The OUT/model folder.")
    pu.add_argument("--repo", required=True, metavar="USER/NAME", type=repo_id, help="Model repo to push to (created if needed).")
    pu.add_argument("--dataset", help="Dataset folder to push too.")
    pu.add_argument("--dataset-repo", metavar="USER/NAME", type=repo_id, help="Dataset repo for --dataset.")
    pu.add_argument("--private", action="store_true", help="Create the repos as private.")
    pu.add_argument("--license", type=license_id, help=LICENSE_HELP)
    pu.add_argument("--revision", help="Branch to push to (created if needed).")
    pu.add_argument("--commit-message", default="Upload with defect-classifier push", help="The commit's message.")

    ps = command("push-space", "Push the Gradio Space (app, inference core, examples) that serves --model-repo.")
    ps.add_argument("--repo", required=True, metavar="USER/SPACE", type=repo_id, help="Space repo to push to.")
    ps.add_argument("--model-repo", required=True, metavar="USER/NAME", type=repo_id, help="Model repo the Space loads.")
    ps.add_argument("--dataset-repo", metavar="USER/NAME", type=repo_id, help="Dataset repo whose examples/ the Space shows.")
    ps.add_argument("--examples", metavar="DATA", help="Show a few test images of this dataset folder (any layout) as the "
                    "Space's examples (they are published in the Space). Default: the --dataset-repo's examples/, else the "
                    "bundled synthetic ones only for a model trained on generated data.")
    ps.add_argument("--space-dir", default=str(SPACE_DIR), help="The Space folder (default: this project's space/).")
    ps.add_argument("--private", action="store_true", help="Create the Space as private.")
    return parser


def _configure_logging(args) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # read by tqdm when the modules that draw bars are imported


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args)
    from training.publish import PublishError

    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError, PublishError) as err:  # DataError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2


def _generate(args) -> int:
    from training.synthetic import GenerateConfig, check_trainable, generate, write_examples

    if args.examples:
        print("\n".join(str(p) for p in write_examples(Path(args.out))))
        return 0
    config = GenerateConfig(Path(args.out), args.seed, args.per_texture_good, args.per_texture_defective)
    check_trainable(config)
    counts = generate(config)
    print(json.dumps(counts))
    return 0


def _push(model_dir, repo, data, dataset_repo, private, license=None, revision=None, message="Upload with defect-classifier push"):
    from training.publish import push_dataset, push_model

    if dataset_repo:
        print(f"pushed the dataset: {push_dataset(data, dataset_repo, private=private, license=license)}")
    if repo:
        url = push_model(model_dir, repo, dataset_repo=dataset_repo, private=private, revision=revision, commit_message=message,
                         license=license)
        print(f"pushed the model: {url}")


def _train(args) -> int:
    config = config_from_args(args)  # every invalid setting is refused before any data is read
    from training.train import train

    if args.push_to_hub or args.dataset_repo:
        from training.hub_dataset import dataset_license
        from training.publish import check_token

        if args.dataset_repo:  # refused now, not after the training
            if not Path(config.data).is_dir():
                raise ValueError(f"--dataset-repo publishes the local --data folder; {config.data} is not one (a Hub dataset is published already)")
            dataset_license(config.data, args.license)
        log.info("Hub token belongs to %s", check_token())
    metrics = train(config)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("per_texture", "per_defect")}, indent=2))
    if args.push_to_hub or args.dataset_repo:
        _push(Path(config.out) / "model", args.push_to_hub, config.data, args.dataset_repo, args.private, args.license)
    return 0


def _export(args) -> int:
    from training.export import export_onnx, reexport

    if args.format == "onnx":
        print(f"wrote {export_onnx(args.model)}")
    else:
        print(f"re-exported {reexport(args.model)}")
    return 0


def _push_command(args) -> int:
    if bool(args.dataset) != bool(args.dataset_repo):
        raise ValueError("--dataset and --dataset-repo go together")
    _push(Path(args.model), args.repo, args.dataset, args.dataset_repo, args.private, args.license, args.revision, args.commit_message)
    return 0


def _push_space(args) -> int:
    from training.publish import push_space

    if not Path(args.space_dir, "app.py").is_file():
        raise ValueError(f"{args.space_dir} holds no app.py: pass --space-dir, the folder of the Space's app")
    print(f"pushed the Space: {push_space(args.space_dir, args.repo, args.model_repo, args.dataset_repo, args.private, examples_from=args.examples)}")
    return 0


def _evaluate(args) -> int:
    from defect_inference import resolve_model_dir
    from training.data import load_splits
    from training.evaluate import evaluate_model

    model_dir = resolve_model_dir(args.model, only=backend_files(args.backend))
    splits = load_splits(args.data)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    metrics = evaluate_model(
        model_dir, splits.get("test") or splits["train"], plots_dir=args.out, operating_point=args.operating_point,
        trust_savedmodel=args.trust_savedmodel or None, backend=args.backend,
    )
    if args.out:
        (Path(args.out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    return 0


def _predict(args) -> int:
    from training.predict import predict_to_csv

    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder: pass the CSV file to write, e.g. {Path(args.out) / 'predictions.csv'}")
    counts = predict_to_csv(
        args.model, args.inputs, args.out, args.batch_size, args.operating_point, args.trust_savedmodel or None, args.backend
    )
    print(f"wrote {args.out}: {counts['images']} images, {counts['errors']} unreadable")
    return 1 if counts["errors"] == counts["images"] and counts["images"] else 0


def _rethreshold(args) -> int:
    from training.rethreshold import rethreshold

    if args.operating_point:
        Request.parse(args.operating_point)  # a bad request is refused before any image is read
    report = rethreshold(args.model, args.data, args.operating_point, args.trust_savedmodel or None)
    print(json.dumps(report, indent=2))
    return 0


COMMANDS = {
    "generate": _generate, "train": _train, "evaluate": _evaluate, "predict": _predict, "rethreshold": _rethreshold,
    "export": _export, "push": _push_command, "push-space": _push_space,
}
