"""Generalisation: train and test the default pipeline on surfaces and defects it was not designed on.

`training/synthetic.py` made the data every setting was chosen on. This script draws a second,
independent DAGM-like set from other processes: six texture families (marble veins, a hexagonal dot
lattice, sand, leather, twill, speckle), each under an uneven illumination ramp, and five other
defect kinds (dent, crack, stain, smear, pits), labelled as DAGM's competition set is, with an
ellipse mask per defective image. It writes that set in the DAGM 2007 competition layout
(`ClassN/{Train,Test}/` with `Label/Labels.txt` and `*_label.PNG` masks), trains `train` with its
defaults on it, and scores the model on its test split and on a second draw (another seed), with
recall per kind of defect.

    python benchmarks/unseen_surfaces.py --out runs/unseen [--target-recall 0.9] [--per-class-good 140]

Takes about 11 minutes on 2 cores with the default sizes (1,260 images per draw). The last line is
the headline: accuracy, recall, false alarms and ROC AUC on the second draw.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from training.data import Ellipse, Sample  # noqa: E402
from training.synthetic import SIZE, smooth_noise  # noqa: E402

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
    return splits


def summary(metrics: dict) -> str:
    return (
        f"accuracy {metrics['accuracy']:.3f}, recall {metrics['recall']:.3f}, "
        f"false alarms {100 * metrics['false_alarm_rate']:.1f} %, ROC AUC {metrics['roc_auc']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/unseen"))
    parser.add_argument("--per-class-good", type=int, default=140)
    parser.add_argument("--per-class-defective", type=int, default=70)
    parser.add_argument("--target-recall", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from training.config import TrainConfig
    from training.train import train

    sizes = (args.per_class_good, args.per_class_defective)
    first = write_set(args.out / "data", args.seed, *sizes)
    second = write_set(args.out / "second_draw", args.seed + 1, *sizes)
    train(TrainConfig(data=str(args.out / "data"), out=str(args.out / "run"), target_recall=args.target_recall, seed=args.seed))
    second_draw = report(args.out / "run" / "model", first["test"], second["train"] + second["test"])
    print(f"unseen surfaces, default training, second draw: {summary(second_draw)}")


def report(model_dir: Path, own_test: list[Sample], second_draw: list[Sample]) -> dict:
    """Score the model on both sets with the kinds of defect the DAGM layout cannot carry; return
    the second draw's metrics."""
    from training.evaluate import evaluate_model

    results = {}
    for name, samples in (("its test split", own_test), ("a second draw", second_draw)):
        metrics = results[name] = evaluate_model(model_dir, samples)
        print(f"{name} ({metrics['n_test']} images): {summary(metrics)}")
        print("  recall per kind: " + ", ".join(f"{k} {v['recall']:.2f} ({v['n']})" for k, v in metrics["per_defect"].items()))
        print("  accuracy per family: " + ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in metrics["per_texture"].items()))
    return results["a second draw"]


if __name__ == "__main__":
    main()
