"""Fixtures for training tests: a tiny learnable dataset and a tiny saved base model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import geochat.training.trainer
from geochat.grammar import format_hbbs
from geochat.modeling import tiny
from geochat.records import write_jsonl
from geochat.training.recipe import Recipe

COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220)}


def write_squares(folder: Path, split: str, count: int, seed: int) -> Path:
    """Writes ``count`` records of 64 px images holding one coloured square.

    Half the records ask where the square is (a box answer), half which colour it has, so the
    answers depend on the image and a model can learn them in a few steps.
    """
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        colour = ["red", "blue"][index % 2]
        side = int(rng.integers(12, 24))
        x0, y0 = (int(v) for v in rng.integers(0, 64 - side, size=2))
        image = np.full((64, 64, 3), 90, dtype=np.uint8)
        image[y0 : y0 + side, x0 : x0 + side] = COLOURS[colour]
        name = f"images/{split}-{index:04d}.png"
        Image.fromarray(image).save(folder / name)
        if index % 4 < 2:
            question = "<image>\nWhat colour is the square?"
            answer, task = colour, "vqa"
        else:
            question = "<image>\nWhere is the square?"
            answer = format_hbbs([x0, y0, x0 + side, y0 + side], 64, 64)
            task = "refer"
        square = {"category": f"{colour} square", "hbb": [x0, y0, x0 + side, y0 + side]}
        records.append(
            {
                "id": f"{split}-{index}",
                "image": name,
                "width": 64,
                "height": 64,
                "task": task,
                "split": split,
                "objects": [square],
                "conversations": [
                    {"from": "human", "value": question},
                    {"from": "gpt", "value": answer},
                ],
            }
        )
    path = folder / f"{split}-00000.jsonl"
    write_jsonl(path, records)
    return path


@pytest.fixture(scope="session")
def squares(tmp_path_factory) -> Path:
    """A build-like folder with train and val shards of the squares dataset."""
    folder = tmp_path_factory.mktemp("squares")
    write_squares(folder, "train", 64, seed=0)
    write_squares(folder, "val", 16, seed=1)
    return folder


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random geochat model and processor saved to disk (a stand-in for SmolVLM)."""
    folder = tmp_path_factory.mktemp("tiny_base")
    model, processor = tiny(image_size=32, patch_size=8, max_tiles_per_side=1, seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def no_training(monkeypatch) -> list[tuple[Recipe, str]]:
    """Replaces the training run by a list of the (recipe, output folder) it was given."""
    given: list[tuple[Recipe, str]] = []

    def record(recipe: Recipe, output_dir: str, **_: object) -> None:
        given.append((recipe, output_dir))

    monkeypatch.setattr(geochat.training.trainer, "train", record)
    return given
