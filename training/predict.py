"""Classify many images from files or folders into a CSV, in batches, with a progress bar.

An unreadable file gets its reason in the `error` column (and on stderr); the rest still run.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from tqdm import tqdm

from space.inference import DefectClassifier, ImageError, read_image
from training.data import IMAGE_SUFFIXES

COLUMNS = ("file", "p_defects", "label", "box_x0", "box_y0", "box_x1", "box_y1", "error")


def find_images(inputs: list[str]) -> list[Path]:
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist: pass image files or folders")
    return files


def predict_to_csv(model: str, inputs: list[str], out: str, batch_size: int = 16) -> dict[str, int]:
    classifier = DefectClassifier.from_pretrained(model)
    files = find_images(inputs)
    counts = {"images": len(files), "errors": 0}
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for start in tqdm(range(0, len(files), batch_size), desc="predicting", unit="batch"):
            batch, good = files[start : start + batch_size], []
            for file in batch:
                try:
                    good.append((file, read_image(file)))
                except ImageError as err:
                    counts["errors"] += 1
                    print(f"error: {err}", file=sys.stderr)
                    writer.writerow({"file": str(file), "error": str(err)})
            for (file, _), result in zip(good, classifier.predict([img for _, img in good])):
                box = dict(zip(COLUMNS[3:7], result.box)) if result.box else {}
                writer.writerow({"file": str(file), "p_defects": f"{result.p_defects:.6f}", "label": result.label, **box})
    return counts
