"""Read every supported dataset layout into one list of `Sample`s per split.

Layouts, detected from what is on disk (or a Hub dataset id / `datasets` object):
- imagefolder: DIR/{train,test}/{defects,no_defects}/*, optional DIR/<split>/metadata.csv with
  `file_name` plus `texture`, the kind of `defect` and the defect ellipse `cx, cy, a, b, angle`
  (what `synthetic` writes);
- DAGM 2007 development set: DIR/ClassN/ (good) + DIR/ClassN_def/ (defective) with `labels.txt`
  holding one ellipse per image: number, semi-major, semi-minor, angle (radians), x, y;
- DAGM 2007 competition set: DIR/ClassN/{Train,Test}/ with Label/Labels.txt and *_label.PNG masks
  (each mask becomes the ellipse with the same centre and second moments, so every layout gives
  weak localization labels in one form);
- a `datasets.Dataset` / `DatasetDict` with an Image column and a ClassLabel or string label.

Class names are fixed: index 0 is `defects`, index 1 is `no_defects` (the alphabetical order every
folder loader uses); the model's output is P(defects) whatever the order on disk.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from defect_inference import IMAGE_SUFFIXES, ImageError, read_image, to_gray, to_working_size

log = logging.getLogger(__name__)
CLASS_NAMES = ("defects", "no_defects")
EXPECTED_EXTRA_FILES = {"metadata.csv", "metadata.jsonl", "README.md", "labels.txt", "Labels.txt"}


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

    @property
    def name(self) -> str:
        return str(self.image) if isinstance(self.image, (str, os.PathLike)) else f"<{type(self.image).__name__}>"


Splits = dict[str, list[Sample]]


def load_splits(source) -> Splits:
    """Detect the layout of `source` (folder, Hub dataset id, or `datasets` object) and read it."""
    if not isinstance(source, (str, os.PathLike)):
        return from_hf_dataset(source)
    path = Path(source)
    if path.is_dir():
        if (path / "train").is_dir():
            return read_imagefolder(path)
        class_dirs = [p for p in path.iterdir() if p.is_dir() and re.fullmatch(r"Class\d+", p.name)]
        if any((p / "Train").is_dir() for p in class_dirs):
            return read_dagm_competition(path)
        if class_dirs or any(path.glob("Class*_def")):
            return read_dagm_development(path)
        raise DataError(
            f"{path} has no layout this tool reads: expected train/{{defects,no_defects}}/ "
            "(imagefolder, optionally with test/), ClassN/ + ClassN_def/ (DAGM 2007 development set) "
            "or ClassN/Train/ (DAGM 2007 competition set)"
        )
    if path.exists():
        raise DataError(f"{path} is a file, not a dataset folder: pass the folder that holds train/")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)):
        import datasets

        return from_hf_dataset(datasets.load_dataset(str(source)))
    raise DataError(f"{source} does not exist: pass a dataset folder or a Hub dataset id like user/name")


def _image_files(folder: Path) -> list[Path]:
    files, ignored = [], []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            if p.suffix.lower() in IMAGE_SUFFIXES:
                files.append(p)
            elif p.name not in EXPECTED_EXTRA_FILES and not p.name.startswith("."):
                ignored.append(p)
    if ignored:
        shown = ", ".join(str(p) for p in ignored[:5])
        log.warning("ignoring %d non-image file(s) in %s: %s", len(ignored), folder, shown)
    return files


def _read_metadata(split_dir: Path) -> dict[str, dict]:
    path = split_dir / "metadata.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "file_name" not in rows[0]:
        raise DataError(f"{path} has no file_name column: add one with paths relative to {split_dir}")
    return {row["file_name"]: row for row in rows}


def _ellipse_from_row(row: dict) -> Ellipse | None:
    values = [row.get(k) for k in ("cx", "cy", "a", "b", "angle")]
    if any(v in (None, "") for v in values):
        return None
    try:
        return Ellipse(*(float(v) for v in values))
    except (TypeError, ValueError):
        return None


def read_imagefolder(root: Path) -> Splits:
    splits: Splits = {}
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        unknown = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in CLASS_NAMES)
        if unknown:
            raise DataError(
                f"{split_dir} has class folder(s) {', '.join(unknown)}: the only labels are "
                f"{' and '.join(CLASS_NAMES)}; rename or move those folders"
            )
        metadata = _read_metadata(split_dir)
        samples = []
        for class_name in CLASS_NAMES:
            class_dir = split_dir / class_name
            if not class_dir.is_dir():
                raise DataError(f"{class_dir} is missing: put the {class_name} images of {split} there")
            files = _image_files(class_dir)
            if not files:
                raise DataError(f"{class_dir} holds no images: add {class_name} images (PNG, JPEG, ...)")
            for file in files:
                row = metadata.get(file.relative_to(split_dir).as_posix(), {})
                if row.get("label") and row["label"] != class_name:
                    raise DataError(
                        f"{split_dir / 'metadata.csv'} labels {file.name} as {row['label']!r} but it is in "
                        f"{class_name}/: fix the row or move the file"
                    )
                samples.append(
                    Sample(
                        str(file), class_name == CLASS_NAMES[0], row.get("texture") or None,
                        _ellipse_from_row(row), row.get("defect") or None,
                    )
                )
        splits[split] = samples
    if "train" not in splits:
        raise DataError(f"{root / 'train'} is missing: put images in train/defects and train/no_defects")
    return splits


def read_dagm_development(root: Path) -> Splits:
    samples = []
    for good_dir in sorted(root.glob("Class*"), key=lambda p: p.name):
        if not re.fullmatch(r"Class\d+", good_dir.name):
            continue
        def_dir = root / f"{good_dir.name}_def"
        if not def_dir.is_dir():
            raise DataError(f"{def_dir} is missing: the DAGM development layout pairs every ClassN/ with ClassN_def/")
        ellipses = {}
        labels = def_dir / "labels.txt"
        if labels.is_file():
            for line in labels.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 6:
                    number, a, b, angle, x, y = parts[:6]
                    ellipses[int(float(number))] = Ellipse(float(x), float(y), float(a), float(b), float(angle))
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
    for class_dir in sorted(p for p in root.iterdir() if re.fullmatch(r"Class\d+", p.name)):
        for part, split in (("Train", "train"), ("Test", "test")):
            folder = class_dir / part
            if not folder.is_dir():
                continue
            masks = {}
            labels_file = folder / "Label" / "Labels.txt"
            if labels_file.is_file():
                for line in labels_file.read_text().splitlines():
                    tokens = line.split()
                    names = [t for t in tokens if t.upper().endswith(".PNG")]
                    if len(tokens) >= 3 and names:
                        masks[names[0]] = (tokens[1] == "1", names[1] if len(names) > 1 else None)
            for file in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                defective, mask_name = masks.get(file.name, (None, None))
                mask_path = folder / "Label" / (mask_name or f"{file.stem}_label.PNG")
                if defective is None:
                    defective = mask_path.is_file()
                ellipse = None
                if defective and mask_path.is_file():
                    ellipse = Ellipse.from_mask(np.asarray(Image.open(mask_path).convert("L")) > 0)
                splits[split].append(Sample(str(file), defective, class_dir.name, ellipse))
    splits = {k: v for k, v in splits.items() if v}
    if "train" not in splits:
        raise DataError(f"{root} has no ClassN/Train/ images")
    for split, samples in splits.items():
        _require_both_classes(samples, root / split)
    return splits


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
        image_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.Image)), None)
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
                Sample(row[image_col], label == CLASS_NAMES[0], row.get("texture"), _ellipse_from_row(row), row.get("defect") or None)
            )
        _require_both_classes(samples, f"split {split!r}")
        splits[split] = samples
    return splits


def _require_both_classes(samples: list[Sample], where) -> None:
    for defective, name in ((True, CLASS_NAMES[0]), (False, CLASS_NAMES[1])):
        if not any(s.defective == defective for s in samples):
            raise DataError(f"{where} has no {name} images: a classifier needs examples of both classes")


def decode_images(
    samples: list[Sample], size: int, desc: str = "decoding", gray: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Decode samples into (N, size, size) uint8 grayscale (or (N, size, size, 3) RGB with
    `gray=False`) plus each image's (down, across) working/source scales: an image of another
    aspect is stretched unequally on the two axes.

    Images are brought to the working size by the inference core's `to_working_size`, the resize
    the saved model runs inside, so training sees what users' images become; they are kept as
    whole grey levels (half a level from the model's own input at most) to hold a quarter of the
    memory. Every unreadable image is listed in one error, so a dataset is fixed in one pass.
    """

    def decode(sample: Sample):
        try:
            rgb = read_image(sample.image)
        except ImageError as err:
            return err
        image = to_working_size(to_gray(rgb) if gray else rgb, size)
        return np.clip(np.round(image), 0, 255).astype(np.uint8), (size / rgb.shape[0], size / rgb.shape[1])

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(tqdm(pool.map(decode, samples), total=len(samples), desc=desc, unit="img", leave=False))
    errors = [f"  {s.name}: {r}" for s, r in zip(samples, results) if isinstance(r, Exception)]
    if errors:
        raise DataError(f"{len(errors)} image(s) cannot be read; fix or remove them:\n" + "\n".join(errors))
    images = np.stack([r[0] for r in results])
    scales = np.array([r[1] for r in results], dtype=np.float32)
    return images, scales


def class_weights(positive_share: float) -> dict[int, float]:
    """Loss weights that give both classes half of the loss."""
    return {1: 0.5 / positive_share, 0: 0.5 / (1 - positive_share)}
