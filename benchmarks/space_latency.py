"""Per-image latency and batch throughput of the Space's predict path vs the tutorial's way.

The tutorial classified one image with `model.predict(np.expand_dims(img, 0))`, which builds a
data pipeline and a step function around every call. The Space calls `DefectClassifier.predict`,
a `tf.function` traced once (warmed at start-up) that also returns the heat map.

    .venv/bin/python benchmarks/space_latency.py --model runs/demo/model [--n 40]

Prints p50/p95 for both, batch throughput, the Space's whole `/predict` as a program sees it
(`gradio_client` against the app served on loopback: upload, reading, predict, overlay, encoding),
and the p50 ratio (ours / tutorial's) last.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the Space's app, beside this folder

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from defect_inference import DefectClassifier, read_image  # noqa: E402


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50)) * 1000, float(np.percentile(seconds, 95)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--n", type=int, default=40, help="timed single-image calls per method")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    examples = sorted((Path(__file__).resolve().parents[1] / "space" / "examples").glob("*.png"))
    images = [read_image(p) for p in examples]
    classifier = DefectClassifier(args.model)
    classifier.warm_up()
    model = classifier.model
    model.predict(images[0][None].astype(np.float32), verbose=0)

    ours, theirs = [], []
    for i in range(args.n):
        image = images[i % len(images)]
        start = time.perf_counter()
        classifier.predict([image])
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.predict(np.expand_dims(image, 0).astype(np.float32), verbose=0)
        theirs.append(time.perf_counter() - start)
    p50, p95 = percentiles(ours)
    t50, t95 = percentiles(theirs)
    print(f"ours (compiled predict + heat map): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    print(f"tutorial's way (model.predict, one image): p50 {t50:.1f} ms, p95 {t95:.1f} ms")

    for size in (224, classifier.image_size):
        batch = [np.asarray(np.resize(images[i % len(images)], (size, size, 3))) for i in range(args.batch)]
        classifier.predict(batch)
        start = time.perf_counter()
        for _ in range(3):
            classifier.predict(batch)
        rate = 3 * args.batch / (time.perf_counter() - start)
        print(f"batch throughput, {size}px inputs (resized to {classifier.image_size} in the model): {rate:.1f} images/s")
    s50, s95 = percentiles(space_requests(classifier, examples, args.n))
    print(f"the Space's whole /predict through gradio_client: p50 {s50:.1f} ms, p95 {s95:.1f} ms")
    print(f"p50 latency ratio ours/tutorial: {p50 / t50:.2f}")


def space_requests(classifier, examples: list[Path], n: int) -> list[float]:
    """Seconds per `/predict` call of the real app, served in this process on a free port."""
    import socket

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio_client import Client, handle_file

    from space import app

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    demo = app.build_demo(classifier, [])
    app.serve(demo, port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(handle_file(str(examples[0])), api_name="/predict")
        seconds = []
        for i in range(n):
            start = time.perf_counter()
            client.predict(handle_file(str(examples[i % len(examples)])), api_name="/predict")
            seconds.append(time.perf_counter() - start)
        return seconds
    finally:
        demo.close()


if __name__ == "__main__":
    main()
