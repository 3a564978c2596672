"""The state of a synthetic scene being laid out: its features, the space taken, placement helpers.

Sizes are drawn in metres and converted with the ground sample distance, so a scene keeps real
proportions at any GSD; footprints are placed by rejection sampling against the footprints
already placed (shapely).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.render import Pose
from geochat.data_builders.scene.features import Feature, drawn_footprint


def choose(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    """Draws a key of ``weights`` with probability proportional to its value."""
    keys = list(weights)
    probabilities = np.array([weights[key] for key in keys], dtype=np.float64)
    return keys[rng.choice(len(keys), p=probabilities / probabilities.sum())]


class Occupancy:
    """Footprints already placed, with a bounding-box prefilter for fast intersection tests."""

    def __init__(self) -> None:
        self._geometries: list[BaseGeometry] = []
        self._bounds = np.empty((64, 4))

    def add(self, geometry: BaseGeometry) -> None:
        """Marks a footprint as taken."""
        count = len(self._geometries)
        if count == len(self._bounds):
            self._bounds = np.concatenate([self._bounds, np.empty_like(self._bounds)])
        self._bounds[count] = geometry.bounds
        self._geometries.append(geometry)

    def is_free(self, geometry: BaseGeometry) -> bool:
        """True when ``geometry`` intersects no footprint placed so far."""
        bounds = self._bounds[: len(self._geometries)]
        x0, y0, x1, y1 = geometry.bounds
        near = np.nonzero(
            (bounds[:, 0] <= x1)
            & (bounds[:, 2] >= x0)
            & (bounds[:, 1] <= y1)
            & (bounds[:, 3] >= y0)
        )[0]
        if near.size == 0:
            return True
        candidates = np.array([self._geometries[i] for i in near], dtype=object)
        return not shapely.intersects(geometry, candidates).any()


class SceneBuilder:
    """The state of a scene being laid out: its features and what space is taken.

    Args:
        rng: The only source of randomness of the layout.
        width: Image width in pixels.
        height: Image height in pixels.
        gsd: Metres per pixel.
        density: Multiplier of object counts (1 is typical).
    """

    def __init__(
        self, rng: np.random.Generator, width: int, height: int, gsd: float, density: float
    ) -> None:
        self.rng = rng
        self.width = width
        self.height = height
        self.px_per_m = 1.0 / gsd
        self.density = density
        self.frame = shapely.box(0, 0, width, height)
        self.features: list[Feature] = []
        self.solids = Occupancy()  # surfaces and objects inside blocks
        self.movers = Occupancy()  # vehicles and ships
        # Streets, quays and runways share one orientation per scene.
        self.grid_angle = float(rng.uniform(-45.0, 45.0))

    def px(self, metres: float) -> float:
        """Converts metres to pixels."""
        return metres * self.px_per_m

    def area_m2(self, geometry: BaseGeometry) -> float:
        """Area of a pixel geometry in square metres."""
        return geometry.area / self.px_per_m**2

    def pose(self, x: float, y: float, angle_deg: float) -> Pose:
        """A local frame centred at pixel ``(x, y)``."""
        return Pose(float(x), float(y), float(angle_deg), self.px_per_m)

    def drawn(self, kind: str, geometry: BaseGeometry, tags: Mapping[str, str]) -> BaseGeometry:
        """The footprint of a line or node, drawn as the OSM pipeline draws it."""
        return drawn_footprint(kind, geometry, tags, self.px_per_m)

    def count(self, expected: float) -> int:
        """Draws how many objects to place, scaled by the density."""
        return int(self.rng.poisson(max(expected * self.density, 0.0)))

    def add(self, feature: Feature, occupancy: Occupancy | None = None) -> int:
        """Appends a feature, marks its footprint taken, and returns its index."""
        self.features.append(feature)
        if occupancy is not None:
            occupancy.add(feature.footprint)
        return len(self.features) - 1

    def fits(self, region: BaseGeometry, zone: BaseGeometry, occupancy: Occupancy) -> bool:
        """True when ``zone`` (a footprint grown by its clearance) is inside ``region`` and free."""
        return bool(shapely.contains(region, zone)) and occupancy.is_free(zone)

    def random_pose(self, region: BaseGeometry, angle_deg: float) -> Pose | None:
        """A pose at a uniform random point of ``region``'s bounding box, if inside it."""
        if region.is_empty:
            return None
        x0, y0, x1, y1 = region.bounds
        x, y = self.rng.uniform(x0, x1), self.rng.uniform(y0, y1)
        if not shapely.contains_xy(region, x, y):
            return None
        return self.pose(x, y, angle_deg)

    def edge_poses(
        self, polygon: Polygon, depths_px: np.ndarray, jitter_deg: float
    ) -> list[Pose | None]:
        """Poses ``depths_px`` ``[N]`` inside random points of the outline, facing the edge.

        The local ``u`` axis runs along the edge and ``+v`` points into the polygon; a pose
        whose centre would fall outside the polygon is None.
        """
        ring = np.asarray(polygon.exterior.coords)[:, :2]  # [M + 1, 2], closed
        sides = np.diff(ring, axis=0)  # [M, 2]
        lengths = np.hypot(sides[:, 0], sides[:, 1])
        ends = np.cumsum(lengths)
        along = self.rng.uniform(0.0, ends[-1], size=len(depths_px))
        side = np.minimum(np.searchsorted(ends, along, side="right"), len(sides) - 1)
        fraction = 1.0 - (ends[side] - along) / np.maximum(lengths[side], 1e-12)
        starts = ring[side] + sides[side] * fraction[:, None]
        tangents = sides[side] / np.maximum(lengths[side], 1e-12)[:, None]
        inward = np.stack([-tangents[:, 1], tangents[:, 0]], axis=1)
        angles = np.degrees(np.arctan2(tangents[:, 1], tangents[:, 0]))
        # Outline direction is arbitrary: turn round where +v points out of the polygon.
        outward = ~shapely.contains_xy(polygon, *(starts + inward * depths_px[:, None]).T)
        inward[outward] *= -1.0
        angles[outward] += 180.0
        centres = starts + inward * depths_px[:, None]
        inside = shapely.contains_xy(polygon, *centres.T)
        angles += self.rng.normal(0.0, jitter_deg, size=len(angles))
        return [
            self.pose(x, y, angle) if ok else None
            for (x, y), angle, ok in zip(centres, angles, inside, strict=True)
        ]

    def line_pose(self, line: LineString, along: float, offset_px: float) -> Pose:
        """A pose on a line at ``along`` pixels, ``offset_px`` to its right, facing forward.

        A negative offset (the other side of the road) faces backward, as traffic does.
        """
        # The direction over one pixel around ``along``, kept on the line near its ends.
        first = min(max(along - 0.5, 0.0), max(line.length - 1.0, 0.0))
        start, ahead = (
            np.asarray(line.interpolate(d).coords[0])
            for d in (first, min(first + 1.0, line.length))
        )
        tangent = (ahead - start) / max(float(np.hypot(*(ahead - start))), 1e-9)
        right = np.array([-tangent[1], tangent[0]])
        centre = np.asarray(line.interpolate(along).coords[0]) + right * offset_px
        angle = math.degrees(math.atan2(tangent[1], tangent[0])) + (180.0 if offset_px < 0 else 0.0)
        return self.pose(centre[0], centre[1], angle)
