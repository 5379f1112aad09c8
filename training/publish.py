"""Publish a model folder to the Hugging Face Hub, in one commit, or fail cleanly.

`upload_folder` sends every file in a single commit, so a failure leaves the repo as it was; a
second push of an unchanged folder is a no-op (the client skips files whose hash the Hub already
has). Every Hub failure becomes a `PublishError` that names the cause and the fix. The token comes
from HF_TOKEN or the standard login cache and is never printed or written anywhere.
"""

from __future__ import annotations

from pathlib import Path

from space.inference import CONFIG_FILE

REQUIRED_MODEL_FILES = ("config.json", "metadata.json", "model.weights.h5", CONFIG_FILE)


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
            f"{model_dir} is missing {', '.join(missing)}: re-run `python -m training train` (or `export`) "
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
    if type(err).__module__.split(".")[0].startswith("httpx") or isinstance(err, (TimeoutError, ConnectionError)):
        return PublishError(
            f"{action}: cannot reach the Hub at {constants.ENDPOINT} ({type(err).__name__}). Check the network "
            "(or HF_ENDPOINT); nothing was committed"
        )
    return PublishError(f"{action}: {type(err).__name__}: {err}")


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
    commit_message: str = "Upload with python -m training push",
    token: str | None = None,
    space_sdk: str | None = None,
) -> str:
    """Upload `folder` as one commit to `repo_id` (created if needed); return the commit URL."""
    from huggingface_hub import HfApi

    check_token(token)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        if revision:
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, revision=revision,
            commit_message=commit_message, ignore_patterns=["__pycache__/*", "*.pyc"],
        )
    except Exception as err:  # noqa: BLE001
        raise _explain(err, f"pushing {folder} to {repo_id}") from None
    return info.commit_url


def push_model(model_dir, repo_id: str, **kwargs) -> str:
    return push_folder(check_model_folder(model_dir), repo_id, repo_type="model", **kwargs)
