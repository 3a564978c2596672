"""Procedural layout of a synthetic aerial scene: what lies where, with its OpenStreetMap tags.

Everything is in pixel coordinates of the final image (x right, y down); sizes are drawn in
metres and converted with the ground sample distance, so a scene keeps real proportions at any
GSD. A scene is built in this order: water (sea, river, lake), an airfield in airport scenes,
a road grid that stops short of water and runways, blocks (the land between roads), one land use
per block, then the objects of each block, placed by rejection sampling against the footprints
already placed (shapely), and last vehicles on roads and parking lots and ships on water.

Layers, and which footprints may overlap (everything else never does):

- ``LAYER_GROUND``: land use and parks, disjoint from each other; anything may lie on them.
- ``LAYER_SURFACE``: water, roads, rivers, parking, runways, aprons, pitches, footways. Roads
  overlap each other at junctions only.
- ``LAYER_OBJECT``: buildings, pools, storage tanks, trees.
- ``LAYER_MOVER``: vehicles and ships, each entirely on one surface feature, its ``support``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.render import Pose
from geochat.data_builders.tags import TagTable, load_tag_table

LAYER_GROUND = 0
LAYER_SURFACE = 1
LAYER_OBJECT = 2
LAYER_MOVER = 3

SCENES = ("suburban", "industrial", "harbour", "airport", "mixed")

# Carriageway widths in metres (before a +-10 % jitter); written to OSM as ``width``.
ROAD_WIDTH_M = {
    "primary": 14.0,
    "secondary": 11.0,
    "residential": 7.5,
    "service": 5.5,
    "footway": 2.5,
}
# Vehicles per metre of road, by class (a quiet residential street has fewer).
TRAFFIC_PER_M = {"primary": 1 / 30, "secondary": 1 / 35, "residential": 1 / 50, "service": 1 / 60}

ROOF_COLOURS = {
    "house": {"red": 0.32, "grey": 0.22, "brown": 0.2, "white": 0.14, "blue": 0.12},
    "industrial": {"grey": 0.4, "white": 0.3, "blue": 0.2, "red": 0.05, "brown": 0.05},
    "commercial": {"grey": 0.3, "white": 0.3, "blue": 0.14, "red": 0.13, "brown": 0.13},
}
VEHICLE_COLOURS = {
    "white": 0.3,
    "black": 0.2,
    "silver": 0.2,
    "grey": 0.12,
    "red": 0.1,
    "blue": 0.08,
}
GROUND_TAGS = {
    "residential": {"landuse": "residential"},
    "industrial": {"landuse": "industrial"},
    "park": {"leisure": "park"},
    "grass": {"landuse": "grass"},
    "forest": {"landuse": "forest"},
    "farmland": {"landuse": "farmland"},
}
PITCH_SURFACES = {
    "tennis": ("clay", "hard", "grass"),
    "basketball": ("asphalt", "hard"),
    "soccer": ("grass", "artificial_turf"),
}
# Ship kinds: (length range in metres, beam as a fraction of length, height above water).
SHIP_SIZES = {
    "cargo": ((70.0, 160.0), 0.15, 12.0),
    "fishing": ((12.0, 28.0), 0.3, 4.0),
    "yacht": ((8.0, 20.0), 0.32, 2.5),
}


class SyntheticWorldError(ValueError):
    """Arguments or a tag table that cannot make a synthetic world."""


# Unit circle with the vertices shapely puts on ``buffer(quad_segs=8)``: 32 per turn.
_TURN = np.linspace(0.0, 2.0 * math.pi, 32, endpoint=False)
UNIT_CIRCLE = np.stack([np.cos(_TURN), np.sin(_TURN)], axis=1)  # [32, 2]


@dataclass(frozen=True)
class Look:
    """How the painter draws a feature (what the OSM tags do not say).

    Attributes:
        painter: Name of the painter (see :mod:`data_builders.synthetic_paint`).
        height_m: Height above the ground; a feature higher than 0 casts a shadow.
        pose: The feature's local frame, for roof faces, court lines, windows.
        params: Painter-specific values, e.g. roof shape, object length and width in metres.
    """

    painter: str
    height_m: float = 0.0
    pose: Pose | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Feature:
    """One mapped object: its tags, its exact drawn footprint, its OSM geometry.

    Attributes:
        tags: OSM tags.
        footprint: The painted area in pixels (Polygon or MultiPolygon, holes kept).
        layer: One of the ``LAYER_*`` constants.
        look: How to paint it.
        line: Centre line in pixels for linear features (roads, rivers): an OSM way.
        point: Position in pixels for point features (trees): an OSM node.
        support: Index of the feature a vehicle or ship lies on.
    """

    tags: dict[str, str]
    footprint: BaseGeometry
    layer: int
    look: Look
    line: LineString | None = None
    point: tuple[float, float] | None = None
    support: int | None = None

    @property
    def kind(self) -> str:
        """``"node"``, ``"line"`` or ``"area"``: how the feature is written to OSM."""
        if self.point is not None:
            return "node"
        return "line" if self.line is not None else "area"


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


@functools.cache
def tag_table() -> TagTable:
    """The bundled tag table, which says how lines and nodes are drawn."""
    return load_tag_table()


def drawn_footprint(
    kind: str, geometry: BaseGeometry, tags: Mapping[str, str], px_per_m: float
) -> BaseGeometry:
    """The footprint of a line or node as the OSM pipeline draws it, in pixels.

    The tag table's :meth:`~data_builders.tags.Rule.footprint` buffers in metres; drawing
    with it keeps the picture and the pipeline's truth the same polygon.

    Raises:
        SyntheticWorldError: when no rule of the tag table takes these tags.
    """
    rule = tag_table().rule_for(tags)
    if rule is None:
        raise SyntheticWorldError(f"the tag table has no rule for the synthetic tags {dict(tags)}")
    metres = shapely.transform(geometry, lambda coords: coords / px_per_m)
    return shapely.transform(rule.footprint(kind, metres, tags), lambda coords: coords * px_per_m)


def choose(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    """Draws a key of ``weights`` with probability proportional to its value."""
    keys = list(weights)
    probabilities = np.array([weights[key] for key in keys], dtype=np.float64)
    return keys[rng.choice(len(keys), p=probabilities / probabilities.sum())]


def metres_tag(value: float) -> str:
    """Formats a length for an OSM tag (``"7.5"``, ``"12"``)."""
    return f"{value:g}"


def longest_line(geometry: BaseGeometry) -> LineString | None:
    """The longest LineString of a (multi)line geometry, or None when there is none."""
    lines = [g for g in shapely.get_parts(geometry) if isinstance(g, LineString) and g.length]
    return max(lines, key=lambda line: line.length) if lines else None


def largest_polygon(geometry: BaseGeometry) -> Polygon | None:
    """The largest Polygon of a (multi)polygon geometry, or None when there is none."""
    polygons = [g for g in shapely.get_parts(geometry) if isinstance(g, Polygon) and g.area]
    return max(polygons, key=lambda polygon: polygon.area) if polygons else None


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


@dataclass(frozen=True)
class Recipe:
    """What a kind of scene is made of.

    Attributes:
        road_spacing_m: Range of the distance between parallel roads.
        major_roads: Classes of the one through road each grid direction may have.
        minor_road: Class of the other roads.
        ground: Land use of blocks, with relative weights (``bare`` leaves a block unmapped).
        water: Probability of a sea, a river and a lake.
        tank_farm: Probability that an industrial block has storage tanks.
        airfield: Whether the scene has a runway and an apron.
    """

    road_spacing_m: tuple[float, float]
    major_roads: tuple[str, ...]
    minor_road: str
    ground: Mapping[str, float]
    water: Mapping[str, float]
    tank_farm: float = 0.4
    airfield: bool = False


RECIPES = {
    "suburban": Recipe(
        (70.0, 130.0),
        ("secondary",),
        "residential",
        {"residential": 8, "park": 1.2, "grass": 0.6, "forest": 0.5, "farmland": 0.4, "bare": 0.2},
        {"lake": 0.45, "river": 0.25},
    ),
    "industrial": Recipe(
        (110.0, 200.0),
        ("primary", "secondary"),
        "service",
        {"industrial": 8, "grass": 1, "residential": 0.6, "forest": 0.3, "bare": 0.5},
        {"river": 0.3, "lake": 0.15},
        tank_farm=0.5,
    ),
    "harbour": Recipe(
        (100.0, 170.0),
        ("secondary",),
        "service",
        {"industrial": 6, "residential": 1.5, "grass": 1, "bare": 0.5},
        {"sea": 1.0},
        tank_farm=0.7,
    ),
    "airport": Recipe(
        (150.0, 260.0),
        ("secondary",),
        "service",
        {"grass": 6, "industrial": 2, "farmland": 1},
        {},
        airfield=True,
    ),
    "mixed": Recipe(
        (80.0, 170.0),
        ("primary", "secondary"),
        "residential",
        {
            "residential": 4,
            "industrial": 2,
            "park": 1.5,
            "farmland": 1.5,
            "forest": 1,
            "grass": 1,
            "bare": 0.3,
        },
        {"lake": 0.35, "river": 0.25, "sea": 0.2},
    ),
}


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


# ---------------------------------------------------------------- water and airfield


def add_sea(builder: SceneBuilder) -> int:
    """A harbour basin on one side of the scene, with a straight quay and maybe a dock."""
    rng = builder.rng
    angle = builder.grid_angle + 90.0 * rng.integers(4)
    theta = math.radians(angle + 90.0)
    span = min(builder.width, builder.height)
    shift = rng.uniform(-0.1, 0.25) * span
    centre = np.array([builder.width / 2, builder.height / 2])
    quay = centre + shift * np.array([math.cos(theta), math.sin(theta)])
    pose = builder.pose(quay[0], quay[1], angle)
    reach = math.hypot(builder.width, builder.height) / builder.px_per_m
    water = pose.polygon(np.array([[-reach, 0.0], [reach, 0.0], [reach, reach], [-reach, reach]]))
    if rng.random() < 0.5:
        # A dock cut into the land, perpendicular to the quay.
        dock_width, dock_length = rng.uniform(40.0, 90.0), rng.uniform(60.0, 160.0)
        dock = np.array(
            [[0.0, -dock_length], [dock_width, -dock_length], [dock_width, 1.0], [0.0, 1.0]]
        )
        dock[:, 0] += rng.uniform(-0.3, 0.3) * span / builder.px_per_m
        water = water.union(pose.polygon(dock))
    footprint = largest_polygon(water.intersection(builder.frame))
    tags = {"natural": "water", "water": "harbour"}
    return builder.add(Feature(tags, footprint, LAYER_SURFACE, Look("water")))


def add_river(builder: SceneBuilder) -> int | None:
    """A meandering river or stream across the scene, as a line with a ``width``."""
    rng = builder.rng
    angle = math.radians(rng.uniform(0.0, 180.0))
    reach = math.hypot(builder.width, builder.height) / 2 + 10.0
    steps = np.linspace(-reach, reach, 96)
    wavelength = builder.px(rng.uniform(150.0, 400.0))
    swing = builder.px(rng.uniform(5.0, 30.0))
    lateral = swing * np.sin(2 * math.pi * steps / wavelength + rng.uniform(0, 2 * math.pi))
    lateral += rng.uniform(-0.25, 0.25) * min(builder.width, builder.height)
    along, across = (
        np.array([math.cos(angle), math.sin(angle)]),
        np.array([-math.sin(angle), math.cos(angle)]),
    )
    centre = np.array([builder.width / 2, builder.height / 2])
    points = centre + steps[:, None] * along + lateral[:, None] * across
    line = longest_line(LineString(points).intersection(builder.frame))
    if line is None:
        return None
    kind = "river" if rng.random() < 0.7 else "stream"
    width = round(rng.uniform(12.0, 30.0) if kind == "river" else rng.uniform(4.0, 8.0))
    tags = {"waterway": kind, "width": metres_tag(width)}
    footprint = builder.drawn("line", line, tags).intersection(builder.frame)
    return builder.add(Feature(tags, footprint, LAYER_SURFACE, Look("water"), line=line))


def lake_polygon(builder: SceneBuilder, pose: Pose, radius_m: float) -> Polygon:
    """A lake outline, with an island (a hole) about half the time when it is large enough."""
    rng = builder.rng
    outline = pose.polygon(blob(rng, radius_m))
    if radius_m < 18.0 or rng.random() < 0.45:
        return outline
    island_pose = builder.pose(
        *pose.points(rng.uniform(-0.25, 0.25, size=(1, 2)) * radius_m)[0], 0.0
    )
    island = island_pose.polygon(blob(rng, rng.uniform(0.2, 0.35) * radius_m, vertices=24))
    if not outline.buffer(-builder.px(4.0)).contains(island):
        return outline
    return Polygon(outline.exterior.coords, [island.exterior.coords])


def add_lake(
    builder: SceneBuilder, region: BaseGeometry, radius_m: tuple[float, float], kind: str
) -> int | None:
    """Tries to place a lake or pond inside ``region``, clear of everything placed.

    The radius is at most a quarter of the region's smaller side, so a lake leaves room for
    the rest of a small scene.
    """
    rng = builder.rng
    smaller = min(region.bounds[2] - region.bounds[0], region.bounds[3] - region.bounds[1])
    radius = min(rng.uniform(*radius_m), smaller / builder.px_per_m / 4)
    if radius < radius_m[0] / 2:
        return None
    # Centres far enough inside for the largest outline a blob of this radius can have.
    centres = region.buffer(-builder.px(BLOB_REACH * radius + 4.0))
    for _ in range(10):
        pose = builder.random_pose(centres, 0.0)
        if pose is None:
            continue
        polygon = lake_polygon(builder, pose, radius)
        if builder.fits(region, polygon.buffer(builder.px(4.0)), builder.solids):
            tags = {"natural": "water", "water": kind}
            return builder.add(Feature(tags, polygon, LAYER_SURFACE, Look("water")), builder.solids)
    return None


def runway_ref(angle_deg: float) -> str:
    """Runway designators (``"09/27"``) from the direction of the runway in the image."""
    heading = (90.0 + angle_deg) % 360.0  # compass: 0 north, 90 east; image +x is east
    first = round(heading / 10.0) % 36 or 36
    second = (first + 18) % 36 or 36
    low, high = sorted((first, second))
    return f"{low:02d}/{high:02d}"


def add_airfield(builder: SceneBuilder) -> list[int]:
    """A runway across the scene and an apron beside it."""
    rng = builder.rng
    angle = builder.grid_angle + rng.normal(0.0, 2.0)
    theta = math.radians(angle)
    across = np.array([-math.sin(theta), math.cos(theta)])
    offset = rng.uniform(-0.2, 0.2) * min(builder.width, builder.height)
    centre = np.array([builder.width / 2, builder.height / 2]) + across * offset
    pose = builder.pose(centre[0], centre[1], angle)
    reach = math.hypot(builder.width, builder.height) / builder.px_per_m
    width = round(rng.uniform(30.0, 60.0))
    runway = pose.polygon(rect(2 * reach, width)).intersection(builder.frame)
    surface = "asphalt" if rng.random() < 0.6 else "concrete"
    tags = {"aeroway": "runway", "ref": runway_ref(angle), "surface": surface}
    tags["width"] = metres_tag(width)
    look = Look("runway", pose=pose, params={"width": width})
    ids = [builder.add(Feature(tags, runway, LAYER_SURFACE, look))]
    side = 1.0 if rng.random() < 0.5 else -1.0
    depth, length = rng.uniform(70.0, 150.0), rng.uniform(150.0, 400.0)
    distance = width / 2 + rng.uniform(70.0, 130.0) + depth / 2
    apron_centre = pose.points(np.array([[rng.uniform(-0.3, 0.3) * reach, side * distance]]))[0]
    apron_pose = builder.pose(apron_centre[0], apron_centre[1], angle)
    apron = apron_pose.polygon(rect(length, depth)).intersection(builder.frame)
    if builder.area_m2(apron) > 400.0:
        look = Look("apron", pose=apron_pose, params={"length": length, "width": depth})
        tags = {"aeroway": "apron", "surface": "concrete"}
        ids.append(builder.add(Feature(tags, apron, LAYER_SURFACE, look)))
    return ids


# ---------------------------------------------------------------- roads and blocks


def grid_offsets(rng: np.random.Generator, reach: float, spacing: float) -> list[float]:
    """Offsets of parallel roads from the scene centre, about ``spacing`` apart."""
    offsets, offset = [], -reach + rng.uniform(0.0, spacing)
    while offset < reach:
        offsets.append(offset)
        offset += spacing * rng.uniform(0.75, 1.3)
    return offsets


def road_lines(builder: SceneBuilder, recipe: Recipe) -> list[tuple[LineString, str]]:
    """Straight roads of a grid at the scene's angle, with their classes, before clipping."""
    rng = builder.rng
    reach = math.hypot(builder.width, builder.height) / 2 + 10.0
    centre = np.array([builder.width / 2, builder.height / 2])
    lines = []
    for angle in (builder.grid_angle, builder.grid_angle + 90.0):
        theta = math.radians(angle)
        along, across = (
            np.array([math.cos(theta), math.sin(theta)]),
            np.array([-math.sin(theta), math.cos(theta)]),
        )
        offsets = grid_offsets(rng, reach, builder.px(rng.uniform(*recipe.road_spacing_m)))
        major = int(rng.integers(len(offsets))) if offsets and rng.random() < 0.7 else -1
        for index, offset in enumerate(offsets):
            if index != major and rng.random() > 0.85:
                continue
            road_class = (
                str(rng.choice(recipe.major_roads)) if index == major else recipe.minor_road
            )
            middle = centre + across * offset
            lines.append((LineString([middle - along * reach, middle + along * reach]), road_class))
    return lines


def with_junctions(lines: list[LineString]) -> list[LineString]:
    """Adds each crossing of two lines as a vertex of both, so OSM ways share the node."""
    crossings: list[list[Point]] = [[] for _ in lines]
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            meeting = lines[i].intersection(lines[j])
            points = [p for p in shapely.get_parts(meeting) if isinstance(p, Point)]
            crossings[i].extend(points)
            crossings[j].extend(points)
    result = []
    for line, points in zip(lines, crossings, strict=True):
        vertices = [Point(c) for c in line.coords] + points
        vertices.sort(key=line.project)
        coords = [(p.x, p.y) for p in vertices]
        unique = [c for k, c in enumerate(coords) if k == 0 or c != coords[k - 1]]
        result.append(LineString(unique))
    return result


def add_roads(builder: SceneBuilder, recipe: Recipe, barrier: BaseGeometry) -> list[int]:
    """The road grid, stopped short of ``barrier`` (water, runways), as OSM lines."""
    rng = builder.rng
    pieces: list[LineString] = []
    tags_of: list[dict[str, str]] = []
    for line, road_class in road_lines(builder, recipe):
        width = round(ROAD_WIDTH_M[road_class] * rng.uniform(0.9, 1.1) * 2) / 2
        keep_out = barrier.buffer(builder.px(width / 2 + 8.0)) if not barrier.is_empty else None
        visible = line.intersection(builder.frame)
        if keep_out is not None:
            visible = visible.difference(keep_out)
        for piece in shapely.get_parts(visible):
            if isinstance(piece, LineString) and piece.length >= builder.px(30.0):
                pieces.append(piece)
                tags = {"highway": road_class, "width": metres_tag(width), "surface": "asphalt"}
                if road_class in ("primary", "secondary"):
                    tags["lanes"] = str(rng.choice([2, 4]) if road_class == "primary" else 2)
                tags_of.append(tags)
    ids = []
    for line, tags in zip(with_junctions(pieces), tags_of, strict=True):
        footprint = builder.drawn("line", line, tags).intersection(builder.frame)
        look = Look("road", params={"class": tags["highway"]})
        ids.append(builder.add(Feature(tags, footprint, LAYER_SURFACE, look, line=line)))
    return ids


def carve_blocks(builder: SceneBuilder, roads: list[int], barrier: BaseGeometry) -> list[Polygon]:
    """The land between roads, water and runways, with a verge along the roads."""
    verge = builder.px(builder.rng.uniform(2.0, 4.0))
    cuts = [
        builder.features[i].line.buffer(
            builder.px(float(builder.features[i].tags["width"])) / 2 + verge
        )
        for i in roads
    ]
    if not barrier.is_empty:
        cuts.append(barrier.buffer(builder.px(3.0)))
    land = builder.frame.difference(shapely.union_all(cuts)) if cuts else builder.frame
    blocks = []
    for part in shapely.get_parts(land):
        if not isinstance(part, Polygon) or builder.area_m2(part) < 225.0:
            continue
        simple = part.simplify(0.25)
        blocks.append(simple if simple.is_valid and not simple.is_empty else part)
    return blocks


# ---------------------------------------------------------------- objects in blocks


def add_building(
    builder: SceneBuilder,
    region: BaseGeometry,
    pose: Pose | None,
    size_m: tuple[float, float],
    kind: str,
    clearance_m: float,
) -> int | None:
    """Places a building of ``size_m`` (length, width) at ``pose`` if it fits."""
    if pose is None:
        return None
    length, width = size_m
    zone = pose.polygon(rect(length + 2 * clearance_m, width + 2 * clearance_m))
    if not builder.fits(region, zone, builder.solids):
        return None
    rng = builder.rng
    roof = choose(rng, ROOF_COLOURS[kind])
    tags = {"building": kind, "roof:colour": roof}
    if kind == "house":
        levels = int(rng.choice([1, 1, 2]))
        shape = "hip" if rng.random() < 0.35 else "gable"
        height = 3.0 * levels + 2.5
    else:
        levels = int(rng.integers(1, 4 if kind == "industrial" else 6))
        shape = "flat"
        height = 4.0 * levels + 2.0
    tags["building:levels"] = str(levels)
    if kind == "industrial" and rng.random() < 0.3:
        tags["building"] = "yes"
    params = {"shape": shape, "length": length, "width": width, "kind": kind}
    look = Look("roof", height_m=height, pose=pose, params=params)
    return builder.add(
        Feature(tags, pose.polygon(rect(length, width)), LAYER_OBJECT, look), builder.solids
    )


def add_pool(builder: SceneBuilder, region: BaseGeometry, pose: Pose) -> int | None:
    """Places a swimming pool (rectangular or oval) at ``pose`` if it fits, with its deck."""
    rng = builder.rng
    length, width = rng.uniform(6.0, 12.0), rng.uniform(3.0, 5.5)
    oval = rng.random() < 0.25
    outline = pool_outline(oval)
    if not builder.fits(region, pose.polygon(outline(length + 3.0, width + 3.0)), builder.solids):
        return None
    tags = {"leisure": "swimming_pool", "access": "private"}
    look = Look("pool", pose=pose, params={"length": length, "width": width, "oval": oval})
    footprint = pose.polygon(outline(length, width))
    return builder.add(Feature(tags, footprint, LAYER_OBJECT, look), builder.solids)


def add_tree(builder: SceneBuilder, region: BaseGeometry, x: float, y: float) -> int | None:
    """Places a tree (an OSM node with ``diameter_crown``) at pixel ``(x, y)`` if it fits."""
    rng = builder.rng
    diameter = round(rng.uniform(3.5, 10.0), 1)
    radius = builder.px(diameter / 2)
    # A 16-gon around the crown plus clearance still contains the crown.
    zone = Point(x, y).buffer(radius + builder.px(0.4), quad_segs=4)
    if not builder.fits(region, zone, builder.solids):
        return None
    leaf = "needleleaved" if rng.random() < 0.25 else "broadleaved"
    tags = {"natural": "tree", "diameter_crown": metres_tag(diameter), "leaf_type": leaf}
    look = Look("tree", height_m=diameter * 1.3 + 2.0)
    footprint = builder.drawn("node", Point(x, y), tags)
    feature = Feature(tags, footprint, LAYER_OBJECT, look, point=(float(x), float(y)))
    return builder.add(feature, builder.solids)


def add_trees(builder: SceneBuilder, region: Polygon, count: int, cluster_m: float = 0.0) -> None:
    """Scatters about ``count`` trees over ``region``; in clusters when ``cluster_m`` > 0."""
    rng = builder.rng
    x0, y0, x1, y1 = region.bounds
    centre = (rng.uniform(x0, x1), rng.uniform(y0, y1))
    for index in range(count):
        if cluster_m and index % 6 == 0:
            centre = (rng.uniform(x0, x1), rng.uniform(y0, y1))
        if cluster_m:
            x, y = np.asarray(centre) + rng.normal(0.0, builder.px(cluster_m), size=2)
        else:
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        add_tree(builder, region, x, y)


def add_vehicle(
    builder: SceneBuilder,
    pose: Pose,
    kind: str,
    support: int,
    avoid: np.ndarray | None = None,
) -> int | None:
    """Places a car or truck at ``pose`` if it lies on its support and clear of the rest.

    Args:
        builder: The scene.
        pose: Centre and heading.
        kind: ``"car"`` or ``"truck"``.
        support: Index of the road or parking lot it must lie on entirely.
        avoid: Footprints it must not touch (the other roads, so none stands on a junction).
    """
    rng = builder.rng
    if kind == "truck":
        length, width, height = rng.uniform(10.0, 16.5), rng.uniform(2.4, 2.55), 3.8
    else:
        length, width, height = rng.uniform(4.2, 4.9), rng.uniform(1.7, 1.9), 1.5
    footprint = pose.polygon(rect(length, width))
    zone = pose.polygon(rect(length + 1.0, width + 0.6))
    if not shapely.contains(builder.features[support].footprint, footprint):
        return None
    if avoid is not None and shapely.intersects(footprint, avoid).any():
        return None
    if not builder.movers.is_free(zone):
        return None
    tags = {"vehicle": kind, "colour": choose(rng, VEHICLE_COLOURS)}
    params = {"length": length, "width": width, "kind": kind}
    look = Look("vehicle", height_m=height, pose=pose, params=params)
    feature = Feature(tags, footprint, LAYER_MOVER, look, support=support)
    return builder.add(feature, builder.movers)


def add_parking(builder: SceneBuilder, region: BaseGeometry, vehicle: str) -> int | None:
    """Places a surface parking lot inside ``region`` and fills some of its stalls."""
    rng = builder.rng
    if vehicle == "truck":
        layout = ParkingLayout(int(rng.integers(3, 9)), 1, **TRUCK_PARKING)
    else:
        layout = ParkingLayout(int(rng.integers(5, 20)), int(rng.integers(1, 4)), **CAR_PARKING)
    pose = builder.random_pose(region, builder.grid_angle + 90.0 * rng.integers(2))
    if pose is None:
        return None
    zone = pose.polygon(rect(layout.length + 4.0, layout.width + 4.0))
    if not builder.fits(region, zone, builder.solids):
        return None
    lot = pose.polygon(rect(layout.length, layout.width))
    tags = {"amenity": "parking", "parking": "surface", "capacity": str(layout.capacity)}
    look = Look("parking", pose=pose, params={"layout": layout})
    index = builder.add(Feature(tags, lot, LAYER_SURFACE, look), builder.solids)
    fill = rng.uniform(0.25, 0.95)
    for u in layout.stall_edges()[:-1] + layout.stall_width / 2:
        for v, aisle_side in layout.rows():
            if rng.random() < fill:
                jitter = rng.normal(0.0, 0.15, size=2)
                centre = pose.points(np.array([[u + jitter[0], v + jitter[1]]]))[0]
                heading = pose.angle_deg + 90.0 * aisle_side + rng.normal(0.0, 2.0)
                add_vehicle(builder, builder.pose(*centre, heading), vehicle, index)
    return index


def add_pitch(builder: SceneBuilder, region: BaseGeometry) -> int | None:
    """Places a tennis court, basketball court or soccer field inside ``region``."""
    rng = builder.rng
    sport = str(rng.choice(list(PITCH_SURFACES)))
    if sport == "tennis":
        length, width = 36.6, 18.3
    elif sport == "basketball":
        length, width = 32.0, 19.0
    else:
        # From a small-sided field to a full one, as the block allows.
        longest = float(np.clip(0.8 * math.sqrt(builder.area_m2(region)), 41.0, 105.0))
        length = rng.uniform(40.0, longest)
        width = length * 0.66
    pose = builder.random_pose(region, builder.grid_angle + 90.0 * rng.integers(2))
    if pose is None or not builder.fits(
        region, pose.polygon(rect(length + 6, width + 6)), builder.solids
    ):
        return None
    tags = {"leisure": "pitch", "sport": sport, "surface": str(rng.choice(PITCH_SURFACES[sport]))}
    look = Look("pitch", pose=pose, params={"length": length, "width": width})
    footprint = pose.polygon(rect(length, width))
    return builder.add(Feature(tags, footprint, LAYER_SURFACE, look), builder.solids)


def add_footway(builder: SceneBuilder, block: Polygon) -> int | None:
    """A straight footpath across a park, between two points of its outline."""
    rng = builder.rng
    inner = largest_polygon(block.buffer(-builder.px(4.0)))
    if inner is None:
        return None
    ring = inner.exterior
    start = rng.uniform(0.0, ring.length)
    end = (start + rng.uniform(0.3, 0.7) * ring.length) % ring.length
    chord = LineString([ring.interpolate(start), ring.interpolate(end)])
    line = longest_line(chord.intersection(inner))
    if line is None or line.length < builder.px(20.0):
        return None
    surface = str(rng.choice(["gravel", "paved"]))
    tags = {"highway": "footway", "width": metres_tag(2.5), "surface": surface}
    footprint = builder.drawn("line", line, tags)
    if not builder.solids.is_free(footprint.buffer(builder.px(1.0))):
        return None
    look = Look("road", params={"class": "footway"})
    return builder.add(Feature(tags, footprint, LAYER_SURFACE, look, line=line), builder.solids)


def fill_residential(builder: SceneBuilder, block: Polygon, recipe: Recipe) -> None:
    """Houses along the streets, pools in the back gardens, trees, sometimes a shop."""
    rng = builder.rng
    if rng.random() < 0.2:
        size = (rng.uniform(20.0, 45.0), rng.uniform(15.0, 30.0))
        depth = builder.px(size[1] / 2 + rng.uniform(5.0, 10.0))
        pose = builder.edge_poses(block, np.array([depth]), 1.0)[0]
        add_building(builder, block, pose, size, "commercial", 4.0)
        add_parking(builder, block, "car")
    target = builder.count(block.exterior.length / builder.px_per_m / 16.0)
    tries = 3 * target
    lengths = rng.uniform(9.0, 16.0, size=tries)
    widths = rng.uniform(7.5, np.minimum(lengths, 12.0))
    depths = builder.px(rng.uniform(3.0, 8.0, size=tries) + widths / 2)
    placed = 0
    for length, width, pose in zip(
        lengths, widths, builder.edge_poses(block, depths, 2.0), strict=True
    ):
        if placed >= target:
            break
        if add_building(builder, block, pose, (length, width), "house", 2.5) is None:
            continue
        placed += 1
        if rng.random() < 0.4:
            behind = width / 2 + rng.uniform(3.0, 7.0) + 2.5
            spot = pose.points(np.array([[rng.uniform(-0.25, 0.25) * length, behind]]))[0]
            turn = 90.0 * rng.integers(2)
            add_pool(builder, block, builder.pose(spot[0], spot[1], pose.angle_deg + turn))
    add_trees(builder, block, builder.count(builder.area_m2(block) / 250.0))


def fill_industrial(builder: SceneBuilder, block: Polygon, recipe: Recipe) -> None:
    """Large flat-roofed buildings, a tank farm, parking lots with cars or trucks."""
    rng = builder.rng
    area = builder.area_m2(block)
    # Buildings scale with the block, so that small blocks still get some.
    longest = float(np.clip(0.7 * math.sqrt(area), 26.0, 90.0))
    for _ in range(4 * (builder.count(area / 6000.0) + 1)):
        length = rng.uniform(25.0, longest)
        width = rng.uniform(18.0, min(length, 50.0))
        pose = builder.random_pose(block, builder.grid_angle + 90.0 * rng.integers(2))
        add_building(builder, block, pose, (length, width), "industrial", 6.0)
    if rng.random() < recipe.tank_farm:
        add_tank_farm(builder, block)
    for _ in range(int(rng.integers(1, 4))):
        add_parking(builder, block, "truck" if rng.random() < 0.4 else "car")
    add_trees(builder, block, builder.count(area / 2500.0))


def add_tank_farm(builder: SceneBuilder, block: Polygon) -> None:
    """A grid of storage tanks of one size."""
    rng = builder.rng
    diameter = round(rng.uniform(10.0, 28.0), 1)
    spacing = diameter + rng.uniform(5.0, 9.0)
    anchor = builder.random_pose(block, builder.grid_angle)
    if anchor is None:
        return
    content = str(rng.choice(["oil", "water", "fuel"]))
    floating = content != "water" and rng.random() < 0.6
    height = float(np.clip(0.6 * diameter, 8.0, 20.0))
    radius = builder.px(diameter / 2)
    for row in range(int(rng.integers(1, 4))):
        for column in range(int(rng.integers(1, 5))):
            x, y = anchor.points(np.array([[column * spacing, row * spacing]]))[0]
            zone = Point(x, y).buffer(radius + builder.px(3.0), quad_segs=8)
            if not builder.fits(block, zone, builder.solids):
                continue
            tags = {"man_made": "storage_tank", "content": content}
            look = Look(
                "tank", height_m=height, pose=builder.pose(x, y, 0.0), params={"floating": floating}
            )
            footprint = Point(x, y).buffer(radius, quad_segs=8)
            builder.add(Feature(tags, footprint, LAYER_OBJECT, look), builder.solids)


def fill_park(builder: SceneBuilder, block: Polygon, recipe: Recipe) -> None:
    """A footpath, maybe a pond, sports pitches and clusters of trees."""
    rng = builder.rng
    area = builder.area_m2(block)
    if rng.random() < 0.7:
        add_footway(builder, block)
    if rng.random() < 0.35 and area > 3000.0:
        add_lake(builder, block, (10.0, 30.0), "pond")
    for _ in range(min(builder.count(area / 3000.0), 3)):
        add_pitch(builder, block)
    add_trees(builder, block, builder.count(area / 180.0), cluster_m=10.0)


def fill_grass(builder: SceneBuilder, block: Polygon, recipe: Recipe) -> None:
    """A few scattered trees, sometimes a pitch."""
    if builder.rng.random() < 0.3:
        add_pitch(builder, block)
    add_trees(builder, block, builder.count(builder.area_m2(block) / 1500.0))


def add_fields(builder: SceneBuilder, block: Polygon) -> None:
    """Splits a block into parallel fields, each a ``landuse=farmland`` with its own crop."""
    rng = builder.rng
    angle = builder.grid_angle + 90.0 * rng.integers(2)
    x0, y0, x1, y1 = block.bounds
    pose = builder.pose((x0 + x1) / 2, (y0 + y1) / 2, angle)
    reach = math.hypot(x1 - x0, y1 - y0) / builder.px_per_m / 2 + 1.0
    start = -reach
    while start < reach:
        end = start + rng.uniform(30.0, 90.0)
        strip = pose.polygon(
            np.array([[start, -reach], [end, -reach], [end, reach], [start, reach]])
        )
        # Tracks of bare soil between fields.
        field_area = block.intersection(strip).buffer(-builder.px(1.0))
        for part in shapely.get_parts(field_area):
            if isinstance(part, Polygon) and builder.area_m2(part) > 200.0:
                crop = str(rng.choice(["green", "yellow", "brown", "pale"]))
                rows = builder.pose(pose.cx, pose.cy, angle + 90.0 * rng.integers(2))
                params = {"ground": "farmland", "crop": crop, "row_m": rng.uniform(1.5, 4.0)}
                look = Look("ground", pose=rows, params=params)
                builder.add(Feature(dict(GROUND_TAGS["farmland"]), part, LAYER_GROUND, look))
        start = end


def fill_block(
    builder: SceneBuilder, block: Polygon, recipe: Recipe, lakes: list[int], aprons: list[int]
) -> None:
    """Gives a block a land use and fills it with the objects that belong there.

    A block with a lake becomes a park or grass; one beside an apron, hangars (industrial).
    """
    rng = builder.rng
    reach = builder.px(60.0)
    if any(block.intersects(builder.features[i].footprint) for i in lakes):
        ground = "park" if rng.random() < 0.6 else "grass"
    elif any(block.distance(builder.features[i].footprint) < reach for i in aprons):
        ground = "industrial"
    else:
        ground = choose(rng, recipe.ground)
    if ground == "farmland":
        add_fields(builder, block)
        return
    if ground != "bare":
        tags = dict(GROUND_TAGS[ground])
        if ground == "forest":
            tags["leaf_type"] = str(rng.choice(["broadleaved", "needleleaved", "mixed"]))
        builder.add(Feature(tags, block, LAYER_GROUND, Look("ground", params={"ground": ground})))
    shapely.prepare(block)
    if ground in FILLERS:
        FILLERS[ground](builder, block, recipe)


# Objects of each land use (forest is a texture only).
FILLERS: dict[str, Callable[[SceneBuilder, Polygon, Recipe], None]] = {
    "residential": fill_residential,
    "industrial": fill_industrial,
    "park": fill_park,
    "grass": fill_grass,
    "bare": fill_grass,
}


# ---------------------------------------------------------------- vehicles and ships


def add_traffic(builder: SceneBuilder, roads: list[int]) -> None:
    """Cars and trucks driving or parked along the roads, each entirely on one road."""
    rng = builder.rng
    footprints = np.array([builder.features[i].footprint for i in roads], dtype=object)
    for position, index in enumerate(roads):
        road = builder.features[index]
        road_class = road.tags["highway"]
        if road_class not in TRAFFIC_PER_M:
            continue
        shapely.prepare(road.footprint)
        others = np.delete(footprints, position)
        half = builder.px(float(road.tags["width"])) / 2
        line = road.line
        for _ in range(builder.count(line.length / builder.px_per_m * TRAFFIC_PER_M[road_class])):
            truck = rng.random() < (0.25 if road_class in ("primary", "service") else 0.05)
            side = 1.0 if rng.random() < 0.5 else -1.0
            # Parked at the kerb or driving in the middle of the lane.
            offset = half - builder.px(1.4) if rng.random() < 0.5 else half / 2
            pose = builder.line_pose(line, rng.uniform(0.0, line.length), side * offset)
            add_vehicle(builder, pose, "truck" if truck else "car", index, others)


def add_apron_vehicles(builder: SceneBuilder, apron: int) -> None:
    """Service cars and trucks standing on an apron."""
    rng = builder.rng
    footprint = builder.features[apron].footprint
    shapely.prepare(footprint)
    for _ in range(builder.count(builder.area_m2(footprint) / 2500.0)):
        pose = builder.random_pose(footprint, rng.uniform(0.0, 360.0))
        if pose is not None:
            add_vehicle(builder, pose, "truck" if rng.random() < 0.4 else "car", apron)


def ship_kind(builder: SceneBuilder, water: Feature) -> str:
    """A kind of ship that suits a body of water."""
    if water.tags.get("water") == "harbour":
        return choose(builder.rng, {"cargo": 0.3, "fishing": 0.35, "yacht": 0.35})
    return "yacht" if builder.rng.random() < 0.8 else "fishing"


def ship_size(rng: np.random.Generator, kind: str) -> tuple[float, float]:
    """Length and beam in metres of a ship of ``kind``."""
    (low, high), beam, _ = SHIP_SIZES[kind]
    length = rng.uniform(low, high)
    return length, length * beam * rng.uniform(0.9, 1.1)


def add_ship(
    builder: SceneBuilder, water_index: int, pose: Pose, kind: str, size_m: tuple[float, float]
) -> int | None:
    """Places a ship of ``size_m`` (length, beam) at ``pose`` if it floats clear of the rest."""
    rng = builder.rng
    water = builder.features[water_index]
    length, width = size_m
    height = SHIP_SIZES[kind][2]
    zone = pose.polygon(hull(length + 4.0, width + 4.0))
    if not (shapely.contains(water.footprint, zone) and builder.movers.is_free(zone)):
        return None
    tags = {"seamark:type": "vessel", "ship": kind}
    moving = rng.random() < 0.4
    params = {"length": length, "width": width, "kind": kind, "wake": moving}
    look = Look("ship", height_m=height, pose=pose, params=params)
    feature = Feature(
        tags, pose.polygon(hull(length, width)), LAYER_MOVER, look, support=water_index
    )
    return builder.add(feature, builder.movers)


def add_ships(builder: SceneBuilder, waters: list[int]) -> None:
    """Ships on the sea and lakes, boats on wide rivers; some moored along the quay."""
    rng = builder.rng
    for index in waters:
        water = builder.features[index]
        shapely.prepare(water.footprint)
        if water.line is not None:
            if float(water.tags["width"]) < 12.0:
                continue
            for _ in range(builder.count(water.line.length / builder.px_per_m / 150.0)):
                pose = builder.line_pose(water.line, rng.uniform(0.0, water.line.length), 0.0)
                kind = ship_kind(builder, water)
                add_ship(builder, index, pose, kind, ship_size(rng, kind))
            continue
        area = builder.area_m2(water.footprint)
        per_ship = 6000.0 if water.tags.get("water") == "harbour" else 4000.0
        for _ in range(2 * min(builder.count(area / per_ship), 30)):
            kind = ship_kind(builder, water)
            size = ship_size(rng, kind)
            if kind == "cargo" and rng.random() < 0.6:
                # Moored along the quay (the image border is no quay).
                depth = builder.px(size[1] / 2 + 2.5)
                pose = builder.edge_poses(water.footprint, np.array([depth]), 0.5)[0]
                border = builder.frame.exterior
                if pose is not None and border.distance(Point(pose.cx, pose.cy)) < 2 * depth:
                    pose = None
            else:
                pose = builder.random_pose(water.footprint, rng.uniform(0.0, 360.0))
            if pose is not None:
                add_ship(builder, index, pose, kind, size)


# ---------------------------------------------------------------- the scene


def add_water(builder: SceneBuilder, recipe: Recipe) -> tuple[list[int], list[int]]:
    """Sea, river and lake by the recipe's odds: (indices of barriers, indices of lakes)."""
    rng = builder.rng
    barriers: list[int] = []
    if rng.random() < recipe.water.get("sea", 0.0):
        barriers.append(add_sea(builder))
    elif rng.random() < recipe.water.get("river", 0.0):
        river = add_river(builder)
        barriers.extend([] if river is None else [river])
    lakes = []
    if rng.random() < recipe.water.get("lake", 0.0):
        region = builder.frame.buffer(-builder.px(8.0))
        for index in barriers:
            region = region.difference(builder.features[index].footprint.buffer(builder.px(10.0)))
        lake = add_lake(builder, region, (25.0, 80.0), str(rng.choice(["lake", "pond"])))
        lakes.extend([] if lake is None else [lake])
    return barriers, lakes


def layout_scene(
    rng: np.random.Generator, width: int, height: int, gsd: float, scene: str, density: float
) -> list[Feature]:
    """Lays out a whole scene.

    Args:
        rng: The only source of randomness.
        width: Image width in pixels.
        height: Image height in pixels.
        gsd: Metres per pixel.
        scene: One of :data:`SCENES`.
        density: Multiplier of object counts.

    Returns:
        The features, in the order they were placed.
    """
    recipe = RECIPES[scene]
    builder = SceneBuilder(rng, width, height, gsd, density)
    barriers, lakes = add_water(builder, recipe)
    aprons = []
    if recipe.airfield:
        airfield = add_airfield(builder)
        barriers.extend(airfield)
        aprons = airfield[1:]
    barrier_shapes = [builder.features[i].footprint for i in barriers]
    lake_shapes = [builder.features[i].footprint for i in lakes]
    barrier = shapely.union_all(barrier_shapes) if barrier_shapes else Polygon()
    road_barrier = shapely.union_all([barrier, *lake_shapes]) if lake_shapes else barrier
    roads = add_roads(builder, recipe, road_barrier)
    for block in carve_blocks(builder, roads, barrier):
        fill_block(builder, block, recipe, lakes, aprons)
    add_traffic(builder, roads)
    for apron in aprons:
        add_apron_vehicles(builder, apron)
    waters = [i for i, f in enumerate(builder.features) if f.look.painter == "water"]
    add_ships(builder, waters)
    return builder.features
