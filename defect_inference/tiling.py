"""Large frames in tiles: an image much larger than the training images is judged at the scale the
model learned defects at, in working-size squares, instead of being squashed into one.

Why: squashed from 4000x3000 into a 512-px square, a 12-px defect covers a pixel or two, below what
the stride-8 defect map resolves. Tiled at the training scale it keeps its size. Each tile is
judged as a whole image of the working size is (the compact net learned its defect map on crops
and its decision on whole working-size images), and the frame's P(defects) is the largest tile's.
Heat maps are stitched (the larger value where tiles overlap) into one map of the frame.

The rule travels with the model (`defect_config.json`, `preprocessing`): training of the compact
net sets `tile_above` above its largest image (so every image like the training ones is judged
whole, exactly as the threshold was chosen on) and `tile_scale` to its images' typical scale. A
frame with more tiles has more chances of a false alarm than one image: the stored operating curve
describes images like the training ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from defect_inference.model_folder import Preprocessing

# An image is judged in tiles when its longer side is this much above the largest training image's.
TILE_MARGIN = 1.5
# Input pixels per cell of the defect map: tile corners sit on whole cells, so maps stitch exactly.
MAP_STRIDE = 8
# A frame gives at most this many tiles (a 12-MP frame at scale 1 and 512 px: 63); a larger one is
# scaled down until it fits, so one image costs at most this many network runs.
MAX_TILES = 64


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie: the image scaled to (height, width) px, then squares of
    the working size with their top-left corners at `origins` (y, x), overlapping by at least an
    eighth of a tile so a defect on a seam is whole in one of them."""

    height: int
    width: int
    origins: tuple[tuple[int, int], ...]


def tiling_rule(image_shapes, image_size: int, aspect: str = "stretch") -> Preprocessing:
    """The tiling a model trained on images of these (height, width) at `image_size` keeps: tile
    above the largest one's longer side by TILE_MARGIN, at the median one's scale (stretched: the
    geometric mean of its two axes' scales, each axis stretched to the square on its own; fitted:
    its longer side's, which both axes share)."""
    longer = max(max(shape) for shape in image_shapes)
    side = max if aspect == "fit" else (lambda height, width: math.sqrt(height * width))
    sides = sorted(side(height, width) for height, width in image_shapes)
    return Preprocessing(aspect=aspect, tile_above=math.ceil(TILE_MARGIN * longer), tile_scale=round(image_size / sides[len(sides) // 2], 6))


def tile_grid(height: int, width: int, size: int, preprocessing: Preprocessing) -> TileGrid | None:
    """The tiles an (height, width) image is judged in, or None to judge it whole. An axis shorter
    than a tile at the scale is stretched to one tile (with aspect "fit" too: not mirrored yet)."""
    if not preprocessing.tile_above or max(height, width) <= preprocessing.tile_above:
        return None
    scale = preprocessing.tile_scale
    while True:
        scaled_h, scaled_w = (max(size, round(side * scale / MAP_STRIDE) * MAP_STRIDE) for side in (height, width))
        ys, xs = _starts(scaled_h, size), _starts(scaled_w, size)
        if len(ys) * len(xs) <= MAX_TILES:  # reached at the latest when both axes are one tile
            return TileGrid(scaled_h, scaled_w, tuple((y, x) for y in ys for x in xs))
        scale *= 0.9


def _starts(length: int, size: int) -> list[int]:
    """Tile starts along one axis, evenly spread from 0 to `length - size` on whole map cells, never
    more than `size - size // 8` apart."""
    last = length - size
    if last <= 0:
        return [0]
    step = max(MAP_STRIDE, (size - size // 8) // MAP_STRIDE * MAP_STRIDE - MAP_STRIDE)  # room for rounding down to a cell
    count = math.ceil(last / step) + 1
    return [i * last // (count - 1) // MAP_STRIDE * MAP_STRIDE for i in range(count)]


def cut_tiles(frame: np.ndarray, grid: TileGrid, size: int, first: int, count: int) -> np.ndarray:
    """Tiles `first` to `first + count` of a frame already scaled to the grid's size, as float32."""
    return np.stack([frame[y : y + size, x : x + size] for y, x in grid.origins[first : first + count]]).astype(np.float32)


def stitch(maps: np.ndarray, grid: TileGrid, size: int) -> np.ndarray:
    """(tiles, cells, cells) maps in [0, 1] -> one map of the scaled frame, the larger value where
    tiles overlap."""
    cells = maps.shape[1]
    stride = size // cells
    frame = np.zeros((grid.height // stride, grid.width // stride), np.float32)
    for (y, x), tile in zip(grid.origins, maps):
        window = frame[y // stride : y // stride + cells, x // stride : x // stride + cells]
        np.maximum(window, tile, out=window)
    return frame
