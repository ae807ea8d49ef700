"""Property-based tests of the image normaliser and the prompt builder."""
import base64
import io
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlprep.core.metrics import Rejected
from vlprep.io.images import normalize_image
from vlprep.prompting.prompts import INSTRUCTION, IMAGE_MARKER, ordered_options, problem_text, verl_prompt_content

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.one_of(st.binary(max_size=300), st.text(max_size=200), st.lists(st.integers(-5, 300), max_size=50),
                 st.none(), st.integers(), st.dictionaries(st.sampled_from(["bytes", "path"]), st.one_of(st.none(), st.binary(max_size=50), st.text(max_size=20)))))
def test_any_value_is_an_image_or_a_named_rejection(tmp_path_factory, value):
    root = tmp_path_factory.getbasetemp()
    try:
        info = normalize_image(value, root)
    except Rejected as e:
        assert e.reason.startswith("image_")
    else:
        assert info.width > 0 and info.height > 0 and info.data


@FAST
@given(
    width=st.integers(1, 300), height=st.integers(1, 300), fmt=st.sampled_from(["PNG", "JPEG", "WEBP", "GIF", "BMP"]),
    mode=st.sampled_from(["RGB", "L"]), form=st.sampled_from(["bytes", "struct", "base64", "hex", "ints"]),
)
def test_valid_images_pass_through_byte_for_byte(tmp_path_factory, width, height, fmt, mode, form):
    buf = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buf, format=fmt)
    data = buf.getvalue()
    value = {"bytes": data, "struct": {"bytes": data, "path": None}, "base64": base64.b64encode(data).decode(),
             "hex": data.hex(), "ints": list(data)}[form]
    info = normalize_image(value, tmp_path_factory.getbasetemp())
    assert info.data == data and (info.width, info.height) == (width, height) and info.format == fmt


option_keys = st.one_of(st.sampled_from(list("ABCDEFGH")), st.text(min_size=1, max_size=3).filter(lambda k: k.strip() == k))
no_marker_text = st.text(max_size=80).filter(lambda t: IMAGE_MARKER not in t)


@FAST
@given(question=no_marker_text, options=st.dictionaries(option_keys, no_marker_text, min_size=1, max_size=7), n=st.integers(0, 6))
def test_prompt_structure(question, options, n):
    content = verl_prompt_content(n, question, options)
    assert content.startswith(IMAGE_MARKER * n + INSTRUCTION + "\n\nQuestion: " + question + "\n\nOptions:")
    assert content.count(IMAGE_MARKER) == n
    ordered = ordered_options(options)
    assert sorted(ordered) == sorted(options.items())  # nothing lost or duplicated
    letters = [k for k, _ in ordered if k in "ABCDE" and len(k) == 1]
    assert letters == sorted(letters) and [k for k, _ in ordered[: len(letters)]] == letters  # A-E first, in order
    others = [k for k, _ in ordered[len(letters):]]
    assert others == [k for k in options if not (k in "ABCDE" and len(k) == 1)]  # the rest keep their order
    assert content.endswith("".join(f"\n\n{k}. {v}" for k, v in ordered))
    assert problem_text(question, json.dumps(options, ensure_ascii=False)) == content[len(IMAGE_MARKER) * n:]


@FAST
@example(fmt="JPEG", width=33, height=65, flips=[(2227, 1)], cut=0)  # SOF length 17 -> 273: Pillow refuses
@example(fmt="JPEG", width=1, height=65, flips=[(860, 1)], cut=0)  # a DHT marker after the SOF damaged
@given(fmt=st.sampled_from(["PNG", "JPEG"]), width=st.integers(1, 80), height=st.integers(1, 80),
       flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4), cut=st.integers(0, 64))
def test_fast_header_parsers_never_accept_what_pillow_reads_differently(fmt, width, height, flips, cut):
    """The PNG/JPEG header fast paths, on damaged images: they reject, or agree with Pillow."""
    from vlprep.io.images import probe

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (9, 99, 199)).save(buf, format=fmt)
    data = bytearray(buf.getvalue())
    for pos, value in flips:
        data[pos % len(data)] = value
    data = bytes(data[: len(data) - cut])
    try:
        info = probe(data)
    except Rejected:
        return
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.size) == (info.format, (info.width, info.height))
