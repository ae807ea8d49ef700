"""The preview page: pure rendering (escaped, deterministic, self-contained), and the page `dvc repro`
writes, opened from a file:// URL in a real headless Chromium (Debian's `chromium` package)."""
import base64
import io
import os
import re
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from vlprep.products.preview import (Preview, PreviewRow, RejectSample, TargetSample, data_uri, render_preview,
                            sample_positions)


def png(color=(200, 30, 30), size=(20, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def tiny_preview(question="What is <b>this</b> & that?") -> Preview:
    row = PreviewRow(3, [png(), png((0, 0, 200))], question, {"A": "x<y", "B": "z"}, "B", "z", "ds", 7,
                     "<image><image>Question: ...\n</think>", {"prompt_tokens": 12, "image_tokens": 8, "total": 20})
    rejects = [RejectSample("hf_bytes", "train", "no_image", "no images", 2,
                            [{"source": "a.parquet", "row": 1, "dataset_name": None, "dataset_index": None,
                              "detail": "<script>alert(1)</script>"}])]
    return Preview("t", [TargetSample("train", "verl", "data/verl/train.parquet", 10, [row])], rejects)


def test_text_is_escaped_and_the_page_is_self_contained():
    page = render_preview(tiny_preview())
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "What is &lt;b&gt;this&lt;/b&gt; &amp; that?" in page
    assert page.count('<img class="qimg"') == 2
    # no URL but data: URIs, and the CSP forbids fetching anything else
    assert not re.search(r"(src|href)=\"(?!data:|#)", page)
    assert "default-src 'none'" in page
    assert render_preview(tiny_preview()) == page


def test_images_that_browsers_cannot_show_become_png():
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "TIFF")
    assert data_uri(out.getvalue()).startswith("data:image/png;base64,")
    assert data_uri(png()) == "data:image/png;base64," + base64.b64encode(png()).decode()  # small: as it is


def test_large_images_become_thumbnails():
    out = io.BytesIO()
    Image.new("RGB", (2000, 1000), (10, 200, 10)).save(out, "JPEG")
    uri = data_uri(out.getvalue())
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        assert im.size == (384, 192)
    assert data_uri(out.getvalue()) == uri


def test_samples_are_seeded_per_section():
    a = sample_positions(100, 5, 0, "verl", "train")
    assert a == sample_positions(100, 5, 0, "verl", "train") and a == sorted(a) and len(set(a)) == 5
    assert a != sample_positions(100, 5, 1, "verl", "train")
    assert sample_positions(3, 5, 0, "x") == [0, 1, 2]


# --- the page `dvc repro` writes, in a real browser -----------------------------------------------


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: CI must install it (see .ci/run)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def run_chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


def expected_counts(repo) -> tuple[int, int, int]:
    """Rows, images and reject rows the page must show, from the outputs and params themselves."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    p = params["preview"]
    rows = images = rejects = 0
    for split in params["inputs"]:
        built = [t for t, splits in params["targets"].items() if split in splits]
        for target in built:
            table = pq.read_table(repo / "data" / target / split, columns=["images"])
            picked = sample_positions(table.num_rows, p["rows_per_split"], p["seed"], target, split)
            per_row = [len(x) for x in table.column("images").to_pylist()]
            rows += len(picked)
            images += sum(per_row[i] for i in picked)
        for stage in ["hf_bytes", *built]:
            reasons = pq.read_table(repo / "data/rejects" / stage / f"{split}.parquet").column("reason").to_pylist()
            rejects += sum(min(reasons.count(r), p["rejects_per_reason"]) for r in set(reasons))
    return rows, images, rejects


def test_preview_renders_in_headless_chromium(repro_repo, tmp_path):
    page = repro_repo / "data/preview/index.html"
    url = page.resolve().as_uri()
    assert url.startswith("file://")
    rows, images, rejects = expected_counts(repro_repo)
    assert rows > 0 and images > rows and rejects > 0

    dom = run_chromium(tmp_path, "--dump-dom", url).stdout
    assert len(re.findall(r"<img\b", dom)) == images
    assert len(re.findall(r'<article class="row"', dom)) == rows
    assert len(re.findall(r'<tr class="reject"', dom)) == rejects
    assert "Correct answer:" in dom and "prompt_tokens" in dom and "total_tokens" in dom

    shot = tmp_path / "preview.png"
    run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", url)
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 500  # text and photos, not a blank or error page
    # the page's images were decoded: their pixels are not the page's background
    assert max(count for count, _ in colors) < 0.9 * 1280 * 2000
