"""The inference core at the bottom: its imports, its model-folder contract, one preprocessing.

Images of other sizes than the model's must get the same P(defects) through every path (the saved
model called directly, the classifier, the CLI, the Space); folders written before schema
versions must load and answer as they did; a damaged `defect_config.json` must be refused by name.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import defect_inference
from defect_inference import DefectClassifier, ModelFolderError, read_image, resolve_model_dir
from defect_inference.model_folder import SCHEMA_VERSION, parse_model_config
from defect_inference.tiling import tile_grid

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Which top-level names each layer may never import: dependencies point down to the core.
FORBIDDEN = {
    "defect_inference": {"training", "space", "inference", "app", "tests", "benchmarks"},
    "training": {"space", "inference", "app", "tests", "benchmarks"},
    "space": {"training", "inference", "tests", "benchmarks"},
}
# Without the editable install's finder, only files beside the script can be imported: what a
# Space or a model repo holds.
STANDALONE = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')]\n"


def imported_names(path: Path) -> set[str]:
    """Top-level module names `path` imports anywhere (functions included); relative imports skipped."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                names.add(str(node.args[0].value).split(".")[0])
    return names


def layering_violations(root: Path = ROOT) -> list[str]:
    found = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((root / layer).rglob("*.py")):
            for name in sorted(imported_names(path) & forbidden):
                found.append(f"{path.relative_to(root)} imports {name}")
    return found


def test_dependencies_point_down_to_the_core():
    assert layering_violations() == []


def test_the_layering_check_catches_imports_inside_functions_and_the_bare_style(tmp_path):
    for layer in FORBIDDEN:
        shutil.copytree(ROOT / layer, tmp_path / layer, ignore=shutil.ignore_patterns("__pycache__", "examples"))
    (tmp_path / "defect_inference" / "planted.py").write_text("def f():\n    from training.data import load_splits\n")
    (tmp_path / "training" / "planted.py").write_text("import inference\n")
    (tmp_path / "space" / "planted.py").write_text("import importlib\nimportlib.import_module('training.cli')\n")
    assert layering_violations(tmp_path) == [
        "defect_inference/planted.py imports training", "training/planted.py imports inference",
        "space/planted.py imports training",
    ]


def test_the_space_and_the_core_share_one_image_error():
    from space import app

    assert app.ImageError is defect_inference.ImageError and app.read_image is defect_inference.read_image
    assert "inference" not in sys.modules  # no second copy of the core under another name
    with pytest.raises(app.ImageError):  # what the app catches is what the core raises
        defect_inference.read_image(b"not an image")


def _odd_sized_images(tiny_data) -> list[np.ndarray]:
    """1024x768 (over 1.5x the 512-px training images, so judged in tiles) and 300x200 versions of a
    defective and a defect-free test image, in RGB."""
    sources = [sorted((tiny_data / "test" / kind).glob("*.png"))[0] for kind in ("defects", "no_defects")]
    return [np.asarray(Image.open(s).convert("RGB").resize(size, Image.BICUBIC)) for s in sources for size in ((1024, 768), (300, 200))]


def test_other_image_sizes_give_one_answer_on_every_path_the_saved_models_where_whole(trained, tiny_data, served, tmp_path):
    from gradio_client import Client, handle_file

    out, _ = trained
    images = _odd_sized_images(tiny_data)
    model = keras.saving.load_model(out / "model")
    direct = [float(model.predict(image[None].astype(np.float32), verbose=0)[0, 0]) for image in images]
    assert max(direct) - min(direct) > 0.05  # the images differ for the model, so equality means something
    classifier = DefectClassifier(out / "model")
    core = classifier.predict(images)  # one batch of whole and tiled images
    grids = [tile_grid(*image.shape[:2], classifier.image_size, classifier.config.preprocessing) for image in images]
    assert 0 < sum(g is None for g in grids) < len(images)
    for image, grid, result, p in zip(images, grids, core, direct):
        if grid is None:
            assert result.p_defects == pytest.approx(p, abs=1e-5) and result.tiles == 0
            continue
        # At the session's scale 1 the tiles are the image's own pixels: the largest tile's P, by hand.
        assert (grid.height, grid.width) == image.shape[:2] and result.tiles == len(grid.origins) > 1
        size = classifier.image_size
        by_hand = [float(model.predict(image[None, y : y + size, x : x + size].astype(np.float32), verbose=0)[0, 0]) for y, x in grid.origins]
        assert result.p_defects == pytest.approx(max(by_hand), abs=1e-5)
    expected = [r.p_defects for r in core]
    assert [r.heatmap.shape for r in core] == [image.shape[:2] for image in images]
    for r, image in zip(core, images):
        if r.box:
            assert 0 <= r.box[0] < r.box[2] <= image.shape[1] and 0 <= r.box[1] < r.box[3] <= image.shape[0]

    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"odd_{i}_{image.shape[1]}x{image.shape[0]}.png")
        Image.fromarray(image).save(files[-1])
    csv_path = tmp_path / "p.csv"
    run = subprocess.run(
        [str(Path(sys.executable).parent / "defect-classifier"), "predict", "--model", str(out / "model"),
         "--out", str(csv_path), *map(str, files)], capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_allclose([float(r["p_defects"]) for r in csv.DictReader(open(csv_path))], expected, atol=1e-5)

    url, _ = served
    client = Client(url, verbose=False)
    for path, p in zip(files, expected):
        label, _, _ = client.predict(handle_file(str(path)), api_name="/predict")
        confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
        assert confidences["defects"] == pytest.approx(p, abs=1e-5)


def test_a_restructured_pipeline_trains_the_same_model(trained, tiny_data):
    """The session's model, trained by today's code, answers as the one trained before the
    restructuring did (recorded by that code). A change meant to alter results updates the
    recording in a commit of its own, with its effect measured. (The threshold is not compared:
    the operating-point policy chose it differently since.)"""
    out, _ = trained
    recorded = json.loads((FIXTURES / "session_model_p_defects.json").read_text())
    images = [read_image(tiny_data / "test" / name) for name in recorded["files"]]
    p = [r.p_defects for r in DefectClassifier(out / "model").predict(images)]
    # Training arithmetic differs by CPU (bfloat16 where it exists; oneDNN's kernels per instruction
    # set), so the same code trains other weights on another kind of machine: one recording per kind.
    machine = arithmetic()
    if machine not in recorded["p_defects_by_arithmetic"]:
        pytest.skip(f"no recording for {machine!r} (this machine's P(defects): {p}); record it from the last commit's code")
    np.testing.assert_allclose(p, recorded["p_defects_by_arithmetic"][machine], atol=1e-5)


def arithmetic() -> str:
    """What decides a training run's rounding here: the compute precision and the CPU's vector instructions."""
    from training.devices import cpu_flags, resolve_precision

    return " ".join([resolve_precision("auto"), *sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})])


def test_a_folder_written_before_schema_versions_loads_and_answers_the_same(tmp_path):
    folder = FIXTURES / "model_v1"
    expected = json.loads((folder / "expected.json").read_text())
    assert "schema_version" not in json.loads((folder / "defect_config.json").read_text())
    classifier = DefectClassifier(folder)
    assert classifier.config.preprocessing.resize == "area" and classifier.image_size == 64
    images = [read_image(folder / name) for name in expected["inputs"]]
    results = classifier.predict(images)
    # The Keras path's tolerance (1e-5): the recording's CPU and an AVX-512 one differ by ~4e-6 in P.
    np.testing.assert_allclose([r.p_defects for r in results], expected["p_defects"], atol=1e-5)
    assert [r.label for r in results] == expected["labels"]
    assert [list(r.box) if r.box else None for r in results] == expected["boxes"]
    np.testing.assert_allclose([r.heatmap.mean() for r in results], expected["heatmap_means"], atol=1e-5)

    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    run = subprocess.run([sys.executable, "-m", "training", "export", "--model", str(copy)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    upgraded = json.loads((copy / "defect_config.json").read_text())
    # Never tiled (tiling depends on training images it never saw), so written as version 3, which
    # older copies of the core read.
    assert upgraded["schema_version"] == 3 and upgraded["preprocessing"] == {"resize": "area", "aspect": "stretch"}
    again = DefectClassifier(copy).predict(images)
    np.testing.assert_allclose([r.p_defects for r in again], expected["p_defects"], atol=1e-5)


GOOD_CONFIG = {"schema_version": 4, "class_names": ["defects", "no_defects"], "image_size": 512, "threshold": 0.3,
               "heatmap_layer": "seg_logits", "preprocessing": {"resize": "area", "aspect": "stretch"},
               "training_config": {"image_size": 512}}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"threshold": math.nan}, "threshold"),
        ({"threshold": 2.0}, "threshold"),
        ({"threshold": -1}, "threshold"),
        ({"threshold": "0.5"}, "threshold"),
        ({"threshold": None}, "threshold"),
        ({"image_size": 256}, "image_size"),  # differs from what it was trained at
        ({"image_size": "512"}, "image_size"),
        ({"class_names": ["defects", "no_defects", "other"]}, "class_names"),
        ({"class_names": ["ok", "ok"]}, "class_names"),
        ({"heatmap_layer": 3}, "heatmap_layer"),
        ({"preprocessing": {"resize": "lanczos9"}}, "preprocessing.resize"),
        ({"preprocessing": {"aspect": "pad"}}, "preprocessing.aspect"),
        ({"preprocessing": {"aspect": "stretch", "crop": True}}, "preprocessing"),
        ({"preprocessing": {"tile_above": -1}}, "preprocessing.tile_above"),
        ({"preprocessing": {"tile_above": 768.5}}, "preprocessing.tile_above"),
        ({"preprocessing": {"tile_scale": 0}}, "preprocessing.tile_scale"),
        ({"preprocessing": {"tile_scale": "1"}}, "preprocessing.tile_scale"),
        ({"training_config": []}, "training_config"),
        ({"schema_version": "2"}, "schema_version"),
        ({"operating_point": "recal=0.9"}, "operating_point"),
        ({"operating_curve": {"thresholds": [0.1, 0.2]}}, "operating_curve"),
    ],
)
def test_a_damaged_defect_config_is_refused_by_name(change, field):
    with pytest.raises(ModelFolderError, match=f"`{field}`.*re-export"):
        parse_model_config({**GOOD_CONFIG, **change})


def test_a_missing_key_a_newer_schema_and_bad_json_are_explained(tmp_path):
    without = {k: v for k, v in GOOD_CONFIG.items() if k != "class_names"}
    with pytest.raises(ModelFolderError, match="`class_names`"):
        parse_model_config(without)
    newer = SCHEMA_VERSION + 1
    with pytest.raises(ModelFolderError, match=f"schema version {newer}.*upgrade"):
        parse_model_config({**GOOD_CONFIG, "schema_version": newer})
    (tmp_path / "defect_config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        DefectClassifier(tmp_path)
    assert parse_model_config(GOOD_CONFIG).threshold == 0.3


def test_a_path_is_never_looked_up_on_the_hub(tmp_path, monkeypatch, hub):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    requests = len(hub.requests)
    for typo in ("runs/modle", "./model", str(tmp_path / "nothing"), "a/b/c"):
        with pytest.raises(ModelFolderError, match="is not a folder"):
            resolve_model_dir(typo)
    assert len(hub.requests) == requests  # nothing was asked of the Hub
    with pytest.raises(Exception, match="404|not found|Repository Not Found"):
        resolve_model_dir("tester/no-such-model")  # a repo id is looked up on the Hub
    assert len(hub.requests) > requests


def test_the_model_repo_and_the_space_run_without_the_project(trained, tiny_data, hub, hf_token, tmp_path):
    """What `export` writes and `push-space` uploads carry their own copy of the core."""
    from huggingface_hub import snapshot_download

    from training.publish import push_space

    out, _ = trained
    image = sorted((tiny_data / "test" / "defects").glob("*.png"))[0]
    expected = DefectClassifier(out / "model").predict([read_image(image)])[0].p_defects
    push_space(ROOT / "space", "tester/standalone-space", "tester/surface-defects")
    space = Path(snapshot_download("tester/standalone-space", repo_type="space", local_dir=tmp_path / "space"))
    checks = {
        space: f"import app\nr = app.DefectClassifier(sys.argv[1]).predict([app.read_image(sys.argv[2])])[0]\n",
        out / "model": "from handler import EndpointHandler\nr = EndpointHandler(sys.argv[1])({'inputs': open(sys.argv[2], 'rb').read()})\n"
                       "r = type('R', (), {'p_defects': {a['label']: a['score'] for a in r}['defects']})\n",
    }
    for folder, body in checks.items():
        script = STANDALONE + "import os, sys\nsys.path.insert(0, os.getcwd())\n" + body + (
            "import defect_inference\nprint(defect_inference.__file__)\nprint(r.p_defects)\n"
            "try:\n    import training\nexcept ImportError:\n    print('no training')\n"
        )
        run = subprocess.run([sys.executable, "-c", script, str(out / "model"), str(image)], cwd=folder,
                             capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
        assert run.returncode == 0, run.stderr[-3000:]
        core_file, p, isolated = run.stdout.strip().splitlines()[-3:]
        assert Path(core_file).resolve().is_relative_to(folder.resolve()) and isolated == "no training"
        assert float(p) == pytest.approx(expected, abs=1e-5)


def test_batch_rows_keep_file_names_from_running_as_spreadsheet_formulas(tmp_path):
    from defect_inference import predict_rows

    image = FIXTURES / "model_v1" / "input_0.png"
    classifier = DefectClassifier(FIXTURES / "model_v1")
    names = ["=1+2.png", "+cmd.png", "-x.png", "@SUM(A1).png", "plain.png"]
    rows = list(predict_rows(classifier, [(n, image) for n in names] + [("=bad.png", b"not an image")]))
    assert [r["file"] for r in rows] == ["'=1+2.png", "'+cmd.png", "'-x.png", "'@SUM(A1).png", "plain.png", "'=bad.png"]
    assert rows[-1]["error"] and not rows[-1]["error"].startswith(("=", "+", "-", "@"))


def test_a_pixel_budget_stops_reading_once_it_is_spent(tmp_path):
    from defect_inference import predict_rows

    image = FIXTURES / "model_v1" / "input_0.png"
    pixels = read_image(image).shape[0] * read_image(image).shape[1]
    classifier = DefectClassifier(FIXTURES / "model_v1")
    read = []

    def source(n):
        return lambda: read.append(n) or image.read_bytes()

    rows = list(predict_rows(classifier, [(f"{n}.png", source(n)) for n in range(5)], batch_size=2, max_pixels=int(2.5 * pixels)))
    assert [bool(r["p_defects"] != "") for r in rows] == [True, True, False, False, False]
    assert all("megapixels in all; send the rest in another request" in r["error"] for r in rows[2:])
    assert read == [0, 1, 2]  # the one that crossed the budget was read, none after it
    assert all(r["p_defects"] != "" for r in predict_rows(classifier, [(f"{n}.png", image) for n in range(5)]))
