"""What every painter of a synthetic scene shares: its context, colour jitter, strokes, lighting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import ops
from shapely.geometry import LineString, MultiLineString
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.render import Colour, Light, Pattern, Pose
from geochat.data_builders.scene.features import Feature
from geochat.data_builders.scene.shapes import rect


@dataclass(frozen=True)
class PaintContext:
    """What every painter may read: the sun, the scale, all features, the scene's randomness."""

    light: Light
    px_per_m: float
    features: Sequence[Feature]
    rng: np.random.Generator


def vary(rng: np.random.Generator, colour: Colour, amount: float = 0.06) -> np.ndarray:
    """A colour with a random brightness change of up to ``amount`` and a slight tint."""
    tint = rng.uniform(1.0 - amount / 3, 1.0 + amount / 3, size=3)
    return np.asarray(colour) * rng.uniform(1.0 - amount, 1.0 + amount) * tint


def line_width_m(context: PaintContext, metres: float) -> float:
    """Width of a painted marking: its real width, but at least half a pixel, so it shows."""
    return max(metres, 0.5 / context.px_per_m)


def strokes(pose: Pose, lines: Sequence[np.ndarray], width_m: float) -> BaseGeometry:
    """Local polylines (metres) as thin polygons of ``width_m``, placed in the image."""
    drawn = MultiLineString([np.asarray(line, dtype=float) for line in lines])
    return pose.place(drawn.buffer(width_m / 2, cap_style="flat", join_style="mitre"))


def outline(length: float, width: float) -> np.ndarray:
    """The closed polyline of a rectangle's border in local metres ``[5, 2]``."""
    corners = rect(length, width)
    return np.concatenate([corners, corners[:1]])


def dashes(line: LineString, dash_px: float, gap_px: float, width_px: float) -> np.ndarray:
    """Dashed marking along a pixel line: an array of thin polygons."""
    starts = np.arange(gap_px / 2, line.length - dash_px, dash_px + gap_px)
    pieces = [ops.substring(line, start, start + dash_px) for start in starts]
    return shapely.buffer(np.array(pieces, dtype=object), width_px / 2, cap_style="flat")


def facing(context: PaintContext, pose: Pose, normal_uv: tuple[float, float]) -> float:
    """How much a face whose local normal is ``normal_uv`` turns to the sun (-1 to 1)."""
    return float(pose.direction(normal_uv) @ context.light.sun)


def dome(context: PaintContext, pose: Pose, radius_px: float, strength: float) -> Pattern:
    """A pattern lighting a round top on its sunny side (negative strength: a hollow)."""
    sun_x, sun_y = context.light.sun

    def pattern(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return 1.0 + strength * ((xs - pose.cx) * sun_x + (ys - pose.cy) * sun_y) / radius_px

    return pattern
