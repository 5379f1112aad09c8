"""A dataset folder of any layout `train` reads, as a Hugging Face dataset, and the card that says what it is.

The folder is read with the project's own readers (training/data.py), so every layout publishes
the same columns: `image`, `label` (a ClassLabel, `defects` first), `texture`, the kind of
`defect`, the ellipse `cx, cy, a, b, angle`, and `mask` and `group` where the data has them.
The project's loader (`load_splits("user/name")`) and plain `datasets.load_dataset` read it back.
The card is generated from the data itself: its layout, counts, columns, licence, and "synthetic"
only for data a generator of this project made (it records itself in `generated_by.json`).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from training.data import CLASS_NAMES, GENERATED_FILE, LAYOUTS, Splits, detect_layout, generated_by, read_mask

ELLIPSE_COLUMNS = ("cx", "cy", "a", "b", "angle")
# Licence ids as the Hub spells them (https://huggingface.co/docs/hub/repositories-licenses).
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")
GENERATED_LICENSE = "apache-2.0"  # the project's own, for images its generators made


def check_license(license: str | None) -> str | None:
    if license is not None and not LICENSE_ID.fullmatch(license):
        raise ValueError(
            f"--license {license!r} is not a Hub licence id: use a lower-case id such as cc-by-4.0, mit or other "
            "(https://huggingface.co/docs/hub/repositories-licenses)"
        )
    return license


def dataset_license(data_dir, license: str | None) -> str:
    """The licence a dataset is published under: the one given, or the project's own for generated
    data; real data without one is refused (its terms are the owner's, not ours to guess)."""
    if license:
        return check_license(license)
    if generated_by(data_dir):
        return GENERATED_LICENSE
    raise ValueError(
        f"{data_dir} was not made by this project's generator (it holds no {GENERATED_FILE}; a dataset from an older "
        "`generate` gets one when generated again), so its licence is not known: pass --license with the data's terms "
        "(e.g. cc-by-nc-sa-4.0, or other), https://huggingface.co/docs/hub/repositories-licenses"
    )


def to_dataset_dict(splits: Splits):
    """The splits as a `datasets.DatasetDict`; image and mask files are embedded when pushed."""
    import datasets

    samples = [s for split in splits.values() for s in split]
    features = {
        "image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
        "texture": datasets.Value("string"), "defect": datasets.Value("string"),
        **{name: datasets.Value("float64") for name in ELLIPSE_COLUMNS},
    }
    if any(s.mask is not None for s in samples):
        features["mask"] = datasets.Image()
    if any(s.group for s in samples):
        features["group"] = datasets.Value("string")
    features = datasets.Features(features)
    result = {}
    for name, split in splits.items():
        columns = {column: [] for column in features}
        for s in split:
            row = {
                "image": _image_value(s.image), "label": 0 if s.defective else 1, "texture": s.texture, "defect": s.defect,
                **{c: (getattr(s.ellipse, c) if s.ellipse else None) for c in ELLIPSE_COLUMNS},
                "mask": _image_value(s.mask) if s.mask is not None else None, "group": s.group,
            }
            for column in columns:
                columns[column].append(row[column])
        result[name] = datasets.Dataset.from_dict(columns, features=features)
    return datasets.DatasetDict(result)


def _image_value(image):
    return str(image) if isinstance(image, (str, Path)) else image


def dataset_facts(data_dir, splits: Splits) -> dict:
    """What a dataset folder is, for its card: layout, whether it is generated, counts, columns."""
    samples = [s for split in splits.values() for s in split]
    return dict(
        layout=detect_layout(Path(data_dir)),
        generated=generated_by(data_dir),
        counts={name: Counter(CLASS_NAMES[0] if s.defective else CLASS_NAMES[1] for s in split) for name, split in splits.items()},
        kinds=Counter(s.defect for s in samples if s.defective and s.defect),
        textures=sorted({s.texture for s in samples if s.texture}),
        masks=sum(s.mask is not None for s in samples),
        ellipses=sum(s.ellipse is not None for s in samples),
        groups=len({s.group for s in samples if s.group}),
    )


def card_text(repo_id: str, facts: dict, license: str, examples_folder: str) -> str:
    """The card's body: what the images are, where they come from, their counts and columns."""
    total = sum(sum(c.values()) for c in facts["counts"].values())
    rows = ["| split | defects | no_defects |", "| --- | --- | --- |"] + [
        f"| {name} | {c[CLASS_NAMES[0]]} | {c[CLASS_NAMES[1]]} |" for name, c in facts["counts"].items()
    ]
    made = facts["generated"]
    origin = (
        f"Synthetic: made by `{made['made_by']}` with the settings `{_settings(made['settings'])}` (seeded, so the "
        "same settings make the same images)."
        if made else f"Read by `defect-classifier` from a folder in the {LAYOUTS[facts['layout']]} layout."
    )
    columns = ["`image`", "`label` (ClassLabel: index 0 is `defects`, 1 is `no_defects`)"]
    if facts["textures"]:
        columns.append(f"`texture` (the surface or category: {', '.join(facts['textures'][:12])}{', ...' if len(facts['textures']) > 12 else ''})")
    if facts["kinds"]:
        columns.append("`defect` (the kind of defect: " + ", ".join(f"{k} {n}" for k, n in facts["kinds"].most_common()) + ")")
    if facts["ellipses"]:
        columns.append(f"`cx, cy, a, b, angle`, the defect ellipse in pixels ({facts['ellipses']} images; a weak localization label)")
    if facts["masks"]:
        columns.append(f"`mask`, the pixel mask of the defect ({facts['masks']} images; white is defect)")
    if facts["groups"]:
        columns.append(f"`group`, the capture group ({facts['groups']} groups; no group should span two splits)")
    return (
        f"\n# {repo_id.split('/')[-1]}\n\n"
        f"{total} images of surfaces labelled `defects` or `no_defects`, for training a defect classifier. {origin}\n\n"
        + "\n".join(rows)
        + "\n\nColumns: " + "; ".join(columns) + ". Columns a row has no value for are empty.\n\n"
        f"Licence: `{license}`. `{examples_folder}/` holds a few of the test images, which the Space shows as examples.\n"
    )


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


BASE_TAGS = ("defect-detection", "surface-inspection")
LAYOUT_TAGS = {"mvtec-ad": "mvtec-ad", "dagm-competition": "dagm", "dagm-development": "dagm"}
SYNTHETIC_TAG = "synthetic"
# Every tag `dataset_tags` can give.
DATASET_TAGS = {*BASE_TAGS, *LAYOUT_TAGS.values(), SYNTHETIC_TAG}


def dataset_tags(facts: dict) -> list[str]:
    layout_tag = LAYOUT_TAGS.get(facts["layout"])
    return [*BASE_TAGS] + ([layout_tag] if layout_tag else []) + ([SYNTHETIC_TAG] if facts["generated"] else [])


EXAMPLES_FOLDER = "examples"


def pick_examples(splits: Splits, per_texture: int = 1, limit: int = 14) -> list[tuple[str, bytes]]:
    """PNG files for the Space's examples: per texture, its defective image with the largest
    labelled defect and a defect-free one, from the test split if there is one."""
    import io

    from PIL import Image

    from defect_inference import read_image

    samples = splits.get("test") or splits["train"]
    textures = sorted({s.texture or "" for s in samples})
    chosen = []
    for texture in textures:
        group = [s for s in samples if (s.texture or "") == texture]
        defective = sorted((s for s in group if s.defective), key=lambda s: -_defect_area(s))
        good = [s for s in group if not s.defective]
        chosen += [("defects", texture, s) for s in defective[:per_texture]]
        chosen += [("no_defects", texture, s) for s in good[:per_texture]]
    files = []
    for i, (label, texture, sample) in enumerate(chosen[:limit]):
        buffer = io.BytesIO()
        rgb = read_image(sample.image)
        grey = bool((rgb == rgb[..., :1]).all())
        Image.fromarray(rgb[..., 0] if grey else rgb).save(buffer, format="PNG")
        files.append((f"{label}_{texture or i}.png", buffer.getvalue()))
    return files


def _defect_area(sample) -> float:
    if sample.ellipse:
        return sample.ellipse.a * sample.ellipse.b
    return float(read_mask(sample.mask).sum()) if sample.mask is not None else 0.0
