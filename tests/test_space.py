"""The Space: its predict endpoint through gradio_client, against the app served on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "space" / "examples"


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
    assert label["label"] == truth, (name, label)  # the headline is the verdict at the stored threshold
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


def test_batch_endpoint_classifies_files_and_zips_and_reports_bad_ones(served, tmp_path):
    import csv
    import zipfile

    from gradio_client import Client, handle_file

    url, classifier = served
    names = ["defects_clouds.png", "no_defects_clouds.png"]
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(EXAMPLES / "defects_brushed.png", "inner/defects_brushed.png")
        z.writestr("inner/broken.png", b"not an image")
        z.writestr("inner/readme.txt", b"ignored: not an image name")
    files = [handle_file(str(EXAMPLES / n)) for n in names] + [handle_file(str(archive))]
    table, csv_path = Client(url, verbose=False).predict(files, api_name="/predict_batch")
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["file"] for r in rows] == names + ["more.zip/inner/defects_brushed.png", "more.zip/inner/broken.png"]
    assert rows[-1]["error"] and not rows[-1]["p_defects"]
    from defect_inference import read_image

    for row, path in zip(rows, [EXAMPLES / n for n in names] + [EXAMPLES / "defects_brushed.png"]):
        expected = classifier.predict([read_image(path)])[0]
        assert float(row["p_defects"]) == pytest.approx(expected.p_defects, abs=1e-5)
        assert row["label"] == expected.label
    assert len(table["data"]) == 4


def _upload(client, path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), api_name="/predict")


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("PIL.Image", fromlist=["Image"]).new("L", (1, 1), 128),
        lambda: __import__("PIL.Image", fromlist=["Image"]).fromarray(__import__("numpy").full((300, 200), 40000, "uint16")),
        lambda: __import__("PIL.Image", fromlist=["Image"]).new("RGBA", (700, 300), (90, 90, 90, 30)),
        lambda: __import__("PIL.Image", fromlist=["Image"]).new("CMYK", (64, 48), (0, 0, 0, 40)),
    ],
    ids=["1x1", "16-bit", "RGBA-wide", "CMYK"],
)
def test_odd_images_are_classified_and_boxes_stay_inside(served, tmp_path, make):
    from gradio_client import Client
    from PIL import Image

    url, _ = served
    image = make()
    path = tmp_path / ("odd.tiff" if image.mode == "CMYK" else "odd.png")
    image.save(path)
    label, overlay, verdict = _upload(Client(url, verbose=False), path)
    assert label["label"] in ("defects", "no_defects")
    shown = Image.open(overlay)
    assert shown.size == image.size  # the overlay (and any box) is in the original pixels


def test_huge_image_and_empty_submit_get_clear_errors_and_the_app_keeps_serving(served, tmp_path):
    from gradio_client import Client
    from PIL import Image

    url, _ = served
    client = Client(url, verbose=False)
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)
    with pytest.raises(Exception, match="megapixel limit"):
        _upload(client, huge)
    with pytest.raises(Exception, match="No image"):
        client.predict(None, api_name="/predict")
    label, _, _ = _upload(client, EXAMPLES / "defects_clouds.png")
    assert label["label"] in ("defects", "no_defects")


def test_twenty_concurrent_requests_all_answered_correctly(served):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    url, classifier = served
    from defect_inference import read_image

    names = sorted(p.name for p in EXAMPLES.glob("*.png"))
    expected = {n: classifier.predict([read_image(EXAMPLES / n)])[0] for n in names}

    def one(i):
        name = names[i % len(names)]
        label, _, _ = _upload(Client(url, verbose=False), EXAMPLES / name)
        return name, label

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one, range(20)))
    assert len(answers) == 20
    for name, label in answers:
        confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
        assert label["label"] == expected[name].label
        assert confidences["defects"] == pytest.approx(expected[name].p_defects, abs=1e-5)
