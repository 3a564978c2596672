"""The files of a scene run (geochat.engine.scene_output): streamed to disk, laid out as before.

The results are built directly from many small boxes (no model, no merge), so the number of
objects can be large while the scene stays small.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pyogrio
import pytest
import shapely
from rasterio.env import get_gdal_config
from test_scene import GSD, _tif

from geochat import imagery
from geochat.engine.scene import DEFAULT_GDAL_CACHE_MB, SceneObject, ScenePlan, SceneResult
from geochat.engine.scene_output import FILES, scene_files, write_scene
from geochat.georef import Georef

SIDE = 128  # px of the scene: its overview is small beside the files of many objects


def _result(count: int, georeferenced: bool = True) -> SceneResult:
    """``count`` 4 px boxes on a 6 px grid over the scene, every fifth one unnamed."""
    objects = []
    for index in range(count):
        x, y = 6.0 * (index % 20), 6.0 * (index // 20 % 20)
        polygon = shapely.box(x, y, x + 4, y + 4)
        corners = np.asarray(polygon.exterior.coords[:4]).tolist()
        phrase = None if index % 5 == 0 else "building"
        window = (int(x) // 96 * 96, int(y) // 96 * 96, 128, 128)
        objects.append(
            SceneObject(phrase, "hbb", polygon, list(polygon.bounds), corners, None, [window])
        )
    georef = Georef("EPSG:32633", (GSD, 0.0, 500000.0, 0.0, -GSD, 4650000.0))
    plan = ScenePlan(SIDE, SIDE, GSD, GSD, [], ["a note"])
    return SceneResult(
        "Where are the buildings?",
        f"{count} objects",
        objects,
        georef if georeferenced else None,
        plan,
        25,
        0,
        "scripted",
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return _tif(
        tmp_path_factory.mktemp("scene") / "grey.tif", np.full((3, SIDE, SIDE), 90, np.uint8)
    )


@pytest.mark.parametrize("count", [0, 1, 7])
@pytest.mark.parametrize("georeferenced", [True, False])
def test_the_json_files_are_laid_out_as_their_whole_document_dumped_at_once(
    scene, tmp_path, count, georeferenced
):
    result = _result(count, georeferenced)
    write_scene(result, tmp_path, scene_files(result, scene))
    for name, key in [("objects.json", "objects"), ("scene.geojson", "features")]:
        text = (tmp_path / name).read_text(encoding="utf-8")
        document = json.loads(text)
        assert text == json.dumps(document, indent=1) + "\n"
        assert len(document[key]) == count
    collection = json.loads((tmp_path / "scene.geojson").read_text())
    assert ("coordinate_space" in collection) is not georeferenced


def test_the_geopackage_is_written_in_chunks_with_every_object_in_order(
    scene, tmp_path, monkeypatch
):
    monkeypatch.setattr("geochat.engine.scene_output.GPKG_CHUNK", 3)
    result = _result(10)
    write_scene(result, tmp_path, scene_files(result, scene))
    _, _, geometries, fields = pyogrio.raw.read(tmp_path / "scene.gpkg")
    expected = [shapely.transform(o.geometry, result.georef.pixel_to_crs) for o in result.objects]
    assert shapely.equals(shapely.from_wkb(geometries), expected).all()
    assert list(fields[0]) == ["" if o.phrase is None else o.phrase for o in result.objects]
    empty = _result(0)
    write_scene(empty, tmp_path / "empty", scene_files(empty, scene))
    assert pyogrio.read_info(tmp_path / "empty" / "scene.gpkg")["features"] == 0


def test_writing_the_files_holds_one_object_at_a_time_not_the_documents(scene, tmp_path):
    result = _result(400)
    tracemalloc.start()
    written = write_scene(result, tmp_path, scene_files(result, scene))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sorted(path.name for path in written) == sorted(FILES)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(FILES)  # no temporary
    # Built whole in memory, objects.json and the GeoJSON of 400 objects took 3.7 MiB.
    size = sum((tmp_path / name).stat().st_size for name in ("objects.json", "scene.geojson"))
    assert size > 2**19 and peak < 2**20


def test_gdal_s_block_cache_is_capped_while_the_overview_is_read(scene, tmp_path, monkeypatch):
    """The overview reads every block of the scene: GDAL's default cache (5 % of RAM) kept a
    16k px scene's blocks, 800 MB, after run_scene itself had kept to its cap."""
    caches = []
    original = imagery.read_decimated

    def probe(*args, **kwargs):
        caches.append(get_gdal_config("GDAL_CACHEMAX"))
        return original(*args, **kwargs)

    monkeypatch.setattr(imagery, "read_decimated", probe)
    result = _result(3)
    write_scene(result, tmp_path, scene_files(result, scene))
    assert caches == [DEFAULT_GDAL_CACHE_MB]
    assert get_gdal_config("GDAL_CACHEMAX") != DEFAULT_GDAL_CACHE_MB  # restored after
