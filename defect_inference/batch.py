"""Many images in, one CSV-ready row each out: used by the predict CLI and the Space's batch tab alike."""

from __future__ import annotations

from defect_inference.classifier import DefectClassifier
from defect_inference.images import ImageError, read_image

ROW_COLUMNS = ("file", "p_defects", "label", "box_x0", "box_y0", "box_x1", "box_y1", "error")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet shows as it is: a leading apostrophe keeps `=1+2.png` a file name."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def predict_rows(classifier: DefectClassifier, items, batch_size: int = 16, threshold: float | None = None):
    """Yield one CSV-ready row per (name, source) item, in order, batch by batch.

    A source is anything `read_image` takes, or a function returning that (read when its batch
    comes, so a long list holds one batch of images in memory). An unreadable item yields a row
    with its reason in `error` and no prediction; the others are unaffected.
    """
    items = list(items)
    for start in range(0, len(items), batch_size):
        rows, images = [], []
        for name, source in items[start : start + batch_size]:
            try:
                images.append(read_image(source() if callable(source) else source, name=name))
                rows.append({"file": spreadsheet_safe(name)})
            except ImageError as err:
                rows.append({"file": spreadsheet_safe(name), "error": spreadsheet_safe(str(err))})
        results = iter(classifier.predict(images, threshold))
        for row in rows:
            if "error" not in row:
                result = next(results)
                row.update(p_defects=round(result.p_defects, 6), label=result.label)
                if result.box:
                    row.update(zip(ROW_COLUMNS[3:7], result.box))
            yield {column: row.get(column, "") for column in ROW_COLUMNS}
