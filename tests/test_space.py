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
    with pytest.raises(Exception, match="not a readable image|corrupt|cannot identify") as err:
        Client(url, verbose=False).predict(handle_file(str(bad)), api_name="/predict")
    assert "notes.png" in str(err.value) and "/tmp" not in str(err.value) and "gradio" not in str(err.value).lower()


def test_batch_errors_name_the_uploaded_file_not_a_server_path_or_a_python_object(served, tmp_path):
    import csv

    from gradio_client import Client, handle_file

    url, _ = served
    bad = tmp_path / "=cmd.png"
    bad.write_text("this is not an image")
    _, csv_path = Client(url, verbose=False).predict([handle_file(str(bad))], api_name="/predict_batch")
    (row,) = list(csv.DictReader(open(csv_path)))
    assert row["file"] == "'=cmd.png" and row["error"].startswith("'=cmd.png is not a readable image")
    assert "cmd.png" in row["error"] and "/tmp" not in row["error"] and " object at 0x" not in row["error"]


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
    assert rows[-1]["error"].startswith("more.zip/inner/broken.png is not a readable image") and not rows[-1]["p_defects"]
    assert " object at 0x" not in rows[-1]["error"]
    from defect_inference import read_image

    for row, path in zip(rows, [EXAMPLES / n for n in names] + [EXAMPLES / "defects_brushed.png"]):
        expected = classifier.predict([read_image(path)])[0]
        assert float(row["p_defects"]) == pytest.approx(expected.p_defects, abs=1e-5)
        assert row["label"] == expected.label
    assert len(table["data"]) == 4


def _broken_zip(path):
    """A zip whose members fail in every way an archive can: stored bytes that no longer match
    their CRC, an encrypted member, an unknown compression method, a member that inflates beyond
    the per-member limit; plus one good image."""
    import zipfile

    from space.app import MAX_ZIP_MEMBER_BYTES

    with zipfile.ZipFile(path, "w") as z:
        z.write(EXAMPLES / "defects_brushed.png", "good.png")
        z.writestr("crc.png", (EXAMPLES / "defects_clouds.png").read_bytes())
        z.writestr("locked.png", b"x" * 100)
        z.writestr("method.png", b"y" * 100)
        z.writestr(zipfile.ZipInfo("zeros.png"), bytes(MAX_ZIP_MEMBER_BYTES + 1), compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        crc, method = z.getinfo("crc.png"), z.getinfo("method.png")
    data[crc.header_offset + 30 + len(crc.filename) + 100] ^= 0xFF  # a flipped byte of stored data
    entry = data.rindex(b"PK\x01\x02", 0, data.rindex(b"method.png"))  # its central-directory record
    data[entry + 10 : entry + 12] = (42).to_bytes(2, "little")  # no such method
    entry = data.rindex(b"PK\x01\x02", 0, data.rindex(b"locked.png"))
    data[entry + 8] |= 0x1  # the encrypted flag: a reader asks for a password
    path.write_bytes(bytes(data))
    return path


def test_every_archive_problem_is_a_row_and_only_zip_names_are_archives(served, tmp_path):
    import csv

    from gradio_client import Client, handle_file

    url, classifier = served
    archive = _broken_zip(tmp_path / "batch.zip")
    assert archive.stat().st_size < 2_000_000
    disguised = tmp_path / "photo.png"  # an image with a zip appended stays an image
    disguised.write_bytes((EXAMPLES / "defects_clouds.png").read_bytes() + archive.read_bytes())
    _, csv_path = Client(url, verbose=False).predict([handle_file(str(archive)), handle_file(str(disguised))], api_name="/predict_batch")
    rows = {r["file"]: r for r in csv.DictReader(open(csv_path))}
    assert list(rows) == [f"batch.zip/{n}" for n in ("good.png", "crc.png", "locked.png", "method.png", "zeros.png")] + ["photo.png"]
    assert rows["batch.zip/good.png"]["p_defects"] and not rows["batch.zip/good.png"]["error"]
    assert "Bad CRC" in rows["batch.zip/crc.png"]["error"]
    assert "unencrypted" in rows["batch.zip/locked.png"]["error"]
    assert "compression" in rows["batch.zip/method.png"]["error"]
    assert "inflates to" in rows["batch.zip/zeros.png"]["error"]
    assert all(not rows[n]["p_defects"] for n in list(rows)[1:5])
    from defect_inference import read_image

    expected = classifier.predict([read_image(EXAMPLES / "defects_clouds.png")])[0].p_defects
    assert float(rows["photo.png"]["p_defects"]) == pytest.approx(expected, abs=1e-5)


def test_zip_members_are_read_only_when_their_turn_comes(tmp_path):
    from space.app import expand_uploads

    items = expand_uploads([str(_broken_zip(tmp_path / "batch.zip"))])
    assert len(items) == 5 and all(callable(source) for _, source in items)
    assert items[0][1]() == (EXAMPLES / "defects_brushed.png").read_bytes()


def test_a_batch_of_zips_over_the_inflated_budget_is_refused_before_reading(tmp_path, monkeypatch):
    import zipfile

    import gradio as gr

    from space import app

    image = (EXAMPLES / "defects_brushed.png").read_bytes()
    with zipfile.ZipFile(tmp_path / "three.zip", "w") as z:
        for n in range(3):
            z.writestr(f"{n}.png", image)
    monkeypatch.setattr(app, "MAX_BATCH_INFLATED_BYTES", 1.5 * 3 * len(image))
    assert len(app.expand_uploads([str(tmp_path / "three.zip")])) == 3
    with pytest.raises(gr.Error, match="inflate to .* GiB of images; one batch takes at most"):
        app.expand_uploads([str(tmp_path / "three.zip"), str(tmp_path / "three.zip")])


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


def test_an_image_wider_than_webp_allows_gets_an_overlay_at_display_size(served, tmp_path):
    """WebP, the overlay's format, stops at 16,383 px a side; the overlay is drawn at display size."""
    from gradio_client import Client
    from PIL import Image

    from space.app import DISPLAY_SIDE

    url, _ = served
    wide = tmp_path / "wide.png"
    Image.new("L", (17000, 300), 120).save(wide)
    label, overlay, verdict = _upload(Client(url, verbose=False), wide)
    assert label["label"] in ("defects", "no_defects") and "P(defects)" in verdict
    assert Image.open(overlay).size == (DISPLAY_SIDE, round(300 * DISPLAY_SIDE / 17000))


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


def test_sigterm_stops_the_space_and_removes_its_files(trained, tmp_path):
    """Spaces and containers stop the app with SIGTERM: it exits cleanly and leaves no files."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from gradio_client import Client

    from tests.conftest import _free_port

    out, _ = trained
    port, scratch = _free_port(), tmp_path / "tmp"
    scratch.mkdir()
    env = {
        **os.environ, "MODEL_ID": str(out / "model"), "GRADIO_SERVER_PORT": str(port), "TMPDIR": str(scratch),
        "GRADIO_TEMP_DIR": str(scratch / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False",
    }
    app = subprocess.Popen([sys.executable, "space/app.py"], cwd=Path(__file__).resolve().parents[1], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert app.poll() is None and time.time() < deadline, app.stderr.read() if app.poll() is not None else "no answer"
                time.sleep(1)
        label, _, _ = _upload(Client(f"http://127.0.0.1:{port}/", verbose=False), EXAMPLES / "defects_clouds.png")
        assert label["label"] in ("defects", "no_defects")
        assert list(scratch.glob("defect_space_*"))  # its own files exist while it runs
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=60) == 0
    finally:
        app.kill()
    assert not list(scratch.glob("defect_space_*"))


def test_an_upload_over_the_size_limit_is_refused_and_the_space_keeps_serving(served, tmp_path):
    import httpx
    from gradio_client import Client

    from space.app import MAX_UPLOAD

    url, _ = served
    big = tmp_path / "big.png"
    with open(big, "wb") as f:  # sparse: the limit is on the bytes sent, not on what they hold
        f.truncate(int(MAX_UPLOAD.removesuffix("mb")) * 1024 * 1024 + 1)
    with open(big, "rb") as f:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", f, "image/png")}, timeout=300)
    assert response.status_code == 413 and "400" in response.text.lower(), response.text[:500]
    label, _, _ = _upload(Client(url, verbose=False), EXAMPLES / "defects_clouds.png")
    assert label["label"] == "defects"
