"""Dialects read the examples their systems publish, and write what those systems read.

Sources (read, not copied): GeoChat's demo (github.com/mbzuai-oryx/GeoChat, geochat_demo.py,
geochat/mm_utils.py), GeoGround's framework figure (github.com/zytx121/GeoGround,
images/geoground/framework.jpg), the Qwen2-VL paper's grounding example (arXiv 2409.12191, read
in a summary of the paper) and Qwen2.5-VL's OCR cookbook (github.com/QwenLM/Qwen2.5-VL,
cookbooks/ocr.ipynb).
"""

import math

import numpy as np
import pytest

from geochat import geometry
from geochat.grammar import (
    DIALECTS,
    GeoChatDialect,
    GrammarError,
    Qwen25VLDialect,
    format,
    get_dialect,
    parse,
)


def assert_same_corners(quad, expected, tolerance=1e-6):
    """Same quad up to where its corner list starts."""
    quad, expected = np.asarray(quad), np.asarray(expected)
    errors = [np.abs(np.roll(quad, shift, axis=0) - expected).max() for shift in range(4)]
    assert min(errors) <= tolerance, (quad, expected)


def test_every_dialect_is_registered_and_unknown_names_fail():
    assert set(DIALECTS) == {"canonical", "geochat", "geoground", "qwen2vl", "qwen25vl", "qwen3vl"}
    with pytest.raises(GrammarError, match="unknown dialect"):
        get_dialect("llava")


# GeoChat


def test_geochat_demo_region_example():
    # geochat_demo.py's example "[identify] what is this {<8><26><22><37>}" on demo_images/04444.png
    # (800 x 800): the demo maps 0-100 to the image's width and height.
    parsed = parse("[identify] what is this {<8><26><22><37>}", 800, 800, "geochat")
    (region,) = parsed.objects
    assert (region.kind, region.hbb) == ("hbb", [64.0, 208.0, 176.0, 296.0])
    assert parsed.text == "[identify] what is this"


def test_geochat_grounded_answer_with_phrases_and_delim():
    # The demo's reader: "<p>phrase</p>" then boxes "{...}" chained by "<delim>" or directly.
    text = (
        "<p>four baseball fields</p> {<10><10><30><30>|<0>}<delim>{<40><10><60><30>|<0>}"
        "{<0><0><5><5>}"
    )
    parsed = parse(text, 100, 100, "geochat")
    assert parsed.problems == []
    assert [o.phrase for o in parsed.objects] == ["four baseball fields"] * 3
    assert [o.hbb for o in parsed.objects] == [[10, 10, 30, 30], [40, 10, 60, 30], [0, 0, 5, 5]]
    assert parsed.text == "four baseball fields"


def test_geochat_angle_turns_counter_clockwise_on_screen_as_the_demo_draws_it():
    # The demo rotates the box with cv2.getRotationMatrix2D(center, angle, 1), whose matrix
    # (OpenCV docs) is [[a, b], [-b, a]] with a = cos, b = sin: counter-clockwise on screen.
    (found,) = parse("{<40><40><60><50>|<30>}", 100, 100, "geochat").objects
    a, b = math.cos(math.radians(30)), math.sin(math.radians(30))
    centre = np.array([50.0, 45.0])
    offsets = np.array([[-10, -5], [10, -5], [10, 5], [-10, 5]])
    expected = centre + offsets @ np.array([[a, -b], [b, a]])  # rows: [a*dx + b*dy, -b*dx + a*dy]
    assert found.kind == "quad"
    assert_same_corners(found.quad, geometry.canonical_quad(expected))


def test_geochat_undoes_the_centred_padding_to_a_square():
    # expand2square pastes a 200 x 100 image 50 px down in a 200 x 200 square.
    (found,) = parse("{<0><25><100><75>}", 200, 100, "geochat").objects
    assert found.hbb == [0.0, 0.0, 200.0, 100.0]
    (tall,) = parse("{<25><0><75><100>}", 100, 200, "geochat").objects
    assert tall.hbb == [0.0, 0.0, 100.0, 200.0]
    (unpadded,) = parse("{<0><25><100><75>}", 200, 100, GeoChatDialect(pad_to_square=False)).objects
    assert unpadded.hbb == [0.0, 25.0, 200.0, 75.0]


def test_geochat_writes_what_its_demo_reads():
    objects = [{"kind": "hbb", "phrase": "ships", "hbb": [100, 0, 200, 100]}] * 2
    text = format(objects, 200, 100, "geochat")
    assert text == "<p>ships</p> {<50><25><100><75>|<0>}<delim>{<50><25><100><75>|<0>}"


@pytest.mark.parametrize("pad_to_square", [True, False])
def test_geochat_rotated_box_along_the_diagonal_comes_back_in_place(pad_to_square):
    # A long thin rectangle along the diagonal of the image: its unrotated box (written before
    # the angle) reaches beyond 0-100, and clipping it there would move the rectangle.
    dialect = GeoChatDialect(pad_to_square=pad_to_square)
    quad = geometry.obb_to_quad(500, 500, 1400, 20, 45)
    text = format([{"kind": "quad", "quad": quad}], 1000, 1000, dialect)
    assert text == "{<-20><49><120><51>|<-45>}"
    (found,) = parse(text, 1000, 1000, dialect, strict=True).objects
    assert_same_corners(found.quad, geometry.canonical_quad(quad), tolerance=10)


@pytest.mark.parametrize(
    "text",
    [
        "{<-1><10><20><30>}",  # an unrotated box is on 0-100
        "{<-1><10><20><30>|<0>}",
        "{<10><10><20><101>|<0>}",
        "{<-22><10><20><30>|<5>}",  # a rotated one on -MARGIN..100 + MARGIN
        "{<10><10><20><122>|<5>}",
    ],
)
def test_geochat_reads_values_beyond_0_100_only_for_rotated_boxes(text):
    parsed = parse(text, 100, 100, "geochat")
    assert parsed.objects == []
    assert any("out of range" in line for line in parsed.problems), parsed.problems
    assert parse("{<-20><49><120><51>|<-45>}", 100, 100, "geochat", strict=True).objects


@pytest.mark.parametrize(
    ("text", "hbb", "action"),
    [
        ("{<0><0><100><20>}", None, "dropped"),  # wholly in the padding above the image
        ("{<0><10><100><30>}", [0.0, 0.0, 200.0, 10.0], "clipped"),
        ("{<0><70><100><100>|<0>}", [0.0, 90.0, 200.0, 100.0], "clipped"),
    ],
)
def test_geochat_boxes_in_the_padding_are_clipped_and_reported(text, hbb, action):
    # A 200 x 100 image fills y = 25..75 of the padded square.
    parsed = parse(text, 200, 100, "geochat")
    assert [o.hbb for o in parsed.objects] == ([] if hbb is None else [hbb])
    (problem,) = parsed.problems
    assert "beyond the image" in problem and action in problem
    with pytest.raises(GrammarError, match="beyond the image"):
        parse(text, 200, 100, "geochat", strict=True)


def test_geochat_rounding_at_the_edge_of_the_padding_is_not_a_problem():
    # 25.5 of 100 rounds to 25 or 26: the box edge moves by up to half a step (1 px here).
    assert format([{"kind": "hbb", "hbb": [0, 1, 200, 99]}], 200, 100, "geochat") == (
        "{<0><26><100><74>|<0>}"
    )
    parsed = parse("{<0><25><100><75>}", 200, 99, "geochat", strict=True)
    assert parsed.objects[0].hbb == [0.0, 0.0, 200.0, 99.0]


@pytest.mark.parametrize(
    ("hbb", "width", "height"),
    [
        # Regression (found by the round-trip property): half a step past the padding's edge
        # came out a hair over the rounding slack, and a box without width was dropped for
        # having no area inside the image.
        ([0.0, 0.0, 0.0, 665.0], 888, 665),
        ([0.0, 0.0, 888.0, 0.0], 888, 665),
        ([3.0, 0.0, 3.0, 0.0], 888, 665),
    ],
)
def test_geochat_degenerate_boxes_at_the_padding_edge_round_trip(hbb, width, height):
    text = format([{"kind": "hbb", "hbb": hbb}], width, height, "geochat")
    parsed = parse(text, width, height, "geochat", strict=True)
    (found,) = parsed.objects
    assert np.abs(np.subtract(found.hbb, hbb)).max() <= 0.5 * max(width, height) / 100 + 1e-6


def test_geochat_box_without_a_phrase_after_one_with_a_phrase_keeps_none():
    objects = [
        {"kind": "hbb", "phrase": "ships", "hbb": [0, 0, 10, 10]},
        {"kind": "hbb", "phrase": None, "hbb": [20, 20, 30, 30]},
    ]
    text = format(objects, 100, 100, "geochat")
    assert text == "<p>ships</p> {<0><0><10><10>|<0>} <p></p> {<20><20><30><30>|<0>}"
    assert [o.phrase for o in parse(text, 100, 100, "geochat", strict=True).objects] == [
        "ships",
        None,
    ]


def test_geochat_phrases_cannot_hold_braces():
    with pytest.raises(GrammarError, match="cannot contain"):
        format([{"kind": "hbb", "phrase": "a {b}", "hbb": [0, 0, 1, 1]}], 10, 10, "geochat")


def test_geochat_braces_in_ordinary_text_are_text():
    parsed = parse("a set {x, y} of things", 100, 100, "geochat")
    assert parsed.objects == [] and parsed.problems == []
    assert parsed.text == "a set {x, y} of things"


@pytest.mark.parametrize(
    ("dialect", "text"),
    [
        ("geochat", "{10, 20, 30}"),  # numbers in braces: a box, written wrong
        ("geochat", "<p>a</p> {<10><20><30>}"),
        ("geochat", "{<10><20><30><40>|}"),
        ("geochat", "{<10><20><30><40><50>}"),
        ("canonical", "<box>[[10,20,30]]</box>"),
        ("canonical", "<quad>[[1,2,3,4,5,6,7]]</quad>"),
        ("geoground", "<box>[[10,20,30]]</box>"),
        ("geoground", "<obb>[[10,20,30,40]]</obb>"),
        ("qwen2vl", "<|box_start|>(10,20),(30)<|box_end|>"),
        ("qwen2vl", "<|box_start|>(10,20)<|box_end|>"),
        ("qwen25vl", '[{"bbox_2d": [10, 20, 30]}]'),
    ],
)
def test_malformed_groups_are_reported_in_every_dialect(dialect, text):
    parsed = parse(text, 100, 100, dialect)
    assert parsed.objects == [] and len(parsed.problems) == 1, parsed.problems
    with pytest.raises(GrammarError):
        parse(text, 100, 100, dialect, strict=True)


def test_geochat_strict_rejects_malformed_boxes():
    with pytest.raises(GrammarError) as raised:
        parse("<p>x</p> {<10><20><30>}", 100, 100, "geochat", strict=True)
    assert raised.value.position == 10


# GeoGround


def test_geoground_framework_figure_boxes():
    # REC with HBB and detection answers of the figure, on 0-1000 per axis.
    (one,) = parse("<box>[[906,47,1000,141]]</box>", 1000, 500, "geoground").objects
    assert one.hbb == [906.0, 23.5, 1000.0, 70.5]
    parsed = parse("<box>[[155,143,250,238], [906,47,1000,141]]</box>", 1000, 1000, "geoground")
    assert [o.hbb for o in parsed.objects] == [[155, 143, 250, 238], [906, 47, 1000, 141]]


def test_geoground_framework_figure_obb_matches_the_drawn_vehicle():
    # "<obb>[[20,19,2,10,52]]</obb>" marks the vehicle at the top left of the figure's image,
    # whose long axis runs from lower-left to upper-right: with θ clockwise on screen, side w
    # points down-right (52°) and the long side h points up-right (-38°).
    (found,) = parse("<obb>[[20,19,2,10,52]]</obb>", 336, 336, "geoground").objects
    cx, cy, w, h, angle = geometry.quad_to_obb(found.quad)
    assert (cx, cy) == pytest.approx((67.2, 63.84))
    long_side = max(w, h)
    assert long_side == pytest.approx(33.6) and min(w, h) == pytest.approx(6.72)
    long_angle = angle if w >= h else (angle + 90 + 90) % 180 - 90
    assert long_angle == pytest.approx(-38.0)


def test_geoground_obb_sides_are_scaled_by_the_width():
    # DESIGN.md: w and h scaled by W. On a 4000 x 2250 image, 15 and 14 are 600 and 560 px.
    (found,) = parse("<obb>[[15,65,15,14,0]]</obb>", 4000, 2250, "geoground").objects
    assert found.hbb == pytest.approx([300.0, 1182.5, 900.0, 1742.5])


def test_geoground_obbs_beyond_the_image_are_clipped_and_reported():
    parsed = parse("<obb>[[0,0,50,50,0]]</obb>", 200, 100, "geoground")
    assert [o.hbb for o in parsed.objects] == [[0.0, 0.0, 50.0, 50.0]]
    assert parsed.problems == ["<obb> reaches 50 px beyond the image (clipped) at position 6"]


def test_geoground_obb_along_the_diagonal_round_trips():
    # Its long side, the diagonal, is 134.56 of 100 of the width, written rounded up to 135.
    quad = geometry.obb_to_quad(135.5, 122, 364.6, 0.5, 42)
    text = format([{"kind": "quad", "quad": quad}], 271, 244, "geoground")
    assert text.startswith("<obb>[[50,50,135,0,")
    (found,) = parse(text, 271, 244, "geoground", strict=True).objects
    assert_same_corners(found.quad, quad, tolerance=4.4)  # the bound of the properties test


def test_geoground_text_mask_of_plain_values():
    # "<seg> 0, 0, 0, ..., 0, 0, 0; ...0, 0, 1,1, 0, 0, ...</seg>": N rows of N values.
    rows = [", ".join(["0"] * 32)] * 32
    rows[3] = ", ".join(["0"] * 10 + ["1", "1"] + ["0"] * 20)
    (found,) = parse("<seg> " + "; ".join(rows) + "</seg>", 64, 64, "geoground").objects
    assert (found.kind, found.grid, found.hbb) == ("mask", 32, [20.0, 6.0, 24.0, 8.0])


def test_geoground_writes_le90_obbs_and_plain_masks():
    quad = geometry.obb_to_quad(500, 250, 20, 100, 30)  # long side h: written as w at 30 + 90
    text = format([{"kind": "quad", "quad": quad}], 1000, 500, "geoground")
    assert text == "<obb>[[50,50,10,2,-60]]</obb>"
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    objects = [{"kind": "mask", "hbb": [0, 0, 2, 2], "mask": geometry.mask_to_rle(mask), "grid": 2}]
    assert format(objects, 4, 4, "geoground") == "<seg>1,0;0,0</seg>"


# Qwen2-VL


def test_qwen2vl_paper_example():
    text = (
        "<|object_ref_start|>the eyes on a giraffe<|object_ref_end|>"
        "<|box_start|>(176,106),(232,160)<|box_end|>"
    )
    parsed = parse(text, 640, 480, "qwen2vl")
    (found,) = parsed.objects
    assert found.phrase == "the eyes on a giraffe"
    assert found.hbb == pytest.approx([112.64, 50.88, 148.48, 76.8])
    assert format(parsed.objects, 640, 480, "qwen2vl") == text


def test_qwen2vl_phrase_applies_to_every_box_that_follows():
    box = "<|box_start|>(0,0),(10,10)<|box_end|>"
    text = "<|object_ref_start|>cars<|object_ref_end|>" + box * 2
    parsed = parse(text, 100, 100, "qwen2vl")
    assert [o.phrase for o in parsed.objects] == ["cars", "cars"]
    assert format(parsed.objects, 100, 100, "qwen2vl") == text


def test_qwen2vl_box_without_a_phrase_after_one_with_a_phrase_keeps_none():
    objects = [
        {"kind": "hbb", "phrase": "cars", "hbb": [0, 0, 10, 10]},
        {"kind": "hbb", "phrase": None, "hbb": [20, 20, 30, 30]},
    ]
    text = format(objects, 100, 100, "qwen2vl")
    assert text == (
        "<|object_ref_start|>cars<|object_ref_end|><|box_start|>(0,0),(100,100)<|box_end|>"
        "<|object_ref_start|><|object_ref_end|><|box_start|>(200,200),(300,300)<|box_end|>"
    )
    assert [o.phrase for o in parse(text, 100, 100, "qwen2vl", strict=True).objects] == [
        "cars",
        None,
    ]


# Qwen2.5-VL

OCR_ANSWER = """```json
[
    {
        "bbox_2d": [125, 169, 754, 208], "text_content": "UNIHAKKA INTERNATIONAL SDN BHD",
    },
    {
        "bbox_2d": [77, 1068, 228, 1092], "text_content": "GST Summary",
    },
]
```"""


def test_qwen25vl_ocr_cookbook_answer_with_trailing_commas_and_resized_input():
    # The cookbook maps bbox_2d / input_width * width: absolute pixels of the resized input.
    dialect = Qwen25VLDialect(input_size=(840, 1232))
    parsed = parse(OCR_ANSWER, 420, 616, dialect, strict=True)
    assert [o.phrase for o in parsed.objects] == ["UNIHAKKA INTERNATIONAL SDN BHD", "GST Summary"]
    assert parsed.objects[1].hbb == [38.5, 534.0, 114.0, 546.0]


def test_qwen25vl_label_and_writing():
    objects = [{"kind": "hbb", "phrase": "small cake", "hbb": [135, 114, 240, 224]}]
    text = format(objects, 640, 480, "qwen25vl")
    assert text == '```json\n[\n\t{"bbox_2d": [135, 114, 240, 224], "label": "small cake"}\n]\n```'
    (found,) = parse("Here:\n" + text, 640, 480, "qwen25vl").objects
    assert (found.phrase, found.hbb) == ("small cake", [135.0, 114.0, 240.0, 224.0])


def test_qwen3vl_reads_json_boxes_on_0_to_1000_per_axis():
    # Qwen3-VL writes Qwen2.5-VL's JSON, but relative: x_pixel = x / 1000 * width.
    text = '```json\n[\n\t{"bbox_2d": [250, 400, 500, 1000], "label": "car"}\n]\n```'
    (found,) = parse(text, 1920, 1080, "qwen3vl", strict=True).objects
    assert found.phrase == "car"
    assert found.hbb == pytest.approx([480, 432, 960, 1080])
    assert format([found], 1920, 1080, "qwen3vl") == text
    problems = parse('[{"bbox_2d": [0, 0, 10, 1001]}]', 5000, 5000, "qwen3vl").problems
    assert any("outside the image" in line for line in problems), problems


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("no boxes here", "no JSON"),
        ('```json\n[{"bbox_2d": [1, 2, 3]}]\n```', "bbox_2d"),
        ('[{"bbox_2d": [1, 2, 3, 9999]}]', "outside the image"),
        ('[{"bbox_2d": [1, 2, 3, true]}]', "not a number"),
        ("[" * 100_000, "invalid JSON"),
    ],
)
def test_qwen25vl_tolerant_problems(text, problem):
    parsed = parse(text, 100, 100, "qwen25vl")
    assert parsed.objects == []
    assert any(problem in line for line in parsed.problems), parsed.problems
