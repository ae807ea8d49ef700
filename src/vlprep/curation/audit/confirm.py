"""Near-image confirmation: a perceptual hash only proposes candidates; a pair is a near copy when its
detail thumbnails (fingerprints.detail_thumbnail: luma DETAIL px square, chroma CHROMA px) agree in
structure, contrast and colour.

- structure: the normalised correlation of the two lumas' detail (a band-pass: a light blur minus a
  heavier one, so the layout many images share, a body on a radiograph or a pale background, does not
  count; an outline, a texture, a small finding does), once one is registered on the other. The
  registration is what a crop of <= 5% and a resize can do (no point moved by more than MAX_MOVE of the
  side): a coarse search at half resolution (shifts of one pixel, then a scale of 0.95-1.05 per axis
  and half pixels), then a fine one at full resolution (quarter pixels, scale steps of 1%) over all but
  a FINE_MARGIN border (what a crop may have cut). At least `near_image_min_structure`.
- contrast: the ratio of the two luma standard deviations, at most `near_image_max_contrast` (a black
  shape and a grey one share an outline; a +-10% brightness change scales contrast by 1.1 at most).
- colour: the mean chroma difference (|Cb| + |Cr|, 0-255 levels) of the registered, lightly blurred
  chroma planes, weighted towards what stands out of the median luma (the shape, not the background),
  at most `near_image_max_colour` (a red dot and a blue one; a recompression's smeared chroma is not).

All of it on small fixed-size arrays, CHUNK pairs at a time: memory does not depend on how many
candidates there are.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from vlprep.core.sections import AuditParams
from vlprep.curation.audit.fingerprints import CHROMA, DETAIL

COARSE = DETAIL // 2
SHIFT = 1  # integer shifts searched at COARSE (3% of the side; half pixels and scales add more)
SCALES = (0.95, 0.975, 1.0, 1.025, 1.05)  # per axis: a crop of <= 5% magnifies what is left by up to 1/0.95
MAX_MOVE = 0.055  # of the side: how far a crop of <= 5% (and a resize's rounding) moves any point
COARSE_BAND, FINE_BAND = (0.7, 4.0), (0.5, 2.0)  # the band-passes: blur sigmas in pixels of their resolution
REFINE_FROM = 0.7  # integer-shift scores below this are final (no pair of copies was seen below ~0.9)
FINE_FROM = 0.85  # coarse scores below this are final too
FINE_MARGIN = 4  # pixels of the border the fine correlation leaves out: what a crop may have cut
CHUNK = 1024  # pairs compared at a time (~100 KB of float32 work per pair)


def compare(query: np.ndarray, q_at: np.ndarray, train: np.ndarray, t_at: np.ndarray,
            config: AuditParams) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query[q_at[i]], train[t_at[i]]) of detail thumbnails ((n, THUMB_BYTES) uint8 arrays):
    (confirmed, structure) per pair. Each thumbnail is prepared once per chunk, however many pairs
    share it."""
    ok = np.zeros(len(q_at), dtype=bool)
    structure = np.zeros(len(q_at))
    for start in range(0, len(q_at), CHUNK):
        part = slice(start, start + CHUNK)
        (uq, iq), (ut, it) = (np.unique(at[part], return_inverse=True) for at in (q_at, t_at))
        ok[part], structure[part] = _compare(_Prepared(query[uq]), iq, _Prepared(train[ut]), it, config)
    return ok, structure


class _Prepared:
    """Thumbnails as float planes: luma, chroma, the luma's spread and its band-passes (coarse, fine)."""

    def __init__(self, thumbs: np.ndarray):
        thumbs = np.asarray(thumbs, dtype=np.uint8)
        self.luma = thumbs[:, : DETAIL * DETAIL].reshape(-1, DETAIL, DETAIL).astype(np.float32)
        self.chroma = thumbs[:, DETAIL * DETAIL :].reshape(-1, 2, CHROMA, CHROMA).astype(np.float32)
        self.spread = self.luma.std(axis=(1, 2))
        self.coarse = _band(_half(self.luma), *COARSE_BAND)
        self.fine = _band(self.luma, *FINE_BAND)


def _compare(q: _Prepared, iq: np.ndarray, t: _Prepared, it: np.ndarray, config: AuditParams) -> tuple[np.ndarray, np.ndarray]:
    sq, st = q.spread[iq], t.spread[it]
    contrast = (np.maximum(sq, st) + 1.0) / (np.minimum(sq, st) + 1.0)
    structure, transform = _coarse(q.coarse[iq], t.coarse[it])
    transform[:, 2:] *= 2  # shifts in full-resolution pixels (a scale about the centre keeps the centres)
    sel = np.flatnonzero((structure >= FINE_FROM) & (contrast <= config.near_image_max_contrast))
    if len(sel):
        structure[sel], transform[sel] = _fine(q.fine[iq[sel]], t.fine[it[sel]], transform[sel])
    ok = (structure >= config.near_image_min_structure) & (contrast <= config.near_image_max_contrast)
    sel = np.flatnonzero(ok)
    if len(sel):
        ok[sel] = _colour(q.luma[iq[sel]], q.chroma[iq[sel]], t.chroma[it[sel]], transform[sel]) <= config.near_image_max_colour
    return ok, structure.astype(np.float64)


def _half(luma: np.ndarray) -> np.ndarray:
    return luma.reshape(len(luma), COARSE, 2, COARSE, 2).mean(axis=(2, 4))


def _band(luma: np.ndarray, fine: float, coarse: float) -> np.ndarray:
    return gaussian_filter(luma, (0, fine, fine)) - gaussian_filter(luma, (0, coarse, coarse))


def _normalised(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    return x / (np.sqrt((x * x).sum(axis=(-2, -1), keepdims=True)) + 1e-3)


def _correlation(window: np.ndarray, planes: np.ndarray, transform: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return (window * _normalised(_sample(planes, transform, coords))).sum(axis=(1, 2))


def _coarse(dq: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best correlation of the query's inner window with the train plane under a transform (a scale per
    axis about the centre, then a shift), and that transform (scale y, scale x, dy, dx), per pair."""
    n, size = dq.shape[:2]
    m = SHIFT + 2
    window = _normalised(dq[:, m:size - m, m:size - m])
    side = 2 * SHIFT + 1
    grid = np.empty((n, side, side), dtype=np.float32)
    for i, dy in enumerate(range(-SHIFT, SHIFT + 1)):
        for j, dx in enumerate(range(-SHIFT, SHIFT + 1)):
            grid[:, i, j] = (window * _normalised(dt[:, m + dy:size - m + dy, m + dx:size - m + dx])).sum(axis=(1, 2))
    iy, ix = np.divmod(grid.reshape(n, -1).argmax(axis=1), side)
    best = grid[np.arange(n), iy, ix]
    transform = np.stack([np.ones(n), np.ones(n), iy - SHIFT, ix - SHIFT], axis=1).astype(np.float32)
    sel = np.flatnonzero(best >= REFINE_FROM)
    if not len(sel):
        return best, transform
    # sub-pixel offsets from parabolas through the best shift and its neighbours (none on the border)
    i, j, g, r = iy[sel], ix[sel], grid[sel], np.arange(len(sel))
    start = transform[sel].copy()
    for axis, pos, lo, hi in ((2, i, g[r, np.maximum(i - 1, 0), j], g[r, np.minimum(i + 1, side - 1), j]),
                              (3, j, g[r, i, np.maximum(j - 1, 0)], g[r, i, np.minimum(j + 1, side - 1)])):
        curve = lo - 2 * g[r, i, j] + hi
        offset = np.clip(0.5 * (lo - hi) / np.minimum(curve, -1e-6), -0.5, 0.5)
        start[:, axis] += np.where((pos > 0) & (pos < side - 1) & (curve < 0), offset, 0.0)
    # a scale per axis (a crop takes its own share of the width and of the height), then half pixels
    coords = np.arange(m, size - m, dtype=np.float32)
    scale_y, scale_x = ([(axis, s, axis, s) for s in SCALES] for axis in (0, 1))
    halves = [(2, d, 3, 0.0) for d in (-0.5, 0.5)] + [(2, 0.0, 3, d) for d in (-0.5, 0.5)]
    score, found = _search(window[sel], dt[sel], start, coords, [(scale_y, True), (scale_x, True), (halves, False)])
    better = score > best[sel]
    best[sel[better]], transform[sel[better]] = score[better], found[better]
    return best, transform


def _fine(dq: np.ndarray, dt: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coarse transform refined at full resolution: quarter-to-half pixel shifts and 1-2% scales,
    one axis at a time."""
    m = FINE_MARGIN
    window = _normalised(dq[:, m:DETAIL - m, m:DETAIL - m])
    coords = np.arange(m, DETAIL - m, dtype=np.float32)
    stages = []
    for step in (0.5, 0.25):
        for axis, delta in ((2, step), (3, step), (0, step / 25), (1, step / 25)):
            stages.append(([(axis, -delta, axis, 0.0), (axis, delta, axis, 0.0)], False))
    return _search(window, dt, start, coords, stages, include_start=True)


def _search(window, planes, start, coords, stages, include_start: bool = False):
    """Per pair, the best of a sequence of local moves: each stage tries its moves from the best transform
    so far, (axis a, value u, axis b, value v) setting (absolute=True) or adding to those two entries."""
    found = start.copy()
    score = _correlation(window, planes, found, coords) if include_start else np.full(len(window), -1.0, np.float32)
    for moves, absolute in stages:
        base = found.copy()
        for a, u, b, v in moves:
            t = base.copy()
            if absolute:
                t[:, a], t[:, b] = u, v
            else:
                t[:, a] += u
                t[:, b] += v
            value = np.where(_feasible(t, planes.shape[1]), _correlation(window, planes, t, coords), -1.0)
            better = value > score
            score[better], found[better] = value[better], t[better]
    return score, found


def _feasible(transform: np.ndarray, size: int) -> np.ndarray:
    """Whether a transform moves no point of the plane by more than MAX_MOVE of its side (per axis, a
    scale about the centre moves the border by |s - 1| half sides): a crop cannot move a shape further,
    so nor may the registration, or two shapes a few pixels apart would align as well as a copy."""
    half = (size - 1) / 2
    move = np.abs(transform[:, 2:]) + np.abs(transform[:, :2] - 1) * half
    return (move <= MAX_MOVE * size).all(axis=1)


def _sample(planes: np.ndarray, transform: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """planes (n, size, size) sampled bilinearly at coords x coords mapped per pair by its transform (a
    scale per axis about the centre, then a shift, in the planes' pixels): rows first, then columns."""
    size = planes.shape[1]
    c = (size - 1) / 2
    sy, sx, dy, dx = (transform[:, k, None] for k in range(4))
    ys = np.clip((coords[None] - c) * sy + c + dy, 0, size - 1.001)
    xs = np.clip((coords[None] - c) * sx + c + dx, 0, size - 1.001)
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)[:, None, :]
    fy, fx = (ys - y0)[:, :, None].astype(np.float32), (xs[:, None, :] - x0).astype(np.float32)
    k = np.arange(len(planes))[:, None]
    rows = planes[k, y0] * (1 - fy) + planes[k, y0 + 1] * fy
    return np.take_along_axis(rows, x0, axis=2) * (1 - fx) + np.take_along_axis(rows, x0 + 1, axis=2) * fx


def _colour(yq: np.ndarray, cq: np.ndarray, ct: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Mean |dCb| + |dCr| over the registered chroma (both blurred alike: a recompression's chroma
    subsampling smears a small shape's colour, which the blur evens out far more than it mixes two
    different colours), weighted by how far the query stands out of its median luma there."""
    ratio = DETAIL // CHROMA
    t = transform.copy()
    t[:, 2:] /= ratio  # full-resolution pixel shifts -> chroma pixels
    m = 2
    inner = slice(m, CHROMA - m)
    coords = np.arange(m, CHROMA - m, dtype=np.float32)
    cq, ct = gaussian_filter(cq, (0, 0, 1.0, 1.0)), gaussian_filter(ct, (0, 0, 1.0, 1.0))
    diff = sum(np.abs(cq[:, c, inner, inner] - _sample(ct[:, c], t, coords)) for c in range(2))
    dev = np.abs(yq - np.median(yq.reshape(len(yq), -1), axis=1)[:, None, None])
    weight = dev.reshape(len(yq), CHROMA, ratio, CHROMA, ratio).mean(axis=(2, 4))[:, inner, inner]
    total = weight.sum(axis=(1, 2))
    weighted = (weight * diff).sum(axis=(1, 2)) / np.maximum(total, 1e-6)
    return np.where(total > 1e-3, weighted, diff.mean(axis=(1, 2)))
