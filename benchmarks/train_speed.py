"""Training speed and accuracy: the tutorial's pipeline against ours, on the same data, in one run.

The tutorial (../shared/seed/README.md): images rescaled by 1/255 and resized to 224x224 RGB on
every epoch (ImageDataGenerator.flow_from_directory, batch 32), a frozen EfficientNet-B0 feature
vector + Dense(1, sigmoid), Adam, binary cross-entropy, up to 50 epochs, EarlyStopping(val_loss,
patience=3) with the test split as validation. Keras 3 has no ImageDataGenerator; its successor
`image_dataset_from_directory` decodes and resizes on every epoch the same way. Both pipelines
use EfficientNet-B0 with `weights=None`, because the ImageNet weights cannot be downloaded here.

Ours: `train --backbone efficientnet_b0 --weights none --image-size 224` (the same backbone; each
image goes through it once, the head trains on cached features), and the from-scratch `compact`
default (skip it with --no-compact).

    python benchmarks/train_speed.py --data data/synthetic

Prints, per pipeline, training images/s (training images x epochs / training seconds), training
time and test accuracy; the last line is the speed ratio, tutorial training time / ours, for the
same backbone.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def tutorial(data: Path, max_epochs: int, seed: int) -> dict:
    keras.utils.set_random_seed(seed)
    started = time.time()

    def load(split, shuffle):
        return keras.utils.image_dataset_from_directory(
            data / split, labels="inferred", label_mode="binary", color_mode="rgb", image_size=(224, 224),
            batch_size=32, shuffle=shuffle, seed=seed,
        )

    train, test = load("train", True), load("test", False)
    backbone = keras.applications.EfficientNetB0(include_top=False, weights=None, pooling="avg", input_shape=(224, 224, 3))
    backbone.trainable = False
    # Keras's EfficientNet rescales inside; the 1/255 step of the tutorial feeds a TF-Hub module
    # that wants [0, 1]. Either way each epoch decodes, resizes and scales every image again.
    model = keras.Sequential([keras.Input((224, 224, 3)), backbone, keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(
        train, validation_data=test, epochs=max_epochs, verbose=2,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=3)],
    )
    seconds = time.time() - started
    epochs = len(history.history["loss"])
    n_train = sum(int(x.shape[0]) for x, _ in train)
    _, accuracy = model.evaluate(test, verbose=0)
    return {"seconds": seconds, "epochs": epochs, "images_per_s": n_train * epochs / seconds, "accuracy": accuracy}


def ours(data: Path, backbone: str, seed: int) -> dict:
    from training.config import TrainConfig
    from training.train import train

    with tempfile.TemporaryDirectory() as out:
        extra = {"weights": "none", "image_size": 224} if backbone != "compact" else {}
        config = TrainConfig(data=str(data), out=out, backbone=backbone, seed=seed, **extra)
        metrics = train(config)
    n_train = sum(1 for _ in (data / "train").rglob("*.png"))
    epochs = metrics["epochs_run"]
    return {
        "seconds": metrics["train_seconds"], "epochs": epochs, "images_per_s": n_train * epochs / metrics["train_seconds"],
        "accuracy": metrics["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--max-epochs", type=int, default=50, help="the tutorial's epoch limit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compact", action="store_true", help="skip the from-scratch compact run")
    args = parser.parse_args()

    rows = {"tutorial (frozen EfficientNet-B0, re-run every epoch)": tutorial(args.data, args.max_epochs, args.seed)}
    rows["ours: efficientnet_b0, cached features"] = ours(args.data, "efficientnet_b0", args.seed)
    if not args.no_compact:
        rows["ours: compact, from scratch"] = ours(args.data, "compact", args.seed)
    print(f"\n{'pipeline':58s} {'epochs':>6s} {'train s':>8s} {'img/s':>8s} {'test acc':>8s}")
    for name, r in rows.items():
        print(f"{name:58s} {r['epochs']:6d} {r['seconds']:8.1f} {r['images_per_s']:8.1f} {r['accuracy']:8.4f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process (all runs): {peak:.0f} MiB")
    first, second = list(rows.values())[:2]
    print(f"speed ratio, same backbone (tutorial training time / ours): {first['seconds'] / second['seconds']:.1f}x")


if __name__ == "__main__":
    main()
