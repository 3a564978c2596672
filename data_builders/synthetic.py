"""The synthetic world: procedural georeferenced aerial scenes with OpenStreetMap truth.

A world is a scene laid out by :mod:`data_builders.scene.layout` (roads, blocks with land
use, buildings with coloured roofs, pools, storage tanks, trees, pitches, water with islands,
runways, vehicles, ships) and painted by :mod:`data_builders.scene.paint` (textures,
markings, one sun for every shadow, noise at several scales and orientations). Objects never
overlap except by layer (everything lies on land use; vehicles and ships lie on their road,
parking lot or water; roads meet at junctions), so every footprint is fully visible.

:func:`generate_world` writes, atomically, in one folder:

- ``world.tif``: GeoTIFF, RGB uint8, a real projected CRS (a UTM zone by default), north up,
  pixels of ``gsd`` metres.
- ``world.osm`` and ``world.osm.pbf``: the same OpenStreetMap data (written with osmium).
  Node coordinates are WGS84 lon/lat; ids are positive and unique per type; every object has
  version 1 and a fixed timestamp. Areas are closed ways, or ``type=multipolygon`` relations
  when they have holes (lakes with islands); roads and rivers are open ways with a ``width``
  tag and share nodes at junctions; trees are nodes with ``diameter_crown``; vehicles and
  ships are closed 4- and 5-node ways (``vehicle=car|truck``, ``ship=*`` with
  ``seamark:type=vessel``).
- ``truth.geojson``: one feature per OSM object, in the same order, with the exact drawn
  footprint in the raster CRS (lines and nodes drawn by the tag table's
  :meth:`~data_builders.tags.Rule.footprint`, so the OSM pipeline draws the same polygon), and
  properties ``osm_id`` (``"way/12"``), ``tags``, ``kind`` (node, line, area), ``layer``
  (0 ground, 1 surface, 2 object, 3 vehicle or ship) and ``support`` (the ``osm_id`` a
  vehicle or ship lies on), ``category`` and ``min_pixels`` (the tag table's rule for the
  tags; both null where no rule takes them). A ``world`` member holds the CRS, transform,
  size, GSD, scene, seed and sun; a ``categories`` member says per category (table order) its
  ``plural``, whether it is ``countable`` (neither land cover nor a line) and ``segmented``
  (land cover and buildings), so that readers of the truth need no tag table. Footprints are
  clipped to the raster.

Everything is deterministic by seed.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import osmium
import rasterio
import shapely
from osmium.osm import mutable
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from rasterio.transform import Affine
from shapely import affinity
from shapely.geometry import Point, Polygon, mapping
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from geochat import cliargs
from geochat.cliargs import Flag
from geochat.data_builders.render import Light
from geochat.data_builders.scene.features import (
    Feature,
    SyntheticWorldError,
    drawn_footprint,
    tag_table,
)
from geochat.data_builders.scene.layout import layout_scene
from geochat.data_builders.scene.paint import paint_scene
from geochat.data_builders.scene.recipes import SCENES
from geochat.data_builders.tasks.options import LAND_COVER
from geochat.data_builders.tasks.scene import load_vocabulary
from geochat.fileio import atomic_path
from geochat.georef import Georef

DEFAULT_CRS = "EPSG:32633"
GENERATOR = "geochat synthetic world 2"  # 2: truth names each feature's category
SEGMENTED_OBJECTS = ("building",)  # countable categories whose masks are asked for too
OSM_TIMESTAMP = datetime(2024, 1, 1, tzinfo=UTC)
OSM_USER = "geochat-synthetic"
SIZE_RANGE = (32, 8192)
GSD_RANGE = (0.05, 5.0)
GSD_STREAM = 1000  # spawn key of a world's GSD draw; layout and paint use the scene index
DENSITY_RANGE = (0.0, 5.0)
# OSM stores coordinates as integer multiples of 1e-7 degree.
OSM_DEGREE_STEP = 1e-7
# Scenes of generate_worlds when none is named, with their odds.
SCENE_MIX = {"mixed": 0.3, "suburban": 0.25, "industrial": 0.15, "harbour": 0.15, "airport": 0.15}


@dataclass(frozen=True)
class WorldFiles:
    """Paths of one written world.

    Attributes:
        directory: The world's folder.
        tif: GeoTIFF.
        osm: OSM XML.
        pbf: OSM PBF.
        truth: GeoJSON of drawn footprints in the raster CRS.
    """

    directory: Path
    tif: Path
    osm: Path
    pbf: Path
    truth: Path


@dataclass
class World:
    """A generated world in memory.

    Attributes:
        image: ``[height, width, 3]`` uint8 RGB.
        features: Every mapped object, footprints in pixels.
        crs: The raster's CRS, e.g. ``"EPSG:32633"``.
        transform: Pixel -> CRS affine transform (rasterio order).
        gsd: Metres per pixel.
        scene: The kind of scene.
        seed: The seed it came from.
        light: The sun.
        density: The object-count multiplier it was made with.
    """

    image: np.ndarray
    features: list[Feature]
    crs: str
    transform: Affine
    gsd: float
    scene: str
    seed: int
    light: Light
    density: float = 1.0

    @property
    def height(self) -> int:
        """Image rows."""
        return self.image.shape[0]

    @property
    def width(self) -> int:
        """Image columns."""
        return self.image.shape[1]


# ---------------------------------------------------------------- arguments


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise SyntheticWorldError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise SyntheticWorldError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def _check_float(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise SyntheticWorldError(f"{name} must be a number, got {value!r}") from error
    if not (math.isfinite(number) and low <= number <= high):
        raise SyntheticWorldError(f"{name} must be in [{low}, {high}], got {value!r}")
    return number


def projected_crs(crs: str) -> CRS:
    """Reads a CRS and checks that it is projected, in metres.

    Raises:
        SyntheticWorldError: for an unknown, geographic or non-metric CRS.
    """
    try:
        parsed = CRS.from_user_input(crs)
    except CRSError as error:
        raise SyntheticWorldError(f"unknown CRS {crs!r}: {error}") from error
    if not parsed.is_projected:
        raise SyntheticWorldError(f"CRS {crs!r} is not projected: the world needs metres")
    units = {axis.unit_name for axis in parsed.axis_info}
    if units != {"metre"}:
        raise SyntheticWorldError(f"CRS {crs!r} has axis units {sorted(units)}, not metres")
    return parsed


def default_origin(crs: str) -> tuple[float, float]:
    """A top-left corner in the middle of the CRS's area of use, rounded to a kilometre.

    Raises:
        SyntheticWorldError: when the CRS declares no area of use.
    """
    area = projected_crs(crs).area_of_use
    if area is None:
        raise SyntheticWorldError(f"CRS {crs!r} has no area of use: pass an origin")
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x, y = to_crs.transform((area.west + area.east) / 2, (area.south + area.north) / 2)
    return round(x, -3), round(y, -3)


def _check_origin(origin: Any) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in origin)
    except (TypeError, ValueError) as error:
        raise SyntheticWorldError(f"origin must be (x, y) in CRS metres, got {origin!r}") from error
    if not (math.isfinite(x) and math.isfinite(y)):
        raise SyntheticWorldError(f"origin must be finite, got {origin!r}")
    return x, y


def _check_crs(crs: str) -> str:
    projected_crs(crs)
    return crs


def _check_scene(scene: str) -> str:
    if scene not in SCENES:
        raise SyntheticWorldError(f"scene must be one of {', '.join(SCENES)}, got {scene!r}")
    return scene


@dataclass(frozen=True)
class WorldArguments:
    """Validated arguments of a world (see :func:`build_world`)."""

    seed: int
    width: int
    height: int
    gsd: float
    crs: str
    origin: tuple[float, float]
    scene: str
    density: float


def check_world_arguments(
    seed: Any,
    width: Any,
    height: Any,
    gsd: Any,
    crs: str,
    origin: Any,
    scene: str,
    density: Any,
) -> WorldArguments:
    """Validates and normalises a world's arguments (see :func:`build_world`).

    Raises:
        SyntheticWorldError: naming the first invalid argument.
    """
    return WorldArguments(
        seed=_check_int("seed", seed, 0, 2**63 - 1),
        width=_check_int("width", width, *SIZE_RANGE),
        height=_check_int("height", height, *SIZE_RANGE),
        gsd=_check_float("gsd", gsd, *GSD_RANGE),
        crs=_check_crs(crs),
        origin=_check_origin(default_origin(crs) if origin is None else origin),
        scene=_check_scene(scene),
        density=_check_float("density", density, *DENSITY_RANGE),
    )


# ---------------------------------------------------------------- building


def snap_to_osm(features: list[Feature], georef: Georef, px_per_m: float, frame: Polygon) -> None:
    """Moves every vertex to the nearest position an OSM file can hold, in place.

    OSM keeps 1e-7 degree (about a centimetre); snapping before painting makes the truth, the
    picture and what the pipeline reads back from the OSM file the same polygons. Lines and
    nodes are drawn again from their snapped geometry.
    """
    shapes = np.array(
        [
            Point(f.point) if f.kind == "node" else f.line if f.kind == "line" else f.footprint
            for f in features
        ],
        dtype=object,
    )
    lonlat = georef.pixel_to_lonlat(shapely.get_coordinates(shapes))  # [N, 2]
    grid = np.round(lonlat / OSM_DEGREE_STEP) * OSM_DEGREE_STEP
    snapped = shapely.set_coordinates(shapes.copy(), georef.lonlat_to_pixel(grid))
    for feature, shape in zip(features, snapped, strict=True):
        if feature.kind == "area":
            feature.footprint = shape
            continue
        if feature.kind == "node":
            feature.point = (shape.x, shape.y)
        else:
            feature.line = shape
        drawn = drawn_footprint(feature.kind, shape, feature.tags, px_per_m)
        feature.footprint = drawn.intersection(frame) if feature.kind == "line" else drawn


def build_world(
    seed: int,
    width: int = 1024,
    height: int = 1024,
    gsd: float = 0.5,
    crs: str = DEFAULT_CRS,
    origin: tuple[float, float] | None = None,
    scene: str = "mixed",
    density: float = 1.0,
) -> World:
    """Lays out and paints one world in memory (nothing is written).

    Args:
        seed: Non-negative integer; the same arguments and seed give the same world.
        width: Image width in pixels.
        height: Image height in pixels.
        gsd: Ground sample distance in metres per pixel.
        crs: A projected CRS in metres (default: UTM zone 33N).
        origin: Top-left corner ``(x, y)`` in CRS metres (default: the middle of the CRS's
            area of use).
        scene: One of ``suburban``, ``industrial``, ``harbour``, ``airport``, ``mixed``.
        density: Multiplier of object counts (1 is typical; 0 leaves land use, roads, water).

    Returns:
        The world.

    Raises:
        SyntheticWorldError: on any invalid argument.
    """
    args = check_world_arguments(seed, width, height, gsd, crs, origin, scene, density)
    # The scene keys the streams, so one seed gives unrelated scenes of different kinds.
    streams = np.random.SeedSequence(args.seed, spawn_key=(SCENES.index(args.scene),))
    layout_seed, paint_seed = streams.spawn(2)
    features = layout_scene(
        np.random.default_rng(layout_seed),
        args.width,
        args.height,
        args.gsd,
        args.scene,
        args.density,
    )
    x, y = args.origin
    transform = Affine(args.gsd, 0.0, x, 0.0, -args.gsd, y)
    frame = shapely.box(0, 0, args.width, args.height)
    snap_to_osm(features, Georef(args.crs, tuple(transform)[:6]), 1.0 / args.gsd, frame)
    paint_rng = np.random.default_rng(paint_seed)
    light = Light(float(paint_rng.uniform(0.0, 360.0)), float(paint_rng.uniform(30.0, 65.0)))
    image = paint_scene(features, args.height, args.width, 1.0 / args.gsd, light, paint_rng)
    return World(
        image, features, args.crs, transform, args.gsd, args.scene, args.seed, light, args.density
    )


# ---------------------------------------------------------------- writing


def write_tif(world: World, path: Path) -> None:
    """Writes the image as an RGB GeoTIFF with the world's CRS and transform."""
    profile = {
        "driver": "GTiff",
        "width": world.width,
        "height": world.height,
        "count": 3,
        "dtype": "uint8",
        "crs": world.crs,
        "transform": world.transform,
        "photometric": "RGB",
        "compress": "deflate",
        "predictor": 2,
    }
    with atomic_path(path) as temporary, rasterio.open(temporary, "w", **profile) as dataset:
        dataset.write(np.moveaxis(world.image, -1, 0))  # [3, H, W]
        dataset.update_tags(generator=GENERATOR, scene=world.scene, seed=str(world.seed))


@dataclass
class OsmData:
    """OSM objects of a world before writing: nodes in pixels, ways and relations by id.

    Ids count from 1 per type, in the order objects were added.

    Attributes:
        node_xy: Pixel coordinates of each node.
        node_tags: Tags of each node.
        ways: ``(node ids, tags)`` of each way.
        relations: ``(members as (type, id, role), tags)`` of each relation.
        feature_ids: The OSM id (``"way/12"``) of each world feature, in order.
    """

    node_xy: list[tuple[float, float]] = field(default_factory=list)
    node_tags: list[dict[str, str]] = field(default_factory=list)
    ways: list[tuple[list[int], dict[str, str]]] = field(default_factory=list)
    relations: list[tuple[list[tuple[str, int, str]], dict[str, str]]] = field(default_factory=list)
    feature_ids: list[str] = field(default_factory=list)
    _junctions: dict[tuple[float, float], int] = field(default_factory=dict)

    def node(self, x: float, y: float, tags: Mapping[str, str] | None = None) -> int:
        """Adds a node and returns its id."""
        self.node_xy.append((float(x), float(y)))
        self.node_tags.append(dict(tags or {}))
        return len(self.node_xy)

    def shared_node(self, x: float, y: float) -> int:
        """The untagged node at exactly ``(x, y)``, made once (road junctions)."""
        key = (float(x), float(y))
        if key not in self._junctions:
            self._junctions[key] = self.node(*key)
        return self._junctions[key]

    def way(self, coords: np.ndarray, tags: Mapping[str, str], shared: bool = False) -> int:
        """Adds a way through ``coords`` ``[N, 2]``; a closed ring reuses its first node."""
        coords = np.asarray(coords)[:, :2]
        closed = len(coords) > 3 and np.array_equal(coords[0], coords[-1])
        points = coords[:-1] if closed else coords
        make = self.shared_node if shared else self.node
        ids = [make(x, y) for x, y in points]
        if closed:
            ids.append(ids[0])
        self.ways.append((ids, dict(tags)))
        return len(self.ways)

    def add(self, feature: Feature) -> str:
        """Adds a world feature as a node, a way or a multipolygon relation; returns its id."""
        if feature.kind == "node":
            osm_id = f"node/{self.node(*feature.point, feature.tags)}"
        elif feature.kind == "line":
            osm_id = f"way/{self.way(np.asarray(feature.line.coords), feature.tags, shared=True)}"
        elif isinstance(feature.footprint, Polygon) and not feature.footprint.interiors:
            osm_id = f"way/{self.way(np.asarray(feature.footprint.exterior.coords), feature.tags)}"
        else:
            osm_id = f"relation/{self.multipolygon(feature.footprint, feature.tags)}"
        self.feature_ids.append(osm_id)
        return osm_id

    def multipolygon(self, geometry: BaseGeometry, tags: Mapping[str, str]) -> int:
        """Adds a ``type=multipolygon`` relation of untagged ring ways; returns its id."""
        members = []
        for polygon in shapely.get_parts(geometry):
            members.append(("w", self.way(np.asarray(polygon.exterior.coords), {}), "outer"))
            for hole in polygon.interiors:
                members.append(("w", self.way(np.asarray(hole.coords), {}), "inner"))
        self.relations.append((members, {"type": "multipolygon", **tags}))
        return len(self.relations)


def osm_data(world: World) -> OsmData:
    """Turns the world's features into OSM nodes, ways and relations."""
    data = OsmData()
    for feature in world.features:
        data.add(feature)
    return data


def _georef(world: World) -> Georef:
    return Georef(world.crs, tuple(world.transform)[:6])


def write_osm(world: World, data: OsmData, path: Path, file_format: str) -> None:
    """Writes OSM data with osmium in ``file_format`` (``"osm"`` or ``"pbf"``)."""
    georef = _georef(world)
    lonlat = georef.pixel_to_lonlat(np.asarray(data.node_xy).reshape(-1, 2))  # [N, 2]
    corners = georef.pixel_to_lonlat(
        [[0, 0], [world.width, 0], [world.width, world.height], [0, world.height]]
    )
    header = osmium.io.Header()
    header.set("generator", GENERATOR)
    header.add_box(
        osmium.osm.Box(
            osmium.osm.Location(*corners.min(axis=0)), osmium.osm.Location(*corners.max(axis=0))
        )
    )
    meta = {"version": 1, "changeset": 1, "uid": 1, "user": OSM_USER, "timestamp": OSM_TIMESTAMP}
    with atomic_path(path) as temporary:
        writer = osmium.SimpleWriter(
            osmium.io.File(str(temporary), file_format), header=header, overwrite=True
        )
        try:
            for index, ((lon, lat), tags) in enumerate(
                zip(lonlat, data.node_tags, strict=True), start=1
            ):
                writer.add_node(
                    mutable.Node(id=index, location=(float(lon), float(lat)), tags=tags, **meta)
                )
            for index, (nodes, tags) in enumerate(data.ways, start=1):
                writer.add_way(mutable.Way(id=index, nodes=nodes, tags=tags, **meta))
            for index, (members, tags) in enumerate(data.relations, start=1):
                writer.add_relation(mutable.Relation(id=index, members=members, tags=tags, **meta))
        finally:
            writer.close()


def truth_categories() -> dict[str, dict[str, Any]]:
    """Each category of the tag table, in table order: its plural, countable, segmented."""
    words = load_vocabulary()
    segmented = {*LAND_COVER, *SEGMENTED_OBJECTS}
    return {
        category: {
            "plural": words.plurals[category],
            "countable": category not in LAND_COVER and category not in words.lines,
            "segmented": category in segmented,
        }
        for category in words.categories
    }


def truth_collection(world: World, feature_ids: list[str]) -> dict[str, Any]:
    """The world's truth as a GeoJSON FeatureCollection in the raster CRS (see module docs)."""
    a, b, c, d, e, f = tuple(world.transform)[:6]
    to_crs = [a, b, d, e, c, f]  # shapely's affine order
    features = []
    for feature, osm_id in zip(world.features, feature_ids, strict=True):
        support = None if feature.support is None else feature_ids[feature.support]
        rule = tag_table().rule_for(feature.tags)
        features.append(
            {
                "type": "Feature",
                "id": osm_id,
                "geometry": mapping(affinity.affine_transform(feature.footprint, to_crs)),
                "properties": {
                    "osm_id": osm_id,
                    "tags": feature.tags,
                    "kind": feature.kind,
                    "layer": feature.layer,
                    "support": support,
                    "category": None if rule is None else rule.category,
                    "min_pixels": None if rule is None else rule.min_pixels,
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": world.crs}},
        "world": {
            "generator": GENERATOR,
            "crs": world.crs,
            "transform": [a, b, c, d, e, f],
            "width": world.width,
            "height": world.height,
            "gsd": world.gsd,
            "scene": world.scene,
            "seed": world.seed,
            "density": world.density,
            "sun_azimuth_deg": world.light.azimuth_deg,
            "sun_elevation_deg": world.light.elevation_deg,
        },
        "categories": truth_categories(),
        "features": features,
    }


def write_world(world: World, out_dir: str | Path) -> WorldFiles:
    """Writes a world's four files into ``out_dir`` (created if needed), each atomically."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    files = WorldFiles(
        directory,
        directory / "world.tif",
        directory / "world.osm",
        directory / "world.osm.pbf",
        directory / "truth.geojson",
    )
    write_tif(world, files.tif)
    data = osm_data(world)
    write_osm(world, data, files.osm, "osm")
    write_osm(world, data, files.pbf, "pbf")
    with atomic_path(files.truth) as temporary:
        temporary.write_text(json.dumps(truth_collection(world, data.feature_ids)))
    return files


def generate_world(
    out_dir: str | Path,
    seed: int,
    width: int = 1024,
    height: int = 1024,
    gsd: float = 0.5,
    crs: str = DEFAULT_CRS,
    origin: tuple[float, float] | None = None,
    scene: str = "mixed",
    density: float = 1.0,
    size_px: int | None = None,
) -> WorldFiles:
    """Generates one world and writes its files (see the module docs).

    Args:
        out_dir: Folder of the world's files.
        seed: Non-negative integer.
        width: Image width in pixels.
        height: Image height in pixels.
        gsd: Metres per pixel.
        crs: A projected CRS in metres.
        origin: Top-left corner in CRS metres (default: the middle of the CRS's area of use).
        scene: One of ``suburban``, ``industrial``, ``harbour``, ``airport``, ``mixed``.
        density: Multiplier of object counts.
        size_px: Shorthand for a square world: sets both width and height.

    Returns:
        The written paths.

    Raises:
        SyntheticWorldError: on any invalid argument.
    """
    if size_px is not None:
        width = height = size_px
    world = build_world(seed, width, height, gsd, crs, origin, scene, density)
    return write_world(world, out_dir)


def world_origins(
    n: int, width: int, height: int, gsd: float, origin: tuple[float, float]
) -> list[tuple[float, float]]:
    """Top-left corners of ``n`` worlds on a grid from ``origin``, one world's gap apart.

    The gap keeps every world's area apart from the others, so splitting by area never cuts
    a world.
    """
    columns = max(math.ceil(math.sqrt(n)), 1)
    step_x, step_y = 2 * width * gsd, 2 * height * gsd
    return [
        (origin[0] + (index % columns) * step_x, origin[1] - (index // columns) * step_y)
        for index in range(n)
    ]


def parse_gsd(text: str) -> float | tuple[float, float]:
    """Reads ``--gsd``: one value (``0.5``) or a range ``LOW:HIGH`` (``0.2:0.6``)."""
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError(f"expected a number or LOW:HIGH, got {text!r}")
    values = tuple(float(part) for part in parts)
    return values[0] if len(values) == 1 else (values[0], values[1])


def gsd_range(gsd: Any) -> tuple[float, float]:
    """Checks a GSD or a ``(low, high)`` range of GSDs; returns the range (low == high for one).

    Raises:
        SyntheticWorldError: for a value outside ``GSD_RANGE`` or a range with low > high.
    """
    values = gsd if isinstance(gsd, tuple | list) else (gsd, gsd)
    if len(values) != 2:
        raise SyntheticWorldError(f"gsd must be a number or (low, high), got {gsd!r}")
    low, high = (_check_float("gsd", value, *GSD_RANGE) for value in values)
    if low > high:
        raise SyntheticWorldError(f"gsd range must have low <= high, got {gsd!r}")
    return low, high


def world_gsd(world_seed: int, low: float, high: float) -> float:
    """A world's GSD drawn uniformly from ``[low, high]`` by its own seed (mm precision)."""
    if low == high:
        return low
    # A stream of its own, so the GSD does not shift the world's layout or paint streams.
    rng = np.random.default_rng(np.random.SeedSequence(world_seed, spawn_key=(GSD_STREAM,)))
    return round(float(rng.uniform(low, high)), 3)


def _generate_one(job: dict[str, Any]) -> WorldFiles:
    return generate_world(**job)


def generate_worlds(
    out_dir: Annotated[str | Path, Flag("--out", type=Path)],
    n: int = 1,
    seed: int = 0,
    width: int = 1024,
    height: int = 1024,
    gsd: Annotated[float | tuple[float, float], Flag(type=parse_gsd)] = 0.5,
    crs: str = DEFAULT_CRS,
    origin: tuple[float, float] | None = None,
    scene: Annotated[str | None, Flag(choices=SCENES)] = None,
    density: float = 1.0,
    workers: int = 1,
    progress: bool = False,
) -> list[WorldFiles]:
    """Generates ``n`` worlds in ``out_dir/world_0000``, ... at distinct, separate origins.

    Also writes ``out_dir/worlds.json``: each world's folder, seed, GSD, scene and origin.

    Args:
        out_dir: Parent folder of the worlds.
        n: Number of worlds (at least 1).
        seed: Seed of the whole set; each world gets its own seed from it.
        width: Image width in pixels.
        height: Image height in pixels.
        gsd: Metres per pixel, or a range ``(low, high)`` (``LOW:HIGH`` on the command line)
            from which each world draws its own uniformly, by its own seed.
        crs: A projected CRS in metres.
        origin: Top-left corner of the first world (default: the middle of the CRS's area).
        scene: The scene of every world, or None for a mix of all kinds.
        density: Multiplier of object counts.
        workers: Processes to use.
        progress: Show a progress bar.

    Returns:
        The written paths, in world order.

    Raises:
        SyntheticWorldError: on any invalid argument.
    """
    n = _check_int("n", n, 1, 10_000_000)
    workers = _check_int("workers", workers, 1, 1024)
    low, high = gsd_range(gsd)
    # Every world's arguments but its seed, scene, GSD and origin, checked before any work.
    scene_checked = scene or SCENES[0]
    args = check_world_arguments(seed, width, height, high, crs, origin, scene_checked, density)
    start = args.origin
    sequence = np.random.SeedSequence(seed)
    scene_rng = np.random.default_rng(sequence.spawn(1)[0])
    scenes = [
        scene or str(scene_rng.choice(list(SCENE_MIX), p=list(SCENE_MIX.values())))
        for _ in range(n)
    ]
    seeds = [int(child.generate_state(1, np.uint64)[0] >> 1) for child in sequence.spawn(n)]
    directory = Path(out_dir)
    jobs = [
        {
            "out_dir": directory / f"world_{index:04d}",
            "seed": world_seed,
            "width": width,
            "height": height,
            "gsd": world_gsd(world_seed, low, high),
            "crs": crs,
            "origin": corner,
            "scene": world_scene,
            "density": density,
        }
        for index, (world_seed, corner, world_scene) in enumerate(
            zip(
                seeds,
                # Spaced for the coarsest GSD, so that no two worlds overlap.
                world_origins(n, args.width, args.height, high, start),
                scenes,
                strict=True,
            )
        )
    ]
    bar = tqdm(total=n, desc="synthetic worlds", unit="world", disable=not progress)
    with bar:
        if workers == 1:
            files = []
            for job in jobs:
                files.append(_generate_one(job))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                files = []
                for written in pool.map(_generate_one, jobs, chunksize=4):
                    files.append(written)
                    bar.update()
    manifest = [
        {key: str(value) if isinstance(value, Path) else value for key, value in job.items()}
        for job in jobs
    ]
    with atomic_path(directory / "worlds.json") as temporary:
        temporary.write_text(json.dumps({"generator": GENERATOR, "worlds": manifest}, indent=1))
    return files


# ---------------------------------------------------------------- command line


def add_synthetic_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of ``geochat build synthetic``: :func:`generate_worlds`'s and --size."""
    cliargs.add_arguments(parser, generate_worlds, skip=("width", "height", "origin", "progress"))
    parser.add_argument(
        "--size", type=int, default=1024, help="image side in pixels (default: 1024)"
    )


def synthetic_main(args: argparse.Namespace) -> int:
    """Runs ``geochat build synthetic`` from parsed :func:`add_synthetic_arguments` options."""
    options = cliargs.from_arguments(
        generate_worlds, args, width=args.size, height=args.size, progress=True
    )
    files = generate_worlds(**options)
    out = Path(options["out_dir"])
    print(f"wrote {len(files)} synthetic world(s) to {out} (list: {out / 'worlds.json'})")
    return 0
