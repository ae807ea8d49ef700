"""The image pre-flight hf_bytes runs on every image: what the trainers' processors would misread is
fixed here, once, deterministically, or refused with a named reason. The processors only call
`convert("RGB")`, which clips 16-bit greys to white, ignores EXIF orientation and drops alpha onto
whatever colour the transparent pixels hold. Ordinary images (8-bit RGB / greyscale PNG or JPEG, no
orientation, no transparency: nearly all real data) are recognised from the header walk (io/images.py)
and stay byte-identical; the blank check looks at them through cheap screens that decode only when the
pixels may all be one value."""
from __future__ import annotations

import io
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image, ImageOps

from vlprep.core.metrics import Rejected
from vlprep.io.images import (DEFAULT_MAX_PIXELS, ORIENTATIONS, ImageInfo, PngLayout, encode_decoded,
                              probe_layout, to_bytes)

# What the pre-flight may do to an image, in this order; each is counted as images_<fix> in hf_bytes.
FIXES = ("exif_transposed", "high_bit_depth_rescaled", "alpha_composited", "mode_converted", "padded")
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_GREY_MODES = frozenset({"1", "L", "LA", "La"})
# Per band, the most a reduced (1/8, DC-only) decode of a JPEG may vary for its full decode to be one
# value: the reduction rounds differently, so a one-valued image can show a level or two of spread.
_DRAFT_SPREAD = 8
# A JPEG whose pixels are all one value codes every 8x8 block alike, "DC unchanged, end of block": at
# most two 16-bit Huffman codes, i.e. 4 bytes a block (libjpeg writes ~0.1-0.8); anything longer varies.
_BLANK_JPEG_BYTES_PER_BLOCK = 4
_BLANK_JPEG_SLACK = 1024  # tables and markers between scans
# ...and its entropy-coded data repeats with the period of one MCU (at most a few hundred bytes, restart
# markers included), which deflate shrinks to a few percent (measured: 1-17%), while any real image's
# Huffman-coded data hardly compresses (measured: 97-99%). A prefix that deflate cannot halve varies.
_JPEG_SCAN_SAMPLE = (4096, 4096)  # shortest scan tested so, and the prefix compressed (~0.1 ms)
_BLANK_JPEG_MAX_RATIO = 0.5
_PNG_ROWS_SCREENED = 4


class ShapeCheck(Protocol):
    """The sizes the model's processors take (prompting/profiles.py's ModelProfile is one; hf_bytes hands
    it in, since io does not import prompting)."""

    def unfit(self, width: int, height: int) -> tuple[str, str] | None:
        """(drop reason, detail) for a size the processors cannot take as it is; None for one they can."""

    def fitting_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The smallest canvas at least this size that they take; None when there is none."""


@dataclass(frozen=True)
class Preflight:
    """How hf_bytes fixes images for the processors (params.yaml hf_bytes: high_bit_depth_window,
    background, blank_image, unfit_image; model.profile and model.max_pixels make `shape`)."""

    # Percentiles of a high-bit-depth image's values mapped to 0 and 255: (0, 100) is its own min..max,
    # so nothing clips; a narrower window clips its outer values to black / white on purpose.
    window: tuple[float, float] = (0.0, 100.0)
    background: tuple[int, int, int] = (255, 255, 255)  # what transparent pixels (and padding) become
    blank_image: Literal["keep", "drop"] = "keep"  # keep: flagged (ImageInfo.blank); drop: image_blank
    shape: ShapeCheck | None = None  # the model's size limits; None: sizes are not checked
    # A size `shape` refuses: drop (its reason) | pad (centred on `background`, to shape.fitting_size)
    unfit_image: Literal["drop", "pad"] = "drop"


def preflight_image(value, root: Path | None, preflight: Preflight,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """One raw image -> validated encoded bytes, made safe for the trainers' processors (module
    docstring), or refused with the reason (raises Rejected)."""
    if isinstance(value, Image.Image) or hasattr(value, "__array_interface__"):
        return _preflight_decoded(_as_pil(value), max_pixels, preflight)
    info, layout = probe_layout(to_bytes(value, root), max_pixels)
    return _preflight_encoded(info, layout, preflight, max_pixels)


def _as_pil(value) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    try:
        return Image.fromarray(value)
    except (TypeError, ValueError) as e:
        raise Rejected("image_unreadable", str(e)) from None


def _preflight_decoded(image: Image.Image, max_pixels: int, preflight: Preflight) -> ImageInfo:
    """An already-decoded image (PIL / numpy): fixed if need be, then encoded as PNG."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise Rejected("image_corrupt", f"size {width}x{height}")
    if width * height > max_pixels:
        raise Rejected("image_too_large", f"{width}x{height}")
    pad = _needs_padding(width, height, preflight, max_pixels)
    fixed, fixes = _guarded(_fix_pixels, image, preflight)
    blank = _blank(fixed, preflight)
    if pad:
        fixed, fixes = _pad(fixed, preflight), (*fixes, "padded")
    data = _encode_png(fixed) if fixes else encode_decoded(image)
    return ImageInfo(data, fixed.width, fixed.height, "PNG", fixes, blank)


def _preflight_encoded(info: ImageInfo, layout, preflight: Preflight, max_pixels: int) -> ImageInfo:
    """Encoded bytes that passed probe(): the bytes as they are when the processors read them right
    (ordinary, or nothing to fix after a decode), else the fixed pixels as PNG."""
    pad = _needs_padding(info.width, info.height, preflight, max_pixels)  # from the header: no decode
    if not pad and layout is not None and layout.ordinary and not _may_be_blank(info.data, layout):
        return info  # the fast path: no pixel decoded, or a few rows / a 1/8-scale decode at most
    image = _guarded(_decode, info.data)
    fixed, fixes = _guarded(_fix_pixels, image, preflight)
    blank = _blank(fixed, preflight)
    if pad:
        fixed, fixes = _pad(fixed, preflight), (*fixes, "padded")
    if not fixes:
        return replace(info, blank=blank)
    return ImageInfo(_encode_png(fixed), fixed.width, fixed.height, "PNG", fixes, blank)


def _guarded(fn, *args):
    """Pillow raises many types for pixels it cannot decode or convert: all mean "not a usable image"."""
    try:
        with warnings.catch_warnings():
            # The caller's pixel bound (max_image_pixels) replaces Pillow's global one.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return fn(*args)
    except Rejected:
        raise
    except Image.DecompressionBombError as e:
        raise Rejected("image_too_large", str(e)) from None
    except Exception as e:
        raise Rejected("image_corrupt", f"{type(e).__name__}: {e}") from None


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # the first frame: what the processors take
    return image


def _orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(0x0112)
    except Exception:  # unreadable EXIF: exif_transpose could not read it either
        return None


def _fix_pixels(image: Image.Image, preflight: Preflight) -> tuple[Image.Image, tuple[str, ...]]:
    """The image as the processors should see it, and the FIXES that made it so (none: use as is)."""
    fixes = []
    if _orientation(image) in ORIENTATIONS:
        image = ImageOps.exif_transpose(image)
        fixes.append("exif_transposed")
    mode = image.mode
    if mode.startswith("I") or mode == "F":  # I;16, I;16B, I;16L, I;16N, I (32-bit), F (float)
        values = np.asarray(image)
        transparent = image.info.get("transparency")  # tRNS of a 16-bit grey PNG: one value
        image = Image.fromarray(_to_8bit(values, preflight.window), "L")
        fixes.append("high_bit_depth_rescaled")
        if isinstance(transparent, int) and (values == transparent).any():
            alpha = Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8), "L")
            image = _composite(Image.merge("LA", (image, alpha)), preflight.background, grey=True)
            fixes.append("alpha_composited")
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        composited = _composite(image, preflight.background, grey=mode in _GREY_MODES)
        if composited is not None:
            image = composited
            fixes.append("alpha_composited")
        elif mode not in ("L", "RGB"):  # alpha everywhere opaque: only the mode is wrong
            image = _convert(image)
            fixes.append("mode_converted")
    elif mode not in ("L", "RGB"):
        image = _convert(image)
        fixes.append("mode_converted")
    return image, tuple(fixes)


def _to_8bit(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """High-bit-depth values -> 0..255 by the image's own range: linear from the window's low percentile
    (black) to its high one (white), rounded half up. Never a silent clip: with the default (0, 100) the
    range is min..max; non-finite floats become black (+inf white). One value throughout: all black."""
    finite = values if values.dtype.kind in "iu" else values[np.isfinite(values)]
    out = np.zeros(values.shape, np.uint8)
    if finite.size == 0:
        return out
    lo, hi = finite.min(), finite.max()
    if tuple(window) != (0.0, 100.0) and hi > lo:
        w_lo, w_hi = np.percentile(finite, window)
        if w_hi > w_lo:  # a window holding one value (most pixels alike) falls back to min..max
            lo, hi = w_lo, w_hi
    if not hi > lo:
        return out
    lo, hi = float(lo), float(hi)
    scale = 255.0 / (hi - lo)
    for start in range(0, values.shape[0], 512):  # row blocks bound the float64 temporaries
        block = (np.clip(values[start : start + 512].astype(np.float64), lo, hi) - lo) * scale
        out[start : start + 512] = np.nan_to_num(np.floor(block + 0.5), nan=0.0)
    return out


def _composite(image: Image.Image, background: tuple[int, int, int], grey: bool) -> Image.Image | None:
    """Alpha-composite onto the background (Pillow's integer alpha_composite: a transparent pixel becomes
    the background exactly, an opaque one keeps its colour); None when no pixel is transparent. Grey
    sources on a grey background stay greyscale (L), the rest become RGB."""
    try:
        rgba = image.convert("RGBA")
    except ValueError as e:
        raise Rejected("image_mode_unsupported", f"{image.mode}: {e}") from None
    if rgba.getchannel("A").getextrema()[0] == 255:
        return None
    under = Image.new("RGBA", rgba.size, (*background, 255))
    out = Image.alpha_composite(under, rgba).convert("RGB")
    if grey and len(set(background)) == 1:
        return out.convert("L")  # exact: Pillow's RGB -> L weights add up to 1 in fixed point
    return out


def _convert(image: Image.Image) -> Image.Image:
    """A mode the processors do not take as is (1, P, CMYK, YCbCr, LAB, HSV, RGBX...) -> L or RGB,
    as Pillow's own conversion (what convert("RGB") in the processor would have done, minus surprises)."""
    try:
        return image.convert("L" if image.mode in _GREY_MODES else "RGB")
    except ValueError as e:
        raise Rejected("image_mode_unsupported", f"{image.mode}: {e}") from None


def _needs_padding(width: int, height: int, preflight: Preflight, max_pixels: int) -> bool:
    """Whether a size the model cannot take is to be padded; refused with its reason when it is to be
    dropped, or when no canvas within max_image_pixels fits. (The checks are symmetric in width and
    height, so the header's size answers for the image after an EXIF rotation too.)"""
    problem = preflight.shape.unfit(width, height) if preflight.shape is not None else None
    if problem is None:
        return False
    if preflight.unfit_image == "pad":
        size = preflight.shape.fitting_size(width, height)
        if size is not None and size[0] * size[1] <= max_pixels:
            return True
        problem = (problem[0], f"{problem[1]}; no padded size within max_image_pixels fits")
    raise Rejected(*problem)


def _pad(image: Image.Image, preflight: Preflight) -> Image.Image:
    """The image centred (the odd pixel right / below) on a canvas of the background colour, of the
    smallest size the model takes. Greyscale stays L on a grey background, else RGB."""
    width, height = preflight.shape.fitting_size(image.width, image.height)
    grey = image.mode == "L" and len(set(preflight.background)) == 1
    canvas = Image.new("L" if grey else "RGB", (width, height), preflight.background[0] if grey else preflight.background)
    canvas.paste(image if grey else image.convert("RGB"), ((width - image.width) // 2, (height - image.height) // 2))
    return canvas


def _blank(image: Image.Image, preflight: Preflight) -> bool:
    """Whether every pixel has one value; refused as image_blank when the preflight says drop."""
    extrema = image.getextrema()
    bands = extrema if len(image.getbands()) > 1 else (extrema,)
    blank = all(lo == hi for lo, hi in bands)
    if blank and preflight.blank_image == "drop":
        raise Rejected("image_blank", f"{image.width}x{image.height}, every pixel {image.getpixel((0, 0))}")
    return blank


def _encode_png(image: Image.Image) -> bytes:
    """The fixed pixels as PNG, with no metadata (no EXIF, ICC or text: nothing to misread, and the bytes
    depend on the pixels only, so every run and process writes the same)."""
    image.info = {}
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _may_be_blank(data: bytes, layout) -> bool:
    """False when cheap evidence shows two pixels differ (nearly every image); True sends the image to a
    full decode, which decides."""
    if isinstance(layout, PngLayout):
        return not _png_first_rows_vary(data, layout)
    scan = len(data) - layout.scan_start
    if scan > _BLANK_JPEG_BYTES_PER_BLOCK * layout.blocks + _BLANK_JPEG_SLACK:
        return False
    shortest, sample = _JPEG_SCAN_SAMPLE
    if scan >= shortest:
        prefix = data[layout.scan_start : layout.scan_start + sample]
        if len(zlib.compress(prefix, 1)) > _BLANK_JPEG_MAX_RATIO * len(prefix):
            return False
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft(im.mode, (max(1, layout.width // 8), max(1, layout.height // 8)))
            extrema = im.getextrema()
            bands = extrema if len(im.getbands()) > 1 else (extrema,)
    except Exception:
        return True  # the full decode reports what is wrong
    return all(hi - lo <= _DRAFT_SPREAD for lo, hi in bands)


def _png_first_rows_vary(data: bytes, layout: PngLayout) -> bool:
    """Inflate only the first rows of an 8-bit grey / RGB PNG and compare them with what a one-valued
    image would store there: PNG filters each row against its left and upper neighbours, so under that
    hypothesis every filtered byte is known from the first pixel. A mismatch proves two pixels differ."""
    if layout.interlaced:
        return False
    bpp = 3 if layout.color_type == 2 else 1
    stride = 1 + layout.width * bpp
    n = min(_PNG_ROWS_SCREENED, layout.height)
    want = n * stride
    inflate, raw = zlib.decompressobj(), bytearray()
    try:
        for start, end in layout.idat:
            pending = data[start:end]
            while pending and len(raw) < want:
                raw += inflate.decompress(pending, want - len(raw))
                pending = inflate.unconsumed_tail
            if len(raw) >= want:
                break
    except zlib.error:
        return False
    if len(raw) < want:
        return False
    rows = np.frombuffer(bytes(raw[:want]), np.uint8).reshape(n, stride).astype(np.int32)
    flat = np.tile(rows[0, 1 : 1 + bpp], layout.width)  # the row of a one-valued image
    zeros = np.zeros(bpp, np.int32)
    left = np.concatenate([zeros, flat[:-bpp]])
    for r in range(n):
        up = flat if r else np.zeros_like(flat)
        up_left = np.concatenate([zeros, up[:-bpp]]) if r else np.zeros_like(flat)
        kind = rows[r, 0]
        if kind == 0:
            predicted = 0
        elif kind == 1:
            predicted = left
        elif kind == 2:
            predicted = up
        elif kind == 3:
            predicted = (left + up) // 2
        elif kind == 4:
            p = left + up - up_left
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
            predicted = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        else:
            return False  # not a PNG filter type: Pillow decides
        if not np.array_equal(rows[r, 1:], (flat - predicted) % 256):
            return True
    return False
