"""Every dataset layout, every image mode, and every kind of bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defect_inference import ImageError, read_image
from training.data import DataError, Ellipse, decode_images, load_splits, read_mask


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


def _disc_mask(path, size=(128, 96), centre=(70, 50), radius=10):
    """A black-and-white mask with one disc; size is (width, height) as PIL has it."""
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    mask = (((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) <= radius**2).astype(np.uint8) * 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return path


def _photo(path, size=(128, 96), seed=0):
    """A grey photograph-like image (not black and white)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).integers(60, 190, (size[1], size[0]), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    return path


def test_dagm_competition_layout_any_extension_and_letter_case(tmp_path):
    """JPG images, lower-case folders, a mask named other than <stem>_label.PNG: the mask is read
    (it was once read as defect-free) and the defective image keeps it as its pixel target."""
    folder = tmp_path / "class3" / "train"
    for name in ("0001", "0002", "0003"):
        _photo(folder / f"{name}.jpg")
    _disc_mask(folder / "label" / "0002_label.png")
    (folder / "label" / "labels.txt").write_text("1\n1\t0\t0001.jpg\t0\t\n2\t1\t0002.jpg\t0\t0002_label.png\n3\t0\t0003.jpg\t0\t\n")
    train = load_splits(tmp_path)["train"]
    assert [s.defective for s in train] == [False, True, False]
    assert train[1].mask.endswith("0002_label.png") and train[0].mask is None
    _disc_mask(folder / "label" / "0009_label.png")
    with pytest.raises(DataError, match="0009_label.png"):
        load_splits(tmp_path)


def _mvtec_category(root, kinds=("scratch", "dent"), n=3):
    for i in range(n):
        _photo(root / "train" / "good" / f"{i:03d}.png", seed=i)
        _photo(root / "test" / "good" / f"{i:03d}.png", seed=10 + i)
        for kind in kinds:
            _photo(root / "test" / kind / f"{i:03d}.png", seed=20 + i)
            _disc_mask(root / "ground_truth" / kind / f"{i:03d}_mask.png", centre=(20 + 10 * i, 40))
    return root


def test_mvtec_layout_one_category_and_several(tmp_path):
    splits = load_splits(_mvtec_category(tmp_path / "tile"))
    assert [s.defective for s in splits["train"]] == [False] * 3
    test = splits["test"]
    assert sorted({s.defect for s in test if s.defective}) == ["dent", "scratch"]
    assert all(s.mask is not None and Path(s.mask).stem == Path(s.name).stem + "_mask" for s in test if s.defective)
    assert all(s.mask is None and s.defect is None for s in test if not s.defective)
    _mvtec_category(tmp_path / "wood", kinds=("hole",))
    both = load_splits(tmp_path)
    assert {s.texture for s in both["train"]} == {"tile", "wood"}
    assert len(both["test"]) == 9 + 6


def test_mvtec_mask_without_image_is_named(tmp_path):
    root = _mvtec_category(tmp_path)
    _disc_mask(root / "ground_truth" / "scratch" / "007_mask.png")
    with pytest.raises(DataError, match="007_mask.png.*match no image|match no image.*007_mask.png"):
        load_splits(root)


def test_imagefolder_masks_from_metadata_a_mask_tree_and_beside_the_images(tmp_path):
    _imagefolder(tmp_path, splits=("train",))
    train = tmp_path / "train"
    _disc_mask(train / "masks" / "defects" / "0.png", size=(64, 64), centre=(20, 20))
    (train / "labels").mkdir()
    _disc_mask(train / "labels" / "m1.png", size=(64, 64), centre=(30, 30))
    (train / "metadata.csv").write_text("file_name,mask\ndefects/1.png,labels/m1.png\n")
    with pytest.raises(DataError, match="labels"):  # an unknown folder in the split is still refused
        load_splits(tmp_path)
    (train / "labels" / "m1.png").rename(train / "masks" / "m1.png")
    (train / "labels").rmdir()
    (train / "metadata.csv").write_text("file_name,mask\ndefects/1.png,masks/m1.png\n")
    samples = {Path(s.name).name: s for s in load_splits(tmp_path)["train"] if s.defective}
    assert samples["0.png"].mask.endswith("masks/defects/0.png")
    assert samples["1.png"].mask.endswith("masks/m1.png")


def test_masks_beside_images_are_paired_or_refused(tmp_path):
    """The magnetic tiles keep <id>.png (mask) beside <id>.jpg (photo): paired by which one is
    black and white; two photographs with one stem, or a mask with no image, are refused."""
    _imagefolder(tmp_path, splits=("train",))
    defects = tmp_path / "train" / "defects"
    _photo(defects / "tile7.jpg")
    _disc_mask(defects / "tile7.png")
    _photo(defects / "tile8.jpg")
    _disc_mask(defects / "tile8_mask.png")
    samples = {Path(s.name).name: s for s in load_splits(tmp_path)["train"]}
    assert samples["tile7.jpg"].mask.endswith("tile7.png") and "tile7.png" not in samples
    assert samples["tile8.jpg"].mask.endswith("tile8_mask.png") and "tile8_mask.png" not in samples
    _photo(defects / "tile9.jpg")
    _photo(defects / "tile9.png", seed=1)
    with pytest.raises(DataError, match="tile9.*share a name"):
        load_splits(tmp_path)
    (defects / "tile9.png").unlink()
    _disc_mask(defects / "ghost_mask.png")
    with pytest.raises(DataError, match="ghost_mask.png is named as a mask"):
        load_splits(tmp_path)


def test_a_mask_is_the_defect_target_cell_by_cell(tmp_path):
    from training.compact_training import defect_targets
    from training.data import Sample
    from defect_inference.tiling import MAP_STRIDE as STRIDE

    _photo(tmp_path / "a.png", size=(200, 100))
    mask = np.zeros((100, 200), np.uint8)
    mask[40:44, 10:190] = 255  # a thin horizontal crack across a non-square photo
    Image.fromarray(mask).save(tmp_path / "a_mask.png")
    sample = Sample(str(tmp_path / "a.png"), True, mask=str(tmp_path / "a_mask.png"))
    images, shapes = decode_images([sample], 256)
    assert shapes.tolist() == [[100, 200]]
    targets, known, centres = defect_targets([sample], shapes, 256)
    rows, cols = np.nonzero(targets[0])
    # the centres of rows 40-43 of 100 land at 103.7-111.4 of 256: cells 12-13; columns 10-189 of 200: cells 1-30
    assert set(rows) == {12, 13} and cols.min() == 1 and cols.max() == 30 and known[0] == 1
    assert len(centres[0]) == len(rows) and np.all(centres[0] % STRIDE == STRIDE // 2)

    from training.data import check_readable

    good = Sample(str(tmp_path / "a.png"), False, mask=str(tmp_path / "a_mask.png"))
    Image.fromarray(mask[:50]).save(tmp_path / "small_mask.png")
    small = Sample(str(tmp_path / "a.png"), True, mask=str(tmp_path / "small_mask.png"))
    check_readable([sample])
    with pytest.raises(DataError, match="2 image.s. or mask.s. cannot be used") as err:
        check_readable([good, small, sample])
    assert "labelled no_defects" in str(err.value) and "200x50 px, the image 200x100" in str(err.value)


def test_unseen_surfaces_generator_writes_a_readable_dagm_competition_set(tmp_path):
    from training import synthetic_unseen as bench

    written = bench.write_set(tmp_path, seed=0, good=4, defective=4)
    read = load_splits(tmp_path)
    assert {k: len(v) for k, v in read.items()} == {"train": 36, "test": 12}
    assert [s.defective for s in read["train"]] == [s.defective for s in written["train"]]
    kinds = {s.defect for s in written["train"] + written["test"] if s.defective}
    assert kinds <= set(bench.KINDS) and len(kinds) >= 3
    for sample in read["train"] + read["test"]:
        assert (sample.mask is not None) == sample.defective
        if sample.defective:
            assert 4 <= read_mask(sample.mask).sum() ** 0.5 <= 240


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
    from training.compact_training import defect_targets
    from training.data import Ellipse, Sample, decode_images
    from defect_inference.tiling import MAP_STRIDE as STRIDE

    image = np.full((370, 250), 100, np.uint8)
    yy, xx = np.mgrid[0:370, 0:250]
    image[(xx - 30) ** 2 + (yy - 200) ** 2 <= 12**2] = 250
    Image.fromarray(image).save(tmp_path / "tile.png")
    sample = Sample(str(tmp_path / "tile.png"), True, ellipse=Ellipse(30, 200, 12, 12, 0.0))
    images, shapes = decode_images([sample], 512)
    masks, known, _ = defect_targets([sample], shapes, 512)
    cells_y, cells_x = np.nonzero(masks[0])
    target = (cells_x.mean() + 0.5) * STRIDE, (cells_y.mean() + 0.5) * STRIDE
    bright_y, bright_x = np.nonzero(images[0] > 175)
    assert abs(target[0] - bright_x.mean()) < 4 and abs(target[1] - bright_y.mean()) < 4, (target, bright_x.mean(), bright_y.mean())
    assert abs(target[0] - 30 * 512 / 250) < 4 and known[0] == 1


@pytest.mark.parametrize("line", ["2\tabc\t5\t1.0\t20\t30", "2\t10\t5\t1.0\tnan\t30", "2\t10\t5", "2\t0\t5\t1.0\t20\t30"])
def test_a_bad_labels_txt_line_is_named_with_file_and_line(tmp_path, line):
    for i in range(1, 3):
        _png(tmp_path / "Class1" / f"{i:04d}.png")
        _png(tmp_path / "Class1_def" / f"{i}.png", 30)
    (tmp_path / "Class1_def" / "labels.txt").write_text(f"1\t10\t5\t1.0\t20\t30\n{line}\n")
    with pytest.raises(DataError, match=r"labels.txt, line 2: .* is not 'number semi-major"):
        load_splits(tmp_path)


@pytest.mark.parametrize("values", ["nan,10,5,3,0", "10,10,x,3,0", "10,10,5,,0", "10,10,-5,3,0"])
def test_a_bad_ellipse_in_metadata_is_named_not_dropped(tmp_path, values):
    _imagefolder(tmp_path, splits=("train",))
    (tmp_path / "train" / "metadata.csv").write_text(f"file_name,cx,cy,a,b,angle\ndefects/0.png,{values}\n")
    with pytest.raises(DataError, match=r"metadata.csv, 0.png: the defect ellipse"):
        load_splits(tmp_path)


def test_a_hub_dataset_that_cannot_be_loaded_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="is not a local folder, and the Hub dataset someone/nothing cannot be loaded"):
        load_splits("someone/nothing")


def test_decoded_training_images_have_a_stated_memory_ceiling():
    from training.data import MEMORY_SHARE, check_memory

    # Kept at the working size: 1,000 frames of any camera size take 1,000 x 512 x 512 bytes in grey.
    assert check_memory(1000, 512, 1, total=24 * 10**9) == 1000 * 512 * 512
    with pytest.raises(DataError, match=r"1000 images at 4096x4096 px take 16\.8 GB.*lower --image-size"):
        check_memory(1000, 4096, 1, total=24 * 10**9)
    assert check_memory(1000, 4096, 1, total=int(16.8e9 / MEMORY_SHARE) + 1)


def test_a_fitted_image_keeps_its_aspect_and_its_target_follows_into_the_mirror_images(tmp_path):
    """Aspect "fit": a 370x250 photo fills the 512 square's height at one scale on both axes (a
    round defect stays round), the rest of the square is its mirror image, and the target marks the
    defect and its mirror image alike; stretched, the same defect comes out ~1.5 times as wide as high."""
    from training.compact_training import defect_targets
    from training.data import Sample
    from defect_inference import Preprocessing
    from defect_inference.preprocessing import fitted_shape
    from defect_inference.tiling import MAP_STRIDE as STRIDE

    image = np.full((370, 250), 100, np.uint8)
    yy, xx = np.mgrid[0:370, 0:250]
    image[(xx - 225) ** 2 + (yy - 200) ** 2 <= 12**2] = 250
    Image.fromarray(image).save(tmp_path / "tile.png")
    mask = np.where((xx - 225) ** 2 + (yy - 200) ** 2 <= 12**2, 255, 0).astype(np.uint8)
    Image.fromarray(mask).save(tmp_path / "tile_mask.png")
    fit = Preprocessing(aspect="fit")
    for sample in (Sample(str(tmp_path / "tile.png"), True, mask=str(tmp_path / "tile_mask.png")),
                   Sample(str(tmp_path / "tile.png"), True, ellipse=Ellipse(225, 200, 12, 12, 0.0))):
        images, shapes = decode_images([sample], 512, preprocessing=fit)
        width = fitted_shape(370, 250, 512)[1]  # the photo's own part of the square, in whole map cells
        assert width % STRIDE == 0 and abs(width - 250 * 512 / 370) <= STRIDE / 2
        np.testing.assert_array_equal(images[0][:, width:], images[0][:, width - 1 : 2 * width - 512 - 1 : -1])
        bright_y, bright_x = np.nonzero(images[0][:, :width] > 175)
        assert abs(np.ptp(bright_x) - np.ptp(bright_y)) <= 1 and abs(np.ptp(bright_y) - 24 * 512 / 370) <= 2
        masks, known, centres = defect_targets([sample], shapes, 512, fit)
        marked = np.zeros((512, 512), bool)
        for cy, cx in np.argwhere(masks[0]):
            marked[cy * STRIDE : (cy + 1) * STRIDE, cx * STRIDE : (cx + 1) * STRIDE] = True
        defect = images[0] > 175
        # A mask marks every cell its pixels fall in; an ellipse, the weak label, the cells whose
        # centres it holds: most of the disc, in the photograph and in its mirror image alike.
        least = 1.0 if sample.mask is not None else 0.8
        assert defect[:, width:].sum() > 100 and known[0] == 1
        assert marked[:, :width][defect[:, :width]].mean() >= least and marked[:, width:][defect[:, width:]].mean() >= least
        assert marked.sum() < 4 * defect.sum() and len(centres[0]) == (masks[0].sum() if sample.mask is not None else 1)

    stretched, _ = decode_images([sample], 512)
    bright_y, bright_x = np.nonzero(stretched[0] > 175)
    assert np.ptp(bright_x) > 1.4 * np.ptp(bright_y)
