import argparse
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from osm_scene import make_scene, tile_record, write_raster
from PIL import Image

from geochat.data_builders import pipeline
from geochat.data_builders.cli import main
from geochat.data_builders.pipeline import BuildOptions, Source, build
from geochat.data_builders.shards import BuildDirectoryError
from geochat.data_builders.tiling import area_split
from geochat.imagery import ImagerySettings
from geochat.records import iter_records

OPTIONS = BuildOptions(tile_size=128, overlap=0, shard_tiles=2, val_fraction=0.0, test_fraction=0.0)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene"))


def _build(scene, out, options=OPTIONS, **kwargs):
    kwargs.setdefault("workers", 1)
    return build(
        [Source((str(scene.raster),), str(scene.osm_pbf))],
        out,
        options,
        generate=tile_record,
        progress=False,
        **kwargs,
    )


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _records(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    return [record for shard in manifest["shards"] for record in iter_records(out / shard["path"])]


def test_build_writes_records_images_manifest_and_summary(scene, tmp_path):
    summary = _build(scene, tmp_path / "out")
    out = tmp_path / "out"
    records = _records(out)
    assert [r["id"] for r in records] == [
        f"scene_{r:03d}_{c:03d}-ground" for r in (0, 1) for c in (0, 1)
    ]
    for record in records:
        with Image.open(out / record["image"]) as image:
            assert image.size == (128, 128) and image.mode == "RGB"
        assert record["split"] == "train" and record["gsd"] == pytest.approx(0.5)
    house = next(o for o in records[0]["objects"] if o["id"] == scene.ids["house"])
    assert house["category"] == "building" and house["attributes"]["colour"] == "red"
    assert summary["tiles"] == {"planned": 4, "written": 4}
    assert summary["records"]["total"] == 4 and summary["records"]["by_task"] == {"ground": 4}
    assert summary["objects"]["dropped"] == {"too_small": {"building": 1}}
    assert summary["objects"]["kept"]["building"] == 3  # house + both halves of the hall
    assert summary["features"]["skipped"] == {"node_without_footprint": 1}
    assert summary["errors"] == [] and summary["error_counts"] == {}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"]["records"] == 4
    assert manifest["arguments"]["tag_table"]["version"] >= 1
    assert manifest["arguments"]["generate"] == "osm_scene:tile_record"
    assert [s["path"] for s in manifest["shards"]] == ["train-00000.jsonl", "train-00001.jsonl"]
    assert json.loads((out / "summary.json").read_text()) == summary


def test_worker_count_does_not_change_the_output(scene, tmp_path):
    _build(scene, tmp_path / "one", workers=1)
    _build(scene, tmp_path / "two", workers=2)
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")


def test_resumed_build_equals_an_uninterrupted_one(scene, tmp_path, monkeypatch):
    _build(scene, tmp_path / "whole")
    calls = {"n": 0}
    real_check = pipeline.check_record

    def crash_on_third_tile(record):
        calls["n"] += 1
        if calls["n"] == 3:  # the first tile of the second job: its PNG is written, no shard yet
            raise RuntimeError("injected crash")
        return real_check(record)

    monkeypatch.setattr(pipeline, "check_record", crash_on_third_tile)
    with pytest.raises(RuntimeError, match="injected"):
        _build(scene, tmp_path / "resumed")
    partial = tmp_path / "resumed"
    assert (partial / "train-00000.jsonl").exists() and not (partial / "train-00001.jsonl").exists()
    assert json.loads((partial / "manifest.json").read_text())["status"] == "running"
    monkeypatch.setattr(pipeline, "check_record", real_check)
    _build(scene, partial)
    assert _digests(partial) == _digests(tmp_path / "whole")


@pytest.mark.slow
def test_a_killed_build_resumes_to_the_same_files(tmp_path):
    scene = make_scene(tmp_path)
    write_raster(scene.raster, size=512)  # 64 tiles of 64 px, one job each
    options = BuildOptions(tile_size=64, overlap=0, shard_tiles=1)
    script = (
        "import sys; from geochat.data_builders.pipeline import BuildOptions, Source, build; "
        "from geochat.imagery import ImagerySettings; from osm_scene import tile_record; "
        f"build([Source(({str(scene.raster)!r},), {str(scene.osm_pbf)!r})], sys.argv[1], "
        f"{options!r}, generate=tile_record, workers=1, progress=False)"
    )
    killed = tmp_path / "killed"
    # The tree under test stays first on the path (an installed copy may differ).
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    process = subprocess.Popen([sys.executable, "-c", script, str(killed)], env=env)
    deadline = time.monotonic() + 60
    while len(list((killed / "jobs").glob("*.json"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 5 <= len(list((killed / "jobs").glob("*.json"))) < 64, "the build must be killed midway"
    _build(scene, killed, options)  # resume
    _build(scene, tmp_path / "whole", options)
    assert _digests(killed) == _digests(tmp_path / "whole")


def test_other_arguments_are_refused_and_overwrite_replaces(scene, tmp_path):
    _build(scene, tmp_path / "out")
    other = BuildOptions(tile_size=64, overlap=0, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(BuildDirectoryError, match="tile_size"):
        _build(scene, tmp_path / "out", other)
    summary = _build(scene, tmp_path / "out", other, overwrite=True)
    assert summary["tiles"]["written"] == 16
    with Image.open(tmp_path / "out" / "images" / "scene_000_000.png") as image:
        assert image.size == (64, 64)
    assert len(list((tmp_path / "out" / "images").iterdir())) == 16  # none left from the old build
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("mine")
    with pytest.raises(BuildDirectoryError, match="not empty"):
        _build(scene, tmp_path / "stranger")


def test_splits_follow_area_blocks_and_straddling_tiles_are_dropped(scene, tmp_path):
    options = BuildOptions(
        tile_size=64,
        overlap=16,
        shard_tiles=4,
        split_block_m=64,
        val_fraction=0.3,
        test_fraction=0.3,
        seed=0,
    )
    summary = _build(scene, tmp_path / "out", options)
    records = _records(tmp_path / "out")
    assert {r["split"] for r in records} == {"train", "val", "test"}
    assert summary["tiles"]["dropped"]["split_border"] > 0
    assert (
        summary["tiles"]["written"] + summary["tiles"]["dropped"]["split_border"]
        == summary["tiles"]["planned"]
    )
    for record in records:
        a, _, c, _, e, f = record["georef"]["transform"]
        x0, y1 = c, f
        x1, y0 = c + a * record["width"], f + e * record["height"]
        blocks = {
            area_split((x, y, x + 1, y + 1), "EPSG:32633", 64, 0, {"val": 0.3, "test": 0.3})
            for x in (x0, x1 - 1)
            for y in (y0, y1 - 1)
        }
        assert blocks == {record["split"]}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {s["split"] for s in manifest["shards"]} == {"train", "val", "test"}
    assert all(s["path"].startswith(s["split"] + "-") for s in manifest["shards"])


def test_gsd_option_resamples_tiles_and_drops_what_is_no_longer_visible(scene, tmp_path):
    options = BuildOptions(tile_size=128, overlap=0, gsd=1.0, val_fraction=0, test_fraction=0)
    summary = _build(scene, tmp_path / "out", options)
    (record,) = _records(tmp_path / "out")
    assert (record["width"], record["height"], record["gsd"]) == (128, 128, 1.0)
    assert summary["objects"]["dropped"]["coarser_than_max_gsd"] == {"footpath": 1}
    house = next(o for o in record["objects"] if o["id"] == scene.ids["house"])
    assert house["attributes"]["area_m2"] == pytest.approx(200, rel=1e-3)
    # 20 m x 10 m at 30 degrees spans 20 cos 30 + 10 sin 30 metres: as many pixels at 1 m.
    assert house["hbb"][2] - house["hbb"][0] == pytest.approx(20 * 0.866 + 10 * 0.5, abs=0.01)


def test_mostly_nodata_tiles_are_dropped(tmp_path):
    scene = make_scene(tmp_path, black=(0, 128, 128, 256))
    summary = _build(scene, tmp_path / "out")
    assert summary["tiles"]["dropped"] == {"nodata": 1}
    assert summary["tiles"]["written"] == 3


def test_bad_inputs_are_counted_with_clear_messages(scene, tmp_path):
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 64)
    mislabelled = write_raster(tmp_path / "mislabelled.tif", crs="EPSG:4326")
    elsewhere = write_raster(tmp_path / "elsewhere.tif", origin=(600_000.0, 5_100_000.0))
    broken_osm = tmp_path / "broken.osm.pbf"
    broken_osm.write_bytes(scene.osm_pbf.read_bytes()[:100])
    other = write_raster(tmp_path / "other.tif")
    sources = [
        Source(
            (str(scene.raster), str(corrupt), str(mislabelled), str(elsewhere)), str(scene.osm_pbf)
        ),
        Source((str(other),), str(broken_osm)),
    ]
    summary = build(
        sources, tmp_path / "out", OPTIONS, generate=tile_record, workers=1, progress=False
    )
    assert summary["error_counts"] == {
        "corrupt_raster": 1,
        "crs_mismatch": 1,
        "no_intersection": 1,
        "broken_osm": 1,
    }
    messages = {error["kind"]: error["message"] for error in summary["errors"]}
    assert "corrupt.tif" in messages["corrupt_raster"]
    assert "mislabelled.tif" in messages["crs_mismatch"] and "wrong CRS" in messages["crs_mismatch"]
    assert "elsewhere.tif" in messages["no_intersection"]
    assert "broken.osm.pbf" in messages["broken_osm"] and "1 raster" in messages["broken_osm"]
    assert summary["tiles"]["written"] == 4  # the good raster still went through


def test_a_truncated_raster_counts_its_unreadable_tiles(tmp_path):
    scene = make_scene(tmp_path)
    content = scene.raster.read_bytes()
    scene.raster.write_bytes(content[: int(len(content) * 0.6)])  # the lower rows are lost
    summary = _build(scene, tmp_path / "out")
    assert summary["tiles"] == {"planned": 4, "written": 2, "dropped": {"unreadable": 2}}
    assert summary["error_counts"] == {"unreadable_tile": 2}
    assert all("scene.tif" in error["message"] for error in summary["errors"])


def test_cli_builds_reports_errors_and_shows_a_record(scene, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "osm",
        "--imagery",
        str(scene.raster),
        "--osm",
        str(scene.osm_xml),
        "--out",
        str(out),
        "--tile-size",
        "128",
        "--overlap",
        "0",
        "--val-fraction",
        "0",
        "--test-fraction",
        "0",
        "--generate",
        "osm_scene:tile_record",
        "--workers",
        "1",
        "--quiet",
        "--task-option",
        "max_records=3",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote 4 records and 4 tile images" in printed and "too_small" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arguments"]["options"]["task_options"] == {"max_records": 3}
    picture = tmp_path / "record.png"
    assert main(["show", str(out), "--id", "scene_000_000-ground", "--out", str(picture)]) == 0
    with Image.open(picture) as image:
        drawn = np.asarray(image.convert("RGB"))
    assert image.width >= 512 and drawn.shape[0] > image.width  # enlarged, with a text panel
    assert main(["show", str(out), "--id", "nope"]) == 1
    assert "no record with id 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    argv[2] = str(bad)
    argv[6] = str(tmp_path / "out_bad")
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "corrupt_raster" in captured.out and "1 input(s) failed" in captured.err


def test_cli_rejects_a_missing_generator(scene, tmp_path, capsys):
    argv = [
        "osm",
        "--imagery",
        str(scene.raster),
        "--osm",
        str(scene.osm_pbf),
        "--out",
        str(tmp_path / "o"),
        "--generate",
        "no_such_module:generate",
    ]
    assert main(argv) == 1
    assert "cannot load the record generator" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_engine_gives_the_same_files(scene, tmp_path):
    ray = pytest.importorskip("ray")
    import osm_scene
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(osm_scene)  # Ray workers cannot import the test helpers
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        _build(scene, tmp_path / "ray", engine="ray", workers=1)
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(osm_scene)
    _build(scene, tmp_path / "pool", workers=1)
    assert _digests(tmp_path / "ray") == _digests(tmp_path / "pool")


def test_cli_synthetic_records_runs_the_worlds_through_the_pipeline(tmp_path, capsys):
    out = tmp_path / "synthetic"
    argv = [
        "synthetic",
        "--out",
        str(out),
        "--n",
        "2",
        "--size",
        "128",
        "--records",
        "--tile-size",
        "128",
        "--overlap",
        "0",
        "--generate",
        "osm_scene:tile_record",
        "--workers",
        "1",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "wrote 2 records and 2 tile images" in capsys.readouterr().out
    manifest = json.loads((out / "records" / "manifest.json").read_text())
    assert [Path(s["imagery"][0]).parent.name for s in manifest["arguments"]["sources"]] == [
        "world_0000",
        "world_0001",
    ]
    assert [Path(s["osm"]).name for s in manifest["arguments"]["sources"]] == ["world.osm.pbf"] * 2
    records = _records(out / "records")
    assert [r["id"] for r in records] == [
        "world_0000-world_000_000-ground",
        "world_0001-world_000_000-ground",
    ]
    assert all(r["objects"] for r in records)


def test_cli_convert_dispatches_to_the_converter_registry(tmp_path, capsys):
    source = Path(__file__).parents[1] / "data" / "dota" / "train"
    assert main(["convert", "dota", "--src", str(source), "--out", str(tmp_path / "dota")]) == 0
    printed = capsys.readouterr().out
    assert '"dataset": "dota"' in printed and (tmp_path / "dota" / "dota.jsonl").is_file()
    assert (
        main(["convert", "dota", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
        == 1
    )
    assert "missing" in capsys.readouterr().err


def test_the_manifest_records_the_imagery_settings(tmp_path):
    scene = make_scene(tmp_path)
    settings = ImagerySettings(stretch="percentile", percentiles=(1, 99), fill=None)
    _build(scene, tmp_path / "out", dataclasses.replace(OPTIONS, imagery=settings))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert ImagerySettings.from_dict(manifest["arguments"]["options"]["imagery"]) == settings


def test_cli_imagery_options_reach_the_build_and_bad_ones_are_one_line_errors(scene, capsys):
    from geochat.data_builders.cli import _parser, build_options

    args = _parser().parse_args(
        ["osm", "--imagery", "a.tif", "--osm", "a.pbf", "--out", "o", "--bands", "3,2,1"]
    )
    assert build_options(args).imagery == ImagerySettings(bands=(3, 2, 1))
    argv = ["osm", "--imagery", str(scene.raster), "--osm", str(scene.osm_pbf), "--out", "o"]
    with pytest.raises(SystemExit):
        main([*argv, "--stretch", "gamma"])
    assert "stretch is one of" in capsys.readouterr().err
    fill = _parser().parse_args([*argv, "--fill", "none"])
    assert build_options(fill).imagery.fill is None


def test_the_default_generator_loads_by_its_installed_name():
    # Regression: the default named the pre-namespace module `data_builders.tasks`, which an
    # installed geochat does not have, so `geochat build ... --records` failed by default.
    from geochat.data_builders.tasks import generate_records

    assert pipeline.load_generator(pipeline.DEFAULT_GENERATOR) is generate_records
    assert pipeline.generator_name(generate_records) == pipeline.DEFAULT_GENERATOR


# Every option of `geochat build osm|synthetic` before the options were generated, by name.
OSM_FLAGS = [
    "--imagery",
    "--osm",
    "--out",
    "--seed",
    "--workers",
    "--gsd",
    "--tile-size",
    "--overlap",
    "--tags",
    "--max-tile-nodata",
    "--max-object-nodata",
    "--bands",
    "--preset",
    "--stretch",
    "--fill",
    "--val-fraction",
    "--test-fraction",
    "--split-block-m",
    "--generate",
    "--task-option",
    "--engine",
    "--ray-address",
    "--shard-tiles",
    "--overwrite",
    "--quiet",
]
SYNTHETIC_FLAGS = [
    *(flag for flag in OSM_FLAGS if flag not in ("--imagery", "--osm")),
    *["--n", "--size", "--scene", "--density", "--crs", "--records", "--tile-gsd"],
]


@pytest.mark.parametrize(("command", "flags"), [("osm", OSM_FLAGS), ("synthetic", SYNTHETIC_FLAGS)])
def test_cli_build_options_keep_their_names_and_all_have_help(command, flags):
    from geochat.data_builders.cli import _parser

    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser = commands.choices[command]
    options = {name: a for a in parser._actions for name in a.option_strings}
    assert set(flags) <= set(options)
    assert all(action.help for action in options.values())


def test_cli_build_options_reach_the_build_options():
    from geochat.data_builders.cli import SYNTHETIC_DEFAULTS, _parser, build_options

    osm = ["osm", "--imagery", "a.tif", "--osm", "a.pbf", "--out", "o"]
    args = _parser().parse_args([*osm, "--gsd", "0.5", "--seed", "3", "--tile-size", "128"])
    options = build_options(args)
    assert (options.gsd, options.seed, options.tile_size, options.overlap) == (0.5, 3, 128, 64)
    assert build_options(_parser().parse_args(osm)) == BuildOptions()
    # In `synthetic`, --gsd and --seed are the worlds'; the worlds' seed also seeds the records.
    argv = ["synthetic", "--out", "o", "--gsd", "2", "--tile-gsd", "4", "--seed", "5"]
    args = _parser().parse_args(argv)
    assert (args.gsd, args.seed) == (2.0, 5)
    options = build_options(args, seed=args.seed)
    assert options == dataclasses.replace(SYNTHETIC_DEFAULTS, gsd=4.0, seed=5)
