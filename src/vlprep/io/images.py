"""Any image form a raw row may carry -> encoded image bytes, or a named reason it is unusable.

Valid encoded bytes pass through untouched: validity and size come from the header (plus PNG's chunk
CRCs and JPEG's end marker for truncation), never from a pixel decode, which costs ~7x the whole I/O
of a stage. Only already-decoded images (PIL / numpy) are encoded, as PNG."""
from __future__ import annotations

import base64
import binascii
import io
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vlprep.core.metrics import Rejected
from vlprep.io.remote import is_s3, join_under, read_bytes

# Pillow's own bomb threshold (~89.5 MP); the param max_image_pixels overrides it per stage.
DEFAULT_MAX_PIXELS = 89_478_485

_HEX = re.compile(r"[0-9a-fA-F]+")
_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ImageInfo:
    data: bytes
    width: int
    height: int
    format: str


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (they carry the size): C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _png_header(data: bytes) -> tuple[int, int] | None:
    """Size of a structurally complete PNG, every chunk's CRC checked (what Pillow's verify() does),
    or None when anything is unusual, leaving the verdict to Pillow."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length
        if end > len(data):
            return None
        kind_and_data = data[pos + 4 : end - 4]
        if zlib.crc32(kind_and_data) != struct.unpack(">I", data[end - 4 : end])[0]:
            return None
        if kind_and_data[:4] == b"IEND":
            return width, height
        pos = end
    return None


def _jpeg_header(data: bytes) -> tuple[int, int] | None:
    """Size from the start-of-frame segment, after walking every marker segment up to the scan as Pillow
    does, or None when anything is unusual (Pillow decides): a damaged marker after the frame header
    makes Pillow refuse the file (found by hypothesis), so it must not pass here either."""
    pos, size = 2, None
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker < 0xC0:  # reserved / unknown to Pillow's marker table: let Pillow judge the file
            return None
        if 0xD0 <= marker <= 0xD7:  # restart markers carry no length
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: the header is complete
            return size
        if marker in _JPEG_SOF:
            if size is not None:
                return None  # a second frame header: unusual
            length, _, height, width, components = struct.unpack(">HBHHB", data[pos + 2 : pos + 10])
            # A frame header is exactly 8 bytes + 3 per component; any other length is damage Pillow
            # may refuse (found by hypothesis), so it decides.
            if length != 8 + 3 * components or pos + 2 + length > len(data) or not (width and height):
                return None
            size = (width, height)
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return None


def _pillow_header(data: bytes) -> tuple[str, int, int]:
    """Format and size via Pillow, for every format and for anything the fast paths did not accept."""
    with warnings.catch_warnings():
        # Our own pixel bound (the caller's) replaces Pillow's global one, so a param can change it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = im.format, im.size
            if fmt == "PNG":
                im.verify()  # walks the chunks checking CRCs; no pixel decode
    return fmt, width, height


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Check encoded bytes are a complete image of acceptable size, without decoding pixels.

    PNG and JPEG (nearly all real data) are read by the small header parsers above, ~20x faster than
    Pillow's open(); anything they do not accept outright goes to Pillow, which has the last word."""
    if not data:
        raise Rejected("image_empty")
    size = None
    if data.startswith(_PNG_SIGNATURE):
        fmt, size = "PNG", _png_header(data)
    elif data.startswith(b"\xff\xd8"):
        fmt, size = "JPEG", _jpeg_header(data)
    try:
        if size is None:
            fmt, *size = _pillow_header(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise Rejected("image_too_large", str(e)) from None
    except Exception as e:  # Pillow raises many types for bad bytes: all mean "not a usable image"
        # without object addresses ("<_io.BytesIO object at 0x7f...>"): the rejects file is byte-stable
        raise Rejected("image_corrupt", re.sub(r" at 0x[0-9a-f]+", "", f"{type(e).__name__}: {e}")) from None
    width, height = size
    if width <= 0 or height <= 0:
        raise Rejected("image_corrupt", f"size {width}x{height}")
    if width * height > max_pixels:
        raise Rejected("image_too_large", f"{width}x{height}")
    if fmt == "JPEG" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise Rejected("image_truncated", "JPEG without end-of-image marker")
    return ImageInfo(data, width, height, fmt)


def encode_decoded(image: Image.Image) -> bytes:
    """PNG is lossless and deterministic; JPEG only for modes PNG cannot store (e.g. CMYK)."""
    buf = io.BytesIO()
    try:
        image.save(buf, format="PNG")
    except OSError:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def read_image_file(path_str: str, root: Path | None) -> bytes:
    """Read an image path, only from under `root`: a dataset must not be able to pull /etc/passwd or a
    symlinked secret into training data. Relative paths are taken relative to root."""
    if root is None:
        raise Rejected("image_path_not_allowed", path_str)
    if is_s3(root):
        return _read_s3_image(path_str, str(root))
    root = Path(os.path.realpath(root))
    candidate = Path(path_str)
    candidate = candidate if candidate.is_absolute() else root / candidate
    try:
        real = Path(os.path.realpath(candidate))  # resolves symlinks and '..'
        if not _within(real, root):
            raise Rejected("image_path_outside_root", path_str)
        if not real.is_file():
            raise Rejected("image_file_missing", path_str)
        return real.read_bytes()
    except (OSError, ValueError) as e:  # unreadable, a name too long, a NUL byte in the string
        raise Rejected("image_file_unreadable", f"{path_str[:200]}: {e}") from None


def _read_s3_image(path_str: str, root: str) -> bytes:
    """An image path under an S3 input's root (remote.py): the same rules, keys instead of files."""
    target = join_under(root, path_str)
    if target is None:
        raise Rejected("image_path_outside_root", path_str)
    try:
        return read_bytes(target)
    except FileNotFoundError:
        raise Rejected("image_file_missing", path_str) from None
    except (OSError, ValueError) as e:
        raise Rejected("image_file_unreadable", f"{path_str[:200]}: {e}") from None


def _looks_like_path(s: str, root: Path | None) -> bool:
    # base64 never contains '.', and a short string naming an existing file is a path whatever it holds.
    if "." in s:
        return True
    if len(s) < 1024 and not is_s3(root):  # (an S3 root: no cheap existence check; decoding decides)
        p = Path(s)
        try:
            return (p if p.is_absolute() or root is None else root / p).exists()
        except (OSError, ValueError):  # a name too long, or with a NUL byte, is no file
            return False
    return False


def _decode_text(text: str, root: Path | None) -> bytes:
    """A string is a data URI, hex, base64, or a path to a file under root."""
    s = text.strip()
    if _DATA_URI.match(s):
        s = s.split(",", 1)[1]
    elif _looks_like_path(s, root):
        return read_image_file(s, root)
    if len(s) % 2 == 0 and _HEX.fullmatch(s):
        return binascii.unhexlify(s)
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        # Not an encoding: a path after all (missing / outside root is reported as such).
        return read_image_file(s, root)


def to_bytes(value, root: Path | None) -> bytes:
    """Bring one raw image value to encoded bytes (not yet validated)."""
    if value is None:
        raise Rejected("image_null")
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return to_bytes(value["bytes"], root)
        if value.get("path"):
            return read_image_file(str(value["path"]), root)
        raise Rejected("image_null")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return _decode_text(value, root)
    if isinstance(value, Image.Image):
        return encode_decoded(value)
    if isinstance(value, (list, tuple)):  # bytes serialised as a list of ints, e.g. via JSON
        try:
            return bytes(value)
        except (TypeError, ValueError):
            raise Rejected("image_unreadable", "list is not bytes 0..255") from None
    if hasattr(value, "__array_interface__"):  # numpy array of pixels
        try:
            return encode_decoded(Image.fromarray(value))
        except (TypeError, ValueError) as e:
            raise Rejected("image_unreadable", str(e)) from None
    raise Rejected("image_unreadable", f"unsupported type {type(value).__name__}")


def normalize_image(value, root: Path | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """One raw image -> validated encoded bytes with size and format; raises Rejected."""
    return probe(to_bytes(value, root), max_pixels)


def resize_image(data: bytes, fmt: str, size: tuple[int, int]) -> bytes:
    """Re-encode to `size` (width, height) in the image's own format family (JPEG stays JPEG)."""
    with Image.open(io.BytesIO(data)) as im:
        out = im.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    if fmt == "JPEG":
        out.convert("RGB").save(buf, format="JPEG", quality=95)
    else:
        out.save(buf, format="PNG")
    return buf.getvalue()
