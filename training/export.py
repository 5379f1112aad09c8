"""Write the model folder that users load and the Hub receives.

The folder is exactly what gets pushed. It holds the Keras 3 files at its root (`config.json`,
`metadata.json`, `model.weights.h5`), so `keras.saving.load_model(folder or "hf://user/repo")`
works with safe_mode on; a tf-keras SavedModel of the same network for the legacy
`huggingface_hub.from_pretrained_keras`; and `defect_config.json`: class names, what the output means, image size,
decision threshold and the full training config, which every consumer reads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras

import space.inference
from space.inference import CONFIG_FILE, HEATMAP_LAYER
from training.config import TrainConfig
from training.model import copy_weights

# Files every model repo carries so it runs without this project: the Inference Endpoints handler,
# its requirements, and the one inference implementation (the Space's own).
REPO_FILES = (
    Path(__file__).parent / "model_repo" / "handler.py",
    Path(__file__).parent / "model_repo" / "requirements.txt",
    Path(space.inference.__file__),
)


def legacy_twin(classifier: keras.Model, config: TrainConfig):
    """The same network in tf-keras, for the legacy `huggingface_hub.from_pretrained_keras`.

    A Keras 3 `model.export()` SavedModel does not give tf-keras a model with `predict`, so the
    architecture is rebuilt in tf-keras from the same definition (build_compact or
    build_efficientnet) and the weights are copied in order. Its SavedModel files
    (saved_model.pb, keras_metadata.pb, variables/, fingerprint.pb) sit beside the Keras 3 files;
    each loader reads only its own.
    """
    import tf_keras

    if config.backbone == "compact":
        from training.model import build_compact

        twin = build_compact(config, lib=tf_keras).classifier
    else:
        from training.pretrained import build_efficientnet

        twin, _ = build_efficientnet(config, lib=tf_keras)
    copy_weights(classifier, twin)
    return twin


def export_model(classifier: keras.Model, config: TrainConfig, threshold: float, model_dir, history=None) -> Path:
    model_dir = Path(model_dir)
    if model_dir.exists():
        if any(model_dir.iterdir()) and not (model_dir / CONFIG_FILE).is_file():
            raise FileExistsError(f"{model_dir} exists and is not a model folder: choose another --out")
        shutil.rmtree(model_dir)
    if isinstance(classifier, keras.Model):
        keras.saving.save_model(classifier, model_dir, zipped=False)
        twin = legacy_twin(classifier, config)
    else:  # a TF-Hub backbone: a tf-keras model only (see pretrained.py)
        twin = classifier
    twin.save(str(model_dir), save_format="tf", include_optimizer=False)
    info = {
        "class_names": list(config.class_names),
        "output": f"a single sigmoid unit: P({config.class_names[0]})",
        "input": "RGB or grayscale-as-RGB images, values 0-255, any size (resized inside the model)",
        "image_size": config.image_size,
        "threshold": threshold,
        "heatmap_layer": HEATMAP_LAYER if isinstance(classifier, keras.Model) else None,
        "training_config": config.to_dict(),
    }
    (model_dir / CONFIG_FILE).write_text(json.dumps(info, indent=2))
    for source in REPO_FILES:
        shutil.copy(source, model_dir / source.name)
    if history:
        (model_dir.parent / "history.json").write_text(json.dumps(history, indent=2))
    return model_dir


def reexport(model_dir) -> Path:
    """Re-write an existing model folder with this version's extras (tf-keras twin, handler,
    inference.py, card), keeping its weights, threshold, config, metrics and plots."""
    import tempfile

    from training.card import render_model_card

    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{model_dir / CONFIG_FILE} is missing: pass a folder written by `train`")
    info = json.loads((model_dir / CONFIG_FILE).read_text())
    config = TrainConfig.from_dict(info["training_config"])
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} holds a TF-Hub model (a tf-keras SavedModel only): re-train it to re-export")
    classifier = keras.saving.load_model(model_dir, compile=False)
    with tempfile.TemporaryDirectory() as keep:
        kept = [p for p in model_dir.iterdir() if p.name == "metrics.json" or p.suffix == ".png"]
        for path in kept:
            shutil.copy(path, keep)
        export_model(classifier, config, info["threshold"], model_dir)
        for path in Path(keep).iterdir():
            shutil.copy(path, model_dir / path.name)
    if (model_dir / "metrics.json").is_file():
        render_model_card(model_dir)
    return model_dir
