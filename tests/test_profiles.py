"""Model profiles (src/vlprep/prompting/profiles.py) count image tokens exactly as the processors do.

The reference is transformers' own image processor, loaded the way a trainer loads it
(AutoImageProcessor.from_pretrained on a directory holding the model's published
preprocessor_config.json: config values only, no weights, no hub) with its PIL backend, so no torch:
tokens = image_grid_thw.prod() // merge_size**2, on seeded random sizes, for every profile, exactly.
LLaMA-Factory's pre-resize is checked against LLaMA-Factory's own mm_plugin in its trainer venv
(marked `trainers`, like the other tests that run a real trainer)."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlprep.prompting import profiles
from vlprep.prompting.profiles import (DEFAULT_PROFILE, PROFILES, ImageShapeError, ModelProfile, PreResize, get_profile,
                                       image_tokens, smart_resize)

# The published preprocessor_config.json of each family (Qwen/Qwen2-VL-*, Qwen2.5-VL-*, Qwen3-VL-*),
# less the normalisation constants, which do not change any size.
PUBLISHED = {
    "qwen2_vl": {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2,
                 "temporal_patch_size": 2, "image_processor_type": "Qwen2VLImageProcessor"},
    "qwen2_5_vl": {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2,
                   "temporal_patch_size": 2, "image_processor_type": "Qwen2VLImageProcessor"},
    "qwen3_vl": {"size": {"shortest_edge": 65536, "longest_edge": 16777216}, "patch_size": 16, "merge_size": 2,
                 "temporal_patch_size": 2, "image_processor_type": "Qwen2VLImageProcessorFast"},
}

EDGE_SIZES = [(1, 1), (3, 3), (1, 200), (200, 1), (1, 201), (2, 401), (27, 29), (28, 28), (31, 33), (32, 32),
              (1000, 5), (5, 1000), (300, 27), (255, 257), (640, 480), (1023, 1), (1100, 900)]


def random_sizes(seed: int, n: int = 30, largest: int = 1100) -> list[tuple[int, int]]:
    """Log-uniform sides from 1 to `largest`, so tiny, thin and ordinary images all come up."""
    rng = np.random.default_rng(seed)
    sides = np.exp(rng.uniform(0, np.log(largest), size=(n, 2))).astype(int)
    return [(int(w), int(h)) for w, h in sides]


def load_processor(tmp_path: Path, name: str, **override):
    """The image processor as a trainer gets it: AutoImageProcessor from the model's config files."""
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    (directory / "preprocessor_config.json").write_text(json.dumps({**PUBLISHED[name], **override}))
    (directory / "config.json").write_text(json.dumps({"model_type": name}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(str(directory), backend="pil")


def processor_tokens(processor, width: int, height: int) -> int | None:
    """image_grid_thw.prod() // merge_size**2 for one width x height image; None where it refuses."""
    try:
        grid = processor(images=[Image.new("RGB", (width, height))], return_tensors="np")["image_grid_thw"][0]
    except ValueError as e:
        assert "aspect ratio" in str(e)
        return None
    return int(np.prod(grid)) // processor.merge_size**2


def profile_tokens(profile: ModelProfile, width: int, height: int) -> int | None:
    try:
        return profile.image_tokens(width, height)
    except ImageShapeError:
        return None


def test_the_profiles_carry_the_published_numbers():
    for name, config in PUBLISHED.items():
        p = PROFILES[name]
        size = config.get("size", {"shortest_edge": config.get("min_pixels"), "longest_edge": config.get("max_pixels")})
        assert (p.patch_size, p.merge_size) == (config["patch_size"], config["merge_size"])
        assert (p.min_pixels, p.max_pixels) == (size["shortest_edge"], size["longest_edge"])
        assert p.max_aspect_ratio == 200 and p.pre_resize is None
    assert PROFILES["qwen2_5_vl"].factor == 28 and PROFILES["qwen3_vl"].factor == 32


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_processor_loaded_from_the_published_config_is_the_profile(name, tmp_path):
    processor = load_processor(tmp_path, name)
    profile = PROFILES[name]
    assert type(processor).__name__ == "Qwen2VLImageProcessorPil"
    assert (processor.patch_size, processor.merge_size) == (profile.patch_size, profile.merge_size)
    assert (processor.size.shortest_edge, processor.size.longest_edge) == (profile.min_pixels, profile.max_pixels)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_image_tokens_equal_the_processor_grid_on_random_sizes(name, tmp_path):
    processor, profile = load_processor(tmp_path, name), PROFILES[name]
    sizes = EDGE_SIZES + random_sizes(seed=sorted(PUBLISHED).index(name))
    got = {size: profile_tokens(profile, *size) for size in sizes}
    want = {size: processor_tokens(processor, *size) for size in sizes}
    assert got == want
    assert any(v is None for v in want.values()) and any(v and v > 900 for v in want.values())  # refusals and big grids seen


# Limits a config may set (and trainers' min_pixels / max_pixels overrides): a small max_pixels puts
# large and thin images through the downscaling branch without processing megapixel arrays.
LIMITS = [(3136, 200_704), (65536, 300_000), (100, 50_000), (256 * 28 * 28, 1280 * 28 * 28)]


@pytest.mark.parametrize("limits", LIMITS, ids=lambda l: f"{l[0]}-{l[1]}")
@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl"])
def test_image_tokens_follow_overridden_limits(name, limits, tmp_path):
    lo, hi = limits
    override = {"size": {"shortest_edge": lo, "longest_edge": hi}}
    if "min_pixels" in PUBLISHED[name]:  # the processor lets these keys win over `size`
        override.update(min_pixels=lo, max_pixels=hi)
    processor = load_processor(tmp_path, name, **override)
    assert (processor.size.shortest_edge, processor.size.longest_edge) == limits
    profile = get_profile(name, min_pixels=lo, max_pixels=hi)
    sizes = random_sizes(seed=lo + hi, n=12, largest=4000) + [(4000, 3000), (3001, 17), (1, 199)]
    assert {s: profile_tokens(profile, *s) for s in sizes} == {s: processor_tokens(processor, *s) for s in sizes}


def test_the_module_defaults_are_the_qwen2_5_vl_profile():
    """Today's call signatures (the targets use them) keep computing Qwen2.5-VL's numbers."""
    profile = PROFILES[DEFAULT_PROFILE]
    assert DEFAULT_PROFILE == "qwen2_5_vl"
    assert (profiles.PATCH_SIZE, profiles.MERGE_SIZE, profiles.MIN_PIXELS, profiles.MAX_PIXELS, profiles.MAX_ASPECT_RATIO) == (
        profile.patch_size, profile.merge_size, profile.min_pixels, profile.max_pixels, profile.max_aspect_ratio)
    for w, h in EDGE_SIZES[:4] + random_sizes(seed=7, largest=5000):
        assert profile_tokens(profile, w, h) == profile_tokens(ModelProfile("x", 14, 2, 3136, 12845056), w, h)
        try:
            assert image_tokens(w, h) == profile.image_tokens(w, h)
            assert smart_resize(h, w) == profile.processor_size(w, h)[::-1]
        except ImageShapeError:
            assert not profile.aspect_ok(w, h)


def test_generalised_arguments_compute_qwen3_vl():
    q3 = PROFILES["qwen3_vl"]
    for w, h in random_sizes(seed=3):
        if q3.aspect_ok(w, h):
            assert image_tokens(w, h, q3.min_pixels, q3.max_pixels, patch_size=16, merge_size=2) == q3.image_tokens(w, h)
    # A 448x448 image: 16x16 tokens at 28 px, 14x14 at 32 px... and Qwen3-VL's min_pixels lifts it to 256x256 at least.
    assert PROFILES["qwen2_5_vl"].image_tokens(448, 448) == 256
    assert q3.image_tokens(448, 448) == 196
    assert q3.image_tokens(32, 32) == 64  # 32x32 -> 256x256 (min_pixels 65536): 8x8 tokens


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match="known: qwen2_5_vl, qwen2_vl, qwen3_vl"):
        get_profile("qwen9")


# --- LLaMA-Factory's pre-resize ---------------------------------------------------------------------

def test_pre_resize_arithmetic():
    pre = PreResize()
    assert pre.apply(640, 480) == (640, 480)  # within [32*32, 768*768]: untouched
    assert pre.apply(4000, 3000) == (886, 665)  # int() of 4000 * sqrt(768*768 / 12e6): down to <= 768*768
    assert pre.apply(4000, 3000)[0] * pre.apply(4000, 3000)[1] <= 768 * 768
    assert pre.apply(10, 10) == (32, 32)  # up to 32*32
    assert pre.apply(1, 250) == (28, 505)  # up to 2 x 505 (int() truncates), then each side >= 28
    assert pre.apply(28, 6000) == (28, 5040)  # a 214:1 strip: squeezed to 180:1
    with pytest.raises(ImageShapeError):
        pre.apply(1, 10_000_000)  # down to 768*768 leaves a width of 0: LLaMA-Factory's resize fails there


def test_llamafactory_profile_counts_after_its_resize(tmp_path):
    """Pre-resize, then the model's processor (the processor part checked here; the pre-resize against
    LLaMA-Factory's own code in test_pre_resize_matches_llamafactorys_plugin)."""
    processor = load_processor(tmp_path, "qwen3_vl")
    profile = get_profile("qwen3_vl", llamafactory=True)
    assert profile.name == "qwen3_vl+llamafactory" and profile.pre_resize == PreResize()
    for w, h in random_sizes(seed=11, n=15, largest=3000) + [(1, 250), (3000, 10), (4000, 3000)]:
        pw, ph = profile.processor_input(w, h)
        assert profile.image_tokens(w, h) == processor_tokens(processor, pw, ph)
    # A 4000x3000 photo: 886x665 after LLaMA-Factory, 896x672 at 32 px: 28 x 21 tokens.
    assert profile.image_tokens(4000, 3000) == 588
    assert PROFILES["qwen3_vl"].image_tokens(4000, 3000) == 11750  # without it, 125 x 94
    # Strips past the aspect limit: LLaMA-Factory squeezes them, so its profile counts them...
    assert profile.image_tokens(1, 250) > 0 and not profile.aspect_ok(1, 250)
    # ...while the processor alone refuses them.
    with pytest.raises(ImageShapeError):
        PROFILES["qwen3_vl"].image_tokens(1, 250)


LLAMAFACTORY_SCRIPT = r'''
import json, sys
from types import SimpleNamespace
from PIL import Image
from llamafactory.data.mm_plugin import get_mm_plugin

sizes, limits = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {}
for template, plugin_name in (("qwen2_vl", "qwen2_vl"), ("qwen3_vl", "qwen3_vl")):
    plugin = get_mm_plugin(plugin_name, image_token="<|image_pad|>")
    rows = []
    for w, h in sizes:
        for max_pixels, min_pixels in limits:
            try:
                image = plugin._regularize_images([Image.new("RGB", (w, h))], image_max_pixels=max_pixels,
                                                  image_min_pixels=min_pixels)["images"][0]
                rows.append([w, h, max_pixels, min_pixels, list(image.size)])
            except (ValueError, ZeroDivisionError) as e:
                rows.append([w, h, max_pixels, min_pixels, None])
    out[template] = rows
print(json.dumps(out))
'''


@pytest.mark.trainers
def test_pre_resize_matches_llamafactorys_plugin(tmp_path):
    """LLaMA-Factory 0.9.5's own Qwen2VLPlugin / Qwen3VLPlugin resize, run in its trainer venv."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "compat"))
    from conftest_helpers import trainer_python

    sizes = EDGE_SIZES + random_sizes(seed=5, n=40, largest=6000) + [(4000, 3000), (1, 10_000_000), (2, 300_000)]
    limits = [(768 * 768, 32 * 32), (512 * 512, 64 * 64), (1024, 16)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(trainer_python("llamafactory")), "-c", LLAMAFACTORY_SCRIPT, json.dumps(sizes),
                           json.dumps(limits)], capture_output=True, text=True, env=env, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-5000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for template, rows in results.items():
        for w, h, max_pixels, min_pixels, size in rows:
            pre = PreResize(max_pixels=max_pixels, min_pixels=min_pixels)
            try:
                ours = list(pre.apply(w, h))
            except ImageShapeError:
                ours = None
            assert ours == size, (template, w, h, max_pixels, min_pixels)


def test_params_name_exactly_the_profiles():
    from vlprep.core.sections import PROFILE_NAMES
    from vlprep.prompting.profiles import PROFILES

    assert sorted(PROFILE_NAMES) == sorted(PROFILES)
