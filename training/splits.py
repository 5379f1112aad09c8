"""Training, validation and test splits: stratified, grouped where images are near-copies, and
supervised even where a layout keeps every defect under test/ (MVTec AD).

Images of one group (one part photographed under several exposures, one capture sequence) must
never land in two splits, or the test measures memory instead of generalisation: groups come from
a dataset's `group` column or from `--group-pattern` on the file names.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from training.config import TrainConfig
from training.data import DataError, Sample, load_splits

log = logging.getLogger(__name__)


class HeldOut(NamedTuple):
    fit: list[Sample]
    validation: list[Sample]
    test: list[Sample]
    how: dict  # what was done to make them, for the card: groups, images moved from test/


def split_holdout(samples: list[Sample], fraction: float, seed: int, by_kind: bool = False) -> tuple[list[Sample], list[Sample]]:
    """Split stratified by class and texture (so every surface is seen in both parts), and by kind
    of defect with `by_kind`; where images carry groups, by class with whole groups on one side.
    A stratum too small to split is merged into its class."""
    if any(s.group is not None for s in samples):
        groups = [s.group if s.group is not None else f"\0{i}" for i, s in enumerate(samples)]
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / fraction)), shuffle=True, random_state=seed)
        keep, hold = next(folds.split(samples, [s.defective for s in samples], groups))
        return [samples[i] for i in keep], [samples[i] for i in hold]
    for strata in (
        [f"{s.defective}:{s.texture}:{s.defect if by_kind else ''}" for s in samples],
        [f"{s.defective}:{s.texture}" for s in samples],
        [str(s.defective) for s in samples],
    ):
        counts = {k: strata.count(k) for k in set(strata)}
        if min(counts.values()) >= 2 and round(fraction * len(samples)) >= len(counts):
            break
    keep, hold = train_test_split(samples, test_size=fraction, random_state=seed, stratify=strata)
    return keep, hold


def require_enough(samples: list[Sample], where: str, minimum: int = 10) -> None:
    for defective, name in ((True, "defects"), (False, "no_defects")):
        n = sum(s.defective == defective for s in samples)
        if n < minimum:
            raise DataError(f"{where} has {n} {name} image(s); at least {minimum} of each class are needed")


def with_groups(samples: list[Sample], pattern: str) -> list[Sample]:
    """Samples with the group `pattern` finds in their file names (its first group, or the whole
    match); a name it does not match keeps its own group and is counted in the log."""
    regex = re.compile(pattern)
    grouped, unmatched = [], 0
    for s in samples:
        found = regex.search(Path(s.name).name)
        unmatched += found is None
        grouped.append(replace(s, group=(found.group(1) if regex.groups else found.group(0)) if found else None))
    if unmatched:
        log.warning("--group-pattern %r matches %d of %d file names; the others are groups of one", pattern, len(samples) - unmatched, len(samples))
    return grouped


def held_out_splits(config: TrainConfig) -> HeldOut:
    """(training, validation, test) samples of `config.data`: the same for the same data and seed."""
    splits = load_splits(config.data)
    train_samples, test_samples = splits["train"], splits.get("test")
    if config.group_pattern:
        train_samples = with_groups(train_samples, config.group_pattern)
        test_samples = with_groups(test_samples, config.group_pattern) if test_samples else test_samples
    how: dict = {"grouped": "by file name: " + config.group_pattern if config.group_pattern else None}
    if how["grouped"] is None and any(s.group is not None for s in train_samples):
        how["grouped"] = "by the dataset's group column"
    if test_samples and not any(s.defective for s in train_samples):
        # MVTec AD trains anomaly detectors on good images only; a classifier needs defects too.
        test_samples, moved = split_holdout(test_samples, config.test_to_train_fraction, config.seed, by_kind=True)
        train_samples = train_samples + moved
        how["moved_from_test"] = {"defects": sum(s.defective for s in moved), "no_defects": sum(not s.defective for s in moved)}
        log.info(
            "the train split has no defective images: moved %d defective and %d defect-free test images into training "
            "(--test-to-train-fraction %s, stratified by kind)", *how["moved_from_test"].values(), config.test_to_train_fraction,
        )
    require_enough(train_samples, "the train split")
    if not test_samples:
        train_samples, test_samples = split_holdout(train_samples, config.test_fraction, config.seed)
    fit_samples, val_samples = split_holdout(train_samples, config.val_fraction, config.seed)
    require_enough(fit_samples, "the training split")
    how.update(fit=len(fit_samples), validation=len(val_samples), test=len(test_samples))
    log.info("data: %d train, %d validation, %d test images", len(fit_samples), len(val_samples), len(test_samples))
    return HeldOut(fit_samples, val_samples, test_samples, how)
