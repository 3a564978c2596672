"""Record datasets: answer balancing, so that no answer can be learned from the question alone."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from geochat.imagery import ImagerySettings
from geochat.records import write_jsonl
from geochat.training.data import RecordDataset, training_imagery, training_native_input
from geochat.training.recipe import RecipeError, load_recipe
from geochat.training.trainer import build_datasets


def record(index: int, task: str, question: str, answer: str) -> dict:
    return {
        "id": f"r{index}",
        "image": "images/none.png",
        "width": 8,
        "height": 8,
        "task": task,
        "split": "train",
        "objects": [],
        "conversations": [
            {"from": "human", "value": f"<image>\n{question}"},
            {"from": "gpt", "value": answer},
        ],
    }


@pytest.fixture
def skewed(tmp_path: Path) -> Path:
    """Presence and counting questions whose answers the question alone mostly predicts."""
    answers = (
        [("vqa", "Are there any roads?", "Yes")] * 9
        + [("vqa", "Are there any roads?", "No")] * 3
        + [("vqa", "Are there any tennis courts?", "No")] * 5
        + [("vqa", "Is there a pool?", "Yes")]
        + [("count", "How many cars are there?", "0")] * 6
        + [("count", "How many cars are there?", "2")] * 2
        + [("count", "How many cars are there?", "1")] * 4
        + [("refer", "Where is the pool?", "<box>[[1,2,3,4]]</box>")] * 2
    )
    path = tmp_path / "train-00000.jsonl"
    write_jsonl(path, [record(i, *triple) for i, triple in enumerate(answers)])
    return path


def answer_counts(dataset: RecordDataset) -> Counter:
    return Counter(
        (r["conversations"][0]["value"].split("\n")[1], r["conversations"][1]["value"])
        for r in dataset.records
    )


def test_balancing_caps_each_answer_at_the_runner_up(skewed):
    counts = answer_counts(RecordDataset(skewed, "train", balance=["vqa", "count"]))
    assert counts[("Are there any roads?", "Yes")] == 3
    assert counts[("Are there any roads?", "No")] == 3
    # A question that always has the same answer teaches only the prior: dropped.
    assert counts[("Are there any tennis courts?", "No")] == 0
    # Asked once: nothing to learn from the question, kept.
    assert counts[("Is there a pool?", "Yes")] == 1
    assert counts[("How many cars are there?", "0")] == 4
    assert counts[("How many cars are there?", "1")] == 4
    assert counts[("How many cars are there?", "2")] == 2
    # Tasks not named are untouched, even with a repeated answer.
    assert counts[("Where is the pool?", "<box>[[1,2,3,4]]</box>")] == 2


def test_balancing_is_seeded_and_keeps_order(skewed):
    first = RecordDataset(skewed, "train", balance=["vqa"], seed=1).records
    again = RecordDataset(skewed, "train", balance=["vqa"], seed=1).records
    other = RecordDataset(skewed, "train", balance=["vqa"], seed=2).records
    ids = [r["id"] for r in first]
    assert ids == [r["id"] for r in again]
    assert ids == sorted(ids, key=lambda name: int(name[1:]))
    assert ids != [r["id"] for r in other]


def test_without_balancing_every_record_is_read(skewed):
    assert len(RecordDataset(skewed, "train")) == 32
    assert len(RecordDataset(skewed, "train", limit=5)) == 5


def test_a_recipe_mixes_builds_listed_as_its_training_source(skewed, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    write_jsonl(other / "train-00000.jsonl", [record(100, "vqa", "Is there a pool?", "No")])
    recipe = load_recipe(
        "nano-synthetic", [f"data.train=[{skewed}, {other}]", "data.tasks=null", "data.balance=[]"]
    )
    train, _ = build_datasets(recipe)
    assert len(train) == 32 + 1
    assert train.records[-1]["id"] == "r100"
    with pytest.raises(FileNotFoundError, match="missing"):
        RecordDataset([skewed, tmp_path / "missing"], "train")


def test_a_recipe_balances_its_training_set_and_refuses_streaming(skewed):
    recipe = load_recipe("nano-synthetic", [f"data.train={skewed}", "data.tasks=null"])
    recipe.data.balance = ["vqa", "count"]
    train, _ = build_datasets(recipe)
    assert len(train) == 32 - 6 - 5 - 2
    recipe.data.streaming = True
    with pytest.raises(RecipeError, match="balance"):
        build_datasets(recipe)


def _with_manifest(folder: Path, imagery: dict | None) -> Path:
    """A build-like folder whose manifest records imagery settings as the OSM pipeline does."""
    write_jsonl(folder / "train-00000.jsonl", [record(0, "vqa", "Q?", "A")])
    manifest = {"format": 1, "arguments": {"options": {"imagery": imagery}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_training_reads_the_imagery_settings_of_its_builds(tmp_path):
    settings = ImagerySettings(preset="sentinel2:cir", stretch="percentile", percentiles=(1, 99))
    a = _with_manifest(tmp_path / "a", settings.to_dict())
    b = _with_manifest(tmp_path / "b", settings.to_dict())
    assert training_imagery([a, b]) == settings
    assert training_imagery(_with_manifest(tmp_path / "plain", None)) is None
    other = _with_manifest(tmp_path / "c", ImagerySettings(bands=(3, 2, 1)).to_dict())
    with pytest.raises(ValueError, match="differ in their imagery settings"):
        training_imagery([a, other])


def _with_tiles(folder: Path, tile_size: int | None, gsds: list[float | None]) -> Path:
    """A build-like folder whose manifest records its tile size and whose records their GSD."""
    records = [record(i, "vqa", "Q?", "A") for i in range(len(gsds))]
    for row, gsd in zip(records, gsds, strict=True):
        if gsd is not None:
            row["gsd"] = gsd
    write_jsonl(folder / "train-00000.jsonl", records)
    manifest = {"format": 1, "arguments": {"options": {"tile_size": tile_size}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_training_reads_the_tiles_its_builds_were_cut_into(tmp_path):
    a = _with_tiles(tmp_path / "a", 256, [0.3, 0.5, None])
    b = _with_tiles(tmp_path / "b", 256, [0.2])
    assert training_native_input([a, b]) == {"image_size": 256, "gsd": [0.2, 0.5]}
    no_gsd = _with_tiles(tmp_path / "no_gsd", 128, [None])
    assert training_native_input(no_gsd) == {"image_size": 128, "gsd": None}
    assert training_native_input([a, no_gsd]) is None  # two tile sizes: unknown
    assert training_native_input(_with_tiles(tmp_path / "plain", None, [0.3])) is None
    assert training_native_input(_with_manifest(tmp_path / "no_tiles", None)) is None
