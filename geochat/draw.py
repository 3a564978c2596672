"""Drawing grounded answers on their image: boxes, quads and masks with phrase labels.

Objects are those of `geochat.grammar.parse` (or anything with `kind`, `phrase`, `hbb`, `quad`
and `mask`), in pixel coordinates of the image they are drawn on. Objects sharing a phrase
share a colour; masks are filled translucently, boxes and quads outlined, and each object with
a phrase gets a label at its top-left corner. Line width and font size follow the image size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from geochat.geometry import RLE, rle_to_mask
from geochat.georef import ParsedObject

# Tableau 10: distinct colours that stay readable on imagery.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
LINE_WIDTH_FRACTION = 1 / 300  # of the longer side
FONT_SIZE_FRACTION = 1 / 30  # of the shorter side
MIN_LINE_WIDTH = 2
MIN_FONT_SIZE = 12
LABEL_PADDING = 2
OPAQUE = 255


def draw_objects(
    image: Image.Image, objects: Iterable[ParsedObject], mask_opacity: float = 0.4
) -> Image.Image:
    """Returns an RGB copy of `image` with the objects drawn on it.

    Args:
        image: The image the objects' pixel coordinates refer to.
        objects: Parsed objects; kind "none" draws nothing.
        mask_opacity: Opacity of mask fills, 0..1.

    Raises:
        ValueError: For a mask whose size differs from the image's, or an opacity outside 0..1.
    """
    if not 0 <= mask_opacity <= 1:
        raise ValueError(f"mask_opacity must be in 0..1, got {mask_opacity}")
    objects = [obj for obj in objects if obj.kind != "none"]
    colours = _colours(objects)
    canvas = image.convert("RGBA")
    for obj, colour in zip(objects, colours, strict=True):
        if obj.kind == "mask" and obj.mask is not None:
            canvas = Image.alpha_composite(
                canvas, _mask_layer(obj.mask, colour, mask_opacity, canvas.size)
            )
    draw = ImageDraw.Draw(canvas)
    width = max(MIN_LINE_WIDTH, round(max(canvas.size) * LINE_WIDTH_FRACTION))
    font = ImageFont.load_default(
        size=max(MIN_FONT_SIZE, round(min(canvas.size) * FONT_SIZE_FRACTION))
    )
    for obj, colour in zip(objects, colours, strict=True):
        if obj.kind in ("hbb", "quad") and obj.quad is not None:
            corners = [tuple(point) for point in np.asarray(obj.quad, dtype=float)]
            draw.polygon(corners, outline=(*colour, OPAQUE), width=width)
    for obj, colour in zip(objects, colours, strict=True):
        if obj.phrase and obj.hbb is not None:
            _label(draw, obj.phrase, obj.hbb, colour, font)
    return canvas.convert("RGB")


def _colours(objects: Sequence[ParsedObject]) -> list[tuple[int, int, int]]:
    """One palette colour per phrase, in order of first appearance (None is a phrase too)."""
    order: dict[str | None, int] = {}
    for obj in objects:
        order.setdefault(obj.phrase, len(order))
    return [PALETTE[order[obj.phrase] % len(PALETTE)] for obj in objects]


def _mask_layer(
    mask: RLE, colour: tuple[int, int, int], opacity: float, size: tuple[int, int]
) -> Image.Image:
    """An RGBA layer `size` (width, height) with the mask's pixels in `colour` at `opacity`."""
    pixels = rle_to_mask(mask)  # [H, W] bool
    if pixels.shape != (size[1], size[0]):
        raise ValueError(
            f"a mask of {pixels.shape[1]}x{pixels.shape[0]} pixels cannot be drawn on an image "
            f"of {size[0]}x{size[1]}"
        )
    layer = np.zeros((*pixels.shape, 4), dtype=np.uint8)  # [H, W, RGBA]
    layer[pixels] = (*colour, round(OPAQUE * opacity))
    return Image.fromarray(layer, mode="RGBA")


def _label(
    draw: ImageDraw.ImageDraw,
    text: str,
    hbb: Sequence[float],
    colour: tuple[int, int, int],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """Writes `text` on a filled tag above the box's top-left corner (inside it at the top)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tag_width, tag_height = right - left + 2 * LABEL_PADDING, bottom - top + 2 * LABEL_PADDING
    x = hbb[0]
    y = hbb[1] - tag_height if hbb[1] >= tag_height else hbb[1]
    draw.rectangle((x, y, x + tag_width, y + tag_height), fill=(*colour, OPAQUE))
    text_colour = (0, 0, 0) if sum(colour) > 3 * 150 else (255, 255, 255)
    draw.text(
        (x + LABEL_PADDING - left, y + LABEL_PADDING - top), text, fill=text_colour, font=font
    )
