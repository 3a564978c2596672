"""Many scenes in one run (geochat.engine.scene_runs, `geochat scene` with several scenes).

The model is test_scene's scripted `TruthAssistant`: each tile is answered with the synthetic
worlds' OSM truth seen through it, so every scene has objects, some merged across tiles.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys

import pytest
import test_scene
from test_scene import TruthAssistant, _truth

from geochat.commands import scene as scene_cli
from geochat.data_builders.synthetic import generate_world
from geochat.engine.scene import run_scene
from geochat.engine.scene_output import GPKG_DATE, scene_files

NAMES = ("harbour", "suburb", "village")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three 256 px worlds in one folder, and every world's buildings (in their CRS)."""
    root = tmp_path_factory.mktemp("scenes")
    folder = root / "scenes"
    folder.mkdir()
    buildings = []
    for seed, name in enumerate(NAMES):
        files = generate_world(
            root / name, seed=seed, size_px=256, gsd=test_scene.GSD, scene="suburban"
        )
        shutil.copy(files.tif, folder / f"{name}.tif")
        buildings += _truth(json.loads(files.truth.read_text()), "building")
    return folder, buildings


def _run(capsys, monkeypatch, assistants, *argv):
    """Runs the CLI with every model load giving a new scripted model (kept in ``assistants``)."""

    def load(*args, **kwargs):
        assistants.append(assistants[0]())
        return assistants[-1]

    monkeypatch.setattr(scene_cli, "load", load)
    code = scene_cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _contents(folder):
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_folder_runs_into_one_folder_per_scene_and_resumes(scenes, tmp_path, capsys, monkeypatch):
    folder, buildings = scenes
    factory = [lambda: TruthAssistant(buildings, "hbb")]
    out = tmp_path / "out"
    code, stdout, err = _run(
        capsys, monkeypatch, factory, "--image", str(folder), "Where?", "--out", str(out)
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == list(NAMES)
    for name in NAMES:
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(
            [
                "answer.txt",
                "objects.json",
                "scene.geojson",
                "scene.gpkg",
                "overview.png",
                "run.json",
            ],
        )
    assert [line.split(":")[0] for line in stdout.splitlines()] == [f"{n}.tif" for n in NAMES]
    assert "3 scenes: 3 run, 0 skipped (outputs present), 0 failed" in err
    first = _contents(out)
    assert len(factory) == 2  # one model for every scene

    # A second run finds every output and skips every scene (the model answers nothing).
    code, stdout2, err = _run(
        capsys, monkeypatch, factory, "--image", str(folder), "Where?", "--out", str(out)
    )
    assert code == 0 and stdout2 == stdout
    assert (
        "3 scenes: 0 run, 3 skipped (outputs present: harbour.tif, suburb.tif, village.tif)" in err
    )
    assert len(factory) == 2  # nothing left to run: no model loads

    # A scene stopped before its last file runs again, alone, to the same bytes.
    (out / "suburb" / "scene.gpkg").unlink()
    code, _, err = _run(
        capsys, monkeypatch, factory, "--image", str(folder), "Where?", "--out", str(out)
    )
    assert code == 0 and "3 scenes: 1 run, 2 skipped" in err
    assert _contents(out) == first
    # Another question is another run: nothing is skipped.
    code, _, err = _run(
        capsys, monkeypatch, factory, "--image", str(folder), "Any ships?", "--out", str(out)
    )
    assert code == 0 and "3 scenes: 3 run, 0 skipped" in err


def test_a_scene_finished_another_way_runs_again(scenes, tmp_path, capsys, monkeypatch):
    """Regression: resuming compared only the question, so a run with --sam (or another model,
    or other reading options) skipped scenes finished without it and kept their old answers."""
    folder, buildings = scenes
    factory = [lambda: TruthAssistant(buildings, "hbb")]
    out = tmp_path / "out"
    base = ["--image", str(folder / "suburb.tif"), "Where?", "--out", str(out)]
    code, _, err = _run(capsys, monkeypatch, factory, *base)
    assert code == 0 and "tiles answered" in err, err
    assert json.loads((out / "run.json").read_text())["answered_by"]["sam"] is None
    for changed in (["--sam", str(tmp_path / "sam")], ["--model", "other"], ["--overlap", "0.5"]):
        code, _, err = _run(capsys, monkeypatch, factory, *base, *changed)
        assert code == 0 and "tiles answered" in err, (changed, err)
    # Only the batch size changed: the same run, so the scene is skipped.
    same = ["--overlap", "0.5", "--batch-size", "3"]
    code, _, err = _run(capsys, monkeypatch, factory, *base, *same)
    assert code == 0 and "skipped, its outputs are all in" in err, err


def test_a_scene_that_fails_fails_alone(scenes, tmp_path, capsys, monkeypatch):
    folder, buildings = scenes
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    (mixed / "broken.tif").write_bytes(b"not a tiff")
    factory = [lambda: TruthAssistant(buildings, "hbb")]
    out = tmp_path / "out"
    code, stdout, err = _run(
        capsys, monkeypatch, factory, "--image", str(mixed), "Where?", "--out", str(out)
    )
    assert code == 2
    assert len(stdout.splitlines()) == 3
    (failure,) = [line for line in err.splitlines() if line.startswith("geochat scene:")]
    assert failure.startswith("geochat scene: broken.tif: ")
    assert "4 scenes: 3 run, 0 skipped (outputs present), 1 failed" in err
    assert not (out / "broken").exists()


def test_scenes_that_would_share_a_folder_are_refused(scenes, tmp_path, capsys, monkeypatch):
    folder, buildings = scenes
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(folder / "suburb.tif", other / "suburb.tif")
    factory = [lambda: TruthAssistant(buildings, "hbb")]
    code, _, err = _run(
        capsys, monkeypatch, factory, "--image", str(folder), "--image", str(other / "suburb.tif"),
        "Where?", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "share the output folder suburb" in err
    assert len(factory) == 1  # refused before any model loads


def test_a_geopackage_is_stamped_with_a_fixed_date(scenes):
    """GDAL stamps the time of writing otherwise: two runs would differ in their bytes."""
    folder, buildings = scenes
    result = run_scene(TruthAssistant(buildings, "hbb"), folder / "suburb.tif", "Where?")
    files = scene_files(result, folder / "suburb.tif")
    path = folder.parent / "stamped.gpkg"
    path.write_bytes(files["scene.gpkg"])
    with sqlite3.connect(path) as database:
        (stamp,) = database.execute("SELECT last_change FROM gpkg_contents").fetchone()
    assert stamp == GPKG_DATE


@pytest.mark.slow
def test_ray_actors_write_the_bytes_a_local_run_writes(scenes, tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    folder, buildings = scenes
    # Ray workers cannot import the test modules: the scripted model travels by value.
    cloudpickle.register_pickle_by_value(test_scene)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    factory = [lambda: TruthAssistant(buildings, "hbb")]
    code, local_out, err = _run(
        capsys, monkeypatch, factory, "--image", str(folder), "Where?", "--out", str(tmp_path / "a")
    )
    assert code == 0, err
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        code, ray_out, err = _run(
            capsys, monkeypatch, factory, "--image", str(folder), "Where?",
            "--out", str(tmp_path / "b"), "--engine", "ray", "--workers", "2",
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert code == 0, err
    assert ray_out == local_out
    assert "3 scenes: 3 run" in err
    local, remote = _contents(tmp_path / "a"), _contents(tmp_path / "b")
    assert len(local) == 18 and local.keys() == remote.keys()
    assert [name for name in local if local[name] != remote[name]] == []
