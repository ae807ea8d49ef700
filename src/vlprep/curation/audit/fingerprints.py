"""Fingerprints of one image or one item (question + options): what the audit compares instead of the
contents themselves.

- an image: its content key (SHA-256 of the encoded bytes, first 128 bits) and a 64-bit perceptual hash
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
from PIL import Image

HASH_BITS = 64  # imagehash with hash_size=8: an 8x8 bit matrix, stored as one uint64
THUMBNAIL = 64  # decode images to about this size (smaller side) before hashing


class ImageUnhashable(Exception):
    """The bytes do not decode to pixels (the exact content key still applies)."""


def content_key(data: bytes) -> bytes:
    """Exact identity of encoded image bytes: SHA-256, first 128 bits (SHA-256 runs on the CPU's SHA
    instructions where present: ~2x blake2b or md5 here, and this is the audit's cost per image byte)."""
    return hashlib.sha256(data).digest()[:16]


def thumbnail(data: bytes, size: int = THUMBNAIL) -> Image.Image:
    """A grayscale image whose smaller side is about `size` (never below it unless the image is smaller),
    decoded cheaply: JPEG's DCT scaling via draft(), otherwise a box reduce() after decoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decompression-bomb warnings: hf_bytes already bounded sizes
        try:
            im = Image.open(io.BytesIO(data))
            if im.format == "JPEG":
                im.draft("L", (size, size))
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                # 16-bit / float scans: convert("L") would clip everything above 255 to white
                a = np.asarray(im, dtype=np.float64)
                lo, hi = float(a.min()), float(a.max())
                a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
                im = Image.fromarray(a.astype(np.uint8), "L")
            elif im.mode != "L":
                im = im.convert("L")
            factor = min(im.size) // size
            if factor > 1:
                im = im.reduce(factor)
            return im
        except Exception as e:  # Pillow raises many types for undecodable bytes
            raise ImageUnhashable(f"{type(e).__name__}: {e}") from None


def perceptual_hash(data: bytes, method: str = "phash") -> int:
    """64-bit perceptual hash (imagehash, hash_size=8) of the image's thumbnail, as an int."""
    import imagehash

    im = thumbnail(data)
    try:
        h = (imagehash.phash if method == "phash" else imagehash.dhash)(im, hash_size=8)
    except Exception as e:
        raise ImageUnhashable(f"{type(e).__name__}: {e}") from None
    return int.from_bytes(np.packbits(np.asarray(h.hash, dtype=bool).ravel()).tobytes(), "big")


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
    """Estimated Jaccard of the questions and of the options, (n, 2, num_perm) each: the lower of the two."""
    return (a == b).mean(axis=2).min(axis=1)

