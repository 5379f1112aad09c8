"""Classify many images from files or folders into a CSV, in batches, with a progress bar.

An unreadable file gets its reason in the `error` column (and on stderr); the rest still run.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from tqdm import tqdm

from defect_inference import IMAGE_SUFFIXES, ROW_COLUMNS, DefectClassifier, predict_rows

log = logging.getLogger(__name__)


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


def predict_to_csv(
    model: str, inputs: list[str], out: str, batch_size: int = 16, operating_point=None, trust_savedmodel=None, backend=None
) -> dict[str, int]:
    classifier = DefectClassifier.from_pretrained(model, trust_savedmodel, backend)
    threshold = classifier.threshold_for(operating_point)
    files = find_images(inputs)
    counts = {"images": len(files), "errors": 0}
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_COLUMNS)
        writer.writeheader()
        rows = predict_rows(classifier, ((str(p), p) for p in files), batch_size, threshold)
        for row in tqdm(rows, total=len(files), desc="predicting", unit="img"):
            if row["error"]:
                counts["errors"] += 1
                log.error("%s", row["error"])
            writer.writerow(row)
    return counts
