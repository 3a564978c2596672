"""A tiny mapped scene for the OSM pipeline's tests: a GeoTIFF and the OSM data that maps it.

Geometry is written in metres of the raster's CRS (UTM 33N) and converted to WGS84 lon/lat
for the OSM nodes, as OSM requires. ``make_scene`` returns the paths and the metric truth of
each feature, so tests can compare what the pipeline recovers with what was written.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import osmium
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

CRS = "EPSG:32633"
ORIGIN = (500_000.0, 5_000_128.0)  # top-left corner, metres
GSD = 0.5
SIZE = 256  # pixels: the raster covers 128 m x 128 m
TILE = 128  # with overlap 0: four tiles of 64 m


@dataclass
class OsmWriter:
    """Collects nodes, ways and relations given in metres, then writes them with osmium."""

    crs: str = CRS
    nodes: list[tuple[int, float, float, dict[str, str]]] = field(default_factory=list)
    ways: list[tuple[int, list[int], dict[str, str]]] = field(default_factory=list)
    relations: list[tuple[int, list[tuple[str, int, str]], dict[str, str]]] = field(
        default_factory=list
    )
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._to_lonlat = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)

    def node(self, x: float, y: float, tags: dict[str, str] | None = None) -> int:
        lon, lat = self._to_lonlat.transform(x, y)
        node_id = next(self._ids)
        self.nodes.append((node_id, lon, lat, tags or {}))
        return node_id

    def way(self, points: list[tuple[float, float]], tags: dict[str, str], closed: bool) -> int:
        node_ids = [self.node(x, y) for x, y in points]
        way_id = next(self._ids)
        self.ways.append((way_id, node_ids + node_ids[:1] if closed else node_ids, tags))
        return way_id

    def multipolygon(
        self,
        outer: list[tuple[float, float]],
        inners: list[list[tuple[float, float]]],
        tags: dict[str, str],
    ) -> int:
        members = [("w", self.way(outer, {}, closed=True), "outer")]
        members += [("w", self.way(inner, {}, closed=True), "inner") for inner in inners]
        relation_id = next(self._ids)
        self.relations.append((relation_id, members, {"type": "multipolygon", **tags}))
        return relation_id

    def write(self, path: Path) -> Path:
        path.unlink(missing_ok=True)
        with osmium.SimpleWriter(str(path)) as writer:
            for node_id, lon, lat, tags in self.nodes:
                writer.add_node(
                    osmium.osm.mutable.Node(id=node_id, location=(lon, lat), tags=tags, version=1)
                )
            for way_id, node_ids, tags in self.ways:
                writer.add_way(
                    osmium.osm.mutable.Way(id=way_id, nodes=node_ids, tags=tags, version=1)
                )
            for relation_id, members, tags in self.relations:
                writer.add_relation(
                    osmium.osm.mutable.Relation(
                        id=relation_id, members=members, tags=tags, version=1
                    )
                )
        return path


@dataclass
class Scene:
    """Paths of a written scene and the metric truth of its features (by OSM id)."""

    raster: Path
    osm_pbf: Path
    osm_xml: Path
    truth: dict[str, BaseGeometry]
    ids: dict[str, str]


def metres(px: float, py: float) -> tuple[float, float]:
    """Raster pixel coordinates -> metres of the scene's CRS."""
    return ORIGIN[0] + px * GSD, ORIGIN[1] - py * GSD


def write_raster(
    path: Path,
    black: tuple[int, int, int, int] | None = None,
    crs: str | None = CRS,
    size: int = SIZE,
    origin: tuple[float, float] = ORIGIN,
    gsd: float = GSD,
    dtype: str = "uint8",
) -> Path:
    """Writes a textured RGB GeoTIFF; ``black`` = ``(col0, row0, col1, row1)`` is painted 0."""
    rng = np.random.default_rng(0)
    high = 255 if dtype == "uint8" else 4000
    data = rng.integers(20, high, (3, size, size)).astype(dtype)
    if black is not None:
        col0, row0, col1, row1 = black
        data[:, row0:row1, col0:col1] = 0
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": dtype,
        "transform": from_origin(*origin, gsd, gsd),
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
    return path


def _rectangle(
    cx: float, cy: float, length: float, width: float, angle_deg: float
) -> list[tuple[float, float]]:
    """Corners (metres) of a rotated rectangle; angle counter-clockwise in map coordinates."""
    rectangle = shapely.affinity.rotate(
        shapely.box(-length / 2, -width / 2, length / 2, width / 2), angle_deg
    )
    return [(cx + x, cy + y) for x, y in list(rectangle.exterior.coords)[:4]]


def make_scene(folder: Path, black: tuple[int, int, int, int] | None = None) -> Scene:
    """Writes the scene: raster, OSM (PBF and XML). Features, in raster pixels (0.5 m):

    - ``house``: a 20 m x 10 m building rotated 30 degrees at pixel (60, 60), fully in tile 0.
    - ``hall``: a building crossing the vertical tile edge at x = 128 px (cut in two tiles).
    - ``lake``: a multipolygon (40 m square with a 10 m island) at pixel (190, 190).
    - ``road``: an open residential way across the raster at row 100 (7 m strip).
    - ``tree``: a tree node at pixel (200, 40) (4 m crown).
    - ``shed``: a 1 m x 1 m building (4 pixels: too small).
    - ``path``: a footway at row 230 (visible at 0.5 m, not at 1 m).
    - ``far``: a building 5 km away (outside the raster; never read).
    - ``pole``: an untagged-for-us node and a building mapped as a node (no footprint).
    """
    writer = OsmWriter()
    truth: dict[str, BaseGeometry] = {}
    ids: dict[str, str] = {}

    def area(name: str, corners: list[tuple[float, float]], tags: dict[str, str]) -> None:
        ids[name] = f"way/{writer.way(corners, tags, closed=True)}"
        truth[name] = Polygon(corners)

    area(
        "house",
        _rectangle(*metres(60, 60), 20, 10, 30),
        {"building": "house", "roof:colour": "red"},
    )
    area("hall", _rectangle(*metres(128, 40), 30, 12, 0), {"building": "industrial"})
    area("shed", _rectangle(*metres(100, 200), 1, 1, 0), {"building": "yes"})
    area("far", _rectangle(ORIGIN[0] + 5000, ORIGIN[1], 20, 20, 0), {"building": "yes"})
    outer = _rectangle(*metres(190, 190), 40, 40, 0)
    island = _rectangle(*metres(190, 190), 10, 10, 0)
    ids["lake"] = (
        f"relation/{writer.multipolygon(outer, [island], {'natural': 'water', 'water': 'lake'})}"
    )
    truth["lake"] = Polygon(outer, [island])
    road = [metres(-10, 100), metres(120, 104), metres(270, 100)]
    ids["road"] = f"way/{writer.way(road, {'highway': 'residential'}, closed=False)}"
    truth["road"] = LineString(road).buffer(3.5, quad_segs=8)
    footway = [metres(20, 230), metres(236, 230)]
    ids["path"] = f"way/{writer.way(footway, {'highway': 'footway'}, closed=False)}"
    truth["path"] = LineString(footway).buffer(1.0, quad_segs=8)
    ids["tree"] = f"node/{writer.node(*metres(200, 40), {'natural': 'tree'})}"
    truth["tree"] = Point(metres(200, 40)).buffer(2.0, quad_segs=8)
    writer.node(*metres(30, 150), {"power": "pole"})
    writer.node(*metres(40, 150), {"building": "yes"})

    raster = write_raster(folder / "scene.tif", black=black)
    pbf = writer.write(folder / "scene.osm.pbf")
    xml = writer.write(folder / "scene.osm")
    return Scene(raster, pbf, xml, truth, ids)


def write_geojson(
    path: Path, features: list[tuple[BaseGeometry, dict[str, Any]]], crs: str | None = None
) -> Path:
    """Writes a FeatureCollection (lon/lat unless ``crs`` names a legacy ``crs`` member)."""
    document: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": shapely.geometry.mapping(geometry),
                "properties": properties,
            }
            for geometry, properties in features
        ],
    }
    if crs is not None:
        document["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(document))
    return path


def tile_record(tile: Any, rng: np.random.Generator, options: Any) -> list[dict[str, Any]]:
    """Stand-in task generator: one "ground" record per tile carrying all its objects."""
    return [
        {
            "id": f"{tile.source['tile']}-ground",
            "image": tile.image,
            "width": tile.width,
            "height": tile.height,
            "task": "ground",
            "conversations": [
                {"from": "human", "value": "<image>\nFind every object."},
                {
                    "from": "gpt",
                    "value": f"{len(tile.objects)} objects, draw {int(rng.integers(1000))}",
                },
            ],
            "objects": [obj.to_record_object() for obj in tile.objects],
            "gsd": tile.gsd,
            "georef": tile.georef,
            "source": tile.source,
        }
    ]
