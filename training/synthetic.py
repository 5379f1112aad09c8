"""A DAGM-2007-like surface dataset, generated on the fly.

DAGM 2007 cannot be downloaded here and is too large to ship, so the demo and the tests use
textures made from seeded noise: 512x512 8-bit grayscale images of seven clearly different
surface families, and defects (scratch, blotch, smooth intensity change, texture break) drawn
inside a random ellipse that is recorded as a weak localization label, as in DAGM's dev set.

The `radial` family is the case the original tutorial got wrong: its *normal* look has a dark
spot at the image centre, so a model must learn that the spot is texture, not defect.

The layout is the Hugging Face imagefolder convention, so `datasets.load_dataset` reads it:
    DIR/{train,test}/{defects,no_defects}/*.png
    DIR/{train,test}/metadata.csv   file_name,label,texture,defect,cx,cy,a,b,angle
where `defect` is the kind of defect drawn, so evaluation can report recall per kind.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from training.data import CLASS_NAMES, GENERATED_FILE, Ellipse, mark_generated

SIZE = 512
TEXTURES = ("clouds", "grain", "brushed", "weave", "radial", "cells", "rings")
DEFECT_KINDS = ("scratch", "blotch", "gradient", "texture_break")
METADATA_COLUMNS = ("file_name", "label", "texture", "defect", "cx", "cy", "a", "b", "angle")


def smooth_noise(rng: np.random.Generator, sigma, shape=(SIZE, SIZE)) -> np.ndarray:
    """Gaussian-filtered white noise with zero mean and unit variance."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def _rotated(field: np.ndarray, degrees: float) -> np.ndarray:
    return ndimage.rotate(field, degrees, reshape=False, order=1, mode="wrap")


def _texture(name: str, rng: np.random.Generator, shape: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """One defect-free surface in [0, 1] of `shape`; every call draws a new instance of the family."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    if name == "clouds":
        t = 0.6 * smooth_noise(rng, rng.uniform(6, 10), shape) + 0.4 * smooth_noise(rng, rng.uniform(25, 40), shape)
        base, amp = rng.uniform(0.4, 0.6), 0.12
    elif name == "grain":
        t = smooth_noise(rng, 0.8, shape) + 0.3 * smooth_noise(rng, 60, shape)
        base, amp = rng.uniform(0.45, 0.6), 0.09
    elif name == "brushed":
        t = _rotated(smooth_noise(rng, (0.7, 30), shape), rng.uniform(0, 180)) + 0.3 * smooth_noise(rng, 2, shape)
        base, amp = rng.uniform(0.4, 0.6), 0.1
    elif name == "weave":
        period = rng.uniform(9, 14)
        phase = 0.8 * smooth_noise(rng, 20, shape)
        t = np.sin(2 * np.pi * xx / period + phase) * np.sin(2 * np.pi * yy / period + phase)
        t = t + 0.35 * smooth_noise(rng, 1.2, shape)
        base, amp = rng.uniform(0.45, 0.55), 0.12
    elif name == "radial":
        cx, cy = np.array(shape[::-1]) / 2 + rng.uniform(-6, 6, size=2)
        theta = np.arctan2(yy - cy, xx - cx)
        r = np.hypot(xx - cx, yy - cy)
        streaks = np.zeros_like(theta)
        for k in rng.integers(20, 60, size=4):
            streaks += np.sin(k * theta + rng.uniform(0, 2 * np.pi)) / 4
        t = streaks + 0.4 * smooth_noise(rng, 1.5, shape) + 0.2 * np.sin(r / rng.uniform(8, 14))
        spot = rng.uniform(25, 45)
        t = t - rng.uniform(3.0, 4.5) * np.exp(-(r**2) / (2 * spot**2))
        base, amp = rng.uniform(0.5, 0.6), 0.1
    elif name == "cells":
        seeds = (rng.random(shape) < 0.004).astype(np.float32)
        t = ndimage.gaussian_filter(seeds, rng.uniform(3, 5), mode="wrap")
        t = (t - t.mean()) / (t.std() + 1e-8) + 0.3 * smooth_noise(rng, 1, shape)
        base, amp = rng.uniform(0.35, 0.5), 0.1
    elif name == "rings":
        cx, cy = rng.uniform(-400, 900, size=2)
        r = np.hypot(xx - cx, yy - cy) + 25 * smooth_noise(rng, 40, shape)
        t = np.sin(2 * np.pi * r / rng.uniform(12, 20)) + 0.3 * smooth_noise(rng, 1.5, shape)
        base, amp = rng.uniform(0.4, 0.55), 0.1
    else:
        raise ValueError(f"unknown texture {name!r}; choose one of {', '.join(TEXTURES)}")
    return base + amp * t


def _random_ellipse(rng: np.random.Generator) -> Ellipse:
    a = rng.uniform(20, 80)
    b = rng.uniform(8, a)
    margin = a + 4
    cx, cy = rng.uniform(margin, SIZE - margin, size=2)
    return Ellipse(float(cx), float(cy), float(a), float(b), float(rng.uniform(0, math.pi)))


def _add_defect(
    image: np.ndarray, texture: str, ellipse: Ellipse, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """Draw one defect inside `ellipse`, its strength relative to the texture's own contrast;
    return the image and the kind of defect.

    Faint defects are meant to be subtle but visible to a trained eye, as in DAGM. Measured: on
    surfaces with strong slow shading of their own (clouds, radial) some faint blotches and
    gradients are barely visible (README, "Model quality today").
    """
    kind = DEFECT_KINDS[rng.integers(len(DEFECT_KINDS))]
    faint = rng.random() < 0.3
    strength = image.std() * (rng.uniform(2.0, 3.0) if faint else rng.uniform(3.0, 5.0))
    sign = rng.choice([-1.0, 1.0])
    inside = ellipse.mask(SIZE, SIZE).astype(np.float32)
    soft = ndimage.gaussian_filter(inside, 2) * inside  # soft edge, but never outside the label
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    dx, dy = xx - ellipse.cx, yy - ellipse.cy
    c, s = math.cos(ellipse.angle), math.sin(ellipse.angle)
    u, v = dx * c + dy * s, -dx * s + dy * c
    if kind == "scratch":
        width = rng.uniform(1.0, 2.5)
        bend = rng.uniform(-0.004, 0.004) * u**2
        line = np.exp(-((v - bend) ** 2) / (2 * width**2)) * (np.abs(u) < 0.9 * ellipse.a)
        return image + sign * strength * line * inside, kind
    if kind == "blotch":
        plateau = np.clip(1.5 * (1.0 - (u / ellipse.a) ** 2 - (v / ellipse.b) ** 2), 0.0, 1.0)
        return image + sign * 0.7 * strength * plateau * soft, kind
    if kind == "gradient":
        ramp = 0.3 + 0.7 * (u / ellipse.a + 1) / 2
        return image + sign * 0.6 * strength * ramp * soft, kind
    other = TEXTURES[(TEXTURES.index(texture) + 1 + rng.integers(len(TEXTURES) - 1)) % len(TEXTURES)]
    patch = _texture(other, rng)
    patch = (patch - patch.mean()) / (patch.std() + 1e-8) * image.std() * rng.uniform(1.5, 2.5)
    return image * (1 - soft) + (image.mean() + patch) * soft, kind


def render(texture: str, defective: bool, seed: int) -> tuple[np.ndarray, np.ndarray, Ellipse | None, str | None]:
    """Return (image, the same surface without the defect, ellipse, defect kind); images as uint8.

    The clean twin lets tests check that a defect really changes its ellipse and nothing else.
    """
    rng = np.random.default_rng(seed)
    clean = _texture(texture, rng)
    ellipse = _random_ellipse(rng) if defective else None
    image, kind = _add_defect(clean, texture, ellipse, rng) if defective else (clean, None)
    return _to_uint8(image), _to_uint8(clean), ellipse, kind


def render_frame(texture: str, height: int, width: int, defect_px: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """A large camera frame of one surface: (the frame with one dark round blotch `defect_px`
    across, the same frame without it, the blotch's box x0, y0, x1, y1), as uint8. Its contrast is
    a clear defect's (`_add_defect`'s): what a large frame must not lose to a downscale."""
    rng = np.random.default_rng(seed)
    clean = _texture(texture, rng, (height, width))
    radius = defect_px / 2
    cy, cx = rng.uniform(radius + 8, height - radius - 8), rng.uniform(radius + 8, width - radius - 8)
    yy, xx = np.ogrid[0:height, 0:width]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    image = clean - 4.0 * clean.std() * disc
    box = (int(cx - radius), int(cy - radius), int(np.ceil(cx + radius)), int(np.ceil(cy + radius)))
    return _to_uint8(image), _to_uint8(clean), box


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _write_one(task) -> tuple[Ellipse | None, str | None]:
    path, texture, defective, seed = task
    image, _, ellipse, kind = render(texture, defective, seed)
    Image.fromarray(image, mode="L").save(path, compress_level=1)
    return ellipse, kind


@dataclass
class GenerateConfig:
    out: Path
    seed: int = 0
    per_texture_good: int = 120
    per_texture_defective: int = 60
    test_fraction: float = 0.25
    textures: tuple[str, ...] = TEXTURES


# `train` needs ten images of each class after holding out its default validation share.
MIN_TRAIN_PER_CLASS = 12


def check_trainable(config: GenerateConfig) -> None:
    """Refuse counts that would write a dataset `train` refuses (the CLI checks this first)."""
    for name, count in (("good", config.per_texture_good), ("defective", config.per_texture_defective)):
        in_train = len(config.textures) * (count - int(round(count * config.test_fraction)))
        if in_train < MIN_TRAIN_PER_CLASS:
            raise ValueError(
                f"--per-texture-{name} {count} gives {in_train} {name} training image(s) over {len(config.textures)} "
                f"texture(s); train needs at least {MIN_TRAIN_PER_CLASS}: ask for more"
            )


def _clear(out: Path) -> None:
    """Make room: a dataset this generator wrote earlier is replaced whole (no stale images are
    left among the new ones); a folder holding anything else is refused."""
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (out / GENERATED_FILE).is_file() and not (out / "train" / "metadata.csv").is_file()):
        raise FileExistsError(f"{out} exists and holds something other than a generated dataset: choose another --out")
    for split in ("train", "test"):
        shutil.rmtree(out / split, ignore_errors=True)
    (out / GENERATED_FILE).unlink(missing_ok=True)


def generate(config: GenerateConfig) -> dict[str, dict[str, int]]:
    """Write the dataset (replacing one generated there before) and return its counts per split and class."""
    out = Path(config.out)
    unknown = [t for t in config.textures if t not in TEXTURES]
    if unknown:
        raise ValueError(f"unknown texture(s) {', '.join(map(repr, unknown))}; choose from {', '.join(TEXTURES)}")
    _clear(out)
    jobs = []
    for t_index, texture in enumerate(config.textures):
        for defective, count in ((True, config.per_texture_defective), (False, config.per_texture_good)):
            n_test = int(round(count * config.test_fraction))
            for i in range(count):
                split = "test" if i < n_test else "train"
                seed = np.random.SeedSequence([config.seed, t_index, int(defective), i])
                jobs.append((split, texture, defective, int(seed.generate_state(1)[0])))
    rows: dict[str, list[dict]] = {"train": [], "test": []}
    counts = {split: {name: 0 for name in CLASS_NAMES} for split in rows}
    tasks = []
    for split, texture, defective, seed in jobs:
        label = CLASS_NAMES[0] if defective else CLASS_NAMES[1]
        counts[split][label] += 1
        file_name = f"{label}/{texture}_{counts[split][label]:05d}.png"
        (out / split / label).mkdir(parents=True, exist_ok=True)
        tasks.append((out / split / file_name, texture, defective, seed))
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        drawn = list(tqdm(pool.map(_write_one, tasks, chunksize=8), total=len(tasks), desc="generating", unit="img"))
    for (split, texture, defective, _), (path, *_), (ellipse, kind) in zip(jobs, tasks, drawn):
        label = CLASS_NAMES[0] if defective else CLASS_NAMES[1]
        row = {"file_name": path.relative_to(out / split).as_posix(), "label": label, "texture": texture}
        if ellipse is not None:
            row.update(
                defect=kind, cx=round(ellipse.cx, 2), cy=round(ellipse.cy, 2), a=round(ellipse.a, 2),
                b=round(ellipse.b, 2), angle=round(ellipse.angle, 5),
            )
        rows[split].append(row)
    for split, split_rows in rows.items():
        if not split_rows:
            continue
        with open(out / split / "metadata.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS)
            writer.writeheader()
            writer.writerows(split_rows)
    mark_generated(out, "defect-classifier generate", {k: v for k, v in asdict(config).items() if k != "out"})
    return counts


EXAMPLE_TEXTURES = ("clouds", "radial", "brushed", "cells")


def write_examples(folder: Path, textures: tuple[str, ...] = EXAMPLE_TEXTURES) -> list[Path]:
    """One clearly defective and one defect-free image per texture, for the Space's examples.

    Seeds are searched in a fixed order for a defect that is plain to see, so the files are
    the same on every run.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for t_index, texture in enumerate(textures):
        for seed in range(10_000 + 100 * t_index, 10_100 + 100 * t_index):
            image, clean, _, _ = render(texture, True, seed)
            if (np.abs(image.astype(int) - clean.astype(int)) >= 40).sum() >= 1500:
                break
        good, *_ = render(texture, False, 20_000 + t_index)
        for label, array in (("defects", image), ("no_defects", good)):
            path = folder / f"{label}_{texture}.png"
            Image.fromarray(array, mode="L").save(path, optimize=True)
            written.append(path)
    return written
