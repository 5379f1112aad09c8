"""Train the compact backbone (model.py) on crops and fit its decision on whole images.

The network is fully convolutional, so it trains on crops of full-resolution images (much cheaper
than whole images, and a crop centred on a labelled defect is a strong positive) and is validated
and tested on whole images. Crops of defect-free images are drawn half at random and half at the
place the current model finds most defect-like (hard negatives, re-mined every few epochs); a
defective image without a mask or ellipse is cropped where the model sees its defect, so images
with only a class label still train the decision (multiple-instance style).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from defect_inference import Preprocessing
from defect_inference.preprocessing import content_shape, mirror_filled
from defect_inference.tiling import MAP_STRIDE
from training.augment import jitter_gamma, jittered_region, paste_anomaly, random_orientation, resize_crop
from training.backbones import Backbone, fit_verbosity, register
from training.config import TrainConfig
from training.data import Sample, class_weights, decode_images, read_mask
from training.devices import compiled_call, resolve_precision
from training.model import OUTPUT_LAYER, CompactModels, as_float32, build_compact
from training.network_start import start_from

log = logging.getLogger(__name__)


def defect_targets(
    samples: list[Sample], shapes: np.ndarray, size: int, preprocessing: Preprocessing = Preprocessing()
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Stride-8 target maps, whether each image has a usable one, and where its crops may centre
    (working pixels); `shapes` are the images' (height, width) on disk, and the masks were checked
    against them (`data.check_readable`, before training).

    A pixel mask marks every cell that holds one of its pixels (a thin crack covers part of a cell,
    and averaging would teach that cracks deserve part of a peak) and lets crops centre on any of
    them; an ellipse, the weak label, marks the cells whose centres it holds and centres crops on
    itself. A defective image without either trains the decision only (its crops centre where the
    model sees its defect). An image fitted into the square (aspect "fit") has its target mirrored
    into the fill cell by cell, as its pixels are (fitted sides are whole cells), so each mirror
    image of a defect is marked too.
    """
    grid = size // MAP_STRIDE
    masks = np.zeros((len(samples), grid, grid), np.float32)
    known = np.ones(len(samples), np.float32)
    centres = [np.zeros((1, 2), np.float32)] * len(samples)
    for i, (sample, shape) in enumerate(zip(samples, shapes)):
        if not sample.defective:
            continue
        # The image's own part of the square (all of it, stretched), in whole map cells.
        content = np.array(content_shape(*shape, size, preprocessing))
        scale, cells_h, cells_w = content / shape, *(content // MAP_STRIDE)
        if sample.mask is not None:
            ys, xs = np.nonzero(read_mask(sample.mask))
            cells = np.unique(np.stack([(ys + 0.5) * scale[0], (xs + 0.5) * scale[1]], 1).astype(np.int64) // MAP_STRIDE, axis=0)
            target = np.zeros((cells_h, cells_w), np.float32)
            target[cells[:, 0], cells[:, 1]] = 1.0
        elif sample.ellipse is None:
            known[i] = 0.0
            continue
        else:
            target = sample.ellipse.mask(cells_h, cells_w, scale=(MAP_STRIDE / scale[0], MAP_STRIDE / scale[1]))
        masks[i] = mirror_filled(target, grid)
        if sample.mask is not None:
            cells = np.argwhere(masks[i])
            known[i] = float(len(cells) > 0)
            centres[i] = (cells * MAP_STRIDE + MAP_STRIDE // 2).astype(np.float32) if len(cells) else centres[i]
        else:
            centres[i] = np.array([[sample.ellipse.cy * scale[0], sample.ellipse.cx * scale[1]]], np.float32)
    return masks, known, centres


class CropSampler(keras.utils.PyDataset):
    """Batches of augmented crops with their stride-8 masks and loss weights.

    An epoch is a fixed number of batches of images drawn at random, so training time does not
    grow with the dataset. Each batch comes from its own seeded generator, so a run is
    repeatable for a seed.
    """

    def __init__(self, images, masks, known, labels, centres, config: TrainConfig):
        # Two worker threads: Keras then prepares batches inside the epoch only. With one, it
        # wraps the sampler in a prefetching tf.data generator that starts the next epoch's
        # batches while the whole-image callbacks run, then throws them away (measured slower).
        super().__init__(workers=2)
        self.images, self.masks, self.known, self.labels = images, masks, known, labels
        self.centres = centres
        self.peaks = np.full((len(images), 2), -1, np.int64)
        self.config = config
        self.epoch = 0
        self.good = np.flatnonzero(labels == 0)
        pos = labels.mean() + (1 - labels.mean()) * config.synthetic_fraction
        self.class_weight = class_weights(pos)

    def __len__(self):
        return self.config.steps_per_epoch

    def on_epoch_end(self):
        self.epoch += 1

    def _centre(self, i: int, rng: np.random.Generator) -> tuple[int, int]:
        size, crop = self.images.shape[1], self.config.crop_size
        if self.labels[i] and self.known[i]:
            candidates = self.centres[i]
            cy, cx = candidates[0 if len(candidates) == 1 else int(rng.integers(len(candidates)))]
            jitter = rng.uniform(-crop / 4, crop / 4, size=2)
            return int(cy + jitter[0]), int(cx + jitter[1])
        use_peak = self.peaks[i, 0] >= 0 and (self.labels[i] or rng.random() < self.config.hard_negative_fraction)
        if use_peak:
            return int(self.peaks[i, 0]), int(self.peaks[i, 1])
        return tuple(int(v) for v in rng.integers(0, size, size=2))

    def __getitem__(self, index):
        c = self.config
        rng = np.random.default_rng([c.seed, self.epoch, index])
        chosen = rng.choice(len(self.images), size=min(c.batch_size, len(self.images)), replace=False)
        size, crop, g = self.images.shape[1], c.crop_size, c.crop_size // MAP_STRIDE
        x = np.empty((len(chosen), crop, crop, 1), np.float32)
        seg = np.empty((len(chosen), g, g, 1), np.float32)
        seg_w = np.empty((len(chosen), g, g), np.float32)
        y = self.labels[chosen].astype(np.float32)[:, None]
        for j, i in enumerate(chosen):
            cy, cx = self._centre(i, rng)
            region = jittered_region(rng, crop, c.scale_jitter, MAP_STRIDE, size)
            y0 = int(np.clip(cy - region // 2, 0, size - region)) // MAP_STRIDE * MAP_STRIDE
            x0 = int(np.clip(cx - region // 2, 0, size - region)) // MAP_STRIDE * MAP_STRIDE
            image = self.images[i, y0 : y0 + region, x0 : x0 + region]
            mask = self.masks[i, y0 // MAP_STRIDE : (y0 + region) // MAP_STRIDE, x0 // MAP_STRIDE : (x0 + region) // MAP_STRIDE]
            if region != crop:
                image, mask = resize_crop(image, mask, crop, g)
            if c.gamma_jitter:
                image = jitter_gamma(image, rng, c.gamma_jitter)
            image, mask = random_orientation(image, mask, rng)
            known = self.known[i]
            if not self.labels[i] and rng.random() < c.synthetic_fraction:
                d = self.good[rng.integers(len(self.good))]
                dy, dx = rng.integers(0, size - crop + 1, size=2)
                image, fine = paste_anomaly(image, np.rot90(self.images[d, dy : dy + crop, dx : dx + crop], int(rng.integers(4))), rng)
                # A cell is defective if any of its pixels is: a thin line covers a quarter of a
                # cell at most, and averaging would teach that lines deserve a quarter of a peak.
                mask = fine.reshape(g, MAP_STRIDE, g, MAP_STRIDE).max(axis=(1, 3))
                y[j, 0], known = 1.0, 1.0
            x[j, ..., 0], seg[j, ..., 0] = image, mask
            # Defect pixels are few: weight them up so the map does not learn "never".
            seg_w[j] = known * (1.0 + 3.0 * mask)
        p_w = np.array([self.class_weight[int(v)] for v in y[:, 0]], np.float32)
        return x, {"seg": seg, "p_defects": y}, {"seg": seg_w, "p_defects": p_w}


class HardNegativeMiner(keras.callbacks.Callback):
    """Every few epochs, find where the model sees the most defect-like spot of each image."""

    def __init__(self, sampler: CropSampler, seg, every: int):
        super().__init__()
        self.sampler, self.seg, self.every = sampler, seg, every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every or self.model.stop_training:  # no search for an epoch that is not coming
            return
        sampler = self.sampler
        # Only crops taken at a peak need one: defect-free images and defects without an ellipse.
        todo = np.flatnonzero((sampler.labels == 0) | (sampler.known == 0))
        for start in range(0, len(todo), 16):
            chosen = todo[start : start + 16]
            seg = self.seg(sampler.images[chosen, ..., None].astype(np.float32)).numpy()[..., 0]
            flat = seg.reshape(len(seg), -1).argmax(axis=1)
            cells = np.stack(np.unravel_index(flat, seg.shape[1:]), axis=1)
            sampler.peaks[chosen] = cells * MAP_STRIDE + MAP_STRIDE // 2


class WholeImageValidation(keras.callbacks.Callback):
    """Every few epochs, score each whole validation image by the peak of its defect map; keep the
    best weights by that AUC and stop after `patience` epochs without a better one.

    The peak is what the decision rests on, and unlike the crop-trained decision layer it means
    the same on a crop and on a whole image, so it is the right thing to select epochs by.
    Validating every epoch would cost a large share of the training time; the last epoch is always scored.
    """

    def __init__(self, seg, images: np.ndarray, labels: np.ndarray, every: int, patience: int):
        super().__init__()
        self.seg, self.images, self.labels, self.every, self.patience = seg, images, labels, every, patience
        self.scores: dict[int, float] = {}
        self.best_weights = None
        self.seconds_per_image: float | None = None  # of one pass, for the time budget's plan

    def on_epoch_end(self, epoch, logs=None):
        # The time budget sets stop_training before this runs: the epoch it ends at is scored too.
        if (epoch + 1) % self.every and epoch + 1 != self.params["epochs"] and not self.model.stop_training:
            return
        started = time.perf_counter()
        peaks = np.concatenate(
            [self.seg(b).numpy().max(axis=(1, 2, 3)) for b in full_image_batches(self.images)]
        )
        # The fastest pass: the first also compiles the map for whole images.
        seconds = (time.perf_counter() - started) / len(self.images)
        self.seconds_per_image = min(seconds, self.seconds_per_image or seconds)
        auc = self.scores[epoch] = float(roc_auc_score(self.labels, peaks))
        if logs is not None:
            logs["val_auc"] = auc  # for TensorBoard; the history gets the full series at the end
        log.info("epoch %d: validation AUC of the defect-map peak %.4f", epoch + 1, auc)
        best = self.best_epoch()
        if best == epoch:
            self.best_weights = self.model.get_weights()
        elif epoch - best >= self.patience:
            self.model.stop_training = True

    def best_epoch(self) -> int:
        """The best-scoring epoch, the latest one among equals: a small validation set can score
        1.0 early, and the weights trained longest at the lowest learning rate should win the tie."""
        return max(self.scores, key=lambda epoch: (self.scores[epoch], epoch))

    def on_train_end(self, logs=None):
        best = self.best_epoch()
        log.info("keeping the weights of epoch %d (validation AUC %.4f)", best + 1, self.scores[best])
        self.model.set_weights(self.best_weights)

    def history(self, epochs_run: int) -> list[float | None]:
        return [self.scores.get(epoch) for epoch in range(epochs_run)]


class TimeBudget(keras.callbacks.Callback):
    """Fit the training into `config.time_budget` minutes from `started`, on any machine.

    Once a whole-image validation has been timed, after each epoch the epochs affordable at the
    average cost of those since the first (which also compiles the training step), validations and
    hard-negative searches included, after setting aside what the last validation and fitting the
    decision will take, set where the cosine learning-rate schedule ends (`decay_steps`, a variable
    the schedule reads at every step) and where training stops. Before that it only stops a run
    whose time is already spent.
    """

    def __init__(self, config: TrainConfig, started: float, decay_steps: keras.Variable, validation: WholeImageValidation,
                 decision_images: int):
        super().__init__()
        self.deadline = started + 60.0 * config.time_budget
        self.decay_steps, self.validation = decay_steps, validation
        self.steps_per_epoch, self.views = config.steps_per_epoch, config.test_time_views
        self.decision_images = decision_images
        self.planned = config.epochs

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        if epoch == 0:
            self.first_epoch_end = now
        per_image = self.validation.seconds_per_image
        if per_image is None:
            planned = epoch + 1 if now >= self.deadline else self.planned
        else:
            per_epoch = (now - self.first_epoch_end) / epoch
            reserve = per_image * (self.views * self.decision_images + len(self.validation.images))
            planned = min(self.params["epochs"], epoch + 1 + max(0, int((self.deadline - now - reserve) // per_epoch)))
        if planned != self.planned:
            self.planned = planned
            self.decay_steps.assign(float(planned * self.steps_per_epoch))
            log.info("time budget: %d of %d epochs fit (%.1f min left)", planned, self.params["epochs"], (self.deadline - now) / 60)
        if epoch + 1 >= planned:
            self.model.stop_training = True


def defect_map_function(trainer: keras.Model):
    """The trainer's defect map on whole images (see devices.compiled_call), compiled once and
    shared by the hard-negative search and the validation."""
    return compiled_call(keras.Model(trainer.input, trainer.output["seg"]))


def full_image_batches(images: np.ndarray, batch_size: int = 16):
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size, ..., None].astype(np.float32)


def fit_decision_head(models: CompactModels, images: np.ndarray, labels: np.ndarray, seed: int) -> None:
    """Refit the decision layer on whole-image features with a regularized logistic regression.

    Crops taught the features; the decision must be calibrated on what it will see: whole images.
    """
    features = np.concatenate([models.whole_image.predict_on_batch(b)["features"] for b in full_image_batches(images)])
    mean, std = features.mean(0), features.std(0) + 1e-6
    head = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed)
    head.fit((features - mean) / std, labels)
    kernel = (head.coef_[0] / std)[:, None]
    bias = head.intercept_ - (head.coef_[0] * mean / std).sum()
    models.classifier.get_layer(OUTPUT_LAYER).set_weights([kernel.astype(np.float32), bias.astype(np.float32)])


def train_compact(config: TrainConfig, fit_samples, val_samples, strategy, out: Path):
    """Train the compact net on crops; returns (classifier, history, validation P(defects))."""
    started = time.time()
    preprocessing = Preprocessing(aspect=config.aspect)
    images, shapes = decode_images(fit_samples, config.image_size, desc="decoding train", preprocessing=preprocessing)
    masks, known, centres = defect_targets(fit_samples, shapes, config.image_size, preprocessing)
    labels = np.array([s.defective for s in fit_samples], np.int64)
    v_images, _ = decode_images(val_samples, config.image_size, desc="decoding validation", preprocessing=preprocessing)
    v_labels = np.array([s.defective for s in val_samples], np.int64)

    sampler = CropSampler(images, masks, known, labels, centres, config)
    policy = resolve_precision(config.precision)
    log.info("compute precision: %s", policy)
    keras.mixed_precision.set_global_policy(policy)
    budget = config.time_budget and config.distribute != "multiworker"
    if config.time_budget and not budget:
        log.warning("--time-budget is not applied with --distribute multiworker (each worker has its own clock): "
                    "all %d epochs are trained", config.epochs)
    with strategy.scope():
        models = build_compact(config)
        trainer = models.trainer
        if config.init_weights:
            start_from(trainer, config.init_weights)
        # A variable only when a budget can move the schedule's end: a schedule over a variable
        # instead of a constant trains other weights from the same seed (measured; the float
        # rounding of its division, presumably), and a run without a budget must repeat exactly.
        decay_steps = config.epochs * len(sampler)
        if budget:
            decay_steps = keras.Variable(float(decay_steps), trainable=False, name="decay_steps")
        trainer.compile(
            optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps, alpha=0.05)),
            loss={"seg": keras.losses.BinaryCrossentropy(from_logits=True), "p_defects": keras.losses.BinaryCrossentropy()},
            loss_weights={"seg": config.seg_loss_weight, "p_defects": 1.0},
        )
    seg = defect_map_function(trainer)
    validation = WholeImageValidation(seg, v_images, v_labels, config.validate_every, config.patience)
    callbacks = [
        HardNegativeMiner(sampler, seg, config.mine_every),
        validation,
        keras.callbacks.TensorBoard(log_dir=str(out / "logs")),
    ]
    if budget:
        # First, so the validation and the miner see its decision to stop.
        callbacks.insert(0, TimeBudget(config, started, decay_steps, validation, len(images) + len(v_images)))
    try:
        history = trainer.fit(sampler, epochs=config.epochs, callbacks=callbacks, verbose=fit_verbosity()).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    history["val_auc"] = validation.history(len(history["loss"]))
    models = as_float32(models, config)
    fit_decision_head(models, images, labels, config.seed)
    val_p = np.concatenate([models.whole_image.predict_on_batch(b)["p_defects"].reshape(-1) for b in full_image_batches(v_images)])
    return models.classifier, history, val_p


def _legacy_twin(classifier: keras.Model, config: TrainConfig):
    import tf_keras

    from training.model import copy_weights

    twin = build_compact(config, lib=tf_keras).classifier
    copy_weights(classifier, twin)
    return twin


register(
    Backbone(
        name="compact",
        train=train_compact,
        legacy_twin=_legacy_twin,
        describe=lambda config: (
            f"started from the network of {config['init_weights']}" if config.get("init_weights") else "trained from scratch",
            f"on {config['crop_size']}-px crops",
        ),
        views=lambda config: config.test_time_views,
        decoded_channels=1,
        tiles_large_images=True,
    )
)
