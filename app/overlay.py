"""What the web app draws: a display copy of the image and the answer's geometry over it.

The app analyses an image at full resolution but shows a copy whose longest side is at most
``max_side`` pixels. :class:`DisplayImage` remembers the scale between the two, so that a region
drawn on the copy goes back to pixels of the original image (:func:`region_to_original`) and
an answer's geometry, in pixels of the original, comes onto the copy
(:func:`overlay_annotations`).

Every object becomes a mask on the copy: boxes and quads are rasterised as polygons (so an
oriented box stays oriented, which Gradio's axis-aligned boxes cannot show), masks are
resized. Objects that share a phrase share one legend entry and one colour; the labels, counts
and colours are those of :mod:`geochat.draw`, so that ``geochat chat --draw`` matches the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from geochat.draw import UNNAMED, count_words, label_colours, legend_label
from geochat.geometry import as_quad, hbb_to_quad, rasterize, rle_to_mask
from geochat.grammar import GroundedObject

DISPLAY_MAX_SIDE = 1024  # longest side of the copy the page shows; analysis uses the original
FILL_ALPHA = 0.35  # opacity inside an object; its outline is opaque
OUTLINE_PX = 3  # outline width in display pixels (as wide as Gradio's own boxes)


@dataclass(frozen=True)
class DisplayImage:
    """The copy of an image that the page shows.

    Attributes:
        image: RGB copy, longest side at most the display limit.
        scale_x: Original pixels per display pixel along x.
        scale_y: Original pixels per display pixel along y.
    """

    image: Image.Image
    scale_x: float
    scale_y: float

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the copy."""
        return self.image.size


def display_copy(image: Image.Image, max_side: int = DISPLAY_MAX_SIDE) -> DisplayImage:
    """Makes the copy of ``image`` to show: the image itself when it is small enough.

    Raises:
        ValueError: for a non-positive ``max_side``.
    """
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    width, height = image.size
    if max(width, height) <= max_side:
        return DisplayImage(image, 1.0, 1.0)
    copy = image.copy()
    copy.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return DisplayImage(copy, width / copy.width, height / copy.height)


def region_to_original(
    box: Mapping[str, float], display: DisplayImage, width: int, height: int
) -> list[float]:
    """Maps a box drawn on the copy (``xmin``, ``ymin``, ``xmax``, ``ymax``) to original pixels.

    Args:
        box: The box in display pixels, as the region annotator gives it.
        display: The copy it was drawn on.
        width: Width of the original image.
        height: Height of the original image.

    Returns:
        ``[x0, y0, x1, y1]`` in pixels of the original image, clipped to it.
    """
    x0, x1 = sorted((box["xmin"] * display.scale_x, box["xmax"] * display.scale_x))
    y0, y1 = sorted((box["ymin"] * display.scale_y, box["ymax"] * display.scale_y))
    return [
        float(np.clip(x0, 0, width)),
        float(np.clip(y0, 0, height)),
        float(np.clip(x1, 0, width)),
        float(np.clip(y1, 0, height)),
    ]


def _display_mask(obj: GroundedObject, display: DisplayImage) -> np.ndarray | None:
    """The object's pixels on the copy, ``[h, w]`` bool, or None for ``"none"`` objects."""
    width, height = display.size
    scale = np.array([display.scale_x, display.scale_y])
    if obj.kind == "mask" and obj.mask is not None:
        full = Image.fromarray(rle_to_mask(obj.mask).astype(np.uint8) * 255)
        # BOX averages the pixels each display pixel covers: set where half of them are set.
        return np.asarray(full.resize((width, height), Image.Resampling.BOX)) >= 128
    if obj.kind == "quad" and obj.quad is not None:
        corners = as_quad(obj.quad)
    elif obj.kind == "hbb" and obj.hbb is not None:
        corners = hbb_to_quad(obj.hbb)
    else:
        return None
    corners = corners / scale  # [4, 2] in display pixels
    mask = rasterize(corners, height, width)
    if not mask.any():
        # An object smaller than a display pixel still gets the pixel holding its centre.
        column, row = np.clip(corners.mean(axis=0).astype(int), 0, [width - 1, height - 1])
        mask[row, column] = True
    return mask


def _outlined(mask: np.ndarray) -> np.ndarray:
    """Opacity ``[h, w]`` in 0-1 of a mask: translucent inside, opaque along its border."""
    interior = ndimage.binary_erosion(mask, iterations=OUTLINE_PX, border_value=0)
    return np.where(mask & ~interior, 1.0, np.where(mask, FILL_ALPHA, 0.0))


def overlay_annotations(
    objects: Iterable[GroundedObject], display: DisplayImage
) -> tuple[list[tuple[np.ndarray, str]], dict[str, str]]:
    """Turns an answer's objects into ``gr.AnnotatedImage`` annotations on the copy.

    Args:
        objects: Parsed objects in pixels of the original image.
        display: The copy the annotations go on.

    Returns:
        One ``(opacity [h, w] in 0-1, label)`` pair per legend label, in order of first
        appearance, and the colour of each label (``"#rrggbb"``).
    """
    objects = list(objects)
    opacity: dict[str, np.ndarray] = {}
    for obj in objects:
        mask = _display_mask(obj, display)
        if mask is None:
            continue
        label = legend_label(obj)
        alpha = _outlined(mask)
        opacity[label] = np.maximum(opacity[label], alpha) if label in opacity else alpha
    colours = {
        label: "#{:02x}{:02x}{:02x}".format(*colour)
        for label, colour in label_colours(objects).items()
    }
    return [(alpha, label) for label, alpha in opacity.items()], colours


def answer_summary(objects: Sequence[GroundedObject]) -> str:
    """One Markdown line on what the overlay shows, e.g. ``Found: **two ships** (2 boxes).``.

    Returns:
        The line, or ``""`` when the answer has no geometry and no ``<none>``.
    """
    counts: dict[str, dict[str, int]] = {}
    for obj in objects:
        kinds = counts.setdefault(legend_label(obj), {})
        kinds[obj.kind] = kinds.get(obj.kind, 0) + 1
    parts = []
    for label, kinds in counts.items():
        name = f"**{html.escape(label)}**"
        drawn = [count_words(kind, count) for kind, count in kinds.items() if kind != "none"]
        if drawn:
            parts.append(f"{name} ({', '.join(drawn)})")
        else:
            parts.append("nothing" if label == UNNAMED else f"no {name}")
    return f"Found: {'; '.join(parts)}." if parts else ""
