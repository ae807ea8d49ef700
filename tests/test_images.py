import base64
import io
import os

import numpy as np
import pytest
from PIL import Image

from builders import jpeg, noisy, png, png_declaring
from vlprep.core.metrics import Rejected
from vlprep.io.images import normalize_image, probe, stored_size


@pytest.fixture
def root(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png(20, 10))
    return tmp_path


ENCODED_FORMS = {
    "raw bytes": lambda b: b,
    "bytearray": lambda b: bytearray(b),
    "hf struct": lambda b: {"bytes": b, "path": None},
    "base64": lambda b: base64.b64encode(b).decode(),
    "data uri": lambda b: "data:image/png;base64," + base64.b64encode(b).decode(),
    "hex": lambda b: b.hex(),
    "hex upper": lambda b: b.hex().upper(),
    "list of ints": lambda b: list(b),
}


@pytest.mark.parametrize("form", ENCODED_FORMS)
@pytest.mark.parametrize("encoder", [png, jpeg])
def test_encoded_forms_pass_bytes_through_untouched(form, encoder, root):
    original = encoder(33, 21)
    info = normalize_image(ENCODED_FORMS[form](original), root)
    assert info.data == original  # no re-encode
    assert (info.width, info.height) == (33, 21)


def test_relative_path_is_read_under_root(root):
    info = normalize_image("imgs/a.png", root)
    assert info.data == (root / "imgs" / "a.png").read_bytes()
    assert normalize_image({"bytes": None, "path": "imgs/a.png"}, root).data == info.data


def test_absolute_path_inside_root_is_allowed(root):
    assert normalize_image(str(root / "imgs" / "a.png"), root).width == 20


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "imgs/../../outside.png"])
def test_paths_outside_root_are_refused(path, root):
    with pytest.raises(Rejected) as e:
        normalize_image(path, root)
    assert e.value.reason == "image_path_outside_root"


def test_symlink_escaping_root_is_refused(root, tmp_path_factory):
    secret = tmp_path_factory.mktemp("secret") / "s.png"
    secret.write_bytes(png())
    os.symlink(secret, root / "imgs" / "link.png")
    with pytest.raises(Rejected) as e:
        normalize_image("imgs/link.png", root)
    assert e.value.reason == "image_path_outside_root"


def test_missing_file_is_named_not_silently_skipped(root):
    with pytest.raises(Rejected) as e:
        normalize_image("imgs/nope.png", root)
    assert e.value.reason == "image_file_missing"


def test_decoded_images_are_encoded_as_png(root):
    pil = Image.new("RGB", (12, 8), (1, 2, 3))
    for value in (pil, np.zeros((8, 12, 3), dtype=np.uint8)):
        info = normalize_image(value, root)
        assert info.format == "PNG" and (info.width, info.height) == (12, 8)


def test_cmyk_falls_back_to_jpeg(root):
    assert normalize_image(Image.new("CMYK", (5, 5)), root).format == "JPEG"


@pytest.mark.parametrize(
    "value,reason",
    [
        (None, "image_null"),
        ({"bytes": None, "path": None}, "image_null"),
        (b"", "image_empty"),
        (b"\x89PNG\r\n\x1a\nnot an image", "image_corrupt"),
        (b"GIF89a" + b"\x00" * 3, "image_corrupt"),
        ([1, 2, 300], "image_unreadable"),
        (12345, "image_unreadable"),
    ],
)
def test_unusable_values_have_named_reasons(value, reason, root):
    with pytest.raises(Rejected) as e:
        normalize_image(value, root)
    assert e.value.reason == reason


def test_truncated_jpeg_and_png_are_caught_without_decoding(root):
    j, p = noisy("JPEG"), noisy("PNG")
    with pytest.raises(Rejected) as e:
        probe(j[: len(j) // 2])
    assert e.value.reason == "image_truncated"
    with pytest.raises(Rejected) as e:
        probe(p[: len(p) - 20])
    assert e.value.reason == "image_corrupt"


def test_decompression_bomb_is_refused_from_the_header(root):
    bomb = png_declaring(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(Rejected) as e:
        normalize_image(bomb, root, max_pixels=89_478_485)
    assert e.value.reason == "image_too_large"
    with pytest.raises(Rejected) as e:
        normalize_image(png(100, 100), root, max_pixels=100 * 99)
    assert e.value.reason == "image_too_large"


def test_jpeg_with_a_reserved_marker_is_judged_by_pillow(root):
    # found by hypothesis: a segment marker byte flipped to 0x02, which Pillow cannot read
    data = bytearray(jpeg(1, 1))
    data[21] = 0x02
    with pytest.raises(Rejected) as e:
        normalize_image(bytes(data), root)
    assert e.value.reason == "image_corrupt"


@pytest.mark.parametrize("fmt,mode,size", [("PNG", "RGB", (37, 21)), ("PNG", "L", (5, 300)), ("JPEG", "RGB", (64, 48)),
                                           ("JPEG", "L", (17, 9)), ("WEBP", "RGB", (12, 34))])
def test_stored_size_reads_the_header_as_probe_and_pillow_do(fmt, mode, size):
    """What the targets read of an hf_bytes image: format and size from the header alone (no CRC walk),
    the same as probe() and as Pillow's own decode."""
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format=fmt)
    data = buf.getvalue()
    info = stored_size(data)
    assert (info.format, info.width, info.height) == (fmt, *size)
    assert (info.format, info.width, info.height) == (probe(data).format, probe(data).width, probe(data).height)
