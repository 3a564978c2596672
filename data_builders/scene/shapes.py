"""Local outlines in metres (rectangles, ellipses, hulls, blobs, parking lots) and geometry picks.

A local ring is in a feature's own frame (``u`` along, ``v`` across, metres); a
:class:`~geochat.data_builders.render.Pose` turns it into pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry

# Unit circle with the vertices shapely puts on ``buffer(quad_segs=8)``: 32 per turn.
_TURN = np.linspace(0.0, 2.0 * math.pi, 32, endpoint=False)
UNIT_CIRCLE = np.stack([np.cos(_TURN), np.sin(_TURN)], axis=1)  # [32, 2]


@dataclass(frozen=True)
class ParkingLayout:
    """Stalls of a surface parking lot, in the lot's local frame (metres).

    The lot is ``modules`` strips across its width, each two rows of stalls facing a shared
    aisle; vehicles park nose to the aisle.

    Attributes:
        stalls: Stalls per row.
        modules: Number of two-row strips.
        stall_width: Along the lot's length.
        stall_depth: Across the lot.
        aisle: Width of the driving aisle of a strip.
        margin: Border of asphalt around the stalls.
    """

    stalls: int
    modules: int
    stall_width: float
    stall_depth: float
    aisle: float
    margin: float = 1.5

    @property
    def length(self) -> float:
        """Size of the lot along its local ``u`` axis."""
        return self.stalls * self.stall_width + 2 * self.margin

    @property
    def width(self) -> float:
        """Size of the lot along its local ``v`` axis."""
        return self.modules * (2 * self.stall_depth + self.aisle) + 2 * self.margin

    @property
    def capacity(self) -> int:
        """Number of stalls."""
        return 2 * self.modules * self.stalls

    def rows(self) -> list[tuple[float, int]]:
        """Each row's centre ``v`` and the side its aisle is on (+1 or -1)."""
        rows = []
        for module in range(self.modules):
            start = -self.width / 2 + self.margin + module * (2 * self.stall_depth + self.aisle)
            rows.append((start + self.stall_depth / 2, 1))
            rows.append((start + 1.5 * self.stall_depth + self.aisle, -1))
        return rows

    def stall_edges(self) -> np.ndarray:
        """``u`` of the lines between stalls ``[stalls + 1]``."""
        return -self.length / 2 + self.margin + np.arange(self.stalls + 1) * self.stall_width


CAR_PARKING = {"stall_width": 2.6, "stall_depth": 5.2, "aisle": 6.5}
TRUCK_PARKING = {"stall_width": 4.0, "stall_depth": 18.0, "aisle": 15.0}


def rect(length: float, width: float) -> np.ndarray:
    """Local ring ``[4, 2]`` of a rectangle centred on the origin, ``length`` along ``u``."""
    u, v = length / 2, width / 2
    return np.array([[-u, -v], [u, -v], [u, v], [-u, v]])


def shifted(ring: np.ndarray, u: float, v: float) -> np.ndarray:
    """A local ring moved by ``(u, v)`` metres."""
    return ring + np.array([u, v])


def ellipse(length: float, width: float) -> np.ndarray:
    """Local ring ``[32, 2]`` of an ellipse with these axes."""
    return UNIT_CIRCLE * (length / 2, width / 2)


def pool_outline(oval: bool) -> Callable[[float, float], np.ndarray]:
    """The local outline of a pool, as a function of (length, width): oval or rectangular."""
    return ellipse if oval else rect


def hull(length: float, width: float) -> np.ndarray:
    """Local ring ``[5, 2]`` of a ship's hull: square stern at ``-u``, pointed bow at ``+u``."""
    u, v = length / 2, width / 2
    bow = min(0.18 * length, 1.2 * width)
    return np.array([[-u, -v], [u - bow, -v], [u, 0.0], [u - bow, v], [-u, v]])


# The farthest a blob's outline reaches, in radii (the sum of its harmonics' largest amplitudes).
BLOB_REACH = 1.35


def blob(rng: np.random.Generator, radius: float, vertices: int = 48) -> np.ndarray:
    """Local ring ``[vertices, 2]`` of a smooth irregular round shape (lakes, islands)."""
    angles = np.linspace(0.0, 2.0 * math.pi, vertices, endpoint=False)
    scale = np.ones(vertices)
    for harmonic in range(2, 6):
        amplitude = rng.uniform(0.0, 0.12) / math.sqrt(harmonic - 1)
        scale += amplitude * np.cos(harmonic * angles + rng.uniform(0, 2 * math.pi))
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * (radius * scale)[:, None]


def longest_line(geometry: BaseGeometry) -> LineString | None:
    """The longest LineString of a (multi)line geometry, or None when there is none."""
    lines = [g for g in shapely.get_parts(geometry) if isinstance(g, LineString) and g.length]
    return max(lines, key=lambda line: line.length) if lines else None


def largest_polygon(geometry: BaseGeometry) -> Polygon | None:
    """The largest Polygon of a (multi)polygon geometry, or None when there is none."""
    polygons = [g for g in shapely.get_parts(geometry) if isinstance(g, Polygon) and g.area]
    return max(polygons, key=lambda polygon: polygon.area) if polygons else None
