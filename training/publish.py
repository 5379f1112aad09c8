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
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from defect_inference import CONFIG_FILE
from defect_inference.model_folder import KERAS_FILES, SAVEDMODEL_FILES, is_hub_repo_id
from defect_inference.onnx_backend import ONNX_FILE

REQUIRED_MODEL_FILES = (
    *KERAS_FILES, CONFIG_FILE, "metrics.json", "handler.py",
    "defect_inference/__init__.py", "saved_model.pb", "keras_metadata.pb", "roc_curve.png", "confusion_matrix.png",
)


log = logging.getLogger(__name__)

# What a model folder is made of (`export` writes it); anything else in the folder is not published.
MODEL_FOLDER_FILES = (
    *KERAS_FILES, *SAVEDMODEL_FILES, ONNX_FILE, "metrics.json", "handler.py", "requirements.txt", "README.md",
    "defect_inference/*.py", "*.png", "logs/*",
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
    delete_patterns: tuple[str, ...] | None = None,
) -> str:
    """Upload `folder` (only the files `allow_patterns` match, when given) as one commit to
    `repo_id` (created if needed), removing in the same commit the repo's files that match
    `delete_patterns` and are not in `folder`; return the commit URL."""
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
                delete_patterns=list(delete_patterns) if delete_patterns else None,
                ignore_patterns=["__pycache__/*", "*.pyc", "*.pyi"],
            )
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"pushing {Path(folder).name} to {repo_id}") from None
    return info.commit_url


def push_model(model_dir, repo_id: str, dataset_repo: str | None = None, license: str | None = None, **kwargs) -> str:
    """Push a model folder's own files, with this version's handler and inference core, from a
    staged copy: its settings name the dataset repo (or the data folder's name) instead of local
    paths; its card names this repo and dataset, shows the dataset's examples in the Hub's widget,
    and keeps what the repo's card had added on the Hub; the run's TensorBoard logs and history go
    under `logs/`."""
    from training.card import merge_with_existing, render_model_card
    from defect_inference import load_model_config
    from training.export import copy_model_repo_code, restamp_onnx

    model_dir = check_model_folder(model_dir)
    check_token(kwargs.get("token"))
    with tempfile.TemporaryDirectory(prefix="defect_push_") as tmp:
        staged = Path(tmp) / model_dir.name
        shutil.copytree(model_dir, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        copy_model_repo_code(staged)
        with_data_facts(staged / "metrics.json", staged / CONFIG_FILE)
        without_local_paths(staged / CONFIG_FILE, dataset_repo)
        if (staged / ONNX_FILE).is_file() and not restamp_onnx(staged / ONNX_FILE, load_model_config(model_dir), load_model_config(staged)):
            raise PublishError(
                f"{model_dir / ONNX_FILE} was not exported from this model folder: nothing was pushed; export it again "
                f"(`defect-classifier export --model {model_dir} --format onnx`) or delete it"
            )
        stage_logs(model_dir.parent, staged / LOGS_FOLDER)
        with timed_hub_session():
            widget = _widget(dataset_repo, kwargs.get("token"))
            existing = _existing_card(repo_id, kwargs.get("revision"), kwargs.get("token"))
        card = render_model_card(staged, repo_id=repo_id, dataset_repo=dataset_repo, license=license, widget=widget)
        card.write_text(merge_with_existing(card.read_text(), existing))
        # What an earlier push of this tool left (an older run's logs, plots, a backbone's files)
        # goes; files added on the Hub that are not a model folder's stay.
        return push_folder(staged, repo_id, repo_type="model", allow_patterns=MODEL_FOLDER_FILES,
                           delete_patterns=MODEL_FOLDER_FILES, **kwargs)


LOGS_FOLDER = "logs"


def stage_logs(run_dir: Path, logs: Path) -> None:
    """Copy a run's TensorBoard event files (under RUN/logs/) and history.json into `logs`. Event
    files are named `events.out.tfevents.<time>.<host>.<pid>...`: the host name and process id
    of the training machine are replaced, since they say nothing to a reader of the repo."""
    events = sorted((run_dir / LOGS_FOLDER).rglob("events.out.tfevents.*")) if (run_dir / LOGS_FOLDER).is_dir() else []
    for i, source in enumerate(events):
        stamp = source.name.split(".")[3]
        target = logs / source.parent.relative_to(run_dir / LOGS_FOLDER) / f"events.out.tfevents.{stamp}.defect-classifier.{i}.v2"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    if (run_dir / "history.json").is_file():
        logs.mkdir(parents=True, exist_ok=True)
        shutil.copy(run_dir / "history.json", logs / "history.json")


def _widget(dataset_repo: str | None, token: str | None) -> list[dict] | None:
    """The Hub widget's examples: the dataset repo's example images, by URL."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError

    from training.hub_dataset import EXAMPLES_FOLDER

    if not dataset_repo:
        return None
    try:
        info = HfApi(token=token).dataset_info(dataset_repo, files_metadata=False)
    except RepositoryNotFoundError:
        log.warning("the dataset repo %s does not exist (yet): the model card gets no widget examples", dataset_repo)
        return None
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"listing the examples of {dataset_repo}") from None
    if info.private:
        log.warning("the dataset repo %s is private: its images would show as broken in the model card's widget, so it gets none", dataset_repo)
        return None
    files = [sibling.rfilename for sibling in info.siblings or []]
    return [
        {"src": f"{constants.ENDPOINT}/datasets/{dataset_repo}/resolve/main/{name}", "example_title": Path(name).stem}
        for name in sorted(files) if name.startswith(f"{EXAMPLES_FOLDER}/") and name.lower().endswith(".png")
    ] or None


def _existing_card(repo_id: str, revision: str | None, token: str | None) -> str | None:
    """The repo's README.md as it is on the Hub now (for a new branch, main's), or None for a new repo."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(hf_hub_download(repo_id, "README.md", revision=revision, token=token)).read_text()
    except RevisionNotFoundError:  # a new branch starts from the main branch's card
        return _existing_card(repo_id, None, token)
    except (RepositoryNotFoundError, EntryNotFoundError):
        return None
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"reading the card of {repo_id}") from None


def with_data_facts(metrics_file: Path, config_file: Path) -> None:
    """Give the metrics of a model trained before they recorded their data (layout, generated or
    not: what its card's licence and the Space's examples go by) what the data folder says, when
    it is on this machine."""
    from training.data import DataError, describe_source

    metrics = json.loads(metrics_file.read_text())
    data = json.loads(config_file.read_text()).get("training_config", {}).get("data")
    if "data" in metrics or not data or not Path(data).is_dir():
        return
    try:
        metrics["data"] = describe_source(data)
    except DataError:  # the folder no longer holds a dataset: the metrics stay silent about it
        return
    metrics_file.write_text(json.dumps(metrics, indent=2))


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


def push_dataset(data_dir, repo_id: str, private: bool = False, token: str | None = None, license: str | None = None) -> str:
    """Push a dataset folder of any layout `train` reads as a `datasets` repo (see hub_dataset.py),
    with a card saying what it is and the Space's example images; return the last commit's URL."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    from training.data import GENERATED_FILE, check_readable, load_splits
    from training.hub_dataset import EXAMPLES_FOLDER, dataset_facts, dataset_license, pick_examples, to_dataset_dict

    if not Path(data_dir).is_dir():
        raise PublishError(f"{data_dir} is not a dataset folder: a dataset push publishes a local folder (a Hub dataset is published already)")
    try:
        license = dataset_license(data_dir, license)
    except ValueError as err:
        raise PublishError(f"{err}; nothing was uploaded") from None
    check_token(token)
    splits = load_splits(data_dir)
    check_readable([s for split in splits.values() for s in split])  # a broken file is named before any upload
    ds = to_dataset_dict(splits)
    facts = dataset_facts(data_dir, splits)
    examples = pick_examples(splits)
    # `datasets` commits the data itself; the card and examples are a second commit. If that one
    # fails, the message says what is already published instead of "nothing was committed".
    try:
        with timed_hub_session():
            ds.push_to_hub(repo_id, private=private, token=token, commit_message="Upload with defect-classifier push")
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"pushing the dataset {Path(data_dir).name} to {repo_id}") from None
    try:
        with timed_hub_session():
            card = _dataset_card(repo_id, ds, facts, license, token)
            api = HfApi(token=token)
            names = {f"{EXAMPLES_FOLDER}/{name}" for name, _ in examples}
            stale = [f for f in api.list_repo_files(repo_id, repo_type="dataset") if f.startswith(f"{EXAMPLES_FOLDER}/") and f not in names]
            operations = [CommitOperationAdd("README.md", str(card).encode())] + [
                CommitOperationAdd(f"{EXAMPLES_FOLDER}/{name}", data) for name, data in examples
            ] + [CommitOperationDelete(f) for f in stale]
            if facts["generated"]:  # so a model trained from the Hub copy knows its data is generated
                operations.append(CommitOperationAdd(GENERATED_FILE, json.dumps(facts["generated"], indent=2).encode()))
            return api.create_commit(
                repo_id, operations, repo_type="dataset", commit_message="Dataset card and the Space's example images"
            ).commit_url
    except Exception as err:  # noqa: BLE001
        explained = str(_explain(err, f"pushing the card and examples of {repo_id}")).replace("nothing was committed", "that commit was not made")
        raise PublishError(
            f"{explained}. The data files ARE published in {repo_id} (without the card and the Space's examples): "
            "push the dataset again to add them"
        ) from None


def _dataset_card(repo_id: str, ds, facts: dict, license: str, token: str | None):
    """The card `push_to_hub` wrote (its features and configs kept), plus what the dataset is."""
    from huggingface_hub import DatasetCard

    from training.hub_dataset import EXAMPLES_FOLDER, card_text, dataset_tags

    card = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    total = sum(split.num_rows for split in ds.values())
    card.data.task_categories = ["image-classification"]
    card.data.size_categories = ["n<1K" if total < 1000 else "1K<n<10K" if total < 10000 else "10K<n<100K"]
    card.data.license = license
    card.data.tags = dataset_tags(facts)
    card.data.pretty_name = repo_id.split("/")[-1]
    card.text = card_text(repo_id, facts, license, EXAMPLES_FOLDER)
    return card


def push_space(
    space_dir, repo_id: str, model_repo: str, dataset_repo: str | None = None, private: bool = False,
    token: str | None = None, examples_from=None,
) -> str:
    """Upload the Space folder, with the inference core beside its app and its README naming the
    model (and dataset), then set its MODEL_ID variable.

    The folder is uploaded in one commit; the app reads MODEL_ID, or the README's `models:` entry
    if the variable is not set, so the commit alone is enough to run. With a dataset repo, the
    app shows that repo's `examples/` images. Its own `examples/` (shown when there is no dataset
    repo, or it cannot be reached) are a few test images of `examples_from` (a dataset folder) when
    given, else the bundled synthetic textures, kept only for a model trained on generated data:
    on a model of other surfaces they would show wrong verdicts.
    """
    from huggingface_hub import HfApi, SpaceCardData
    from huggingface_hub.repocard import RepoCard

    from training.export import copy_core
    from training.hub_dataset import EXAMPLES_FOLDER

    check_token(token)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "space"
        shutil.copytree(space_dir, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi", "__init__.py"))
        copy_core(staged)
        _stage_space_examples(staged / EXAMPLES_FOLDER, model_repo, examples_from, token)
        card = RepoCard.load(staged / "README.md")
        data = card.data.to_dict()
        data["models"] = [model_repo]
        if dataset_repo:
            data["datasets"] = [dataset_repo]
        card.data = SpaceCardData(**data)
        card.save(staged / "README.md")
        url = push_folder(staged, repo_id, repo_type="space", private=private, token=token, space_sdk="gradio",
                          commit_message=f"Space for {model_repo}", delete_patterns=(f"{EXAMPLES_FOLDER}/*",))
    try:
        HfApi(token=token).add_space_variable(repo_id, "MODEL_ID", model_repo)
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"setting MODEL_ID on {repo_id} (the files are pushed)") from None
    return url


def _stage_space_examples(folder: Path, model_repo: str, examples_from, token: str | None) -> None:
    from training.data import load_splits
    from training.hub_dataset import pick_examples

    if examples_from is not None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for name, data in pick_examples(load_splits(examples_from)):
            (folder / name).write_bytes(data)
        log.info("the Space's own examples: %d test images of %s", len(list(folder.iterdir())), examples_from)
    elif not _model_trained_on_generated_data(model_repo, token):
        shutil.rmtree(folder, ignore_errors=True)
        log.warning(
            "%s was not trained on generated data (or says nothing of its data), so the Space does not bundle the "
            "synthetic examples: it shows the dataset repo's examples/, or none. Pass --examples DATA to show a few of "
            "your test images", model_repo,
        )


def _model_trained_on_generated_data(model_repo: str, token: str | None) -> bool:
    """What the model repo's metrics.json says of its training data (False when it says nothing)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    from training.card import trained_on_generated_data

    try:
        with timed_hub_session():
            metrics = json.loads(Path(hf_hub_download(model_repo, "metrics.json", token=token)).read_text())
    except (RepositoryNotFoundError, EntryNotFoundError):
        return False
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"reading what {model_repo} was trained on") from None
    return trained_on_generated_data(metrics)
