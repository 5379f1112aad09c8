"""Small defects on large camera frames: judged in tiles at the training scale against squashed into one square.

Renders 4000x3000 frames of the generated surfaces, each with one dark 12-px blotch and its
defect-free twin (`training.synthetic.render_frame`), and runs a model folder's classifier on
them twice: as it judges such frames (in tiles, `defect_inference/tiling.py`) and on the frame
squashed to the working square (what the saved model alone, or a folder from before tiling, does).
A folder from before tiling is given the rule of a model trained on working-size images (stated).

    .venv/bin/python benchmarks/large_frames.py --model runs/default/model [--seeds 2] [--backend onnx]

Prints, per way: the share of defects found at the stored threshold, the false alarms on the twins,
whether the box holds the blotch, and seconds per frame; the last line is recall in tiles against
recall squashed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from defect_inference import CONFIG_FILE, DefectClassifier, read_image, to_working_size  # noqa: E402
from defect_inference.tiling import tiling_rule  # noqa: E402
from training.synthetic import TEXTURES, render_frame  # noqa: E402

HEIGHT, WIDTH, DEFECT_PX = 3000, 4000, 12


def with_tiling(model: str, folder: Path) -> bool:
    """Copy the model folder to `folder`; give it the tiling rule if it has none. True if given."""
    shutil.copytree(model, folder)
    path = folder / CONFIG_FILE
    values = json.loads(path.read_text())
    if values.get("preprocessing", {}).get("tile_above"):
        return False
    size = values["image_size"]
    values["preprocessing"] = {**values.get("preprocessing", {}), **asdict(tiling_rule([(size, size)], size))}
    values["schema_version"] = max(values.get("schema_version", 1), 4)
    path.write_text(json.dumps(values, indent=2))
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (not changed; a copy is used)")
    parser.add_argument("--seeds", type=int, default=2, help="frames per generated surface")
    parser.add_argument("--backend", default="keras", choices=("keras", "onnx"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        if with_tiling(args.model, folder):
            print(f"{args.model} predates tiling: judged as a model trained on working-size images would be")
        classifier = DefectClassifier(folder, backend=args.backend)
        rule = classifier.config.preprocessing
        print(f"tiles above {rule.tile_above} px at scale {rule.tile_scale:g}, {classifier.image_size}-px tiles; threshold {classifier.threshold:.3f}")
        counts = {way: {"found": 0, "alarms": 0, "boxed": 0, "seconds": 0.0} for way in ("tiles", "squashed")}
        frames = 0
        for texture in TEXTURES:
            for seed in range(args.seeds):
                defective, clean, (x0, y0, x1, y1) = render_frame(texture, HEIGHT, WIDTH, DEFECT_PX, seed)
                for image, is_defect in ((read_image(defective), True), (read_image(clean), False)):
                    squashed = np.round(to_working_size(image, classifier.image_size)).astype(np.uint8)
                    for way, given in (("tiles", image), ("squashed", squashed)):
                        start = time.perf_counter()
                        [result] = classifier.predict([given])
                        counts[way]["seconds"] += time.perf_counter() - start
                        flagged = result.label == classifier.class_names[0]
                        if is_defect and flagged:
                            counts[way]["found"] += 1
                            sx, sy = WIDTH / given.shape[1], HEIGHT / given.shape[0]
                            bx0, by0, bx1, by1 = result.box[0] * sx, result.box[1] * sy, result.box[2] * sx, result.box[3] * sy
                            counts[way]["boxed"] += int(bx0 <= x1 and bx1 >= x0 and by0 <= y1 and by1 >= y0)
                        counts[way]["alarms"] += int(flagged and not is_defect)
                frames += 1
                print(f"  {texture} seed {seed}: done", flush=True)
        for way, c in counts.items():
            print(f"{way:9s} recall {c['found'] / frames:.3f} ({c['found']}/{frames}), false alarms on the twins "
                  f"{c['alarms'] / frames:.3f}, box on the blotch {c['boxed']}/{c['found']}, {c['seconds'] / (2 * frames):.2f} s per frame")
        print(f"recall on {DEFECT_PX}-px defects in {WIDTH}x{HEIGHT} frames: in tiles {counts['tiles']['found'] / frames:.3f} "
              f"vs squashed {counts['squashed']['found'] / frames:.3f}")


if __name__ == "__main__":
    main()
