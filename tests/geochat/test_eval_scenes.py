"""``geochat eval --scenes`` (geochat.commands.eval_scenes) on a small synthetic world.

Only the model is scripted, as in test_scene.py: `TruthModel` subclasses the engine's
`Assistant`, so every path (scene tiles, one view, blank scene) goes through the engine's own
`chat`, reading and parsing as for a real model; its answer is the world's truth seen through
the image it is given, and nothing for a grey (blank) image, as a model that reads its images.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Generator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import Affine
from shapely.geometry import mapping

import geochat.engine
import geochat.modeling
from geochat.commands import eval as eval_cli
from geochat.commands.eval_scenes import (
    SceneEvalError,
    TruthObject,
    Vocabulary,
    WorldTruth,
    build_trivial_counts,
    plan_questions,
    read_truth,
    shared_vocabulary,
)
from geochat.data_builders.synthetic import generate_world, truth_categories
from geochat.engine import Assistant
from geochat.engine.assistant import NativeInput, Request
from geochat.geometry import min_area_rect, rasterize
from geochat.georef import Georef
from geochat.grammar.canonical import format_hbbs, format_mask, format_quads, format_ref
from geochat.predict import BLANK_GREY
from geochat.records import write_jsonl

GSD = 0.3
SIZE = 512
CATEGORIES = "building,car,forest"  # boxes and a count, a quad, masks


class TruthModel(Assistant):
    """Answers each image with the truth it sees: boxes, quads, masks or a count.

    It sees an object where the image shows at least its ``min_pixels``, as training tiles hold
    objects.
    """

    backend = "scripted"

    def __init__(self, truth: WorldTruth, georef: Georef, answers: bool = True):
        self.model_name = "truth"
        self.native_input = NativeInput(128, (GSD, GSD))
        self.truth = truth.objects  # category -> objects in world pixels
        self.plurals = truth.vocabulary.plurals
        self.georef = georef
        self.answers = answers
        self.images = 0

    def close(self) -> None:
        pass

    def _seen(self, request: Request, category: str) -> list[shapely.Geometry]:
        image = request.image

        def to_image(points: np.ndarray) -> np.ndarray:
            return image.georef.crs_to_pixel(self.georef.pixel_to_crs(points))

        frame = shapely.box(0, 0, image.width, image.height)
        pieces = [
            (shapely.transform(obj.footprint, to_image).intersection(frame), obj.min_pixels)
            for obj in self.truth.get(category, [])
        ]
        return [piece for piece, least in pieces if piece.area >= least]

    def _generate(self, request: Request) -> Generator[str, None, None]:
        self.images += 1
        image = request.image
        question = request.messages[-1]["content"].replace("<image>", "").strip()
        pixels = np.asarray(image.image)
        if not self.answers or (pixels == BLANK_GREY).all():
            return (piece for piece in ["<none>"])
        category = next(c for c in self.truth if self.plurals[c] in question or c in question)
        seen = self._seen(request, category)
        width, height = image.width, image.height
        if question.startswith("How many"):
            text = str(len(seen))
        elif question.startswith("Segment"):
            mask = np.zeros((height, width), dtype=bool)
            for piece in seen:
                mask |= rasterize(piece, height, width)
            text = format_ref(category, format_mask(mask, 32)) if seen else "<none>"
        elif "oriented" in question:
            quads = [min_area_rect(piece) for piece in seen]
            text = "".join(format_ref(category, format_quads([q], width, height)) for q in quads)
        else:
            boxes = [piece.bounds for piece in seen]
            text = "".join(format_ref(category, format_hbbs([b], width, height)) for b in boxes)
        return (piece for piece in [text or "<none>"])


class OneBoxModel(Assistant):
    """Answers every image with the same building box, in that image's pixels."""

    backend = "scripted"

    def __init__(self, box: tuple[float, float, float, float]):
        self.model_name = "one box"
        self.native_input = NativeInput(128, (GSD, GSD))
        self.box = box

    def close(self) -> None:
        pass

    def _generate(self, request: Request) -> Generator[str, None, None]:
        image = request.image
        text = format_ref("building", format_hbbs([self.box], image.width, image.height))
        return (piece for piece in [text])


def _one_building_world(folder: Path) -> Path:
    """A 256 px world holding one building, 32 px square at (80, 16) px; returns its folder."""
    world = folder / "world_0000"
    world.mkdir(parents=True)
    transform = Affine(GSD, 0, 500_000, 0, -GSD, 4_650_000)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 256, 256), dtype=np.uint8)
    profile = {"driver": "GTiff", "width": 256, "height": 256, "count": 3, "dtype": "uint8"}
    with rasterio.open(
        world / "world.tif", "w", crs="EPSG:32633", transform=transform, **profile
    ) as dataset:
        dataset.write(pixels)
    matrix = [transform.a, transform.b, transform.d, transform.e, transform.xoff, transform.yoff]
    building = shapely.affinity.affine_transform(shapely.box(80, 16, 112, 48), matrix)
    properties = {"tags": {"building": "yes"}, "category": "building", "min_pixels": 16}
    truth = {
        "type": "FeatureCollection",
        "world": {
            "crs": "EPSG:32633",
            "transform": list(transform)[:6],
            "width": 256,
            "height": 256,
        },
        "categories": truth_categories(),
        "features": [{"type": "Feature", "geometry": mapping(building), "properties": properties}],
    }
    (world / "truth.geojson").write_text(json.dumps(truth))
    return folder


@pytest.mark.parametrize(
    ("box", "tp", "fp", "fn"),
    [((80, 16, 112, 48), 1, 8, 1), ((0, 96, 32, 128), 0, 9, 2)],
    ids=["right-in-one-tile", "wrong-everywhere"],
)
def test_the_tiles_path_pools_each_tile_s_boxes_against_the_truth_that_tile_shows(
    box, tp, fp, fn, tmp_path, monkeypatch, capsys
):
    # Nine 128 px tiles (windows at 0, 96 and 128 px on each axis). Tile (0, 0) shows the
    # building whole at (80, 16)-(112, 48); tile (96, 0) its left 16 px, (0, 16)-(16, 48) in
    # tile pixels (512 px, above the 16 of min_pixels); the other seven show nothing. The same
    # box in every tile: (80, 16)-(112, 48) is right in tile (0, 0) only, and misses in tile
    # (96, 0); (0, 96)-(32, 128) is wrong in every tile.
    folder = _one_building_world(tmp_path / "worlds")
    code, _, err = _evaluate(
        monkeypatch, capsys, OneBoxModel(box), "--scenes", folder, "--out-dir", tmp_path / "out"
    )
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert _value(report, "tiles", "find_all_box", "f1@0.5") == pytest.approx(
        2 * tp / (2 * tp + fp + fn)
    )
    assert _value(report, "tiles", "find_all_box", "precision@0.5") == pytest.approx(tp / 9)
    assert _value(report, "tiles", "find_all_box", "recall@0.5") == pytest.approx(tp / 2)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worlds")
    files = generate_world(folder / "world_0000", seed=3, size_px=SIZE, gsd=GSD, scene="suburban")
    truth = read_truth(files.tif)
    document = json.loads(files.truth.read_text())["world"]
    return folder, truth, Georef(document["crs"], tuple(document["transform"]))


def _evaluate(monkeypatch, capsys, model, *argv):
    monkeypatch.setattr(geochat.engine, "load_transformers", lambda *a, **k: model)
    monkeypatch.setattr(geochat.modeling, "resolve_checkpoint", lambda path: path)
    code = eval_cli.main(["--model", "truth", "--bootstrap", "20", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _value(report: dict, path: str, task: str, name: str) -> float:
    (metrics,) = report["paths"][path]["tasks"][task].values()
    return metrics[name]


@pytest.fixture(scope="module")
def truth_run(worlds, tmp_path_factory):
    folder, truth, georef = worlds
    out = tmp_path_factory.mktemp("eval")
    model = TruthModel(truth, georef)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(geochat.engine, "load_transformers", lambda *a, **k: model)
        monkeypatch.setattr(geochat.modeling, "resolve_checkpoint", lambda path: path)
        code = eval_cli.main(
            ["--scenes", str(folder), "--model", "truth", "--categories", CATEGORIES,
             "--out-dir", str(out), "--bootstrap", "20"]
        )  # fmt: skip
    return code, json.loads((out / "metrics.json").read_text()), out, truth


def test_the_truth_answered_per_tile_scores_f1_one_on_the_scene_path(truth_run):
    code, report, out, _ = truth_run
    assert code == 0
    assert _value(report, "scene", "find_all_box", "f1@0.5") == 1.0
    assert _value(report, "scene", "find_all_quad", "f1@0.5") == 1.0
    assert _value(report, "scene", "count", "mae") == 0.0  # counts of the merged objects
    assert _value(report, "one_view", "count", "mae") == 0.0
    assert _value(report, "scene", "segment", "giou") > 0.7
    assert report["paths"]["scene"]["by_category"]["building"]["find_all_box"]["boxes"]["n"] == 1
    assert report["worlds"] == ["world_0000"]
    markdown = (out / "report.md").read_text()
    assert "| task | metric | n | scene | scene interval | tiles | tiles interval |" in markdown
    assert "| category | task | metric | n | scene | tiles |" in markdown and "building" in markdown


def test_the_truth_answered_per_tile_scores_f1_one_on_the_tiles_path(truth_run):
    _, report, _, _ = truth_run
    assert _value(report, "tiles", "find_all_box", "f1@0.5") == 1.0
    assert _value(report, "tiles", "find_all_quad", "f1@0.5") == 1.0
    # Find-all only: a tile's count or mask says nothing about the scene's.
    assert set(report["paths"]["tiles"]["tasks"]) == {"find_all_box", "find_all_quad"}
    assert set(report["paths"]["tiles"]["by_category"]) == {"building", "car"}


def test_the_blank_scene_runs_through_the_scene_path_and_the_trivial_answer_is_labelled(
    truth_run,
):
    _, report, _, truth = truth_run
    # The truth model answers nothing for a grey image: the blank scene reached it, tile by tile.
    assert _value(report, "blank", "find_all_box", "f1@0.5") == 0.0
    buildings, cars = len(truth.objects["building"]), len(truth.objects["car"])
    assert _value(report, "blank", "count", "mae") == (buildings + cars) / 2
    assert _value(report, "trivial", "find_all_box", "f1@0.5") == 0.0
    # One world: the median count over the evaluated worlds is its own count.
    assert report["trivial_counts"]["source"].startswith("median true count")
    assert report["trivial_counts"]["counts"] == {"building": buildings, "car": cars}


def test_a_model_answering_nothing_scores_zero(worlds, tmp_path, monkeypatch, capsys):
    folder, truth, georef = worlds
    model = TruthModel(truth, georef, answers=False)
    code, out, err = _evaluate(
        monkeypatch, capsys, model, "--scenes", folder, "--categories", "building",
        "--out-dir", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert _value(report, "scene", "find_all_box", "f1@0.5") == 0.0
    assert _value(report, "scene", "count", "mae") == len(truth.objects["building"])
    assert _value(report, "scene", "segment", "giou") == 0.0
    assert "scenes: per category" in out and "find_all_box" in out
    # 25 tiles a scene run (128 px windows stepping 96 over 512 px): scene and blank for two
    # questions, plus the one view and the one-view count.
    assert model.images == 2 * 2 * 25 + 2 + 1


def test_bad_input_is_one_sentence(worlds, tmp_path, monkeypatch, capsys):
    model = TruthModel(worlds[1], worlds[2])
    code, _, err = _evaluate(monkeypatch, capsys, model, "--scenes", tmp_path)
    assert code == 2 and err.strip() == (
        f"geochat eval: no world.tif under {tmp_path}: make worlds with geochat build synthetic "
        f"--out {tmp_path}"
    )
    bare = tmp_path / "world_0000"
    bare.mkdir()
    (bare / "world.tif").write_bytes(b"")
    code, _, err = _evaluate(monkeypatch, capsys, model, "--scenes", tmp_path)
    assert code == 2 and err.strip() == (
        f"geochat eval: {bare / 'world.tif'}: no truth.geojson beside it, so no truth to score "
        "against"
    )
    code, _, err = _evaluate(
        monkeypatch, capsys, model, "--scenes", worlds[0], "--categories", "cat"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown ['cat']" in err
    assert model.images == 0


def test_the_truth_file_alone_names_categories_and_an_older_one_is_one_sentence(
    worlds, tmp_path, monkeypatch, capsys
):
    folder, truth, georef = worlds
    world = tmp_path / "worlds" / "world_0000"
    shutil.copytree(folder / "world_0000", world)
    path = world / "truth.geojson"
    document = json.loads(path.read_text())
    document["categories"]["car"]["plural"] = "motorcars"
    path.write_text(json.dumps(document))
    assert read_truth(world / "world.tif").vocabulary.plurals["car"] == "motorcars"
    del document["categories"]  # as geochat wrote truths before they named categories
    path.write_text(json.dumps(document))
    model = TruthModel(truth, georef)
    out = tmp_path / "out"
    code, _, err = _evaluate(monkeypatch, capsys, model, "--scenes", world.parent, "--out-dir", out)
    assert code == 2 and err.strip() == (
        f"geochat eval: {path}: built by an older geochat, whose truth names no categories; "
        "rebuild the worlds with geochat build synthetic"
    )
    assert not out.exists() and model.images == 0


def test_worlds_whose_truths_name_different_categories_are_one_sentence(worlds, tmp_path):
    vocabulary = worlds[1].vocabulary
    plurals = {**vocabulary.plurals, "car": "autos"}
    other = Vocabulary(plurals, vocabulary.countable, vocabulary.segmented)
    found = [
        WorldTruth(name, tmp_path / f"{name}.tif", 64, 64, {}, v)
        for name, v in (("w0", vocabulary), ("w1", vocabulary), ("w2", other))
    ]
    assert shared_vocabulary(found[:2]) == vocabulary
    with pytest.raises(SceneEvalError, match="worlds w0 and w2 name different categories"):
        shared_vocabulary(found)


def test_questions_cover_present_categories_and_a_seeded_share_of_absent_ones(worlds, tmp_path):
    vocabulary = worlds[1].vocabulary
    box = TruthObject(shapely.box(0, 0, 10, 10), 1)
    present = {"building": [box], "car": [box], "water": [box], "tree": [box]}
    worlds = [
        WorldTruth(f"w{i}", tmp_path / f"w{i}.tif", 64, 64, present, vocabulary) for i in range(3)
    ]
    questions = plan_questions(worlds, vocabulary, None, None, seed=1)
    first = [(q.category, q.task) for q in questions if q.world == 0]
    assert {("building", "find_all_box"), ("building", "segment"), ("car", "find_all_quad")} <= set(
        first
    )
    assert ("water", "segment") in first and ("water", "find_all_box") not in first
    car = next(q for q in questions if q.category == "car")
    assert car.text == "Locate all cars with oriented bounding boxes."
    assert car.count_text == "How many cars are there?"
    absent = {q.category for q in questions if q.world == 0} - set(present)
    assert len(absent) == 1  # a quarter of the four present categories
    assert questions == plan_questions(worlds, vocabulary, None, None, seed=1)
    limited = plan_questions(worlds, vocabulary, ["building", "car"], 6, seed=1)
    assert len(limited) == 6 and Counter(q.world for q in limited) == {0: 2, 1: 2, 2: 2}


def test_the_trivial_count_of_a_training_build_is_its_commonest_per_category(tmp_path):
    def record(index, category, answer):
        return {
            "id": str(index), "image": "x.png", "width": 8, "height": 8, "task": "count",
            "objects": [{"category": category, "hbb": [0, 0, 1, 1]}],
            "conversations": [
                {"from": "human", "value": "<image>\nHow many?"},
                {"from": "gpt", "value": answer},
            ],
        }  # fmt: skip

    answers = [("car", "3"), ("car", "There are 3."), ("car", "5"), ("building", "one")]
    write_jsonl(tmp_path / "train-00000.jsonl", [record(i, *a) for i, a in enumerate(answers)])
    assert build_trivial_counts(tmp_path) == {"car": 3, "building": 1}
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        build_trivial_counts(tmp_path / "empty")
