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


def predict_rows(
    classifier: DefectClassifier, items, batch_size: int = 16, threshold: float | None = None, max_pixels: int | None = None,
):
    """Yield one CSV-ready row per (name, source) item, in order, batch by batch.

    A source is anything `read_image` takes, or a function returning that (read when its batch
    comes, so a long list holds one batch of images in memory). An unreadable item yields a row
    with its reason in `error` and no prediction; the others are unaffected. With `max_pixels`,
    the images read in all stop at that many pixels, each counted as its own pixels or the
    network's (its tiles at the working size), whichever is more: an image past the budget, and
    every one after it, gets a row saying so instead of being read (a server's per-request budget).
    """
    items = list(items)
    spent = 0
    for start in range(0, len(items), batch_size):
        rows, images = [], []
        for name, source in items[start : start + batch_size]:
            if max_pixels is not None and spent > max_pixels:
                rows.append({"file": spreadsheet_safe(name), "error": _over_budget(max_pixels)})
                continue
            try:
                image = read_image(source() if callable(source) else source, name=name)
            except ImageError as err:
                rows.append({"file": spreadsheet_safe(name), "error": spreadsheet_safe(str(err))})
                continue
            height, width = image.shape[:2]
            spent += max(height * width, classifier.network_runs(height, width) * classifier.image_size**2)
            if max_pixels is not None and spent > max_pixels:
                rows.append({"file": spreadsheet_safe(name), "error": _over_budget(max_pixels)})
                continue
            images.append(image)
            rows.append({"file": spreadsheet_safe(name)})
        results = iter(classifier.predict(images, threshold))
        for row in rows:
            if "error" not in row:
                result = next(results)
                row.update(p_defects=round(result.p_defects, 6), label=result.label)
                if result.box:
                    row.update(zip(ROW_COLUMNS[3:7], result.box))
            yield {column: row.get(column, "") for column in ROW_COLUMNS}


def _over_budget(max_pixels: int) -> str:
    return f"not classified: this request's images reached {max_pixels / 1e6:,.0f} megapixels in all; send the rest in another request"
