"""Shared fixtures: small generated datasets and one small trained model per test session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Everything the session writes to the temp folder (Gradio's and gradio_client's files, the Hub
# cache, subprocesses' files, pytest's tmp_path) goes under one folder removed at exit: repeated
# runs on a shared CI disk must not fill it.
SESSION_TMP = tempfile.mkdtemp(prefix="defect_tests_")
os.environ["TMPDIR"] = tempfile.tempdir = SESSION_TMP
atexit.register(shutil.rmtree, SESSION_TMP, ignore_errors=True)

from tests.hub_server import TOKEN, HubServer  # noqa: E402

# huggingface_hub reads its endpoint and cache folder once, at import: point every client (ours,
# datasets', Keras's hf://, subprocesses) at the local Hub stand-in before anything imports it.
HUB = HubServer()
os.environ["HF_ENDPOINT"] = HUB.url
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf_home_")
os.environ["HF_HUB_DISABLE_XET"] = "1"  # the stand-in speaks LFS, not Xet
os.environ.pop("HF_HUB_OFFLINE", None)

import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from training.config import TrainConfig  # noqa: E402
from training.synthetic import GenerateConfig, generate  # noqa: E402

# Two surfaces on which a short run learns reliably; the full model is measured in benchmarks.
TINY_TEXTURES = ("clouds", "brushed")
# 20 epochs of 7 batches (~one pass over the tiny training split each), validated every epoch on
# 30 % of the training split: with the default 15 % (~18 images) one lucky early epoch scores AUC
# 1.0 and is kept.
# No time budget: a run it cuts depends on the machine's speed, and the session model is recorded.
SHORT_RUN = dict(epochs=20, steps_per_epoch=7, patience=20, crop_size=192, mine_every=3, validate_every=1, val_fraction=0.3,
                 time_budget=0.0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_data")
    generate(GenerateConfig(out, seed=1, per_texture_good=40, per_texture_defective=40, textures=TINY_TEXTURES))
    return out


@pytest.fixture(scope="session")
def trained(tiny_data, tmp_path_factory) -> tuple[Path, dict]:
    """(run folder, test metrics) of a short compact training run on the tiny data."""
    from training.train import train

    out = tmp_path_factory.mktemp("run")
    # A short run learns more per second from smaller crops than the full run's default; the
    # decision is the default operating point's.
    config = TrainConfig(data=str(tiny_data), out=str(out), **SHORT_RUN, seed=3)
    metrics = train(config)
    return out, metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(trained):
    from space import app

    out, _ = trained
    classifier = app.DefectClassifier(out / "model")
    classifier.warm_up()
    demo = app.build_demo(classifier)
    port = _free_port()
    app.serve(demo, port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", classifier
    demo.close()


@pytest.fixture(scope="session")
def hub():
    """The local Hub stand-in, started once; tests use their own repo names."""
    HUB.start()
    yield HUB
    HUB.stop()


@pytest.fixture
def hf_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return TOKEN
