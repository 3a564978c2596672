"""Tests of geochat.draw: outlines, mask fills and labels land where the geometry is."""

import numpy as np
import pytest
from PIL import Image

from geochat.draw import PALETTE, draw_objects, legend_entries
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


def legend_of(drawn):
    """The strip under the image, as an array `[h, W, 3]`."""
    return np.asarray(drawn)[HEIGHT:].astype(int)


def test_the_legend_under_the_image_names_each_colour():
    text = "<ref>two ships</ref><box>[[100,500,200,900],[600,500,700,900]]</box>"
    text += "<ref>a pier</ref><quad>[[500,100,900,500,500,900,100,500]]</quad>"
    drawn = draw_objects(grey_image(), parse(text, WIDTH, HEIGHT).objects)

    assert drawn.width == WIDTH and drawn.height > HEIGHT
    strip = legend_of(drawn)
    for colour in PALETTE[:2]:  # a swatch per phrase
        assert (strip == colour).all(axis=-1).sum() >= 25
    assert (strip == 255).all(axis=-1).any()  # its text
    assert not (strip == PALETTE[2]).all(axis=-1).any()
    # Above the strip the image keeps its size and coordinates.
    no_legend = draw_objects(grey_image(), parse(text, WIDTH, HEIGHT).objects, legend=False)
    assert no_legend.size == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(np.asarray(drawn)[:HEIGHT], np.asarray(no_legend))


def test_legend_entries_count_each_kind():
    mask = "<seg>16|" + ";".join(["1*16"] * 16) + "</seg>"
    text = f"<ref>ships</ref><box>[[0,0,10,10],[20,20,30,30]]</box><box>[[1,1,9,9]]</box>{mask}"
    assert legend_entries(parse(text, WIDTH, HEIGHT).objects) == [
        ("ships", "ships (2 boxes)"),  # a phrase names every geometry of its tag
        ("unnamed", "unnamed (1 box, 1 mask)"),
    ]


def test_nothing_found_adds_no_legend():
    drawn = draw_objects(grey_image(), parse("<none>", WIDTH, HEIGHT).objects)
    assert drawn.size == (WIDTH, HEIGHT)


@pytest.mark.parametrize("background", [(GREY, GREY, GREY), PALETTE[0], (0, 0, 0), (255,) * 3])
@pytest.mark.parametrize(
    "answer", ["<box>[[0,0,1000,1000]]</box>", "<seg>16|" + ";".join(["1*16"] * 16) + "</seg>"]
)
def test_geometry_covering_the_whole_image_shows_on_every_side(background, answer):
    image = Image.new("RGB", (WIDTH, HEIGHT), background)
    objects = parse(answer, WIDTH, HEIGHT).objects

    pixels = np.asarray(draw_objects(image, objects, mask_opacity=0, legend=False)).astype(int)

    changed_pixels = (pixels != background).any(axis=-1)
    # At least 2 changed pixels across each edge (on a background of its colour, the dark lines).
    assert changed_pixels[:, WIDTH // 2][:6].sum() >= 2  # top
    assert changed_pixels[:, WIDTH // 2][-6:].sum() >= 2  # bottom
    assert changed_pixels[HEIGHT // 2][:6].sum() >= 2  # left
    assert changed_pixels[HEIGHT // 2][-6:].sum() >= 2  # right
    assert not changed_pixels[HEIGHT // 2, WIDTH // 2]
