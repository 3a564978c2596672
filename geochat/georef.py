"""Georeferencing: pixel <-> map (CRS) <-> WGS84 lon/lat, ground sample distance, GeoJSON export.

Conventions (those of rasterio and GDAL):

- Pixel coordinates are continuous: ``(col, row)`` = ``(x, y)`` with ``(0, 0)`` the top-left
  corner of the top-left pixel, so the centre of that pixel is ``(0.5, 0.5)``. They are the
  pixel coordinates used everywhere in geochat (see :mod:`geochat.geometry`).
- The affine transform is ``(a, b, c, d, e, f)`` in rasterio's ``Affine`` order:
  ``x = a * col + b * row + c`` and ``y = d * col + e * row + f``, in the units of the CRS.
- Geographic coordinates are WGS84 (EPSG:4326) longitude, latitude, always in that order
  (pyproj ``always_xy=True``), as GeoJSON wants them.

GeoJSON comes in two variants. :func:`to_geojson` writes RFC 7946 GeoJSON of a georeferenced
image: WGS84 lon/lat, exterior rings counter-clockwise, holes clockwise. :func:`to_pixel_geojson`
writes the same structure in pixel coordinates for images without a georeference; that is
*not* RFC 7946 (GeoJSON coordinates are geographic by definition) and is marked so.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import rasterio
import shapely
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio import features
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import Affine
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from geochat.geometry import RLE, hbb_to_quad, quad_to_polygon, rle_to_mask

WGS84 = "EPSG:4326"
# Ground distances on the WGS84 ellipsoid, where the lon/lat of every georeference ends up.
_WGS84_GEOD = Geod(ellps="WGS84")


class GeorefError(ValueError):
    """An invalid georeference (unknown CRS, singular transform) or an impossible transform."""


class ParsedObject(Protocol):
    """One geometry of a parsed answer, as :mod:`geochat.grammar` returns it (pixel coordinates).

    Read-only members, so that frozen records match.
    """

    @property
    def phrase(self) -> str | None:
        """The phrase the geometry belongs to, or None."""

    @property
    def kind(self) -> str:
        """``"hbb"``, ``"quad"``, ``"mask"`` or ``"none"``."""

    @property
    def hbb(self) -> Any:
        """``[x0, y0, x1, y1]``, or None."""

    @property
    def quad(self) -> Any:
        """``(4, 2)`` corners, or None."""

    @property
    def mask(self) -> RLE | None:
        """A COCO RLE, or None."""


@functools.lru_cache(maxsize=32)
def _to_wgs84(crs: str) -> Transformer:
    return Transformer.from_crs(crs, WGS84, always_xy=True)


@functools.lru_cache(maxsize=32)
def _from_wgs84(crs: str) -> Transformer:
    return Transformer.from_crs(WGS84, crs, always_xy=True)


def _as_points(points: Any) -> np.ndarray:
    """Validates points shaped ``[..., 2]`` and returns them as float64."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise GeorefError(f"points must be numeric, got {points!r}") from error
    if array.ndim == 0 or array.shape[-1] != 2:
        raise GeorefError(f"points must have shape [..., 2], got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise GeorefError(f"points have non-finite values: {array.tolist()}")
    return array


def _apply_affine(transform: Affine, points: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = transform[:6]
    x, y = points[..., 0], points[..., 1]
    return np.stack([a * x + b * y + c, d * x + e * y + f], axis=-1)


def _run_transformer(transformer: Transformer, points: np.ndarray) -> np.ndarray:
    try:
        x, y = transformer.transform(points[..., 0], points[..., 1], errcheck=True)
    except ProjError as error:
        raise GeorefError(f"cannot transform {points.tolist()}: {error}") from error
    return np.stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)], axis=-1)


@dataclass(frozen=True)
class Georef:
    """The georeference of an image: its CRS and the affine transform from pixels to that CRS.

    Attributes:
        crs: Anything pyproj reads as a CRS, usually ``"EPSG:<code>"`` (else WKT).
        transform: ``(a, b, c, d, e, f)`` in rasterio ``Affine`` order (see the module docs).
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]

    def __post_init__(self) -> None:
        try:
            CRS.from_user_input(self.crs)
        except CRSError as error:
            raise GeorefError(f"unknown CRS {self.crs!r}: {error}") from error
        values = tuple(float(v) for v in np.asarray(self.transform, dtype=np.float64).ravel())
        if len(values) != 6 or not all(math.isfinite(v) for v in values):
            raise GeorefError(f"transform must be 6 finite numbers, got {self.transform!r}")
        if Affine(*values).determinant == 0:
            raise GeorefError(f"transform {values} is not invertible")
        # Frozen dataclass: normalise the field in place once, at construction.
        object.__setattr__(self, "transform", values)

    @classmethod
    def from_dict(cls, georef: Mapping[str, Any]) -> Georef:
        """Builds a georeference from a record's ``georef`` dict ``{"crs", "transform"}``."""
        try:
            return cls(crs=str(georef["crs"]), transform=tuple(georef["transform"]))
        except (KeyError, TypeError) as error:
            raise GeorefError(
                f"a georef needs 'crs' and a 6-number 'transform', got {georef!r}"
            ) from error

    def to_dict(self) -> dict[str, Any]:
        """Returns the record form ``{"crs": str, "transform": [a, b, c, d, e, f]}``."""
        return {"crs": self.crs, "transform": list(self.transform)}

    @property
    def affine(self) -> Affine:
        """The transform as a rasterio ``Affine``."""
        return Affine(*self.transform)

    def pixel_to_crs(self, points: Any) -> np.ndarray:
        """Maps pixel ``(x, y)`` points ``[..., 2]`` to CRS coordinates ``[..., 2]``."""
        return _apply_affine(self.affine, _as_points(points))

    def crs_to_pixel(self, points: Any) -> np.ndarray:
        """Maps CRS coordinates ``[..., 2]`` to continuous pixel ``(x, y)`` points ``[..., 2]``."""
        return _apply_affine(~self.affine, _as_points(points))

    def crs_to_lonlat(self, points: Any) -> np.ndarray:
        """Maps CRS coordinates ``[..., 2]`` to WGS84 ``(lon, lat)`` ``[..., 2]``."""
        return _run_transformer(_to_wgs84(self.crs), _as_points(points))

    def lonlat_to_crs(self, points: Any) -> np.ndarray:
        """Maps WGS84 ``(lon, lat)`` ``[..., 2]`` to CRS coordinates ``[..., 2]``."""
        return _run_transformer(_from_wgs84(self.crs), _as_points(points))

    def pixel_to_lonlat(self, points: Any) -> np.ndarray:
        """Maps pixel ``(x, y)`` points ``[..., 2]`` to WGS84 ``(lon, lat)`` ``[..., 2]``."""
        return self.crs_to_lonlat(self.pixel_to_crs(points))

    def lonlat_to_pixel(self, points: Any) -> np.ndarray:
        """Maps WGS84 ``(lon, lat)`` ``[..., 2]`` to continuous pixel ``(x, y)`` ``[..., 2]``."""
        return self.crs_to_pixel(self.lonlat_to_crs(points))

    def gsd_at(self, x: float, y: float) -> float:
        """Returns the ground sample distance in metres per pixel at pixel ``(x, y)``.

        The two sides of the pixel starting at ``(x, y)`` are measured as geodesics on the
        WGS84 ellipsoid, and their geometric mean is returned. This is the true ground size,
        whatever the CRS: degrees of a geographic CRS and the stretched metres of Web Mercator
        come out right; for UTM it differs from the nominal pixel size by the projection's
        scale factor (at most about 0.1 %).
        """
        corners = self.pixel_to_lonlat([[x, y], [x + 1, y], [x, y + 1]])  # [3, 2] lon, lat
        starts = np.repeat(corners[:1], 2, axis=0)
        _, _, lengths = _WGS84_GEOD.inv(starts[:, 0], starts[:, 1], corners[1:, 0], corners[1:, 1])
        return float(np.sqrt(lengths[0] * lengths[1]))

    @property
    def gsd(self) -> float:
        """Metres per pixel at the top-left pixel (see :meth:`gsd_at` for elsewhere)."""
        return self.gsd_at(0.0, 0.0)


def read_georef(path: str | Path) -> Georef | None:
    """Reads the georeference of a raster file with rasterio.

    Returns:
        The file's :class:`Georef`, or None when it has no CRS (a plain PNG or JPEG, a TIFF
        without georeferencing, or one georeferenced by ground control points only).

    Raises:
        FileNotFoundError: if the file does not exist.
        GeorefError: if rasterio cannot read it as a raster.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image: {path}")
    with warnings.catch_warnings():
        # Plain images are expected here; their warning says only what None says.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            dataset = rasterio.open(path)
        except RasterioIOError as error:
            raise GeorefError(f"cannot read {path} as a raster: {error}") from error
        with dataset:
            if dataset.crs is None:
                return None
            return Georef(crs=dataset.crs.to_string(), transform=tuple(dataset.transform)[:6])


def _mask_polygons(mask: RLE) -> BaseGeometry | None:
    """Vectorises a mask into its (Multi)Polygon in pixel coordinates (pixel edges), or None."""
    pixels = rle_to_mask(mask).astype(np.uint8)
    # 4-connectivity: pixels touching only at a corner become separate, valid polygons.
    # features.shapes yields only polygons for a mask.
    polygons = [
        cast(Polygon, shape(geometry)) for geometry, _ in features.shapes(pixels, mask=pixels > 0)
    ]
    if not polygons:
        return None
    return polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)


def pixel_geometry(obj: ParsedObject) -> BaseGeometry | None:
    """Returns an object's geometry as a shapely (Multi)Polygon in pixel coordinates.

    Horizontal boxes and quads become polygons (a self-intersecting quad is repaired), masks are
    vectorised along pixel edges with ``rasterio.features.shapes``. Returns None for ``"none"``
    and for geometry without area (an empty mask, a flat quad).
    """
    geometry: BaseGeometry | None
    if obj.kind == "hbb" and obj.hbb is not None:
        geometry = quad_to_polygon(hbb_to_quad(obj.hbb))
    elif obj.kind == "quad" and obj.quad is not None:
        geometry = quad_to_polygon(obj.quad)
    elif obj.kind == "mask" and obj.mask is not None:
        geometry = _mask_polygons(obj.mask)
    else:
        return None
    if geometry is None or geometry.is_empty or geometry.area == 0:
        return None
    return geometry


def geojson_geometry(geometry: BaseGeometry) -> dict[str, Any]:
    """A shapely geometry as a GeoJSON geometry dict, rings wound as RFC 7946 asks."""
    # Exterior rings counter-clockwise, holes clockwise, in the coordinates' own axes.
    return json.loads(shapely.to_geojson(shapely.orient_polygons(geometry)))


def _feature(obj: ParsedObject, geometry: BaseGeometry, **properties: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": geojson_geometry(geometry),
        "properties": {"phrase": obj.phrase, "kind": obj.kind, **properties},
    }


def to_geojson(objects: Iterable[ParsedObject], georef: Georef) -> dict[str, Any]:
    """Writes parsed objects of a georeferenced image as an RFC 7946 FeatureCollection.

    Coordinates are WGS84 lon/lat; exterior rings run counter-clockwise (right-hand rule) and
    holes clockwise. Each feature's properties hold ``phrase``, ``kind`` and ``pixel_geometry``
    (the same geometry in pixel coordinates). Objects without area (``"none"``, empty masks)
    are skipped. Vertices are transformed one by one: an edge stays straight in lon/lat, which
    is exact for a geographic CRS and within centimetres across a tile of a projected one.
    Geometries crossing the antimeridian are not split.
    """
    features_out = []
    for obj in objects:
        geometry = pixel_geometry(obj)
        if geometry is None:
            continue
        lonlat = shapely.transform(geometry, georef.pixel_to_lonlat)
        features_out.append(_feature(obj, lonlat, pixel_geometry=geojson_geometry(geometry)))
    return {"type": "FeatureCollection", "features": features_out}


def to_pixel_geojson(objects: Iterable[ParsedObject]) -> dict[str, Any]:
    """Writes parsed objects as a GeoJSON-shaped FeatureCollection in pixel coordinates.

    For images without a georeference (the app's download). This is **not** RFC 7946 GeoJSON:
    coordinates are pixels (x right, y down, origin at the image's top-left corner), which the
    foreign member ``"coordinate_space": "pixel"`` states. Rings follow the RFC 7946 winding in
    the coordinate values themselves (positive shoelace area), which looks clockwise on screen
    because y points down. Properties hold ``phrase`` and ``kind``.
    """
    features_out = [
        _feature(obj, geometry) for obj in objects if (geometry := pixel_geometry(obj)) is not None
    ]
    return {"type": "FeatureCollection", "coordinate_space": "pixel", "features": features_out}
