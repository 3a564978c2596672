"""Behaviour of the canonical grammar v1: parsing (tolerant and strict) and writing."""

import numpy as np
import pytest

from geochat import geometry
from geochat.geometry import GeometryError
from geochat.grammar import (
    NONE,
    GrammarError,
    GroundedObject,
    format,
    format_hbbs,
    format_mask,
    format_quads,
    format_ref,
    format_region,
    parse,
)

W, H = 1000, 500  # grammar value v maps to v px in x and v / 2 px in y


# Phrases, order, kinds


def test_phrases_attach_to_the_geometry_right_after_them_in_order():
    text = (
        "There are <ref>two ships</ref><box>[[100,200,300,400],[500,500,600,700]]</box> near "
        "<ref>the pier</ref><quad>[[10,20,90,20,90,80,10,80]]</quad>."
    )
    parsed = parse(text, W, H)
    assert parsed.problems == []
    assert [(o.kind, o.phrase) for o in parsed.objects] == [
        ("hbb", "two ships"),
        ("hbb", "two ships"),
        ("quad", "the pier"),
    ]
    assert parsed.objects[0].hbb == [100.0, 100.0, 300.0, 200.0]
    assert parsed.objects[1].hbb == [500.0, 250.0, 600.0, 350.0]
    assert parsed.objects[2].quad == [[10.0, 10.0], [90.0, 10.0], [90.0, 40.0], [10.0, 40.0]]
    assert parsed.objects[2].hbb == [10.0, 10.0, 90.0, 40.0]
    assert parsed.text == "There are two ships near the pier."


def test_a_phrase_applies_only_to_the_tag_right_after_it():
    text = "<ref>a car</ref><box>[[0,0,10,10]]</box><box>[[20,20,30,30]]</box>"
    parsed = parse(text, W, H)
    assert [o.phrase for o in parsed.objects] == ["a car", None]


def test_a_phrase_followed_by_words_does_not_attach():
    parsed = parse("<ref>the road</ref> runs past <box>[[0,0,10,10]]</box>", W, H)
    assert parsed.objects[0].phrase is None
    assert parsed.text == "the road runs past"


def test_spaces_between_phrase_and_geometry_are_allowed():
    parsed = parse("<ref>a tank</ref> <box>[[0,0,10,10]]</box>", W, H)
    assert parsed.objects[0].phrase == "a tank"


def test_objects_keep_their_order_across_kinds():
    text = (
        "<seg>16|1*16"
        + ";0*16" * 15
        + "</seg><box>[[0,0,1,1]]</box><none><quad>"
        + ("[[0,0,10,0,10,10,0,10]]</quad>")
    )
    assert [o.kind for o in parse(text, W, H).objects] == ["mask", "hbb", "none", "quad"]


def test_none_is_an_object_of_kind_none_with_its_phrase():
    parsed = parse("No. <ref>airplanes</ref><none>", W, H)
    assert [(o.kind, o.phrase, o.hbb, o.quad) for o in parsed.objects] == [
        ("none", "airplanes", None, None)
    ]
    assert parsed.text == "No. airplanes"


def test_geometry_spans_point_at_their_text():
    text = "A <ref>b</ref><box>[[1,2,3,4]]</box>"
    (found,) = parse(text, W, H).objects
    assert text[slice(*found.span)] == "<box>[[1,2,3,4]]</box>"


def test_quads_are_read_in_any_corner_order_and_returned_canonical():
    counter_clockwise = "<quad>[[0,0,0,100,100,100,100,0]]</quad>"
    (found,) = parse(counter_clockwise, 1000, 1000).objects
    assert found.quad == [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]]


# Masks


def test_seg_is_upsampled_with_each_cell_covering_its_share_of_the_image():
    rows = ["0*16"] * 16
    rows[1] = "0*5,1*6,0*5"
    (found,) = parse(f"<seg>16|{';'.join(rows)}</seg>", 160, 80).objects
    mask = geometry.rle_to_mask(found.mask)
    assert mask.shape == (80, 160)
    expected = np.zeros((80, 160), dtype=bool)
    expected[5:10, 50:110] = True  # row 1 of 16 on 80 px; columns 5..10 of 16 on 160 px
    np.testing.assert_array_equal(mask, expected)
    assert found.hbb == [50.0, 5.0, 110.0, 10.0]
    assert found.grid == 16 and found.quad is None


def test_format_mask_sets_cells_at_least_half_covered():
    mask = np.zeros((32, 32), dtype=bool)
    mask[0:2, 0:2] = True  # cell (0, 0) of a 16 grid: fully covered
    mask[0, 2:4] = True  # cell (0, 1): half covered
    mask[2, 0] = True  # cell (1, 0): a quarter covered
    text = format_mask(mask, grid=16)
    assert text == "<seg>16|1*2,0*14;" + ";".join(["0*16"] * 15) + "</seg>"


def test_format_mask_keeps_a_small_object_in_its_most_covered_cell():
    mask = np.zeros((64, 64), dtype=bool)
    mask[40, 41] = True
    (found,) = parse(format_mask(mask, grid=16), 64, 64).objects
    assert found.hbb == [40.0, 40.0, 44.0, 44.0]


def test_format_mask_accepts_rle_and_rejects_bad_input():
    mask = np.zeros((20, 20), dtype=bool)
    mask[:, :10] = True
    assert format_mask(geometry.mask_to_rle(mask), 16) == format_mask(mask, 16)
    with pytest.raises(GrammarError, match="empty"):
        format_mask(np.zeros((20, 20), dtype=bool))
    with pytest.raises(GrammarError, match="grid"):
        format_mask(mask, grid=20)


# Writing


def test_format_hbbs_quads_ref_region_and_none():
    assert format_hbbs([[100, 100, 300, 200]], W, H) == "<box>[[100,200,300,400]]</box>"
    assert format_hbbs([100, 100, 300, 200], W, H) == "<box>[[100,200,300,400]]</box>"
    square = [[10, 40], [10, 10], [90, 10], [90, 40]]  # clockwise from the bottom-left
    counter_clockwise = [[10, 10], [10, 40], [90, 40], [90, 10]]
    assert format_quads([square], W, H) == "<quad>[[10,20,90,20,90,80,10,80]]</quad>"
    assert format_quads(counter_clockwise, W, H) == format_quads([square], W, H)
    assert format_ref("pier", "<none>") == "<ref>pier</ref><none>"
    assert format_region([100, 100, 300, 200], W, H) == "<box>[[100,200,300,400]]</box>"
    assert format_region(square, W, H) == "<quad>[[10,20,90,20,90,80,10,80]]</quad>"
    assert NONE == "<none>"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: format_hbbs([], W, H), GrammarError),
        (lambda: format_hbbs([[5, 0, 1, 1]], W, H), GeometryError),
        (lambda: format_quads([], W, H), GrammarError),
        (lambda: format_ref("a <box> b"), GrammarError),
        (lambda: format_region([1, 2, 3], W, H), GrammarError),
        (lambda: format([{"kind": "circle"}], W, H), GrammarError),
        (lambda: format([{"kind": "hbb"}], W, H), GrammarError),
        (lambda: format([], 0, H), GeometryError),
    ],
)
def test_writing_bad_input_raises_a_clear_error(call, error):
    with pytest.raises(error):
        call()


def test_format_writes_parsed_objects_back_to_the_same_text():
    text = (
        "<ref>two ships</ref><box>[[100,200,300,400],[500,500,600,700]]</box> "
        "<ref>the pier</ref><quad>[[10,20,90,20,90,80,10,80]]</quad> <ref>planes</ref><none> "
        "<seg>16|" + ";".join(["1*16"] + ["0*16"] * 15) + "</seg>"
    )
    assert format(parse(text, W, H).objects, W, H) == text


def test_format_accepts_mappings():
    objects = [{"kind": "hbb", "phrase": "a car", "hbb": [100, 100, 300, 200]}, {"kind": "none"}]
    assert format(objects, W, H) == "<ref>a car</ref><box>[[100,200,300,400]]</box> <none>"


def test_format_rejects_a_mask_of_another_size():
    mask = geometry.mask_to_rle(np.ones((10, 10), dtype=bool))
    with pytest.raises(GrammarError, match="size"):
        format([GroundedObject(kind="mask", hbb=[0, 0, 10, 10], mask=mask)], 20, 10)


# Tolerant parsing


@pytest.mark.parametrize(
    ("text", "kept", "problem"),
    [
        ("<box>[[300,0,100,10]]</box>", [[100.0, 0.0, 300.0, 5.0]], "swapped"),
        ("<box>[100,0,300,10]</box>", [[100.0, 0.0, 300.0, 5.0]], "outer brackets"),
        ("<box>[[100,0,300,1001]]</box>", [], "out of range"),
        ("<box>[[100,0,300]]</box>", [], "expected 4 numbers"),
        ("<box>[[100,0,300,nan]]</box>", [], "not a number"),
        ("<box>[[1e3,0,300,10]]</box>", [], "not a number"),
        ("<box>[[" + "9" * 5000 + ",0,1,1]]</box>", [], "out of range"),
        ("<box>[[100.5,0,300,10]]</box>", [[100.5, 0.0, 300.0, 5.0]], "not an integer"),
        ("<box>[[100,0,300,10],[1,2", [[100.0, 0.0, 300.0, 5.0]], "without </box>"),
        ("<box>[[100,0,300,10]] <ref>x</ref>", [[100.0, 0.0, 300.0, 5.0]], "without </box>"),
        ("</box><box>[[100,0,300,10]]</box>", [[100.0, 0.0, 300.0, 5.0]], "without an opening"),
        ("<ref>ships<box>[[100,0,300,10]]</box>", [[100.0, 0.0, 300.0, 5.0]], "without </ref>"),
        ("<box>[]</box>", [], "expected '['"),
        ("<box>[[1,2,3,4]] extra</box>", [[1.0, 1.0, 3.0, 2.0]], "unexpected text"),
    ],
)
def test_tolerant_parsing_keeps_well_formed_geometry_and_reports_the_rest(text, kept, problem):
    parsed = parse(text, W, H)
    assert [o.hbb for o in parsed.objects] == kept
    assert any(problem in line for line in parsed.problems), parsed.problems


@pytest.mark.parametrize(
    ("seg", "problem"),
    [
        ("16|" + ";".join(["1*16"] * 15), "15 rows"),
        ("16|" + ";".join(["1*15"] + ["1*16"] * 15), "holds 15 cells"),
        ("16|" + ";".join(["1*17"] + ["1*16"] * 15), "more than 16"),
        ("16|" + ";".join(["1,1*15"] + ["1*16"] * 15), "'v*count'"),
        ("8|" + ";".join(["1*8"] * 8), "grid side 8"),
    ],
)
def test_tolerant_parsing_repairs_seg_rows_and_reports_them(seg, problem):
    parsed = parse(f"<seg>{seg}</seg>", 64, 64)
    assert [o.kind for o in parsed.objects] == ["mask"]
    assert any(problem in line for line in parsed.problems), parsed.problems


@pytest.mark.parametrize(
    ("seg", "problem"),
    [
        ("1*16", "expected 'N|"),
        ("1000|1*1000", "out of range"),
        ("16|" + ";".join(["0*16"] * 16), "empty"),
    ],
)
def test_tolerant_parsing_drops_unreadable_masks(seg, problem):
    parsed = parse(f"<seg>{seg}</seg>", 64, 64)
    assert parsed.objects == []
    assert any(problem in line for line in parsed.problems), parsed.problems


def test_problems_are_capped_for_hostile_answers():
    parsed = parse("</box>" * 1000, W, H)
    assert len(parsed.problems) == 101
    assert parsed.problems[-1] == "... and 900 more problems"


def test_tolerant_parsing_of_a_non_string_reports_it():
    parsed = parse(None, W, H)
    assert parsed.objects == [] and "string" in parsed.problems[0]


def test_an_invalid_image_size_raises_in_both_modes():
    for strict in (False, True):
        with pytest.raises(GeometryError):
            parse("<box>[[0,0,1,1]]</box>", 0, 10, strict=strict)


# Strict parsing


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("<box>[[300,0,100,10]]</box>", 6),
        ("<box>[100,0,300,10]</box>", 5),
        ("ok <box>[[100,0,300,1001]]</box>", 20),
        ("<box>[[100,0,300]]</box>", 6),
        ("<box>[[100,0,300,10]]", 0),
        ("<box>[[1,2,3,4]]</box></box>", 22),
        ("<ref>unclosed", 0),
        ("<quad>[[1,2,3,4,5,6,7]]</quad>", 7),
        ("<box>[[1.5,0,3,4]]</box>", 7),
        ("<seg>16|1*16</seg>", 8),
        ("<seg>8|" + ";".join(["1*8"] * 8) + "</seg>", 5),
        ("<box>[[1,2,3,4],]</box>", 16),
    ],
)
def test_strict_parsing_raises_with_the_position(text, position):
    with pytest.raises(GrammarError) as raised:
        parse(text, W, H, strict=True)
    assert raised.value.position == position
    assert isinstance(raised.value, ValueError)
    assert f"at position {position}" in str(raised.value)


def test_strict_parsing_accepts_well_formed_text():
    text = "<ref>a</ref><box>[[1, 2, 3, 4], [5,6,7,8]]</box> <none>"
    parsed = parse(text, W, H, strict=True)
    assert [o.kind for o in parsed.objects] == ["hbb", "hbb", "none"]
    assert parsed.problems == []
