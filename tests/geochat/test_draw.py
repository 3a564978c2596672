"""Tests of geochat.draw: outlines, mask fills and labels land where the geometry is."""

import numpy as np
import pytest
from PIL import Image

from geochat.draw import PALETTE, draw_objects
from geochat.geometry import mask_to_rle
from geochat.grammar import GroundedObject, parse

WIDTH, HEIGHT = 200, 100
GREY = 128


def grey_image():
    return Image.new("RGB", (WIDTH, HEIGHT), (GREY, GREY, GREY))


def changed(drawn):
    """Boolean `[H, W]`: pixels that differ from the grey background."""
    return (np.asarray(drawn).astype(int) != GREY).any(axis=-1)


def test_box_outline_is_drawn_and_the_inside_left_alone():
    objects = parse("<box>[[100,200,500,800]]</box>", WIDTH, HEIGHT).objects  # 20,20 - 100,80 px

    drawn = changed(draw_objects(grey_image(), objects))

    assert drawn[20, 50] and drawn[50, 20] and drawn[80, 50] and drawn[50, 100]  # the 4 sides
    assert not drawn[50, 60]  # inside
    assert not drawn[5, 150] and not drawn[95, 5]  # outside


def test_quad_outline_follows_the_corners():
    objects = parse("<quad>[[500,100,900,500,500,900,100,500]]</quad>", WIDTH, HEIGHT).objects

    drawn = changed(draw_objects(grey_image(), objects))

    assert drawn[10, 100] and drawn[50, 180]  # top and right corners (100,10), (180,50)
    assert not drawn[50, 100]  # centre of the diamond
    assert not drawn[12, 25]  # outside the diamond, inside its box


def test_mask_is_filled_translucently_in_the_phrase_colour():
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[60:90, 120:180] = True
    objects = [GroundedObject(kind="mask", hbb=[120, 60, 180, 90], mask=mask_to_rle(mask))]

    pixels = np.asarray(draw_objects(grey_image(), objects, mask_opacity=0.5)).astype(int)

    expected = np.rint((np.array(PALETTE[0]) + GREY) / 2)
    np.testing.assert_allclose(pixels[75, 150], expected, atol=1)
    assert (pixels[10, 10] == GREY).all()


def test_labels_are_written_and_phrases_share_colours():
    boxes = "<box>[[100,500,200,900],[600,500,700,900]]</box>"
    objects = parse(
        f"<ref>two ships</ref>{boxes}<ref>a pier</ref><box>[[400,100,500,300]]</box>", WIDTH, HEIGHT
    ).objects

    pixels = np.asarray(draw_objects(grey_image(), objects)).astype(int)
    without_phrases = changed(draw_objects(grey_image(), parse(boxes, WIDTH, HEIGHT).objects))

    # Both ship boxes are outlined in the first colour, the pier in the second.
    assert (pixels[70, 20] == PALETTE[0]).all() and (pixels[70, 120] == PALETTE[0]).all()
    assert (pixels[20, 80] == PALETTE[1]).all()
    # A label sits above each ship box (the boxes start at y = 50), none without a phrase.
    label_area = (slice(38, 48), slice(22, 32))
    assert changed(Image.fromarray(pixels.astype(np.uint8)))[label_area].any()
    assert not without_phrases[label_area].any()


def test_none_draws_nothing_and_the_input_is_not_modified():
    image = grey_image()
    drawn = draw_objects(image, parse("<ref>a plane</ref><none>", WIDTH, HEIGHT).objects)
    assert not changed(drawn).any()
    assert drawn is not image and drawn.mode == "RGB"


def test_a_mask_of_another_size_is_refused():
    objects = parse("<seg>16|" + ";".join(["1*16"] * 16) + "</seg>", 50, 50).objects
    with pytest.raises(ValueError, match="50x50 pixels cannot be drawn on an image of 200x100"):
        draw_objects(grey_image(), objects)


def test_opacity_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="mask_opacity"):
        draw_objects(grey_image(), [], mask_opacity=1.5)
