"""Train the compact defect classifier: data -> crops -> model -> threshold -> test -> artifacts.

The network is fully convolutional, so it trains on crops of full-resolution images (7x cheaper
than whole images, and a crop centred on a labelled ellipse is a strong positive) and is validated
and tested on whole images. Crops of defect-free images are drawn half at random and half at the
place the current model finds most defect-like (hard negatives, re-mined every few epochs); a
defective image without an ellipse label is cropped where the model sees its defect, so images
with only a class label still train the decision (multiple-instance style).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from training.config import TrainConfig
from training.devices import compiled_call, make_strategy, resolve_precision
from training.data import DataError, Sample, decode_images, load_splits
from training.evaluate import choose_threshold, compute_metrics, defects_to_catch, evaluate_model
from training.export import export_model
from training.augment import paste_anomaly
from training.card import render_model_card
from training.model import OUTPUT_LAYER, CompactModels, as_float32, build_compact
from training.pretrained import class_weights, train_pretrained

STRIDE = 8


def split_holdout(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split stratified by class and texture, so every surface is seen in both parts."""
    strata = [f"{s.defective}:{s.texture}" for s in samples]
    counts = {k: strata.count(k) for k in set(strata)}
    if min(counts.values()) < 2 or round(fraction * len(samples)) < len(counts):
        strata = [str(s.defective) for s in samples]
    keep, hold = train_test_split(samples, test_size=fraction, random_state=seed, stratify=strata)
    return keep, hold


def require_enough(samples: list[Sample], where: str, minimum: int = 10) -> None:
    for defective, name in ((True, "defects"), (False, "no_defects")):
        n = sum(s.defective == defective for s in samples)
        if n < minimum:
            raise DataError(f"{where} has {n} {name} image(s); at least {minimum} of each class are needed")


def defect_masks(samples: list[Sample], scales: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stride-8 target maps from the ellipses, and whether each image has a usable map."""
    grid = size // STRIDE
    masks = np.zeros((len(samples), grid, grid), np.float32)
    known = np.ones(len(samples), np.float32)
    for i, (sample, scale) in enumerate(zip(samples, scales)):
        if sample.defective:
            if sample.ellipse is None:
                known[i] = 0.0
            else:
                masks[i] = sample.ellipse.mask(grid, grid, scale=STRIDE / scale)
    return masks, known


class CropSampler(keras.utils.PyDataset):
    """Batches of augmented crops with their stride-8 masks and loss weights.

    An epoch is a fixed number of batches of images drawn at random, so training time does not
    grow with the dataset. Each batch comes from its own seeded generator, so a run is
    repeatable for a seed.
    """

    def __init__(self, images, masks, known, labels, ellipse_centres, config: TrainConfig):
        # Two worker threads: Keras then prepares batches inside the epoch only. With one, it
        # wraps the sampler in a prefetching tf.data generator that starts the next epoch's
        # batches while the whole-image callbacks run, then throws them away: the demo's
        # training took 707 s that way, 559 s this way.
        super().__init__(workers=2)
        self.images, self.masks, self.known, self.labels = images, masks, known, labels
        self.ellipse_centres = ellipse_centres
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
            cy, cx = self.ellipse_centres[i]
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
        size, crop, g = self.images.shape[1], c.crop_size, c.crop_size // STRIDE
        x = np.empty((len(chosen), crop, crop, 1), np.float32)
        seg = np.empty((len(chosen), g, g, 1), np.float32)
        seg_w = np.empty((len(chosen), g, g), np.float32)
        y = self.labels[chosen].astype(np.float32)[:, None]
        steps = int(round(crop * c.scale_jitter / STRIDE))
        for j, i in enumerate(chosen):
            cy, cx = self._centre(i, rng)
            region = min(size, crop + STRIDE * int(rng.integers(-steps, steps + 1)))
            y0 = int(np.clip(cy - region // 2, 0, size - region)) // STRIDE * STRIDE
            x0 = int(np.clip(cx - region // 2, 0, size - region)) // STRIDE * STRIDE
            image = self.images[i, y0 : y0 + region, x0 : x0 + region]
            mask = self.masks[i, y0 // STRIDE : (y0 + region) // STRIDE, x0 // STRIDE : (x0 + region) // STRIDE]
            if region != crop:
                image = np.asarray(Image.fromarray(image.astype(np.float32), "F").resize((crop, crop), Image.BILINEAR))
                mask = (np.asarray(Image.fromarray(mask, "F").resize((g, g), Image.BILINEAR)) > 0.5).astype(np.float32)
            if c.gamma_jitter:
                gamma = rng.uniform(1 / (1 + c.gamma_jitter), 1 + c.gamma_jitter)
                image = 255.0 * (image / 255.0) ** gamma
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            image, mask = np.rot90(image, k), np.rot90(mask, k)
            if flip:
                image, mask = image[:, ::-1], mask[:, ::-1]
            known = self.known[i]
            if not self.labels[i] and rng.random() < c.synthetic_fraction:
                d = self.good[rng.integers(len(self.good))]
                dy, dx = rng.integers(0, size - crop + 1, size=2)
                image, fine = paste_anomaly(image, np.rot90(self.images[d, dy : dy + crop, dx : dx + crop], int(rng.integers(4))), rng)
                # A cell is defective if any of its pixels is: a thin line covers a quarter of a
                # cell at most, and averaging would teach that lines deserve a quarter of a peak.
                mask = fine.reshape(g, STRIDE, g, STRIDE).max(axis=(1, 3))
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
        if (epoch + 1) % self.every:
            return
        sampler = self.sampler
        # Only crops taken at a peak need one: defect-free images and defects without an ellipse.
        todo = np.flatnonzero((sampler.labels == 0) | (sampler.known == 0))
        for start in range(0, len(todo), 16):
            chosen = todo[start : start + 16]
            seg = self.seg(sampler.images[chosen, ..., None].astype(np.float32)).numpy()[..., 0]
            flat = seg.reshape(len(seg), -1).argmax(axis=1)
            cells = np.stack(np.unravel_index(flat, seg.shape[1:]), axis=1)
            sampler.peaks[chosen] = cells * STRIDE + STRIDE // 2


class WholeImageValidation(keras.callbacks.Callback):
    """Every few epochs, score each whole validation image by the peak of its defect map; keep the
    best weights by that AUC and stop after `patience` epochs without a better one.

    The peak is what the decision rests on, and unlike the crop-trained decision layer it means
    the same on a crop and on a whole image, so it is the right thing to select epochs by.
    Validating every epoch would cost a tenth of the training time; the last epoch is always scored.
    """

    def __init__(self, seg, images: np.ndarray, labels: np.ndarray, every: int, patience: int):
        super().__init__()
        self.seg, self.images, self.labels, self.every, self.patience = seg, images, labels, every, patience
        self.scores: dict[int, float] = {}
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.params["epochs"]:
            return
        peaks = np.concatenate(
            [self.seg(b).numpy().max(axis=(1, 2, 3)) for b in full_image_batches(self.images)]
        )
        auc = self.scores[epoch] = float(roc_auc_score(self.labels, peaks))
        if logs is not None:
            logs["val_auc"] = auc  # for TensorBoard; the history gets the full series at the end
        print(f"epoch {epoch + 1}: validation AUC of the defect-map peak {auc:.4f}", flush=True)
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
        print(f"keeping the weights of epoch {best + 1} (validation AUC {self.scores[best]:.4f})")
        self.model.set_weights(self.best_weights)

    def history(self, epochs_run: int) -> list[float | None]:
        return [self.scores.get(epoch) for epoch in range(epochs_run)]


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


def _as_arrays(samples, config, desc):
    images, scales = decode_images(samples, config.image_size, desc=desc)
    masks, known = defect_masks(samples, scales, config.image_size)
    labels = np.array([s.defective for s in samples], np.int64)
    return images, scales, masks, known, labels


def train_compact(config: TrainConfig, fit_samples, val_samples, strategy, out: Path):
    """Train the compact net on crops; returns (classifier, history, validation P(defects))."""
    images, scales, masks, known, labels = _as_arrays(fit_samples, config, "decoding train")
    centres = np.zeros((len(fit_samples), 2), np.float32)
    for i, (s, scale) in enumerate(zip(fit_samples, scales)):
        if s.ellipse is not None:
            centres[i] = (s.ellipse.cy * scale, s.ellipse.cx * scale)
    v_images, _ = decode_images(val_samples, config.image_size, desc="decoding validation")
    v_labels = np.array([s.defective for s in val_samples], np.int64)

    sampler = CropSampler(images, masks, known, labels, centres, config)
    policy = resolve_precision(config.precision)
    print(f"compute precision: {policy}")
    keras.mixed_precision.set_global_policy(policy)
    with strategy.scope():
        models = build_compact(config)
        trainer = models.trainer
        trainer.compile(
            optimizer=keras.optimizers.Adam(
                keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * len(sampler), alpha=0.05)
            ),
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
    try:
        history = trainer.fit(sampler, epochs=config.epochs, callbacks=callbacks, verbose=2).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    history["val_auc"] = validation.history(len(history["loss"]))
    models = as_float32(models, config)
    fit_decision_head(models, images, labels, config.seed)
    val_p = np.concatenate([models.whole_image.predict_on_batch(b)["p_defects"].reshape(-1) for b in full_image_batches(v_images)])
    return models.classifier, history, val_p


def threshold_report(labels, p_defects, threshold: float, target_recall: float) -> dict:
    """What the threshold does on the validation split, printed so the trade-off is seen before
    the model is used: a high target on few defects rests on the single weakest one."""
    m = compute_metrics(labels, p_defects, threshold)
    n_defects = int(np.sum(labels))
    report = {"n": m["n_test"], "n_defects": n_defects, "recall": m["recall"], "false_alarm_rate": m["false_alarm_rate"]}
    print(
        f"threshold {threshold:.4f} for target recall {target_recall}: on the {report['n']} validation images "
        f"recall {report['recall']:.3f} with {100 * report['false_alarm_rate']:.1f} % false alarms"
    )
    if n_defects and defects_to_catch(target_recall, n_defects) >= n_defects and target_recall < 1.0:
        print(
            f"note: the validation split has {n_defects} defects, so recall {target_recall} means catching all of "
            "them and the threshold rests on the weakest one; expect a lower recall on new images, or use "
            "more validation data (--val-fraction)"
        )
    return report


def train(config: TrainConfig) -> dict:
    """Run the whole pipeline and return the test metrics; writes OUT/model and OUT/metrics.json."""
    config.validate()
    started = time.time()
    out = Path(config.out)
    splits = load_splits(config.data)
    train_samples = splits["train"]
    require_enough(train_samples, "the train split")
    test_samples = splits.get("test")
    if not test_samples:
        train_samples, test_samples = split_holdout(train_samples, config.test_fraction, config.seed)
    fit_samples, val_samples = split_holdout(train_samples, config.val_fraction, config.seed)
    require_enough(fit_samples, "the training split")
    print(f"data: {len(fit_samples)} train, {len(val_samples)} validation, {len(test_samples)} test images")

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.distribute)
    print(f"training on {strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__})")
    if config.backbone == "compact":
        classifier, history, val_p = train_compact(config, fit_samples, val_samples, strategy, out)
    else:

        def callbacks():
            return [
                keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True),
                keras.callbacks.TensorBoard(log_dir=str(out / "logs")),
            ]

        classifier, history, val_p = train_pretrained(config, fit_samples, val_samples, strategy, callbacks)
    train_seconds = time.time() - started

    val_labels = [s.defective for s in val_samples]
    threshold = choose_threshold(val_labels, val_p, config.target_recall)
    validation = threshold_report(val_labels, val_p, threshold, config.target_recall)
    model_dir = export_model(classifier, config, threshold, out / "model", history=history)
    metrics = evaluate_model(model_dir, test_samples, plots_dir=model_dir, history=history)
    metrics.update(train_seconds=round(train_seconds, 1), epochs_run=len(history["loss"]), validation=validation)
    for path in (out / "metrics.json", model_dir / "metrics.json"):
        path.write_text(json.dumps(metrics, indent=2))
    render_model_card(model_dir)
    return metrics
