"""The generated dataset: deterministic, correctly labelled, readable by `datasets`."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from training.data import CLASS_NAMES
from training.synthetic import DEFECT_KINDS, TEXTURES, GenerateConfig, generate, render


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(GenerateConfig(tmp_path / name, seed=seed, per_texture_good=2, per_texture_defective=2, textures=("grain", "weave")))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_counts_layout_and_metadata(tmp_path):
    counts = generate(GenerateConfig(tmp_path, per_texture_good=4, per_texture_defective=4))
    n = len(TEXTURES)
    assert counts == {"train": {"defects": 3 * n, "no_defects": 3 * n}, "test": {"defects": n, "no_defects": n}}
    assert len(list((tmp_path / "train" / "defects").glob("*.png"))) == 3 * n
    lines = (tmp_path / "train" / "metadata.csv").read_text().splitlines()
    assert lines[0] == "file_name,label,texture,defect,cx,cy,a,b,angle"
    good = [l for l in lines if l.startswith("no_defects/")]
    assert good and all(l.endswith(",,,,,,") for l in good)
    kinds = {l.split(",")[3] for l in lines[1:] if l.startswith("defects/")}
    assert kinds <= set(DEFECT_KINDS) and len(kinds) >= 2


@pytest.mark.parametrize("texture", TEXTURES)
def test_defect_changes_its_ellipse_and_nothing_else(texture):
    image, clean, ellipse, kind = render(texture, defective=True, seed=11)
    assert kind in DEFECT_KINDS
    assert image.shape == (512, 512) and image.dtype == np.uint8
    diff = np.abs(image.astype(int) - clean.astype(int))
    inside = ellipse.mask(512, 512)
    # A scratch touches few pixels of its ellipse, so count clearly changed pixels, not the mean.
    assert (diff[inside] >= 8).sum() >= 30
    assert (diff[~inside] >= 8).sum() <= 0.01 * (diff[inside] >= 8).sum() + 5


def test_radial_texture_is_dark_at_the_centre_without_any_defect():
    image, clean, ellipse, kind = render("radial", defective=False, seed=3)
    assert ellipse is None and kind is None and np.array_equal(image, clean)
    centre = image[236:276, 236:276].mean()
    ring = np.concatenate([image[100:140, 236:276].ravel(), image[372:412, 236:276].ravel()]).mean()
    assert centre < ring - 40


def test_datasets_imagefolder_reads_labels_and_metadata(tmp_path):
    import datasets

    generate(GenerateConfig(tmp_path, per_texture_good=4, per_texture_defective=4, textures=("cells", "rings")))
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path))
    assert set(ds) == {"train", "test"}
    train = ds["train"]
    assert {"image", "label", "texture", "defect", "cx", "cy", "a", "b", "angle"} <= set(train.column_names)
    assert train.num_rows == 12 and ds["test"].num_rows == 4
    labels = [r["label"] for r in train]
    assert sorted(set(labels)) == list(CLASS_NAMES)
    row = next(r for r in train if r["label"] == "defects")
    assert row["image"].size == (512, 512) and row["a"] > 0 and row["texture"] in ("cells", "rings")


def test_generating_again_replaces_the_dataset_and_other_folders_are_refused(tmp_path):
    generate(GenerateConfig(tmp_path / "d", per_texture_good=4, per_texture_defective=4, textures=("grain", "weave")))
    generate(GenerateConfig(tmp_path / "d", per_texture_good=2, per_texture_defective=2, textures=("grain",)))
    assert sorted(p.name for p in (tmp_path / "d" / "train" / "defects").iterdir()) == ["grain_00001.png", "grain_00002.png"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="holds something other than a generated dataset"):
        generate(GenerateConfig(tmp_path / "mine", per_texture_good=2, per_texture_defective=2, textures=("grain",)))
    assert (tmp_path / "mine" / "photo.jpg").read_bytes() == b"x"


def test_the_generate_command_refuses_counts_train_would_refuse(tmp_path, capsys):
    from training.cli import main

    assert main(["generate", "--out", str(tmp_path / "d"), "--per-texture-good", "1", "--per-texture-defective", "1"]) == 2
    assert "train needs at least 12" in capsys.readouterr().err and not (tmp_path / "d").exists()
