"""Publish a model folder to the Hugging Face Hub, in one commit, or fail cleanly.

`upload_folder` sends every file in a single commit, so a failure leaves the repo as it was; a
second push of an unchanged folder is a no-op (the client skips files whose hash the Hub already
has). Only the files a model folder is made of are sent (a stray `.env` stays home), from a staged
copy whose settings name no local path; the local folder is not changed. Every Hub failure becomes
a `PublishError` that names the cause and the fix; a Hub that stops answering is given up after
HUB_TIMEOUT seconds of silence. The token comes from HF_TOKEN or the standard login cache and is
never printed or written anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from defect_inference import CONFIG_FILE
from defect_inference.model_folder import KERAS_FILES, is_hub_repo_id

REQUIRED_MODEL_FILES = (
    *KERAS_FILES, CONFIG_FILE, "metrics.json", "handler.py",
    "defect_inference/__init__.py", "saved_model.pb", "keras_metadata.pb", "roc_curve.png", "confusion_matrix.png",
)


# What a model folder is made of (`export` writes it); anything else in the folder is not published.
MODEL_FOLDER_FILES = (
    *KERAS_FILES, CONFIG_FILE, "metrics.json", "handler.py", "requirements.txt", "README.md",
    "saved_model.pb", "keras_metadata.pb", "fingerprint.pb", "variables/*", "assets/*", "defect_inference/*.py",
    "*.png",
)
# Seconds of silence from the Hub within one request before a push gives up; DEFECT_HUB_TIMEOUT overrides it.
HUB_TIMEOUT = 120.0


class PublishError(RuntimeError):
    """A push that did not happen; the message names the cause and the fix."""


def check_model_folder(model_dir) -> Path:
    """Refuse, before any upload, a folder that would publish a model nobody can load."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PublishError(f"{model_dir} is not a folder: pass the OUT/model folder that `train` wrote")
    missing = [name for name in REQUIRED_MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise PublishError(
            f"{model_dir} is missing {', '.join(missing)}: re-run `defect-classifier train` (or `export`) "
            "to write a complete model folder; nothing was uploaded"
        )
    return model_dir


def _explain(err: Exception, action: str) -> PublishError:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, HfHubHTTPError) and status == 401:
        return PublishError(
            f"{action}: the Hub refused the token (401). Set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens) or run `hf auth login`; nothing was committed"
        )
    if isinstance(err, HfHubHTTPError) and status in (403, 404):
        return PublishError(
            f"{action}: the repo was not found or this token may not write to it ({status}). Check the "
            "repo id (user/name) and the token's permissions; nothing was committed"
        )
    if isinstance(err, HfHubHTTPError) and status is not None and status >= 500:
        return PublishError(f"{action}: the Hub failed ({status}); nothing was committed, try again later")
    if "Timeout" in type(err).__name__:
        return PublishError(
            f"{action}: the Hub at {constants.ENDPOINT} did not answer for {hub_timeout():.0f} s ({type(err).__name__}); "
            "nothing was committed. Try again later, or raise DEFECT_HUB_TIMEOUT on a slow connection"
        )
    if type(err).__module__.split(".")[0].startswith("httpx") or isinstance(err, (TimeoutError, ConnectionError)):
        return PublishError(
            f"{action}: cannot reach the Hub at {constants.ENDPOINT} ({type(err).__name__}). Check the network "
            "(or HF_ENDPOINT); nothing was committed"
        )
    return PublishError(f"{action}: {type(err).__name__}: {err}")


def hub_timeout() -> float:
    return float(os.environ.get("DEFECT_HUB_TIMEOUT") or HUB_TIMEOUT)


@contextmanager
def timed_hub_session():
    """huggingface_hub's shared HTTP client, with a timeout on every read and write while inside
    (its default waits for ever)."""
    import httpx2
    from huggingface_hub.utils import _http

    previous = _http._GLOBAL_CLIENT_FACTORY
    _http.set_client_factory(lambda: httpx2.Client(
        event_hooks={"request": [_http.hf_request_event_hook]}, follow_redirects=True, timeout=hub_timeout(),
    ))
    try:
        yield
    finally:
        _http.set_client_factory(previous)


def check_token(token: str | None = None) -> str:
    """The user name behind the token, or a PublishError saying how to log in."""
    from huggingface_hub import HfApi, get_token

    if not (token or get_token()):
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then push again")
    try:
        return HfApi(token=token).whoami()["name"]
    except Exception as err:  # noqa: BLE001 - every failure is explained, none is swallowed
        raise _explain(err, "checking the token") from None


def push_folder(
    folder,
    repo_id: str,
    repo_type: str = "model",
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload with defect-classifier push",
    token: str | None = None,
    space_sdk: str | None = None,
    allow_patterns: tuple[str, ...] | None = None,
) -> str:
    """Upload `folder` (only the files `allow_patterns` match, when given) as one commit to
    `repo_id` (created if needed); return the commit URL."""
    from huggingface_hub import HfApi

    check_token(token)
    api = HfApi(token=token)
    try:
        with timed_hub_session():
            api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
            if revision:
                api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
            info = api.upload_folder(
                folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, revision=revision,
                commit_message=commit_message, allow_patterns=list(allow_patterns) if allow_patterns else None,
                ignore_patterns=["__pycache__/*", "*.pyc", "*.pyi"],
            )
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"pushing {Path(folder).name} to {repo_id}") from None
    return info.commit_url


def push_model(model_dir, repo_id: str, dataset_repo: str | None = None, **kwargs) -> str:
    """Push a model folder's own files from a staged copy: its settings name the dataset repo (or
    the data folder's name) instead of local paths, and its card names this repo and dataset."""
    from training.card import render_model_card

    model_dir = check_model_folder(model_dir)
    with tempfile.TemporaryDirectory(prefix="defect_push_") as tmp:
        staged = Path(tmp) / model_dir.name
        shutil.copytree(model_dir, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        without_local_paths(staged / CONFIG_FILE, dataset_repo)
        render_model_card(staged, repo_id=repo_id, dataset_repo=dataset_repo)
        return push_folder(staged, repo_id, repo_type="model", allow_patterns=MODEL_FOLDER_FILES, **kwargs)


def without_local_paths(config_file: Path, dataset_repo: str | None) -> None:
    """Rewrite a model's saved settings so `data` and `out` name no folder of this machine: the
    data becomes the dataset repo (or stays a Hub id it already was, else the folder's name), the
    run folder its name."""
    values = json.loads(config_file.read_text())
    settings = values.get("training_config", {})
    if "data" in settings:
        data = str(settings["data"])
        settings["data"] = dataset_repo or (data if is_hub_repo_id(data) else Path(data).name)
    if "out" in settings:
        settings["out"] = Path(str(settings["out"])).name
    config_file.write_text(json.dumps(values, indent=2))


def push_dataset(data_dir, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Push an imagefolder dataset (train/test, labels, texture, defect kind, ellipses) as a `datasets` repo."""
    import datasets
    from huggingface_hub import CommitOperationAdd, HfApi

    from training.data import CLASS_NAMES

    check_token(token)
    ds = datasets.load_dataset("imagefolder", data_dir=str(data_dir))
    if not isinstance(ds["train"].features.get("label"), datasets.ClassLabel):
        ds = ds.cast_column("label", datasets.ClassLabel(names=list(CLASS_NAMES)))
    examples = pick_examples(data_dir)
    # `datasets` commits the data itself; the card and examples are a second commit. If that one
    # fails, the message says what is already published instead of "nothing was committed".
    try:
        with timed_hub_session():
            ds.push_to_hub(repo_id, private=private, token=token, commit_message="Upload with defect-classifier push")
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"pushing the dataset {Path(data_dir).name} to {repo_id}") from None
    try:
        with timed_hub_session():
            card = _dataset_card(repo_id, ds, token)
            operations = [CommitOperationAdd("README.md", str(card).encode())] + [
                CommitOperationAdd(f"{EXAMPLES_FOLDER}/{name}", data) for name, data in examples
            ]
            return HfApi(token=token).create_commit(
                repo_id, operations, repo_type="dataset", commit_message="Dataset card and the Space's example images"
            ).commit_url
    except Exception as err:  # noqa: BLE001
        explained = str(_explain(err, f"pushing the card and examples of {repo_id}")).replace("nothing was committed", "that commit was not made")
        raise PublishError(
            f"{explained}. The data files ARE published in {repo_id} (without the card and the Space's examples): "
            "push the dataset again to add them"
        ) from None


EXAMPLES_FOLDER = "examples"


def pick_examples(data_dir, per_texture: int = 1, limit: int = 14) -> list[tuple[str, bytes]]:
    """PNG files for the Space's examples: per texture, its defective image with the largest
    labelled defect and a defect-free one, from the test split if there is one."""
    import io

    from PIL import Image

    from defect_inference import read_image
    from training.data import load_splits

    splits = load_splits(data_dir)
    samples = splits.get("test") or splits["train"]
    textures = sorted({s.texture or "" for s in samples})
    chosen = []
    for texture in textures:
        group = [s for s in samples if (s.texture or "") == texture]
        defective = sorted((s for s in group if s.defective), key=lambda s: -(s.ellipse.a * s.ellipse.b if s.ellipse else 0))
        good = [s for s in group if not s.defective]
        chosen += [("defects", texture, s) for s in defective[:per_texture]]
        chosen += [("no_defects", texture, s) for s in good[:per_texture]]
    files = []
    for i, (label, texture, sample) in enumerate(chosen[:limit]):
        buffer = io.BytesIO()
        Image.fromarray(read_image(sample.image)).convert("L" if sample.texture else "RGB").save(buffer, format="PNG")
        files.append((f"{label}_{texture or i}.png", buffer.getvalue()))
    return files


def _dataset_card(repo_id: str, ds, token: str | None):
    """The card `push_to_hub` wrote (its features and configs kept), plus what the dataset is."""
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    total = sum(split.num_rows for split in ds.values())
    card.data.task_categories = ["image-classification"]
    card.data.size_categories = ["n<1K" if total < 1000 else "1K<n<10K" if total < 10000 else "10K<n<100K"]
    card.data.license = card.data.license or "apache-2.0"
    card.data.tags = ["defect-detection", "surface-inspection", "dagm", "synthetic"]
    sizes = ", ".join(f"{name}: {split.num_rows}" for name, split in ds.items())
    card.text = (
        f"\n# {repo_id.split('/')[-1]}\n\n"
        "Images of textured surfaces labelled `defects` or `no_defects` (ClassLabel, index 0 is `defects`), "
        "DAGM 2007 style: 512x512 8-bit grayscale. Columns: `image`, `label`, `texture`, the kind of "
        "`defect`, and the defect ellipse `cx, cy, a, b, angle` in pixels (a weak localization label); the "
        "defect columns are empty for defect-free images.\n\n"
        f"Splits: {sizes}. `{EXAMPLES_FOLDER}/` holds a few of the test images, which the Space shows as examples.\n\n"
        "Made by `defect-classifier generate` (seeded noise textures, seven families including radial streaks "
        "whose normal look has a dark spot at the centre; defects drawn inside a random ellipse: scratch, "
        "blotch, smooth intensity change, texture break, some faint), or, for a real dataset, read from its "
        "folder by the same tool.\n"
    )
    return card


def push_space(
    space_dir, repo_id: str, model_repo: str, dataset_repo: str | None = None, private: bool = False,
    token: str | None = None,
) -> str:
    """Upload the Space folder, with the inference core beside its app and its README naming the
    model (and dataset), then set its MODEL_ID variable.

    The folder is uploaded in one commit; the app reads MODEL_ID, or the README's `models:` entry
    if the variable is not set, so the commit alone is enough to run. With a dataset repo, the
    app shows that repo's `examples/` images.
    """
    from huggingface_hub import HfApi, SpaceCardData
    from huggingface_hub.repocard import RepoCard

    from training.export import copy_core

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "space"
        shutil.copytree(space_dir, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi", "__init__.py"))
        copy_core(staged)
        card = RepoCard.load(staged / "README.md")
        data = card.data.to_dict()
        data["models"] = [model_repo]
        if dataset_repo:
            data["datasets"] = [dataset_repo]
        card.data = SpaceCardData(**data)
        card.save(staged / "README.md")
        url = push_folder(staged, repo_id, repo_type="space", private=private, token=token, space_sdk="gradio",
                          commit_message=f"Space for {model_repo}")
    try:
        HfApi(token=token).add_space_variable(repo_id, "MODEL_ID", model_repo)
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"setting MODEL_ID on {repo_id} (the files are pushed)") from None
    return url
