"""The installed `defect-classifier` command: its subcommands, its help, and settings refused up front."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from training.cli import build_parser, config_from_args
from training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
COMMAND = str(Path(sys.executable).parent / "defect-classifier")
SUBCOMMANDS = ("generate", "train", "evaluate", "predict", "rethreshold", "export", "push", "push-space")


def _run(*args, **kwargs):
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=300, **kwargs)


def test_the_installed_command_lists_its_subcommands():
    run = _run("--help")
    assert run.returncode == 0, run.stderr
    listed = re.findall(r"^    (\S+)", run.stdout, re.M)
    assert tuple(listed) == SUBCOMMANDS


def test_train_help_explains_every_option_in_a_sentence():
    run = _run("train", "--help")
    assert run.returncode == 0
    text = "".join(run.stdout.split())  # argparse wraps lines, at hyphens too
    for f in dataclasses.fields(TrainConfig):
        if not f.init:
            continue
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        sentence = f.metadata["help"]
        assert len(sentence.split()) >= 4 and sentence.endswith(".") and "".join(sentence.split()) in text, flag
    assert "{instance,batch}" in text and "{1,2,4,8}" in text  # enumerations are choices


@pytest.mark.parametrize(
    "args, message",
    [
        (["--norm", "instanse"], "invalid choice: 'instanse'"),
        (["--widths", "8"], "--widths must be 7 positive whole numbers"),
        (["--learning-rate", "-1"], "--learning-rate must be above 0"),
        (["--patience", "0"], "--patience must be at least 1"),
        (["--val-fraction", "nan"], "--val-fraction must be a finite number"),
        (["--precision", "fp8"], "invalid choice: 'fp8'"),
        (["--push-to-hub", "not a repo"], "is not a Hub repo id"),
    ],
)
def test_invalid_settings_are_refused_before_any_data_is_read(args, message, tmp_path):
    run = _run("train", "--data", str(tmp_path / "no-such-data"), "--out", str(tmp_path / "out"), *args)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "does not exist" not in run.stderr and not (tmp_path / "out").exists()


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as caught:
        TrainConfig(patience=0, learning_rate=0.0, widths=(8,)).validate()
    assert all(name in str(caught.value) for name in ("--patience", "--learning-rate", "--widths"))


def test_a_saved_run_repeats_from_its_config_and_typed_options_override_it(trained):
    out, _ = trained
    saved = out / "model" / "defect_config.json"
    parser = build_parser()
    again = config_from_args(parser.parse_args(["train", "--config", str(saved)]))
    assert again == TrainConfig.from_dict(json.loads(saved.read_text())["training_config"])
    assert again.seed == 3 and again.epochs == 20  # the test run's settings, not the defaults
    changed = config_from_args(parser.parse_args(["train", "--config", str(saved), "--seed", "9", "--no-fine-tune"]))
    assert dataclasses.replace(again, seed=9) == changed
    assert config_from_args(parser.parse_args(["train"])) == TrainConfig()


def test_quiet_hides_logs_and_progress_bars_verbose_shows_them(tmp_path):
    quiet = _run("generate", "--quiet", "--out", str(tmp_path / "q"), "--per-texture-good", "2", "--per-texture-defective", "2")
    loud = _run("generate", "--out", str(tmp_path / "l"), "--per-texture-good", "2", "--per-texture-defective", "2")
    assert quiet.returncode == loud.returncode == 0
    assert json.loads(quiet.stdout) == json.loads(loud.stdout)
    assert quiet.stderr == "" and "generating" in loud.stderr


def test_python_m_training_is_the_same_command():
    run = subprocess.run([sys.executable, "-m", "training", "--help"], capture_output=True, text=True, cwd="/")
    assert run.returncode == 0 and tuple(re.findall(r"^    (\S+)", run.stdout, re.M)) == SUBCOMMANDS


def test_the_package_pins_what_requirements_txt_pins():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = {line for line in lines if line}
    assert set(project["dependencies"]) | set(project["optional-dependencies"]["test"]) == pins
    assert project["requires-python"] == ">=3.11,<3.12" and project["scripts"]["defect-classifier"] == "training.cli:main"


def _dataset_with_a_broken_test_image(root):
    from PIL import Image

    for split, n in (("train", 12), ("test", 3)):
        for label in ("defects", "no_defects"):
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (64, 64), 40 if label == "defects" else 200).save(root / split / label / f"{i}.png")
    (root / "test" / "defects" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "test" / "no_defects" / "2.png").write_bytes(b"")
    return root


def test_train_refuses_broken_images_of_any_split_an_occupied_out_and_a_bad_repo_id_before_training(tmp_path, capsys):
    """Each problem ends the run in seconds with exit 2 and nothing written, not after the training."""
    from training.cli import main

    data = _dataset_with_a_broken_test_image(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 image(s) or mask(s) cannot be used" in err and "defects/1.png" in err and "no_defects/2.png" in err
    assert not (out / "model").exists()

    (out / "model").mkdir(parents=True)
    (out / "model" / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2
    assert "exists and is not a model folder" in capsys.readouterr().err
    assert (out / "model" / "notes.txt").read_text() == "mine"

    with pytest.raises(SystemExit) as exit_status:
        main(["train", "--data", str(data), "--out", str(tmp_path / "other"), "--push-to-hub", "not a repo!"])
    assert exit_status.value.code == 2 and "'not a repo!' is not a Hub repo id" in capsys.readouterr().err


def test_a_dataset_push_without_the_datas_licence_is_refused_before_training(tmp_path, capsys):
    from training.cli import main

    data = _dataset_with_a_broken_test_image(tmp_path / "data")  # refused before its images are even read
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--dataset-repo", "tester/mine"]) == 2
    assert "pass --license" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as exit_status:
        main(["push", "--model", str(out), "--repo", "tester/x", "--license", "CC BY 4.0"])
    assert exit_status.value.code == 2 and "is not a Hub licence id" in capsys.readouterr().err
