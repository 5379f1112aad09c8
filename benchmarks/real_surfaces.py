"""Real photographs: train the default pipeline on the magnetic-tile photographs and score it.

The photographs (Huang, Qiu and Yuan, "Surface defect saliency of magnetic tile", The Visual
Computer 2020; see the data's README for its terms: never commit or push it) come as
`MT_<Kind>/Imgs/<id>.jpg` with the pixel mask `<id>.png` beside each. This script lays them out
as an imagefolder of links (masks still beside their photographs, the kind of defect and a group
in `metadata.csv`), splits them 75/25 stratified by kind, trains `train` with its defaults and
reports, on the test photographs: accuracy, recall and false alarms at the stored threshold, ROC
AUC, recall at 1 % and 5 % false alarms, recall per kind, the box hit rate against the masks,
training time and peak memory.

Each tile was photographed under several exposures (`exp1`..`exp6`, with nearby `num` ids), so a
random split tests on near-copies of training images. The split here is grouped by tile (the
`num` id's thousands) unless `--ungrouped`; the last line says which.

    python benchmarks/real_surfaces.py --out runs/real_surfaces [--seed 0] [--ungrouped] [TRAIN OPTIONS]

Any `train` option after the benchmark's own (e.g. `--image-size 256`) changes that setting for an
experiment; the last line names the settings that differ from the defaults.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import resource
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "magnetic_tile"
FREE = "Free"
NAME = re.compile(r"exp(\d+)_num_(\d+)")


def photographs(source: Path) -> list[tuple[Path, Path, str]]:
    """(photograph, mask, kind) of every photograph; kind is FREE for the defect-free tiles."""
    found = []
    for folder in sorted(source.glob("MT_*/Imgs")):
        kind = folder.parent.name.removeprefix("MT_")
        for photo in sorted(folder.glob("*.jpg")):
            mask = photo.with_suffix(".png")
            if not mask.is_file():
                raise SystemExit(f"{photo} has no mask {mask.name} beside it")
            found.append((photo, mask, kind))
    if not found:
        raise SystemExit(f"{source} holds no MT_<Kind>/Imgs/*.jpg photographs: pass --data")
    return found


def tile_of(photo: Path) -> str:
    """Photographs of one tile under different exposures have ids within a few hundred."""
    match = NAME.search(photo.stem)
    return str(int(match.group(2)) // 1000) if match else photo.stem


def lay_out(source: Path, out: Path, seed: int, grouped: bool = True) -> dict[str, int]:
    """Write OUT/{train,test}/{defects,no_defects}/ as links to the photographs and their masks,
    75/25 stratified by kind (and grouped by tile); returns the number of photographs per split."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    items = photographs(source)
    kinds = [kind for _, _, kind in items]
    if grouped:
        folds = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=seed).split(items, kinds, [tile_of(p) for p, _, _ in items])
    else:
        folds = StratifiedKFold(n_splits=4, shuffle=True, random_state=seed).split(items, kinds)
    test = set(next(folds)[1])
    rows = {"train": [], "test": []}
    for i, (photo, mask, kind) in enumerate(items):
        split = "test" if i in test else "train"
        folder = "no_defects" if kind == FREE else "defects"
        link = out / split / folder / f"{kind}_{photo.name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        for target, name in ((photo, link), (mask, link.with_suffix(".png"))):
            if name.is_symlink() or name.exists():
                name.unlink()
            name.symlink_to(target.resolve())
        rows[split].append({"file_name": f"{folder}/{link.name}", "defect": "" if kind == FREE else kind.lower(), "group": tile_of(photo)})
    for split, split_rows in rows.items():
        with open(out / split / "metadata.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file_name", "defect", "group"])
            writer.writeheader()
            writer.writerows(split_rows if grouped else [{**r, "group": ""} for r in split_rows])
    return {split: len(split_rows) for split, split_rows in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the magnetic-tile folder (MT_*/Imgs/)")
    parser.add_argument("--out", type=Path, default=Path("runs/real_surfaces"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of the training")
    parser.add_argument("--ungrouped", action="store_true", help="split at random, exposures of one tile on both sides")
    parser.add_argument("--layout-only", action="store_true", help="write the split and stop")
    args, rest = parser.parse_known_args()
    from training.cli import train_overrides

    changed = train_overrides(rest, parser.prog)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    counts = lay_out(args.data, args.out / "data", args.seed, grouped=not args.ungrouped)
    split = f"{'grouped by tile' if not args.ungrouped else 'ungrouped'}, stratified by kind, seed {args.seed}"
    split += "".join(f", {name}={value}" for name, value in changed.items()) or ", default settings"
    print(f"magnetic tiles laid out in {args.out / 'data'}: {counts['train']} train / {counts['test']} test photographs ({split})")
    if args.layout_only:
        return

    from training.config import TrainConfig
    from training.train import train

    started = time.time()
    config = TrainConfig(data=str(args.out / "data"), out=str(args.out / "run"), seed=args.seed, **changed)
    config.validate()
    metrics = train(config)
    wall = time.time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    at = metrics["recall_at_false_alarms"]
    print(f"test photographs: {metrics['n_test']}; training {metrics['train_seconds'] / 60:.1f} min ({wall / 60:.1f} min with decoding and the test), peak memory {peak:.1f} GB")
    print("recall per kind: " + ", ".join(f"{k} {v['recall']:.2f} ({v['n']})" for k, v in metrics["per_defect"].items()))
    box = "n/a" if metrics["box_hit_rate"] is None else f"{metrics['box_hit_rate']:.2f} of {metrics['box_hit_n']}"
    print(
        f"real surfaces ({split}): accuracy {metrics['accuracy']:.3f} (best threshold {metrics['best_accuracy']:.3f}), "
        f"recall {metrics['recall']:.3f}, false alarms {100 * metrics['false_alarm_rate']:.1f} %, ROC AUC {metrics['roc_auc']:.3f}, "
        f"recall at 1 % / 5 % false alarms {at['0.01']:.3f} / {at['0.05']:.3f}, box on the defect {box}"
    )


if __name__ == "__main__":
    main()
