"""Gradio Space: is this surface defective, and where?

Loads the model named by MODEL_ID (a Hub repo id, optionally `id@revision`, or a local model
folder) with everything that travels with it: class names, image handling, decision threshold.
Run locally with `MODEL_ID=runs/demo/model python space/app.py`. The inference core
(`defect_inference`) is the installed package here; `push-space` copies it beside this file, so
the Space runs without the rest of the project.
"""

from __future__ import annotations

import csv
import logging
import os
import signal
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Files this process writes (cached example outputs, batch result tables) live in a folder removed
# when it exits. Cached examples belong to this process's model: Gradio's default folder in the
# working directory would serve results of an earlier model after re-training.
PROCESS_FILES = tempfile.TemporaryDirectory(prefix="defect_space_")
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(Path(PROCESS_FILES.name) / "examples"))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from defect_inference import (  # noqa: E402
    IMAGE_SUFFIXES,
    ROW_COLUMNS,
    DefectClassifier,
    ImageError,
    Prediction,
    predict_rows,
    read_image,
)

log = logging.getLogger("space")
EXAMPLES_DIR = HERE / "examples"
OVERLAY_COLOR = np.array([255, 40, 0], np.float32)
DISPLAY_SIDE = 2048
BOX_COLOR = np.array([255, 230, 0], np.uint8)
MAX_BATCH = 500
MAX_ZIP_MEMBER_BYTES = 64 * 1024 * 1024
# One batch request's share of the Space: the images' bytes once inflated, and their pixels in all,
# each image counted as its own pixels or the network's (its tiles), whichever is more (at 512 px:
# about 3,800 network runs, minutes on 2 cores; 500 camera frames of 2 MP judged whole fit).
MAX_BATCH_INFLATED_BYTES = 2 * 1024**3
MAX_BATCH_PIXELS = 1_000_000_000
# One upload at most: a batch zip, or the largest single image read_image accepts (64 MP as 16-bit RGB).
MAX_UPLOAD = "400mb"
# Requests waiting beyond this many are turned away at once instead of queueing for minutes.
MAX_QUEUE = 32
# Uploads and results older than an hour are deleted, checked every quarter of an hour.
DELETE_CACHE = (900, 3600)


class UploadedImage(gr.Image):
    """`gr.Image` whose unreadable uploads (not an image, corrupt, a decompression bomb) become a
    `gr.Error` naming the problem, instead of a generic failure inside Gradio's preprocessing."""

    def get_block_name(self) -> str:
        return "image"

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception as err:
            path = getattr(payload, "path", None)
            try:
                read_image(path)
            except ImageError as reason:
                raise gr.Error(str(reason).replace(str(path), getattr(payload, "orig_name", None) or "the upload")) from None
            raise gr.Error(f"The upload cannot be read as an image ({type(err).__name__}): try a PNG or JPEG file") from None


class VerdictLabel(gr.Label):
    """`gr.Label` headlined by the verdict at the model's threshold. A plain Label headlines the
    larger probability, which contradicts the verdict whenever the threshold is not 0.5."""

    def get_block_name(self) -> str:
        return "label"

    def postprocess(self, value):
        if value is None:
            return super().postprocess(value)
        verdict, probabilities = value
        data = super().postprocess(probabilities)
        data.label = verdict
        return data


class ZipMember:
    """One image inside an uploaded zip, read only when its turn comes (so a zip of many large
    members costs one member's bytes at a time); every archive problem is an ImageError for its row."""

    def __init__(self, path: str, info: zipfile.ZipInfo):
        self.path, self.info = path, info

    def read(self) -> bytes:
        if self.info.file_size > MAX_ZIP_MEMBER_BYTES:
            raise ImageError(f"it inflates to {self.info.file_size:,} bytes; the limit is {MAX_ZIP_MEMBER_BYTES:,}: upload it on its own or smaller")
        try:
            with zipfile.ZipFile(self.path) as archive:
                return archive.read(self.info)
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as err:
            raise ImageError(f"it cannot be read from the zip ({err}): re-create the archive") from None
        except RuntimeError:  # zipfile's other RuntimeError (NotImplementedError is one too): a password is needed
            raise ImageError("it is encrypted in the zip: upload it unencrypted") from None


def expand_uploads(paths: list[str]) -> list[tuple[str, object]]:
    """(name, source) per image: uploaded files as they are, `.zip` archives member by member.

    Only a `.zip` name makes an archive (an image with a zip appended stays an image). Members are
    read one at a time, later; at most MAX_BATCH images and MAX_BATCH_INFLATED_BYTES of zipped images per request.
    """
    items: list[tuple[str, object]] = []
    inflated = 0
    for path in paths:
        name = Path(path).name
        if name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(path) as archive:
                    members = [i for i in archive.infolist() if not i.is_dir() and i.filename.lower().endswith(IMAGE_SUFFIXES)]
            except (zipfile.BadZipFile, OSError) as err:
                raise gr.Error(f"{name} is not a readable zip ({err}): re-create the archive") from None
            inflated += sum(info.file_size for info in members)
            if inflated > MAX_BATCH_INFLATED_BYTES:
                raise gr.Error(
                    f"The zips of this batch inflate to {inflated / 1024**3:.1f} GiB of images; one batch takes at most "
                    f"{MAX_BATCH_INFLATED_BYTES / 1024**3:.0f} GiB: split them into smaller batches"
                )
            items += [(f"{name}/{info.filename}", ZipMember(path, info).read) for info in members[: MAX_BATCH + 1]]
        else:
            items.append((name, path))
        if len(items) > MAX_BATCH:
            raise gr.Error(f"More than {MAX_BATCH} images in one batch: split them into smaller batches")
    return items


def overlay(image: np.ndarray, result: Prediction) -> np.ndarray:
    """The image with the defect heat map blended in red and the defect box outlined, at most
    DISPLAY_SIDE pixels on its longer side (a browser shows no more; a 64-MP overlay would cost
    gigabytes). The box in the verdict text stays in the original pixels."""
    height, width = image.shape[:2]
    scale = min(1.0, DISPLAY_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        # reducing_gap=1 box-reduces by the whole factor first: a third of the time of gap 2 on a
        # 64-MP frame, and a display image needs no finer filter.
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=1.0))
    heat = result.heatmap_at(*image.shape[:2])
    if heat is None:
        return image
    alpha = (np.float32(0.6) * heat)[..., None]
    out = image * (1 - alpha)
    out += OVERLAY_COLOR * alpha
    out = out.astype(np.uint8)
    if result.box:
        sy, sx = image.shape[0] / height, image.shape[1] / width
        x0, y0, x1, y1 = (round(v * f) for v, f in zip(result.box, (sx, sy, sx, sy)))
        t = max(2, round(max(image.shape[:2]) / 200))
        out[y0 : y0 + t, x0:x1] = out[max(y0, y1 - t) : y1, x0:x1] = BOX_COLOR
        out[y0:y1, x0 : x0 + t] = out[y0:y1, max(x0, x1 - t) : x1] = BOX_COLOR
    return out


# Presets of the decision control: (button, operating point); "stored" is the model's own.
PRESETS = (("Catch every defect I can", "recall=0.99"), ("As stored", None), ("Few false alarms", "false-alarms=0.01"))


def expectation(classifier: DefectClassifier, threshold: float) -> str:
    """What a threshold is expected to do, from the model's stored operating curve."""
    point = classifier.expected(threshold)
    if point is None:
        return f"Threshold {threshold:.4f}. This model has no stored operating curve, so no expected rates."
    (r0, r1), (f0, f1) = point.recall_interval, point.false_alarm_interval
    curve = classifier.config.operating_curve
    return (
        f"At threshold **{threshold:.4f}**, expected on data like the {curve.source} ({curve.n_defects} defective, "
        f"{curve.n_good} defect-free images): defect recall **{point.recall:.3f}** (95 % interval {r0:.3f}-{r1:.3f}), "
        f"false alarms **{100 * point.false_alarm_rate:.1f} %** ({100 * f0:.1f}-{100 * f1:.1f} %)."
    )


def build_demo(classifier: DefectClassifier, examples: list[str] | None = None) -> gr.Blocks:
    """The app; `examples` defaults to the bundled ones. Example outputs are computed once at
    start, at the stored threshold (cached in a folder of this process, so a new model never shows
    an old model's results)."""
    names = classifier.class_names
    if examples is None:
        examples, _ = example_files(None)

    def decision_threshold(threshold, operating_point) -> float:
        """The API's operating point when given, else the control's threshold, else the stored one."""
        try:
            if operating_point:
                return classifier.threshold_for(operating_point)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        return classifier.threshold if threshold is None else float(threshold)

    def classify(image_path: str | None, threshold: float | None = None, operating_point: str = ""):
        if not image_path:
            raise gr.Error("No image: upload, paste or pick an example first.")
        threshold = decision_threshold(threshold, operating_point)
        try:
            image = read_image(image_path, name=Path(image_path).name)
        except ImageError as err:
            raise gr.Error(str(err)) from None
        result = classifier.predict([image], threshold)[0]
        verdict = f"**{result.label}**: P({names[0]}) = {result.p_defects:.3f} (threshold {threshold:.4f})"
        if result.box:
            verdict += f"; box x0,y0,x1,y1 = {', '.join(map(str, result.box))}"
        if result.tiles:
            verdict += (f". Judged in {result.tiles} tiles of {classifier.image_size} px (it is much larger than the "
                        "training images); each tile is a chance of a false alarm, so expect more than the rates below")
        return (result.label, result.probabilities(names)), overlay(image, result), verdict

    def classify_batch(paths: list[str] | None, threshold: float | None = None, operating_point: str = "", progress=gr.Progress()):
        if not paths:
            raise gr.Error("No files: upload images or a zip of images first.")
        threshold = decision_threshold(threshold, operating_point)
        items = expand_uploads(paths)
        if not items:
            raise gr.Error("No images found in the upload (PNG, JPEG, BMP, TIFF, GIF, WebP, or a zip of them).")
        rows = list(progress.tqdm(predict_rows(classifier, items, threshold=threshold, max_pixels=MAX_BATCH_PIXELS),
                                  total=len(items), desc="Classifying"))
        handle, csv_path = tempfile.mkstemp(prefix="defects_", suffix=".csv", dir=PROCESS_FILES.name)
        with os.fdopen(handle, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=ROW_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        return [[row[c] for c in ROW_COLUMNS] for row in rows], csv_path

    with gr.Blocks(title="Surface defect classifier", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# Surface defect classifier\n"
            f"Upload a surface image: the model says `{names[0]}` or `{names[1]}` and shows where it sees a "
            f"defect. Its stored decision threshold is {classifier.threshold:.4f}"
            + (f" (operating point `{classifier.config.operating_point}`)." if classifier.config.operating_point else ".")
        )
        with gr.Accordion("Decision: move it along the model's operating curve", open=False):
            threshold = gr.Slider(0.0, 1.0, value=classifier.threshold, step=0.0001, label="Decision threshold on P(defects)")
            # Without a stored curve, only the stored threshold can be named.
            offered = [(text, request) for text, request in PRESETS if request is None or classifier.config.operating_curve]
            with gr.Row():
                presets = [gr.Button(text, size="sm") for text, _ in offered]
            expected = gr.Markdown(expectation(classifier, classifier.threshold))
        # API only: an operating point such as "recall=0.95" (wins over the threshold when given).
        operating_point = gr.Textbox(value="", visible=False, label="operating point")
        threshold.change(lambda t: expectation(classifier, t), inputs=threshold, outputs=expected, api_name=False)
        for button, (_, request) in zip(presets, offered):
            button.click(lambda r=request: classifier.threshold_for(r), outputs=threshold, api_name=False)
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column():
                    image = UploadedImage(type="filepath", image_mode=None, label="Surface image")
                    button = gr.Button("Classify", variant="primary")
                with gr.Column():
                    label = VerdictLabel(num_top_classes=2, label="Verdict and probabilities")
                    heat = gr.Image(type="numpy", label="Where the model sees a defect", interactive=False)
                    verdict = gr.Markdown()
            button.click(classify, inputs=[image, threshold, operating_point], outputs=[label, heat, verdict], api_name="predict")
            if examples:
                gr.Examples(examples=examples, inputs=image, outputs=[label, heat, verdict], fn=lambda path: classify(path),
                            cache_examples=True, cache_mode="eager")
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", file_types=["image", ".zip"], label="Images or a zip of images")
            run_batch = gr.Button("Classify all", variant="primary")
            table = gr.Dataframe(headers=list(ROW_COLUMNS), label="Results", interactive=False)
            download = gr.File(label="Results as CSV")
            run_batch.click(classify_batch, inputs=[files, threshold, operating_point], outputs=[table, download], api_name="predict_batch")
    return demo


def _configured(variable: str, card_field: str) -> str | None:
    """An environment variable, else the first entry of a list in this Space's README metadata
    (what push-space writes)."""
    if os.environ.get(variable):
        return os.environ[variable]
    from huggingface_hub import RepoCard

    values = RepoCard.load(HERE / "README.md").data.to_dict().get(card_field) or []
    return values[0] if values else None


def configured_model_id() -> str | None:
    return _configured("MODEL_ID", "models")


def example_files(dataset_id: str | None) -> tuple[list[str], str]:
    """(example image paths, where they come from): the dataset repo's `examples/` when it is
    reachable, else this Space's own `examples/` (which `push-space` fills with images that fit
    its model, or leaves empty). Downloads land in the Hub cache, so a restart
    does not fetch them again."""
    if dataset_id:
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(dataset_id, repo_type="dataset", allow_patterns=["examples/*"]))
            found = sorted(str(p) for p in (folder / "examples").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if found:
                return found, f"dataset {dataset_id}"
            log.warning("%s has no examples/ folder: showing this Space's own", dataset_id)
        except Exception as err:  # noqa: BLE001 - offline, private or missing: the Space still starts
            log.warning("cannot fetch examples from %s (%s): showing this Space's own", dataset_id, type(err).__name__)
    return sorted(str(p) for p in EXAMPLES_DIR.glob("*.png")), "bundled examples"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_id = configured_model_id()
    if not model_id:
        sys.exit("no model: set MODEL_ID to a Hub model repo id (user/name) or a local model folder")
    classifier = DefectClassifier.from_pretrained(model_id)
    classifier.warm_up()
    examples, source = example_files(_configured("DATASET_ID", "datasets"))
    log.info("examples: %d from %s", len(examples), source)
    # Spaces and containers stop a process with SIGTERM: exit normally, so this process's files
    # (PROCESS_FILES) and Gradio's uploads are removed, as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(build_demo(classifier, examples), int(os.environ.get("GRADIO_SERVER_PORT", "7860")), os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))


def serve(demo: gr.Blocks, port: int, host: str = "127.0.0.1", **launch) -> None:
    """Queue and launch with the Space's limits (the tests serve through here too)."""
    demo.queue(default_concurrency_limit=2, max_size=MAX_QUEUE)
    demo.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD, **launch)


if __name__ == "__main__":
    main()
