"""The pushed repos install on the Hub: the Space's and the model repo's requirements resolve, from
PyPI, for the Python the Space declares (Spaces default to 3.10, which these pins do not support)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import RepoCard

ROOT = Path(__file__).resolve().parents[1]
SPACE_CARD = RepoCard.load(ROOT / "space" / "README.md").data


def _resolve(python: str, *requirements: str, target: Path) -> subprocess.CompletedProcess:
    """What the Hub's builder does, without installing: pip's resolver for that Python, wheels only."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--only-binary=:all:",
         "--python-version", python, "--target", str(target), *requirements],
        capture_output=True, text=True, timeout=600,
    )


def _pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(line.split("==") for line in lines if line)


def test_the_space_declares_a_python_its_pins_install_on(tmp_path):
    python = str(SPACE_CARD.python_version)
    assert _pins(ROOT / "requirements.txt")["gradio"] == SPACE_CARD.sdk_version
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}"  # the Python the project is tested on
    run = _resolve(python, "-r", str(ROOT / "space" / "requirements.txt"), f"gradio=={SPACE_CARD.sdk_version}", target=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]


def test_without_the_python_version_the_space_would_not_build(tmp_path):
    """The check above can fail: on the Hub's default Python the same pins do not resolve."""
    run = _resolve("3.10", "-r", str(ROOT / "space" / "requirements.txt"), target=tmp_path)
    assert run.returncode != 0 and "numpy==2.4.6" in run.stderr


def test_the_model_repos_requirements_resolve_and_leave_huggingface_hub_to_the_toolkit(tmp_path):
    path = ROOT / "training" / "model_repo" / "requirements.txt"
    assert "huggingface-hub" not in _pins(path)
    run = _resolve(str(SPACE_CARD.python_version), "-r", str(path), target=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.parametrize("path", ["space/requirements.txt", "training/model_repo/requirements.txt"])
def test_pushed_pins_are_the_projects_own(path):
    project = _pins(ROOT / "requirements.txt")
    assert {name: version for name, version in _pins(ROOT / path).items() if project.get(name) != version} == {}
