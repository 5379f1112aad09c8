"""Pretrained backbones, frozen: EfficientNet-B0 from keras.applications, or a TF-Hub module.

Why: the tutorial pushed every image through a frozen EfficientNet-B0 in every one of ~40 epochs,
so nearly all its training time recomputed the same features. Here each image goes through the
frozen backbone once (features cached in memory), and the sigmoid head trains on the cached
features in seconds, with balanced class weights and early stopping on the validation split.
`--fine-tune` then unfreezes EfficientNet's top blocks at a low learning rate on augmented images
(flips, 90-degree rotations, small shifts, brightness) streamed through `tf.data`.

How each backbone is saved (see export.py):
- `efficientnet_b0`: a Keras 3 model of stock layers, image -> Resizing -> EfficientNetB0 ->
  1x1 conv `seg_logits` -> global average -> sigmoid. The 1x1 conv *is* the dense head (a global
  average commutes with it), so its map is the exact class activation map: the Space's heat map.
  The tf-keras twin is the same definition built with tf_keras.applications, weights copied.
- `tfhub:HANDLE`: Keras 3 cannot hold a hub module (`hub.KerasLayer` works only in tf-keras), so
  the model is a tf-keras SavedModel, Resizing -> Rescaling -> hub.KerasLayer -> Dense, with the
  module's weights inside. tf-keras and `from_pretrained_keras` load it as it is, Keras 3 through
  `keras.layers.TFSMLayer`. It has no heat map: a feature-vector module only gives pooled features.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from defect_inference import HEATMAP_LAYER, Preprocessing
from training.augment import augment_image
from training.backbones import Backbone, fit_verbosity, register
from training.config import HUB_PREFIX, TrainConfig
from training.data import class_weights, decode_images
from training.devices import compiled_call
from training.model import OUTPUT_LAYER, copy_weights, resize_layer

FEATURES_LAYER = "pooled_features"
IMAGENET_HELP = (
    "pass --weights PATH to a local efficientnetb0_notop.h5 (from "
    "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5), or --weights none"
)


def efficientnet_backbone(config: TrainConfig, lib, weights: str | None):
    """EfficientNetB0 without its top; `weights` is "imagenet", None, or a file path."""
    size = (config.image_size, config.image_size, 3)
    if weights == "imagenet":
        try:
            return lib.applications.EfficientNetB0(include_top=False, weights="imagenet", input_shape=size)
        except Exception as err:  # the download: no network, proxy, corrupt cache
            raise ValueError(f"cannot download the ImageNet weights of EfficientNet-B0 ({err}): {IMAGENET_HELP}") from None
    backbone = lib.applications.EfficientNetB0(include_top=False, weights=None, input_shape=size)
    if weights:
        try:
            backbone.load_weights(weights)
        except Exception as err:
            raise ValueError(
                f"--weights {weights} does not fit EfficientNet-B0 without its top ({type(err).__name__}: "
                f"{str(err)[:300]}): {IMAGENET_HELP}"
            ) from None
    return backbone


def build_efficientnet(config: TrainConfig, lib=None, weights: str | None = None):
    """(classifier, features): RGB 0-255 of any size -> P(defects), and -> pooled backbone features.

    `lib` is `keras` or `tf_keras` (the legacy twin), as in model.build_compact.
    """
    if lib is None:
        import keras as lib
    layers = lib.layers
    image = lib.Input((None, None, 3), name="image")
    x = resize_layer(config.image_size, layers)(image)
    backbone = efficientnet_backbone(config, lib, weights)
    backbone.trainable = False
    maps = backbone(x, training=False)
    logits = layers.Conv2D(1, 1, name=HEATMAP_LAYER)(maps)
    p = layers.Activation("sigmoid", name=OUTPUT_LAYER)(layers.GlobalAveragePooling2D(name="mean_logit")(logits))
    pooled = layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(maps)
    return lib.Model(image, p, name="defect_classifier"), lib.Model(image, pooled, name="features")


def hub_handle(backbone: str) -> str:
    return backbone[len(HUB_PREFIX) :]


def load_hub_module(handle: str, image_size: int):
    """`hub.load` the module and check it maps a batch of images to one vector per image."""
    import tensorflow_hub as hub

    try:
        module = hub.load(handle)
    except Exception as err:
        raise ValueError(
            f"cannot load the TF-Hub module {handle!r} ({type(err).__name__}: {str(err)[:300]}): check the "
            "handle (e.g. https://tfhub.dev/tensorflow/efficientnet/b0/feature-vector/1), the internet "
            "connection, or pass a local SavedModel folder"
        ) from None
    try:
        probe = module(tf.zeros((1, image_size, image_size, 3)))
    except Exception as err:
        raise ValueError(
            f"the TF-Hub module {handle!r} cannot take {image_size}x{image_size} RGB images "
            f"({type(err).__name__}: {str(err)[:300]}): choose an --image-size it accepts, or an image feature-vector module"
        ) from None
    if len(probe.shape) != 2:
        raise ValueError(
            f"the TF-Hub module {handle!r} returns shape {tuple(probe.shape)} for one image, not a feature "
            "vector: use an image feature-vector module"
        )
    return module


def extract_features(fn, images: np.ndarray, batch_size: int, desc: str) -> np.ndarray:
    """Run the frozen backbone once over every image (uint8 RGB), with a progress bar."""
    data = tf.data.Dataset.from_tensor_slices(images).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    out = [np.asarray(fn(tf.cast(batch, tf.float32))) for batch in tqdm(data, desc=desc, unit="batch", leave=False)]
    return np.concatenate(out)


def image_pipeline(images, labels, config: TrainConfig, training: bool) -> tf.data.Dataset:
    """uint8 RGB arrays in memory -> shuffled, augmented float batches, prefetched."""
    data = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.float32)))
    data = data.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        randoms = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True)
        data = tf.data.Dataset.zip(data, randoms).shuffle(len(images), seed=config.seed)
        data = data.map(lambda xy, r: (augment_image(xy[0], r), xy[1]), num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def train_head(features, labels, v_features, v_labels, config: TrainConfig, strategy, callbacks):
    """A single sigmoid unit on the cached features."""
    import keras

    with strategy.scope():
        head = keras.Sequential([keras.Input((features.shape[1],)), keras.layers.Dense(1, activation="sigmoid")])
        head.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="binary_crossentropy")
    history = head.fit(
        features, labels.astype(np.float32), validation_data=(v_features, v_labels.astype(np.float32)),
        batch_size=config.batch_size, epochs=config.epochs, class_weight=class_weights(float(labels.mean())),
        callbacks=callbacks(), verbose=fit_verbosity(), shuffle=True,
    )
    return head, history.history


def fine_tune(classifier, backbone_name: str, data, config: TrainConfig, strategy, callbacks) -> dict:
    """Unfreeze EfficientNet's last two stages (not its batch norms) and train end to end."""
    import keras

    (images, labels), (v_images, v_labels) = data
    with strategy.scope():
        backbone = classifier.get_layer(backbone_name)
        backbone.trainable = True
        top = False
        for layer in backbone.layers:
            top = top or layer.name.startswith("block6a")
            layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)
        classifier.compile(optimizer=keras.optimizers.Adam(config.learning_rate / 100), loss="binary_crossentropy")
    history = classifier.fit(
        image_pipeline(images, labels, config, training=True),
        validation_data=image_pipeline(v_images, v_labels, config, training=False),
        epochs=config.fine_tune_epochs, class_weight=class_weights(float(labels.mean())), callbacks=callbacks(), verbose=fit_verbosity(),
    )
    return {f"fine_tune_{k}": v for k, v in history.history.items()}


def hub_classifier(handle: str, config: TrainConfig, head):
    """The tf-keras model that is saved for a TF-Hub backbone, with the trained head's weights."""
    import tensorflow_hub as hub
    import tf_keras

    layers = tf_keras.layers
    image = tf_keras.Input((None, None, 3), name="image")
    x = resize_layer(config.image_size, layers)(image)
    x = layers.Rescaling(1.0 / 255, name="to_unit_range")(x)  # TF-Hub image modules take [0, 1]
    x = hub.KerasLayer(handle, trainable=False, name="hub_module")(x)
    dense = layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)
    model = tf_keras.Model(image, dense(x), name="defect_classifier")
    dense.set_weights(head.layers[-1].get_weights())
    return model


def train_pretrained(config: TrainConfig, fit_samples, val_samples, strategy, out):
    """Cache features, train the head, optionally fine-tune. Returns (classifier, history, val P)."""
    def callbacks():
        import keras

        return [
            keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True),
            keras.callbacks.TensorBoard(log_dir=str(out / "logs")),
        ]

    # The backbone first: a bad handle, file or unreachable download fails before any long work.
    if config.backbone.startswith(HUB_PREFIX):
        module = load_hub_module(hub_handle(config.backbone), config.image_size)
        fn = lambda batch: module(batch / 255.0)  # noqa: E731
    else:
        with strategy.scope():
            weights = None if config.weights == "none" else config.weights
            classifier, features = build_efficientnet(config, weights=weights)
        fn = compiled_call(features)
    preprocessing = Preprocessing(aspect=config.aspect)
    images, _ = decode_images(fit_samples, config.image_size, desc="decoding train", gray=False, preprocessing=preprocessing)
    v_images, _ = decode_images(val_samples, config.image_size, desc="decoding validation", gray=False, preprocessing=preprocessing)
    labels = np.array([s.defective for s in fit_samples], np.int64)
    v_labels = np.array([s.defective for s in val_samples], np.int64)
    feats = extract_features(fn, images, config.batch_size, "features (train)")
    v_feats = extract_features(fn, v_images, config.batch_size, "features (validation)")
    head, history = train_head(feats, labels, v_feats, v_labels, config, strategy, callbacks)
    if config.backbone.startswith(HUB_PREFIX):
        model = hub_classifier(hub_handle(config.backbone), config, head)
        return model, history, model.predict(v_images.astype(np.float32), verbose=0).reshape(-1)
    kernel, bias = head.layers[-1].get_weights()
    classifier.get_layer(HEATMAP_LAYER).set_weights([kernel.reshape(1, 1, -1, 1), bias])
    if config.fine_tune:
        history.update(fine_tune(classifier, "efficientnetb0", ((images, labels), (v_images, v_labels)), config, strategy, callbacks))
    return classifier, history, classifier.predict(v_images.astype(np.float32), verbose=0).reshape(-1)


def _efficientnet_twin(classifier, config: TrainConfig):
    import tf_keras

    twin, _ = build_efficientnet(config, lib=tf_keras)
    copy_weights(classifier, twin)
    return twin


def _describe(config: dict) -> tuple[str, str]:
    if config["backbone"].startswith(HUB_PREFIX):
        origin = "frozen TF-Hub module"
    else:
        origin = f"frozen, weights {config['weights']!r}" + (", top blocks fine-tuned" if config.get("fine_tune") else "")
    return origin, "of a sigmoid head on cached backbone features"


register(Backbone("efficientnet_b0", train_pretrained, _efficientnet_twin, _describe))
# A TF-Hub module lives only in tf-keras: the trained classifier is the saved form itself.
register(Backbone("tfhub", train_pretrained, None, _describe))
