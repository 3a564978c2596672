"""Whole-scene grounding (geochat.engine.scene, scene_output, `geochat scene`).

Only the model is scripted: `TruthAssistant` subclasses the engine's `Assistant`, so the
engine's own `chat` reads each tile and parses the answer; its answer per tile is the synthetic
world's OSM truth seen through that tile (clipped to it), written in the grammar. Whatever the
merge gets right or wrong therefore shows against the truth in map coordinates.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Generator

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.env import get_gdal_config
from rasterio.transform import Affine
from shapely.geometry import shape

from geochat.commands import scene as scene_cli
from geochat.data_builders.synthetic import generate_world
from geochat.engine import Assistant
from geochat.engine.assistant import NativeInput, Request
from geochat.engine.scene import (
    DEFAULT_GDAL_CACHE_MB,
    SLIVER,
    SceneCancelledError,
    _Piece,
    merge_pieces,
    plan_scene,
    run_scene,
)
from geochat.engine.scene_output import FILES, scene_files, write_scene
from geochat.geometry import min_area_rect, quad_iou, rasterize
from geochat.georef import Georef
from geochat.grammar.canonical import format_hbbs, format_mask, format_quads, format_ref

GSD = 0.3
SIZE = 512
TILE = NativeInput(128, (GSD, GSD))
PHRASE = "building"


class TruthAssistant(Assistant):
    """Answers each tile with the truth polygons it sees, as boxes, quads or masks."""

    backend = "scripted"

    def __init__(self, polygons: list[shapely.Polygon], kind: str, phrase: str = PHRASE):
        self.model_name = "truth"
        self.native_input = TILE
        self.polygons = polygons  # in the scene CRS
        self.kind = kind
        self.phrase = phrase
        self.windows: list[str] = []

    def close(self) -> None:
        pass

    def _generate(self, request: Request) -> Generator[str, None, None]:
        image = request.image
        self.windows.append(image.source)
        frame = shapely.box(0, 0, image.width, image.height)
        parts = []
        for polygon in self.polygons:
            pixels = shapely.transform(polygon, image.georef.crs_to_pixel).intersection(frame)
            if pixels.area < 1:
                continue
            if self.kind == "hbb":
                parts.append(format_hbbs([pixels.bounds], image.width, image.height))
            elif self.kind == "quad":
                parts.append(format_quads([min_area_rect(pixels)], image.width, image.height))
            else:
                parts.append(format_mask(rasterize(pixels, image.height, image.width), 32))
        text = "".join(format_ref(self.phrase, part) for part in parts) or "<none>"
        return (piece for piece in [text])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    files = generate_world(
        tmp_path_factory.mktemp("world"), seed=3, size_px=SIZE, gsd=GSD, scene="suburban"
    )
    truth = json.loads(files.truth.read_text())
    with rasterio.open(files.tif) as dataset:
        georef = Georef(dataset.crs.to_string(), tuple(dataset.transform)[:6])
    return files, truth, georef


def _truth(truth: dict, key: str) -> list[shapely.Polygon]:
    return [shape(f["geometry"]) for f in truth["features"] if key in f["properties"]["tags"]]


def _scene_px(polygon: shapely.Polygon, georef: Georef) -> shapely.Polygon:
    return shapely.transform(polygon, georef.crs_to_pixel).intersection(
        shapely.box(0, 0, SIZE, SIZE)
    )


def test_the_plan_reads_at_the_native_gsd_with_overlap():
    plan = plan_scene(1000, 600, 0.15, TILE, overlap=0.25)
    # 0.15 m scene, 0.3 m model: each 128 px tile covers 256 scene pixels, stepping 192.
    assert {tile.size for tile in plan.tiles} == {(128, 128)}
    assert {tile.window[2] for tile in plan.tiles} == {256}
    cols = sorted({tile.window[0] for tile in plan.tiles})
    assert cols == [0, 192, 384, 576, 744]  # the last window against the right edge
    assert plan.gsd == pytest.approx(0.3)
    fine = plan_scene(1000, 600, 0.5, NativeInput(128, (0.2, 0.4)))
    assert fine.gsd == pytest.approx(0.4)  # the nearest end of the model's range


def test_a_model_without_a_declared_gsd_reads_the_scene_at_its_own():
    plan = plan_scene(300, 300, 0.5, NativeInput(128, None, declared=False))
    assert plan.gsd == 0.5
    assert {tile.window[2] for tile in plan.tiles} == {128}
    assert any("declares no" in note for note in plan.notes)


def test_boxes_cut_by_tile_edges_merge_into_one_object_on_the_osm_truth(world):
    files, truth, georef = world
    buildings = _truth(truth, "building")
    assistant = TruthAssistant(buildings, "hbb")
    result = run_scene(assistant, files.tif, "Where are the buildings?", batch_size=4)
    expected = [_scene_px(b, georef) for b in buildings if _scene_px(b, georef).area >= 1]
    assert result.counts() == {PHRASE: len(expected)}
    assert result.answer.startswith(f"{len(expected)} objects")
    # Several buildings span tile edges: without the merge they would be counted twice.
    assert sum(len(obj.windows) > 1 for obj in result.objects) >= 3
    for building in expected:
        x0, y0, x1, y1 = building.bounds
        matches = [obj for obj in result.objects if _iou(obj.hbb, (x0, y0, x1, y1)) > 0.95]
        assert len(matches) == 1
    # GeoJSON lon/lat lands on the truth: box centres within a pixel in map coordinates.
    collection = json.loads(scene_files(result, files.tif)["scene.geojson"])
    centres = [
        georef.lonlat_to_crs(np.asarray(shape(f["geometry"]).centroid.coords[0]))
        for f in collection["features"]
    ]
    for building in buildings:
        box = shapely.box(*building.bounds)
        nearest = min(np.hypot(*(c - box.centroid.coords[0])) for c in centres)
        if _scene_px(building, georef).area == building.area / GSD**2:  # wholly inside
            assert nearest < GSD


def _iou(a, b) -> float:
    return (
        shapely.box(*a).intersection(shapely.box(*b)).area
        / shapely.box(*a).union(shapely.box(*b)).area
    )


def test_quads_merge_by_rotated_iou(world):
    files, truth, georef = world
    buildings = _truth(truth, "building")
    result = run_scene(TruthAssistant(buildings, "quad"), files.tif, "Where?")
    expected = [_scene_px(b, georef) for b in buildings if _scene_px(b, georef).area >= 1]
    assert result.counts() == {PHRASE: len(expected)}
    truth_quads = [min_area_rect(b) for b in expected]
    found = [obj.quad for obj in result.objects]
    assert all(obj.kind == "quad" for obj in result.objects)
    best = quad_iou(truth_quads, found).max(axis=1)
    # One building spans six tiles and no tile sees it whole: it is rebuilt from the
    # rectangles of its fragments, which overshoot the fragments (a rectangle around a
    # triangle is twice its size); every other building comes back within 6 %.
    assert (best > 0.75).all() and (best > 0.94).sum() == len(expected) - 1


def test_crossed_thin_quads_stay_two_objects_though_their_hulls_coincide(tmp_path):
    """Two thin diagonals of one square: their boxes are equal, their polygons barely meet."""
    path = _tif(tmp_path / "cross.tif", np.full((3, 100, 100), 120, np.uint8))
    answer = format_ref(
        "pier", format_quads([[[10, 5], [95, 90], [90, 95], [5, 10]]], 100, 100)
    ) + format_ref("pier", format_quads([[[90, 5], [95, 10], [10, 95], [5, 90]]], 100, 100))
    result = run_scene(_Fixed(answer), path, "Where are the piers?", native=NativeInput(128))
    assert result.counts() == {"pier": 2}


def test_masks_stitch_into_one_scene_mask(world):
    files, truth, georef = world
    river = _truth(truth, "waterway")
    result = run_scene(TruthAssistant(river, "mask", "river"), files.tif, "Segment the river.")
    assert result.counts() == {"river": 1}  # one object across every tile it crosses
    (obj,) = result.objects
    assert len(obj.windows) > 4
    expected = _scene_px(river[0], georef)
    iou = obj.geometry.intersection(expected).area / obj.geometry.union(expected).area
    assert iou > 0.85


def _read_by_tiles(reads) -> bool:
    """Whether the raster was read, and only in windows of at most one 128 px tile."""
    return bool(reads) and all(w is not None and w.width * w.height <= 128 * 128 for w, _ in reads)


def test_nodata_windows_are_skipped_and_the_raster_is_never_read_whole(tmp_path, raster_reads):
    pixels = np.full((3, 400, 400), 90, np.uint8)
    pixels[:, :, :200] = 0  # the left half is no-data
    path = _tif(tmp_path / "half.tif", pixels, nodata=0)
    assistant = _Fixed("<none>")
    answered = []
    result = run_scene(
        assistant, path, "Where?", native=TILE, on_tile=lambda t, r: answered.append((t, r.text))
    )
    assert result.tiles_skipped > 0
    assert result.tiles_run + result.tiles_skipped == len(result.plan.tiles)
    assert len(assistant.windows) == result.tiles_run
    # on_tile sees each answered tile once, in plan order, with its reply; skipped ones never.
    tiles = [tile for tile, _ in answered]
    assert tiles == [tile for tile in result.plan.tiles if tile in tiles]
    assert [f"window {list(t.window)}" for t in tiles] == assistant.windows
    assert {text for _, text in answered} == {"<none>"}
    assert all(json.loads(w.removeprefix("window "))[0] >= 72 for w in assistant.windows)
    assert _read_by_tiles(raster_reads)
    assert result.answer == "Nothing found in the scene."


class _Fixed(TruthAssistant):
    """Answers every tile with the same text."""

    def __init__(self, answer: str):
        super().__init__([], "hbb")
        self.answer = answer

    def _generate(self, request: Request) -> Generator[str, None, None]:
        self.windows.append(request.image.source)
        return (piece for piece in [self.answer])


def _tif(path, pixels, nodata=None, crs="EPSG:32633", **layout):
    """A GeoTIFF of ``pixels`` [bands, H, W]: GDAL's default strips, or ``layout`` (tiles)."""
    profile = {
        "driver": "GTiff",
        "width": pixels.shape[2],
        "height": pixels.shape[1],
        "count": pixels.shape[0],
        "dtype": "uint8",
        "crs": CRS.from_user_input(crs),
        "transform": Affine(GSD, 0, 500000, 0, -GSD, 4650000),
        "nodata": nodata,
        **layout,
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(pixels)
    return path


class _Bright(_Fixed):
    """Answers each tile with one box around all its bright pixels: the answer is in the pixels."""

    def __init__(self):
        super().__init__("<none>")

    def _generate(self, request: Request) -> Generator[str, None, None]:
        self.windows.append(request.image.source)
        rows, cols = np.nonzero(np.asarray(request.image.image).min(axis=2) > 200)
        if rows.size == 0:
            return (piece for piece in ["<none>"])
        hbb = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        size = request.image.width, request.image.height
        return (piece for piece in [format_ref("roof", format_hbbs([hbb], *size))])


def test_a_striped_tiff_is_read_window_by_window_and_answers_as_its_tiled_copy(
    tmp_path, raster_reads
):
    rng = np.random.default_rng(16)
    pixels = rng.integers(0, 100, (3, 320, 320), dtype=np.uint8)
    for x, y in rng.integers(0, 300, (4, 2)):
        pixels[:, y : y + 14, x : x + 14] = 230  # bright roofs, some across tile edges
    striped = _tif(tmp_path / "striped.tif", pixels)
    tiled = _tif(tmp_path / "tiled.tif", pixels, tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(striped) as dataset:
        assert not dataset.profile["tiled"] and dataset.block_shapes[0][1] == 320  # strips
    from_strips = run_scene(_Bright(), striped, "Where are the roofs?", native=TILE)
    assert _read_by_tiles(raster_reads)
    from_tiles = run_scene(_Bright(), tiled, "Where are the roofs?", native=TILE)
    assert len(from_strips.objects) >= 2
    assert [o.hbb for o in from_strips.objects] == [o.hbb for o in from_tiles.objects]
    assert from_strips.answer == from_tiles.answer


def test_the_geopackage_holds_the_objects_in_the_scene_crs(world, tmp_path):
    files, truth, georef = world
    result = run_scene(TruthAssistant(_truth(truth, "building"), "hbb"), files.tif, "Where?")
    written = write_scene(result, tmp_path, scene_files(result, files.tif))
    assert {path.name for path in written} == {
        "answer.txt",
        "objects.json",
        "scene.geojson",
        "scene.gpkg",
        "overview.png",
    }
    info = pyogrio.read_info(tmp_path / "scene.gpkg")
    assert info["features"] == len(result.objects)
    assert info["crs"] == "EPSG:32633"
    assert {"phrase", "category", "score", "windows", "model"} <= set(info["fields"])
    _, _, geometries, fields = pyogrio.raw.read(tmp_path / "scene.gpkg")
    first = shapely.from_wkb(geometries[0])
    expected = shapely.transform(result.objects[0].geometry, georef.pixel_to_crs)
    assert first.symmetric_difference(expected).area < 1e-6
    assert set(fields[1]) == {"building"}  # the phrase's category
    objects = json.loads((tmp_path / "objects.json").read_text())
    assert objects["tiles_run"] == 25 and objects["crs"] == "EPSG:32633"


def _cli(capsys, monkeypatch, assistant, *argv):
    monkeypatch.setattr(scene_cli, "load", lambda *args, **kwargs: assistant)
    code = scene_cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_writes_every_file(world, tmp_path, capsys, monkeypatch):
    files, truth, _ = world
    assistant = TruthAssistant(_truth(truth, "building"), "hbb")
    code, out, err = _cli(
        capsys, monkeypatch, assistant, "--image", str(files.tif), "Where?", "--out", str(tmp_path)
    )
    assert code == 0, err
    assert out.startswith("13 objects in the scene")
    assert "tiles: 100%" in err and "read at 0.3 m" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*FILES, "run.json"])


def test_a_failure_while_building_the_outputs_leaves_no_file(world, tmp_path, capsys, monkeypatch):
    files = world[0]

    def broken(result, path):
        raise OSError("disk full")

    monkeypatch.setattr("geochat.engine.scene_output.write_geopackage", broken)
    out = tmp_path / "out"
    code, _, err = _cli(
        capsys, monkeypatch, _Fixed("<none>"), "--image", str(files.tif), "Q", "--out", str(out)
    )
    assert code == 2 and err.strip().endswith("geochat scene: disk full")
    assert not out.exists() or not list(out.iterdir())


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    code, _, err = _cli(
        capsys, monkeypatch, _Fixed("<none>"), "--image", str(tmp_path / "no.tif"), "Q",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 2 and err.strip() == f"geochat scene: no such image: {tmp_path / 'no.tif'}"
    local = "+proj=tmerc +lat_0=0 +lon_0=13.3 +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m"
    path = _tif(tmp_path / "local.tif", np.full((3, 64, 64), 9, np.uint8), crs=local)
    code, _, err = _cli(
        capsys, monkeypatch, _Fixed("<none>"), "--image", str(path), "Q", "--out", str(tmp_path)
    )
    assert code == 2 and "has no EPSG code" in err and len(err.strip().splitlines()) == 1


def test_a_png_without_gsd_is_read_at_the_models_size_and_says_so(tmp_path, capsys, monkeypatch):
    Image.new("RGB", (300, 200), (80, 90, 100)).save(tmp_path / "plain.png")
    answer = format_ref("car", format_hbbs([[10, 10, 30, 30]], 128, 128))
    code, out, err = _cli(
        capsys, monkeypatch, _Fixed(answer), "--image", str(tmp_path / "plain.png"), "Q",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, err
    assert "no GSD" in err and "128 px tiles" in err
    collection = json.loads((tmp_path / "out" / "scene.geojson").read_text())
    assert collection["coordinate_space"] == "pixel"
    assert not (tmp_path / "out" / "scene.gpkg").exists()
    # 128 px tiles stepping 96 over 300 x 200: a box at (10..30) of each tile, none merged.
    assert out.startswith("6 objects")


@pytest.mark.slow
def test_geochat_nano_answers_a_whole_synthetic_scene(world, tmp_path):
    from geochat.engine import load

    files, _, georef = world
    assistant = load()
    result = run_scene(assistant, files.tif, "Where are the buildings?")
    assert result.tiles_run == 25
    write_scene(result, tmp_path, scene_files(result, files.tif))
    collection = json.loads((tmp_path / "scene.geojson").read_text())
    assert len(collection["features"]) == len(result.objects)
    frame = shapely.transform(shapely.box(0, 0, SIZE, SIZE), georef.pixel_to_lonlat)
    for feature in collection["features"]:
        assert frame.buffer(1e-6).contains(shape(feature["geometry"]))


def test_a_batch_gives_the_answers_one_at_a_time_gives():
    """Tiles of several sizes generated together answer as they do one at a time."""
    from geochat.engine import load

    assistant = load()  # the bundled geochat-nano: a real model, greedy decoding
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for w, h in [(128, 128), (128, 128), (96, 128), (128, 128)]
    ]
    messages = [{"role": "user", "content": "Where are the buildings?"}]
    batched = assistant.chat_batch([(image, messages) for image in images], max_new_tokens=24)
    alone = [assistant.chat(image, messages, max_new_tokens=24) for image in images]
    assert [reply.text for reply in batched] == [reply.text for reply in alone]
    assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in alone]
    assert [r.image_size for r in batched] == [(128, 128), (128, 128), (96, 128), (128, 128)]


def test_the_native_input_is_declared_in_the_processor_config_and_kept_on_save(tmp_path):
    from geochat.engine import DEFAULT_MODEL
    from geochat.engine.transformers_backend import _native_input
    from geochat.modeling import GeoChatProcessor

    processor = GeoChatProcessor.from_pretrained(DEFAULT_MODEL)
    native = NativeInput(128, (0.201, 0.6))  # 128 px tiles at 0.2-0.6 m (v5's training worlds)
    assert _native_input(processor) == native
    processor.save_pretrained(tmp_path)
    assert _native_input(GeoChatProcessor.from_pretrained(tmp_path)) == native
    processor.native_input = None  # an older checkpoint: its tile size, the scene's own GSD
    assert _native_input(processor) == NativeInput(128, None, declared=False)


def test_the_overview_is_read_in_strips_and_is_gdal_s_nearest_decimation(
    tmp_path, monkeypatch, raster_reads
):
    pixels = np.random.default_rng(7).integers(0, 255, (3, 400, 300), dtype=np.uint8)
    path = _tif(tmp_path / "noise.tif", pixels, tiled=True, blockxsize=64, blockysize=64)
    result = run_scene(_Fixed("<none>"), path, "Where?", native=TILE)
    raster_reads.clear()
    monkeypatch.setattr("geochat.engine.scene_output.OVERVIEW_SIDE", 100)
    monkeypatch.setattr("geochat.imagery.STRIP_PIXELS", 300 * 48)
    overview_png = scene_files(result, path)["overview.png"]
    # Full-resolution windows (strips of 48 rows, and the edges that resolve() reads for a
    # fill value): never the scene whole, nor GDAL's decimated read.
    assert all(w is not None and shape is None for w, shape in raster_reads)
    strips = [w for w, _ in raster_reads if w.width == 300 and w.height > 1]
    assert [w.row_off for w in strips] == list(range(0, 400, 48))
    with rasterio.open(path) as dataset:
        expected = dataset.read(out_shape=(3, 100, 75), resampling=Resampling.nearest)
    with Image.open(io.BytesIO(overview_png)) as overview:
        assert overview.size == (75, 100)
        np.testing.assert_array_equal(np.moveaxis(np.asarray(overview), -1, 0), expected)


def test_a_cancelled_run_stops_between_batches(world):
    files, truth, _ = world
    assistant = TruthAssistant(_truth(truth, "building"), "hbb")
    done: list[int] = []
    with pytest.raises(SceneCancelledError, match="after 8 of 25 tiles"):
        run_scene(
            assistant,
            files.tif,
            "Where are the buildings?",
            batch_size=4,
            progress=done.append,
            cancel=lambda: sum(done) >= 8,
        )
    assert len(assistant.windows) == 8  # two batches ran, the third never started


def test_merging_many_pieces_grows_with_the_pieces_not_their_square():
    # 4000 separate boxes: an all-pairs IoU matrix would hold 16 M entries (128 MB a matrix).
    pieces = []
    for index in range(4000):
        x, y = 20.0 * (index % 64), 20.0 * (index // 64)
        polygon = shapely.box(x, y, x + 10, y + 10)
        quad = np.asarray(polygon.exterior.coords[:4])
        window = (int(x), int(y), 128, 128)
        pieces.append(_Piece(PHRASE, "hbb", polygon, quad, False, False, 5.0, window))
    tracemalloc.start()
    objects = merge_pieces(pieces)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(objects) == 4000
    assert peak < 32 * 2**20


class _CacheProbe(_Fixed):
    """Answers nothing and notes GDAL's block cache while each tile is answered."""

    def __init__(self):
        super().__init__("<none>")
        self.caches: list[object] = []

    def _generate(self, request: Request) -> Generator[str, None, None]:
        self.caches.append(get_gdal_config("GDAL_CACHEMAX"))
        return super()._generate(request)


def test_gdal_s_block_cache_is_capped_while_a_scene_is_read(tmp_path, capsys, monkeypatch):
    path = _tif(tmp_path / "grey.tif", np.full((3, 64, 64), 9, np.uint8))
    probe = _CacheProbe()
    run_scene(probe, path, "Q", native=NativeInput(32, (GSD, GSD)))
    assert set(probe.caches) == {DEFAULT_GDAL_CACHE_MB}
    assert get_gdal_config("GDAL_CACHEMAX") != DEFAULT_GDAL_CACHE_MB  # restored after the run
    probe = _CacheProbe()
    code, _, err = _cli(
        capsys, monkeypatch, probe, "--image", str(path), "Q", "--out", str(tmp_path / "out"),
        "--gdal-cache-mb", "64",
    )  # fmt: skip
    assert code == 0, err
    assert probe.caches and set(probe.caches) == {64}
    with pytest.raises(SystemExit):
        _cli(capsys, monkeypatch, probe, "--image", str(path), "Q", "--gdal-cache-mb", "0")
    assert "at least 1 MB" in capsys.readouterr().err


def test_a_degenerate_box_on_a_tile_edge_does_not_crash_the_merge(tmp_path):
    # Each 64 px tile answers a zero-width box on its right edge. In the left tile the edge is
    # inner: the box is cut, its polygon empty once clipped to the window (the merge once took
    # the bounds of that empty union: NaN corners), and a sliver alone, so it is dropped. In
    # the right tile the edge is the scene's: the box is whole and kept, corners and all.
    path = _tif(tmp_path / "grey.tif", np.full((3, 64, 128), 9, np.uint8))
    answer = format_ref("car", format_hbbs([[64, 10, 64, 30]], 64, 64))
    result = run_scene(_Fixed(answer), path, "Q", native=NativeInput(64, (GSD, GSD)), overlap=0)
    assert len(result.objects) == 1 and np.isfinite(result.objects[0].hbb).all()
    assert result.objects[0].hbb == pytest.approx([128, 10, 128, 30], abs=0.1)
    assert set(scene_files(result, path)) >= {"scene.geojson", "objects.json"}


class _ByWindow(_Fixed):
    """Answers each tile with its window's boxes (scene pixels, by the window's column)."""

    def __init__(self, boxes: dict[int, list[list[float]]]):
        super().__init__("<none>")
        self.boxes = boxes

    def _generate(self, request: Request) -> Generator[str, None, None]:
        image = request.image
        col = round((image.georef.transform[2] - 500000) / GSD)
        local = [[x0 - col, y0, x1 - col, y1] for x0, y0, x1, y1 in self.boxes.get(col, [])]
        text = "".join(
            format_ref(PHRASE, format_hbbs([box], image.width, image.height)) for box in local
        )
        return (piece for piece in [text or "<none>"])


def _two_windows(tmp_path, boxes):
    """A 224 x 128 px scene read as two 128 px windows at columns 0 and 96 (32 px shared)."""
    path = _tif(tmp_path / "two.tif", np.full((3, 128, 224), 90, np.uint8))
    result = run_scene(_ByWindow(boxes), path, "Where are the buildings?", native=TILE)
    assert sorted({w for obj in result.objects for w in obj.windows}) <= [
        (0, 0, 128, 128),
        (96, 0, 128, 128),
    ]
    return sorted(obj.hbb for obj in result.objects)


def test_a_cut_box_over_two_neighbours_does_not_chain_them_into_one(tmp_path):
    # The left window draws one box running off its right edge over the shared strip, where
    # the right window, which sees the strip and beyond, finds two small buildings.
    found = _two_windows(
        tmp_path, {0: [[90, 10, 128, 60]], 96: [[98, 12, 110, 28], [112, 40, 126, 58]]}
    )
    assert len(found) == 3  # the left window's box stands alone; the two stay two
    assert found[1:] == [
        pytest.approx([98, 12, 110, 28], abs=0.2),
        pytest.approx([112, 40, 126, 58], abs=0.2),
    ]


def test_a_cut_object_is_one_object_where_the_windows_agree(tmp_path):
    # A building from x 80 to 160: the left window sees its part up to its edge (128), the
    # right one, from 96, its part from there; they agree where both see (96-128).
    found = _two_windows(tmp_path, {0: [[80, 20, 128, 50]], 96: [[96, 21, 160, 50]]})
    assert found == [pytest.approx([80, 20, 160, 50], abs=0.2)]


def test_a_part_seen_by_one_window_keeps_its_whole_extent(tmp_path):
    # The right window misses the building the left one sees cut by its edge: the part in the
    # shared strip (nearer the right window's centre) is still the left window's to give.
    assert _two_windows(tmp_path, {0: [[100, 20, 128, 50]]}) == [
        pytest.approx([100, 20, 128, 50], abs=0.2)
    ]


def test_a_sliver_on_a_tile_edge_is_no_object_alone(tmp_path):
    # 4 px of something at the left window's inner edge, which the right window, seeing that
    # strip whole, does not find: dropped. Wider than SLIVER, it stands.
    assert _two_windows(tmp_path, {0: [[124, 20, 128, 50]]}) == []
    wide = 128 - SLIVER - 1
    assert _two_windows(tmp_path, {0: [[wide, 20, 128, 50]]}) == [
        pytest.approx([wide, 20, 128, 50], abs=0.2)
    ]
