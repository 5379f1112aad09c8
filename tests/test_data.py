"""Every dataset layout, every image mode, and every kind of bad input."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from defect_inference import ImageError, read_image
from training.data import DataError, Ellipse, decode_images, load_splits


def _png(path, value=128, size=(64, 64), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def _imagefolder(root, splits=("train", "test"), n=2):
    for split in splits:
        for label in ("defects", "no_defects"):
            for i in range(n):
                _png(root / split / label / f"{i}.png", 40 if label == "defects" else 200)
    return root


def test_imagefolder_with_metadata(tmp_path):
    from training.synthetic import DEFECT_KINDS, GenerateConfig, generate

    generate(GenerateConfig(tmp_path, per_texture_good=4, per_texture_defective=4, textures=("grain",)))
    splits = load_splits(tmp_path)
    assert set(splits) == {"train", "test"}
    train = splits["train"]
    assert sum(s.defective for s in train) == 3 and len(train) == 6
    defect = next(s for s in train if s.defective)
    assert defect.texture == "grain" and defect.ellipse is not None and defect.ellipse.a > 0
    assert defect.defect in DEFECT_KINDS
    assert all(s.ellipse is None and s.defect is None for s in train if not s.defective)


def test_imagefolder_without_metadata_and_without_test_split(tmp_path):
    splits = load_splits(_imagefolder(tmp_path, splits=("train",)))
    assert list(splits) == ["train"]
    assert [s.defective for s in splits["train"]] == [True, True, False, False]
    assert all(s.ellipse is None and s.texture is None for s in splits["train"])


def test_dagm_development_layout(tmp_path):
    for c in (1, 2):
        for i in range(1, 4):
            _png(tmp_path / f"Class{c}" / f"{i:04d}.png")
            _png(tmp_path / f"Class{c}_def" / f"{i}.png", 30)
        (tmp_path / f"Class{c}_def" / "labels.txt").write_text(
            "1\t62.24\t26.06\t0.544\t386.0\t359.2\n2\t10\t5\t1.0\t20\t30\n3\t8\t4\t0\t32\t32\n"
        )
    splits = load_splits(tmp_path)
    train = splits["train"]
    assert list(splits) == ["train"] and len(train) == 12
    first = next(s for s in train if s.defective and s.name.endswith("Class1_def/1.png"))
    assert first.texture == "Class1"
    assert first.ellipse == Ellipse(cx=386.0, cy=359.2, a=62.24, b=26.06, angle=0.544)


def test_dagm_competition_layout_masks_become_ellipses(tmp_path):
    folder = tmp_path / "Class3" / "Train"
    for name in ("0001", "0002", "0003"):
        _png(folder / f"{name}.PNG", size=(128, 128))
    mask = np.zeros((128, 128), np.uint8)
    yy, xx = np.mgrid[0:128, 0:128]
    mask[((xx - 70) / 30.0) ** 2 + ((yy - 50) / 10.0) ** 2 <= 1] = 255
    (folder / "Label").mkdir()
    Image.fromarray(mask).save(folder / "Label" / "0002_label.PNG")
    (folder / "Label" / "Labels.txt").write_text("1\n1\t0\t0001.PNG\t0\t\n2\t1\t0002.PNG\t0\t0002_label.PNG\n3\t0\t0003.PNG\t0\t\n")
    splits = load_splits(tmp_path)
    train = splits["train"]
    assert [s.defective for s in train] == [False, True, False]
    e = train[1].ellipse
    assert abs(e.cx - 70) < 1 and abs(e.cy - 50) < 1
    assert abs(e.a - 30) < 2 and abs(e.b - 10) < 2
    assert min(abs(e.angle), abs(e.angle - math.pi)) < 0.05


def test_unseen_surfaces_generator_writes_a_readable_dagm_competition_set(tmp_path):
    from training import synthetic_unseen as bench

    written = bench.write_set(tmp_path, seed=0, good=4, defective=4)
    read = load_splits(tmp_path)
    assert {k: len(v) for k, v in read.items()} == {"train": 36, "test": 12}
    assert [s.defective for s in read["train"]] == [s.defective for s in written["train"]]
    kinds = {s.defect for s in written["train"] + written["test"] if s.defective}
    assert kinds <= set(bench.KINDS) and len(kinds) >= 3
    for sample in read["train"] + read["test"]:
        assert (sample.ellipse is not None) == sample.defective
        if sample.defective:
            assert 4 <= sample.ellipse.b <= sample.ellipse.a <= 120


def test_hf_dataset_object(tmp_path):
    import datasets

    images = [Image.new("L", (32, 32), v) for v in (10, 20, 200, 210)]
    ds = datasets.Dataset.from_dict(
        {"image": images, "label": [0, 0, 1, 1]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["defects", "no_defects"])}),
    )
    splits = load_splits(datasets.DatasetDict({"train": ds, "test": ds}))
    assert [s.defective for s in splits["test"]] == [True, True, False, False]
    gray, _ = decode_images(splits["train"], 64)
    assert gray.shape == (4, 64, 64) and gray[0].mean() == pytest.approx(10, abs=1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda r: (r / "train").mkdir(), "defects is missing"),
        (lambda r: _imagefolder(r, splits=("test",)), "no layout"),
        (lambda r: [_imagefolder(r), (r / "train" / "scratches").mkdir()], "scratches"),
        (lambda r: [_imagefolder(r, splits=("train",)), [p.unlink() for p in (r / "train" / "no_defects").iterdir()]], "holds no images"),
        (lambda r: None, "no layout"),
    ],
)
def test_bad_layouts_name_path_and_fix(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        load_splits(tmp_path)


def test_missing_folder_and_bad_hub_id():
    with pytest.raises(DataError, match="does not exist"):
        load_splits("/no/such/folder/anywhere")


def test_corrupt_images_are_all_listed(tmp_path):
    root = _imagefolder(tmp_path, splits=("train",))
    (root / "train" / "defects" / "0.png").write_bytes(b"not a png at all")
    (root / "train" / "no_defects" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    samples = load_splits(root)["train"]
    with pytest.raises(DataError) as err:
        decode_images(samples, 64)
    text = str(err.value)
    assert "2 image(s) cannot be read" in text
    assert "defects/0.png" in text and "no_defects/1.png" in text


def _encode(image, fmt="PNG", **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "image, expected",
    [
        (Image.new("L", (8, 6), 100), (100, 100, 100)),
        (Image.new("RGB", (8, 6), (10, 20, 30)), (10, 20, 30)),
        (Image.new("RGBA", (8, 6), (10, 20, 30, 128)), (10, 20, 30)),
        (Image.new("LA", (8, 6), (77, 0)), (77, 77, 77)),
        (Image.new("RGB", (8, 6), (200, 100, 50)).convert("P", palette=Image.Palette.ADAPTIVE), (200, 100, 50)),
        (Image.fromarray(np.full((6, 8), 65535 // 2, np.uint16)), (127, 127, 127)),
        (Image.new("1", (8, 6), 1), (255, 255, 255)),
        (Image.new("CMYK", (8, 6), (0, 0, 0, 0)), (255, 255, 255)),
    ],
    ids=["L", "RGB", "RGBA", "LA", "P", "I;16", "1", "CMYK"],
)
def test_every_mode_reads_as_rgb(image, expected):
    for source in (image, _encode(image, "TIFF" if image.mode == "CMYK" else "PNG")):
        rgb = read_image(source)
        assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
        assert tuple(int(v) for v in rgb[0, 0]) == pytest.approx(expected, abs=2)


def test_exif_orientation_is_applied():
    image = Image.new("L", (40, 20), 0)
    image.paste(255, (0, 0, 10, 20))
    exif = Image.Exif()
    exif[274] = 6  # rotate 90 degrees clockwise to display
    rgb = read_image(_encode(image, "JPEG", exif=exif))
    assert rgb.shape == (40, 20, 3)
    assert rgb[:10, :, 0].mean() > 200 and rgb[30:, :, 0].mean() < 50


@pytest.mark.parametrize(
    "data, message",
    [(b"", "empty"), (b"hello world", "not a readable image"), (_encode(Image.new("L", (64, 64)))[:60], "corrupt")],
)
def test_bad_bytes_give_clear_errors(data, message):
    with pytest.raises(ImageError, match=message):
        read_image(data)


def test_huge_image_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(path)
    with pytest.raises(ImageError, match="megapixel limit"):
        read_image(path)


def test_the_defect_target_follows_a_non_square_image_into_the_working_square(tmp_path):
    """A 250x370 photo is stretched unequally to the 512 square; its ellipse target must stretch
    with it (it used to be scaled by the longer side: ~18 px off at x = 30, ~80 px at the centre)."""
    from training.compact_training import defect_masks
    from training.data import Ellipse, Sample, decode_images
    from training.model import STRIDE

    image = np.full((370, 250), 100, np.uint8)
    yy, xx = np.mgrid[0:370, 0:250]
    image[(xx - 30) ** 2 + (yy - 200) ** 2 <= 12**2] = 250
    Image.fromarray(image).save(tmp_path / "tile.png")
    sample = Sample(str(tmp_path / "tile.png"), True, ellipse=Ellipse(30, 200, 12, 12, 0.0))
    images, scales = decode_images([sample], 512)
    masks, known = defect_masks([sample], scales, 512)
    cells_y, cells_x = np.nonzero(masks[0])
    target = (cells_x.mean() + 0.5) * STRIDE, (cells_y.mean() + 0.5) * STRIDE
    bright_y, bright_x = np.nonzero(images[0] > 175)
    assert abs(target[0] - bright_x.mean()) < 4 and abs(target[1] - bright_y.mean()) < 4, (target, bright_x.mean(), bright_y.mean())
    assert abs(target[0] - 30 * 512 / 250) < 4 and known[0] == 1
