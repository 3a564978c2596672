"""Properties: writing then reading gives the geometry back within the quantisation of each
format, and tolerant parsing never raises, whatever the text.
"""

import math
import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geochat import geometry
from geochat.grammar import (
    DIALECTS,
    GeoChatDialect,
    GrammarError,
    Parsed,
    Qwen25VLDialect,
    format,
    format_hbbs,
    format_mask,
    format_quads,
    parse,
)

# derandomize: the same examples on every run (deterministic tests; a new failure is a new bug)
ROUND_TRIPS = settings(max_examples=200, deadline=None, derandomize=True)
MASK_TRIPS = settings(max_examples=40, deadline=None, derandomize=True)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
EPSILON = 1e-6

sizes = st.integers(min_value=8, max_value=3000)
unit = st.floats(min_value=0, max_value=1)
angles = st.floats(min_value=-180, max_value=180)
phrases = st.text(alphabet="abcdefgh xyz", min_size=1, max_size=12).map(str.strip).filter(bool)


@st.composite
def boxes_in(draw, width, height):
    """A horizontal box inside the image."""
    x0, x1 = sorted((draw(unit) * width, draw(unit) * width))
    y0, y1 = sorted((draw(unit) * height, draw(unit) * height))
    return [x0, y0, x1, y1]


@st.composite
def rectangles_in(draw, width, height):
    """A rotated rectangle ``(cx, cy, w, h, angle)`` whose corners are all in the image.

    Drawn at any size and angle, then shrunk to fit, so long thin rectangles along a diagonal
    (whose unrotated box leaves the image) are common. Both sides are at least 0.01 px: the
    direction of a side of length 0 is undefined, so geometry.quad_to_obb cannot give its angle.
    """
    angle = draw(angles)
    w = 0.01 + draw(unit) * math.hypot(width, height)
    h = 0.01 + draw(unit) * draw(unit) * math.hypot(width, height)
    cos, sin = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    extent_x, extent_y = w * cos + h * sin, w * sin + h * cos  # the rectangle's enclosing box
    shrink = min(1.0, (width - 0.02) / extent_x, (height - 0.02) / extent_y)
    w, h = max(w * shrink, 0.01), max(h * shrink, 0.01)
    extent_x, extent_y = w * cos + h * sin, w * sin + h * cos
    cx = extent_x / 2 + draw(unit) * (width - extent_x)
    cy = extent_y / 2 + draw(unit) * (height - extent_y)
    return cx, cy, w, h, angle


def corner_error(quad, expected):
    """Largest corner distance, over the cyclic shifts and the reversal of the corner list."""
    quad, expected = np.asarray(quad), np.asarray(expected)
    orders = (quad, quad[::-1])
    candidates = [np.roll(order, shift, axis=0) for order in orders for shift in range(4)]
    return min(np.hypot(*(candidate - expected).T).max() for candidate in candidates)


# Canonical grammar: a coordinate comes back within half a grammar step, W/2000 or H/2000.


@ROUND_TRIPS
@given(st.data(), sizes, sizes)
def test_canonical_boxes_round_trip_within_half_a_step(data, width, height):
    boxes = data.draw(st.lists(boxes_in(width, height), min_size=1, max_size=4))
    parsed = parse(format_hbbs(boxes, width, height), width, height, strict=True)
    step = np.tile([width, height], 2) / 2000 + EPSILON
    assert [o.kind for o in parsed.objects] == ["hbb"] * len(boxes)
    for found, box in zip(parsed.objects, boxes, strict=True):
        assert np.all(np.abs(np.subtract(found.hbb, box)) <= step)


@ROUND_TRIPS
@given(st.data(), sizes, sizes)
def test_canonical_quads_round_trip_within_half_a_step(data, width, height):
    rectangles = data.draw(st.lists(rectangles_in(width, height), min_size=1, max_size=3))
    quads = [geometry.obb_to_quad(*rectangle) for rectangle in rectangles]
    parsed = parse(format_quads(quads, width, height), width, height, strict=True)
    bound = math.hypot(width, height) / 2000 + EPSILON  # both axes off by half a step
    for found, quad in zip(parsed.objects, quads, strict=True):
        assert found.kind == "quad"
        assert corner_error(found.quad, quad) <= bound


@st.composite
def masks(draw, min_side):
    """A non-empty boolean mask made of a few rectangles, ``[H, W]`` with sides >= min_side."""
    height = draw(st.integers(min_side, 160))
    width = draw(st.integers(min_side, 160))
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(draw(st.integers(1, 3))):
        x0, x1 = sorted(draw(st.integers(0, width - 1)) for _ in range(2))
        y0, y1 = sorted(draw(st.integers(0, height - 1)) for _ in range(2))
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def cell_slices(height, width, grid):
    """Pixel slices of every cell: rows floor(r H / N) .. floor((r + 1) H / N), same for columns."""
    rows = [(r * height) // grid for r in range(grid + 1)]
    cols = [(c * width) // grid for c in range(grid + 1)]
    return [
        (slice(rows[r], rows[r + 1]), slice(cols[c], cols[c + 1]))
        for r in range(grid)
        for c in range(grid)
    ]


@MASK_TRIPS
@given(st.sampled_from([16, 32]), st.data())
def test_canonical_masks_are_exact_on_the_grid_and_differ_only_in_mixed_cells(grid, data):
    # The text of a mask is exact on its grid: writing what was read gives the same text. In
    # pixels, only cells the mask partly covers may change.
    mask = data.draw(masks(min_side=grid))
    height, width = mask.shape
    text = format_mask(mask, grid)
    (found,) = parse(text, width, height, strict=True).objects
    read = geometry.rle_to_mask(found.mask)
    assert format_mask(read, grid) == text
    assert found.hbb == geometry.mask_to_hbb(read).tolist()
    for cell in cell_slices(height, width, grid):
        if mask[cell].all():
            assert read[cell].all()
        elif not mask[cell].any():
            assert not read[cell].any()


# Dialects: each bound is half of the dialect's step, plus the angle's half degree of turn on the
# rectangle's corners (radius * pi / 360) where the dialect writes angles.


def dialect_bound(dialect, width, height, rectangle=None):
    """Largest corner error of a quad written and read by a dialect, and why."""
    radius = 0.0 if rectangle is None else math.hypot(rectangle[2], rectangle[3]) / 2
    turn = radius * math.pi / 360
    if dialect.name == "geochat":
        # Four edges on 0-100 of the padded square: centre and half-sides each off by S/200.
        return 2 * math.sqrt(2) * max(width, height) / 200 + turn
    if dialect.name == "geoground":
        if rectangle is None:
            return math.hypot(width, height) / 2000
        # Centre off by (W/200, H/200); both half-sides off by W/400 (both scaled by W).
        return math.hypot(width, height) / 200 + math.sqrt(2) * width / 400 + turn
    if dialect.name == "qwen25vl":
        input_width, input_height = dialect.input_size or (width, height)
        return math.hypot(width / input_width, height / input_height) / 2
    return math.hypot(width, height) / 2000  # canonical, qwen2vl, qwen3vl: 0-1000 per axis


DIALECT_CASES = [
    DIALECTS["canonical"],
    DIALECTS["geochat"],
    GeoChatDialect(pad_to_square=False),
    DIALECTS["geoground"],
    DIALECTS["qwen2vl"],
    DIALECTS["qwen25vl"],
    Qwen25VLDialect(input_size=(644, 476)),
    DIALECTS["qwen3vl"],
]
DIALECT_IDS = [
    "canonical",
    "geochat",
    "geochat-unpadded",
    "geoground",
    "qwen2vl",
    "qwen25vl",
    "qwen25vl-resized",
    "qwen3vl",
]
ANGLED = ("geochat", "geoground", "canonical")  # dialects that can write a rotated rectangle


@pytest.mark.parametrize("dialect", DIALECT_CASES, ids=DIALECT_IDS)
@ROUND_TRIPS
@given(data=st.data(), width=sizes, height=sizes)
def test_dialects_round_trip_boxes_and_phrases_in_order(dialect, data, width, height):
    boxes = data.draw(st.lists(boxes_in(width, height), min_size=1, max_size=4))
    # Unnamed boxes among named ones: a phrase must not run on over a box that has none.
    names = data.draw(st.lists(st.none() | phrases, min_size=len(boxes), max_size=len(boxes)))
    pairs = zip(boxes, names, strict=True)
    objects = [{"kind": "hbb", "hbb": box, "phrase": name} for box, name in pairs]
    text = format(objects, width, height, dialect)
    parsed = parse(text, width, height, dialect, strict=True)
    assert [o.phrase for o in parsed.objects] == names
    bound = dialect_bound(dialect, width, height) + EPSILON
    for found, box in zip(parsed.objects, boxes, strict=True):
        assert corner_error(found.quad, geometry.hbb_to_quad(box)) <= bound


@pytest.mark.parametrize("dialect", DIALECT_CASES, ids=DIALECT_IDS)
@ROUND_TRIPS
@given(data=st.data(), width=sizes, height=sizes)
def test_dialects_round_trip_quads(dialect, data, width, height):
    rectangle = data.draw(rectangles_in(width, height))
    quad = geometry.obb_to_quad(*rectangle)
    text = format([{"kind": "quad", "quad": quad}], width, height, dialect)
    (found,) = parse(text, width, height, dialect, strict=True).objects
    if dialect.name in ANGLED:
        expected, bound = quad, dialect_bound(dialect, width, height, rectangle)
    else:  # no angles: written as the enclosing box
        expected = geometry.hbb_to_quad(geometry.quad_to_hbb(quad))
        bound = dialect_bound(dialect, width, height)
    assert corner_error(found.quad, expected) <= bound + EPSILON


@pytest.mark.parametrize("dialect", DIALECT_CASES, ids=DIALECT_IDS)
@ROUND_TRIPS
@given(data=st.data(), width=sizes, height=sizes)
def test_dialects_read_back_what_they_write_without_problems(dialect, data, width, height):
    # Every geometry inside the image, of any kind, is written so that strict parsing (which
    # raises on any problem, including geometry beyond the image) reads it back.
    objects = []
    for _ in range(data.draw(st.integers(1, 4))):
        phrase = data.draw(st.none() | st.sampled_from(["a", "b"]))  # runs of a phrase, or none
        if data.draw(st.booleans()):
            box = data.draw(boxes_in(width, height))
            objects.append({"kind": "hbb", "hbb": box, "phrase": phrase})
        else:
            quad = geometry.obb_to_quad(*data.draw(rectangles_in(width, height)))
            objects.append({"kind": "quad", "quad": quad, "phrase": phrase})
    text = format(objects, width, height, dialect)
    parsed = parse(text, width, height, dialect, strict=True)
    assert [o.phrase for o in parsed.objects] == [o["phrase"] for o in objects]
    assert_inside_image(parsed.objects, width, height)


# The last number of a box, with its separator, in each dialect's text of horizontal boxes.
LAST_NUMBER = {
    "canonical": (r",\d+\]", "]"),
    "geochat": (r"<\d+>\|", "|"),
    "geoground": (r",\d+\]", "]"),
    "qwen2vl": (r",\d+\)<\|box_end", ")<|box_end"),
    "qwen25vl": (r", \d+\]", "]"),
    "qwen3vl": (r", \d+\]", "]"),
}


@pytest.mark.parametrize("dialect", DIALECT_CASES, ids=DIALECT_IDS)
@ROUND_TRIPS
@given(data=st.data(), width=sizes, height=sizes)
def test_a_box_with_a_number_missing_is_reported_and_the_others_kept(dialect, data, width, height):
    boxes = data.draw(st.lists(boxes_in(width, height), min_size=1, max_size=4))
    text = format([{"kind": "hbb", "hbb": box} for box in boxes], width, height, dialect)
    pattern, replacement = LAST_NUMBER[dialect.name]
    matches = list(re.finditer(pattern, text))
    cut = matches[data.draw(st.integers(0, len(matches) - 1))]
    text = text[: cut.start()] + replacement + text[cut.end() :]
    parsed = parse(text, width, height, dialect)
    assert len(parsed.problems) == 1, parsed.problems
    assert len(parsed.objects) == len(boxes) - 1
    with pytest.raises(GrammarError):
        parse(text, width, height, dialect, strict=True)


def beyond_image(quad, width, height):
    """How far the farthest corner of a quad lies outside the image, in pixels (0 if inside)."""
    quad = np.asarray(quad)
    return max(0.0, -quad.min(), (quad - [width, height]).max())


def check_clipped_and_reported(parsed, raw_quad, bound, width, height):
    """What was read lies in the image; a geometry beyond it by more than the rounding bound is
    reported; one read without problems is where its values put it, within that bound."""
    assert_inside_image(parsed.objects, width, height)
    if beyond_image(raw_quad, width, height) > bound + EPSILON:
        assert parsed.problems
    if not parsed.problems:
        (found,) = parsed.objects
        assert corner_error(found.quad, raw_quad) <= bound + EPSILON


@pytest.mark.parametrize("pad_to_square", [True, False])
@ROUND_TRIPS
@given(data=st.data(), width=sizes, height=sizes)
def test_geochat_boxes_beyond_the_image_are_clipped_and_reported(
    pad_to_square, data, width, height
):
    # On a padded square 0-100 covers the padding too; a turned box can reach beyond any side.
    angle = data.draw(st.sampled_from([0, 0, 5, -30, 45, 90, 180]))
    low, high = (0, 100) if angle == 0 else (-21, 121)
    x0, x1 = sorted(data.draw(st.integers(low, high)) for _ in range(2))
    y0, y1 = sorted(data.draw(st.integers(low, high)) for _ in range(2))
    dialect = GeoChatDialect(pad_to_square=pad_to_square)
    parsed = parse(f"{{<{x0}><{y0}><{x1}><{y1}>|<{angle}>}}", width, height, dialect)
    side = max(width, height)
    frame = np.array([side, side] if pad_to_square else [width, height])
    offset = np.array([(side - width) // 2, (side - height) // 2]) if pad_to_square else 0
    (left, top), (right, bottom) = np.array([[x0, y0], [x1, y1]]) * frame / 100 - offset
    centre = ((left + right) / 2, (top + bottom) / 2)
    rectangle = (*centre, right - left, bottom - top, -angle)  # GeoChat turns counter-clockwise
    raw = geometry.obb_to_quad(*rectangle)
    bound = dialect_bound(dialect, width, height, rectangle if angle else None)
    check_clipped_and_reported(parsed, raw, bound, width, height)


@ROUND_TRIPS
@given(
    values=st.tuples(*[st.integers(0, 100)] * 4, st.integers(-180, 180)),
    width=sizes,
    height=sizes,
)
def test_geoground_obbs_beyond_the_image_are_clipped_and_reported(values, width, height):
    parsed = parse(f"<obb>[[{','.join(map(str, values))}]]</obb>", width, height, "geoground")
    cx, cy, w, h, angle = values
    rectangle = (cx * width / 100, cy * height / 100, w * width / 100, h * width / 100, angle)
    raw = geometry.obb_to_quad(*rectangle)
    bound = dialect_bound(DIALECTS["geoground"], width, height, rectangle)
    check_clipped_and_reported(parsed, raw, bound, width, height)


@MASK_TRIPS
@given(st.integers(2, 40), st.data())
def test_geoground_masks_are_exact_on_any_grid(grid, data):
    mask = data.draw(masks(min_side=grid))
    height, width = mask.shape
    objects = [{"kind": "mask", "mask": geometry.mask_to_rle(mask), "grid": grid}]
    text = format(objects, width, height, "geoground")
    (found,) = parse(text, width, height, "geoground", strict=True).objects
    assert found.grid == grid
    assert format([found], width, height, "geoground") == text


# Tolerant parsing never raises; strict parsing raises only GrammarError.


def assert_inside_image(objects, width, height):
    """Every geometry read lies in the image (a format can only point outside it by mistake)."""
    for found in objects:
        if found.kind != "none":
            x0, y0, x1, y1 = found.hbb
            assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height, found
            for x, y in found.quad or []:
                assert 0 <= x <= width and 0 <= y <= height, found


def check_both_modes(text, dialect, width=128, height=96):
    parsed = parse(text, width, height, dialect)
    assert isinstance(parsed, Parsed)
    assert all(isinstance(line, str) for line in parsed.problems)
    assert not any("internal parser error" in line for line in parsed.problems), parsed.problems
    for found in parsed.objects:
        assert found.kind == "none" or len(found.hbb) == 4
    assert_inside_image(parsed.objects, width, height)
    try:
        strict = parse(text, width, height, dialect, strict=True)
    except GrammarError as error:
        assert 0 <= error.position <= len(text)
    else:
        assert strict.problems == []
        assert [o.kind for o in strict.objects] == [o.kind for o in parsed.objects]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_never_breaks_tolerant_parsing(dialect, text):
    check_both_modes(text, dialect)


SNIPPETS = [
    "<box>", "</box>", "<quad>", "</quad>", "<seg>", "</seg>", "<ref>", "</ref>", "<none>",
    "<obb>", "</obb>", "<p>", "</p>", "<delim>", "{", "}", "<|box_start|>", "<|box_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "```json", "```", "[", "]", "[[", "]]", ",",
    ";", "|", "*", "(", ")", "-1", "1001", "nan", "inf", "1e999", "9" * 60, "0.5", "٣", "🙂",
    "\x00", "\n", " ", '{"bbox_2d": [', '"label": "x"', "16|", "1*999999",
]  # fmt: skip


@st.composite
def mutated_answers(draw, dialect):
    """A valid answer in the dialect, then cut, spliced with garbage, repeated or deleted."""
    width, height = 128, 96
    objects = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["hbb", "quad", "mask", "none"]))
        phrase = draw(st.none() | phrases)
        if kind == "hbb":
            objects.append({"kind": kind, "phrase": phrase, "hbb": draw(boxes_in(width, height))})
        elif kind == "quad":
            quad = geometry.obb_to_quad(*draw(rectangles_in(width, height)))
            objects.append({"kind": kind, "phrase": phrase, "quad": quad})
        elif kind == "mask":
            mask = np.zeros((height, width), dtype=bool)
            mask[20:60, 40:52] = True
            rle = geometry.mask_to_rle(mask)
            box = [40, 20, 52, 60]
            objects.append({"kind": kind, "phrase": phrase, "hbb": box, "mask": rle})
        else:
            objects.append({"kind": kind, "phrase": phrase})
    text = format(objects, width, height, dialect)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        end = draw(st.integers(at, len(text)))
        mutation = draw(st.sampled_from(["cut", "insert", "repeat", "delete", "nest"]))
        if mutation == "cut":
            text = text[:at]
        elif mutation == "insert":
            text = text[:at] + draw(st.sampled_from(SNIPPETS) | st.text(max_size=8)) + text[at:]
        elif mutation == "repeat":
            text = text[:end] + text[at:end] * draw(st.integers(1, 3)) + text[end:]
        elif mutation == "delete":
            text = text[:at] + text[end:]
        else:
            text = text[:at] + text + text[at:]
    return text


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@FUZZ
@given(data=st.data())
def test_mutated_answers_never_break_tolerant_parsing(dialect, data):
    check_both_modes(data.draw(mutated_answers(dialect)), dialect)


HOSTILE = [
    "<box>[[" * 15_000,
    "[" * 50_000 + "]" * 50_000,
    "<ref>" * 20_000,
    "<box>" + "1," * 50_000 + "</box>",
    "<seg>32|" + "1*1," * 25_000 + "</seg>",
    "<seg>" + "0,1;" * 25_000 + "</seg>",
    "{" * 50_000 + "<p>" * 20_000 + "{<1>" * 20_000,
    "<|box_start|>(" * 20_000,
    "```json\n" + '[{"bbox_2d": [1, 2, 3, 4]},' * 10_000,
    "<box>[[1,2,3,4]]</box>" * 5_000,
]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_huge_hostile_answers_parse_in_linear_time(dialect):
    # Each answer is 100-300 kB: linear parsing takes about a second for all of them, quadratic
    # work on any one would take many minutes. The bound leaves room for a busy machine.
    started = time.perf_counter()
    for text in HOSTILE:
        check_both_modes(text, dialect, width=64, height=64)
    assert time.perf_counter() - started < 60
