"""Raster tiling and pixel truth: tile windows, and OSM footprints clipped to tiles.

Footprints clipped to a tile become boxes, quads and masks through :mod:`geochat.geometry`.

Conventions: a tile's pixel ``(col, row)`` covers ``[col, col + 1] x [row, row + 1]`` in its
pixel coordinates, which the tile's affine transform maps to the raster's CRS. Footprints
are drawn in a *metric* CRS (the raster's own when its grid is in ground metres, else the
local UTM zone), then carried to the raster's CRS, then to each tile's pixels.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from pyproj import CRS, Geod, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.warp import transform_bounds
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.osm import LonLatBox
from geochat.data_builders.tile import TileObject
from geochat.geometry import mask_to_rle, min_area_rect, rasterize
from geochat.imagery import ImageError, ImagerySettings, resolve
from geochat.imagery import read as read_imagery

SPLITS = ("train", "val", "test")
# A grid whose ground pixel size is within this ratio of its nominal size is "metric".
_METRIC_TOLERANCE = 0.01
# Rasters whose lon/lat footprint misses their CRS's area of use by more than this many
# degrees are taken to carry the wrong CRS.
_AREA_OF_USE_MARGIN_DEG = 10.0
_DECIMALS = 2
_TRUNCATION_TOLERANCE = 1e-3


class RasterError(ValueError):
    """A raster that cannot be opened or read (``kind`` names the failure for the summary)."""

    kind = "corrupt_raster"


class CrsMismatchError(RasterError):
    """A raster with no CRS, or coordinates that cannot lie in the CRS it declares."""

    kind = "crs_mismatch"


@dataclass(frozen=True)
class RasterInfo:
    """What the pipeline needs to know about one raster.

    Attributes:
        path: The raster file.
        key: Short unique name used in tile ids (e.g. ``"world_000-world"``).
        crs: The raster's CRS (``"EPSG:..."`` or WKT).
        metric_crs: CRS in which footprints are drawn in metres (``crs`` when it is metric).
        transform: Affine of the raster, rasterio order ``(a, b, c, d, e, f)``.
        width: Width in pixels.
        height: Height in pixels.
        gsd_m: Native ground sample distance in metres per pixel.
        lonlat_bounds: ``(west, south, east, north)``.
        imagery: The resolved imagery settings of the raster (bands, fill value, stretch
            limits over the whole raster), the same for every tile (:mod:`geochat.imagery`).
    """

    path: str
    key: str
    crs: str
    metric_crs: str
    transform: tuple[float, ...]
    width: int
    height: int
    gsd_m: float
    lonlat_bounds: LonLatBox
    imagery: ImagerySettings


@dataclass(frozen=True)
class TileWindow:
    """One planned tile.

    Attributes:
        id: Deterministic id, ``"<raster key>_<row>_<col>"`` (tile indexes).
        window: Source window ``(col_off, row_off, width, height)`` in raster pixels.
        width: Output width in pixels (after resampling).
        height: Output height in pixels.
        transform: The tile's affine (its pixels to the raster's CRS), rasterio order.
        gsd_m: The tile's ground sample distance in metres per pixel.
    """

    id: str
    window: tuple[int, int, int, int]
    width: int
    height: int
    transform: tuple[float, ...]
    gsd_m: float

    def bounds(self) -> tuple[float, float, float, float]:
        """Returns ``(minx, miny, maxx, maxy)`` of the tile in the raster's CRS."""
        affine = Affine(*self.transform)
        xs, ys = zip(*(affine @ (c, r) for c, r in _corners(self.width, self.height)), strict=True)
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class Footprint:
    """A feature's footprint in the raster's CRS, with what the tile needs from the tag table.

    Attributes:
        id: OSM id, e.g. ``"way/12"``.
        category: Tag-table category.
        tags: OSM tags.
        attributes: Attribute phrases from the tag table.
        max_gsd: Coarsest GSD at which it is visible.
        min_pixels: Fewest mask pixels for it to be kept.
        geometry: (Multi)Polygon in the raster's CRS.
    """

    id: str
    category: str
    tags: dict[str, str]
    attributes: dict[str, str]
    max_gsd: float
    min_pixels: int
    geometry: BaseGeometry


def open_raster(path: str | Path, key: str, imagery: ImagerySettings | None = None) -> RasterInfo:
    """Opens a raster and checks that it is georeferenced in a CRS that fits its coordinates.

    Args:
        path: The raster.
        key: Short unique name used in tile ids.
        imagery: Band choice, no-data and stretch; None is the defaults. Resolved here, over
            the whole raster, so every tile is rendered alike.

    Raises:
        RasterError: if it cannot be opened, has no georeference or a rotated grid, or lacks
            the bands asked for.
        CrsMismatchError: if it has no CRS or its coordinates cannot lie in its CRS.
    """
    try:
        with rasterio.open(path) as dataset:
            return _raster_info(dataset, str(path), key, imagery or ImagerySettings())
    except RasterioError as error:
        raise RasterError(f"cannot open raster {path}: {error}") from error
    except ImageError as error:
        raise RasterError(f"raster {path}: {error}") from error


def _raster_info(dataset: Any, path: str, key: str, imagery: ImagerySettings) -> RasterInfo:
    transform = dataset.transform
    if dataset.crs is None:
        raise CrsMismatchError(f"raster {path} has no CRS; georeference it first")
    if transform.is_identity:
        raise RasterError(f"raster {path} has no geotransform; georeference it first")
    if transform.b != 0 or transform.d != 0:
        raise RasterError(f"raster {path} has a rotated grid; warp it north-up first")
    # rasterio (GDAL) finds a GeoTIFF's EPSG code far faster than pyproj's search.
    name = _crs_name(dataset.crs)
    crs = CRS.from_user_input(name)
    lonlat = _lonlat_bounds(path, crs, name, dataset.bounds)
    grid_gsd, ground_gsd = _pixel_sizes(crs, transform, dataset.width, dataset.height)
    metric = abs(ground_gsd / grid_gsd - 1) < _METRIC_TOLERANCE
    return RasterInfo(
        path=path,
        key=key,
        crs=name,
        metric_crs=name if metric else _utm_crs(path, lonlat),
        transform=tuple(transform)[:6],
        width=dataset.width,
        height=dataset.height,
        gsd_m=grid_gsd if metric else ground_gsd,
        lonlat_bounds=lonlat,
        imagery=resolve(dataset, imagery),
    )


def _lonlat_bounds(path: str, crs: CRS, name: str, bounds: Any) -> LonLatBox:
    try:
        west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    except (RasterioError, ValueError) as error:
        raise CrsMismatchError(
            f"raster {path}: its bounds cannot be put in lon/lat: {error}"
        ) from error
    box = (west, south, east, north)
    if not all(math.isfinite(v) for v in box) or not (-90 <= south <= north <= 90):
        raise CrsMismatchError(
            f"raster {path}: coordinates {tuple(bounds)} are not valid in {name}; "
            "does the file declare the wrong CRS?"
        )
    area = crs.area_of_use
    if area is not None and not _boxes_meet(box, area.bounds, _AREA_OF_USE_MARGIN_DEG):
        raise CrsMismatchError(
            f"raster {path} lies at lon/lat {_format_box(box)}, far outside the area of use of "
            f"{name} ({_format_box(area.bounds)}); does the file declare the wrong CRS?"
        )
    return box


def _pixel_sizes(crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Returns the nominal pixel size in CRS units and the ground size in metres at the centre."""
    col, row = width / 2, height / 2
    points = [transform @ (col, row), transform @ (col + 1, row), transform @ (col, row + 1)]
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lons, lats = to_lonlat.transform(*zip(*points, strict=True))
    geod = Geod(ellps="WGS84")
    _, _, across = geod.inv(lons[0], lats[0], lons[1], lats[1])
    _, _, down = geod.inv(lons[0], lats[0], lons[2], lats[2])
    grid = (abs(transform.a) + abs(transform.e)) / 2
    return grid, (across + down) / 2


def _utm_crs(path: str, box: LonLatBox) -> str:
    """The WGS 84 UTM zone at the box's centre (shared by neighbouring rasters)."""
    lon, lat = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    found = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat)
    )
    if not found:
        raise CrsMismatchError(
            f"raster {path} lies where no UTM zone applies (lat {lat:.2f}); "
            "reproject it to a projected CRS in metres first"
        )
    return f"EPSG:{found[0].code}"


def _crs_name(crs: rasterio.crs.CRS) -> str:
    """``"EPSG:n"`` when the CRS carries an authority code, else its WKT."""
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else crs.to_wkt()


def plan_windows(
    info: RasterInfo, tile_size: int, overlap: int, gsd: float | None
) -> list[TileWindow]:
    """Covers a raster with tiles of ``tile_size`` pixels at the wanted GSD.

    Tiles step by ``tile_size - overlap``; the last row and column are shifted to end at the
    raster's edge, so every tile is whole. A raster smaller than a tile gives one smaller tile.

    Args:
        info: The raster.
        tile_size: Tile side in output pixels.
        overlap: Pixels shared by neighbouring tiles.
        gsd: Wanted metres per pixel (resampling); None keeps the native GSD.

    Raises:
        ValueError: for a bad tile size or overlap.
        RasterError: if the raster is under one pixel at that GSD.
    """
    if tile_size <= 0 or not 0 <= overlap < tile_size:
        raise ValueError(
            f"need tile_size > 0 and 0 <= overlap < tile_size, got {tile_size}, {overlap}"
        )
    scale = 1.0 if gsd is None else gsd / info.gsd_m
    out_width, out_height = int(info.width / scale), int(info.height / scale)
    if out_width < 1 or out_height < 1:
        raise RasterError(f"raster {info.path} is under one pixel at {gsd} m/px")
    tile_w, tile_h = min(tile_size, out_width), min(tile_size, out_height)
    stride = tile_size - overlap
    windows = []
    for row_index, top in enumerate(_starts(out_height, tile_h, stride)):
        for col_index, left in enumerate(_starts(out_width, tile_w, stride)):
            window = _source_window(info, left, top, tile_w, tile_h, scale)
            windows.append(
                _tile_window(
                    info, f"{info.key}_{row_index:03d}_{col_index:03d}", window, tile_w, tile_h
                )
            )
    return windows


def _starts(length: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _source_window(
    info: RasterInfo, left: int, top: int, tile_w: int, tile_h: int, scale: float
) -> tuple[int, int, int, int]:
    col_off, row_off = round(left * scale), round(top * scale)
    width = min(max(1, round(tile_w * scale)), info.width - col_off)
    height = min(max(1, round(tile_h * scale)), info.height - row_off)
    return col_off, row_off, width, height


def _tile_window(
    info: RasterInfo, tile_id: str, window: tuple[int, int, int, int], tile_w: int, tile_h: int
) -> TileWindow:
    col_off, row_off, width, height = window
    affine = (
        Affine(*info.transform)
        @ Affine.translation(col_off, row_off)
        @ Affine.scale(width / tile_w, height / tile_h)
    )
    gsd = info.gsd_m * (width / tile_w + height / tile_h) / 2
    return TileWindow(tile_id, window, tile_w, tile_h, tuple(affine)[:6], gsd)


def area_split(
    bounds: tuple[float, float, float, float],
    crs: str,
    block_m: float,
    seed: int,
    fractions: dict[str, float],
) -> str | None:
    """Assigns a tile to a split by the coarse spatial blocks it touches.

    The metric CRS is cut into ``block_m`` squares; each block draws its split from a hash of
    ``(seed, crs, block)``, so every tile of one area lands in the same split whatever the
    raster. A tile that touches blocks of different splits returns None (the caller drops
    it): overlapping tiles then never straddle splits.

    Args:
        bounds: ``(minx, miny, maxx, maxy)`` in the metric CRS ``crs``.
        crs: Name of that CRS (part of the hash).
        block_m: Block side in metres.
        seed: Build seed.
        fractions: ``{"val": f, "test": f}``; the rest is train.
    """
    minx, miny, maxx, maxy = bounds
    # A hair inwards so that a tile ending exactly on a block edge stays in one block.
    epsilon = 1e-6 * block_m
    columns = range(math.floor(minx / block_m), math.floor((maxx - epsilon) / block_m) + 1)
    rows = range(math.floor(miny / block_m), math.floor((maxy - epsilon) / block_m) + 1)
    splits = {_block_split(crs, column, row, seed, fractions) for column in columns for row in rows}
    return splits.pop() if len(splits) == 1 else None


def _block_split(crs: str, column: int, row: int, seed: int, fractions: dict[str, float]) -> str:
    digest = hashlib.sha256(f"{seed}:{crs}:{column}:{row}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    threshold = 0.0
    for split in ("val", "test"):
        threshold += fractions.get(split, 0.0)
        if draw < threshold:
            return split
    return "train"


def raster_bounds(info: RasterInfo) -> tuple[float, float, float, float]:
    """Returns a raster's ``(minx, miny, maxx, maxy)`` in its CRS."""
    whole = TileWindow(
        "", (0, 0, info.width, info.height), info.width, info.height, info.transform, info.gsd_m
    )
    return whole.bounds()


def metric_bounds(info: RasterInfo, tile: TileWindow) -> tuple[float, float, float, float]:
    """Returns a tile's bounds in the raster's metric CRS."""
    if info.metric_crs == info.crs:
        return tile.bounds()
    return transform_bounds(info.crs, info.metric_crs, *tile.bounds(), densify_pts=5)


def read_tile(dataset: Any, info: RasterInfo, tile: TileWindow) -> tuple[np.ndarray, np.ndarray]:
    """Reads a tile as RGB uint8 with its validity mask, by the raster's imagery settings.

    Args:
        dataset: The open rasterio dataset of ``info``.
        info: The raster.
        tile: The tile.

    Returns:
        ``rgb`` ``[H, W, 3]`` uint8 (no-data pixels black) and ``valid`` ``[H, W]`` bool.

    Raises:
        RasterError: if the window cannot be read.
    """
    resampling = Resampling.average if tile.gsd_m > info.gsd_m * 1.001 else Resampling.bilinear
    try:
        return read_imagery(
            dataset, info.imagery, tile.window, (tile.height, tile.width), resampling
        )
    except RasterioError as error:
        # GDAL's own message is on the cause ("Read failed. See previous exception").
        detail = f"{error} ({error.__cause__})" if error.__cause__ else str(error)
        raise RasterError(f"cannot read tile {tile.id} of {info.path}: {detail}") from error


def tile_objects(
    footprints: list[Footprint], tile: TileWindow, valid: np.ndarray, max_object_nodata: float
) -> tuple[list[TileObject], Counter[tuple[str, str]]]:
    """Clips footprints to a tile and turns them into pixel truth.

    An object is dropped (and counted by ``(reason, category)``) when the tile is coarser than
    its category's ``max_gsd`` (``coarser_than_max_gsd``), when its mask has fewer than
    ``min_pixels`` pixels (``too_small``), or when more than ``max_object_nodata`` of its mask
    lies on no-data (``in_nodata``). Footprints that miss the tile are ignored.

    Args:
        footprints: Candidates in the raster's CRS.
        tile: The tile.
        valid: The tile's ``[H, W]`` validity mask.
        max_object_nodata: Largest share of an object's pixels allowed on no-data.

    Returns:
        The kept objects (in footprint order) and the drop counts.
    """
    to_pixels = ~Affine(*tile.transform)
    matrix = [to_pixels.a, to_pixels.b, to_pixels.d, to_pixels.e, to_pixels.xoff, to_pixels.yoff]
    frame = shapely.box(0, 0, tile.width, tile.height)
    objects, dropped = [], Counter()
    for footprint in footprints:
        whole = shapely.affinity.affine_transform(footprint.geometry, matrix)
        visible = _polygonal(whole.intersection(frame))
        if visible is None:
            continue
        if tile.gsd_m > footprint.max_gsd * (1 + 1e-9):
            dropped["coarser_than_max_gsd", footprint.category] += 1
            continue
        mask = _rasterize_within(visible, tile.height, tile.width)  # [H, W] bool
        reason = _mask_drop_reason(mask, valid, footprint.min_pixels, max_object_nodata)
        if reason is not None:
            dropped[reason, footprint.category] += 1
            continue
        objects.append(_tile_object(footprint, tile, whole, visible, mask))
    return objects, dropped


def _rasterize_within(shape: BaseGeometry, height: int, width: int) -> np.ndarray:
    """Rasterises a shape into a full-size mask, drawing only its bounding window (faster)."""
    x0, y0, x1, y1 = shape.bounds
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    right, bottom = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    # Fortran order: pycocotools encodes column-major masks without a copy.
    mask = np.zeros((height, width), dtype=bool, order="F")
    if right > left and bottom > top:
        shifted = shapely.affinity.translate(shape, -left, -top)
        mask[top:bottom, left:right] = rasterize(shifted, bottom - top, right - left)
    return mask


def _mask_drop_reason(
    mask: np.ndarray, valid: np.ndarray, min_pixels: int, max_nodata: float
) -> str | None:
    pixels = int(mask.sum())
    if pixels < min_pixels:
        return "too_small"
    if np.count_nonzero(mask & ~valid) > max_nodata * pixels:
        return "in_nodata"
    return None


def _tile_object(
    footprint: Footprint,
    tile: TileWindow,
    whole: BaseGeometry,
    visible: BaseGeometry,
    mask: np.ndarray,
) -> TileObject:
    hbb = [round(v, _DECIMALS) for v in visible.bounds]
    quad = np.round(min_area_rect(visible), _DECIMALS).tolist()
    attributes: dict[str, Any] = dict(footprint.attributes)
    attributes["area_m2"] = round(visible.area * tile.gsd_m**2, 1)
    return TileObject(
        category=footprint.category,
        tags=footprint.tags,
        hbb=hbb,
        quad=quad,
        mask=mask_to_rle(mask),
        id=footprint.id,
        truncated=visible.area < whole.area * (1 - _TRUNCATION_TOLERANCE),
        attributes=attributes,
    )


def _polygonal(geometry: BaseGeometry) -> BaseGeometry | None:
    """Keeps the polygons of a clip result (edges can leave stray lines), None if no area."""
    parts = [
        part for part in shapely.get_parts(geometry) if isinstance(part, Polygon) and part.area > 0
    ]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _corners(width: int, height: int) -> list[tuple[int, int]]:
    return [(0, 0), (width, 0), (width, height), (0, height)]


def _boxes_meet(a: LonLatBox, b: tuple[float, ...], margin: float) -> bool:
    return not (
        a[2] < b[0] - margin or a[0] > b[2] + margin or a[3] < b[1] - margin or a[1] > b[3] + margin
    )


def _format_box(box: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in box) + ")"
