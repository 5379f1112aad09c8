"""Render the model card (the model repo's README.md) from the top-level `model_card.md` template.

The YAML block comes from huggingface_hub's ModelCardData (library, pipeline tag, tags, license,
datasets, and a model-index with the test metrics), the body from the Jinja template.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from defect_inference import load_model_config
from training.backbones import backbone_for
from training.config import TrainConfig
from training.hub_dataset import DATASET_TAGS, GENERATED_LICENSE, dataset_tags
from training.operating_curve import support_warning

log = logging.getLogger(__name__)
TEMPLATE = Path(__file__).resolve().parents[1] / "model_card.md"
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "false_alarm_rate")
# How the Hub shows each metric (`name` in the model-index).
METRIC_TITLES = {
    "accuracy": "Accuracy", "precision": "Precision (defects)", "recall": "Recall (defects)", "f1": "F1 (defects)",
    "roc_auc": "ROC AUC", "pr_auc": "PR AUC (defects)", "false_alarm_rate": "False-alarm rate",
}
# Metrics that hang on the decision threshold carry it in `metric_args`; the AUCs do not.
THRESHOLD_FREE = ("roc_auc", "pr_auc")
UNKNOWN_LICENSE = "unknown"
# Every tag and metadata key a card of this tool may carry: on a push they are this push's alone.
MODEL_TAGS = ("keras", "image-classification")
TOOL_TAGS = {*MODEL_TAGS, *DATASET_TAGS}
TOOL_KEYS = {"datasets", "widget", "model-index", "model_name", "library_name", "pipeline_tag", "license", "tags"}
# The generated part of the card lies between these lines; on a push, what the repo's card holds
# outside them (a section written on the Hub) is kept.
BEGIN, END = "<!-- defect-classifier card: generated from here -->", "<!-- defect-classifier card: generated up to here -->"


def split_summary(how: dict | None) -> str | None:
    """How the training, validation and test images were chosen, in one sentence."""
    if not how:
        return None
    text = f"Splits: {how['fit']} training, {how['validation']} validation and {how['test']} test images"
    if how.get("grouped"):
        text += f", grouped {how['grouped']} (no group is in two splits)"
    moved = how.get("moved_from_test")
    if moved:
        text += (
            f"; the dataset's train split has no defective images, so {moved['defects']} defective and "
            f"{moved['no_defects']} defect-free images of its test split (stratified by kind) were moved into training"
        )
    return text + "."


def model_license(metrics: dict, license: str | None) -> str:
    """The licence given, else the project's own for a model trained on generated data; a model
    trained on someone's data takes that data's terms, which only the user knows."""
    return license or (GENERATED_LICENSE if trained_on_generated_data(metrics) else UNKNOWN_LICENSE)


def trained_on_generated_data(metrics: dict) -> bool:
    """What a model's metrics say of its training data (False when they say nothing)."""
    return bool((metrics.get("data") or {}).get("generated"))


def budget_may_have_cut(config: dict, metrics: dict) -> bool:
    """Whether a run with `--time-budget` ended before its `--epochs` (the budget or patience did)."""
    return bool(config.get("time_budget")) and metrics.get("epochs_run", config["epochs"]) < config["epochs"]


def render_model_card(
    model_dir, repo_id: str = "USER/NAME", dataset_repo: str | None = None, license: str | None = None,
    widget: list[dict] | None = None,
) -> Path:
    """Write model_dir/README.md from defect_config.json and metrics.json in that folder; `widget`
    is the Hub's inference widget examples (`src`, `example_title`)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model_dir = Path(model_dir)
    info = load_model_config(model_dir)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    config = info.training_config
    dataset_name = dataset_repo or Path(config["data"]).name
    data = metrics.get("data") or {"layout": None, "generated": None}
    results = [
        EvalResult(
            task_type="image-classification", dataset_type=dataset_repo or data["layout"] or "imagefolder", dataset_name=dataset_name,
            dataset_split="test", metric_type=name, metric_value=round(metrics[name], 4), metric_name=METRIC_TITLES[name],
            metric_args=None if name in THRESHOLD_FREE else {"threshold": round(metrics["threshold"], 4)},
        )
        for name in METRIC_NAMES
        if metrics.get(name) is not None
    ]
    card_data = ModelCardData(
        library_name="keras", pipeline_tag="image-classification", license=model_license(metrics, license),
        tags=[*MODEL_TAGS, *dataset_tags(data)],
        datasets=[dataset_repo] if dataset_repo else None, model_name=repo_id.split("/")[-1], eval_results=results,
        widget=widget or None,
    )
    rows = ["| metric | value |", "| --- | --- |"] + [
        f"| {name} | {metrics[name]:.4f} |" for name in METRIC_NAMES if metrics.get(name) is not None
    ]
    cm = metrics["confusion_matrix"]["rows_true_columns_predicted"]
    rows += ["", f"Confusion matrix (rows: true defects / no_defects; columns: predicted): {cm}"]
    backbone = backbone_for(config["backbone"])
    origin, what = backbone.describe(config)
    views = backbone.views(TrainConfig.from_dict(config))
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        class_names=list(info.class_names),
        threshold=info.threshold,
        operating_point=info.operating_point,
        curve=info.operating_curve,
        point=info.operating_curve.at(info.threshold) if info.operating_curve else None,
        warning=support_warning(info.operating_curve, info.operating_point) if info.operating_curve and info.operating_point else None,
        image_size=info.image_size,
        preprocessing=info.preprocessing,
        heatmap_layer=info.heatmap_layer,
        views=views,
        data_description=f"`{dataset_name}` ({config['backbone']} backbone, {origin})",
        training_summary=(
            f"Backbone `{config['backbone']}`, {metrics.get('epochs_run', '?')} epochs {what} "
            f"of {config['image_size']}-px images, {metrics.get('train_seconds', '?')} s on the training machine. "
            + ("Every setting, so the run can be repeated:" if not budget_may_have_cut(config, metrics) else
               f"It stopped before its {config['epochs']} epochs with a {config['time_budget']:g}-min time budget, which "
               "sizes the epochs to the machine: elsewhere the settings repeat it only approximately. Every setting:")
        ),
        split_summary=split_summary(metrics.get("splits")),
        training_config=json.dumps(config, indent=2),
        n_test=metrics["n_test"],
        metrics_threshold=metrics["threshold"],
        metrics_table="\n".join(rows),
        worst_misclassified=(model_dir / "worst_misclassified.png").is_file(),
        project_textures=data.get("made_by") == "defect-classifier generate",
    )
    path = model_dir / "README.md"
    card.save(path)
    return path


def merge_with_existing(new_card: str, existing_card: str | None) -> str:
    """The card to publish: `new_card`, keeping what `existing_card` (the repo's, perhaps edited on
    the Hub) adds: metadata keys and tags this tool does not write, a licence chosen there when
    none was given now (`unknown`), and the text outside the generated part. A card whose
    metadata cannot be read is replaced, with a warning."""
    from huggingface_hub import ModelCard

    if not existing_card:
        return new_card
    try:
        old = ModelCard(existing_card, ignore_metadata_errors=True)
        kept = old.data.to_dict()
    except Exception as err:  # noqa: BLE001 - any unreadable card: ours replaces it, said aloud
        log.warning("the repo's card cannot be read (%s: %s): it is replaced, edits made on the Hub included", type(err).__name__, err)
        return new_card
    new = ModelCard(new_card)
    data = new.data.to_dict()
    if data.get("license") == UNKNOWN_LICENSE and kept.get("license") not in (None, UNKNOWN_LICENSE):
        log.warning("keeping the licence %s of the repo's card; pass --license to change it", kept["license"])
        data["license"] = kept["license"]
    # Tags and keys this tool writes come from this push alone, so a retrain on other data drops
    # the old ones; the rest is the repo owner's.
    data["tags"] = list(dict.fromkeys((data.get("tags") or []) + [t for t in kept.get("tags") or [] if t not in TOOL_TAGS]))
    merged = {**{k: v for k, v in kept.items() if k not in TOOL_KEYS}, **data}
    text = new.text
    begin, end = old.text.find(BEGIN), old.text.find(END)
    if 0 <= begin < end:
        generated = new.text.split(BEGIN, 1)[1].split(END, 1)[0]
        text = old.text[:begin] + BEGIN + generated + old.text[end:]
    new.data = type(new.data)(**merged)
    new.text = text
    return str(new)
