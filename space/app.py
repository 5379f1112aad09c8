"""Gradio Space: is this surface defective, and where?

Loads the model named by MODEL_ID (a Hub repo id, optionally `id@revision`, or a local model
folder) with everything that travels with it: class names, image size, decision threshold.
Run locally with `MODEL_ID=runs/demo/model python space/app.py`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gradio as gr
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from inference import DefectClassifier, ImageError, Prediction, read_image  # noqa: E402

EXAMPLES_DIR = HERE / "examples"
OVERLAY_COLOR = np.array([255, 40, 0], np.float32)
BOX_COLOR = np.array([255, 230, 0], np.uint8)


def overlay(image: np.ndarray, result: Prediction) -> np.ndarray:
    """The image with the defect heat map blended in red and the defect box outlined."""
    alpha = (0.6 * result.heatmap)[..., None]
    out = (image.astype(np.float32) * (1 - alpha) + OVERLAY_COLOR * alpha).astype(np.uint8)
    if result.box:
        x0, y0, x1, y1 = result.box
        t = max(2, round(max(image.shape[:2]) / 200))
        out[y0 : y0 + t, x0:x1] = out[max(y0, y1 - t) : y1, x0:x1] = BOX_COLOR
        out[y0:y1, x0 : x0 + t] = out[y0:y1, max(x0, x1 - t) : x1] = BOX_COLOR
    return out


def build_demo(classifier: DefectClassifier) -> gr.Blocks:
    names = classifier.class_names

    def classify(image_path: str | None):
        if not image_path:
            raise gr.Error("No image: upload, paste or pick an example first.")
        try:
            image = read_image(image_path)
        except ImageError as err:
            raise gr.Error(str(err)) from None
        result = classifier.predict([image])[0]
        verdict = (
            f"**{result.label}**: P({names[0]}) = {result.p_defects:.3f} "
            f"(threshold {classifier.threshold:.3f})"
        )
        if result.box:
            verdict += f"; box x0,y0,x1,y1 = {', '.join(map(str, result.box))}"
        return result.probabilities(names), overlay(image, result), verdict

    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.png"))
    with gr.Blocks(title="Surface defect classifier") as demo:
        gr.Markdown(
            "# Surface defect classifier\n"
            f"Upload a surface image: the model says `{names[0]}` or `{names[1]}` "
            f"(threshold {classifier.threshold:.3f}, chosen for high defect recall) and shows where it "
            "sees a defect."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", image_mode=None, label="Surface image")
                button = gr.Button("Classify", variant="primary")
            with gr.Column():
                label = gr.Label(num_top_classes=2, label="Probabilities")
                heat = gr.Image(type="numpy", label="Where the model sees a defect", interactive=False)
                verdict = gr.Markdown()
        button.click(classify, inputs=image, outputs=[label, heat, verdict], api_name="predict")
        if examples:
            gr.Examples(examples=examples, inputs=image, outputs=[label, heat, verdict], fn=classify, cache_examples=False)
    return demo


def main() -> None:
    model_id = os.environ.get("MODEL_ID")
    if not model_id:
        sys.exit("MODEL_ID is not set: set it to a Hub model repo id (user/name) or a local model folder")
    classifier = DefectClassifier.from_pretrained(model_id)
    classifier.warm_up()
    demo = build_demo(classifier)
    demo.queue(default_concurrency_limit=2)
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), server_port=port)


if __name__ == "__main__":
    main()
