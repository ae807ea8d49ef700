"""Fingerprints of one image or one item (question + options): what the audit compares instead of the
contents themselves.

- an image: its content key (XXH3-128 of the encoded bytes) and a 64-bit perceptual hash
  (imagehash pHash or dHash) of a cheaply decoded grayscale thumbnail;
- an item: its key after normalisation (case, Unicode form, punctuation, whitespace; option labels and
  order ignored) and MinHash signatures of the word shingles of its question and of its options.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
import warnings

import numpy as np
import xxhash
from PIL import Image, ImageFilter

HASH_BITS = 64  # imagehash with hash_size=8: an 8x8 bit matrix, stored as one uint64
THUMBNAIL = 64  # decode images to about this size (smaller side) before hashing
DETAIL, CHROMA = 32, 16  # the detail thumbnail: luma at DETAIL x DETAIL, chroma at CHROMA x CHROMA
THUMB_BYTES = DETAIL * DETAIL + 2 * CHROMA * CHROMA


class ImageUnhashable(Exception):
    """The bytes do not decode to pixels (the exact content key still applies)."""


def content_key(data: bytes) -> bytes:
    """Exact identity of encoded image bytes: XXH3-128. This is the audit's cost per image byte, and
    XXH3 runs at ~28 GB/s here where SHA-256 ran at 1.6 (15% of the audit's time at 20k rows); a
    non-cryptographic 128-bit hash tells apart accidental copies as well, and the audit needs no more."""
    return xxhash.xxh3_128_digest(data)


def decode(data: bytes, size: int = THUMBNAIL, colour: bool = False) -> Image.Image:
    """The image, mode L (or, with colour=True, YCbCr for a colour image), whose smaller side is about
    `size` (never below it unless the image is smaller), decoded cheaply: JPEG's DCT scaling via draft()
    (in its own YCbCr: no colour conversion), otherwise a box reduce() after decoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decompression-bomb warnings: hf_bytes already bounded sizes
        try:
            im = Image.open(io.BytesIO(data))
            if im.format == "JPEG":
                im.draft("YCbCr" if colour else "L", (size, size))
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                # 16-bit / float scans: convert("L") would clip everything above 255 to white
                a = np.asarray(im, dtype=np.float64)
                lo, hi = float(a.min()), float(a.max())
                a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
                im = Image.fromarray(a.astype(np.uint8), "L")
            elif im.mode in ("1", "LA", "La") or (im.mode != "L" and not colour):
                im = im.convert("L")
            elif im.mode not in ("L", "YCbCr"):
                im = (im if im.mode == "RGB" else im.convert("RGB")).convert("YCbCr")
            factor = min(im.size) // size
            if factor > 1:
                im = im.reduce(factor)
            return im
        except Exception as e:  # Pillow raises many types for undecodable bytes
            raise ImageUnhashable(f"{type(e).__name__}: {e}") from None


def thumbnail(data: bytes, size: int = THUMBNAIL) -> Image.Image:
    """A grayscale image whose smaller side is about `size` (see decode)."""
    return decode(data, size)


def perceptual_hash(data: bytes, method: str = "phash") -> int:
    """64-bit perceptual hash (imagehash, hash_size=8) of the image's thumbnail, as an int."""
    return _perceptual_hash(thumbnail(data), method)


def _perceptual_hash(grey: Image.Image, method: str) -> int:
    import imagehash

    try:
        h = (imagehash.phash if method == "phash" else imagehash.dhash)(grey, hash_size=8)
    except Exception as e:
        raise ImageUnhashable(f"{type(e).__name__}: {e}") from None
    return _bits(np.asarray(h.hash, dtype=bool))


def _bits(m: np.ndarray) -> int:
    return int.from_bytes(np.packbits(m.ravel()).tobytes(), "big")


def layout_hash(luma: Image.Image) -> int:
    """64 bits: which cells of an 8 x 8 grid of the blurred DETAIL px luma are brighter than its mean (an
    average hash). Coarser than pHash, but a crop of a few percent moves its cells by a fraction of a
    cell, where pHash's highest coefficients turn by up to half a period: the second candidate search,
    for cropped copies of images whose content is small (a shape, a finding on a flat field)."""
    im = luma.filter(ImageFilter.GaussianBlur(DETAIL / 16))
    a = np.asarray(im.resize((8, 8), Image.Resampling.BOX), dtype=np.float64)
    return _bits(a > a.mean())


def detail_thumbnail(im: Image.Image, luma: Image.Image) -> bytes:
    """What the confirmation compares (confirm.py): the luma at DETAIL x DETAIL and the two chroma planes
    (Cb, Cr) at CHROMA x CHROMA, uint8, THUMB_BYTES in all; aspect ratio not kept (a crop changes it).
    im: mode L or YCbCr; luma: its luma at DETAIL x DETAIL."""
    if im.mode == "L":
        return luma.tobytes() + bytes([128]) * (2 * CHROMA * CHROMA)
    resample = Image.Resampling.BOX if min(im.size) >= CHROMA else Image.Resampling.BILINEAR
    return luma.tobytes() + b"".join(im.getchannel(c).resize((CHROMA, CHROMA), resample).tobytes() for c in (1, 2))


def image_fingerprint(data: bytes, method: str = "phash") -> tuple[int, int, bytes]:
    """(perceptual hash, layout hash, detail thumbnail) of encoded image bytes, from one decode."""
    im = decode(data, colour=True)
    grey = im if im.mode == "L" else im.getchannel(0)  # YCbCr's Y is the luma convert("L") computes
    try:
        resample = Image.Resampling.BOX if min(im.size) >= DETAIL else Image.Resampling.BILINEAR
        luma = grey.resize((DETAIL, DETAIL), resample)
        return _perceptual_hash(grey, method), layout_hash(luma), detail_thumbnail(im, luma)
    except ImageUnhashable:
        raise
    except Exception as e:
        raise ImageUnhashable(f"{type(e).__name__}: {e}") from None


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


# ---------------------------------------------------------------- items

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str | None) -> str:
    """Case, Unicode form, punctuation and whitespace removed: 'What is  this?' == 'what is this'."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text or "").casefold()).strip()


def item_parts(question: str | None, options: str | None) -> tuple[str, list[str]]:
    """Normalised question and the normalised option texts, sorted (labels and order ignored)."""
    try:
        parsed = json.loads(options) if options else {}
    except (TypeError, ValueError):
        parsed = {"": options}
    values = parsed.values() if isinstance(parsed, dict) else parsed if isinstance(parsed, list) else [parsed]
    return normalize_text(question), sorted(normalize_text(str(v)) for v in values if v is not None)


def item_key(question: str | None, options: str | None) -> bytes:
    """Exact identity of an item after normalisation: 128-bit blake2b."""
    q, opts = item_parts(question, options)
    return hashlib.blake2b("\x1f".join([q, *opts]).encode(), digest_size=16).digest()


def question_key(question: str | None) -> int:
    """64-bit identity of the normalised question alone: what a template is counted by."""
    return _key64(normalize_text(question))


def answer_key(answer: str | None, answer_label: str | None, options: str | None) -> int:
    """64-bit identity of the normalised answer: the option text its label names (option order and labels
    differ between copies), else the answer text; 0 when there is neither."""
    try:
        parsed = json.loads(options) if options else {}
    except (TypeError, ValueError):
        parsed = {}
    text = parsed.get(answer_label) if isinstance(parsed, dict) and answer_label else None
    text = normalize_text(str(text if text is not None else answer or ""))
    return _key64(text) if text else 0


def _key64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") or 1


def item_shingles(question: str | None, options: str | None, k: int) -> tuple[set[bytes], set[bytes]]:
    """Word k-grams of the question, and of the options (within each option, so none spans two);
    a text shorter than k words is one shingle. Question and options are compared separately: an item
    is near another only if both are, so a template question with other options is not."""
    q, opts = item_parts(question, options)
    sets: tuple[set[bytes], set[bytes]] = (set(), set())
    for out, prefix, text in [(sets[0], "q", q), *((sets[1], "o", o) for o in opts)]:
        words = text.split()
        if words:
            grams = [words[i : i + k] for i in range(max(1, len(words) - k + 1))]
            out.update(f"{prefix} {' '.join(g)}".encode() for g in grams)
    return sets


EMPTY_SIGNATURE = 0xFFFFFFFF  # every value of the MinHash of no shingle (datasketch's largest hash)


class MinHasher:
    """datasketch MinHash with one shared permutation scheme; signatures as uint32 arrays."""

    def __init__(self, num_perm: int, seed: int = 1):
        from datasketch import MinHash

        self._cls = MinHash
        self.num_perm = num_perm
        self.seed = seed
        self.permutations = MinHash(num_perm=num_perm, seed=seed).permutations

    def signature(self, shingles: set[bytes]) -> np.ndarray:
        m = self._cls(num_perm=self.num_perm, seed=self.seed, permutations=self.permutations, scheme="affine32")
        m.update_batch(sorted(shingles))
        return np.asarray(m.hashvalues, dtype=np.uint32)


def item_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of the questions and, where both items have options, of the options, (n, 2,
    num_perm) each: the lower of the two. An item without options agrees with any options."""
    both = (a[:, 1, 0] != EMPTY_SIGNATURE) & (b[:, 1, 0] != EMPTY_SIGNATURE)
    same = a == b
    question, options = same[:, 0].mean(axis=1), same[:, 1].mean(axis=1)
    return np.where(both, np.minimum(question, options), question)
