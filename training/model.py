"""The compact backbone: a segmentation net with a decision head, trained from scratch (or from a start: network_start.py).

Why this shape: DAGM-style defects are small and faint on large textures, and a plain CNN on a
downscaled image stays at the majority guess (the tutorial's from-scratch models did). Following
Racki et al. 2018 and Bozic et al. 2021, the network works near full resolution, learns a coarse
defect map from the weak ellipse labels (`seg_logits`, stride 8), and decides from the peak and the
mean of the map and of its features (the peak against the image's own typical level). The decision
layer is fitted last on whole images (see train.py): a peak over a whole image is higher than over a
training crop, and means depend on the area. Everything is fully convolutional until global max pooling, so it
trains on crops and classifies whole images with the same weights, and the max makes the decision
independent of image size. Dilated convolutions give ~160 px of context, which is what lets it
learn that a dark spot at the centre of a radial texture is normal.

Whole images are judged in several orientations (`test_time_views`: the image, its rotations and
their mirror images) and the decision features averaged. The net is trained on all eight
orientations, yet its chance peaks on a defect-free surface differ from one orientation to the next
while a real defect shows in each, so the average lowers the former more: four views lift recall at
few false alarms on an independent set (docs/experiments.md).

Three models share one set of layers:
- `trainer`: grayscale crops (values 0-255) -> {"seg": logits map, "p_defects": probability};
- `whole_image`: grayscale images of `image_size` -> {"features": the decision features averaged
  over the views, "p_defects"}: what the decision layer is fitted and the threshold chosen on;
- `classifier`: what is saved and published: RGB uint8 images of any size -> P(defects), with
  resizing, grayscale conversion, scaling and the views inside, built only from stock Keras layers
  so `keras.saving.load_model` needs no custom code (safe_mode stays on). Its heat map
  (`HEATMAP_LAYER`'s first output) is that of the image as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from defect_inference import HEATMAP_LAYER, Preprocessing
from training.config import TrainConfig

OUTPUT_LAYER = "p_defects"
RESIZE_LAYER = "resize"


@dataclass
class CompactModels:
    """Three models of one set of weights."""

    trainer: keras.Model  # gray crops -> {"seg", "p_defects"}
    classifier: keras.Model  # RGB image -> P(defects); what is saved
    whole_image: keras.Model  # gray image -> {"features" (the decision layer's input), "p_defects"}


def norm_layer(kind: str, name: str, layers=layers):
    """`instance`: each feature relative to the image's own statistics, the same in training and
    inference; `batch`: ordinary batch normalization."""
    if kind == "instance":
        return layers.GroupNormalization(groups=-1, epsilon=1e-3, name=name)
    return layers.BatchNormalization(momentum=0.95, name=name)


def build_compact(config: TrainConfig, lib=keras) -> CompactModels:
    """Build the three views. `lib` is `keras` (Keras 3), or `tf_keras` for the legacy twin that
    export.py saves as a SavedModel: one definition serves both, layer names and all."""
    layers = lib.layers
    if lib is keras:
        keras.utils.set_random_seed(config.seed)
    w = config.widths
    body = [
        layers.Rescaling(1.0 / 255, name="rescale"),
        # Per-image standardization: brightness and contrast vary between surfaces and cameras.
        layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, epsilon=1e-5, name="standardize"),
    ]
    plan = [(w[0], 5, 2, 1), (w[1], 3, 2, 1), (w[2], 3, 1, 1), (w[3], 3, 2, 1), (w[4], 3, 1, 1), (w[5], 3, 1, 2), (w[6], 3, 1, 4)]
    for i, (filters, kernel, stride, dilation) in enumerate(plan):
        body += [
            layers.Conv2D(filters, kernel, strides=stride, dilation_rate=dilation, padding="same", use_bias=False, name=f"conv{i}"),
            norm_layer(config.norm, f"norm{i}", layers),
            layers.ReLU(name=f"relu{i}"),
        ]
    # Outputs stay float32 under mixed precision: logits and probabilities need the range.
    seg_head = layers.Conv2D(1, 1, name=HEATMAP_LAYER, bias_initializer=lib.initializers.Constant(-3.0), dtype="float32")
    pools = [
        layers.GlobalMaxPooling2D(name="seg_peak"),
        layers.GlobalAveragePooling2D(name="seg_mean"),
        layers.GlobalMaxPooling2D(name="feature_peak"),
        layers.GlobalAveragePooling2D(name="feature_mean"),
    ]
    join = layers.Concatenate(name="decision_features", dtype="float32")
    decide = layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER, dtype="float32")

    def pooled(x):
        for layer in body:
            x = layer(x)
        seg = seg_head(x)
        return seg, join([pools[0](seg), pools[1](seg), pools[2](x), pools[3](x)])

    view = dihedral_views(config.test_time_views, config.image_size, layers)

    def whole_image_features(x):
        features = [pooled(v)[1] for v in view(x)]
        return features[0] if len(features) == 1 else layers.Average(name="view_average")(features)

    crops = lib.Input((None, None, 1), name="gray")
    seg, features = pooled(crops)
    trainer = lib.Model(crops, {"seg": seg, "p_defects": decide(features)}, name="compact_trainer")

    gray = lib.Input((config.image_size, config.image_size, 1), name="gray_image")
    features = whole_image_features(gray)
    whole_image = lib.Model(gray, {"features": features, "p_defects": decide(features)}, name="compact_whole_image")

    image = lib.Input((None, None, 3), name="image")
    x = resize_layer(config.image_size, layers)(image)
    to_gray = layers.Conv2D(1, 1, use_bias=False, trainable=False, name="to_gray")
    x = to_gray(x)
    to_gray.set_weights([np.full((1, 1, 3, 1), 1.0 / 3.0, dtype=np.float32)])
    classifier = lib.Model(image, decide(whole_image_features(x)), name="defect_classifier")
    return CompactModels(trainer, classifier, whole_image)


def resize_layer(size: int, layers):
    """The model's own resize, the one `defect_inference.to_working_size` runs outside it. "area"
    averages when downscaling (no aliasing) and exists in Keras 3 and tf-keras alike."""
    return layers.Resizing(size, size, interpolation=Preprocessing().resize, name=RESIZE_LAYER)


def dihedral_views(n: int, size: int, layers):
    """A function giving a square (size x size x 1) image's first `n` orientations, the image
    itself first: 1 (as given), 2 (and its transpose), 4 (its rotations), 8 (the rotations and
    their transposes).

    Stock layers only, so the saved model loads without custom code: the transpose is a Permute,
    the mirror a frozen Dense whose kernel reverses each row (exact in float32), so the layers
    exist in Keras 3 and tf-keras alike.
    """
    if n == 1:
        return lambda x: [x]
    transpose = layers.Permute((2, 1, 3), name="transpose")
    if n == 2:
        return lambda x: [x, transpose(x)]
    rows = layers.Reshape((size, size), name="rows")
    mirror = layers.Dense(size, use_bias=False, trainable=False, name="mirror")
    channel = layers.Reshape((size, size, 1), name="channel")
    mirror.build((None, size, size))
    mirror.set_weights([np.eye(size, dtype=np.float32)[::-1]])

    def views(x):
        rotations = [x]
        for _ in range(3):
            rotations.append(channel(mirror(rows(transpose(rotations[-1])))))
        return rotations if n == 4 else rotations + [transpose(r) for r in rotations]

    return views


def as_float32(models: CompactModels, config: TrainConfig) -> CompactModels:
    """The same weights in a float32 build: what is exported after mixed-precision training."""
    fresh = build_compact(config)
    copy_weights(models.classifier, fresh.classifier)
    return fresh


def copy_weights(source, target) -> None:
    """Copy weights between two builds of one definition (Keras 3 or tf-keras), layer by layer in
    build order, nested models (EfficientNet) flattened. Layer by layer keeps each layer's own
    weight order; whole-model weight lists order differently in Keras 3 and tf-keras once some
    layers are frozen."""
    for source_layer, target_layer in zip(_leaf_layers(source), _leaf_layers(target), strict=True):
        if source_layer.weights:
            target_layer.set_weights(source_layer.get_weights())


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _leaf_layers(layer)
        else:
            yield layer
