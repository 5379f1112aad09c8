"""What the largest legal uploads cost the Space: zip bombs of zero-filled members and a 64-MP photograph.

Each case runs the Space's own path (`expand_uploads` + `predict_rows` for a zip; `read_image`,
`DefectClassifier.predict` and the display overlay for the image) in a fresh process, so its peak
memory (ru_maxrss) is its own. Targets (issue 18): the 2.6-MB zip of 40 members adds < 300 MB (it
inflates beyond the batch budget, so it is refused from its headers); one of 30 members, just inside the
budget, is read member by member; the 64-MP image answers in <= 3 s with < 500 MB extra, plus, for a model
that judges it in tiles (defect_inference/tiling.py, at most 64), the network's time for those tiles
(measured in the same process as one working-size image's time, times the tiles).

    .venv/bin/python benchmarks/upload_budget.py --model runs/demo/model

The last line holds both cases as ratios to their budgets (below 1 is within budget).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASE = """
import json, os, resource, sys, time, zipfile
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
sys.path.insert(0, {root!r})
import numpy as np
from PIL import Image
import gradio as gr
from space.app import MAX_ZIP_MEMBER_BYTES, expand_uploads, overlay
from defect_inference import DefectClassifier, predict_rows, read_image
classifier = DefectClassifier({model!r}); classifier.warm_up()
case, path, members = {case!r}, {path!r}, {members!r}
if case == "zip":
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(members):
            z.writestr(f"zeros{{i}}.png", bytes(MAX_ZIP_MEMBER_BYTES - 1))
else:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1000, 1000, 3), dtype=np.uint8)
    Image.fromarray(base).resize((8000, 8000), Image.BILINEAR).save(path, quality=90)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started = time.perf_counter()
if case == "zip":
    try:
        rows = list(predict_rows(classifier, expand_uploads([path])))
        detail = f"{{os.path.getsize(path) / 1e6:.1f}}-MB zip of {{members}}, {{sum(bool(r['error']) for r in rows)}} of {{len(rows)}} rows are errors"
    except gr.Error as err:
        detail = f"{{os.path.getsize(path) / 1e6:.1f}}-MB zip of {{members}}, refused before reading ({{err.message}})"
else:
    image = read_image(path)
    result = classifier.predict([image])[0]
    overlay(image, result)
    detail = f"8000x8000 JPEG ({{os.path.getsize(path) / 1e6:.1f}} MB), {{result.label}}, {{result.tiles}} tiles"
seconds = time.perf_counter() - started
added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
network = 0.0
if case != "zip" and result.tiles:
    square = np.zeros((classifier.image_size, classifier.image_size, 3), np.uint8)
    one = time.perf_counter(); classifier.predict([square]); network = result.tiles * (time.perf_counter() - one)
print(json.dumps({{"added_mb": added, "seconds": seconds, "network_seconds": network, "detail": detail}}))
"""


def run_case(model: str, case: str, folder: Path, members: int = 0) -> dict:
    path = str(folder / (f"bomb{members}.zip" if case == "zip" else "frame.jpg"))
    code = CASE.format(root=str(ROOT), model=model, case=case, path=path, members=members)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/demo/model")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        refused = run_case(args.model, "zip", Path(tmp), members=40)
        zipped = run_case(args.model, "zip", Path(tmp), members=30)
        frame = run_case(args.model, "image", Path(tmp))
    print(f"zip bomb: {refused['detail']}: +{refused['added_mb']:.0f} MB in {refused['seconds']:.1f} s (budget 300 MB)")
    print(f"zip bomb: {zipped['detail']}: +{zipped['added_mb']:.0f} MB in {zipped['seconds']:.1f} s (budget 300 MB)")
    time_budget = 3 + frame["network_seconds"]
    print(f"64-MP image: {frame['detail']}: +{frame['added_mb']:.0f} MB in {frame['seconds']:.1f} s "
          f"(budget 500 MB, {time_budget:.1f} s: 3 s and its tiles' network time)")
    print(
        f"budget ratios: zip memory {max(refused['added_mb'], zipped['added_mb']) / 300:.2f}, 64-MP memory {frame['added_mb'] / 500:.2f}, "
        f"64-MP time {frame['seconds'] / time_budget:.2f}"
    )


if __name__ == "__main__":
    main()
