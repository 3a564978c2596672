import pytest
import shapely
from osm_scene import CRS, OsmWriter, make_scene, metres, write_geojson
from pyproj import Transformer
from shapely.geometry import Polygon

from geochat.data_builders.osm import OsmError, read_features, reproject
from geochat.data_builders.tags import load_tag_table


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="module")
def table():
    return load_tag_table()


def _to_metres(geometry):
    return reproject(geometry, Transformer.from_crs("EPSG:4326", CRS, always_xy=True))


def _by_id(read):
    return {feature.id: feature for feature in read.features}


@pytest.mark.parametrize("fmt", ["osm_pbf", "osm_xml"])
def test_reads_visible_features_with_their_kind_and_category(scene, table, fmt):
    features = _by_id(read_features(getattr(scene, fmt), table))
    ids = scene.ids
    expected = {
        ids["house"]: ("area", "building"),
        ids["lake"]: ("area", "water"),
        ids["road"]: ("line", "road"),
        ids["path"]: ("line", "footpath"),
        ids["tree"]: ("node", "tree"),
    }
    for feature_id, (kind, category) in expected.items():
        assert (features[feature_id].kind, features[feature_id].rule.category) == (kind, category)
    # A closed building way arrives once (as an area), not also as a line.
    assert sum(feature_id == ids["house"] for feature_id in features) == 1


def test_multipolygon_relation_keeps_its_hole(scene, table):
    lake = _by_id(read_features(scene.osm_pbf, table))[scene.ids["lake"]]
    polygon = _to_metres(lake.geometry)
    assert polygon.symmetric_difference(scene.truth["lake"]).area < 0.01 * scene.truth["lake"].area
    assert not polygon.contains(shapely.Point(metres(190, 190)))  # the island


def test_geometry_is_lonlat_of_what_was_written(scene, table):
    house = _by_id(read_features(scene.osm_pbf, table))[scene.ids["house"]]
    assert -180 <= house.geometry.bounds[0] <= 180
    recovered = _to_metres(house.geometry)
    truth = scene.truth["house"]
    assert recovered.intersection(truth).area / recovered.union(truth).area > 0.999


def test_box_filter_skips_features_outside_while_reading(scene, table):
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    west, north = to_lonlat.transform(*metres(0, 0))
    east, south = to_lonlat.transform(*metres(256, 256))
    inside = _by_id(read_features(scene.osm_pbf, table, (west, south, east, north)))
    everything = _by_id(read_features(scene.osm_pbf, table))
    assert scene.ids["far"] in everything
    assert scene.ids["far"] not in inside
    assert scene.ids["house"] in inside


def test_nodes_without_footprint_and_broken_ways_are_counted(tmp_path, table):
    writer = OsmWriter()
    writer.node(*metres(5, 5), {"building": "yes"})
    corners = [metres(0, 0), metres(10, 0), metres(10, 10)]
    cut_short = writer.way(corners, {"highway": "residential"}, closed=False)
    writer.way(corners, {"highway": "service"}, closed=False)
    path = writer.write(tmp_path / "clipped_extract.osm")
    # Point ways at nodes the file does not hold, as a clipped extract does: one way keeps
    # two of its nodes, the other keeps one and cannot be drawn.
    text = path.read_text()
    for node_id in (2, 6, 7):
        text = text.replace(f'<nd ref="{node_id}"/>', f'<nd ref="{900 + node_id}"/>')
    path.write_text(text)
    read = read_features(path, table)
    assert read.skipped == {"node_without_footprint": 1, "unusable_geometry": 1}
    assert [feature.id for feature in read.features] == [f"way/{cut_short}"]
    assert len(read.features[0].geometry.coords) == 2


def test_geojson_input_gives_the_same_features(scene, table, tmp_path):
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    house = reproject(scene.truth["house"], to_lonlat)
    path = write_geojson(
        tmp_path / "f.geojson",
        [
            (house, {"building": "house", "@id": "way/5"}),
            (house.centroid, {"natural": "tree"}),
            (house, {"shop": "bakery"}),
        ],
    )
    features = read_features(path, table).features
    assert [(f.id, f.kind, f.rule.category) for f in features] == [
        ("way/5", "area", "building"),
        ("feature/1", "node", "tree"),
    ]
    assert features[0].geometry.equals_exact(house, 1e-9)


def test_geojson_legacy_crs_member_is_reprojected_to_lonlat(scene, table, tmp_path):
    path = write_geojson(
        tmp_path / "f.geojson", [(scene.truth["house"], {"building": "yes"})], crs=CRS
    )
    (feature,) = read_features(path, table).features
    recovered = _to_metres(feature.geometry)
    assert recovered.symmetric_difference(scene.truth["house"]).area < 1e-3


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("cut.osm.pbf", None, "cannot read OSM file"),
        ("bad.osm", b'<osm version="0.6"><node id="1" lat="1" lon=', "XML parsing error"),
        ("bad.geojson", b'{"type": "FeatureCollection", "features": [', "cannot read GeoJSON"),
        ("notfc.geojson", b'{"type": "Feature"}', "FeatureCollection"),
        ("data.csv", b"a,b", "unknown OSM format"),
    ],
)
def test_broken_files_raise_osm_error_naming_the_file(
    scene, table, tmp_path, name, content, message
):
    path = tmp_path / name
    path.write_bytes(scene.osm_pbf.read_bytes()[:200] if content is None else content)
    with pytest.raises(OsmError, match=message) as raised:
        read_features(path, table)
    assert name in str(raised.value)


def test_missing_file_raises_osm_error(table, tmp_path):
    with pytest.raises(OsmError, match="not found"):
        read_features(tmp_path / "nothing.osm.pbf", table)


def test_reproject_round_trips():
    polygon = Polygon([(500000, 5000000), (500010, 5000000), (500010, 5000010)])
    there = reproject(polygon, Transformer.from_crs(CRS, "EPSG:4326", always_xy=True))
    back = reproject(there, Transformer.from_crs("EPSG:4326", CRS, always_xy=True))
    assert back.equals_exact(polygon, 1e-6)
