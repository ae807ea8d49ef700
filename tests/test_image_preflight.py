"""The image pre-flight in hf_bytes (src/vlprep/io/preflight.py): every image a trainer's processor would
misread is fixed deterministically, or dropped with a registered reason, and counted; ordinary images
pass byte-for-byte without a pixel decode.

A generated zoo (each case, plus ordinary RGB / greyscale controls) runs through the hf_bytes stage
function (`convert_unit` on a raw parquet file, `convert_row` for already-decoded inputs): pure functions,
no dvc. The processors' view of an image is Pillow's `convert("RGB")`, which every trainer calls."""
from __future__ import annotations

import io
import multiprocessing
import struct
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageOps

from builders import row, write_raw
from conftest import REPO
from vlprep.core.metrics import Rejected, StageStats
from vlprep.core.params import load_section
from vlprep.core.schema import RAW_REQUIRED
from vlprep.ingest.hf_bytes import convert_row, convert_unit
from vlprep.io import images as images_module
from vlprep.io import preflight as preflight_module
from vlprep.io.images import normalize_image
from vlprep.io.preflight import FIXES, Preflight, preflight_image
from vlprep.io.sources import plan_units

WHITE = (255, 255, 255)


def params(**overrides):
    return load_section("hf_bytes", REPO / "params.yaml").model_copy(update=overrides)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def photo(width: int = 48, height: int = 32, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Smooth but varied pixels (a gradient plus noise), different in every row and column."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = (x * 255 // max(width - 1, 1) + y * 3) % 256
    channels = 1 if mode == "L" else 3
    pixels = np.stack([(base + 60 * c + rng.integers(0, 40, base.shape)) % 256 for c in range(channels)], -1)
    return Image.fromarray(pixels.astype(np.uint8).squeeze(-1) if channels == 1 else pixels.astype(np.uint8), mode)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "vlprep test camera"  # Make: EXIF that is not only the orientation
    return exif.tobytes()


def ramp16(width: int = 512, height: int = 8, top: int = 65535) -> np.ndarray:
    return np.tile(np.linspace(0, top, width).round().astype(np.uint16), (height, 1))


def rgba_with_holes() -> tuple[Image.Image, np.ndarray]:
    """A photo whose left third is fully transparent, middle third half, right third opaque."""
    rgb = np.asarray(photo(60, 20))
    alpha = np.zeros((20, 60), np.uint8)
    alpha[:, 20:40], alpha[:, 40:] = 128, 255
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), alpha


def palette_with_transparent_index() -> Image.Image:
    p = photo(40, 24).quantize(15)  # indices 0..14
    pixels = np.asarray(p).copy()
    pixels[:8] = 15  # index 15 is the transparent one: the top 8 rows, and only they
    image = Image.fromarray(pixels, "P")
    image.putpalette(p.getpalette()[: 15 * 3] + [0, 0, 0])
    image.info["transparency"] = 15
    return image


def cmyk_jpeg() -> bytes:
    return encode(photo(40, 30).convert("CMYK"), "JPEG", quality=95)


# --- The zoo -----------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    value: object
    fixes: tuple[str, ...] = ()  # expected ImageInfo.fixes; () for a control (byte-identical)
    blank: bool = False
    check: str = ""  # a specific check below


def zoo() -> list[Case]:
    rgba, _ = rgba_with_holes()
    la = Image.fromarray(np.dstack([np.asarray(photo(30, 20, "L")), np.where(np.arange(30) < 10, 0, 255)[None, :]
                                    .repeat(20, 0).astype(np.uint8)]), "LA")
    grey16 = Image.fromarray(ramp16(64, 4, 4000))
    grey16.info["transparency"] = 0  # tRNS of a 16-bit grey PNG: value 0 is transparent
    return [
        # Controls: ordinary 8-bit RGB / greyscale PNG and JPEG, as they come
        Case("rgb_png", encode(photo())),
        Case("grey_png", encode(photo(mode="L"))),
        Case("rgb_jpeg", encode(photo(), "JPEG", quality=90)),
        Case("grey_jpeg", encode(photo(mode="L"), "JPEG", quality=90)),
        Case("progressive_jpeg", encode(photo(), "JPEG", quality=80, progressive=True)),
        Case("jpeg_exif_upright", encode(photo(), "JPEG", exif=exif_bytes(1))),
        Case("png_with_text", encode(photo(), pnginfo=_text_chunk("Software", "scanner 1.0"))),
        Case("rgb16_png", png_raw(np.dstack([ramp16(40, 8)] * 3), color_type=2, depth=16), check="high_byte"),
        Case("grey4_png", encode(photo(mode="L").quantize(16).convert("L"), bits=4), check="grey4"),
        # High bit depth: rescaled by the image's own range, stored as 8-bit PNG
        Case("ramp16_png", encode(Image.fromarray(ramp16())), ("high_bit_depth_rescaled",), check="ramp"),
        Case("ramp12_png", encode(Image.fromarray(ramp16(top=4095))), ("high_bit_depth_rescaled",), check="ramp"),
        Case("ramp16_be_tiff", encode(Image.fromarray(ramp16().astype(">u2")), "TIFF"), ("high_bit_depth_rescaled",),
             check="ramp"),
        Case("hounsfield_int32_tiff", encode(Image.fromarray((ramp16(top=4095).astype(np.int32) - 1024)), "TIFF"),
             ("high_bit_depth_rescaled",), check="ramp"),
        Case("float_tiff", encode(Image.fromarray(_float_ramp()), "TIFF"), ("high_bit_depth_rescaled",), check="float"),
        # EXIF orientation: applied to the pixels, the tag gone
        *[Case(f"jpeg_exif_{o}", encode(photo(), "JPEG", quality=95, exif=exif_bytes(o)), ("exif_transposed",),
               check="upright") for o in range(2, 9)],
        Case("png_exif_6", encode(photo(), exif=exif_bytes(6)), ("exif_transposed",), check="upright"),
        Case("jpeg_xmp_8", encode(photo(), "JPEG", quality=95, xmp=_xmp(8)), ("exif_transposed",), check="upright"),
        # Transparency: composited on the background (white)
        Case("rgba_png", encode(rgba), ("alpha_composited",), check="rgba"),
        Case("la_png", encode(la), ("alpha_composited",), check="la"),
        Case("p_transparent_png", encode(palette_with_transparent_index()), ("alpha_composited",), check="p_trns"),
        Case("rgb_trns_png", encode(Image.new("RGB", (8, 8), (1, 2, 3)).crop((0, 0, 8, 8)), transparency=(1, 2, 3)),
             ("alpha_composited",), blank=True),
        Case("grey16_trns_png", encode(grey16), ("high_bit_depth_rescaled", "alpha_composited"), check="g16_trns"),
        Case("gif_transparent", encode(palette_with_transparent_index(), "GIF"), ("alpha_composited",), check="p_trns"),
        Case("rgba_opaque_png", encode(photo().convert("RGBA")), ("mode_converted",), check="same_rgb"),
        # Modes a processor does not take as is: converted
        Case("cmyk_jpeg", cmyk_jpeg(), ("mode_converted",), check="cmyk"),
        Case("palette_png", encode(photo().quantize(64)), ("mode_converted",), check="same_rgb"),
        Case("bilevel_png", encode(photo(mode="L").point(lambda v: 255 * (v > 128)).convert("1")), ("mode_converted",),
             check="bilevel"),
        Case("lab_tiff", encode(photo().convert("LAB"), "TIFF"), ("mode_converted",), check="same_rgb"),
        # Blank: flagged (kept by default)
        Case("blank_rgb_png", encode(Image.new("RGB", (40, 30), (12, 34, 56))), blank=True),
        Case("blank_grey_jpeg", encode(Image.new("L", (40, 30), 77), "JPEG"), blank=True),
        Case("blank_16bit_png", encode(Image.fromarray(np.full((20, 20), 4000, np.uint16))), ("high_bit_depth_rescaled",),
             blank=True),
        Case("all_transparent_png", encode(Image.new("RGBA", (16, 16), (9, 9, 9, 0))), ("alpha_composited",), blank=True),
    ]


def _float_ramp() -> np.ndarray:
    values = np.tile(np.linspace(-0.5, 2.5, 300, dtype=np.float32), (6, 1))
    values[0, 0] = np.nan
    return values


def _text_chunk(key: str, value: str):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(key, value)
    return info


def _xmp(orientation: int) -> bytes:
    return (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/></rdf:RDF>'
            b"</x:xmpmeta>" % orientation)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_raw(pixels: np.ndarray, color_type: int, depth: int = 8, filters=(0,), extra: bytes = b"") -> bytes:
    """A PNG written by hand: any bit depth / colour type Pillow cannot write, and every filter type
    (row r uses filters[r % len(filters)]), filtered as the PNG spec says."""
    pixels = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, channels = pixels.shape
    raw = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1).view(np.uint8).astype(np.int32)
    bpp = channels * depth // 8
    out = []
    for r in range(height):
        kind = filters[r % len(filters)]
        line, up = raw[r], raw[r - 1] if r else np.zeros_like(raw[r])
        filtered = np.zeros_like(line)
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b = up[i]
            c = up[i - bpp] if i >= bpp else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            filtered[i] = (line[i] - pred) % 256
        out.append(bytes([kind]) + filtered.astype(np.uint8).tobytes())
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", zlib.compress(b"".join(out)))
            + _chunk(b"IEND", b""))


# --- Running the zoo through hf_bytes ---------------------------------------------------------------

def run_zoo(tmp_path, cases, **overrides):
    """One raw row per case (its one image), through convert_unit; rows and rejects by case name."""
    path = write_raw(tmp_path / "raw.parquet", [row(images=[c.value], dataset_name=c.name, dataset_index=i)
                                                for i, c in enumerate(cases)], row_group_size=8)
    tables, stats = [], StageStats()
    for unit in plan_units([path], RAW_REQUIRED):
        table, unit_stats = convert_unit(unit, params(**overrides))
        tables.append(table)
        stats.merge(unit_stats)
    rows = {r["dataset_name"]: r for t in tables for r in t.to_pylist()}
    rejects = {cases[r["dataset_index"]].name: r for r in stats.rejects}
    return rows, rejects, stats


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    cases = zoo()
    return cases, *run_zoo(tmp_path_factory.mktemp("zoo"), cases)


def case_image(cases, rows, name) -> tuple[Case, bytes]:
    case = next(c for c in cases if c.name == name)
    return case, rows[name]["images"][0]["bytes"]


def test_every_kept_image_decodes_to_what_the_processor_takes(zoo_run):
    cases, rows, rejects, stats = zoo_run
    assert rejects == {} and len(rows) == len(cases)
    for case in cases:
        out = rows[case.name]["images"][0]["bytes"]
        image = decoded(out)
        assert image.mode in ("L", "RGB"), case.name
        assert image.convert("RGB").mode == "RGB"
        assert image.getexif().get(0x0112) in (None, 1), case.name


def test_controls_pass_byte_for_byte_and_fixes_are_named(zoo_run):
    cases, rows, _, _ = zoo_run
    for case in cases:
        out = rows[case.name]["images"][0]["bytes"]
        if not case.fixes:
            assert out == case.value, f"{case.name} was re-encoded"
        else:
            assert out != case.value and out.startswith(b"\x89PNG"), case.name
            assert decoded(out).info.keys() <= {"dpi"}, case.name  # no EXIF, ICC, text: pixels only


def test_fixes_and_blanks_are_counted(zoo_run):
    cases, rows, _, stats = zoo_run
    for fix in FIXES:
        assert stats.counts[f"images_{fix}"] == sum(fix in c.fixes for c in cases), fix
    assert stats.counts["images_rewritten"] == sum(bool(c.fixes) for c in cases)
    assert stats.counts["images_blank"] == sum(c.blank for c in cases)
    assert stats.counts["images_out"] == len(cases)


def test_high_bit_depth_keeps_its_grey_levels(zoo_run):
    cases, rows, _, _ = zoo_run
    for case in cases:
        if case.check != "ramp":
            continue
        _, out = case_image(cases, rows, case.name)
        pixels = np.asarray(decoded(out))
        assert len(np.unique(pixels)) >= 200, case.name
        assert pixels.min() == 0 and pixels.max() == 255  # the image's own min..max
        assert (np.diff(pixels.astype(int), axis=1) >= 0).all()  # monotonic: the ramp stays a ramp
    # What the processors would have seen of the 12-bit ramp without the fix: nearly all white.
    clipped = np.asarray(decoded(case_image(cases, rows, "ramp12_png")[0].value).convert("RGB"))
    assert (clipped == 255).mean() > 0.9


def test_float_images_map_their_finite_range_and_nan_to_black(zoo_run):
    cases, rows, _, _ = zoo_run
    pixels = np.asarray(decoded(case_image(cases, rows, "float_tiff")[1]))
    assert pixels[0, 0] == 0  # NaN
    assert pixels[1, 0] == 0 and pixels[1, -1] == 255 and len(np.unique(pixels)) >= 200


@pytest.mark.parametrize("name", [f"jpeg_exif_{o}" for o in range(2, 9)] + ["png_exif_6", "jpeg_xmp_8"])
def test_exif_rotated_photos_come_out_upright(zoo_run, name):
    cases, rows, _, _ = zoo_run
    case, out = case_image(cases, rows, name)
    upright = ImageOps.exif_transpose(decoded(case.value)).convert("RGB")
    result = decoded(out)
    assert result.size == upright.size
    assert np.array_equal(np.asarray(result.convert("RGB")), np.asarray(upright))
    assert result.getexif().get(0x0112) is None


def test_transparent_pixels_become_the_background(zoo_run):
    cases, rows, _, _ = zoo_run
    _, alpha = rgba_with_holes()
    rgb = np.asarray(photo(60, 20)).astype(int)
    out = np.asarray(decoded(case_image(cases, rows, "rgba_png")[1])).astype(int)
    assert (out[:, :20] == 255).all()  # fully transparent: the background exactly
    assert np.array_equal(out[:, 40:], rgb[:, 40:])  # opaque: untouched
    half = (rgb[:, 20:40] * 128 + 255 * 127) / 255
    assert np.abs(out[:, 20:40] - half).max() <= 1  # half transparent: blended
    la = decoded(case_image(cases, rows, "la_png")[1])
    assert la.mode == "L" and (np.asarray(la)[:, :10] == 255).all()  # grey stays grey
    assert np.array_equal(np.asarray(la)[:, 10:], np.asarray(photo(30, 20, "L"))[:, 10:])
    for name in ("p_transparent_png", "gif_transparent"):
        out = np.asarray(decoded(case_image(cases, rows, name)[1]))
        assert (out[:8] == 255).all(), name
        source = decoded(case_image(cases, rows, name)[0].value).convert("RGB")
        assert np.array_equal(out[8:], np.asarray(source)[8:]), name
    g16 = np.asarray(decoded(case_image(cases, rows, "grey16_trns_png")[1]))
    assert (g16[:, 0] == 255).all() and g16[:, -1].max() == 255 and len(np.unique(g16)) > 50


def test_modes_are_converted_as_pillow_converts_them(zoo_run):
    cases, rows, _, _ = zoo_run
    for case in cases:
        if case.check in ("same_rgb", "cmyk", "bilevel", "high_byte", "grey4"):
            out = decoded(case_image(cases, rows, case.name)[1])
            want = decoded(case.value).convert("L" if case.check in ("bilevel", "grey4") else "RGB")
            assert np.array_equal(np.asarray(out), np.asarray(want)), case.name


def test_blank_images_are_flagged_or_dropped_with_their_reason(tmp_path):
    cases = [c for c in zoo() if c.blank or c.name in ("rgb_png", "grey_jpeg")]
    rows, rejects, stats = run_zoo(tmp_path, cases, blank_image="drop")
    assert set(rejects) == {c.name for c in cases if c.blank}
    assert {r["reason"] for r in rejects.values()} == {"image_blank"}
    assert all("every pixel" in r["detail"] for r in rejects.values())
    assert set(rows) == {"rgb_png", "grey_jpeg"} and stats.dropped["image_blank"] == len(rejects)
    # bad_image: drop_image drops the image alone, counted per reason
    rows, rejects, stats = run_zoo(tmp_path / "2", cases, blank_image="drop", bad_image="drop_image", strict_image=False)
    assert rejects == {} and stats.counts["images_dropped_image_blank"] == sum(c.blank for c in cases)


def test_rewrites_are_identical_across_runs_and_processes(zoo_run, tmp_path):
    cases, rows, _, _ = zoo_run
    path = write_raw(tmp_path / "raw.parquet", [row(images=[c.value], dataset_name=c.name, dataset_index=i)
                                                for i, c in enumerate(cases)], row_group_size=5)
    units = plan_units([path], RAW_REQUIRED)
    assert len(units) > 2
    # num_proc = 2, the way the executor runs units: fresh worker processes, any unit on any worker
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        tables = [t for t, _ in pool.map(_convert, units, [params()] * len(units))]
    again = {r["dataset_name"]: r["images"][0]["bytes"] for t in tables for r in t.to_pylist()}
    assert again == {name: r["images"][0]["bytes"] for name, r in rows.items()}


def _convert(unit, config):
    return convert_unit(unit, config)


# --- Already-decoded inputs (PIL / numpy), through convert_row ----------------------------------------

@pytest.mark.parametrize("mode,fix", [("YCbCr", "mode_converted"), ("HSV", "mode_converted"), ("CMYK", "mode_converted"),
                                      ("PA", "alpha_composited"), ("I;16", "high_bit_depth_rescaled"),
                                      ("F", "high_bit_depth_rescaled"), ("RGB", None), ("L", None)])
def test_decoded_inputs_are_fixed_the_same_way(mode, fix):
    source = photo(24, 16).convert(mode) if mode not in ("I;16", "F", "PA") else None
    if mode == "I;16":
        source = Image.fromarray(ramp16(300, 4, 4095))
    elif mode == "F":
        source = Image.fromarray(_float_ramp())
    elif mode == "PA":
        source = Image.merge("PA", (photo(24, 16).quantize(8), Image.new("L", (24, 16), 0)))
    stats = StageStats()
    out = convert_row(row(images=[source, np.asarray(photo(8, 8))]), params(), None, stats)
    image = decoded(out["images"][0]["bytes"])
    assert image.mode in ("L", "RGB")
    assert stats.counts[f"images_{fix}"] == 1 if fix else stats.counts["images_rewritten"] == 0
    if mode == "PA":
        assert np.asarray(image).min() == 255  # fully transparent on white
    if fix == "high_bit_depth_rescaled":
        assert len(np.unique(np.asarray(image))) >= 200


def test_a_mode_pillow_cannot_convert_is_dropped_with_its_reason():
    la_premultiplied = Image.new("La", (8, 8))
    with pytest.raises(Rejected) as e:
        convert_row(row(images=[la_premultiplied]), params(), None, StageStats())
    assert e.value.reason == "image_mode_unsupported"
    stats = StageStats()
    out = convert_row(row(images=[la_premultiplied, encode(photo())]), params(bad_image="drop_image"), None, stats)
    assert len(out["images"]) == 1 and stats.counts["images_dropped_image_mode_unsupported"] == 1


def test_undecodable_pixels_behind_a_valid_header_are_corrupt():
    """A palette PNG must be decoded to be converted: pixel data that is not zlib (every chunk's CRC
    right, so the header check passes) cannot be."""
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 3, 0, 0, 0)
    broken = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"PLTE", bytes(range(6)))
              + _chunk(b"IDAT", b"not zlib data at all") + _chunk(b"IEND", b""))
    assert normalize_image(broken, None).data == broken  # without the pre-flight: passed on
    with pytest.raises(Rejected) as e:
        preflight_image(broken, None, Preflight())
    assert e.value.reason == "image_corrupt"


# --- The fast path and its blank screens ---------------------------------------------------------------

@pytest.fixture
def no_decode(monkeypatch):
    """Fail if the pre-flight decodes pixels (Pillow opens nothing for PNG / JPEG headers)."""
    def refuse(*args, **kwargs):
        raise AssertionError("decoded an image the fast path should pass")

    monkeypatch.setattr(preflight_module, "_decode", refuse)
    monkeypatch.setattr(preflight_module.Image, "open", refuse)


ORDINARY = {
    "rgb_png": lambda: encode(photo(192, 128)),
    "grey_png": lambda: encode(photo(192, 128, "L")),
    "rgb_jpeg": lambda: encode(photo(192, 128), "JPEG", quality=90),
    "grey_jpeg": lambda: encode(photo(192, 128, "L"), "JPEG", quality=75),
    "progressive_jpeg": lambda: encode(photo(192, 128), "JPEG", quality=80, progressive=True),
    "jpeg_exif_upright": lambda: encode(photo(192, 128), "JPEG", exif=exif_bytes(1)),
    "png_with_text": lambda: encode(photo(192, 128), pnginfo=_text_chunk("Software", "scanner 1.0")),
}


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_images_are_not_decoded(name, no_decode):
    """(A JPEG too small for its scan's length to rule out a blank image gets a 1/8-scale decode.)"""
    data = ORDINARY[name]()
    info = preflight_image(data, None, Preflight())
    assert info.data == data and info.fixes == () and not info.blank


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (0, 1, 2, 3, 4), (4, 3, 2, 1, 0)])
@pytest.mark.parametrize("channels", [1, 3])
def test_png_blank_screen_is_exact_under_every_filter(filters, channels, monkeypatch):
    color_type = 2 if channels == 3 else 0
    value = np.array([200, 7, 130][:channels], np.uint8)
    blank = np.broadcast_to(value, (9, 13, channels)).copy()
    almost = blank.copy()
    almost[-1, -1, 0] = 201  # one pixel differs, far past the rows the screen reads
    varied = np.asarray(photo(13, 9, "RGB" if channels == 3 else "L")).reshape(9, 13, channels)
    for pixels, is_blank in ((blank, True), (almost, False), (varied, False)):
        data = png_raw(pixels, color_type, filters=filters)
        assert np.array_equal(np.asarray(decoded(data)).reshape(pixels.shape), pixels)  # the writer is right
        info = preflight_image(data, None, Preflight())
        assert info.blank is is_blank and info.data == data
    with monkeypatch.context() as m:  # a varied first row is seen without a decode
        m.setattr(preflight_module, "_decode", lambda *a: pytest.fail("decoded"))
        assert not preflight_image(png_raw(varied, color_type, filters=filters), None, Preflight()).blank


def test_smooth_jpegs_are_told_from_blank_ones_without_a_decode(no_decode):
    """A smooth scan codes few bytes a block, as few as a blank image may: its Huffman-coded data does not
    compress, a blank image's (one MCU repeated) does, so no decode is needed to tell them apart."""
    y, x = np.mgrid[0:480, 0:640]
    smooth = ((x + y) / 1120 * 60 + 80 + np.random.default_rng(1).normal(0, 1, (480, 640))).clip(0, 255)
    data = encode(Image.fromarray(smooth.astype(np.uint8)), "JPEG", quality=85)
    layout = images_module._jpeg_walk(data)
    assert 4096 <= len(data) - layout.scan_start <= 4 * layout.blocks  # the case the compression screen is for
    info = preflight_image(data, None, Preflight())
    assert info.data == data and not info.blank


def test_jpeg_blank_screen_decodes_only_near_uniform_images():
    flat = np.full((64, 64, 3), 90, np.uint8)
    square = flat.copy()
    square[40:44, 40:44] = 200
    assert preflight_image(encode(Image.fromarray(flat), "JPEG"), None, Preflight()).blank
    assert not preflight_image(encode(Image.fromarray(square), "JPEG"), None, Preflight()).blank


def test_a_percentile_window_spreads_the_bulk_and_clips_the_outliers():
    values = ramp16(400, 4, 1000) + 1000
    values[0, :4] = 65535  # four hot pixels
    image = Image.fromarray(values)
    minmax = np.asarray(decoded(preflight_image(image, None, Preflight()).data))
    window = np.asarray(decoded(preflight_image(image, None, Preflight(window=(1, 99))).data))
    assert len(np.unique(minmax[1:])) < 10  # min..max: the outliers squeeze the ramp into a few levels
    assert len(np.unique(window[1:])) >= 200 and window[0, 0] == 255  # window: the ramp spreads, outliers clip


def test_params_validate_the_preflight_keys():
    from vlprep.core.params import ParamsError, validate

    section = dict(load_section("hf_bytes", REPO / "params.yaml").model_dump())
    for key, bad in (("high_bit_depth_window", [50, 10]), ("high_bit_depth_window", [0, 101]),
                     ("background", [255, 255]), ("background", [0, 0, 256]), ("blank_image", "flag"),
                     ("unfit_image", "crop")):
        with pytest.raises(ParamsError, match=f"hf_bytes.*{key}"):
            validate("hf_bytes", {**section, key: bad})
    assert validate("hf_bytes", {**section, "background": [0, 0, 0]}).background == [0, 0, 0]


def test_the_background_param_is_the_colour_transparent_pixels_become(tmp_path):
    rgba, _ = rgba_with_holes()
    cases = [Case("rgba_png", encode(rgba))]
    rows, _, _ = run_zoo(tmp_path, cases, background=[0, 128, 255])
    out = np.asarray(decoded(rows["rgba_png"]["images"][0]["bytes"]))
    assert (out[:, :20] == (0, 128, 255)).all()
