"""The Space: its predict endpoint through gradio_client, against the app served on 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "space" / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(trained):
    from space import app

    out, _ = trained
    classifier = app.DefectClassifier(out / "model")
    classifier.warm_up()
    demo = app.build_demo(classifier)
    demo.queue(default_concurrency_limit=2)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", classifier
    demo.close()


def test_space_never_imports_training():
    for path in (EXAMPLES.parent).glob("*.py"):
        text = path.read_text()
        assert "import training" not in text and "from training" not in text, path


def test_bundled_examples_cover_both_classes_and_the_dark_centre_texture():
    names = [p.name for p in EXAMPLES.glob("*.png")]
    assert any(n.startswith("defects_") for n in names)
    assert any(n.startswith("no_defects_") for n in names)
    assert "no_defects_radial.png" in names


@pytest.mark.parametrize("name", ["defects_clouds.png", "no_defects_clouds.png", "defects_brushed.png", "no_defects_brushed.png"])
def test_api_labels_examples_of_each_class(served, name):
    from gradio_client import Client, handle_file

    url, classifier = served
    label, overlay, verdict = Client(url, verbose=False).predict(handle_file(str(EXAMPLES / name)), api_name="/predict")
    truth = name.split("_")[0] if name.startswith("defects") else "no_defects"
    assert label["label"] == truth, (name, label)
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(confidences) == {"defects", "no_defects"}
    assert confidences["defects"] + confidences["no_defects"] == pytest.approx(1.0, abs=1e-6)
    assert Path(overlay).is_file() and truth in verdict


def test_api_rejects_a_non_image_with_a_clear_message(served, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = served
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(Exception, match="not a readable image|corrupt|cannot identify"):
        Client(url, verbose=False).predict(handle_file(str(bad)), api_name="/predict")
