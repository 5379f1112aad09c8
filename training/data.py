"""Read every supported dataset layout into one list of `Sample`s per split.

Layouts, detected from what is on disk (or a Hub dataset id / `datasets` object):
- imagefolder: DIR/{train,test}/{defects,no_defects}/*, optional DIR/<split>/metadata.csv with
  `file_name` plus `texture`, the kind of `defect`, a capture `group`, a pixel `mask` (a path
  relative to the split folder) and the defect ellipse `cx, cy, a, b, angle` (what `synthetic`
  writes); masks may also sit in a mirror tree DIR/<split>/masks/<class>/... or beside their images
  (see `pair_masks`);
- MVTec AD: DIR/train/good/, DIR/test/<kind>/ (`good` or a kind of defect) and
  DIR/ground_truth/<kind>/<stem>_mask.png, for one category or a folder of categories (each
  category becomes a texture);
- DAGM 2007 development set: DIR/ClassN/ (good) + DIR/ClassN_def/ (defective) with `labels.txt`
  holding one ellipse per image: number, semi-major, semi-minor, angle (radians), x, y;
- DAGM 2007 competition set: DIR/ClassN/{Train,Test}/ with Label/Labels.txt and <stem>_label masks;
- a `datasets.Dataset` / `DatasetDict` with an Image column, a ClassLabel or string label and
  optionally an Image column named `mask`.

File extensions and the letter case of the fixed folder and file names do not matter. A pixel mask
(grey level 128 or more is defect) trains the defect map as it is drawn; an ellipse is the weak
label of layouts without masks.

Class names are fixed: index 0 is `defects`, index 1 is `no_defects` (the alphabetical order every
folder loader uses); the model's output is P(defects) whatever the order on disk.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from defect_inference import IMAGE_SUFFIXES, ImageError, Preprocessing, read_image, to_gray, to_working_size

log = logging.getLogger(__name__)
CLASS_NAMES = ("defects", "no_defects")
EXPECTED_EXTRA_FILES = {"metadata.csv", "metadata.jsonl", "readme.md", "labels.txt", "license.txt"}
# How a mask file names its image: `<stem>_mask.png` (MVTec AD), `<stem>_label.PNG` (DAGM 2007).
MASK_SUFFIXES = ("_mask", "_label", "_gt")
# Decoded training images may take at most this share of the machine's memory (the rest is the
# network, its activations and the system's).
MEMORY_SHARE = 0.5


class DataError(ValueError):
    """A dataset that cannot be used as it is; the message names the path and the fix."""


@dataclass(frozen=True)
class Ellipse:
    """A weak defect label in pixels: centre, semi-axes, rotation in radians."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float

    def contains(self, x, y):
        """Whether (x, y) lies inside; scalars or numpy arrays of coordinates."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = (x - self.cx) * c + (y - self.cy) * s, -(x - self.cx) * s + (y - self.cy) * c
        return (u / max(self.a, 1e-3)) ** 2 + (v / max(self.b, 1e-3)) ** 2 <= 1.0

    def mask(self, height: int, width: int, scale=1.0) -> np.ndarray:
        """Boolean mask on a (height, width) grid whose cells are `scale` source pixels wide:
        one number, or (down, across) for a grid stretched unequally on the two axes."""
        scale_y, scale_x = (scale, scale) if np.isscalar(scale) else scale
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        return self.contains((xx + 0.5) * scale_x - 0.5, (yy + 0.5) * scale_y - 0.5)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> "Ellipse | None":
        """The ellipse with the mask's centre and second moments (a uniform ellipse's own)."""
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            return None
        cx, cy = xs.mean(), ys.mean()
        cov = np.cov(np.stack([xs - cx, ys - cy])) if len(xs) > 1 else np.zeros((2, 2))
        values, vectors = np.linalg.eigh(cov)
        a, b = 2 * math.sqrt(max(values[1], 0.25)), 2 * math.sqrt(max(values[0], 0.25))
        angle = math.atan2(vectors[1, 1], vectors[0, 1]) % math.pi
        return cls(float(cx), float(cy), a, b, angle)


@dataclass(frozen=True)
class Sample:
    """One labelled image: a file path or an in-memory image (from a `datasets` split)."""

    image: object
    defective: bool
    texture: str | None = None
    ellipse: Ellipse | None = None
    defect: str | None = None  # the kind of defect (scratch, blotch, ...), where metadata names it
    mask: object = None  # the pixel mask, a path or an array the image's size
    group: str | None = None  # images of one group (a capture sequence) never land in two splits

    @property
    def name(self) -> str:
        return str(self.image) if isinstance(self.image, (str, os.PathLike)) else f"<{type(self.image).__name__}>"


Splits = dict[str, list[Sample]]


# The folder layouts `train` reads, by the name cards and messages use; `detect_layout` picks one.
LAYOUTS = {
    "mvtec-ad": "MVTec AD (train/good/, test/<kind>/, ground_truth/<kind>/*_mask.png)",
    "imagefolder": "imagefolder (train/ and test/ with defects/ and no_defects/)",
    "dagm-competition": "DAGM 2007 competition set (ClassN/Train/, ClassN/Test/, Label/Labels.txt)",
    "dagm-development": "DAGM 2007 development set (ClassN/ and ClassN_def/ with labels.txt)",
}
# Written by the generators beside the data they make: what made it, with which settings.
GENERATED_FILE = "generated_by.json"


def detect_layout(path: Path) -> str:
    """The LAYOUTS name of the dataset folder `path`, or a DataError listing what is read."""
    if _mvtec_categories(path):
        return "mvtec-ad"
    if _child(path, "train"):
        return "imagefolder"
    class_dirs = [p for p in path.iterdir() if p.is_dir() and re.fullmatch(r"class\d+", p.name, re.I)]
    if any(_child(p, "train") for p in class_dirs):
        return "dagm-competition"
    if class_dirs:
        return "dagm-development"
    raise DataError(
        f"{path} has no layout this tool reads: expected train/{{defects,no_defects}}/ "
        "(imagefolder, optionally with test/), train/good/ + test/<kind>/ (MVTec AD), ClassN/ + "
        "ClassN_def/ (DAGM 2007 development set) or ClassN/Train/ (DAGM 2007 competition set)"
    )


def mark_generated(folder, made_by: str, settings: dict) -> None:
    """Record beside generated data what made it, so its cards say "synthetic" and how to repeat it."""
    (Path(folder) / GENERATED_FILE).write_text(json.dumps({"made_by": made_by, "settings": settings}, indent=2, default=str))


def generated_by(path) -> dict | None:
    """What a generator recorded about the dataset folder `path` it made, or None for other data."""
    marker = Path(path) / GENERATED_FILE
    return json.loads(marker.read_text()) if marker.is_file() else None


def describe_source(source) -> dict:
    """Where training data came from, for the model's metrics and card: its layout, and whether
    this project's generator made it (a Hub dataset is not looked into)."""
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    if path is None:
        return {"layout": "datasets-object", "generated": False, "made_by": None}
    if path.is_dir():
        made, layout = generated_by(path), detect_layout(path)
    else:
        made, layout = _hub_generated_by(str(source)), "hub-dataset"
    return {"layout": layout, "generated": made is not None, "made_by": made and made["made_by"]}


def _hub_generated_by(repo_id: str) -> dict | None:
    """The generator record a dataset push published beside the data, or None."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(repo_id, GENERATED_FILE, repo_type="dataset")).read_text())
    except (EntryNotFoundError, RepositoryNotFoundError):
        return None
    except Exception as err:  # noqa: BLE001 - the data itself was read: its origin stays unknown, said aloud
        log.warning("cannot read %s of %s (%s): the model's card will not call its data generated", GENERATED_FILE, repo_id, type(err).__name__)
        return None


def load_splits(source) -> Splits:
    """Detect the layout of `source` (folder, Hub dataset id, or `datasets` object) and read it."""
    if not isinstance(source, (str, os.PathLike)):
        return from_hf_dataset(source)
    path = Path(source)
    if path.is_dir():
        return READERS[detect_layout(path)](path)
    if path.exists():
        raise DataError(f"{path} is a file, not a dataset folder: pass the folder that holds train/")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)):
        import datasets

        try:
            dataset = datasets.load_dataset(str(source))
        except (ConnectionError, OSError, ValueError) as err:  # offline, missing, private, not a dataset
            raise DataError(
                f"{source} is not a local folder, and the Hub dataset {source} cannot be loaded ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'no detail'}): check the name, your connection, or log in"
            ) from None
        return from_hf_dataset(dataset)
    raise DataError(f"{source} does not exist: pass a dataset folder or a Hub dataset id like user/name")


def _child(folder: Path, name: str) -> Path | None:
    """The entry of `folder` called `name` in any letter case, or None."""
    exact = folder / name
    if exact.exists():
        return exact
    return next((p for p in sorted(folder.iterdir()) if p.name.lower() == name.lower()), None) if folder.is_dir() else None


def _image_files(folder: Path) -> list[Path]:
    files, ignored = [], []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            if p.suffix.lower() in IMAGE_SUFFIXES:
                files.append(p)
            elif p.name.lower() not in EXPECTED_EXTRA_FILES and not p.name.startswith("."):
                ignored.append(p)
    if ignored:
        shown = ", ".join(str(p) for p in ignored[:5])
        log.warning("ignoring %d non-image file(s) in %s: %s", len(ignored), folder, shown)
    return files


def _mask_base(stem: str) -> str | None:
    """The image stem a mask's file stem names (`0002_label` -> `0002`), or None for an image name."""
    low = stem.lower()
    return next((low[: -len(s)] for s in MASK_SUFFIXES if low.endswith(s) and len(low) > len(s)), None)


def _looks_like_mask(path: Path) -> bool:
    """Black and white but for anti-aliased edges: a mask, not a photograph (an over-exposed
    photograph has a few tenths of its pixels at black or white, a mask nearly all of them)."""
    gray = to_gray(read_image(path))
    return float(((gray <= 8) | (gray >= 247)).mean()) >= 0.9


def read_mask(mask) -> np.ndarray:
    """A pixel mask (path or array) as a boolean (H, W) array: grey level 128 or more is defect."""
    return to_gray(read_image(mask)) >= 128


def pair_masks(files: list[Path]) -> tuple[list[Path], dict[Path, Path]]:
    """Split image files into images and the masks that sit beside them: `<stem>_mask.*` (or
    `_label`, `_gt`) next to `<stem>.*`, or two files with one stem (`<id>.jpg` and `<id>.png`, as
    the magnetic-tile photographs ship) of which exactly one is black and white. Anything else that
    shares a stem is refused, since training on a mask as a photograph would be silently wrong."""
    by_stem: dict[tuple[Path, str], list[Path]] = {}
    for f in files:
        by_stem.setdefault((f.parent, _mask_base(f.stem) or f.stem.lower()), []).append(f)
    images, masks = [], {}
    for (parent, stem), members in by_stem.items():
        named = [f for f in members if _mask_base(f.stem)]
        plain = [f for f in members if not _mask_base(f.stem)]
        if len(plain) == 2 and not named:
            like = [_looks_like_mask(f) for f in plain]
            if like.count(True) != 1:
                raise DataError(
                    f"{plain[0]} and {plain[1].name} share a name and neither (or both) is a black-and-white mask: "
                    f"rename the mask {stem}_mask{plain[1].suffix} or give the images different names"
                )
            named, plain = [plain[like.index(True)]], [plain[like.index(False)]]
        if named and not plain:
            raise DataError(f"{named[0]} is named as a mask but no image {stem}.* sits beside it: rename or remove it")
        if len(plain) > 1 or len(named) > 1:
            raise DataError(f"{len(members)} files in {parent} share the name {stem}: {', '.join(f.name for f in members)}; keep one image and at most one mask")
        images.append(plain[0])
        if named:
            masks[plain[0]] = named[0]
    return sorted(images), masks


def _mask_index(folder: Path | None) -> dict[tuple[str, str], Path]:
    """The masks under `folder` by (relative parent folder, the stem of the image they name)."""
    if folder is None or not folder.is_dir():
        return {}
    index = {}
    for f in _image_files(folder):
        index[(f.parent.relative_to(folder).as_posix().lower(), _mask_base(f.stem) or f.stem.lower())] = f
    return index


def _claim_masks(index: dict, images: list[Path], root: Path) -> dict[Path, Path]:
    """The mask of each image in `index` (keys relative to `root`); masks left over are an error."""
    found = {}
    for image in images:
        key = (image.parent.relative_to(root).as_posix().lower(), image.stem.lower())
        if key in index:
            found[image] = index.pop(key)
    return found


def _refuse_unmatched(index: dict, where: str) -> None:
    if index:
        shown = ", ".join(str(p) for p in list(index.values())[:5])
        raise DataError(
            f"{len(index)} mask(s) in {where} match no image: {shown}; a mask is named like its image "
            "(same folders, same stem, optionally with _mask), so rename or remove them"
        )


def _read_metadata(split_dir: Path) -> dict[str, dict]:
    path = split_dir / "metadata.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "file_name" not in rows[0]:
        raise DataError(f"{path} has no file_name column: add one with paths relative to {split_dir}")
    return {row["file_name"]: row for row in rows}


def _ellipse_from_row(row: dict, where: str = "") -> Ellipse | None:
    values = [row.get(k) for k in ("cx", "cy", "a", "b", "angle")]
    if all(v in (None, "") for v in values):
        return None
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != 5 or not all(math.isfinite(v) for v in numbers) or min(numbers[2:4]) <= 0:
        raise DataError(
            f"{where}: the defect ellipse cx, cy, a, b, angle = {', '.join(str(v) for v in values)} is not five finite "
            "numbers with positive semi-axes: fix the row, or leave all five empty for no ellipse"
        )
    return Ellipse(*numbers)


def read_imagefolder(root: Path) -> Splits:
    splits: Splits = {}
    for split in ("train", "test"):
        split_dir = _child(root, split)
        if split_dir is None or not split_dir.is_dir():
            continue
        mask_dir = _child(split_dir, "masks")
        unknown = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in CLASS_NAMES and p != mask_dir)
        if unknown:
            raise DataError(
                f"{split_dir} has class folder(s) {', '.join(unknown)}: the only labels are "
                f"{' and '.join(CLASS_NAMES)} (and masks/ for pixel masks); rename or move those folders"
            )
        metadata = _read_metadata(split_dir)
        mask_tree = _mask_index(mask_dir)
        samples = []
        for class_name in CLASS_NAMES:
            class_dir = split_dir / class_name
            if not class_dir.is_dir():
                raise DataError(f"{class_dir} is missing: put the {class_name} images of {split} there")
            files, beside = pair_masks(_image_files(class_dir))
            if not files:
                raise DataError(f"{class_dir} holds no images: add {class_name} images (PNG, JPEG, ...)")
            masks = {**beside, **_claim_masks(mask_tree, files, split_dir)}
            for file in files:
                row = metadata.get(file.relative_to(split_dir).as_posix(), {})
                if row.get("label") and row["label"] != class_name:
                    raise DataError(
                        f"{split_dir / 'metadata.csv'} labels {file.name} as {row['label']!r} but it is in "
                        f"{class_name}/: fix the row or move the file"
                    )
                mask = masks.get(file)
                if row.get("mask"):
                    mask = split_dir / row["mask"]
                    if not mask.is_file():
                        raise DataError(f"{split_dir / 'metadata.csv'} gives {file.name} the mask {row['mask']}, which does not exist in {split_dir}")
                samples.append(
                    Sample(
                        str(file), class_name == CLASS_NAMES[0], row.get("texture") or None,
                        _ellipse_from_row(row, f"{split_dir / 'metadata.csv'}, {file.name}"), row.get("defect") or None,
                        str(mask) if mask else None, row.get("group") or None,
                    )
                )
        named = {Path(s.mask).resolve() for s in samples if s.mask}
        _refuse_unmatched({k: v for k, v in mask_tree.items() if v.resolve() not in named}, mask_dir)
        splits[split] = samples
    if "train" not in splits:
        raise DataError(f"{root / 'train'} is missing: put images in train/defects and train/no_defects")
    return splits


def _mvtec_categories(root: Path) -> list[Path]:
    def is_category(p: Path) -> bool:
        train = _child(p, "train")
        return train is not None and _child(train, "good") is not None and _child(p, "test") is not None

    if is_category(root):
        return [root]
    return [p for p in sorted(root.iterdir()) if p.is_dir() and is_category(p)]


def read_mvtec(root: Path) -> Splits:
    """MVTec AD: defect-free training images; every defective image, with its mask, under test/."""
    splits: Splits = {"train": [], "test": []}
    for category in _mvtec_categories(root):
        texture = category.name
        splits["train"] += [Sample(str(f), False, texture) for f in _image_files(_child(_child(category, "train"), "good"))]
        test_dir = _child(category, "test")
        truth = _child(category, "ground_truth")
        for kind_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            defective = kind_dir.name.lower() != "good"
            files = _image_files(kind_dir)
            mask_dir = _child(truth, kind_dir.name) if truth else None
            index = {stem: path for (_, stem), path in _mask_index(mask_dir).items()}
            masks = {f: index.pop(f.stem.lower()) for f in files if f.stem.lower() in index}
            _refuse_unmatched(index, mask_dir)
            splits["test"] += [
                Sample(str(f), defective, texture, defect=kind_dir.name if defective else None, mask=str(masks[f]) if f in masks else None)
                for f in files
            ]
    if not splits["train"]:
        raise DataError(f"{root} has no images in train/good/")
    _require_both_classes(splits["test"], root / "test")
    return splits


def _labels_line(line: str, where: str) -> tuple[int, Ellipse]:
    """One line of a DAGM development labels.txt: number, semi-major, semi-minor, angle, x, y."""
    try:
        number, a, b, angle, x, y = (float(v) for v in line.split()[:6])
        if not all(math.isfinite(v) for v in (number, a, b, angle, x, y)) or min(a, b) <= 0:
            raise ValueError
    except ValueError:
        raise DataError(
            f"{where}: {line.strip()!r} is not 'number semi-major semi-minor angle x y' (six finite numbers, "
            "positive semi-axes): fix or remove the line"
        ) from None
    return int(number), Ellipse(x, y, a, b, angle)


def read_dagm_development(root: Path) -> Splits:
    samples = []
    for good_dir in sorted(root.iterdir(), key=lambda p: p.name):
        if not re.fullmatch(r"class\d+", good_dir.name, re.I):
            continue
        def_dir = _child(root, f"{good_dir.name}_def")
        if def_dir is None:
            raise DataError(f"{root / (good_dir.name + '_def')} is missing: the DAGM development layout pairs every ClassN/ with ClassN_def/")
        ellipses = {}
        labels = _child(def_dir, "labels.txt")
        if labels is not None:
            for line_number, line in enumerate(labels.read_text().splitlines(), 1):
                if line.strip():
                    number, ellipse = _labels_line(line, f"{labels}, line {line_number}")
                    ellipses[number] = ellipse
        samples += [Sample(str(p), False, good_dir.name) for p in _image_files(good_dir)]
        for p in _image_files(def_dir):
            number = int(p.stem) if p.stem.isdigit() else None
            samples.append(Sample(str(p), True, good_dir.name, ellipses.get(number)))
    if not samples:
        raise DataError(f"{root} holds no ClassN/ image folders")
    _require_both_classes(samples, root)
    return {"train": samples}


def read_dagm_competition(root: Path) -> Splits:
    splits: Splits = {"train": [], "test": []}
    for class_dir in sorted(p for p in root.iterdir() if re.fullmatch(r"class\d+", p.name, re.I)):
        for part in ("train", "test"):
            folder = _child(class_dir, part)
            if folder is None:
                continue
            label_dir = _child(folder, "label")
            listed = {}  # image name -> (defective, mask name) from Labels.txt
            labels_file = _child(label_dir, "labels.txt") if label_dir else None
            if labels_file is not None:
                for line in labels_file.read_text().splitlines():
                    tokens = line.split()
                    names = [t for t in tokens if Path(t).suffix.lower() in IMAGE_SUFFIXES]
                    if len(tokens) >= 3 and names:
                        listed[names[0].lower()] = (tokens[1] == "1", names[1] if len(names) > 1 else None)
            masks = {stem: path for (_, stem), path in _mask_index(label_dir).items()}
            for file in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                defective, mask_name = listed.get(file.name.lower(), (None, None))
                stem = Path(mask_name).stem if mask_name else file.stem
                mask = masks.pop(_mask_base(stem) or stem.lower(), None)
                if defective is None:
                    defective = mask is not None
                splits[part].append(Sample(str(file), defective, class_dir.name, mask=str(mask) if defective and mask else None))
            _refuse_unmatched(masks, label_dir)
    splits = {k: v for k, v in splits.items() if v}
    if "train" not in splits:
        raise DataError(f"{root} has no ClassN/Train/ images")
    for split, samples in splits.items():
        _require_both_classes(samples, root / split)
    return splits


READERS = {
    "mvtec-ad": read_mvtec, "imagefolder": read_imagefolder,
    "dagm-competition": read_dagm_competition, "dagm-development": read_dagm_development,
}


def from_hf_dataset(dataset) -> Splits:
    """Read a `datasets.Dataset` (taken as train) or `DatasetDict` with image + label columns."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        dataset = datasets.DatasetDict({"train": dataset})
    if "train" not in dataset:
        raise DataError(f"the dataset has splits {list(dataset)} but no 'train' split")
    splits: Splits = {}
    for split in ("train", "test"):
        if split not in dataset:
            continue
        ds = dataset[split]
        image_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.Image) and c != "mask"), None)
        has_mask = isinstance(ds.features.get("mask"), datasets.Image)
        if image_col is None or "label" not in ds.features:
            raise DataError(
                f"split {split!r} needs an Image column and a 'label' column; it has {list(ds.features)}"
            )
        feature = ds.features["label"]
        names = feature.names if isinstance(feature, datasets.ClassLabel) else None
        samples = []
        for row in ds:
            label = names[row["label"]] if names else row["label"]
            if label not in CLASS_NAMES:
                raise DataError(f"split {split!r} has label {label!r}: the only labels are {' and '.join(CLASS_NAMES)}")
            samples.append(
                Sample(
                    row[image_col], label == CLASS_NAMES[0], row.get("texture"), _ellipse_from_row(row, f"split {split!r}"),
                    row.get("defect") or None, row["mask"] if has_mask else None, row.get("group"),
                )
            )
        splits[split] = samples
    # As in MVTec AD, the train split may hold only defect-free images (training then takes a
    # stated share of the test split's defects); the dataset as a whole needs both classes.
    _require_both_classes([s for samples in splits.values() for s in samples], "the dataset")
    return splits


def _require_both_classes(samples: list[Sample], where) -> None:
    for defective, name in ((True, CLASS_NAMES[0]), (False, CLASS_NAMES[1])):
        if not any(s.defective == defective for s in samples):
            raise DataError(f"{where} has no {name} images: a classifier needs examples of both classes")


def decode_images(
    samples: list[Sample], size: int, desc: str = "decoding", gray: bool = True, preprocessing: Preprocessing = Preprocessing()
) -> tuple[np.ndarray, np.ndarray]:
    """Decode samples into (N, size, size) uint8 grayscale (or (N, size, size, 3) RGB with
    `gray=False`) plus each image's (height, width) on disk: an image of another aspect is
    stretched unequally on the two axes, or fitted and mirrored with `preprocessing.aspect` "fit".

    Images are brought to the working size by the inference core's `to_working_size`, the resize
    the saved model runs inside, so training sees what users' images become; they are kept as
    whole grey levels (half a level from the model's own input at most) to hold a quarter of the
    memory. Every unreadable image is listed in one error, so a dataset is fixed in one pass.
    """

    # Filled in place: the decoded set exists once, as check_memory counts it.
    images = np.empty((len(samples), size, size) + (() if gray else (3,)), np.uint8)

    def decode(i: int):
        try:
            rgb = read_image(samples[i].image)
        except ImageError as err:
            return err
        images[i] = np.clip(np.round(to_working_size(to_gray(rgb) if gray else rgb, size, preprocessing)), 0, 255)
        return rgb.shape[:2]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(tqdm(pool.map(decode, range(len(samples))), total=len(samples), desc=desc, unit="img", leave=False))
    errors = [f"  {s.name}: {r}" for s, r in zip(samples, results) if isinstance(r, Exception)]
    if errors:
        raise DataError(f"{len(errors)} image(s) cannot be read; fix or remove them:\n" + "\n".join(errors))
    return images, np.array(results, dtype=np.int64).reshape(-1, 2)


def check_memory(n_images: int, size: int, channels: int, total: int | None = None) -> int:
    """Refuse a run whose decoded images would take more than MEMORY_SHARE of the machine's memory
    (`total` bytes; default: this machine's), before any decoding; returns the bytes they take.

    Training keeps every training and validation image decoded at the working size, 8 bits per
    channel (a 12-MP frame is kept as size x size, not as 12 MB), so the ceiling is set by
    `--image-size` and the number of images, never by the photographs' own size."""
    need = n_images * size * size * channels
    total = total or machine_memory()
    if total and need > MEMORY_SHARE * total:
        raise DataError(
            f"{n_images} images at {size}x{size} px take {need / 1e9:.1f} GB decoded, more than "
            f"{MEMORY_SHARE:.0%} of this machine's {total / 1e9:.1f} GB: lower --image-size, or train on fewer images"
        )
    return need


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the physical memory, or a container's (cgroup v2)
    limit if lower; None where neither can be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def check_readable(samples: list[Sample]) -> list[tuple[int, int]]:
    """Open every image and mask in full, and list every one that cannot be read or does not
    fit in one error: a run must not find a broken test image after an hour of training.
    Returns each image's (height, width)."""

    def check(sample: Sample) -> tuple[str | None, tuple[int, int]]:
        try:
            shape = read_image(sample.image).shape[:2]
        except ImageError as err:
            return f"  {sample.name}: {err}", (0, 0)
        if sample.mask is not None:
            try:
                mask = read_mask(sample.mask)
            except ImageError as err:
                return f"  {sample.name}: its mask cannot be read ({err})", shape
            if mask.shape != shape:
                return f"  {sample.name}: its mask is {mask.shape[1]}x{mask.shape[0]} px, the image {shape[1]}x{shape[0]}", shape
            if not sample.defective and mask.any():
                return f"  {sample.name}: labelled no_defects, but its mask marks defect pixels", shape
        return None, shape

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        checked = list(tqdm(pool.map(check, samples), total=len(samples), desc="checking", unit="img", leave=False))
    problems = [problem for problem, _ in checked if problem]
    if problems:
        raise DataError(f"{len(problems)} image(s) or mask(s) cannot be used; fix or remove them:\n" + "\n".join(problems))
    return [shape for _, shape in checked]


def class_weights(positive_share: float) -> dict[int, float]:
    """Loss weights that give both classes half of the loss."""
    return {1: 0.5 / positive_share, 0: 0.5 / (1 - positive_share)}
