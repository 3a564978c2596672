"""Tests of geochat.georef against rasterio, pyproj and shapely directly."""

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import rasterio
from pyproj import Geod, Proj, Transformer
from rasterio.transform import Affine
from shapely.geometry import shape

from geochat.geometry import hbb_to_quad, mask_to_rle, obb_to_quad
from geochat.georef import (
    Georef,
    GeorefError,
    pixel_geometry,
    read_georef,
    to_geojson,
    to_pixel_geojson,
)
from geochat.grammar import parse

# UTM zone 33N, 0.5 m pixels, top-left corner on the zone's central meridian (15 E) near 42 N.
UTM = "EPSG:32633"
ORIGIN = (500000.0, 4650000.0)
UTM_AFFINE = Affine(0.5, 0, ORIGIN[0], 0, -0.5, ORIGIN[1])
UTM_TRANSFORM = tuple(UTM_AFFINE)[:6]


@dataclass
class Parsed:
    phrase: str | None
    kind: str
    hbb: Any = None
    quad: Any = None
    mask: Any = None


def write_raster(path, crs=UTM, driver="GTiff"):
    data = np.arange(3 * 16 * 24, dtype=np.uint8).reshape(3, 16, 24)
    profile = {"driver": driver, "width": 24, "height": 16, "count": 3, "dtype": "uint8"}
    if crs is not None:
        profile.update(crs=crs, transform=UTM_AFFINE)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
    return path


def shoelace(ring):
    ring = np.asarray(ring)
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * np.sum(x[:-1] * y[1:] - x[1:] * y[:-1])


def polygons_of(geometry):
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    return geometry["coordinates"]


def mask_with_hole():
    mask = np.zeros((16, 24), dtype=bool)
    mask[2:12, 3:15] = True
    mask[5:8, 6:10] = False
    return mask


# Reading


def test_read_georef_of_a_utm_geotiff(tmp_path):
    georef = read_georef(write_raster(tmp_path / "tile.tif"))
    assert georef == Georef(UTM, UTM_TRANSFORM)
    # The ground size is the grid size divided by the projection's point scale there.
    lon, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(*ORIGIN)
    scale = Proj(UTM).get_factors(lon, lat).meridional_scale
    assert georef.gsd == pytest.approx(0.5 / scale, rel=1e-6)
    assert georef.gsd == pytest.approx(0.5, rel=1e-3)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_read_georef_of_images_without_a_crs(tmp_path):
    assert read_georef(write_raster(tmp_path / "plain.png", crs=None, driver="PNG")) is None
    assert read_georef(write_raster(tmp_path / "plain.tif", crs=None)) is None


def test_read_georef_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_georef(tmp_path / "missing.tif")
    not_an_image = tmp_path / "notes.tif"
    not_an_image.write_text("hello")
    with pytest.raises(GeorefError, match=r"cannot read .*notes\.tif"):
        read_georef(not_an_image)


# The dataclass


def test_record_dict_round_trip():
    georef = Georef.from_dict({"crs": UTM, "transform": list(UTM_TRANSFORM)})
    assert georef.to_dict() == {"crs": UTM, "transform": list(UTM_TRANSFORM)}
    assert Georef.from_dict(json.loads(json.dumps(georef.to_dict()))) == georef


@pytest.mark.parametrize(
    ("georef", "message"),
    [
        ({"crs": "EPSG:999999", "transform": list(UTM_TRANSFORM)}, "unknown CRS"),
        ({"crs": UTM, "transform": [1, 2, 3, 4, 5]}, "6 finite numbers"),
        ({"crs": UTM, "transform": [1, 0, 0, 0, math.nan, 0]}, "6 finite numbers"),
        ({"crs": UTM, "transform": [1, 2, 0, 2, 4, 0]}, "not invertible"),
        ({"crs": UTM}, "needs 'crs'"),
        ({"crs": UTM, "transform": 5}, "needs 'crs'"),
    ],
)
def test_invalid_georefs_are_refused(georef, message):
    with pytest.raises(GeorefError, match=message):
        Georef.from_dict(georef)


# Transforms


def test_pixel_to_crs_follows_rasterio_conventions():
    georef = Georef(UTM, UTM_TRANSFORM)
    # (0, 0) is the top-left corner of the top-left pixel; rows go south.
    np.testing.assert_allclose(georef.pixel_to_crs([0, 0]), ORIGIN)
    np.testing.assert_allclose(georef.pixel_to_crs([[10, 20]]), [[500005.0, 4649990.0]])
    # Same as rasterio's own transform.xy of a pixel corner.
    expected = rasterio.transform.xy(UTM_AFFINE, 20, 10, offset="ul")
    np.testing.assert_allclose(georef.pixel_to_crs([10, 20]), expected)
    np.testing.assert_allclose(georef.crs_to_pixel([500005.0, 4649990.0]), [10, 20])


def test_rotated_transform_round_trip():
    georef = Georef(UTM, (0.4, 0.3, 500000.0, 0.3, -0.4, 4650000.0))
    pixels = np.array([[0, 0], [12.5, 3.25], [24, 16]])
    np.testing.assert_allclose(georef.pixel_to_crs(pixels)[1], [500005.975, 4650002.45])
    np.testing.assert_allclose(georef.crs_to_pixel(georef.pixel_to_crs(pixels)), pixels)


def test_lonlat_of_a_known_point_agrees_with_pyproj():
    georef = Georef(UTM, UTM_TRANSFORM)
    expected = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(500005, 4649990)
    np.testing.assert_allclose(georef.pixel_to_lonlat([10, 20]), expected, rtol=0, atol=1e-12)
    lon, lat = expected
    assert lon == pytest.approx(15.0, abs=1e-3) and lat == pytest.approx(42.0, abs=0.1)


def test_pixel_lonlat_pixel_round_trip():
    georef = Georef(UTM, UTM_TRANSFORM)
    pixels = np.stack(np.meshgrid(np.linspace(0, 24, 5), np.linspace(0, 16, 4)), axis=-1)  # [4,5,2]
    lonlat = georef.pixel_to_lonlat(pixels)
    assert lonlat.shape == pixels.shape
    np.testing.assert_allclose(georef.lonlat_to_pixel(lonlat), pixels, atol=1e-6)


@pytest.mark.parametrize("points", [[1, 2, 3], [[math.nan, 1]], "ab"])
def test_bad_points_are_refused(points):
    with pytest.raises(GeorefError):
        Georef(UTM, UTM_TRANSFORM).pixel_to_lonlat(points)


def test_gsd_of_a_geographic_crs_is_in_metres():
    # 1e-5 degree pixels on the equator: one degree is 2 pi a / 360 m east-west and
    # a (1 - e^2) pi / 180 m north-south on the WGS84 ellipsoid.
    georef = Georef("EPSG:4326", (1e-5, 0, 10.0, 0, -1e-5, 0.0))
    a, e2 = 6378137.0, 0.00669437999014
    east = 1e-5 * 2 * math.pi * a / 360
    north = 1e-5 * a * (1 - e2) * math.pi / 180
    assert georef.gsd == pytest.approx(math.sqrt(east * north), rel=1e-6)


def test_gsd_of_web_mercator_is_the_ground_size():
    # Web Mercator maps lon/lat with spherical formulas (radius a): at 60 N one of its "metres"
    # spans cos(lat) / a radians, which is about 0.5 m on the WGS84 ellipsoid.
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(10, 60)
    e2, lat = 0.00669437999014, math.radians(60)
    w = 1 - e2 * math.sin(lat) ** 2
    east = math.cos(lat) / math.sqrt(w)  # prime vertical radius N * cos(lat) * d_lon
    north = math.cos(lat) * (1 - e2) / w**1.5  # meridian radius M * d_lat
    gsd = Georef("EPSG:3857", (1, 0, x, 0, -1, y)).gsd
    assert gsd == pytest.approx(math.sqrt(east * north), rel=1e-5)
    assert gsd == pytest.approx(0.5, rel=2e-3)


# GeoJSON


def sample_objects():
    return [
        Parsed("the ship", "hbb", hbb=[2, 3, 10, 7]),
        Parsed("the barge", "quad", quad=obb_to_quad(12, 8, 8, 3, 30)),
        Parsed("the pond", "mask", mask=mask_to_rle(mask_with_hole())),
        Parsed(None, "none"),
        Parsed("nothing", "mask", mask=mask_to_rle(np.zeros((16, 24), dtype=bool))),
    ]


def test_geojson_is_rfc7946(tmp_path):
    georef = read_georef(write_raster(tmp_path / "tile.tif"))
    collection = json.loads(json.dumps(to_geojson(sample_objects(), georef)))
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert [f["properties"]["phrase"] for f in features] == ["the ship", "the barge", "the pond"]
    assert [f["properties"]["kind"] for f in features] == ["hbb", "quad", "mask"]
    for feature in features:
        assert feature["type"] == "Feature"
        assert shape(feature["geometry"]).is_valid
        for rings in polygons_of(feature["geometry"]):
            for index, ring in enumerate(rings):
                assert ring[0] == ring[-1] and len(ring) >= 4  # closed
                # Right-hand rule: exterior counter-clockwise (positive area), holes clockwise.
                assert (shoelace(ring) > 0) == (index == 0)
                lon, lat = np.asarray(ring).T
                assert np.all(np.abs(lon - 15) < 0.01) and np.all(np.abs(lat - 42) < 0.1)
    assert len(polygons_of(features[2]["geometry"])[0]) == 2  # the pond keeps its hole


def test_geojson_box_corners_and_area_agree_with_pyproj(tmp_path):
    georef = Georef(UTM, UTM_TRANSFORM)
    feature = to_geojson([Parsed("ship", "hbb", hbb=[2, 3, 10, 7])], georef)["features"][0]
    to_lonlat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    corners = {tuple(np.round(c, 9)) for c in feature["geometry"]["coordinates"][0]}
    expected = {
        tuple(np.round(to_lonlat.transform(ORIGIN[0] + 0.5 * x, ORIGIN[1] - 0.5 * y), 9))
        for x, y in hbb_to_quad([2, 3, 10, 7])
    }
    assert corners == expected
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(shape(feature["geometry"]))
    assert area == pytest.approx(8 * 4 * georef.gsd**2, rel=1e-3)
    assert feature["properties"]["pixel_geometry"]["coordinates"][0][0] == [2.0, 3.0]


def test_mask_of_two_parts_becomes_a_multipolygon():
    mask = np.zeros((16, 24), dtype=bool)
    mask[1:4, 1:4] = True
    mask[8:12, 10:20] = True
    geometry = pixel_geometry(Parsed("two ponds", "mask", mask=mask_to_rle(mask)))
    assert geometry.geom_type == "MultiPolygon" and len(geometry.geoms) == 2
    assert geometry.area == mask.sum()


def test_pixel_geojson_keeps_pixel_coordinates():
    collection = to_pixel_geojson(sample_objects())
    assert collection["coordinate_space"] == "pixel"
    box, quad, pond = (shape(f["geometry"]) for f in collection["features"])
    assert box.bounds == (2, 3, 10, 7)
    assert quad.area == pytest.approx(24)
    assert pond.area == mask_with_hole().sum()
    for feature in collection["features"]:
        for rings in polygons_of(feature["geometry"]):
            assert shoelace(rings[0]) > 0


def test_degenerate_objects_are_skipped():
    flat = Parsed("flat", "quad", quad=[[0, 0], [5, 5], [5, 5], [0, 0]])
    missing = Parsed("no box", "hbb", hbb=None)
    assert to_pixel_geojson([flat, missing, Parsed(None, "none")])["features"] == []


def test_parsed_grammar_answers_export_directly():
    answer = "<ref>a ship</ref><box>[[100,200,500,600]]</box> and <ref>no barge</ref><none>"
    parsed = parse(answer, 24, 16)
    collection = to_geojson(parsed.objects, Georef(UTM, UTM_TRANSFORM))
    (feature,) = collection["features"]
    assert feature["properties"]["phrase"] == "a ship"
    assert shape(feature["properties"]["pixel_geometry"]).bounds == pytest.approx(
        (2.4, 3.2, 12, 9.6)
    )
