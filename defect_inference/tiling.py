"""Large frames in tiles: an image much larger than the training images is judged at the scale the
model learned defects at, in working-size squares, instead of being squashed into one.

Why: squashed from 4000x3000 into a 512-px square, a 12-px defect covers a pixel or two, below what
the stride-8 defect map resolves. Tiled at the training scale it keeps its size. The network is
the same on every tile (it was trained on crops and is fully convolutional up to its max-pooled
decision), and the frame's P(defects) is the largest tile's, as a whole-image max would be. Heat
maps are stitched (the larger value where tiles overlap) into one map of the frame.

The rule travels with the model (`defect_config.json`, `preprocessing`): training sets
`tile_above` above its largest image (so every image like the training ones is judged whole,
exactly as the threshold was chosen on) and `tile_scale` to its images' typical working scale.
A frame with more tiles has more chances of a false alarm than one image: the stored operating
curve describes images like the training ones.
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
# A frame gives about this many tiles at most (a 64-MP frame at scale 1 and 512 px: 256); beyond
# it the frame is scaled down further.
MAX_TILES = 256


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie: the image scaled to (height, width) px, then squares of
    the working size with their top-left corners at `origins` (y, x), overlapping by at least an
    eighth of a tile so a defect on a seam is whole in one of them."""

    height: int
    width: int
    origins: tuple[tuple[int, int], ...]


def tiling_rule(image_shapes, image_size: int) -> Preprocessing:
    """The tiling a model trained on images of these (height, width) at `image_size` keeps: tile
    above the largest one's longer side by TILE_MARGIN, at the median one's working scale."""
    longer = sorted(max(shape) for shape in image_shapes)
    return Preprocessing(tile_above=math.ceil(TILE_MARGIN * longer[-1]), tile_scale=round(image_size / longer[len(longer) // 2], 6))


def tile_grid(height: int, width: int, size: int, preprocessing: Preprocessing) -> TileGrid | None:
    """The tiles an (height, width) image is judged in, or None to judge it whole."""
    if not preprocessing.tile_above or max(height, width) <= preprocessing.tile_above:
        return None
    # Never narrower than one tile; never more than MAX_TILES tiles.
    scale = max(preprocessing.tile_scale, size / min(height, width))
    step = size - size // 8
    scale = min(scale, max(size / min(height, width), math.sqrt(MAX_TILES * step * step / (height * width))))
    scaled_h = max(size, round(height * scale / MAP_STRIDE) * MAP_STRIDE)
    scaled_w = max(size, round(width * scale / MAP_STRIDE) * MAP_STRIDE)
    ys, xs = _starts(scaled_h, size), _starts(scaled_w, size)
    return TileGrid(scaled_h, scaled_w, tuple((y, x) for y in ys for x in xs))


def _starts(length: int, size: int) -> list[int]:
    """Tile starts along one axis: evenly spread from 0 to `length - size`, on whole map cells."""
    overlap = size // 8
    count = max(1, math.ceil((length - overlap) / (size - overlap)))
    if count == 1:
        return [0]
    last = length - size
    return sorted({min(last, round(i * last / (count - 1) / MAP_STRIDE) * MAP_STRIDE) for i in range(count)} | {last})


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
