"""Write the model folder that users load and the Hub receives (the contract: defect_inference.model_folder).

The folder is exactly what gets pushed. It holds the Keras 3 files at its root (`config.json`,
`metadata.json`, `model.weights.h5`), so `keras.saving.load_model(folder or "hf://user/repo")`
works with safe_mode on; a tf-keras SavedModel of the same network for the legacy
`huggingface_hub.from_pretrained_keras`; `defect_config.json` (class names, what the output means,
image handling, decision threshold and the full training config), which every consumer reads; and
the inference core with the Inference Endpoints handler, so the repo runs without this project.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import keras

import defect_inference
from defect_inference import CONFIG_FILE, HEATMAP_LAYER, ModelConfig, Preprocessing, load_model_config
from defect_inference.onnx_backend import ONNX_FILE, ONNX_TOLERANCE, OnnxRunner, onnx_metadata, stale_fields
from training.backbones import backbone_for
from training.config import TrainConfig

log = logging.getLogger(__name__)

MODEL_REPO_FILES = (Path(__file__).parent / "model_repo" / "handler.py", Path(__file__).parent / "model_repo" / "requirements.txt")
CORE_DIR = Path(defect_inference.__file__).parent


def copy_core(folder) -> Path:
    """Copy the inference core package into `folder` (a model repo or a Space), sources only."""
    target = Path(folder) / CORE_DIR.name
    shutil.copytree(CORE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    return target


def copy_model_repo_code(model_dir) -> None:
    """This version's handler, its requirements and the inference core, into a model folder (a
    push sends them fresh, so a repo never gets an older folder's copies)."""
    for source in MODEL_REPO_FILES:
        shutil.copy(source, Path(model_dir) / source.name)
    shutil.rmtree(Path(model_dir) / CORE_DIR.name, ignore_errors=True)
    copy_core(model_dir)


def check_model_dir(model_dir: Path) -> None:
    """Refuse to write a model into a folder that holds something else (it would be replaced)."""
    if model_dir.exists() and (not model_dir.is_dir() or (any(model_dir.iterdir()) and not (model_dir / CONFIG_FILE).is_file())):
        raise FileExistsError(f"{model_dir} exists and is not a model folder: choose another --out")


def export_model(
    classifier, config: TrainConfig, threshold: float, model_dir, history=None, curve=None, operating_point: str | None = None,
    preprocessing: Preprocessing = Preprocessing(),
) -> Path:
    """Write the model folder; `threshold` was chosen by `operating_point` on `curve`, which travels
    with the model (both None for a folder from before operating points), as does `preprocessing`
    (which images are judged in tiles: `defect_inference.tiling.tiling_rule`)."""
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    backbone = backbone_for(config.backbone)
    if backbone.legacy_twin is None:  # the trained classifier is a tf-keras model, its only saved form
        twin = classifier
    else:
        keras.saving.save_model(classifier, model_dir, zipped=False)
        twin = backbone.legacy_twin(classifier, config)
    twin.save(str(model_dir), save_format="tf", include_optimizer=False)
    ModelConfig(
        class_names=tuple(config.class_names),
        image_size=config.image_size,
        threshold=float(threshold),
        heatmap_layer=HEATMAP_LAYER if backbone.legacy_twin is not None else None,
        preprocessing=preprocessing,
        training_config=config.to_dict(),
        operating_point=operating_point,
        operating_curve=curve,
    ).save(model_dir)
    if curve is not None:
        from training.plots import write_operating_curve

        write_operating_curve(model_dir, curve, curve.at(threshold))
    copy_model_repo_code(model_dir)
    if history:
        (model_dir.parent / "history.json").write_text(json.dumps(history, indent=2))
    return model_dir


def reexport(model_dir) -> Path:
    """Re-write an existing model folder with this version's extras (tf-keras twin, handler, the
    inference core, card, `defect_config.json` at the current schema), keeping its weights,
    threshold, config, metrics and plots."""
    import tempfile

    from training.card import render_model_card

    model_dir = Path(model_dir)
    info = load_model_config(model_dir)
    config = TrainConfig.from_dict(info.training_config)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} holds a TF-Hub model (a tf-keras SavedModel only): re-train it to re-export")
    classifier = keras.saving.load_model(model_dir, compile=False)
    had_onnx = (model_dir / ONNX_FILE).is_file()
    with tempfile.TemporaryDirectory() as keep:
        kept = [p for p in model_dir.iterdir() if p.name == "metrics.json" or p.suffix == ".png"]
        for path in kept:
            shutil.copy(path, keep)
        export_model(classifier, config, info.threshold, model_dir, curve=info.operating_curve, operating_point=info.operating_point,
                     preprocessing=info.preprocessing)
        for path in Path(keep).iterdir():
            shutil.copy(path, model_dir / path.name)
    if had_onnx:
        export_onnx(model_dir)
    if (model_dir / "metrics.json").is_file():
        render_model_card(model_dir)
    return model_dir


def export_onnx(model_dir) -> Path:
    """Write `model.onnx` into a model folder (see defect_inference.onnx_backend); it is kept only
    if ONNX Runtime's outputs equal the Keras model's within ONNX_TOLERANCE on sample images."""
    import tempfile

    import numpy as np
    import onnx

    from defect_inference.classifier import DefectClassifier, heatmap_from_logits
    from training.model import RESIZE_LAYER
    from training.onnx_graph import fuse_instance_norms, name_input

    model_dir = Path(model_dir)
    ours = DefectClassifier(model_dir, backend="keras")
    if ours.network is None:
        raise ValueError(f"{model_dir} holds a TF-Hub model (a tf-keras SavedModel only), which has no Keras 3 network to convert")
    size = ours.image_size
    samples = np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype(np.float32)
    expected = [np.asarray(out) for out in ours._run(samples)]  # the Keras backend's own call
    # From the layer after the resize: tf2onnx would turn the "area" resize into a nearest-neighbour
    # one, wrong for any image not already at the working size; the input is that square instead.
    network = keras.Model(ours.network.get_layer(RESIZE_LAYER).output, ours.network.outputs)
    network(samples)  # Keras's exporter needs a model that has been called
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # its per-pass optimiser report is not for users
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ONNX_FILE
        network.export(str(path), format="onnx", verbose=False)
        proto = onnx.load(str(path))
        fused = fuse_instance_norms(proto)
        name_input(proto, "image")
        log.info("ONNX: %d instance normalizations fused", fused)
        _set_metadata(proto, ours.config)
        onnx.save(proto, str(path))
        shutil.copy(model_dir / CONFIG_FILE, tmp)
        got = OnnxRunner(Path(tmp), ours.config)(samples)
        gaps = [float(np.abs(got[0] - expected[0]).max()),
                float(np.abs(heatmap_from_logits(got[1]) - heatmap_from_logits(expected[1])).max())]
        if max(gaps) > ONNX_TOLERANCE:
            raise ValueError(
                f"the ONNX conversion of {model_dir} differs from the Keras model by more than {ONNX_TOLERANCE:g} "
                f"(P(defects) {gaps[0]:.2g}, heat map {gaps[1]:.2g}): {ONNX_FILE} not written; use the Keras backend"
            )
        shutil.copy(path, model_dir / ONNX_FILE)
    return model_dir / ONNX_FILE


def restamp_onnx(path, before: ModelConfig, after: ModelConfig) -> bool:
    """Give `model.onnx` the metadata of `after` (a re-decided threshold, the settings a push
    publishes) if it was exported from `before`; a file from anything else is left as it is, to
    be refused. Returns whether it was exported from `before`."""
    import onnx

    proto = onnx.load(str(path))
    if stale_fields({p.key: p.value for p in proto.metadata_props}, before):
        return False
    _set_metadata(proto, after)
    onnx.save(proto, str(path))
    return True


def _set_metadata(proto, config: ModelConfig) -> None:
    del proto.metadata_props[:]
    for key, value in onnx_metadata(config).items():
        proto.metadata_props.add(key=key, value=value)
