"""A second DAGM-like surface generator, of other processes than synthetic.py's, to test generalisation.

`synthetic.py` made the data every setting was chosen on. This one draws an independent set: six
texture families (marble veins, a hexagonal dot lattice, sand, leather, twill, speckle), each under
an uneven illumination ramp, and five other defect kinds (dent, crack, stain, smear, pits),
labelled as DAGM's competition set is, with an ellipse mask per defective image, and written in the
DAGM 2007 competition layout (`ClassN/{Train,Test}/` with `Label/Labels.txt` and `*_label.PNG`).
`benchmarks/unseen_surfaces.py` trains and scores the default pipeline on it.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from training.data import Ellipse, Sample, mark_generated
from training.synthetic import SIZE, smooth_noise

FAMILIES = ("marble", "hexdots", "sand", "leather", "twill", "speckle")
KINDS = ("dent", "crack", "stain", "smear", "pits")
CONTRAST = 0.08  # the texture's standard deviation, in [0, 1] intensity


def surface(family: str, rng: np.random.Generator) -> np.ndarray:
    """One defect-free surface in [0, 1] with an illumination ramp."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    if family == "marble":
        t = np.sin(u / rng.uniform(15, 30) + 5 * smooth_noise(rng, 30))
        t = np.sign(t) * np.abs(t) ** 0.4 + 0.3 * smooth_noise(rng, 1)
    elif family == "hexdots":
        period = rng.uniform(10, 16)
        t = sum(
            np.cos(2 * np.pi * (xx * math.cos(angle + k * np.pi / 3) + yy * math.sin(angle + k * np.pi / 3)) / period)
            for k in range(3)
        ) / 3 + 0.4 * smooth_noise(rng, 1)
    elif family == "sand":
        t = np.tanh(2.5 * smooth_noise(rng, 1.2)) + 0.2 * smooth_noise(rng, 15)
    elif family == "leather":
        t = -2 * np.abs(smooth_noise(rng, 5)) + 0.4 * smooth_noise(rng, 1)
    elif family == "twill":
        t = np.sin(2 * np.pi * u / rng.uniform(6, 10) + 0.8 * np.sin(2 * np.pi * v / rng.uniform(20, 40)))
        t = t + 0.35 * smooth_noise(rng, 1)
    elif family == "speckle":
        t = 8 * ndimage.gaussian_filter((rng.random((SIZE, SIZE)) < 0.03).astype(np.float32), 1.0) + 0.3 * smooth_noise(rng, 1)
    else:
        raise ValueError(f"unknown family {family!r}")
    t = (t - t.mean()) / t.std()
    ramp = rng.uniform(-0.5, 0.5, size=2)
    illumination = ramp[0] * (xx / SIZE - 0.5) + ramp[1] * (yy / SIZE - 0.5)
    return rng.uniform(0.4, 0.6) + CONTRAST * (t + illumination)


def _irregular_region(rng: np.random.Generator, cx: float, cy: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    d = np.hypot(xx - cx, yy - cy) / radius
    wobble = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), radius / 4)
    return ((1 - d**2) + 0.5 * wobble / (wobble.std() + 1e-8) > 0.3) & (d < 1.3)


def add_defect(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """Return (image with one defect, the pixels it changed, its kind)."""
    kind = KINDS[rng.integers(len(KINDS))]
    strength = rng.uniform(2.5, 4.5) * CONTRAST
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cx, cy = rng.uniform(80, SIZE - 80, size=2)
    if kind == "dent":  # a dark pit with a faint bright rim
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / rng.uniform(6, 16) ** 2
        return image + 1.3 * strength * (0.5 * np.exp(-d2 / 2.5) - np.exp(-d2)), d2 < 4, kind
    if kind in ("crack", "pits"):
        marks = np.zeros((SIZE, SIZE), np.float32)
        if kind == "crack":
            heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.25, int(rng.integers(40, 140))))
            xs, ys = cx + np.cumsum(np.cos(heading)), cy + np.cumsum(np.sin(heading))
            width, depth = rng.uniform(0.7, 1.3), 0.6
            scale = 2 * np.pi * width**2 / 1.5
        else:
            angle, r = rng.uniform(0, 2 * np.pi, 15), rng.uniform(15, 35) * np.sqrt(rng.random(15))
            n = int(rng.integers(5, 15))
            xs, ys = (cx + r * np.cos(angle))[:n], (cy + r * np.sin(angle))[:n]
            width, scale, depth = rng.uniform(1.2, 2.0), 15.0, 1.2
        keep = (xs >= 0) & (xs < SIZE) & (ys >= 0) & (ys < SIZE)
        marks[ys[keep].astype(int), xs[keep].astype(int)] = 1.0
        marks = np.clip(ndimage.gaussian_filter(marks, width) * scale, 0, 1)
        return image - depth * strength * marks, marks > 0.1, kind
    region = _irregular_region(rng, cx, cy, rng.uniform(15, 45) if kind == "stain" else rng.uniform(20, 50))
    if kind == "stain":  # darker or lighter, with more or less contrast
        soft = ndimage.gaussian_filter(region.astype(np.float32), 3)
        gain = rng.uniform(0.5, 0.7) if rng.random() < 0.5 else rng.uniform(1.4, 1.8)
        shift = rng.choice([-1.0, 1.0]) * 0.6 * strength
        return image + soft * ((image - image.mean()) * (gain - 1) + shift), region, kind
    soft = ndimage.gaussian_filter(region.astype(np.float32), 2)  # smear: the texture's detail wiped out
    blurred = ndimage.gaussian_filter(image, rng.uniform(3, 6))
    return image * (1 - soft) + blurred * soft, region, kind


def label_ellipse(changed: np.ndarray) -> Ellipse:
    """The ellipse a labeller would draw: the changed pixels' ellipse, 20 % larger, at least 4 px."""
    e = Ellipse.from_mask(changed)
    return Ellipse(e.cx, e.cy, max(1.2 * e.a, 4.0), max(1.2 * e.b, 4.0), e.angle)


def _draw(task) -> str | None:
    folder, number, family, defective, seed = task
    rng = np.random.default_rng(seed)
    image, kind = surface(family, rng), None
    if defective:
        image, changed, kind = add_defect(image, rng)
        mask = label_ellipse(changed).mask(SIZE, SIZE)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "Label" / f"{number:04d}_label.PNG")
    Image.fromarray(np.clip(np.round(image * 255), 0, 255).astype(np.uint8)).save(folder / f"{number:04d}.PNG")
    return kind


def write_set(out: Path, seed: int, good: int, defective: int) -> dict[str, list[Sample]]:
    """Write one draw in the DAGM competition layout; return its samples with family and kind."""
    tasks = []
    for c, family in enumerate(FAMILIES):
        numbers = {"Train": 0, "Test": 0}
        for part in numbers:
            (out / f"Class{c + 1}" / part / "Label").mkdir(parents=True, exist_ok=True)
        for is_defective, count in ((False, good), (True, defective)):
            for i in range(count):
                part = "Test" if i < count // 4 else "Train"
                numbers[part] += 1
                state = np.random.SeedSequence([seed, c, int(is_defective), i]).generate_state(1)[0]
                tasks.append((out / f"Class{c + 1}" / part, numbers[part], family, is_defective, int(state)))
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        kinds = list(pool.map(_draw, tasks, chunksize=8))
    lines: dict[Path, list[str]] = {}
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    for (folder, number, family, is_defective, _), kind in zip(tasks, kinds):
        label = f"{number:04d}_label.PNG" if is_defective else "0"
        lines.setdefault(folder, []).append(f"{number}\t{int(is_defective)}\t{number:04d}.PNG\t0\t{label}")
        splits[folder.name.lower()].append(Sample(str(folder / f"{number:04d}.PNG"), is_defective, family, defect=kind))
    for folder, rows in lines.items():
        (folder / "Label" / "Labels.txt").write_text("\n".join(rows) + "\n")
    mark_generated(out, "training.synthetic_unseen.write_set", {"seed": seed, "good": good, "defective": defective})
    return splits
