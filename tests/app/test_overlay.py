import numpy as np
import pytest
from PIL import Image

from geochat.app.overlay import (
    UNNAMED,
    answer_summary,
    display_copy,
    overlay_annotations,
    region_to_original,
)
from geochat.geometry import mask_to_rle
from geochat.grammar import GroundedObject, parse


def _image(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), (40, 90, 60))


def test_small_images_are_shown_as_they_are():
    image = _image(300, 200)
    display = display_copy(image, max_side=512)
    assert display.image is image
    assert (display.scale_x, display.scale_y) == (1.0, 1.0)


def test_large_images_are_shown_downsampled_with_their_scale():
    display = display_copy(_image(3000, 1500), max_side=1024)
    assert display.size == (1024, 512)
    assert display.scale_x == pytest.approx(3000 / 1024)
    assert display.scale_y == pytest.approx(1500 / 512)


def test_display_side_must_be_positive():
    with pytest.raises(ValueError, match="max_side"):
        display_copy(_image(10, 10), max_side=0)


def test_drawn_region_maps_to_original_pixels_ordered_and_clipped():
    display = display_copy(_image(400, 200), max_side=100)  # scale 4 on both axes
    box = {"xmin": 30, "ymin": 40, "xmax": 10, "ymax": 5}  # dragged up and left
    assert region_to_original(box, display, 400, 200) == [40.0, 20.0, 120.0, 160.0]
    outside = {"xmin": -5, "ymin": 0, "xmax": 120, "ymax": 60}
    assert region_to_original(outside, display, 400, 200) == [0.0, 0.0, 400.0, 200.0]


def test_objects_of_one_phrase_share_a_legend_entry_and_colour():
    display = display_copy(_image(1000, 1000), max_side=100)
    parsed = parse(
        "<ref>ships</ref><box>[[100,100,300,300],[600,600,800,800]]</box>"
        "<ref>a pier</ref><box>[[400,0,500,100]]</box><box>[[0,900,100,1000]]</box>",
        1000,
        1000,
    )
    annotations, colours = overlay_annotations(parsed.objects, display)
    assert [label for _, label in annotations] == ["ships", "a pier", UNNAMED]
    assert len(set(colours.values())) == 3
    ships = annotations[0][0]
    assert ships.shape == (100, 100)
    assert ships[20, 20] > 0 and ships[70, 70] > 0  # both boxes, in display pixels
    assert ships[50, 50] == 0
    # Opaque outline, translucent inside.
    assert ships[10, 20] == 1.0
    assert 0 < ships[20, 20] < 1


def test_quads_are_drawn_as_rotated_polygons_not_their_boxes():
    display = display_copy(_image(100, 100), max_side=100)
    # A diamond: its enclosing box corners lie outside it.
    diamond = GroundedObject("quad", "pier", quad=[[50, 10], [90, 50], [50, 90], [10, 50]])
    [(opacity, label)], _ = overlay_annotations([diamond], display)
    assert label == "pier"
    assert opacity[50, 50] > 0
    assert opacity[15, 15] == 0 and opacity[85, 85] == 0


def test_masks_are_resized_to_the_display():
    mask = np.zeros((400, 800), dtype=bool)
    mask[100:300, 200:400] = True
    display = display_copy(_image(800, 400), max_side=200)  # scale 4
    [(opacity, _)], _ = overlay_annotations(
        [GroundedObject("mask", "field", mask=mask_to_rle(mask))], display
    )
    assert opacity.shape == (100, 200)
    assert np.argwhere(opacity > 0).min(axis=0).tolist() == [25, 50]
    assert np.argwhere(opacity > 0).max(axis=0).tolist() == [74, 99]


def test_objects_smaller_than_a_display_pixel_stay_visible():
    display = display_copy(_image(4000, 4000), max_side=100)
    car = GroundedObject("hbb", "car", hbb=[2000, 2000, 2010, 2010])
    [(opacity, _)], _ = overlay_annotations([car], display)
    assert opacity[50, 50] > 0
    assert np.count_nonzero(opacity) == 1


def test_none_answers_draw_nothing():
    display = display_copy(_image(10, 10))
    annotations, colours = overlay_annotations(parse("<none>", 10, 10).objects, display)
    assert annotations == [] and colours == {}


def test_summary_names_phrases_with_counts_and_kinds():
    objects = parse(
        "<ref>two ships</ref><box>[[1,1,5,5],[6,6,9,9]]</box> "
        "<ref>the pier</ref><quad>[[500,100,620,140,590,260,470,220]]</quad> "
        "<ref>pools</ref><none>",
        100,
        100,
    ).objects
    assert answer_summary(objects) == (
        "Found: **two ships** (2 boxes); **the pier** (1 oriented box); no **pools**."
    )
    assert answer_summary(parse("<none>", 10, 10).objects) == "Found: nothing."
    assert answer_summary([]) == ""
