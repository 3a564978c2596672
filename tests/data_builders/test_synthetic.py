"""The synthetic world: files that open, determinism, occlusion-free truth that matches the
picture, and OSM that reproduces the truth."""

import argparse
import json
import math
import os
import stat

import numpy as np
import osmium
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import Affine
from shapely.geometry import LineString, Point, Polygon, shape

from geochat.data_builders.synthetic import (
    SCENES,
    SyntheticWorldError,
    add_synthetic_arguments,
    build_world,
    generate_world,
    generate_worlds,
    synthetic_main,
)
from geochat.data_builders.tags import load_tag_table
from geochat.geometry import rasterize

SIZE = 256
ORIGIN = (500_000.0, 5_000_000.0)
CRS = "EPSG:32633"
GROUND, OBJECT, MOVER = 0, 2, 3
OSM_TYPES = {"n": "node", "w": "way", "r": "relation"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    files = generate_world(folder, seed=3, size_px=SIZE, gsd=0.5, origin=ORIGIN, scene="mixed")
    return files, json.loads(files.truth.read_text())


def read_osm(path):
    """Every object of an OSM file as comparable tuples, in file order."""
    objects = []
    for entity in osmium.FileProcessor(str(path)):
        tags = dict(entity.tags)
        meta = (entity.id, entity.version, entity.timestamp.year)
        if entity.is_node():
            objects.append(("n", *meta, tags, (entity.location.lon, entity.location.lat)))
        elif entity.is_way():
            objects.append(("w", *meta, tags, tuple(n.ref for n in entity.nodes)))
        else:
            members = tuple((m.type, m.ref, m.role) for m in entity.members)
            objects.append(("r", *meta, tags, members))
    return objects


def pixel_footprints(truth):
    """Truth footprints carried from the raster CRS to pixels."""
    inverse = ~Affine(*truth["world"]["transform"])
    matrix = [inverse.a, inverse.b, inverse.d, inverse.e, inverse.c, inverse.f]
    return [
        shapely.affinity.affine_transform(shape(f["geometry"]), matrix) for f in truth["features"]
    ]


def test_geotiff_has_the_crs_transform_and_gsd(world):
    files, truth = world
    with rasterio.open(files.tif) as dataset:
        assert dataset.crs.to_string() == CRS
        assert dataset.transform == Affine(0.5, 0.0, ORIGIN[0], 0.0, -0.5, ORIGIN[1])
        assert dataset.res == (0.5, 0.5)
        assert (dataset.count, dataset.width, dataset.height) == (3, SIZE, SIZE)
        assert dataset.dtypes == ("uint8",) * 3
        pixels = dataset.read()
    assert pixels.std() > 10  # a picture, not a flat fill
    assert truth["world"]["crs"] == CRS and truth["world"]["gsd"] == 0.5


def test_osm_xml_and_pbf_hold_the_same_objects(world):
    files, _ = world
    xml, pbf = read_osm(files.osm), read_osm(files.pbf)
    assert xml == pbf
    for kind in "nwr":
        ids = [o[1] for o in xml if o[0] == kind]
        assert all(i > 0 for i in ids) and len(ids) == len(set(ids))
    assert all(o[2] == 1 and o[3] == 2024 for o in xml)  # version and timestamp


def test_nodes_lie_inside_the_raster(world):
    files, _ = world
    to_crs = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    lonlat = np.array([o[5] for o in read_osm(files.pbf) if o[0] == "n"])
    x, y = to_crs.transform(lonlat[:, 0], lonlat[:, 1])
    tolerance = 0.02  # metres: OSM keeps 1e-7 degree
    assert x.min() >= ORIGIN[0] - tolerance and x.max() <= ORIGIN[0] + SIZE * 0.5 + tolerance
    assert y.max() <= ORIGIN[1] + tolerance and y.min() >= ORIGIN[1] - SIZE * 0.5 - tolerance


def test_truth_has_one_feature_per_tagged_osm_object(world):
    files, truth = world
    tagged = {f"{OSM_TYPES[o[0]]}/{o[1]}" for o in read_osm(files.osm) if o[4]}
    ids = [f["id"] for f in truth["features"]]
    assert len(ids) == len(set(ids)) and set(ids) == tagged
    for feature, footprint in zip(truth["features"], pixel_footprints(truth), strict=True):
        assert feature["properties"]["osm_id"] == feature["id"]
        assert footprint.is_valid and footprint.area > 0


def test_the_truth_names_each_feature_s_category_and_what_each_category_is(world):
    # Readers of the truth (geochat eval --scenes) need no tag table: the truth says it all.
    _, truth = world
    table = load_tag_table()
    assert truth["world"]["generator"] == "geochat synthetic world 2"
    named = set()
    for feature in truth["features"]:
        rule = table.rule_for(feature["properties"]["tags"])
        expected = (None, None) if rule is None else (rule.category, rule.min_pixels)
        assert (feature["properties"]["category"], feature["properties"]["min_pixels"]) == expected
        named.add(feature["properties"]["category"])
    assert {"car", "road", "water"} <= named
    categories = truth["categories"]
    assert list(categories) == list(table.categories)
    assert categories["car"] == {"plural": "cars", "countable": True, "segmented": False}
    assert categories["building"] == {"plural": "buildings", "countable": True, "segmented": True}
    assert categories["water"] == {"plural": "water bodies", "countable": False, "segmented": True}
    assert categories["road"] == {"plural": "roads", "countable": False, "segmented": False}


@pytest.mark.parametrize("scene", SCENES)
def test_every_scene_builds(scene):
    world = build_world(11, 160, 128, gsd=0.6, scene=scene)
    assert world.image.shape == (128, 160, 3) and world.image.dtype == np.uint8
    assert world.features
    assert all(f.footprint.is_valid for f in world.features)


def test_a_shore_whose_buffer_self_intersects_still_paints():
    # Regression: world 827 of `--n 1200 --seed 11` (512 px, 0.3 m) stopped the whole build
    # with a GEOS TopologyException: its stream's banks buffered into an invalid polygon.
    world = build_world(
        5861169719959038174, 512, 512, gsd=0.3, origin=(506758.4, 4642934.4), scene="suburban"
    )
    assert any(f.tags.get("waterway") == "stream" for f in world.features)


def test_same_seed_same_world_other_seed_other_world(tmp_path):
    def make(name, seed):
        files = generate_world(tmp_path / name, seed=seed, size_px=128, scene="suburban")
        with rasterio.open(files.tif) as dataset:
            pixels = dataset.read()
        contents = [path.read_bytes() for path in (files.tif, files.osm, files.pbf, files.truth)]
        return pixels, read_osm(files.pbf), contents

    first, again, other = make("a", 5), make("b", 5), make("c", 6)
    assert np.array_equal(first[0], again[0])
    assert first[1] == again[1]
    assert first[2] == again[2]  # every file, byte for byte
    assert not np.array_equal(first[0], other[0])
    assert first[1] != other[1]


def overlap_problems(truth):
    """Pairs of footprints that overlap against the layering rules."""
    features, shapes = truth["features"], pixel_footprints(truth)
    index = shapely.STRtree(shapes)
    problems = []
    for i, j in zip(*index.query(shapes, predicate="intersects"), strict=True):
        if i >= j or shapes[i].intersection(shapes[j]).area < 1e-6:
            continue
        a, b = features[i]["properties"], features[j]["properties"]
        if (a["layer"] == GROUND) != (b["layer"] == GROUND):
            continue  # everything lies on land use
        if a["support"] == features[j]["id"] or b["support"] == features[i]["id"]:
            continue  # a vehicle on its road, a ship on its water
        if "highway" in a["tags"] and "highway" in b["tags"]:
            continue  # roads meet at junctions
        problems.append((a["osm_id"], a["tags"], b["osm_id"], b["tags"]))
    return problems


@pytest.mark.parametrize("scene", ["suburban", "harbour", "airport", "mixed"])
def test_footprints_overlap_only_by_layer(tmp_path, scene):
    files = generate_world(tmp_path, seed=21, size_px=SIZE, scene=scene)
    truth = json.loads(files.truth.read_text())
    assert overlap_problems(truth) == []


def test_overlap_check_sees_an_overlap(world):
    _, truth = world
    broken = json.loads(json.dumps(truth))
    objects = [f for f in broken["features"] if f["properties"]["layer"] == OBJECT]
    objects[1]["geometry"] = objects[0]["geometry"]
    assert overlap_problems(broken)


def test_vehicles_and_ships_lie_on_their_support(tmp_path):
    movers = 0
    for scene in ("harbour", "suburban", "industrial"):
        truth = json.loads(
            generate_world(
                tmp_path / scene, 4, size_px=SIZE, scene=scene, density=3.0
            ).truth.read_text()
        )
        by_id = {
            f["id"]: (f, s) for f, s in zip(truth["features"], pixel_footprints(truth), strict=True)
        }
        for feature, footprint in by_id.values():
            properties = feature["properties"]
            if properties["layer"] != MOVER:
                continue
            movers += 1
            support, under = by_id[properties["support"]]
            tags, below = properties["tags"], support["properties"]["tags"]
            if "ship" in tags:
                assert below.get("natural") == "water" or "waterway" in below
            else:
                assert tags["vehicle"] in ("car", "truck")
                assert {"highway", "amenity", "aeroway"} & set(below)
            assert under.buffer(1e-6).contains(footprint)
    assert movers > 10


def worlds_with(predicate, scene, size=SIZE, tries=12):
    """The first small world (seeds 0, 1, ...) with a feature that fits ``predicate``."""
    for seed in range(tries):
        world = build_world(seed, size, size, gsd=0.5, scene=scene)
        if any(predicate(f) for f in world.features):
            return world
    raise AssertionError(f"no {scene} world among {tries} seeds has the feature")


def test_pools_are_drawn_where_the_truth_says(tmp_path):
    world = worlds_with(
        lambda f: "leisure" in f.tags and f.tags["leisure"] == "swimming_pool", "suburban"
    )
    image = world.image.astype(np.float64)
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    pools = [f.footprint for f in world.features if f.tags.get("leisure") == "swimming_pool"]
    truth_mask = rasterize(shapely.union_all(pools), SIZE, SIZE)
    for pool in pools:
        inside = rasterize(pool, SIZE, SIZE)
        mean = image[inside].mean(axis=0)
        assert mean[2] > mean[0] + 60 and mean[1] > mean[0] + 50, mean  # turquoise
    # Pool water is the only bright turquoise: a colour threshold finds the truth's pixels.
    turquoise = (blue > 140) & (green > 120) & (blue - red > 60)
    intersection = (turquoise & truth_mask).sum()
    assert intersection / (turquoise | truth_mask).sum() > 0.8


def test_tank_is_a_bright_disc_on_its_footprint():
    size = 384  # tank farms need industrial blocks larger than a 256 px scene has
    world = worlds_with(lambda f: f.tags.get("man_made") == "storage_tank", "industrial", size)
    brightness = world.image.astype(np.float64).mean(axis=2)
    tanks = [f for f in world.features if f.tags.get("man_made") == "storage_tank"]
    for tank in tanks:
        inside = rasterize(tank.footprint, size, size)
        around = rasterize(tank.footprint.buffer(4.0), size, size)
        ring = around & ~rasterize(tank.footprint.buffer(1.0), size, size)
        assert brightness[inside].mean() > brightness[ring].mean() + 25


def test_a_lake_with_an_island_is_a_multipolygon_with_a_hole(tmp_path):
    def has_island(feature):
        return (
            feature.tags.get("natural") == "water"
            and isinstance(feature.footprint, Polygon)
            and bool(feature.footprint.interiors)
        )

    world = worlds_with(has_island, "suburban")
    files = generate_world(tmp_path, world.seed, size_px=SIZE, gsd=0.5, scene="suburban")
    holes = [
        entity.num_rings()[1]
        for entity in osmium.FileProcessor(str(files.pbf)).with_areas()
        if entity.is_area() and entity.tags.get("natural") == "water" and not entity.from_way()
    ]
    assert holes and min(holes) >= 1
    truth = json.loads(files.truth.read_text())
    lakes = [f for f in truth["features"] if f["id"].startswith("relation/")]
    assert any(shape(f["geometry"]).interiors for f in lakes)


def test_osm_geometry_drawn_by_the_tag_table_reproduces_the_truth(world):
    """What a reader of the OSM file draws (areas as they are, lines and nodes buffered by the
    tag table) is the truth footprint, to OSM's coordinate precision."""
    files, truth = world
    table = load_tag_table()
    to_crs = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    frame = shapely.box(ORIGIN[0], ORIGIN[1] - SIZE * 0.5, ORIGIN[0] + SIZE * 0.5, ORIGIN[1])
    locations, ways = {}, {}
    for entity in osmium.FileProcessor(str(files.pbf)):
        if entity.is_node():
            locations[entity.id] = to_crs.transform(entity.location.lon, entity.location.lat)
        elif entity.is_way():
            ways[entity.id] = [n.ref for n in entity.nodes]
    checked = 0
    for feature in truth["features"]:
        kind, number = feature["id"].split("/")
        tags = feature["properties"]["tags"]
        if kind == "relation":
            continue  # assembled by osmium in the lake test
        if kind == "node":
            geometry, drawn_as = Point(locations[int(number)]), "node"
        else:
            points = [locations[n] for n in ways[int(number)]]
            closed = feature["properties"]["kind"] == "area"
            geometry, drawn_as = (
                (Polygon(points), "area") if closed else (LineString(points), "line")
            )
        drawn = table.rule_for(tags).footprint(drawn_as, geometry, tags).intersection(frame)
        expected = shape(feature["geometry"])
        assert drawn.intersection(expected).area / drawn.union(expected).area > 0.999, tags
        checked += 1
    assert checked > 20


def test_invalid_arguments_are_refused(tmp_path):
    bad = [
        {"gsd": 0.0},
        {"gsd": float("nan")},
        {"scene": "moon"},
        {"crs": "EPSG:4326"},
        {"crs": "not a crs"},
        {"width": 8},
        {"density": -1.0},
        {"origin": (math.nan, 0.0)},
        {"seed": -1},
        {"seed": 1.5},
    ]
    for arguments in bad:
        call = {"seed": 0, **arguments}
        with pytest.raises(SyntheticWorldError):
            generate_world(tmp_path / "never", **call)
    assert not (tmp_path / "never").exists()


def test_generate_worlds_places_worlds_apart(tmp_path):
    files = generate_worlds(tmp_path, n=3, seed=1, width=64, height=48, gsd=1.0)
    assert [f.directory.name for f in files] == ["world_0000", "world_0001", "world_0002"]
    boxes = []
    for written in files:
        with rasterio.open(written.tif) as dataset:
            boxes.append(shapely.box(*dataset.bounds))
    assert all(not a.intersects(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    manifest = json.loads((tmp_path / "worlds.json").read_text())["worlds"]
    assert len({w["seed"] for w in manifest}) == 3
    assert {w["scene"] for w in manifest} <= set(SCENES)
    # Two processes write the same worlds as one.
    again = generate_worlds(
        tmp_path / "again", n=3, seed=1, width=64, height=48, gsd=1.0, workers=2
    )
    assert [f.osm.read_bytes() for f in again] == [f.osm.read_bytes() for f in files]


def test_command_line_writes_the_worlds(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_synthetic_arguments(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path), "--n", "2", "--size", "64", "--scene", "harbour"]
    )
    assert synthetic_main(args) == 0
    assert (tmp_path / "world_0001" / "world.osm.pbf").is_file()
    assert "2 synthetic world" in capsys.readouterr().out


def test_a_gsd_range_gives_each_world_its_own_gsd_drawn_by_its_seed(tmp_path):
    parser = argparse.ArgumentParser()
    add_synthetic_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "a"), "--n", "4", "--size", "32"])
    assert args.gsd == 0.5
    args = parser.parse_args(
        ["--out", str(tmp_path / "a"), "--n", "4", "--size", "32", "--gsd", "0.2:0.6"]
    )
    assert args.gsd == (0.2, 0.6)
    assert synthetic_main(args) == 0
    manifest = json.loads((tmp_path / "a" / "worlds.json").read_text())["worlds"]
    gsds = [w["gsd"] for w in manifest]
    assert len(set(gsds)) == 4 and all(0.2 <= g <= 0.6 for g in gsds)
    for world, gsd in zip(manifest, gsds, strict=True):
        with rasterio.open(tmp_path / "a" / world["out_dir"].split("/")[-1] / "world.tif") as tif:
            assert tif.res == pytest.approx((gsd, gsd))
    # The same seed gives the same GSDs, and a world's GSD does not depend on how many are built.
    again = generate_worlds(tmp_path / "b", n=2, seed=0, width=32, height=32, gsd=(0.2, 0.6))
    assert [
        w["gsd"] for w in json.loads((tmp_path / "b" / "worlds.json").read_text())["worlds"]
    ] == gsds[:2]
    for written, gsd in zip(again, gsds, strict=False):
        with rasterio.open(written.tif) as tif:
            assert tif.res == pytest.approx((gsd, gsd))
    with pytest.raises(SyntheticWorldError, match="low <= high"):
        generate_worlds(tmp_path / "c", gsd=(0.6, 0.2), width=32, height=32)
    with pytest.raises(SyntheticWorldError, match="gsd must be in"):
        generate_worlds(tmp_path / "c", gsd=(0.2, 9.0), width=32, height=32)
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--gsd", "0.2:0.4:0.6"])


def test_world_files_get_the_mode_open_would_give(tmp_path):
    previous = os.umask(0o022)
    try:
        files = generate_world(tmp_path / "w", seed=1, size_px=64, scene="suburban")
    finally:
        os.umask(previous)

    written = sorted(files.directory.iterdir())
    assert written and {stat.S_IMODE(path.stat().st_mode) for path in written} == {0o644}
