"""Geometry of grounded answers: horizontal boxes, quads (oriented boxes) and masks.

Conventions, fixed here and used everywhere in geochat:

- Pixel coordinates: x to the right, y down, origin at the top-left corner of the image.
- A horizontal box (hbb) is ``[x0, y0, x1, y1]`` with ``x0 <= x1`` and ``y0 <= y1``.
- A quad is a ``(4, 2)`` array of corners. Its canonical order is clockwise *on screen*
  (that is, in image coordinates with y pointing down), starting at the top-most corner,
  the left-most one on ties.
- An oriented box is ``(cx, cy, w, h, angle)``: ``angle`` in degrees is the direction of the
  side of length ``w`` measured from the image +x axis, positive clockwise on screen.
- A mask is a COCO run-length encoding ``{"size": [h, w], "counts": str}`` (pycocotools).
- Grammar coordinates are integers 0-1000 per axis: ``x' = round(1000 x / W)``,
  ``y' = round(1000 y / H)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import shapely
from pycocotools import mask as coco_mask
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

GRAMMAR_SCALE = 1000

RLE = dict[str, Any]


class _CocoRLE(TypedDict):
    """An RLE in the form pycocotools' C functions take (compressed ``counts``)."""

    size: list[int]
    counts: str | bytes


class GeometryError(ValueError):
    """Invalid geometry: wrong shape, non-finite values or a degenerate case with no result."""


def _finite_array(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise GeometryError(f"{name} must be numeric, got {values!r}") from error
    if not np.all(np.isfinite(array)):
        raise GeometryError(f"{name} has non-finite values: {array.tolist()}")
    return array


def as_hbbs(boxes: Any) -> np.ndarray:
    """Validates horizontal boxes.

    Args:
        boxes: ``[N, 4]`` array-like of ``[x0, y0, x1, y1]`` (``N`` may be 0).

    Returns:
        A float64 array ``[N, 4]``.

    Raises:
        GeometryError: on a wrong shape, non-finite values or ``x1 < x0`` / ``y1 < y0``.
    """
    array = _finite_array(boxes, "boxes")
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise GeometryError(f"boxes must have shape [N, 4], got {array.shape}")
    if np.any(array[:, 2] < array[:, 0]) or np.any(array[:, 3] < array[:, 1]):
        raise GeometryError(f"boxes need x0 <= x1 and y0 <= y1: {array.tolist()}")
    return array


def as_hbb(box: Any) -> np.ndarray:
    """Validates one horizontal box ``[x0, y0, x1, y1]`` and returns it as a ``(4,)`` array."""
    array = _finite_array(box, "box")
    if array.shape != (4,):
        raise GeometryError(f"a box must have 4 values [x0, y0, x1, y1], got shape {array.shape}")
    return as_hbbs(array[None])[0]


def as_quad(quad: Any) -> np.ndarray:
    """Validates a quad given as ``(4, 2)`` corners or 8 flat values and returns ``(4, 2)``."""
    array = _finite_array(quad, "quad")
    if array.shape == (8,):
        array = array.reshape(4, 2)
    if array.shape != (4, 2):
        raise GeometryError(f"a quad must have 4 corners (shape (4, 2) or (8,)), got {array.shape}")
    return array


def canonical_quad(quad: Any) -> np.ndarray:
    """Orders a quad's corners clockwise on screen, starting at the top-most (then left-most) one.

    Clockwise on screen is counter-clockwise in a y-up frame, i.e. positive shoelace area
    when computed with y pointing down.
    """
    corners = as_quad(quad)
    signed_area = 0.5 * np.sum(
        corners[:, 0] * np.roll(corners[:, 1], -1) - np.roll(corners[:, 0], -1) * corners[:, 1]
    )
    if signed_area < 0:
        corners = corners[::-1]
    # Corners within rounding noise of the top-most y tie (a rectangle rotated by 180 degrees
    # has its top corners 1e-16 apart); the left-most of them starts.
    tolerance = 1e-9 * max(1.0, float(np.abs(corners).max()))
    tied = np.flatnonzero(corners[:, 1] <= corners[:, 1].min() + tolerance)
    start = int(tied[np.argmin(corners[tied, 0])])
    return np.roll(corners, -start, axis=0)


def hbb_to_quad(box: Any) -> np.ndarray:
    """Returns a box's canonical quad: top-left, top-right, bottom-right, bottom-left."""
    x0, y0, x1, y1 = as_hbb(box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def quad_to_hbb(quad: Any) -> np.ndarray:
    """Returns the horizontal box enclosing a quad."""
    corners = as_quad(quad)
    return np.concatenate([corners.min(axis=0), corners.max(axis=0)])


def obb_to_quad(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    """Converts an oriented box to its canonical quad.

    Args:
        cx: Centre x in pixels.
        cy: Centre y in pixels.
        w: Length of the side that points along ``angle``.
        h: Length of the other side.
        angle: Degrees from the image +x axis to the ``w`` side, positive clockwise on screen.

    Returns:
        The canonical ``(4, 2)`` quad.
    """
    cx, cy, w, h, angle = _finite_array([cx, cy, w, h, angle], "oriented box")
    if w < 0 or h < 0:
        raise GeometryError(f"oriented box sides must be >= 0, got w={w}, h={h}")
    theta = np.deg2rad(angle)
    along_w = np.array([np.cos(theta), np.sin(theta)]) * w / 2
    along_h = np.array([-np.sin(theta), np.cos(theta)]) * h / 2
    centre = np.array([cx, cy])
    corners = np.stack(
        [
            centre - along_w - along_h,
            centre + along_w - along_h,
            centre + along_w + along_h,
            centre - along_w + along_h,
        ]
    )
    return canonical_quad(corners)


def quad_to_obb(quad: Any) -> tuple[float, float, float, float, float]:
    """Converts a quad to ``(cx, cy, w, h, angle)`` of its minimum-area rectangle.

    ``w`` is the side from the first to the second canonical corner of that rectangle, and
    ``angle`` is folded into ``[-90, 90)`` (a side's direction is only defined up to 180°).
    """
    rect = min_area_rect(as_quad(quad))
    cx, cy = rect.mean(axis=0)
    side_w = rect[1] - rect[0]
    side_h = rect[2] - rect[1]
    w = float(np.hypot(*side_w))
    h = float(np.hypot(*side_h))
    angle = float(np.rad2deg(np.arctan2(side_w[1], side_w[0])))
    angle = (angle + 90.0) % 180.0 - 90.0
    return float(cx), float(cy), w, h, angle


def _to_shapely(geometry: Any) -> BaseGeometry:
    if isinstance(geometry, BaseGeometry):
        return geometry
    points = _finite_array(geometry, "polygon")
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise GeometryError(f"a polygon needs [N >= 3, 2] vertices, got shape {points.shape}")
    return Polygon(points)


def min_area_rect(geometry: Any) -> np.ndarray:
    """Returns the minimum-area rectangle around points or a shapely geometry, as a canonical quad.

    Degenerate input (a segment or a point) gives a zero-width rectangle rather than an error.

    Raises:
        GeometryError: for an empty geometry.
    """
    if isinstance(geometry, BaseGeometry):
        shape = geometry
    else:
        points = _finite_array(geometry, "points").reshape(-1, 2)
        shape = shapely.MultiPoint(points)
    if shape.is_empty:
        raise GeometryError("cannot take the minimum-area rectangle of an empty geometry")
    rect = shapely.minimum_rotated_rectangle(shape)
    if isinstance(rect, Polygon):
        corners = np.asarray(rect.exterior.coords)[:4]
    else:
        # A point or a segment: repeat its ends to make a flat quad.
        ends = np.asarray(rect.coords)
        corners = np.stack([ends[0], ends[-1], ends[-1], ends[0]])
    return canonical_quad(corners)


def quad_to_polygon(quad: Any) -> Polygon | MultiPolygon:
    """Returns a quad as a shapely polygon, repaired with ``make_valid`` if it self-intersects."""
    polygon: Polygon | MultiPolygon = Polygon(as_quad(quad))
    if not polygon.is_valid:
        repaired = shapely.make_valid(polygon)
        polygons = [g for g in getattr(repaired, "geoms", [repaired]) if isinstance(g, Polygon)]
        polygon = MultiPolygon(polygons) if len(polygons) > 1 else (polygons or [Polygon()])[0]
    return polygon


def clip_hbb(box: Any, width: float, height: float) -> np.ndarray:
    """Clips a horizontal box to the image ``[0, width] x [0, height]``."""
    return np.clip(as_hbb(box), 0, [width, height, width, height])


def clip_quad(quad: Any, width: float, height: float) -> np.ndarray | None:
    """Clips a quad to the image; returns the minimum-area rectangle of what remains, or None."""
    clipped = quad_to_polygon(quad).intersection(shapely.box(0, 0, width, height))
    if clipped.is_empty or clipped.area == 0:
        return None
    return min_area_rect(clipped)


def mask_to_rle(mask: np.ndarray) -> RLE:
    """Encodes a boolean ``[H, W]`` mask as COCO RLE with a ``str`` counts field."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise GeometryError(f"a mask must be 2-D [H, W], got shape {array.shape}")
    rle = coco_mask.encode(np.asfortranarray(array.astype(np.uint8)))
    # The stub types counts as str | bytes; encode always returns bytes.
    counts = rle["counts"].decode("ascii")  # type: ignore[union-attr]
    return {"size": [int(s) for s in rle["size"]], "counts": counts}


def _coco_rle(rle: RLE) -> _CocoRLE:
    """Validates an RLE dict and returns the bytes form pycocotools wants."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as error:
        raise GeometryError(f"not a COCO RLE dict with 'size' and 'counts': {rle!r}") from error
    if isinstance(counts, list):
        # Uncompressed RLE (as in COCO JSON files): compress it first.
        if sum(counts) != height * width:
            raise GeometryError(f"RLE counts sum to {sum(counts)}, expected {height * width}")
        uncompressed = {"size": [height, width], "counts": counts}
        # pycocotools takes an uncompressed RLE dict here; its stub lists only compressed ones.
        return coco_mask.frPyObjects(uncompressed, height, width)  # type: ignore[call-overload]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [height, width], "counts": counts}


def rle_to_mask(rle: RLE) -> np.ndarray:
    """Decodes a COCO RLE (compressed or uncompressed counts) to a boolean ``[H, W]`` mask."""
    return coco_mask.decode(_coco_rle(rle)).astype(bool)


def mask_area(rle: RLE) -> int:
    """Returns the number of pixels set in an RLE mask."""
    return int(coco_mask.area(_coco_rle(rle)))


def rasterize(geometry: Any, height: int, width: int) -> np.ndarray:
    """Rasterises a polygon into a boolean ``[H, W]`` mask (pixels whose centre is inside).

    Args:
        geometry: A shapely (Multi)Polygon in pixel coordinates (holes are kept), or ``[N, 2]``
            vertices of a simple polygon.
        height: Mask height in pixels.
        width: Mask width in pixels.
    """
    if height <= 0 or width <= 0:
        raise GeometryError(f"mask size must be positive, got {height}x{width}")
    shape = _to_shapely(geometry)
    if not shape.is_valid:
        shape = shapely.make_valid(shape)
    mask = np.zeros((height, width), dtype=bool)
    if shape.is_empty or shape.area == 0:
        return mask
    # Rasterise only the window the shape covers: a small object on a large image costs
    # what its box costs, not what the image costs.
    x0, y0, x1, y1 = shape.bounds
    col0, row0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    col1, row1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
    if col1 <= col0 or row1 <= row0:
        return mask
    # Imported here, where a mask is drawn: reading records, training and scoring boxes then
    # load no GDAL (a training machine needs no rasterio).
    from rasterio import features
    from rasterio.transform import Affine

    # Pixel (col, row) of the window covers [col0 + col, col0 + col + 1] x [row0 + row, ...].
    window = features.rasterize(
        [(shape, 1)],
        out_shape=(row1 - row0, col1 - col0),
        transform=Affine.translation(col0, row0),
        fill=0,
        dtype="uint8",
    )
    mask[row0:row1, col0:col1] = window.astype(bool)
    return mask


def polygon_to_rle(geometry: Any, height: int, width: int) -> RLE:
    """Rasterises a polygon (see :func:`rasterize`) and encodes it as COCO RLE."""
    return mask_to_rle(rasterize(geometry, height, width))


def _as_mask_array(mask: RLE | np.ndarray) -> np.ndarray:
    return rle_to_mask(mask) if isinstance(mask, dict) else np.asarray(mask, dtype=bool)


def mask_to_hbb(mask: RLE | np.ndarray) -> np.ndarray | None:
    """Returns the pixel-edge box ``[x0, y0, x1, y1]`` enclosing a mask, or None if it is empty."""
    rows, cols = np.nonzero(_as_mask_array(mask))
    if rows.size == 0:
        return None
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float64)


def mask_to_quad(mask: RLE | np.ndarray) -> np.ndarray | None:
    """Returns the minimum-area rectangle around a mask's pixels (as squares), or None if empty."""
    rows, cols = np.nonzero(_as_mask_array(mask))
    if rows.size == 0:
        return None
    # Every corner of every set pixel, so that a one-pixel mask still has an area.
    offsets = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    corners = (np.stack([cols, rows], axis=1)[:, None, :] + offsets[None]).reshape(-1, 2)
    return min_area_rect(np.unique(corners, axis=0))


def to_grammar(values: Any, width: float, height: float) -> np.ndarray:
    """Maps pixel coordinates to grammar integers 0-1000, per axis.

    Args:
        values: Array whose last axis alternates x, y (points ``[..., 2]``, boxes ``[..., 4]``,
            flat quads ``[..., 8]``).
        width: Width of the original image in pixels.
        height: Height of the original image in pixels.
    """
    array = _finite_array(values, "coordinates")
    scale = _axis_scale(array, width, height)
    return np.clip(np.rint(array * GRAMMAR_SCALE / scale), 0, GRAMMAR_SCALE).astype(np.int64)


def from_grammar(values: Any, width: float, height: float) -> np.ndarray:
    """Maps grammar integers 0-1000 back to pixel coordinates (inverse of :func:`to_grammar`)."""
    array = _finite_array(values, "coordinates")
    return array * _axis_scale(array, width, height) / GRAMMAR_SCALE


def _axis_scale(array: np.ndarray, width: float, height: float) -> np.ndarray:
    if width <= 0 or height <= 0:
        raise GeometryError(f"image size must be positive, got {width}x{height}")
    if array.ndim == 0 or array.shape[-1] % 2:
        raise GeometryError(f"coordinates must come in x, y pairs, got shape {array.shape}")
    return np.tile([float(width), float(height)], array.shape[-1] // 2)


def hbb_iou(boxes_a: Any, boxes_b: Any) -> np.ndarray:
    """Returns the IoU of every pair of horizontal boxes, ``[N, M]`` (0 where the union is 0)."""
    a = as_hbbs(boxes_a)
    b = as_hbbs(boxes_b)
    # [N, 1, 2] against [1, M, 2]: the overlap's corners by broadcasting.
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def quad_iou(quads_a: Sequence[Any], quads_b: Sequence[Any]) -> np.ndarray:
    """Returns the polygon IoU of every pair of quads, ``[N, M]`` (bow-ties are repaired)."""
    polygons_a = np.array([quad_to_polygon(q) for q in quads_a], dtype=object)
    polygons_b = np.array([quad_to_polygon(q) for q in quads_b], dtype=object)
    if polygons_a.size == 0 or polygons_b.size == 0:
        return np.zeros((polygons_a.size, polygons_b.size))
    overlap = shapely.area(shapely.intersection(polygons_a[:, None], polygons_b[None, :]))
    union = shapely.area(polygons_a)[:, None] + shapely.area(polygons_b)[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def mask_iou(masks_a: Sequence[RLE], masks_b: Sequence[RLE]) -> np.ndarray:
    """Returns the IoU of every pair of same-size RLE masks, ``[N, M]`` (0 for two empty masks)."""
    rles_a = [_coco_rle(m) for m in masks_a]
    rles_b = [_coco_rle(m) for m in masks_b]
    if not rles_a or not rles_b:
        return np.zeros((len(rles_a), len(rles_b)))
    sizes = {tuple(r["size"]) for r in rles_a + rles_b}
    if len(sizes) > 1:
        raise GeometryError(f"masks must share one size to be compared, got {sorted(sizes)}")
    return np.asarray(coco_mask.iou(rles_a, rles_b, [0] * len(rles_b)), dtype=np.float64).reshape(
        len(rles_a), len(rles_b)
    )


def mask_intersection_union(mask_a: RLE, mask_b: RLE) -> tuple[int, int]:
    """Returns the pixel counts of the intersection and the union of two masks of the same size."""
    a, b = _coco_rle(mask_a), _coco_rle(mask_b)
    if list(a["size"]) != list(b["size"]):
        raise GeometryError(f"mask sizes differ: {a['size']} and {b['size']}")
    intersection = coco_mask.area(coco_mask.merge([a, b], intersect=True))
    union = coco_mask.area(coco_mask.merge([a, b], intersect=False))
    return int(intersection), int(union)
