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

The files are streamed to disk, never held whole: ``objects.json`` and ``scene.geojson`` object
by object (laid out as ``json.dumps(..., indent=1)`` lays out the whole document), the GeoPackage
:data:`GPKG_CHUNK` features at a time; so memory grows with the merged objects alone, not with
their files. They are written into a temporary folder inside the output folder and renamed into
place once every one is complete (:func:`geochat.fileio.atomic_files`): a failure leaves none.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
import shapely.affinity
from PIL import Image

from geochat import imagery
from geochat.categories import find_in_phrase
from geochat.draw import draw_objects
from geochat.engine.scene import (
    DEFAULT_GDAL_CACHE_MB,
    OVERVIEW_SIDE,
    SceneObject,
    SceneResult,
    open_scene,
)
from geochat.fileio import atomic_files
from geochat.geometry import polygon_to_rle
from geochat.georef import geojson_geometry
from geochat.grammar.core import GroundedObject
from geochat.imagery import ImagerySettings

FILES = ("answer.txt", "objects.json", "scene.geojson", "scene.gpkg", "overview.png")
GPKG_DATE = "1970-01-01T00:00:00.000Z"  # every GeoPackage's last_change: runs are reproducible
GPKG_FIELDS = ("phrase", "category", "kind", "score", "windows", "model")
GPKG_CHUNK = 4096  # features a GeoPackage write holds in memory as columns
_ITEMS = "\0items\0"  # stands in for a document's list while the rest of it is dumped

Writer = Callable[[Path], object]  # writes one file to the path it is given


class SceneFiles(Mapping[str, bytes]):
    """A scene's output files by name; each is made when it is read or written, never kept.

    Reading a file (``files["scene.geojson"]``) makes its bytes; :func:`write_scene` streams
    each file to disk instead, so a file's bytes are never in memory whole.
    """

    def __init__(self, writers: dict[str, Writer]) -> None:
        """Keeps the writers.

        Args:
            writers: By file name, a function that writes that file to the path it is given.
        """
        self._writers = writers

    def __getitem__(self, name: str) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            # A path named as the file: GDAL picks the GeoPackage's format from its suffix.
            path = Path(folder) / name
            self.write(name, path)
            return path.read_bytes()

    def __iter__(self) -> Iterator[str]:
        return iter(self._writers)

    def __len__(self) -> int:
        return len(self._writers)

    def write(self, name: str, path: Path) -> None:
        """Writes the file ``name`` to ``path``, a stream of it where it can be."""
        self._writers[name](path)


def scene_files(
    result: SceneResult,
    path: str | Path,
    settings: ImagerySettings | None = None,
    gsd: float | None = None,
) -> SceneFiles:
    """Every output file, by name (nothing is made or written until asked for).

    Args:
        result: From :func:`geochat.engine.scene.run_scene`.
        path: The scene (read again, decimated, for the overview).
        settings: Imagery settings for the overview (None: the defaults).
        gsd: The GSD given for an image without a georeference.
    """
    writers: dict[str, Writer] = {
        "answer.txt": lambda out: out.write_bytes((result.answer + "\n").encode()),
        "objects.json": lambda out: _write_json(
            out, _objects_document(result), "objects", _object_items(result)
        ),
        "scene.geojson": lambda out: _write_json(
            out, _geojson_document(result), "features", _features(result)
        ),
        "overview.png": lambda out: out.write_bytes(overview_png(result, path, settings, gsd)),
    }
    if result.georef is not None:
        writers["scene.gpkg"] = lambda out: write_geopackage(result, out)
    return SceneFiles(writers)


def write_scene(result: SceneResult, out_dir: str | Path, files: Mapping[str, bytes]) -> list[Path]:
    """Writes the files of :func:`scene_files` into ``out_dir``: all of them, or none.

    Each file of a :class:`SceneFiles` is streamed to disk (any other mapping's bytes are
    written as they are), beside the others in a temporary folder inside ``out_dir``; they
    replace their namesakes there once every one is complete.
    """
    with atomic_files(out_dir) as staging:
        for name in files:
            if isinstance(files, SceneFiles):
                files.write(name, staging / name)
            else:
                (staging / name).write_bytes(files[name])
    return [Path(out_dir) / name for name in files]


def _write_json(
    path: Path, document: dict[str, Any], key: str, items: Iterable[dict[str, Any]]
) -> None:
    """Writes ``document`` as ``json.dumps(document, indent=1)`` would, ``items`` as its ``key``.

    The items are dumped one at a time into the file, so neither the document nor its text is
    ever whole in memory; the bytes are those of the whole document dumped at once.
    """
    # The rest of the document is dumped around a marker for the list. Its last occurrence
    # splits it: a question could hold the marker's text, and the list follows every free text.
    head, _, tail = json.dumps({**document, key: _ITEMS}, indent=1).rpartition(json.dumps(_ITEMS))
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(head)
        opening = "["
        for item in items:
            # A top-level key's list items sit two levels deep: two spaces more on every line.
            handle.write(opening + "\n  " + json.dumps(item, indent=1).replace("\n", "\n  "))
            opening = ","
        handle.write("[]" if opening == "[" else "\n ]")
        handle.write(tail + "\n")


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


def _objects_document(result: SceneResult) -> dict[str, Any]:
    """``objects.json`` but its ``objects``: the question, answer, plan and model."""
    plan = result.plan
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
        "objects": [],
    }


def _object_items(result: SceneResult) -> Iterator[dict[str, Any]]:
    """``objects.json``'s objects in scene pixels (and the scene's CRS), one at a time."""
    for obj in result.objects:
        item = _properties(obj, result)
        item["hbb"] = obj.hbb
        item["pixel_geometry"] = geojson_geometry(obj.geometry)
        if result.georef is not None:
            map_geometry = shapely.transform(obj.geometry, result.georef.pixel_to_crs)
            item["map_geometry"] = geojson_geometry(map_geometry)
        yield item


def _geojson_document(result: SceneResult) -> dict[str, Any]:
    """``scene.geojson`` but its features: RFC 7946, or marked as in pixel coordinates."""
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": []}
    if result.georef is None:
        collection["coordinate_space"] = "pixel"
    return collection


def _features(result: SceneResult) -> Iterator[dict[str, Any]]:
    """The objects as GeoJSON features: lon/lat (EPSG:4326) when georeferenced, else pixels."""
    for obj in result.objects:
        geometry = obj.geometry
        if result.georef is not None:
            geometry = shapely.transform(geometry, result.georef.pixel_to_lonlat)
        yield {
            "type": "Feature",
            "geometry": geojson_geometry(geometry),
            "properties": _properties(obj, result),
        }


def write_geopackage(result: SceneResult, path: Path) -> None:
    """Writes the objects to ``path`` as a GeoPackage layer ``objects`` in the scene's CRS.

    The features go in :data:`GPKG_CHUNK` at a time: the first chunk creates the layer (an
    empty one for a scene without objects), the others are appended.

    Raises:
        ValueError: For a scene without a georeference.
    """
    # Imported here: only georeferenced scenes write a GeoPackage.
    import pyogrio.raw
    from pyproj import CRS

    if result.georef is None:
        raise ValueError("a GeoPackage needs a georeferenced scene")
    crs = CRS.from_user_input(result.georef.crs).to_wkt()
    with _fixed_gpkg_date():
        for start in range(0, max(1, len(result.objects)), GPKG_CHUNK):
            chunk = result.objects[start : start + GPKG_CHUNK]
            geometries, columns = _gpkg_chunk(result, chunk, result.georef.pixel_to_crs)
            pyogrio.raw.write(
                str(path),
                geometries,
                columns,
                list(GPKG_FIELDS),
                layer="objects",
                driver="GPKG",
                geometry_type="Unknown",
                crs=crs,
                promote_to_multi=True,
                append=start > 0,
            )


def _gpkg_chunk(
    result: SceneResult,
    objects: list[SceneObject],
    to_crs: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The WKB geometries (mapped by ``to_crs``) and :data:`GPKG_FIELDS` columns of ``objects``."""
    geometries = np.array(
        [shapely.to_wkb(shapely.transform(obj.geometry, to_crs)) for obj in objects], dtype=object
    )
    rows = [_properties(obj, result) for obj in objects]
    columns = []
    for name in GPKG_FIELDS:
        values = [row[name] for row in rows]
        if name == "score":
            columns.append(np.array([np.nan if v is None else v for v in values], dtype=float))
        elif name == "windows":
            columns.append(np.array([json.dumps(v) for v in values], dtype=object))
        else:
            columns.append(np.array(["" if v is None else v for v in values], dtype=object))
    return geometries, columns


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
    # The decimated read goes through every block of the scene, and GDAL's block cache (5 % of
    # RAM by default) keeps them: capped as run_scene caps it, or a 16k px scene adds 800 MB.
    with (
        rasterio.Env(GDAL_CACHEMAX=DEFAULT_GDAL_CACHE_MB),
        open_scene(path, gsd) as (dataset, _, _),
    ):
        resolved = imagery.resolve(dataset, settings or ImagerySettings())
        rgb, _ = imagery.read_decimated(dataset, resolved, shape)
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
