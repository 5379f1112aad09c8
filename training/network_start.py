"""Where the compact net starts: from scratch, another compact model folder's network, a start file, or a
start the package ships.

A start file (`.npz`, written by `write_start`) holds only the network: convolutions, normalizations and
the defect map; the decision is always fitted anew on the user's images. The shipped start is the
offline analogue of ImageNet weights for surface inspection: a compact net trained once on generated
surfaces and their synthetic defects (`python -m training.make_start` makes it again), which a line-side
PC without a download can still begin from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STARTS_DIR = Path(__file__).resolve().parent / "starts"
START_SUFFIX = ".npz"
SHIPPED_STARTS = {"generated-surfaces": STARTS_DIR / "generated_surfaces.npz"}


def is_network_layer(name: str) -> bool:
    from defect_inference import HEATMAP_LAYER

    return name.startswith(("conv", "norm")) or name == HEATMAP_LAYER


def start_path(source: str) -> Path:
    """The file or folder `--init-weights` names: a shipped start's file, or the path as given."""
    return SHIPPED_STARTS.get(source, Path(source))


def is_start(source: str) -> bool:
    """Whether `source` is something the compact net can start from (a start file or a Keras 3 model folder)."""
    path = start_path(source)
    return path.is_file() and path.suffix == START_SUFFIX or (path / "config.json").is_file()


def _layer_and_index(key: str, path: Path) -> tuple[str, int]:
    layer, _, index = key.rpartition("/")
    if not layer or not index.isdigit():
        raise ValueError(
            f"--init-weights {path}: its array {key!r} is not named LAYER/INDEX, so it is not a start file: "
            f"write one with python -m training.make_start (or training.network_start.write_start)"
        )
    return layer, int(index)


def network_weights(source: str) -> dict[str, list[np.ndarray]]:
    """The network's weights by layer name: of a shipped start, a start file or a compact model folder."""
    path = start_path(source)
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            layers: dict[str, list[np.ndarray]] = {}
            for (layer, _), key in sorted((_layer_and_index(k, path), k) for k in saved.files):
                layers.setdefault(layer, []).append(saved[key])
            return layers
    import keras

    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights and is_network_layer(layer.name)}


def write_start(folder: str | Path, path: Path) -> None:
    """Save a compact model folder's network as a start (one array per weight, no pickles)."""
    arrays = {f"{name}/{i}": w for name, weights in network_weights(str(folder)).items() for i, w in enumerate(weights)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def start_from(trainer, source: str) -> None:
    """Load a start's network into `trainer` (a compact trainer of the same --widths and --norm)."""
    weights = network_weights(source)
    for layer in trainer.layers:
        if layer.weights and is_network_layer(layer.name):
            theirs = weights.get(layer.name)
            if theirs is None:
                raise ValueError(f"--init-weights {source}: it has no layer {layer.name}: give a compact model folder, a start file or one of {', '.join(SHIPPED_STARTS)}")
            if [w.shape for w in theirs] != [w.shape for w in layer.get_weights()]:
                raise ValueError(f"--init-weights {source}: its layer {layer.name} differs in shape: give the same --widths and --norm")
            layer.set_weights(theirs)
