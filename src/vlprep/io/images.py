"""Any image form a raw row may carry -> encoded image bytes, or a named reason it is unusable.

Valid encoded bytes pass through untouched: validity and size come from the header (plus PNG's chunk
CRCs and JPEG's end marker for truncation), never from a pixel decode, which costs ~7x the whole I/O
of a stage. Only already-decoded images (PIL / numpy) are encoded, as PNG. The header walks also say
whether an image is ordinary (`PngLayout.ordinary`, `JpegLayout.ordinary`), which the image pre-flight
(io/preflight.py) uses to leave ordinary images untouched without decoding them."""
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
    # What the pre-flight did (names of FIXES, in order; empty: the bytes are the input's) and whether
    # every pixel has one value (kept with blank_image: keep, and counted).
    fixes: tuple[str, ...] = ()
    blank: bool = False


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (they carry the size): C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class PngLayout:
    """What the chunk walk saw of a structurally complete PNG."""

    width: int
    height: int
    bit_depth: int
    color_type: int  # 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA
    interlaced: bool
    transparency: bool  # a tRNS chunk
    exif: bool  # an eXIf chunk, or a text chunk Pillow reads orientation from
    idat: tuple[tuple[int, int], ...]  # (start, end) of each IDAT chunk's data

    @property
    def ordinary(self) -> bool:
        """8-bit grey or RGB, no transparency, no EXIF: what the processors read right as it is."""
        return self.bit_depth == 8 and self.color_type in (0, 2) and not (self.transparency or self.exif)


# Text chunks whose keyword makes Pillow's getexif() (and so ImageOps.exif_transpose) see an orientation.
_PNG_EXIF_KEYWORDS = (b"Raw profile type exif", b"XML:com.adobe.xmp")


def _png_walk(data: bytes) -> PngLayout | None:
    """Layout of a structurally complete PNG, every chunk's CRC checked (what Pillow's verify() does),
    or None when anything is unusual, leaving the verdict to Pillow."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    bit_depth, color_type, interlace = data[24], data[25], data[28]
    transparency = exif = False
    idat = []
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length
        if end > len(data):
            return None
        kind_and_data = data[pos + 4 : end - 4]
        if zlib.crc32(kind_and_data) != struct.unpack(">I", data[end - 4 : end])[0]:
            return None
        kind = kind_and_data[:4]
        if kind == b"IEND":
            return PngLayout(width, height, bit_depth, color_type, interlace != 0, transparency, exif, tuple(idat))
        if kind == b"IDAT":
            idat.append((pos + 8, end - 4))
        elif kind == b"tRNS":
            transparency = True
        elif kind == b"eXIf" or (kind in (b"tEXt", b"zTXt", b"iTXt")
                                 and kind_and_data[4:].split(b"\0", 1)[0] in _PNG_EXIF_KEYWORDS):
            exif = True
        pos = end
    return None


@dataclass(frozen=True)
class JpegLayout:
    """What the marker walk saw of a JPEG, up to its first scan."""

    width: int
    height: int
    precision: int
    sampling: tuple[tuple[int, int], ...]  # (horizontal, vertical) sampling factor of each component
    orientation: int | None  # EXIF orientation; None: none, or not read here (see `unusual`)
    # EXIF / XMP that may carry an orientation this walk does not read, or odd sampling: Pillow decides
    unusual: bool
    scan_start: int  # offset of the first start-of-scan marker

    @property
    def ordinary(self) -> bool:
        """8-bit greyscale or 3-component colour (Pillow: L / RGB), upright: read right as it is."""
        return (self.precision == 8 and len(self.sampling) in (1, 3) and not self.unusual
                and self.orientation not in ORIENTATIONS)

    @property
    def blocks(self) -> int:
        """8x8 blocks coded in the scan(s), padding blocks of partial MCUs included (an upper bound)."""
        h_max = max(h for h, _ in self.sampling)
        v_max = max(v for _, v in self.sampling)
        mcus = -(-self.width // (8 * h_max)) * -(-self.height // (8 * v_max))
        return mcus * sum(h * v for h, v in self.sampling)


# EXIF orientations that ImageOps.exif_transpose acts on (1 is upright; others are ignored by it too).
ORIENTATIONS = range(2, 9)
_EXIF_APP1 = b"Exif\0\0"
_XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\0"


def _exif_orientation(tiff: bytes) -> int | None:
    """IFD0's Orientation tag (where Pillow's getexif() reads it) of a TIFF-structured EXIF block, None
    when absent; ValueError / struct.error when the block is not plain enough to read here."""
    order = {b"II": "<", b"MM": ">"}[tiff[:2]]  # KeyError: not TIFF
    magic, offset = struct.unpack(order + "HI", tiff[2:8])
    if magic != 42:
        raise ValueError("not TIFF")
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    for i in range(count):
        entry = tiff[offset + 2 + 12 * i : offset + 14 + 12 * i]
        tag, kind, n = struct.unpack(order + "HHI", entry[:8])
        if tag == 0x0112:
            if kind != 3 or n != 1:  # not one SHORT: let Pillow read it
                raise ValueError("unusual orientation entry")
            return struct.unpack(order + "H", entry[8:10])[0]
    return None


def _jpeg_walk(data: bytes) -> JpegLayout | None:
    """Layout from the start-of-frame segment, after walking every marker segment up to the scan as Pillow
    does, or None when anything is unusual (Pillow decides): a damaged marker after the frame header
    makes Pillow refuse the file (found by hypothesis), so it must not pass here either."""
    pos, frame = 2, None
    exif_segments, unusual, orientation = 0, False, None
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
            if frame is None:
                return None
            return JpegLayout(*frame, orientation, unusual or exif_segments > 1, pos)
        if marker in _JPEG_SOF:
            if frame is not None:
                return None  # a second frame header: unusual
            length, precision, height, width, components = struct.unpack(">HBHHB", data[pos + 2 : pos + 10])
            # A frame header is exactly 8 bytes + 3 per component; any other length is damage Pillow
            # may refuse (found by hypothesis), so it decides.
            if length != 8 + 3 * components or pos + 2 + length > len(data) or not (width and height):
                return None
            factors = [data[pos + 11 + 3 * i] for i in range(components)]  # after each component's id
            sampling = tuple((f >> 4, f & 15) for f in factors)
            if not all(h and v for h, v in sampling):
                unusual = True  # sampling factors of 0: not ordinary, Pillow decides
                sampling = tuple((max(h, 1), max(v, 1)) for h, v in sampling)
            frame = (width, height, precision, sampling)
        elif marker == 0xE1:  # APP1: EXIF or XMP, where an orientation lives
            segment = data[pos + 4 : pos + 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]]
            if segment.startswith(_EXIF_APP1):
                exif_segments += 1
                try:
                    orientation = _exif_orientation(segment[6:])
                except (KeyError, ValueError, struct.error):
                    unusual = True
            elif segment.startswith(_XMP_APP1) and b"tiff:Orientation" in segment:
                unusual = True
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
    return probe_layout(data, max_pixels)[0]


def stored_size(data: bytes) -> ImageInfo:
    """Format and size of an image probe() already accepted (an hf_bytes image), from its header alone:
    the trainer targets need only the size, and probe()'s CRC walk over every PNG byte cost them ~6x
    more than this (0.25 vs 0.04 CPU-s per GB)."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR":
        return ImageInfo(data, *struct.unpack(">II", data[16:24]), "PNG")
    layout = _jpeg_walk(data) if data.startswith(b"\xff\xd8") else None
    return ImageInfo(data, layout.width, layout.height, "JPEG") if layout else probe(data)


def probe_layout(data: bytes, max_pixels: int) -> tuple[ImageInfo, PngLayout | JpegLayout | None]:
    """probe(), plus the layout the header walk saw (None where Pillow read the header)."""
    if not data:
        raise Rejected("image_empty")
    layout = None
    if data.startswith(_PNG_SIGNATURE):
        fmt, layout = "PNG", _png_walk(data)
    elif data.startswith(b"\xff\xd8"):
        fmt, layout = "JPEG", _jpeg_walk(data)
    try:
        if layout is None:
            fmt, *size = _pillow_header(data)
        else:
            size = layout.width, layout.height
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
    return ImageInfo(data, width, height, fmt), layout


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
    """One raw image -> validated encoded bytes with size and format; raises Rejected. hf_bytes goes
    through io/preflight.py's preflight_image instead, which also makes it safe for the processors."""
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
