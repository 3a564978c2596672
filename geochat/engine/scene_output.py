"""The files of a scene run: answer, objects, GeoJSON, GeoPackage and an overview image.

Into one folder:

- ``answer.txt``: the whole scene's answer (counts after the merge);
- ``objects.json``: every merged object with its phrase, category, kind, score, the tile
  windows that saw it, its geometry in scene pixels and, for a georeferenced scene, in the
  scene's CRS; plus the plan (GSDs, tiles run and skipped, notes) and the model;
- ``scene.geojson``: RFC 7946 GeoJSON (EPSG:4326 lon/lat) of a georeferenced scene; for an
  image without a georeference, the same structure in pixel coordinates
  (``"coordinate_space": "pixel"``, not RFC 7946);
- ``scene.gpkg``: a GeoPackage in the scene's CRS (georeferenced scenes only; written with
  pyogrio), attributes ``phrase``, ``category``, ``kind``, ``score``, ``windows``, ``model``;
- ``overview.png``: the scene decimated to at most :data:`OVERVIEW_SIDE` pixels a side, the
  geometry drawn on it (:func:`geochat.draw.draw_objects`).

Every file is built in memory first and then written atomically, so a failure leaves no new
file half-written, and a failure before writing leaves none at all.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.affinity
from PIL import Image

from geochat import imagery
from geochat.categories import find_in_phrase
from geochat.draw import draw_objects
from geochat.engine.scene import OVERVIEW_SIDE, SceneObject, SceneResult, open_scene
from geochat.fileio import atomic_write_bytes
from geochat.geometry import polygon_to_rle
from geochat.georef import geojson_geometry
from geochat.grammar.core import GroundedObject
from geochat.imagery import ImagerySettings

FILES = ("answer.txt", "objects.json", "scene.geojson", "scene.gpkg", "overview.png")
GPKG_DATE = "1970-01-01T00:00:00.000Z"  # every GeoPackage's last_change: runs are reproducible


def scene_files(
    result: SceneResult,
    path: str | Path,
    settings: ImagerySettings | None = None,
    gsd: float | None = None,
) -> dict[str, bytes]:
    """Every output file's name and bytes (nothing is written).

    Args:
        result: From :func:`geochat.engine.scene.run_scene`.
        path: The scene (read again, decimated, for the overview).
        settings: Imagery settings for the overview (None: the defaults).
        gsd: The GSD given for an image without a georeference.
    """
    files = {
        "answer.txt": (result.answer + "\n").encode(),
        "objects.json": _json(objects_document(result)),
        "scene.geojson": _json(scene_geojson(result)),
        "overview.png": overview_png(result, path, settings, gsd),
    }
    if result.georef is not None:
        files["scene.gpkg"] = geopackage(result)
    return files


def write_scene(result: SceneResult, out_dir: str | Path, files: dict[str, bytes]) -> list[Path]:
    """Writes the files of :func:`scene_files` into ``out_dir``, each atomically."""
    written = []
    for name, data in files.items():
        atomic_write_bytes(Path(out_dir) / name, data)
        written.append(Path(out_dir) / name)
    return written


def _json(document: Any) -> bytes:
    return (json.dumps(document, indent=1) + "\n").encode()


def _properties(obj: SceneObject, result: SceneResult) -> dict[str, Any]:
    return {
        "phrase": obj.phrase,
        # An unnamed object answers the question, so the question's category is its own.
        "category": find_in_phrase(obj.phrase or result.question),
        "kind": obj.kind,
        "score": obj.score,
        "windows": [list(window) for window in obj.windows],
        "model": result.model,
    }


def objects_document(result: SceneResult) -> dict[str, Any]:
    """``objects.json``: the objects in scene pixels (and the scene's CRS), the plan, the model."""
    plan = result.plan
    objects = []
    for obj in result.objects:
        item = _properties(obj, result)
        item["hbb"] = obj.hbb
        item["pixel_geometry"] = geojson_geometry(obj.geometry)
        if result.georef is not None:
            map_geometry = shapely.transform(obj.geometry, result.georef.pixel_to_crs)
            item["map_geometry"] = geojson_geometry(map_geometry)
        objects.append(item)
    return {
        "question": result.question,
        "answer": result.answer,
        "counts": result.counts(),
        "model": result.model,
        "crs": None if result.georef is None else result.georef.crs,
        "transform": None if result.georef is None else list(result.georef.transform),
        "size": [plan.width, plan.height],
        "scene_gsd": plan.scene_gsd,
        "tile_gsd": plan.gsd,
        "tiles_run": result.tiles_run,
        "tiles_skipped": result.tiles_skipped,
        "notes": plan.notes,
        "problems": result.problems,
        "objects": objects,
    }


def scene_geojson(result: SceneResult) -> dict[str, Any]:
    """RFC 7946 (EPSG:4326) for a georeferenced scene, else pixel coordinates (marked so)."""
    features = []
    for obj in result.objects:
        geometry = obj.geometry
        if result.georef is not None:
            geometry = shapely.transform(geometry, result.georef.pixel_to_lonlat)
        features.append(
            {
                "type": "Feature",
                "geometry": geojson_geometry(geometry),
                "properties": _properties(obj, result),
            }
        )
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if result.georef is None:
        collection["coordinate_space"] = "pixel"
    return collection


def geopackage(result: SceneResult) -> bytes:
    """The objects as a GeoPackage layer ``objects`` in the scene's CRS.

    Raises:
        ValueError: For a scene without a georeference.
    """
    # Imported here: only georeferenced scenes write a GeoPackage.
    import pyogrio.raw
    from pyproj import CRS

    if result.georef is None:
        raise ValueError("a GeoPackage needs a georeferenced scene")
    rows = [_properties(obj, result) for obj in result.objects]
    geometries = [
        shapely.to_wkb(shapely.transform(obj.geometry, result.georef.pixel_to_crs))
        for obj in result.objects
    ]
    names = ("phrase", "category", "kind", "score", "windows", "model")
    columns = []
    for name in names:
        values = [row[name] for row in rows]
        if name == "score":
            columns.append(np.array([np.nan if v is None else v for v in values], dtype=float))
        elif name == "windows":
            columns.append(np.array([json.dumps(v) for v in values], dtype=object))
        else:
            columns.append(np.array(["" if v is None else v for v in values], dtype=object))
    with tempfile.TemporaryDirectory() as folder, _fixed_gpkg_date():
        # GDAL writes a GeoPackage (SQLite) to a path; its bytes then go out atomically.
        temporary = Path(folder) / "scene.gpkg"
        pyogrio.raw.write(
            str(temporary),
            np.array(geometries, dtype=object),
            columns,
            list(names),
            layer="objects",
            driver="GPKG",
            geometry_type="Unknown",
            crs=CRS.from_user_input(result.georef.crs).to_wkt(),
            promote_to_multi=True,
        )
        return temporary.read_bytes()


@contextmanager
def _fixed_gpkg_date() -> Iterator[None]:
    """Stamps a GeoPackage's ``last_change`` with a fixed date while it is written.

    GDAL stamps the time of writing otherwise, and the same scene run twice (in this process or
    on a Ray actor) must give the same bytes.
    """
    import pyogrio

    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_DATE})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def overview_png(
    result: SceneResult,
    path: str | Path,
    settings: ImagerySettings | None = None,
    gsd: float | None = None,
) -> bytes:
    """The scene decimated to at most :data:`OVERVIEW_SIDE` a side, with the objects drawn."""
    plan = result.plan
    scale = max(1.0, max(plan.width, plan.height) / OVERVIEW_SIDE)
    shape = (max(1, round(plan.height / scale)), max(1, round(plan.width / scale)))
    with open_scene(path, gsd) as (dataset, _, _):
        resolved = imagery.resolve(dataset, settings or ImagerySettings())
        rgb, _ = imagery.read(dataset, resolved, None, shape)  # a decimated read
    image = Image.fromarray(rgb, mode="RGB")
    sx, sy = shape[1] / plan.width, shape[0] / plan.height
    drawn = [_drawn(obj, sx, sy, image.size) for obj in result.objects]
    return _png(draw_objects(image, drawn))


def _drawn(obj: SceneObject, sx: float, sy: float, size: tuple[int, int]) -> GroundedObject:
    """An object in overview pixels: boxes and quads by their corners, masks rasterised."""
    if obj.kind == "mask":
        geometry = shapely.affinity.scale(obj.geometry, sx, sy, origin=(0, 0))
        mask = polygon_to_rle(geometry, size[1], size[0])
        return GroundedObject("mask", obj.phrase, list(geometry.bounds), None, mask)
    # By the corners: a degenerate (zero-width) box has an empty polygon but a place.
    quad = (np.asarray(obj.quad) * [sx, sy]).tolist()
    hbb = (np.asarray(obj.hbb) * [sx, sy, sx, sy]).tolist()
    return GroundedObject("quad" if obj.kind == "quad" else "hbb", obj.phrase, hbb, quad)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
