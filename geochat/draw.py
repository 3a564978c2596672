"""Drawing grounded answers on their image: boxes, quads and masks, labels and a legend.

Objects are those of `geochat.grammar.parse` (or anything with `kind`, `phrase`, `hbb`, `quad`
and `mask`), in pixel coordinates of the image they are drawn on. Objects sharing a legend
label (their phrase, or :data:`UNNAMED`) share a colour. Masks are filled translucently and
every geometry is outlined: a line in its colour between two thin dark lines, so that it shows on
bright and dark imagery alike, and kept inside the image, so that a box covering the whole image
still shows. Each object with a phrase gets a label at its top-left corner, and a legend strip
under the image names every colour with what it marks (``ships (2 boxes)``). Line width and font
size follow the image size. The web app (`app.overlay`) uses the same labels, counts and colours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

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
UNNAMED = "unnamed"  # legend label of geometry that no <ref> phrase names
KIND_NAMES = {"hbb": ("box", "boxes"), "quad": ("oriented box", "oriented boxes")}
MASK_NAMES = ("mask", "masks")
LINE_WIDTH_FRACTION = 1 / 200  # of the longer side
FONT_SIZE_FRACTION = 1 / 30  # of the shorter side
MIN_LINE_WIDTH = 3
MIN_FONT_SIZE = 12
HALO_PX = 1  # dark line on each side of an outline: contrast on bright imagery
HALO = (0, 0, 0)
LABEL_PADDING = 2
LEGEND_BACKGROUND = (32, 32, 32)
LEGEND_TEXT = (255, 255, 255)
OPAQUE = 255


def legend_label(obj: ParsedObject) -> str:
    """The legend entry of an object: its phrase, or :data:`UNNAMED`."""
    return obj.phrase or UNNAMED


def count_words(kind: str, count: int) -> str:
    """``"1 box"``, ``"2 oriented boxes"``, ``"3 masks"``: a count of one kind of geometry."""
    singular, plural = KIND_NAMES.get(kind, MASK_NAMES)
    return f"{count} {singular if count == 1 else plural}"


def label_colours(objects: Iterable[ParsedObject]) -> dict[str, tuple[int, int, int]]:
    """One palette colour per legend label, in order of first appearance ("none" skipped)."""
    colours: dict[str, tuple[int, int, int]] = {}
    for obj in objects:
        if obj.kind != "none":
            colours.setdefault(legend_label(obj), PALETTE[len(colours) % len(PALETTE)])
    return colours


def legend_entries(objects: Iterable[ParsedObject]) -> list[tuple[str, str]]:
    """``(label, "label (2 boxes, 1 mask)")`` per legend label drawn, in order of appearance."""
    counts: dict[str, dict[str, int]] = {}
    for obj in objects:
        if obj.kind != "none":
            kinds = counts.setdefault(legend_label(obj), {})
            kinds[obj.kind] = kinds.get(obj.kind, 0) + 1
    return [
        (label, f"{label} ({', '.join(count_words(k, n) for k, n in kinds.items())})")
        for label, kinds in counts.items()
    ]


def draw_objects(
    image: Image.Image,
    objects: Iterable[ParsedObject],
    mask_opacity: float = 0.4,
    legend: bool = True,
) -> Image.Image:
    """Returns an RGB copy of `image` with the objects drawn on it, and a legend under it.

    Args:
        image: The image the objects' pixel coordinates refer to.
        objects: Parsed objects; kind "none" draws nothing.
        mask_opacity: Opacity of mask fills, 0..1.
        legend: Whether to add the legend strip under the image (only when something is
            drawn); the image keeps its pixels and coordinates above it.

    Raises:
        ValueError: For a mask whose size differs from the image's, or an opacity outside 0..1.
    """
    if not 0 <= mask_opacity <= 1:
        raise ValueError(f"mask_opacity must be in 0..1, got {mask_opacity}")
    objects = [obj for obj in objects if obj.kind != "none"]
    colours = label_colours(objects)
    canvas = image.convert("RGBA")
    width = max(MIN_LINE_WIDTH, round(max(canvas.size) * LINE_WIDTH_FRACTION))
    for obj in objects:
        if obj.kind == "mask" and obj.mask is not None:
            colour = colours[legend_label(obj)]
            canvas = Image.alpha_composite(
                canvas, _mask_layer(obj.mask, colour, mask_opacity, width, canvas.size)
            )
    draw = ImageDraw.Draw(canvas)
    font = _font(canvas.size)
    for obj in objects:
        if obj.kind in ("hbb", "quad") and obj.quad is not None:
            corners = np.asarray(obj.quad, dtype=float)  # [4, 2]
            _outline(draw, corners, colours[legend_label(obj)], width, canvas.size)
    for obj in objects:
        if obj.phrase and obj.hbb is not None:
            _label(draw, obj.phrase, obj.hbb, colours[obj.phrase], font)
    drawn = canvas.convert("RGB")
    if legend and objects:
        drawn = _with_legend(drawn, legend_entries(objects), colours, font)
    return drawn


def _font(size: tuple[int, int]) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(MIN_FONT_SIZE, round(min(size) * FONT_SIZE_FRACTION)))


def _outline(
    draw: ImageDraw.ImageDraw,
    corners: np.ndarray,
    colour: tuple[int, int, int],
    width: int,
    size: tuple[int, int],
) -> None:
    """Draws a closed outline through `corners` [4, 2]: dark halo, then the colour inside it."""
    halo_width = width + 2 * HALO_PX
    # Lines are centred on the geometry; corners on or past the image's edge move in by half the
    # line, or half of it would fall outside (a whole-image box would hardly show).
    inset = halo_width / 2
    image_width, image_height = size
    inside = np.clip(corners, inset, [image_width - inset, image_height - inset])
    points = [tuple(point) for point in inside] + [tuple(inside[0])]
    draw.line(points, fill=(*HALO, OPAQUE), width=halo_width, joint="curve")
    draw.line(points, fill=(*colour, OPAQUE), width=width, joint="curve")


def _mask_layer(
    mask: RLE, colour: tuple[int, int, int], opacity: float, width: int, size: tuple[int, int]
) -> Image.Image:
    """An RGBA layer `size` (width, height): the mask filled at `opacity`, outlined opaque."""
    pixels = rle_to_mask(mask)  # [H, W] bool
    if pixels.shape != (size[1], size[0]):
        raise ValueError(
            f"a mask of {pixels.shape[1]}x{pixels.shape[0]} pixels cannot be drawn on an image "
            f"of {size[0]}x{size[1]}"
        )
    # The outline runs inside the mask, from its edge in: halo, colour, halo. border_value=0
    # makes the image's edge an edge of the mask, so a mask filling the image is outlined too.
    # Eroding only the mask's box (one pixel wider) gives the same result, far faster on a
    # large image.
    layer = np.zeros((*pixels.shape, 4), dtype=np.uint8)  # [H, W, RGBA]
    rows, columns = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    if rows.size == 0:
        return Image.fromarray(layer, mode="RGBA")
    box = (
        slice(max(rows[0] - 1, 0), rows[-1] + 2),
        slice(max(columns[0] - 1, 0), columns[-1] + 2),
    )
    inside = pixels[box]
    past_halo, past_line, interior = (  # deeper than each ring
        ndimage.binary_erosion(inside, iterations=depth, border_value=0)
        for depth in (HALO_PX, HALO_PX + width, 2 * HALO_PX + width)
    )
    window = layer[box]  # a view: writing it writes the layer
    window[interior] = (*colour, round(OPAQUE * opacity))
    window[(inside & ~past_halo) | (past_line & ~interior)] = (*HALO, OPAQUE)
    window[past_halo & ~past_line] = (*colour, OPAQUE)
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
    draw.text(
        (x + LABEL_PADDING - left, y + LABEL_PADDING - top),
        text,
        fill=_text_colour(colour),
        font=font,
    )


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    return (0, 0, 0) if sum(background) > 3 * 150 else (255, 255, 255)


def _with_legend(
    image: Image.Image,
    entries: list[tuple[str, str]],
    colours: dict[str, tuple[int, int, int]],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> Image.Image:
    """`image` above a strip with one colour swatch and text per entry, wrapped into rows."""
    measure = ImageDraw.Draw(image)
    # Pillow types text boxes as floats; they hold whole pixels.
    line_height = int(max(measure.textbbox((0, 0), text, font=font)[3] for _, text in entries))
    row_height = line_height + 4 * LABEL_PADDING
    swatch = line_height
    placed, x, row = [], 2 * LABEL_PADDING, 0
    for label, text in entries:
        entry_width = swatch + 2 * LABEL_PADDING + round(measure.textlength(text, font=font))
        if x > 2 * LABEL_PADDING and x + entry_width > image.width:
            x, row = 2 * LABEL_PADDING, row + 1
        placed.append((x, row, label, text))
        x += entry_width + 6 * LABEL_PADDING
    strip_height = (row + 1) * row_height
    out = Image.new("RGB", (image.width, image.height + strip_height), LEGEND_BACKGROUND)
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    for x, row, label, text in placed:
        y = image.height + row * row_height + 2 * LABEL_PADDING
        draw.rectangle((x, y, x + swatch, y + swatch), fill=colours[label], outline=LEGEND_TEXT)
        draw.text((x + swatch + 2 * LABEL_PADDING, y), text, fill=LEGEND_TEXT, font=font)
    return out
