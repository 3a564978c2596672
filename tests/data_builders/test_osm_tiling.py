import numpy as np
import pytest
import rasterio
import shapely
from osm_scene import CRS, GSD, ORIGIN, SIZE, make_scene, metres, write_raster
from rasterio.transform import Affine

from geochat.data_builders.tiling import (
    CrsMismatchError,
    Footprint,
    RasterError,
    area_split,
    open_raster,
    plan_windows,
    read_tile,
    tile_objects,
)
from geochat.geometry import mask_area, quad_iou, rle_to_mask
from geochat.imagery import ImagerySettings

TAGS = {
    "house": {"building": "house"},
    "hall": {"building": "industrial"},
    "shed": {"building": "yes"},
    "lake": {"natural": "water"},
    "road": {"highway": "residential"},
    "path": {"highway": "footway"},
    "tree": {"natural": "tree"},
}
# (category, max_gsd, min_pixels) as in the bundled table.
RULES = {
    "house": ("building", 2.0, 16),
    "hall": ("building", 2.0, 16),
    "shed": ("building", 2.0, 16),
    "lake": ("water", 30.0, 32),
    "road": ("road", 4.0, 16),
    "path": ("footpath", 0.6, 16),
    "tree": ("tree", 1.0, 4),
}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="module")
def footprints(scene):
    return {
        name: Footprint(
            name,
            RULES[name][0],
            TAGS[name],
            {"colour": "red"} if name == "house" else {},
            RULES[name][1],
            RULES[name][2],
            scene.truth[name],
        )
        for name in RULES
    }


def _to_pixels(geometry, tile_col_px=0.0, tile_row_px=0.0, gsd=GSD):
    """Metres -> pixels of a tile whose top-left is at raster pixel (col, row); independent of
    the affine code under test."""
    return shapely.transform(
        geometry,
        lambda xy: np.stack(
            [
                (xy[:, 0] - ORIGIN[0]) / gsd - tile_col_px * GSD / gsd,
                (ORIGIN[1] - xy[:, 1]) / gsd - tile_row_px * GSD / gsd,
            ],
            axis=1,
        ),
    )


def _windows(scene, tile=128, overlap=0, gsd=None):
    info = open_raster(scene.raster, "scene")
    return info, {w.id: w for w in plan_windows(info, tile, overlap, gsd)}


def _objects(scene, footprints, tile_id, names, tile=128, gsd=None, valid=None):
    _, windows = _windows(scene, tile, gsd=gsd)
    window = windows[tile_id]
    valid = np.ones((window.height, window.width), bool) if valid is None else valid
    objects, dropped = tile_objects([footprints[n] for n in names], window, valid, 0.5)
    return {obj.id: obj for obj in objects}, dropped


def test_open_raster_reads_georeference(scene):
    info = open_raster(scene.raster, "scene")
    assert info.crs == CRS == info.metric_crs
    assert info.gsd_m == pytest.approx(GSD)
    assert (info.width, info.height) == (SIZE, SIZE)
    west, south, east, north = info.lonlat_bounds
    assert 14.99 < west < east < 15.01 and 45.1 < south < north < 45.2
    assert info.imagery.stretch == "none" and info.imagery.bands == (1, 2, 3)


def test_windows_cover_the_raster_with_the_last_ones_shifted_to_the_edge(scene):
    info, windows = _windows(scene, tile=128, overlap=32)
    starts = sorted({w.window[0] for w in windows.values()})
    assert starts == [0, 96, 128]
    assert all(w.window[2] == w.window[3] == 128 for w in windows.values())
    assert len(windows) == 9
    assert all(w.window[0] + w.window[2] <= info.width for w in windows.values())


def test_tile_transform_maps_tile_pixels_to_the_crs(scene):
    _, windows = _windows(scene)
    window = windows["scene_000_001"]
    assert window.window == (128, 0, 128, 128)
    assert Affine(*window.transform) @ (0, 0) == pytest.approx(metres(128, 0))
    assert Affine(*window.transform) @ (128, 128) == pytest.approx(metres(256, 128))


def test_gsd_option_resamples_the_tile(scene):
    _, windows = _windows(scene, tile=128, gsd=1.0)
    (window,) = windows.values()
    assert window.window == (0, 0, SIZE, SIZE)
    assert (window.width, window.height, window.gsd_m) == (128, 128, pytest.approx(1.0))
    assert Affine(*window.transform) @ (128, 128) == pytest.approx(metres(256, 256))
    with rasterio.open(scene.raster) as dataset:
        rgb, valid = read_tile(dataset, open_raster(scene.raster, "scene"), window)
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8 and valid.all()


def test_a_raster_smaller_than_a_tile_gives_one_smaller_tile(scene):
    (window,) = _windows(scene, tile=512)[1].values()
    assert (window.width, window.height) == (SIZE, SIZE)


def test_object_truth_matches_the_drawn_footprint(scene, footprints):
    objects, dropped = _objects(scene, footprints, "scene_000_000", ["house"])
    house = objects["house"]
    truth = _to_pixels(scene.truth["house"])
    assert quad_iou([house.quad], [np.asarray(truth.exterior.coords)[:4]])[0, 0] > 0.99
    assert house.hbb == pytest.approx(truth.bounds, abs=0.01)
    assert mask_area(house.mask) == pytest.approx(truth.area, rel=0.03)
    assert not house.truncated and not dropped
    assert house.attributes["colour"] == "red"
    assert house.attributes["area_m2"] == pytest.approx(200, rel=1e-3)


def test_objects_cut_by_the_tile_edge_are_clipped_and_marked_truncated(scene, footprints):
    left, _ = _objects(scene, footprints, "scene_000_000", ["hall"])
    right, _ = _objects(scene, footprints, "scene_000_001", ["hall"])
    assert left["hall"].truncated and right["hall"].truncated
    assert left["hall"].hbb[2] == pytest.approx(128) and right["hall"].hbb[0] == pytest.approx(0)
    # The two visible parts add up to the whole footprint.
    whole = _to_pixels(scene.truth["hall"]).area
    assert mask_area(left["hall"].mask) + mask_area(right["hall"].mask) == pytest.approx(
        whole, rel=0.03
    )


def test_multipolygon_hole_stays_empty_in_the_mask(scene, footprints):
    objects, _ = _objects(scene, footprints, "scene_001_001", ["lake"])
    mask = rle_to_mask(objects["lake"].mask)
    centre = (190 - 128, 190 - 128)  # the island, in tile pixels
    assert not mask[centre[1], centre[0]]
    assert mask[centre[1], centre[0] - 15]  # the water around it


def test_line_and_node_footprints_become_masks(scene, footprints):
    objects, _ = _objects(scene, footprints, "scene_000_001", ["road", "tree"])
    tree = objects["tree"]
    assert tree.hbb == pytest.approx([200 - 128 - 4, 40 - 4, 200 - 128 + 4, 40 + 4], abs=0.05)
    road = objects["road"]
    assert road.truncated
    assert road.hbb[0] == 0 and road.hbb[2] == 128
    assert 7 / GSD <= road.hbb[3] - road.hbb[1] <= 7 / GSD + 6  # a 7 m strip, slightly sloped


def test_small_and_too_coarse_objects_are_dropped_and_counted(scene, footprints):
    objects, dropped = _objects(scene, footprints, "scene_001_000", ["shed", "path"])
    assert set(objects) == {"path"}  # a 2 m footway is visible at 0.5 m per pixel
    assert dropped == {("too_small", "building"): 1}
    coarse, dropped = _objects(scene, footprints, "scene_000_000", ["path", "lake"], gsd=1.0)
    assert set(coarse) == {"lake"}
    assert dropped == {("coarser_than_max_gsd", "footpath"): 1}


def test_objects_mostly_on_nodata_are_dropped(scene, footprints):
    valid = np.ones((128, 128), bool)
    valid[:, :60] = False  # the left half of the house
    objects, dropped = _objects(scene, footprints, "scene_000_000", ["house"], valid=valid)
    assert "house" in objects
    valid[:, :75] = False
    objects, dropped = _objects(scene, footprints, "scene_000_000", ["house"], valid=valid)
    assert not objects and dropped == {("in_nodata", "building"): 1}


def test_read_tile_marks_a_black_frame_as_nodata(tmp_path, scene):
    path = write_raster(tmp_path / "black.tif", black=(0, 0, 64, 128))
    info = open_raster(path, "black")
    assert info.imagery.fill == 0
    window = plan_windows(info, 128, 0, None)[0]
    with rasterio.open(path) as dataset:
        rgb, valid = read_tile(dataset, info, window)
        assert valid[:, 64:].all() and not valid[:, :64].any()
        kept_info = open_raster(path, "black", ImagerySettings(fill=None))
        _, kept = read_tile(dataset, kept_info, window)
        assert kept.all()
    assert rgb.shape == (128, 128, 3)


def test_nodata_value_of_the_raster_is_respected(tmp_path):
    path = write_raster(tmp_path / "nodata.tif")
    with rasterio.open(path, "r+") as dataset:
        data = dataset.read()
        data[:, :10, :] = 7
        dataset.write(data)
        dataset.nodata = 7
    info = open_raster(path, "nodata")
    with rasterio.open(path) as dataset:
        rgb, valid = read_tile(dataset, info, plan_windows(info, 128, 0, None)[0])
    assert not valid[:10].any() and valid[10:].all() and not rgb[:10].any()


def test_uint16_rasters_are_stretched_to_uint8(tmp_path):
    path = write_raster(tmp_path / "deep.tif", dtype="uint16")
    info = open_raster(path, "deep")
    assert info.imagery.stretch == "minmax" and len(info.imagery.limits) == 3
    with rasterio.open(path) as dataset:
        rgb, _ = read_tile(dataset, info, plan_windows(info, 128, 0, None)[0])
    assert rgb.dtype == np.uint8 and 40 < rgb.mean() < 215 and rgb.std() > 30


def test_geographic_rasters_get_a_metric_crs_and_ground_gsd(tmp_path):
    path = write_raster(tmp_path / "lonlat.tif", crs="EPSG:4326", origin=(15.0, 45.0), gsd=1e-5)
    info = open_raster(path, "lonlat")
    assert info.crs == "EPSG:4326"
    assert info.metric_crs == "EPSG:32633"
    assert info.gsd_m == pytest.approx(0.95, abs=0.1)  # 1e-5 degrees at 45 N


def test_corrupt_raster_raises_raster_error(tmp_path):
    path = tmp_path / "corrupt.tif"
    path.write_bytes(b"II*\x00" + b"\x00" * 100)
    with pytest.raises(RasterError, match="cannot open raster") as raised:
        open_raster(path, "corrupt")
    assert raised.value.kind == "corrupt_raster"


@pytest.mark.parametrize(
    ("crs", "origin", "message"),
    [
        (None, ORIGIN, "has no CRS"),
        ("EPSG:4326", ORIGIN, "not valid in EPSG:4326"),
        ("EPSG:3067", (-3_000_000.0, 6_672_000.0), "area of use"),
    ],
)
def test_crs_mismatches_raise_a_clear_error(tmp_path, crs, origin, message):
    path = write_raster(tmp_path / "mismatch.tif", crs=crs, origin=origin)
    with pytest.raises(CrsMismatchError, match=message) as raised:
        open_raster(path, "mismatch")
    assert raised.value.kind == "crs_mismatch"


def test_area_split_is_by_block_and_drops_tiles_that_straddle_splits():
    fractions = {"val": 0.1, "test": 0.1}
    blocks = {
        (c, r): area_split(
            (c * 1000 + 10, r * 1000 + 10, c * 1000 + 20, r * 1000 + 20), CRS, 1000, 0, fractions
        )
        for c in range(40)
        for r in range(40)
    }
    shares = {
        split: sum(s == split for s in blocks.values()) / len(blocks)
        for split in ("train", "val", "test")
    }
    assert shares["val"] == pytest.approx(0.1, abs=0.03) and shares["test"] == pytest.approx(
        0.1, abs=0.03
    )
    # Every tile inside one block shares its split.
    assert area_split((5500, 7200, 5900, 7900), CRS, 1000, 0, fractions) == blocks[5, 7]
    # A tile ending exactly on a block edge stays in its block.
    assert area_split((5000, 7000, 6000, 8000), CRS, 1000, 0, fractions) == blocks[5, 7]
    # A tile across two blocks of different splits is dropped.
    (c, r) = next(
        key for key, split in blocks.items() if split != blocks[key[0] + 1, key[1]] and key[0] < 39
    )
    assert (
        area_split(
            (c * 1000 + 900, r * 1000 + 10, c * 1000 + 1100, r * 1000 + 20), CRS, 1000, 0, fractions
        )
        is None
    )
    # The seed reshuffles blocks.
    reseeded = [
        area_split(
            (c * 1000 + 10, r * 1000 + 10, c * 1000 + 20, r * 1000 + 20), CRS, 1000, 1, fractions
        )
        for c, r in blocks
    ]
    assert reseeded != list(blocks.values())
