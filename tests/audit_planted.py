"""Generated data built to fool a low-frequency perceptual hash, with planted copies of test items.

Two families of distinct images, each drawn without repeating a spec, so no two of them are the same
picture (checked by the tests: RMS difference at a common size):
- `figure`: one or two small shapes (triangle, square, circle, diamond, cross) in a few strong colours on a
  pale background, 64 px: the layout's low frequencies are nearly the same for all of them;
- `radiograph`: a low-contrast grey field (a body-like ellipse shared by all, a faint texture of its own)
  with one small local finding, 96 px; or a near-uniform field with only the finding.

Planted copies of a test image, one per transform: re-encoded, resized (0.5-2x), recompressed,
brightness-shifted (+-10%), lightly cropped (<= 5%). Questions are templated ("What color is the
shape?"), so text alone cannot tell the items apart.
"""
from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

COLOURS = {
    "red": (214, 39, 40), "blue": (31, 80, 200), "black": (20, 20, 20), "green": (44, 160, 44),
    "orange": (255, 127, 14), "purple": (148, 80, 189), "brown": (140, 86, 75), "grey": (127, 127, 127),
}
SHAPES = ("triangle", "square", "circle", "diamond", "cross")
BACKGROUNDS = ((246, 246, 240), (250, 250, 250), (240, 243, 248))
TRANSFORMS = ("reencode", "resize", "recompress", "brightness", "crop")


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=fill)
    elif shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    else:  # cross
        w = r * 0.35
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)


def figure_specs(rng: np.random.Generator, n: int) -> list[tuple]:
    """n figure specs: (background, ((shape, colour, x, y, radius), ...)), one or two shapes of radius 5-10
    px at places drawn at random (the second one away from the first), on one of three pale backgrounds.
    A spec that a <= 5% crop of another could produce (the same shapes and colours, each within 5 px and
    15% in size) is drawn again: two such figures are not distinct pictures."""
    specs = []
    while len(specs) < n:
        first = _random_shape(rng)
        shapes = (first,)
        if rng.random() < 0.3:
            second = _random_shape(rng)
            while abs(second[2] - first[2]) + abs(second[3] - first[3]) < 24:
                second = _random_shape(rng)
            shapes = (first, second)
        if not any(_crop_twins(shapes, other) for _, other in specs):
            specs.append((int(rng.integers(len(BACKGROUNDS))), shapes))
    return specs


def _crop_twins(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(
        s[:2] == t[:2] and np.hypot(s[2] - t[2], s[3] - t[3]) < 7 and max(s[4], t[4]) / min(s[4], t[4]) < 1.25
        for s, t in zip(a, b))


def _random_shape(rng: np.random.Generator) -> tuple:
    return (SHAPES[int(rng.integers(len(SHAPES)))], list(COLOURS)[int(rng.integers(len(COLOURS)))],
            float(rng.uniform(12, 52)), float(rng.uniform(12, 52)), float(rng.uniform(5, 10)))


def figure(spec: tuple, size: int = 64) -> Image.Image:
    background, shapes = spec
    im = Image.new("RGB", (size, size), BACKGROUNDS[background])
    draw = ImageDraw.Draw(im)
    for shape, colour, x, y, r in shapes:
        _shape(draw, shape, x * size / 64, y * size / 64, r * size / 64, COLOURS[colour])
    return im


def _layout(size: int, uniform: bool) -> np.ndarray:
    """What every scan of a family shares: a soft bright ellipse on a dark field (a body), or a near-uniform
    field with a gentle vignette (a slide, a flat-panel field)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    if uniform:
        return 118.0 - 6.0 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 4
    d = ((xx - 0.5) / 0.38) ** 2 + ((yy - 0.52) / 0.45) ** 2
    return 50.0 + 45.0 / (1.0 + np.exp((d - 1.0) * 12.0))


def radiograph(seed: int, size: int = 96) -> tuple[Image.Image, str]:
    """A low-contrast grey 'scan': the family's shared layout (even seeds: a body, odd: a near-uniform
    field), a fine texture of its own (+-6 grey levels, features ~6 px: what a 64-bit pHash of the lowest
    frequencies does not see), and one small finding (a disc of radius 2-4 px, +-18 levels) at a place of
    its own on a 6 x 6 grid 12 px apart."""
    rng = np.random.default_rng(seed)
    field = _layout(size, uniform=seed % 2 == 1)
    fine = rng.normal(0.0, 1.0, size=(16, 16))
    texture = np.asarray(Image.fromarray(fine.astype(np.float32), "F").resize((size, size), Image.Resampling.BICUBIC))
    field = field + texture * 6.0
    gx, gy = rng.integers(0, 6, size=2)
    cx, cy = (18 + 12 * gx) * size / 96, (18 + 12 * gy) * size / 96
    r = float(rng.uniform(2.0, 4.0)) * size / 96
    yy, xx = np.mgrid[0:size, 0:size]
    disc = 1.0 / (1.0 + np.exp((np.hypot(xx - cx, yy - cy) - r) * 2.0))
    contrast = float(rng.choice([-18.0, 18.0]))
    field = field + disc * contrast + rng.normal(0.0, 1.0, size=field.shape)
    return Image.fromarray(np.clip(np.round(field), 0, 255).astype(np.uint8), "L"), "bright" if contrast > 0 else "dark"


def transformed(im: Image.Image, transform: str, rng: np.random.Generator) -> bytes:
    """A copy of im by one transform, as a user's pipeline would make one."""
    if transform == "reencode":  # PNG -> JPEG
        return encode(im.convert("RGB"), "JPEG", quality=92)
    if transform == "resize":
        f = float(rng.choice([0.5, 0.75, 1.5, 2.0]))
        w, h = im.size
        return encode(im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS), "PNG")
    if transform == "recompress":
        return encode(encode_jpeg_then_open(im, 90), "JPEG", quality=int(rng.integers(35, 60)))
    if transform == "brightness":
        return encode(ImageEnhance.Brightness(im).enhance(float(rng.choice([0.9, 1.1]))), "PNG")
    if transform == "crop":  # <= 5% of the width and of the height, split at random between the sides
        w, h = im.size
        cw, ch = round(w * rng.uniform(0.02, 0.05)), round(h * rng.uniform(0.02, 0.05))
        left, top = int(rng.integers(0, cw + 1)), int(rng.integers(0, ch + 1))
        return encode(im.crop((left, top, w - (cw - left), h - (ch - top))), "PNG")
    raise ValueError(transform)


def encode_jpeg_then_open(im: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(encode(im.convert("RGB"), "JPEG", quality=quality)))


FIGURE_QUESTIONS = ("What color is the shape?", "Is there a triangle in the image?", "How many shapes are there?",
                    "What shape is in the image?")
SCAN_QUESTIONS = ("Is there an abnormality in this image?", "Is the lesion bright or dark?",
                  "Which imaging modality was used?")
MODALITY_OPTIONS = {"A": "CT", "B": "MRI", "C": "X-ray", "D": "Ultrasound"}


def question(about: dict, k: int) -> tuple[str, dict | None, str | None]:
    """A templated question about an image and its true answer: (question, options, answer)."""
    if about["family"] == "figure":
        q = FIGURE_QUESTIONS[k % len(FIGURE_QUESTIONS)]
        shapes = about["shapes"]
        answer = {0: shapes[0][1], 1: "yes" if any(s[0] == "triangle" for s in shapes) else "no",
                  2: str(len(shapes)), 3: shapes[0][0]}[k % len(FIGURE_QUESTIONS)]
        return q, None, answer
    q = SCAN_QUESTIONS[k % len(SCAN_QUESTIONS)]
    if "modality" in q:
        return q, MODALITY_OPTIONS, "X-ray"
    return q, None, "yes" if "abnormality" in q else about["finding"]


def row(image: bytes, q: tuple, name: str, index: int, about: dict):
    question_text, options, answer = q
    return {"images": [{"bytes": image, "path": None}], "question": question_text,
            "options": json.dumps(options) if options else None, "answer_label": "C" if options else None,
            "answer": answer, "reasoning": None, "dataset_name": name, "dataset_index": index, "hash": None,
            "misc": json.dumps(about), "question_type": "mcq" if options else "open"}


def distinct_images(n: int, rng: np.random.Generator, seed: int) -> list[tuple[dict, Image.Image]]:
    """n distinct pictures, half figures and half scans, interleaved, with what each shows."""
    out = []
    for i, spec in enumerate(figure_specs(rng, n // 2)):
        out.append(({"family": "figure", "background": spec[0], "shapes": [list(s) for s in spec[1]]}, figure(spec)))
        s = seed * 100_000 + i
        im, finding = radiograph(s)
        out.append(({"family": "uniform" if s % 2 else "body", "seed": s, "finding": finding}, im))
    return out[:n]


def planted_splits(n_test: int = 120, n_train_other: int = 1200, copies_per_transform: int = 24, seed: int = 0):
    """(train rows, test rows, truth): test images and train images are distinct pictures, each asked one
    templated question with its true answer; then, per transform, a train row holding a copy of a test
    image with that test row's question and answer, placed at random among the others. Every train row
    shares its question text with many test rows: text alone tells nothing. Each row's `misc` says what
    its image shows (JSON).

    truth: {train row: (test row, transform)} for the planted rows; every other train row is clean."""
    rng = np.random.default_rng(seed)
    images = distinct_images(n_test + n_train_other, rng, seed)
    order = rng.permutation(len(images))
    test_images = [images[i] for i in order[:n_test]]
    train_images = [images[i] for i in order[n_test:]]
    test = [row(encode(im), question(about, int(rng.integers(0, 12))), "te", i, about)
            for i, (about, im) in enumerate(test_images)]
    train = [row(encode(im), question(about, int(rng.integers(0, 12))), "tr", i, about)
             for i, (about, im) in enumerate(train_images)]
    truth = {}
    for transform in TRANSFORMS:
        for t in rng.choice(n_test, size=copies_per_transform, replace=False).tolist():
            source = test[t]
            about, im = test_images[t]
            truth[len(train)] = (t, transform)
            q = (source["question"], json.loads(source["options"]) if source["options"] else None, source["answer"])
            train.append(row(transformed(im, transform, rng), q, "tr", len(train),
                             {**about, "copy_of": t, "transform": transform}))
    perm = rng.permutation(len(train))
    train = [train[p] for p in perm]
    where = {int(p): new for new, p in enumerate(perm.tolist())}
    truth = {where[r]: v for r, v in truth.items()}
    for i, r in enumerate(train):
        r["dataset_index"] = i
    return train, test, truth
