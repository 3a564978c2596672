"""Synthetic world -> files -> OSM pipeline -> truth: what the generator drew is what the
pipeline recovers from the GeoTIFF and the OSM file alone.

The generator's own truth (``truth.geojson``: each drawn footprint in the raster's CRS) is
carried to each tile's pixels here, clipped to the tile, and compared with the pipeline's
object of the same OSM id: mask and box IoU above 0.95 for every object the tag table keeps
(visible area at least ``min_pixels``), and no object without a drawn footprint.
"""

import json

import numpy as np
import pytest
import shapely
from osm_scene import tile_record
from shapely.geometry import shape

from geochat.data_builders.pipeline import BuildOptions, Source, build
from geochat.data_builders.synthetic import generate_world
from geochat.data_builders.tags import load_tag_table
from geochat.geometry import hbb_iou, mask_iou, polygon_to_rle
from geochat.records import iter_records

WORLD = 384
TILE = 192


@pytest.fixture(scope="module", params=["suburban", "harbour"])
def roundtrip(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"world_{request.param}")
    files = generate_world(folder / "world", seed=7, size_px=WORLD, scene=request.param)
    options = BuildOptions(tile_size=TILE, overlap=0, val_fraction=0, test_fraction=0)
    build(
        [Source((str(files.tif),), str(files.pbf))],
        folder / "out",
        options,
        generate=tile_record,
        workers=1,
        progress=False,
    )
    truth = json.loads(files.truth.read_text())
    manifest = json.loads((folder / "out" / "manifest.json").read_text())
    records = [r for s in manifest["shards"] for r in iter_records(folder / "out" / s["path"])]
    return truth, records


def _drawn_in_tile(feature, record):
    """The generator's footprint in the tile's pixels, clipped to the tile (independent maths:
    the tile's transform is axis-aligned)."""
    a, _, c, _, e, f = record["georef"]["transform"]
    pixels = shapely.transform(
        shape(feature["geometry"]),
        lambda xy: np.stack([(xy[:, 0] - c) / a, (xy[:, 1] - f) / e], axis=1),
    )
    return pixels.intersection(shapely.box(0, 0, record["width"], record["height"]))


def test_pipeline_recovers_the_drawn_truth(roundtrip):
    truth, records = roundtrip
    table = load_tag_table()
    assert len(records) == (WORLD // TILE) ** 2
    compared = set()
    for record in records:
        recovered = {obj["id"]: obj for obj in record["objects"]}
        size = (record["height"], record["width"])
        for feature in truth["features"]:
            drawn = _drawn_in_tile(feature, record)
            rule = table.rule_for(feature["properties"]["tags"])
            # Above the size threshold by more than the half-pixel band along the edge that
            # rasterising may add or remove; nearer the threshold one pixel flips the decision.
            if drawn.is_empty or drawn.area < rule.min_pixels + drawn.length / 2:
                continue
            osm_id = feature["properties"]["osm_id"]
            assert osm_id in recovered, f"{osm_id} ({rule.category}) is missing from {record['id']}"
            obj = recovered.pop(osm_id)
            assert obj["category"] == rule.category
            drawn_mask = polygon_to_rle(drawn, *size)
            assert mask_iou([obj["mask"]], [drawn_mask])[0, 0] > 0.95, osm_id
            assert hbb_iou([obj["hbb"]], [drawn.bounds])[0, 0] > 0.95, osm_id
            compared.add(rule.category)
        # Whatever is left sits at the size threshold, but was drawn in this tile too.
        drawn_ids = {f["properties"]["osm_id"]: f for f in truth["features"]}
        for osm_id in recovered:
            assert osm_id in drawn_ids and _drawn_in_tile(drawn_ids[osm_id], record).area > 0
    assert len(compared) >= 5, compared
