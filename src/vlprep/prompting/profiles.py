"""Model profiles: each model family's image arithmetic, as data (patch and merge size, pixel limits,
aspect limit) plus the few functions that turn an image's size into what its processor makes of it.

All the Qwen-VL families run one image processor, transformers' Qwen2VLImageProcessor (its
AutoImageProcessor maps qwen2_vl, qwen2_5_vl and qwen3_vl to it): resize by smart_resize to multiples
of patch_size * merge_size within [min_pixels, max_pixels], refuse an aspect ratio above 200, then one
token per merge_size x merge_size patches, i.e. image_grid_thw.prod() // merge_size**2. The families
differ only in the numbers their published processor configs set:

- Qwen2-VL / Qwen2.5-VL: 14-px patches, 2x2 merge, min_pixels 3136 (4 * 28 * 28), max_pixels 12845056
  (16384 * 28 * 28): the repos' preprocessor_config.json (the processor class's own defaults, used
  when it is built without a config, are 56 * 56 and 28 * 28 * 1280).
- Qwen3-VL: 16-px patches, 2x2 merge; transformers ships no Qwen3-VL image processor of its own, so the
  limits are those of its published preprocessor_config.json, size = {shortest_edge: 65536,
  longest_edge: 16777216}, i.e. 256 * 256 to 4096 * 4096 pixels.

A profile may carry LLaMA-Factory's pre-resize (`PreResize`): LLaMA-Factory resizes every image before
the processor sees it (mm_plugin.py, BasePlugin._preprocess_image: to at most image_max_pixels, default
768 * 768, and at least image_min_pixels, 32 * 32; then Qwen2VLPlugin's, which Qwen3VLPlugin inherits:
each side at least 28 px, an aspect ratio above 200 squeezed to 180). Token counts for that target
follow its resize, then the model's.

Pure data and arithmetic: no model, tokenizer or processor is loaded here. The tokenizer stays the
pipeline's choice; a profile changes image arithmetic and limits only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

# The token arithmetic of transformers' Qwen2VLImageProcessor; the defaults are Qwen2.5-VL's.
# Qwen2-VL / Qwen2.5-VL: 14-px patches merged 2x2, so each image token covers a 28x28 area.
PATCH_SIZE = 14
MERGE_SIZE = 2
IMAGE_FACTOR = PATCH_SIZE * MERGE_SIZE  # 28
MIN_PIXELS = 4 * 28 * 28  # 3136, Qwen2.5-VL's default
MAX_PIXELS = 16384 * 28 * 28  # 12845056
MAX_ASPECT_RATIO = 200  # Qwen's smart_resize refuses more extreme images


class ImageShapeError(ValueError):
    """The model's image processor would refuse this image (aspect ratio > 200)."""


def smart_resize(height: int, width: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
                 factor: int = IMAGE_FACTOR, max_aspect_ratio: float = MAX_ASPECT_RATIO) -> tuple[int, int]:
    """The size Qwen2-VL's image processor resizes to: each side a multiple of `factor` (patch size x
    merge size), the area within [min_pixels, max_pixels], the aspect ratio kept as well as possible."""
    if max(height, width) / min(height, width) > max_aspect_ratio:
        raise ImageShapeError(f"aspect ratio {max(height, width) / min(height, width):.0f} > {max_aspect_ratio}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(width: int, height: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
                 patch_size: int = PATCH_SIZE, merge_size: int = MERGE_SIZE,
                 max_aspect_ratio: float = MAX_ASPECT_RATIO) -> int:
    """Image tokens of one image: the processor's image_grid_thw.prod() // merge_size**2, i.e. one token
    per (patch_size x merge_size)-pixel square of the resized image."""
    factor = patch_size * merge_size
    h, w = smart_resize(height, width, min_pixels, max_pixels, factor, max_aspect_ratio)
    return (h // factor) * (w // factor)


@dataclass(frozen=True)
class PreResize:
    """LLaMA-Factory's resize before the processor (llamafactory.data.mm_plugin, 0.9.5), exactly: the
    area scaled into [min_pixels, max_pixels] with int() truncation, then (Qwen-VL plugins) each side
    at least `min_side`, and a side more than 200x the other cut to 180x."""

    max_pixels: int = 768 * 768  # LLaMA-Factory's image_max_pixels default
    min_pixels: int = 32 * 32  # image_min_pixels
    min_side: int = 28  # Qwen2VLPlugin, for every Qwen-VL family alike (not the model's patch size)

    def apply(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the image LLaMA-Factory hands to the processor."""
        if width * height > self.max_pixels:
            factor = math.sqrt(self.max_pixels / (width * height))
            width, height = int(width * factor), int(height * factor)
        if width * height == 0:  # Pillow cannot resize to it: LLaMA-Factory fails on such an image
            raise ImageShapeError(f"LLaMA-Factory's resize to {self.max_pixels} pixels leaves a side of 0")
        if width * height < self.min_pixels:
            factor = math.sqrt(self.min_pixels / (width * height))
            width, height = int(width * factor), int(height * factor)
        if min(width, height) < self.min_side:
            width, height = max(width, self.min_side), max(height, self.min_side)
        if width / height > 200:
            width, height = height * 180, height
        if height / width > 200:
            width, height = width, width * 180
        return width, height


@dataclass(frozen=True)
class ModelProfile:
    """One model family's image arithmetic. Sizes are (width, height) in and out, as PIL gives them."""

    name: str
    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int
    max_aspect_ratio: float = MAX_ASPECT_RATIO
    pre_resize: PreResize | None = None  # a trainer's own resize before the processor (LLaMA-Factory)

    @property
    def factor(self) -> int:
        """Side of the square one image token covers in the resized image."""
        return self.patch_size * self.merge_size

    def with_pixels(self, min_pixels: int | None = None, max_pixels: int | None = None) -> ModelProfile:
        """The same family with the processor's limits set (a config's size, or min/max_pixels)."""
        return replace(self, min_pixels=self.min_pixels if min_pixels is None else min_pixels,
                       max_pixels=self.max_pixels if max_pixels is None else max_pixels)

    def with_llamafactory(self, max_pixels: int = 768 * 768, min_pixels: int = 32 * 32) -> ModelProfile:
        """The profile as LLaMA-Factory runs it: its pre-resize (image_max_pixels, image_min_pixels) first."""
        return replace(self, name=f"{self.name}+llamafactory", pre_resize=PreResize(max_pixels, min_pixels))

    def processor_input(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the image the processor receives: the trainer's pre-resize, if any."""
        return self.pre_resize.apply(width, height) if self.pre_resize else (width, height)

    def processor_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the processor resizes to, its patches' source: what a target that re-encodes
        images to the processor's size (resize_to_max_pixels) should write. Raises ImageShapeError where
        the processor raises (aspect ratio above max_aspect_ratio, after any pre-resize)."""
        width, height = self.processor_input(width, height)
        h, w = smart_resize(height, width, self.min_pixels, self.max_pixels, self.factor, self.max_aspect_ratio)
        return w, h

    def grid_thw(self, width: int, height: int) -> tuple[int, int, int]:
        """The processor's image_grid_thw for one image: (1, patch rows, patch columns)."""
        w, h = self.processor_size(width, height)
        return 1, h // self.patch_size, w // self.patch_size

    def image_tokens(self, width: int, height: int) -> int:
        """<|image_pad|> tokens of one image: image_grid_thw.prod() // merge_size**2."""
        t, gh, gw = self.grid_thw(width, height)
        return t * gh * gw // self.merge_size**2

    def aspect_ok(self, width: int, height: int) -> bool:
        """Whether the source image itself is within the aspect limit (hf_bytes drops the others as
        image_aspect_ratio even where a trainer's pre-resize would squeeze them)."""
        return max(width, height) / min(width, height) <= self.max_aspect_ratio

    def side_below_patch(self, width: int, height: int) -> str | None:
        """How smart_resize would put a side below one patch (`factor` px) before its clamp, or None: a side
        that rounds to no patch, or one that max_pixels squeezes below a patch. The Qwen-VL resizes disagree
        there: transformers' (the processors', what this profile computes) lifts such a side to a patch,
        or scales the whole image up to min_pixels; qwen_vl_utils' fetch_image (what verl and ms-swift
        load images with) clamps the rounded side to a patch but leaves a squeezed one at 0 and fails. So
        the image-token count cannot be right for every trainer; older processors refuse such images."""
        f = self.factor
        short = min(width, height)
        if round(short / f) == 0:
            return f"its {short}-px side rounds to no {f}-px patch"
        if round(width / f) * round(height / f) * f * f > self.max_pixels:
            beta = math.sqrt(width * height / self.max_pixels)
            if math.floor(short / beta / f) == 0:
                return f"max_pixels {self.max_pixels} squeezes its {short}-px side below one {f}-px patch"
        return None

    def unfit(self, width: int, height: int) -> tuple[str, str] | None:
        """Why the model's processors cannot take an image of this size as it is, as (drop reason, detail);
        None when they can. The image pre-flight in hf_bytes asks it of every image (io/preflight.py)."""
        if not self.aspect_ok(width, height):
            ratio = max(width, height) / min(width, height)
            return "image_aspect_ratio", f"{width}x{height}: aspect ratio {ratio:.0f} > {self.max_aspect_ratio:g} ({self.name})"
        below = self.side_below_patch(width, height)
        if below:
            return "image_side_below_patch", f"{width}x{height}: {below} ({self.name})"
        return None

    def fitting_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The canvas hf_bytes pads an unfit image to (`unfit_image: pad`): a side that rounds to no patch
        becomes one whole patch (`factor` px, which every processor version takes), then the short side
        grows to the aspect limit, and on while max_pixels squeezes it below a patch: the smallest such
        canvas. None when none is within the image's longer side (max_pixels below a patch's area)."""
        f, longest = self.factor, max(width, height)
        w = max(width, f) if round(width / f) == 0 else width
        h = max(height, f) if round(height / f) == 0 else height
        if w >= h:
            h = max(h, math.ceil(w / self.max_aspect_ratio))
        else:
            w = max(w, math.ceil(h / self.max_aspect_ratio))
        while self.unfit(w, h) is not None:  # squeezed by max_pixels: a few more rows (a fraction of a patch)
            if min(w, h) >= max(longest, f):
                return None
            w, h = (w, h + 1) if w >= h else (w + 1, h)
        return w, h


PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in (
        ModelProfile("qwen2_vl", patch_size=14, merge_size=2, min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28),
        ModelProfile("qwen2_5_vl", patch_size=14, merge_size=2, min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28),
        ModelProfile("qwen3_vl", patch_size=16, merge_size=2, min_pixels=256 * 256, max_pixels=4096 * 4096),
    )
}
DEFAULT_PROFILE = "qwen2_5_vl"  # what the module-level defaults above compute


def get_profile(name: str = DEFAULT_PROFILE, *, min_pixels: int | None = None, max_pixels: int | None = None,
                llamafactory: PreResize | bool = False) -> ModelProfile:
    """A named profile, optionally with the processor's pixel limits overridden and LLaMA-Factory's
    pre-resize (True: its defaults; a PreResize: those numbers)."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile {name!r} (known: {', '.join(sorted(PROFILES))})") from None
    profile = profile.with_pixels(min_pixels, max_pixels)
    if llamafactory:
        pre = llamafactory if isinstance(llamafactory, PreResize) else PreResize()
        profile = replace(profile, name=f"{profile.name}+llamafactory", pre_resize=pre)
    return profile
