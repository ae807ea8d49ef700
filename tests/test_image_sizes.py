"""Sizes the model cannot tokenise: `ModelProfile.unfit` (src/vlprep/prompting/profiles.py) names them, the
image pre-flight in hf_bytes (src/vlprep/io/preflight.py) drops them with that reason or, with
`hf_bytes.unfit_image: pad`, pads them to `ModelProfile.fitting_size` on the background colour.

What "cannot tokenise" means is checked against the trainers' own resize code in the trainer venv
(marked `trainers`): transformers' smart_resize (every processor) and qwen_vl_utils' (what verl and
ms-swift load images with). Every size the profile lets through is resized alike by both, to the
profile's size, so the image-token count in the data is right for every trainer; every size on which
they disagree or fail is one the profile refuses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from builders import row, write_raw
from conftest import REPO
from test_image_preflight import decoded, encode, exif_bytes, params, photo, ramp16
from test_profiles import EDGE_SIZES, random_sizes
from vlprep.core.metrics import Rejected, StageStats
from vlprep.core.params import load_section
from vlprep.core.schema import RAW_REQUIRED
from vlprep.ingest.hf_bytes import convert_row, convert_unit, image_limits
from vlprep.io.preflight import Preflight, preflight_image
from vlprep.io.sources import plan_units
from vlprep.prompting.profiles import PROFILES, get_profile

QWEN25, QWEN3 = PROFILES["qwen2_5_vl"], PROFILES["qwen3_vl"]
SQUEEZING = get_profile("qwen2_5_vl", max_pixels=128 * 28 * 28)  # a lowered max_pixels, as users set it


def test_unfit_names_the_reason_per_profile():
    cases = [  # (profile, width, height, reason)
        (QWEN25, 1, 250, "image_aspect_ratio"), (QWEN25, 250, 1, "image_aspect_ratio"),
        (QWEN25, 15, 3001, "image_aspect_ratio"), (QWEN25, 15, 3000, None),  # exactly 200: taken
        (QWEN25, 14, 300, "image_side_below_patch"), (QWEN25, 15, 300, None),  # rounds to 0 / 1 patch of 28
        (QWEN3, 16, 300, "image_side_below_patch"), (QWEN3, 17, 300, None),  # of 32
        (QWEN25, 5, 5, "image_side_below_patch"), (QWEN25, 20, 20, None), (QWEN25, 640, 480, None),
        (QWEN25, 4500, 30, None), (SQUEEZING, 4500, 30, "image_side_below_patch"),  # max_pixels squeezes 30 px to 0
        (SQUEEZING, 4500, 40, None), (SQUEEZING, 300, 20, None),  # within max_pixels: no squeeze
    ]
    for profile, w, h, reason in cases:
        got = profile.unfit(w, h)
        assert (got and got[0]) == reason, (profile.name, w, h, got)
    assert QWEN25.unfit(1, 250)[1] == "1x250: aspect ratio 250 > 200 (qwen2_5_vl)"
    assert QWEN25.unfit(14, 300)[1] == "14x300: its 14-px side rounds to no 28-px patch (qwen2_5_vl)"
    assert "max_pixels 100352 squeezes its 30-px side" in SQUEEZING.unfit(4500, 30)[1]


def size_grid() -> list[tuple[int, int]]:
    thin = [(w, h) for w in (1, 2, 5, 9, 13, 14, 15, 16, 17, 27, 28, 31, 33, 40) for h in (30, 299, 1000, 3001, 6000)]
    return sorted(set(EDGE_SIZES + thin + [(h, w) for w, h in thin] + random_sizes(seed=21, n=60, largest=6000)))


@pytest.mark.parametrize("profile", [QWEN25, QWEN3, SQUEEZING], ids=lambda p: f"{p.name}-{p.max_pixels}")
def test_the_padded_canvas_fits_and_is_the_smallest(profile):
    for w, h in size_grid():
        if profile.unfit(w, h) is None:
            assert profile.fitting_size(w, h) == (w, h)
            continue
        fw, fh = profile.fitting_size(w, h)
        assert fw >= w and fh >= h and profile.unfit(fw, fh) is None, (w, h, fw, fh)
        f = profile.factor
        # Every side at least one patch if it rounded to none; one side grown beyond that, and minimally.
        grown_w, grown_h = fw > max(w, f if round(w / f) == 0 else w), fh > max(h, f if round(h / f) == 0 else h)
        assert not (grown_w and grown_h)
        if grown_w:
            assert profile.unfit(fw - 1, fh) is not None
        if grown_h:
            assert profile.unfit(fw, fh - 1) is not None


# --- The pre-flight: dropped with the reason, or padded --------------------------------------------------

def strip(width: int, height: int, mode: str = "L") -> Image.Image:
    """An ECG-like strip: varied along its length, a gradient across."""
    return photo(width, height, "RGB" if mode == "RGB" else "L", seed=width * 7 + height)


UNFIT = {  # name -> (image bytes, reason)
    "ecg_strip_1x250": (encode(strip(1, 250)), "image_aspect_ratio"),
    "bar_250x1_rgb": (encode(strip(250, 1, "RGB")), "image_aspect_ratio"),
    "strip_3x700_jpeg": (encode(strip(700, 3, "RGB"), "JPEG", quality=95), "image_aspect_ratio"),
    "scale_bar_300x10": (encode(strip(300, 10, "RGB")), "image_side_below_patch"),
    "tiny_9x12": (encode(photo(9, 12)), "image_side_below_patch"),
}
FIT = {"photo_48x32": encode(photo()), "bar_300x20": encode(strip(300, 20, "RGB")),
       "grey_jpeg_64x40": encode(photo(64, 40, "L"), "JPEG", quality=90)}


def run_sizes(tmp_path, images: dict[str, bytes], shape=QWEN25, **overrides):
    path = write_raw(tmp_path / "raw.parquet", [row(images=[v], dataset_name=k, dataset_index=i)
                                                for i, (k, v) in enumerate(images.items())], row_group_size=4)
    names, rows, stats = list(images), {}, StageStats()
    for unit in plan_units([path], RAW_REQUIRED):
        table, unit_stats = convert_unit(unit, params(**overrides), shape=shape)
        rows.update({r["dataset_name"]: r for r in table.to_pylist()})
        stats.merge(unit_stats)
    return rows, {names[r["dataset_index"]]: r for r in stats.rejects}, stats


def test_unfit_sizes_are_dropped_with_their_reason_and_the_rest_pass_untouched(tmp_path):
    rows, rejects, stats = run_sizes(tmp_path, {**{k: v for k, (v, _) in UNFIT.items()}, **FIT})
    assert {k: r["reason"] for k, r in rejects.items()} == {k: reason for k, (_, reason) in UNFIT.items()}
    assert rejects["ecg_strip_1x250"]["detail"] == "1x250: aspect ratio 250 > 200 (qwen2_5_vl)"
    assert set(rows) == set(FIT) and all(rows[k]["images"][0]["bytes"] == v for k, v in FIT.items())
    assert stats.dropped == {"image_aspect_ratio": 3, "image_side_below_patch": 2}
    # bad_image: drop_image drops the image alone, counted per reason
    _, rejects, stats = run_sizes(tmp_path / "2", {k: v for k, (v, _) in UNFIT.items()}, bad_image="drop_image",
                                  strict_image=False)
    assert rejects == {} and stats.counts["images_dropped_image_aspect_ratio"] == 3
    assert stats.counts["images_dropped_image_side_below_patch"] == 2
    # without a shape (a caller that passes no model), sizes are not checked
    rows, rejects, _ = run_sizes(tmp_path / "3", {k: v for k, (v, _) in UNFIT.items()}, shape=None)
    assert rejects == {} and len(rows) == len(UNFIT)


def test_padding_centres_the_image_on_the_background(tmp_path):
    images = {**{k: v for k, (v, _) in UNFIT.items()}, **FIT}
    rows, rejects, stats = run_sizes(tmp_path, images, unfit_image="pad", background=[250, 250, 250])
    assert rejects == {} and set(rows) == set(images)
    assert stats.counts["images_padded"] == len(UNFIT) and stats.counts["images_rewritten"] == len(UNFIT)
    for name, (source, _) in UNFIT.items():
        src = decoded(source)
        out = decoded(rows[name]["images"][0]["bytes"])
        assert out.size == QWEN25.fitting_size(*src.size) and QWEN25.unfit(*out.size) is None, name
        assert out.mode == ("L" if src.mode == "L" else "RGB") and out.info.keys() <= {"dpi"}, name
        x, y = (out.width - src.width) // 2, (out.height - src.height) // 2
        pixels = np.asarray(out).copy()
        assert np.array_equal(pixels[y:y + src.height, x:x + src.width], np.asarray(src)), name
        pixels[y:y + src.height, x:x + src.width] = 250
        assert (pixels == 250).all(), name  # everything else is the background
    assert all(rows[k]["images"][0]["bytes"] == v for k, v in FIT.items())  # fitting images stay as they are


def test_padding_comes_after_the_other_fixes(tmp_path):
    """An EXIF-rotated thin photo is padded upright; a 16-bit strip is rescaled, then padded on grey;
    a transparent one is composited, then padded, on the same background."""
    rotated = encode(strip(300, 10, "RGB"), "JPEG", quality=95, exif=exif_bytes(6))  # stored 300x10, shown 10x300
    strip16 = encode(Image.fromarray(ramp16(250, 1, 4095).T.copy()))  # 1x250, 12-bit values
    rgba = Image.merge("RGBA", (*strip(250, 1, "RGB").split(), Image.new("L", (250, 1), 0)))
    rows, _, stats = run_sizes(tmp_path, {"rotated": rotated, "strip16": strip16, "rgba": encode(rgba)},
                               unfit_image="pad")
    out = decoded(rows["rotated"]["images"][0]["bytes"])
    upright = ImageOps.exif_transpose(decoded(rotated)).convert("RGB")
    assert upright.size == (10, 300) and out.size == (28, 300)
    assert np.array_equal(np.asarray(out)[:, 9:19], np.asarray(upright))
    g16 = np.asarray(decoded(rows["strip16"]["images"][0]["bytes"]))
    assert g16.shape == (250, 28) and len(np.unique(g16[:, 13])) >= 200 and (g16[:, :13] == 255).all()
    assert (np.asarray(decoded(rows["rgba"]["images"][0]["bytes"])) == 255).all()  # all transparent, on white
    assert (stats.counts["images_exif_transposed"], stats.counts["images_high_bit_depth_rescaled"],
            stats.counts["images_alpha_composited"], stats.counts["images_padded"]) == (1, 1, 1, 3)


def test_no_padding_past_max_image_pixels():
    """A 1 x 20000 strip needs a 100 x 20000 canvas: above max_image_pixels, so it is dropped, and why."""
    long_strip = encode(Image.new("L", (1, 20_000), 9))
    with pytest.raises(Rejected) as e:
        preflight_image(long_strip, None, Preflight(shape=QWEN25, unfit_image="pad"), max_pixels=1_000_000)
    assert e.value.reason == "image_aspect_ratio" and "no padded size within max_image_pixels" in e.value.detail
    assert preflight_image(long_strip, None, Preflight(shape=QWEN25, unfit_image="pad")).width == 100


def test_decoded_inputs_are_checked_and_padded_too():
    ecg = np.asarray(strip(1, 250))
    with pytest.raises(Rejected) as e:
        convert_row(row(images=[ecg]), params(), None, StageStats(), QWEN25)
    assert e.value.reason == "image_aspect_ratio"
    stats = StageStats()
    out = convert_row(row(images=[ecg]), params(unfit_image="pad"), None, stats, QWEN25)
    assert decoded(out["images"][0]["bytes"]).size == (28, 250) and stats.counts["images_padded"] == 1


def test_the_stage_checks_against_model_profile_and_max_pixels():
    model = load_section("model", REPO / "params.yaml")
    assert image_limits(model) == get_profile(model.profile, max_pixels=model.max_pixels)
    q3 = image_limits(model.model_copy(update={"profile": "qwen3_vl", "max_pixels": 100_000}))
    assert (q3.factor, q3.max_pixels, q3.min_pixels) == (32, 100_000, QWEN3.min_pixels)


# --- Against the trainers' own resize code ---------------------------------------------------------------

RESIZE_SCRIPT = r'''
import json, sys
from qwen_vl_utils.vision_process import smart_resize as qwen_vl_utils_resize
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as transformers_resize

def run(fn, *args):
    try:
        h, w = fn(*args)
        return [h, w] if h > 0 and w > 0 else "zero side"  # PIL cannot resize to it: fetch_image fails
    except ValueError as e:
        return "refused"

out = []
for w, h, factor, lo, hi in json.loads(sys.argv[1]):
    out.append([run(transformers_resize, h, w, factor, lo, hi), run(qwen_vl_utils_resize, h, w, factor, lo, hi)])
print(json.dumps(out))
'''


@pytest.mark.trainers
def test_sizes_the_profile_takes_are_resized_alike_by_every_trainer():
    """transformers' smart_resize (TRL, LLaMA-Factory, the processors verl and ms-swift call) and
    qwen_vl_utils' (verl's and ms-swift's image loading, before the processor), in verl's venv."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "compat"))
    from conftest_helpers import trainer_python

    profiles = [QWEN25, QWEN3, SQUEEZING, get_profile("qwen3_vl", max_pixels=64 * 32 * 32)]
    cases = [(w, h, p) for p in profiles for w, h in size_grid()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(trainer_python("trainers")), "-c", RESIZE_SCRIPT,
                           json.dumps([[w, h, p.factor, p.min_pixels, p.max_pixels] for w, h, p in cases])],
                          capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-5000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    disagreements = 0
    for (w, h, p), (theirs, qvu) in zip(cases, results):
        if p.unfit(w, h) is None:
            assert theirs == qvu == list(p.processor_size(w, h))[::-1], (p.name, p.max_pixels, w, h, theirs, qvu)
            continue
        disagreements += theirs != qvu or theirs == "refused"
        if p.unfit(w, h)[0] == "image_aspect_ratio":
            assert theirs == qvu == "refused", (p.name, w, h)
    assert disagreements > 100  # the check is not idle: most refused sizes do break a trainer
