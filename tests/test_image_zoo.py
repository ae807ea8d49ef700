"""The image zoo through the real pipeline: `dvc repro` in a real git repo (a copy of the repro'd sample
project, its train split swapped for the zoo), then every product read the way the trainers read it.

The zoo holds what medical figures arrive as: a 16-bit greyscale PNG (`I;16`), an EXIF-rotated JPEG,
RGBA / palette / LA images with transparent pixels, a CMYK JPEG, a 1-bit PNG, a blank image, an extreme
strip (1 x 250, an ECG lead), a thin scale bar (1000 x 10), a tiny image (9 x 12), and ordinary RGB /
greyscale controls. Two runs: the shipped params (sizes the model cannot take dropped, blank images
kept and counted), then `hf_bytes.unfit_image: pad` with `blank_image: drop`.

What a trainer sees of an image is what its loader decodes from the bytes, `convert("RGB")` (what
every trainer's loader and processor does), then the processor's resize: checked here per kept image
against an expectation made by hand (pixels, orientation, background), and the token counts every
target wrote against transformers' own Qwen2VLImageProcessor run on the output bytes."""
from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from builders import row, write_raw
from conftest import run, set_params
from test_image_preflight import cmyk_jpeg, decoded, encode, exif_bytes, palette_with_transparent_index, photo, ramp16
from test_profiles import load_processor
from vlprep.prompting.profiles import PROFILES, PreResize

PROFILE = PROFILES["qwen2_5_vl"]  # params.yaml's model.profile


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    unfit: str | None = None  # the reason the shipped params drop it for (padded with unfit_image: pad)


def upright_figure() -> Image.Image:
    """64 x 48, grey, a white square top left and a black bar bottom right: which way is up shows."""
    pixels = np.full((48, 64, 3), 128, np.uint8)
    pixels[4:20, 4:20] = 255
    pixels[38:44, 30:60] = 0
    return Image.fromarray(pixels)


def rgba_half_transparent() -> Image.Image:
    """A photo whose left 20 columns are fully transparent (their hidden colour: red)."""
    rgb = np.asarray(photo(60, 40)).copy()
    rgb[:, :20] = (255, 0, 0)
    alpha = np.full((40, 60), 255, np.uint8)
    alpha[:, :20] = 0
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def la_half_transparent() -> Image.Image:
    grey = np.asarray(photo(30, 28, "L"))
    alpha = np.where(np.arange(30) < 10, 0, 255)[None, :].repeat(28, 0).astype(np.uint8)
    return Image.fromarray(np.dstack([grey, alpha]), "LA")


def zoo() -> list[Case]:
    stored = upright_figure().transpose(Image.Transpose.ROTATE_90)  # what the camera wrote; EXIF 6 turns it back
    return [
        Case("rgb_png", encode(photo(96, 64))),
        Case("grey_jpeg", encode(photo(80, 60, "L"), "JPEG", quality=90)),
        Case("ramp16_png", encode(Image.fromarray(ramp16(512, 40)))),
        Case("exif6_jpeg", encode(stored, "JPEG", quality=95, exif=exif_bytes(6))),
        Case("rgba_png", encode(rgba_half_transparent())),
        Case("p_transparent_png", encode(palette_with_transparent_index())),
        Case("la_png", encode(la_half_transparent())),
        Case("cmyk_jpeg", cmyk_jpeg()),
        Case("bilevel_png", encode(photo(48, 32, "L").point(lambda v: 255 * (v > 128)).convert("1"))),
        Case("blank_png", encode(Image.new("RGB", (40, 30), (12, 34, 56)))),
        Case("ecg_strip_1x250", encode(photo(1, 250, "L")), "image_aspect_ratio"),
        Case("scale_bar_1000x10", encode(photo(1000, 10)), "image_side_below_patch"),  # verl: 36 tokens, TRL: 20
        Case("tiny_9x12", encode(photo(9, 12)), "image_side_below_patch"),
    ]


ZOO = zoo()
BY_NAME = {c.name: c for c in ZOO}


def build_zoo(repro_repo, repo, **params):
    """A copy of the repro'd sample project at `repo` with the zoo as its train split (one row per case,
    one image each) and `params` set (dotted keys), after `dvc repro`. (tests/test_trainer_compat.py
    hands one to verl's real loader.)"""
    shutil.copytree(repro_repo, repo, symlinks=True)
    write_raw(repo / "zoo/train/part-0.parquet",
              [row(images=[c.data], dataset_name=c.name, dataset_index=i, hash=c.name) for i, c in enumerate(ZOO)])
    set_params(repo, **{"inputs.train": "zoo/train", "input_data.train": "zoo/train", **params})
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "the image zoo"], repo)
    run(["dvc", "repro"], repo)
    return repo


@pytest.fixture(scope="module")
def zoo_repo(repro_repo, tmp_path_factory):
    """The zoo with the shipped params, LLaMA-Factory switched on too."""
    return build_zoo(repro_repo, tmp_path_factory.mktemp("zoo") / "project", **{"targets.llamafactory": ["train"]})


@pytest.fixture(scope="module")
def padded_repo(zoo_repo, tmp_path_factory):
    """The same, then `dvc repro` with hf_bytes.unfit_image: pad and blank_image: drop."""
    repo = tmp_path_factory.mktemp("zoo_padded") / "project"
    shutil.copytree(zoo_repo, repo, symlinks=True)
    set_params(repo, **{"hf_bytes.unfit_image": "pad", "hf_bytes.blank_image": "drop"})
    run(["dvc", "repro"], repo)
    return repo


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    """transformers' own image processor from Qwen2.5-VL's published config (no weights, PIL backend)."""
    return load_processor(tmp_path_factory.mktemp("processor"), "qwen2_5_vl")


def hf_bytes_images(repo) -> dict[str, bytes]:
    ds = datasets.load_from_disk(str(repo / "data/hf_bytes/train"))
    return {r["dataset_name"]: r["images"][0]["bytes"] for r in ds}


def metrics(repo, stage="hf_bytes"):
    return json.loads((repo / f"metrics/{stage}/train.json").read_text())


def rejects(repo) -> dict[str, dict]:
    return {r["dataset_name"]: r for r in pq.read_table(repo / "data/rejects/hf_bytes/train.parquet").to_pylist()}


def trainer_view(data: bytes) -> np.ndarray:
    """What a trainer's loader hands its processor: the decoded image, convert("RGB")."""
    image = Image.open(io.BytesIO(data))
    assert image.getexif().get(0x0112) in (None, 1)  # nothing left for a loader to misread
    return np.asarray(image.convert("RGB"))


def tokens(processor, image: Image.Image) -> int:
    grid = processor(images=[image.convert("RGB")], return_tensors="np")["image_grid_thw"][0]
    return int(np.prod(grid)) // processor.merge_size**2


def check_pixels(name: str, data: bytes) -> None:
    """A kept image against the expectation made for its case by hand."""
    out, rgb = decoded(data), trainer_view(data)
    source = decoded(BY_NAME[name].data)
    assert out.mode in ("L", "RGB"), name
    if name != "blank_png":
        assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 1, f"{name} is blank to the trainer"
    if name in ("rgb_png", "grey_jpeg"):
        assert data == BY_NAME[name].data  # ordinary images pass byte for byte
    elif name == "ramp16_png":  # not clipped to white: the 16-bit ramp keeps its grey levels, in order
        grey = np.asarray(out)
        assert len(np.unique(grey)) >= 200 and grey.min() == 0 and grey.max() == 255
        assert (np.diff(grey.astype(int), axis=1) >= 0).all()
        assert (np.asarray(source.convert("RGB")) == 255).mean() > 0.9  # what convert("RGB") alone shows
    elif name == "exif6_jpeg":  # upright: as upright_figure() was drawn, within JPEG's error
        assert out.size == (64, 48)
        assert np.abs(rgb.astype(int) - np.asarray(upright_figure()).astype(int)).mean() < 4
        assert rgb[6:18, 6:18].min() > 200 and rgb[39:43, 32:58].max() < 60
    elif name == "rgba_png":  # transparent pixels are the white background, not their hidden red
        assert (rgb[:, :20] == 255).all() and np.array_equal(rgb[:, 20:], np.asarray(source.convert("RGB"))[:, 20:])
    elif name == "p_transparent_png":
        assert (rgb[:8] == 255).all() and np.array_equal(rgb[8:], np.asarray(source.convert("RGB"))[8:])
    elif name == "la_png":
        grey = np.asarray(out)
        assert out.mode == "L" and (grey[:, :10] == 255).all()
        assert np.array_equal(grey[:, 10:], np.asarray(la_half_transparent().getchannel("L"))[:, 10:])
    elif name == "cmyk_jpeg":
        assert out.mode == "RGB" and np.array_equal(rgb, np.asarray(source.convert("RGB")))
    elif name == "bilevel_png":
        assert out.mode == "L" and set(np.unique(np.asarray(out))) == {0, 255}
        assert np.array_equal(np.asarray(out), np.asarray(source.convert("L")))
    elif name == "blank_png":
        assert (rgb == (12, 34, 56)).all()
    else:  # a padded unfit size: the source centred on the white background, at a size the model takes
        assert out.size == PROFILE.fitting_size(*source.size) and PROFILE.unfit(*out.size) is None, name
        x, y = (out.width - source.width) // 2, (out.height - source.height) // 2
        inner = np.asarray(out.convert(source.mode))[y:y + source.height, x:x + source.width]
        assert np.array_equal(inner, np.asarray(source)), name
        assert (rgb == 255).sum() >= 3 * (out.width * out.height - source.width * source.height), name


def check_token_counts(repo, processor) -> None:
    """Every target's image tokens, image by image, equal the processor's own count on the bytes it wrote
    (LLaMA-Factory's after its pre-resize, which tests/test_profiles.py checks against its own code)."""
    images = hf_bytes_images(repo)
    want = {name: tokens(processor, decoded(data)) for name, data in images.items()}
    pre = PreResize()  # llamafactory.image_max_pixels / image_min_pixels as shipped
    want_lf = {name: tokens(processor, decoded(data).resize(pre.apply(*decoded(data).size)))
               for name, data in images.items()}
    verl = pq.read_table(repo / "data/verl/train").to_pylist()
    assert {r["extra_info"]["dataset_name"]: r["extra_info"]["image_tokens"] for r in verl} == want
    trl = pq.read_table(repo / "data/trl/train", columns=["dataset_name", "image_tokens"]).to_pylist()
    assert {r["dataset_name"]: r["image_tokens"] for r in trl} == want
    lf = pq.read_table(repo / "data/llamafactory/train", columns=["dataset_name", "image_tokens"]).to_pylist()
    assert {r["dataset_name"]: r["image_tokens"] for r in lf} == want_lf
    for target in ("verl", "trl", "llamafactory"):  # the targets drop nothing more: hf_bytes is the one check
        assert metrics(repo, target)["dropped"] == {}, target


def test_shipped_params_keep_every_fixable_image_right_and_drop_unfit_sizes(zoo_repo):
    images = hf_bytes_images(zoo_repo)
    unfit = {c.name: c.unfit for c in ZOO if c.unfit}
    assert set(images) == {c.name for c in ZOO} - set(unfit)
    for name, data in images.items():
        check_pixels(name, data)
    m = metrics(zoo_repo)
    assert m["dropped"] == {"image_aspect_ratio": 1, "image_side_below_patch": 2}
    assert {name: r["reason"] for name, r in rejects(zoo_repo).items()} == unfit
    assert rejects(zoo_repo)["ecg_strip_1x250"]["detail"] == "1x250: aspect ratio 250 > 200 (qwen2_5_vl)"
    assert rejects(zoo_repo)["tiny_9x12"]["detail"] == "9x12: its 9-px side rounds to no 28-px patch (qwen2_5_vl)"
    counts = {k: m.get(f"images_{k}", 0) for k in ("exif_transposed", "high_bit_depth_rescaled", "alpha_composited",
                                                   "mode_converted", "padded", "blank", "rewritten")}
    assert counts == {"exif_transposed": 1, "high_bit_depth_rescaled": 1, "alpha_composited": 3, "mode_converted": 2,
                      "padded": 0, "blank": 1, "rewritten": 7}


def test_shipped_params_token_counts_are_the_processors(zoo_repo, processor):
    check_token_counts(zoo_repo, processor)


def test_padding_keeps_unfit_sizes_and_blank_drop_names_its_reason(padded_repo):
    images = hf_bytes_images(padded_repo)
    assert set(images) == {c.name for c in ZOO} - {"blank_png"}
    for name, data in images.items():
        check_pixels(name, data)
    m = metrics(padded_repo)
    assert m["dropped"] == {"image_blank": 1} and m["images_padded"] == 3
    blank = rejects(padded_repo)
    assert set(blank) == {"blank_png"} and blank["blank_png"]["reason"] == "image_blank"
    assert "every pixel (12, 34, 56)" in blank["blank_png"]["detail"]


def test_padded_token_counts_are_the_processors(padded_repo, processor):
    check_token_counts(padded_repo, processor)
