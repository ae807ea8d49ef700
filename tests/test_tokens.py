"""Image-token counts against transformers' own Qwen2-VL image processor (its PIL backend: no torch)."""
import warnings

import numpy as np
import pytest
from PIL import Image

from vlprep.prompting.profiles import MAX_PIXELS, MIN_PIXELS, ImageShapeError, image_tokens, smart_resize

SIZES = [
    (3, 3), (10, 10), (27, 29), (28, 28), (56, 56), (56, 112), (84, 28), (100, 50), (224, 224),
    (333, 777), (640, 480), (1000, 5), (1500, 10), (12, 2000), (1024, 1024),
]
LIMITS = [(MIN_PIXELS, MAX_PIXELS), (MIN_PIXELS, 64 * 28 * 28), (256 * 28 * 28, 1280 * 28 * 28), (100, 50_000)]


@pytest.fixture(scope="module")
def processor_tokens():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    def count(width, height, min_pixels, max_pixels):
        proc = Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
        image = Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8))
        t, h, w = proc(images=[image], return_tensors="np")["image_grid_thw"][0]
        return int(t * h * w) // proc.merge_size**2

    return count


@pytest.mark.parametrize("limits", LIMITS)
@pytest.mark.parametrize("size", SIZES)
def test_image_tokens_match_the_qwen2_vl_processor(size, limits, processor_tokens):
    width, height = size
    assert image_tokens(width, height, *limits) == processor_tokens(width, height, *limits)


def test_above_max_pixels_is_scaled_into_the_budget():
    h, w = smart_resize(8000, 6000)
    assert h * w <= MAX_PIXELS and h % 28 == 0 and w % 28 == 0
    assert image_tokens(6000, 8000) <= MAX_PIXELS // (28 * 28)


def test_extreme_aspect_ratio_is_refused_like_the_processor(processor_tokens):
    with pytest.raises(ImageShapeError):
        image_tokens(5, 1100)
    with pytest.raises(ValueError):
        processor_tokens(5, 1100, MIN_PIXELS, MAX_PIXELS)
