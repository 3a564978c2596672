"""Tests of geochat.geometry against independent computations (shapely, pycocotools, numpy)."""

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask
from shapely.geometry import Polygon

from geochat import geometry
from geochat.geometry import GeometryError

FAST = settings(max_examples=60, deadline=None)

coordinates = st.integers(min_value=-50, max_value=250)
sides = st.floats(min_value=0.5, max_value=100, allow_nan=False)
angles = st.floats(min_value=-180, max_value=180, allow_nan=False)


@st.composite
def hbbs(draw):
    x0, x1 = sorted((draw(coordinates), draw(coordinates)))
    y0, y1 = sorted((draw(coordinates), draw(coordinates)))
    return [x0, y0, x1, y1]


def shapely_box_iou(a, b):
    box_a, box_b = shapely.box(*a), shapely.box(*b)
    union = box_a.union(box_b).area
    return box_a.intersection(box_b).area / union if union else 0.0


def shapely_polygon_iou(a, b):
    polygon_a, polygon_b = Polygon(a), Polygon(b)
    return polygon_a.intersection(polygon_b).area / polygon_a.union(polygon_b).area


def is_clockwise_on_screen(quad):
    # Shoelace with y down: positive means clockwise as seen on screen.
    x, y = quad[:, 0], quad[:, 1]
    return np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0


# Validation


@pytest.mark.parametrize(
    "box",
    [[0, 0, 1], [[0, 0, 1, 1, 2]], [0, 0, math.nan, 1], [5, 0, 1, 1], [0, 5, 1, 1], "abcd"],
)
def test_as_hbb_rejects_bad_boxes(box):
    with pytest.raises(GeometryError):
        geometry.as_hbb(box)


def test_as_hbbs_accepts_empty_and_rejects_wrong_shape():
    assert geometry.as_hbbs([]).shape == (0, 4)
    with pytest.raises(GeometryError, match=r"\[N, 4\]"):
        geometry.as_hbbs([[0, 0, 1]])
    with pytest.raises(GeometryError, match="non-finite"):
        geometry.as_hbbs([[0, 0, math.inf, 1]])


def test_as_quad_accepts_flat_and_rejects_wrong_shape():
    flat = [0, 0, 4, 0, 4, 2, 0, 2]
    np.testing.assert_array_equal(geometry.as_quad(flat), np.reshape(flat, (4, 2)))
    for bad in ([0, 0, 1, 1], [[0, 0]] * 5, [[0, math.nan]] * 4):
        with pytest.raises(GeometryError):
            geometry.as_quad(bad)


def test_obb_rejects_negative_sides():
    with pytest.raises(GeometryError):
        geometry.obb_to_quad(0, 0, -1, 2, 0)


# Conversions


def test_hbb_quad_round_trip():
    quad = geometry.hbb_to_quad([1, 2, 5, 9])
    np.testing.assert_array_equal(quad, [[1, 2], [5, 2], [5, 9], [1, 9]])
    np.testing.assert_array_equal(geometry.quad_to_hbb(quad), [1, 2, 5, 9])


def test_canonical_quad_starts_top_most_and_goes_clockwise_on_screen():
    # A diamond given counter-clockwise on screen, starting from its left corner.
    diamond = [[0, 5], [5, 10], [10, 5], [5, 0]]
    np.testing.assert_array_equal(
        geometry.canonical_quad(diamond), [[5, 0], [10, 5], [5, 10], [0, 5]]
    )


def test_canonical_quad_breaks_ties_to_the_left():
    np.testing.assert_array_equal(
        geometry.canonical_quad([[4, 0], [4, 2], [0, 2], [0, 0]]), [[0, 0], [4, 0], [4, 2], [0, 2]]
    )


def test_canonical_quad_ignores_rounding_noise_in_ties():
    # Regression: at 180 degrees the top corners differ by 1e-16 and the right one used to start.
    np.testing.assert_allclose(
        geometry.obb_to_quad(0, 0, 4, 2, 180), [[-2, -1], [2, -1], [2, 1], [-2, 1]], atol=1e-12
    )


def test_obb_angle_is_clockwise_on_screen():
    # w side at +90 degrees points down the image (+y), so the box is tall.
    np.testing.assert_allclose(
        geometry.obb_to_quad(10, 20, 4, 2, 90), geometry.hbb_to_quad([9, 18, 11, 22]), atol=1e-12
    )
    # At +30 degrees the w side goes right and down: its end lies below its start.
    quad = geometry.obb_to_quad(0, 0, 4, 2, 30)
    np.testing.assert_allclose(quad[1] - quad[0], [4 * math.cos(math.pi / 6), 2.0], atol=1e-12)


def test_quad_to_obb_of_a_known_rectangle():
    cx, cy, w, h, angle = geometry.quad_to_obb(geometry.obb_to_quad(50, 40, 30, 10, 30))
    assert (cx, cy, w, h, angle) == pytest.approx((50, 40, 30, 10, 30))


@FAST
@given(cx=coordinates, cy=coordinates, w=sides, h=sides, angle=angles)
def test_obb_round_trip_is_the_same_rectangle(cx, cy, w, h, angle):
    quad = geometry.obb_to_quad(cx, cy, w, h, angle)
    assert is_clockwise_on_screen(quad)
    assert np.argmin(quad[:, 1]) == 0 or np.isclose(quad[0, 1], quad[:, 1].min())
    obb = geometry.quad_to_obb(quad)
    assert -90 <= obb[4] < 90
    assert obb[2] * obb[3] == pytest.approx(w * h, rel=1e-9)
    # (w, h, angle) and (h, w, angle + 90) are the same rectangle; the corners must agree.
    np.testing.assert_allclose(geometry.obb_to_quad(*obb), quad, atol=1e-6)


@FAST
@given(w=sides, h=sides, angle=angles, shift=st.integers(0, 3), reverse=st.booleans())
def test_canonical_quad_is_independent_of_input_order(w, h, angle, shift, reverse):
    quad = geometry.obb_to_quad(100, 100, w, h, angle)
    shuffled = np.roll(quad, shift, axis=0)
    shuffled = shuffled[::-1] if reverse else shuffled
    np.testing.assert_allclose(geometry.canonical_quad(shuffled), quad, atol=1e-9)


def test_min_area_rect_of_rotated_points_and_degenerate_input():
    corners = geometry.obb_to_quad(10, 10, 8, 2, 25)
    points = np.vstack([corners, corners.mean(axis=0)])  # an interior point changes nothing
    np.testing.assert_allclose(geometry.min_area_rect(points), corners, atol=1e-9)
    flat = geometry.min_area_rect([[0, 0], [1, 1], [2, 2]])
    assert Polygon(flat).area == 0
    with pytest.raises(GeometryError, match="empty"):
        geometry.min_area_rect(Polygon())


def test_clip_hbb_and_quad():
    np.testing.assert_array_equal(geometry.clip_hbb([-5, 2, 20, 30], 10, 10), [0, 2, 10, 10])
    assert geometry.clip_quad(geometry.hbb_to_quad([20, 20, 30, 30]), 10, 10) is None
    clipped = geometry.clip_quad(geometry.hbb_to_quad([-5, -5, 5, 5]), 10, 10)
    np.testing.assert_allclose(clipped, geometry.hbb_to_quad([0, 0, 5, 5]))


def test_quad_to_polygon_repairs_a_bow_tie():
    polygon = geometry.quad_to_polygon([[0, 0], [2, 2], [2, 0], [0, 2]])
    assert polygon.is_valid
    assert polygon.area == pytest.approx(2.0)


# Grammar coordinates


def test_grammar_coordinates_are_per_axis_and_clipped():
    np.testing.assert_array_equal(
        geometry.to_grammar([250, 125, 500, 250], width=500, height=250), [500, 500, 1000, 1000]
    )
    np.testing.assert_array_equal(geometry.to_grammar([[-3, 300]], 500, 250), [[0, 1000]])
    np.testing.assert_allclose(geometry.from_grammar([500, 500], 500, 250), [250, 125])


@FAST
@given(x=st.floats(0, 640), y=st.floats(0, 480))
def test_grammar_round_trip_error_is_at_most_half_a_step(x, y):
    back = geometry.from_grammar(geometry.to_grammar([x, y], 640, 480), 640, 480)
    assert abs(back[0] - x) <= 640 / 2000 + 1e-9
    assert abs(back[1] - y) <= 480 / 2000 + 1e-9


@pytest.mark.parametrize("values", [[1, 2, 3], 5.0])
def test_grammar_needs_xy_pairs(values):
    with pytest.raises(GeometryError, match="pairs"):
        geometry.to_grammar(values, 10, 10)


def test_grammar_needs_a_positive_image_size():
    with pytest.raises(GeometryError, match="positive"):
        geometry.from_grammar([1, 2], 0, 10)


# Masks


def test_rasterize_keeps_holes_and_sets_pixels_whose_centre_is_inside():
    outer = [(1.2, 1.2), (14.7, 1.2), (14.7, 11.3), (1.2, 11.3)]
    hole = [(4.2, 4.3), (9.8, 4.3), (9.8, 8.6), (4.2, 8.6)]
    polygon = Polygon(outer, [hole])
    mask = geometry.rasterize(polygon, 13, 16)
    rows, cols = np.mgrid[0:13, 0:16]
    expected = shapely.contains_xy(polygon, cols + 0.5, rows + 0.5)
    np.testing.assert_array_equal(mask, expected)
    assert not mask[6, 7]  # inside the hole


def test_rasterize_degenerate_and_invalid_input():
    assert not geometry.rasterize([[0, 0], [5, 5], [9, 9]], 10, 10).any()  # zero area
    assert not geometry.rasterize([[20, 20], [30, 20], [30, 30]], 10, 10).any()  # off image
    with pytest.raises(GeometryError):
        geometry.rasterize([[0, 0], [1, 1]], 10, 10)
    with pytest.raises(GeometryError, match="positive"):
        geometry.rasterize([[0, 0], [1, 0], [1, 1]], 0, 10)


def test_rle_round_trip_and_area():
    mask = np.zeros((7, 9), dtype=bool)
    mask[2:5, 3:8] = True
    rle = geometry.mask_to_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [7, 9]
    np.testing.assert_array_equal(geometry.rle_to_mask(rle), mask)
    assert geometry.mask_area(rle) == 15


def test_uncompressed_rle_is_accepted_and_checked():
    mask = geometry.rle_to_mask({"size": [2, 3], "counts": [1, 2, 3]})
    # Column-major: one unset pixel, two set, three unset.
    np.testing.assert_array_equal(mask, [[False, True, False], [True, False, False]])
    with pytest.raises(GeometryError, match="sum"):
        geometry.rle_to_mask({"size": [2, 3], "counts": [1, 2]})
    with pytest.raises(GeometryError, match="RLE"):
        geometry.rle_to_mask({"counts": "abc"})


def test_mask_to_rle_rejects_non_2d():
    with pytest.raises(GeometryError):
        geometry.mask_to_rle(np.zeros((2, 2, 2), dtype=bool))


def test_mask_to_hbb_and_quad():
    mask = np.zeros((20, 20), dtype=bool)
    mask[3:6, 4:12] = True
    np.testing.assert_array_equal(geometry.mask_to_hbb(mask), [4, 3, 12, 6])
    np.testing.assert_allclose(
        geometry.mask_to_quad(geometry.mask_to_rle(mask)), [[4, 3], [12, 3], [12, 6], [4, 6]]
    )
    empty = np.zeros((5, 5), dtype=bool)
    assert geometry.mask_to_hbb(empty) is None
    assert geometry.mask_to_quad(geometry.mask_to_rle(empty)) is None


def test_mask_to_quad_of_a_rotated_mask_covers_every_pixel():
    polygon = geometry.quad_to_polygon(geometry.obb_to_quad(32, 32, 40, 10, 35))
    mask = geometry.rasterize(polygon, 64, 64)
    quad = geometry.mask_to_quad(mask)
    pixels = shapely.union_all([shapely.box(c, r, c + 1, r + 1) for r, c in np.argwhere(mask)])
    assert geometry.quad_to_polygon(quad).buffer(1e-9).contains(pixels)
    assert Polygon(quad).area == pytest.approx(pixels.minimum_rotated_rectangle.area)
    assert geometry.quad_to_obb(quad)[4] == pytest.approx(35, abs=3)


def test_polygon_to_rle_matches_rasterize():
    triangle = [[1, 1], [30, 4], [8, 25]]
    rle = geometry.polygon_to_rle(triangle, 32, 32)
    assert geometry.mask_area(rle) == geometry.rasterize(triangle, 32, 32).sum()


# IoU


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),  # identical
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching along an edge
        ([0, 0, 10, 10], [10, 10, 20, 20], 0.0),  # touching at a corner
        ([0, 0, 10, 10], [2, 2, 4, 4], 0.04),  # contained
        ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
        ([3, 3, 3, 8], [3, 3, 3, 8], 0.0),  # zero area against itself
        ([3, 3, 3, 8], [0, 0, 10, 10], 0.0),  # zero area inside a box
    ],
)
def test_hbb_iou_tricky_cases(a, b, expected):
    assert geometry.hbb_iou([a], [b])[0, 0] == pytest.approx(expected)
    assert geometry.hbb_iou([b], [a])[0, 0] == pytest.approx(expected)
    assert geometry.quad_iou([geometry.hbb_to_quad(a)], [geometry.hbb_to_quad(b)])[
        0, 0
    ] == pytest.approx(expected)


@FAST
@given(a=st.lists(hbbs(), min_size=1, max_size=4), b=st.lists(hbbs(), min_size=1, max_size=4))
def test_hbb_iou_matches_shapely_and_pycocotools(a, b):
    ious = geometry.hbb_iou(a, b)
    assert ious.shape == (len(a), len(b))
    expected = [[shapely_box_iou(box_a, box_b) for box_b in b] for box_a in a]
    np.testing.assert_allclose(ious, expected, atol=1e-12)
    # pycocotools takes [x, y, w, h]; it differs only where a box has no area.
    xywh_a, xywh_b = np.array(a, float), np.array(b, float)
    xywh_a[:, 2:] -= xywh_a[:, :2]
    xywh_b[:, 2:] -= xywh_b[:, :2]
    coco = coco_mask.iou(xywh_a, xywh_b, [0] * len(b))
    areas_positive = np.outer(
        [(x1 - x0) * (y1 - y0) > 0 for x0, y0, x1, y1 in a],
        [(x1 - x0) * (y1 - y0) > 0 for x0, y0, x1, y1 in b],
    )
    np.testing.assert_allclose(ious[areas_positive], np.asarray(coco)[areas_positive], atol=1e-9)


def test_hbb_iou_of_empty_sets_has_the_right_shape():
    assert geometry.hbb_iou([], [[0, 0, 1, 1]]).shape == (0, 1)
    assert geometry.quad_iou([], [geometry.hbb_to_quad([0, 0, 1, 1])]).shape == (0, 1)


def test_quad_iou_of_a_square_and_itself_rotated_by_45_degrees():
    square = geometry.obb_to_quad(5, 5, 2, 2, 0)
    diamond = geometry.obb_to_quad(5, 5, 2, 2, 45)
    # The overlap is a regular octagon of area 8(sqrt(2) - 1); the IoU is 1/sqrt(2).
    assert geometry.quad_iou([square], [diamond])[0, 0] == pytest.approx(1 / math.sqrt(2))


@FAST
@given(
    first=st.tuples(coordinates, coordinates, sides, sides, angles),
    second=st.tuples(coordinates, coordinates, sides, sides, angles),
)
def test_quad_iou_matches_shapely_polygons(first, second):
    a, b = geometry.obb_to_quad(*first), geometry.obb_to_quad(*second)
    expected = shapely_polygon_iou(a, b)
    assert geometry.quad_iou([a, b], [b])[0, 0] == pytest.approx(expected, abs=1e-9)
    assert geometry.quad_iou([a], [a])[0, 0] == pytest.approx(1.0)


def test_quad_iou_of_rotated_quads_that_share_an_edge_is_zero():
    first = geometry.obb_to_quad(10, 10, 4, 2, 30)
    # Shifted by w along the w side: the two rectangles share one edge.
    step = 4 * np.array([np.cos(np.pi / 6), np.sin(np.pi / 6)])
    second = geometry.obb_to_quad(10 + step[0], 10 + step[1], 4, 2, 30)
    assert geometry.quad_iou([first], [second])[0, 0] == pytest.approx(0, abs=1e-9)
    assert shapely_polygon_iou(first, second) == pytest.approx(0, abs=1e-9)


def test_quad_iou_degenerate_quads():
    box = geometry.hbb_to_quad([0, 0, 2, 2])
    flat = [[0, 0], [2, 2], [2, 2], [0, 0]]
    bow_tie = [[0, 0], [2, 2], [2, 0], [0, 2]]
    ious = geometry.quad_iou([flat, bow_tie], [box, flat])
    # The bow-tie is repaired into two triangles of total area 2 inside the 2x2 box.
    np.testing.assert_allclose(ious, [[0.0, 0.0], [0.5, 0.0]])
    with pytest.raises(GeometryError):
        geometry.quad_iou([[[0, 0], [1, math.nan], [1, 1], [0, 1]]], [box])


def test_mask_iou_matches_numpy_and_handles_empty_masks():
    rng = np.random.default_rng(0)
    masks = [rng.random((24, 31)) < p for p in (0.2, 0.5, 0.0)]
    rles = [geometry.mask_to_rle(m) for m in masks]
    ious = geometry.mask_iou(rles, rles)
    for i, a in enumerate(masks):
        for j, b in enumerate(masks):
            union = np.logical_or(a, b).sum()
            expected = np.logical_and(a, b).sum() / union if union else 0.0
            assert ious[i, j] == pytest.approx(expected)
    assert ious[2, 2] == 0.0  # empty against empty
    assert geometry.mask_intersection_union(rles[0], rles[2]) == (0, masks[0].sum())
    assert geometry.mask_iou([], rles).shape == (0, 3)


def test_mask_iou_rejects_different_sizes():
    a = geometry.mask_to_rle(np.ones((4, 4), dtype=bool))
    b = geometry.mask_to_rle(np.ones((4, 5), dtype=bool))
    with pytest.raises(GeometryError, match="size"):
        geometry.mask_iou([a], [b])
    with pytest.raises(GeometryError, match="size"):
        geometry.mask_intersection_union(a, b)


def test_mask_iou_of_rasterized_rotated_boxes_approaches_their_quad_iou():
    a = geometry.obb_to_quad(100, 100, 120, 40, 20)
    b = geometry.obb_to_quad(110, 105, 120, 40, 35)
    rles = [geometry.polygon_to_rle(geometry.quad_to_polygon(q), 200, 200) for q in (a, b)]
    assert geometry.mask_iou(rles[:1], rles[1:])[0, 0] == pytest.approx(
        geometry.quad_iou([a], [b])[0, 0], abs=0.01
    )
