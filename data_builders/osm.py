"""Reading OpenStreetMap features that the tag table calls visible, within a lon/lat box.

Inputs: ``.osm.pbf`` and ``.osm`` (XML) through pyosmium's ``FileProcessor`` (node locations
cached, closed ways and multipolygon relations assembled into areas), or GeoJSON through
``json`` + shapely (RFC 7946 lon/lat; a legacy ``crs`` member is honoured). Only features
whose tags match the table and whose envelope meets the box are kept, so memory follows the
imagery's area, not the file's.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import osmium
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.tags import Rule, TagTable

LonLatBox = tuple[float, float, float, float]
OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz")
GEOJSON_SUFFIXES = (".geojson", ".json")
_GEOJSON_KINDS = {
    "Point": "node",
    "LineString": "line",
    "MultiLineString": "line",
    "Polygon": "area",
    "MultiPolygon": "area",
}


class OsmError(ValueError):
    """An OSM or GeoJSON file that cannot be read."""


@dataclass(frozen=True)
class OsmFeature:
    """One visible feature.

    Attributes:
        id: ``"node/1"``, ``"way/12"``, ``"relation/5"`` (GeoJSON: its id or ``"feature/N"``).
        kind: How its footprint is drawn: ``"area"``, ``"line"`` or ``"node"``.
        tags: Its OSM tags.
        geometry: lon/lat geometry (x = longitude).
        rule: The tag-table rule it matched.
    """

    id: str
    kind: str
    tags: dict[str, str]
    geometry: BaseGeometry
    rule: Rule


@dataclass
class OsmRead:
    """What reading a file gave: the kept features and why the others were left out.

    Attributes:
        features: Kept features, in file order.
        skipped: Reason -> count for matching features that could not be used
            (``unusable_geometry``: missing nodes or too few points; ``node_without_footprint``:
            a node whose category has no node footprint; ``open_way_for_area``: an open way
            whose category is an area).
        bounds: lon/lat box of the file's data from its header, if it has one.
    """

    features: list[OsmFeature] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    bounds: LonLatBox | None = None


def read_features(path: str | Path, table: TagTable, box: LonLatBox | None = None) -> OsmRead:
    """Reads the features of an OSM or GeoJSON file that the tag table keeps.

    Args:
        path: ``.osm.pbf``, ``.osm`` or ``.geojson`` file.
        table: The tag table.
        box: ``(west, south, east, north)`` in degrees; features whose envelope misses it are
            skipped while reading. None keeps everything.

    Raises:
        OsmError: for a missing, unknown or broken file.
    """
    path = Path(path)
    if not path.is_file():
        raise OsmError(f"OSM file not found: {path}")
    name = path.name.lower()
    if name.endswith(GEOJSON_SUFFIXES):
        return _read_geojson(path, table, box)
    if name.endswith(OSM_SUFFIXES):
        return _read_osmium(path, table, box)
    raise OsmError(
        f"{path}: unknown OSM format; expected one of {', '.join(OSM_SUFFIXES + GEOJSON_SUFFIXES)}"
    )


def _read_osmium(path: Path, table: TagTable, box: LonLatBox | None) -> OsmRead:
    result = OsmRead(bounds=_header_bounds(path))
    keys = osmium.filter.KeyFilter(*table.keys)
    # Areas filter the relations of the first pass too, so only wanted multipolygons assemble.
    processor = (
        osmium.FileProcessor(str(path))
        .with_locations()
        .with_areas(osmium.filter.KeyFilter(*table.keys))
        .with_filter(keys)
    )
    factory = osmium.geom.WKBFactory()
    envelope = shapely.box(*box) if box is not None else None
    try:
        for entity in processor:
            _keep(entity, table, factory, envelope, result)
    except RuntimeError as error:
        raise OsmError(f"cannot read OSM file {path}: {error}") from error
    return result


def _keep(
    entity: Any,
    table: TagTable,
    factory: osmium.geom.WKBFactory,
    envelope: BaseGeometry | None,
    result: OsmRead,
) -> None:
    """Adds one osmium entity to ``result`` if the table keeps it and it meets the box."""
    tags = {tag.k: tag.v for tag in entity.tags}
    rule = table.rule_for(tags)
    if rule is None:
        return
    kind = _osmium_kind(entity, rule, result.skipped)
    if kind is None:
        return
    try:
        geometry = shapely.from_wkb(_wkb(entity, kind, factory))
    except (RuntimeError, osmium.InvalidLocationError, shapely.errors.GEOSException):
        result.skipped["unusable_geometry"] += 1
        return
    if envelope is not None and not envelope.intersects(shapely.envelope(geometry)):
        return
    result.features.append(OsmFeature(_osmium_id(entity), kind, tags, _valid(geometry), rule))


def _osmium_kind(entity: Any, rule: Rule, skipped: Counter[str]) -> str | None:
    """Decides how an entity is drawn, or None when another entity covers it or none can."""
    if entity.is_node():
        if "node" in rule.kinds:
            return "node"
        skipped["node_without_footprint"] += 1
        return None
    if entity.is_area():
        return "area" if "area" in rule.kinds else None
    if entity.is_way():
        # A closed way also arrives as an area; a rule that takes areas draws that one.
        if entity.is_closed() and "area" in rule.kinds:
            return None
        if "line" in rule.kinds:
            return "line"
        skipped["open_way_for_area"] += 1
    return None


def _wkb(entity: Any, kind: str, factory: osmium.geom.WKBFactory) -> str:
    if kind == "node":
        return factory.create_point(entity)
    if kind == "line":
        return factory.create_linestring(entity)
    return factory.create_multipolygon(entity)


def _osmium_id(entity: Any) -> str:
    if entity.is_area():
        return f"{'way' if entity.from_way() else 'relation'}/{entity.orig_id()}"
    return f"{'node' if entity.is_node() else 'way'}/{entity.id}"


def _header_bounds(path: Path) -> LonLatBox | None:
    try:
        with osmium.io.Reader(str(path), osmium.osm.NOTHING) as reader:
            header_box = reader.header().box()
    except RuntimeError as error:
        raise OsmError(f"cannot read OSM file {path}: {error}") from error
    if not header_box.valid():
        return None
    low, high = header_box.bottom_left, header_box.top_right
    return (low.lon, low.lat, high.lon, high.lat)


def _read_geojson(path: Path, table: TagTable, box: LonLatBox | None) -> OsmRead:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OsmError(f"cannot read GeoJSON file {path}: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("features"), list):
        raise OsmError(f"{path}: not a GeoJSON FeatureCollection")
    to_lonlat = _geojson_transformer(path, document)
    envelope = shapely.box(*box) if box is not None else None
    result = OsmRead()
    for index, item in enumerate(_geojson_items(path, document["features"])):
        _keep_geojson(index, item, table, to_lonlat, envelope, result)
    return result


def _geojson_items(path: Path, items: list[Any]) -> Iterator[Mapping[str, Any]]:
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("geometry"), dict | None):
            raise OsmError(f"{path}: features[{index}] is not a GeoJSON Feature")
        yield item


def _keep_geojson(
    index: int,
    item: Mapping[str, Any],
    table: TagTable,
    to_lonlat: Transformer | None,
    envelope: BaseGeometry | None,
    result: OsmRead,
) -> None:
    properties = item.get("properties") or {}
    tags = {str(k): str(v) for k, v in properties.items() if isinstance(v, str | int | float)}
    rule = table.rule_for(tags)
    if rule is None:
        return
    geometry_json = item.get("geometry")
    kind = _GEOJSON_KINDS.get(geometry_json["type"]) if geometry_json else None
    if kind is None or kind not in rule.kinds:
        result.skipped["unusable_geometry"] += 1
        return
    try:
        geometry = shape(geometry_json)
    except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException):
        result.skipped["unusable_geometry"] += 1
        return
    if to_lonlat is not None:
        geometry = reproject(geometry, to_lonlat)
    if geometry.is_empty or (envelope is not None and not envelope.intersects(geometry.envelope)):
        return
    feature_id = str(item.get("id") or tags.get("@id") or tags.get("id") or f"feature/{index}")
    result.features.append(OsmFeature(feature_id, kind, tags, _valid(geometry), rule))


def _geojson_transformer(path: Path, document: Mapping[str, Any]) -> Transformer | None:
    """Returns a transformer to lon/lat for a legacy ``crs`` member, None for plain RFC 7946."""
    name = ((document.get("crs") or {}).get("properties") or {}).get("name")
    if name is None:
        return None
    try:
        crs = CRS.from_user_input(name)
    except CRSError as error:
        raise OsmError(f"{path}: unknown 'crs' {name!r}: {error}") from error
    if crs.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        return None
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def reproject(geometry: BaseGeometry, transformer: Transformer) -> BaseGeometry:
    """Transforms a shapely geometry with a pyproj transformer (``always_xy`` order)."""

    def apply(coordinates: np.ndarray) -> np.ndarray:
        # coordinates: [N, 2] x, y in the source CRS.
        x, y = transformer.transform(coordinates[:, 0], coordinates[:, 1])
        return np.stack([np.asarray(x), np.asarray(y)], axis=1)

    return shapely.transform(geometry, apply)


def _valid(geometry: BaseGeometry) -> BaseGeometry:
    return geometry if geometry.is_valid else shapely.make_valid(geometry)
