"""ONNX Runtime against TensorFlow on the same model folder: latency, throughput and the gap in outputs.

Both run through `DefectClassifier.predict` (the backend is the only difference: `keras` runs the
Keras model as a traced `tf.function`, `onnx` the folder's `model.onnx`, which this script writes
into a temporary copy with `export --format onnx`), on the Space's example images.

    .venv/bin/python benchmarks/export_speed.py --model runs/default/model [--n 40] [--batch 32]

Prints the p50/p95 of single-image calls and the batch images/s of each, the largest difference in
P(defects) and in the heat map, OpenVINO's rate on the same ONNX file where it is installed (the
network alone, float32 and bfloat16), the tutorial's `model.predict` p50 on the same model and the
p50 ratios, and the batch throughput ratio (ONNX Runtime / TensorFlow) last.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from defect_inference import DefectClassifier, read_image  # noqa: E402
from training.export import export_onnx  # noqa: E402


def single_image_ms(classifier: DefectClassifier, images: list[np.ndarray], n: int) -> tuple[float, float]:
    seconds = []
    for i in range(n):
        start = time.perf_counter()
        classifier.predict([images[i % len(images)]])
        seconds.append(time.perf_counter() - start)
    return float(np.percentile(seconds, 50)) * 1000, float(np.percentile(seconds, 95)) * 1000


def batch_rate(classifier: DefectClassifier, batch: list[np.ndarray], repeats: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        classifier.predict(batch)
    return repeats * len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (a copy gets model.onnx; the folder is not changed)")
    parser.add_argument("--n", type=int, default=40, help="timed single-image calls per backend")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    examples = sorted((Path(__file__).resolve().parents[1] / "space" / "examples").glob("*.png"))
    images = [read_image(p) for p in examples]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(args.model, folder)
        started = time.perf_counter()
        export_onnx(folder)
        print(f"export --format onnx: {time.perf_counter() - started:.1f} s")
        backends = {name: DefectClassifier(folder, backend=name) for name in ("keras", "onnx")}
        size = backends["keras"].image_size
        batch = [np.asarray(np.resize(images[i % len(images)], (size, size, 3))) for i in range(args.batch)]
        answers = {name: c.predict(images) for name, c in backends.items()}
        p_gap = max(abs(a.p_defects - b.p_defects) for a, b in zip(answers["keras"], answers["onnx"]))
        map_gap = max(float(np.abs(a.defect_map - b.defect_map).max()) for a, b in zip(answers["keras"], answers["onnx"]))
        print(f"largest difference onnx vs keras: P(defects) {p_gap:.1e}, heat map {map_gap:.1e}")
        rates, p50s = {}, {}
        for name, classifier in backends.items():
            classifier.predict(batch)  # warm: traces or allocates for the batch shape
            p50s[name], p95 = single_image_ms(classifier, images, args.n)
            rates[name] = batch_rate(classifier, batch)
            print(f"{name}: single image p50 {p50s[name]:.1f} ms, p95 {p95:.1f} ms; batch of {args.batch} at {size}px: "
                  f"{rates[name]:.1f} images/s")
        tutorial = tutorial_p50_ms(backends["keras"].model, images, args.n)
        openvino_lines(folder / "model.onnx", backends["onnx"], batch)
    print(f"the tutorial's model.predict on one image: p50 {tutorial:.1f} ms")
    print(f"single image p50 ratios: onnx/tutorial {p50s['onnx'] / tutorial:.2f}, keras/tutorial {p50s['keras'] / tutorial:.2f}, "
          f"onnx/keras {p50s['onnx'] / p50s['keras']:.2f}")
    print(f"batch throughput ratio onnx/keras: {rates['onnx'] / rates['keras']:.2f}")


def openvino_lines(path: Path, onnx_classifier: DefectClassifier, batch: list[np.ndarray]) -> None:
    """OpenVINO on the same ONNX file, if it is installed (optional: `pip install openvino`): the
    network alone on the working-size batch, against ONNX Runtime's, in float32 and, where the CPU
    has it, bfloat16, with the largest gap in the heat map's logits."""
    try:
        import openvino
    except ImportError:
        print("openvino: not installed (pip install openvino), not measured")
        return
    squares = np.stack(batch).astype(np.float32)
    runtime = onnx_classifier._run

    def rate(run) -> float:
        run(squares)
        started = time.perf_counter()
        for _ in range(3):
            run(squares)
        return 3 * len(squares) / (time.perf_counter() - started)

    reference, onnx_rate = runtime(squares)[1], rate(runtime)
    core = openvino.Core()
    hints = ["f32"] + (["bf16"] if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else [])
    for hint in hints:
        compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": hint})
        request = compiled.create_infer_request()
        run = lambda x: request.infer({0: x})[compiled.outputs[1]]  # noqa: E731
        gap = float(np.abs(run(squares) - reference).max())
        print(f"openvino {openvino.__version__} {hint}: the network on a batch of {len(squares)}: {rate(run):.1f} images/s "
              f"(onnxruntime {onnx_rate:.1f}); largest gap in the heat map's logits {gap:.1e}")


def tutorial_p50_ms(model, images: list[np.ndarray], n: int) -> float:
    """The tutorial's way: `model.predict` on one image, which builds a pipeline around every call."""
    model.predict(images[0][None].astype(np.float32), verbose=0)
    seconds = []
    for i in range(n):
        start = time.perf_counter()
        model.predict(np.expand_dims(images[i % len(images)], 0).astype(np.float32), verbose=0)
        seconds.append(time.perf_counter() - start)
    return float(np.percentile(seconds, 50)) * 1000


if __name__ == "__main__":
    main()
