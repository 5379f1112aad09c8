"""Large frames are judged in tiles at the training scale: a small defect survives, and every
image like the training ones is judged whole, exactly as before."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from defect_inference import DefectClassifier, Preprocessing, read_image, to_working_size
from defect_inference.tiling import MAP_STRIDE, MAX_TILES, TILE_MARGIN, stitch, tile_grid, tiling_rule
from training.synthetic import render_frame

TILED = Preprocessing(tile_above=768, tile_scale=1.0)


@pytest.mark.parametrize("size", [512, 360, 520])
@pytest.mark.parametrize(
    "shape", [(3000, 4000), (1024, 1536), (769, 769), (400, 6000), (8000, 8000), (2999, 4001), (100, 640_000), (1100, 58_181)]
)
def test_tiles_cover_the_scaled_frame_on_whole_cells_and_overlap(shape, size):
    grid = tile_grid(*shape, size, TILED)
    assert grid.height % MAP_STRIDE == 0 and grid.width % MAP_STRIDE == 0
    assert min(grid.height, grid.width) >= size
    covered = np.zeros((grid.height, grid.width), np.int32)
    for y, x in grid.origins:
        assert y % MAP_STRIDE == 0 and x % MAP_STRIDE == 0
        assert 0 <= y <= grid.height - size and 0 <= x <= grid.width - size
        covered[y : y + size, x : x + size] += 1
    assert covered.min() >= 1  # every pixel is in a tile
    # Neighbouring tiles overlap by at least an eighth of a tile, so a defect on a seam is whole in one.
    for axis, starts in ((0, sorted({y for y, _ in grid.origins})), (1, sorted({x for _, x in grid.origins}))):
        assert all(b - a <= size - size // 8 for a, b in zip(starts, starts[1:])), (axis, starts)
    assert len(grid.origins) <= MAX_TILES  # a hard limit, whatever the aspect


def test_the_scale_is_the_training_scale_and_images_like_the_training_ones_are_judged_whole():
    assert tile_grid(3000, 4000, 512, TILED).width == 4000  # the model learned at scale 1
    assert tile_grid(3000, 4000, 512, Preprocessing(tile_above=768, tile_scale=0.5)).width == 2000
    strip = tile_grid(400, 6000, 512, TILED)
    assert (strip.height, strip.width) == (512, 6000)  # a short axis is stretched to one tile
    assert tile_grid(8000, 8000, 512, TILED).width < 8000  # a 64-MP frame is scaled down to the tile limit
    assert tile_grid(512, 768, 512, TILED) is None and tile_grid(700, 300, 512, TILED) is None
    assert tile_grid(3000, 4000, 512, Preprocessing()) is None  # folders from before tiling: never


def test_the_rule_tiles_above_the_largest_training_image_at_the_median_scale():
    rule = tiling_rule([(250, 370), (200, 300), (630, 400), (240, 360), (250, 360)], 360)
    assert rule.tile_above == math.ceil(TILE_MARGIN * 630)
    assert rule.tile_scale == pytest.approx(360 / math.sqrt(250 * 360))  # both axes' scales, geometric mean
    fitted = tiling_rule([(250, 370), (200, 300), (630, 400), (240, 380), (250, 360)], 512, "fit")
    assert fitted.tile_scale == pytest.approx(512 / 370) and fitted.aspect == "fit"  # the longer side's, both axes share it


def test_stitched_maps_put_each_tile_where_it_lies_and_keep_the_larger_value_in_overlaps():
    size = 64
    grid = tile_grid(64, 150, size, Preprocessing(tile_above=100, tile_scale=1.0))
    cells = size // MAP_STRIDE
    assert len(grid.origins) == 3
    # The middle tile's value is the largest, the last one's the smallest: neither order of writing
    # nor overwriting gives the maximum everywhere.
    values = [0.5, 0.9, 0.2]
    maps = np.stack([np.full((cells, cells), v, np.float32) for v in values])
    frame = stitch(maps, grid, size)
    assert frame.shape == (grid.height // MAP_STRIDE, grid.width // MAP_STRIDE)
    expected = np.zeros(frame.shape, np.float32)
    for v, (y, x) in zip(values, grid.origins):
        window = expected[y // MAP_STRIDE : y // MAP_STRIDE + cells, x // MAP_STRIDE : x // MAP_STRIDE + cells]
        np.maximum(window, v, out=window)
    np.testing.assert_array_equal(frame, expected)
    assert frame[0, 0] == np.float32(0.5) and frame[0, -1] == np.float32(0.2) and frame.max() == np.float32(0.9)


def test_a_12_px_defect_on_a_4000x3000_frame_is_caught_in_tiles_and_lost_in_a_squash(trained):
    out, _ = trained
    stored = json.loads((out / "model" / "defect_config.json").read_text())["preprocessing"]
    # The session's training images are 512 px squares: tiles above 768 px, at their own scale.
    assert stored["tile_above"] == 768 and stored["tile_scale"] == 1.0
    classifier = DefectClassifier(out / "model")
    frame, clean, (x0, y0, x1, y1) = render_frame("clouds", 3000, 4000, 12, seed=0)
    frame, clean = read_image(frame), read_image(clean)
    tiled, tiled_clean = classifier.predict([frame, clean])
    assert tiled.label == "defects" and tiled.p_defects > 0.99
    bx0, by0, bx1, by1 = tiled.box  # in the frame's own pixels, around the defect
    assert bx0 <= x0 and by0 <= y0 and bx1 >= x1 and by1 >= y1 and (bx1 - bx0) * (by1 - by0) <= 100 * 12 * 12
    assert tiled.heatmap.shape == (3000, 4000) and tiled.tiles == 63 == classifier.network_runs(3000, 4000)
    # The defect, not the surface, made the peak: the same place on the defect-free twin is quiet.
    assert tiled_clean.heatmap[y0:y1, x0:x1].max() < 0.5 < tiled.heatmap[y0:y1, x0:x1].max()
    squashed = classifier.predict([np.round(to_working_size(frame, classifier.image_size)).astype(np.uint8)])[0]
    assert squashed.label == "no_defects" and squashed.p_defects < classifier.threshold


def test_a_fitted_model_judges_a_wide_frame_at_its_own_aspect_with_heat_map_and_box_in_its_pixels(trained, tmp_path):
    """The session model with aspect "fit" (schema 5): a 250x512 frame fills the top 248 rows of
    the working square (whole map cells) and its mirror image the rest, P is the saved model's on
    that square, and the heat map and box are the frame's own, on the defect."""
    import shutil

    import keras

    from defect_inference import ModelFolderError

    out, _ = trained
    folder = tmp_path / "fitted"
    shutil.copytree(out / "model", folder)
    config_path = folder / "defect_config.json"
    stored = json.loads(config_path.read_text())
    stored["preprocessing"]["aspect"] = "fit"
    config_path.write_text(json.dumps(stored))
    with pytest.raises(ModelFolderError, match="needs schema version 5"):
        DefectClassifier(folder)
    config_path.write_text(json.dumps({**stored, "schema_version": 5}))
    classifier = DefectClassifier(folder)
    size = classifier.image_size
    assert classifier.config.preprocessing.aspect == "fit" and json.loads(classifier.config.to_json())["schema_version"] == 5
    frame, clean, (x0, y0, x1, y1) = render_frame("clouds", 250, size, 32, seed=1)
    frame, clean = read_image(frame), read_image(clean)
    found, quiet = classifier.predict([frame, clean])
    square = to_working_size(frame, size, classifier.config.preprocessing)
    np.testing.assert_array_equal(square[248 : 2 * 248], square[247::-1][: size - 248])
    by_hand = float(keras.saving.load_model(folder).predict(square[None], verbose=0)[0, 0])
    assert found.p_defects == pytest.approx(by_hand, abs=1e-5) and found.label == "defects" and found.tiles == 0
    assert found.defect_map.shape == (248 // MAP_STRIDE, size // MAP_STRIDE) and found.heatmap.shape == (250, size)
    peak_y, peak_x = np.unravel_index(np.argmax(found.heatmap), found.heatmap.shape)
    assert y0 - MAP_STRIDE <= peak_y <= y1 + MAP_STRIDE and x0 - MAP_STRIDE <= peak_x <= x1 + MAP_STRIDE
    bx0, by0, bx1, by1 = found.box
    assert bx0 <= x0 and by0 <= y0 and bx1 >= x1 and by1 >= y1 and (bx1 - bx0) * (by1 - by0) <= 16 * 32 * 32
    assert quiet.heatmap[y0:y1, x0:x1].max() < 0.5 < found.heatmap[y0:y1, x0:x1].max()
