"""Flips and quarter turns: the geometry of the answer moves exactly as the image does."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geochat import geometry
from geochat.grammar import GrammarError, format_hbbs, format_mask, format_quads, parse
from geochat.records import write_jsonl
from geochat.training.augment import ALL_DIHEDRAL, Dihedral, augment, names_a_place
from geochat.training.data import RecordDataset, StreamingRecordDataset
from geochat.training.recipe import RecipeError, load_recipe

WIDTH, HEIGHT = 100, 60  # not square, so that a transpose swaps the sides
OBJECT_PX = [10, 5, 30, 20]  # the one bright rectangle of the picture


def picture() -> Image.Image:
    pixels = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    x0, y0, x1, y1 = OBJECT_PX
    pixels[y0:y1, x0:x1] = 255
    return Image.fromarray(pixels)


def bright_box(image: Image.Image) -> list[float]:
    """The pixel box ``[x0, y0, x1, y1]`` of the bright pixels."""
    rows, cols = np.nonzero(np.asarray(image)[..., 0])
    return [cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0]


def refer_record(question: str, answer: str) -> dict:
    return {
        "id": "r0",
        "image": "images/r0.png",
        "width": WIDTH,
        "height": HEIGHT,
        "task": "refer",
        "split": "train",
        "objects": [{"category": "building", "hbb": OBJECT_PX}],
        "conversations": [
            {"from": "human", "value": f"<image>\n{question}"},
            {"from": "gpt", "value": answer},
        ],
    }


def test_the_eight_transforms_are_distinct():
    assert len(set(ALL_DIHEDRAL)) == 8
    images = {t.image(picture()).tobytes() for t in ALL_DIHEDRAL}
    assert len(images) == 8


@pytest.mark.parametrize("transform", ALL_DIHEDRAL, ids=repr)
def test_a_box_moves_with_the_image(transform):
    answer = "There is <ref>a building</ref>" + format_hbbs(OBJECT_PX, WIDTH, HEIGHT) + "."
    record = refer_record("Where is the building?", answer)
    changed, image = augment(record, picture(), transform)
    assert (changed["width"], changed["height"]) == image.size
    (found,) = parse(changed["conversations"][1]["value"], *image.size, strict=True).objects
    assert found.phrase == "a building"
    # Grammar units round to 1/1000 of a side: within one pixel of the bright rectangle.
    assert np.allclose(found.hbb, bright_box(image), atol=1.0)
    assert changed["conversations"][1]["value"].endswith(".")
    # Objects in the old image's pixels are dropped; the identity keeps the record itself.
    assert ("objects" not in changed) or (changed is record and transform == Dihedral())
    assert record["conversations"][1]["value"] == answer  # the input is left as it was


@pytest.mark.parametrize("transform", ALL_DIHEDRAL, ids=repr)
def test_a_region_in_the_question_moves_too(transform):
    region = format_hbbs(OBJECT_PX, WIDTH, HEIGHT)
    record = refer_record(f"What is in {region}?", "A building.")
    changed, image = augment(record, picture(), transform)
    (found,) = parse(changed["conversations"][0]["value"], *image.size, strict=True).objects
    assert np.allclose(found.hbb, bright_box(image), atol=1.0)


@pytest.mark.parametrize("transform", ALL_DIHEDRAL, ids=repr)
def test_a_quad_keeps_its_corners_in_canonical_order(transform):
    quad_px = [[50, 10], [80, 30], [60, 55], [30, 35]]
    record = refer_record("Find the ship.", format_quads(quad_px, WIDTH, HEIGHT))
    changed, image = augment(record, picture(), transform)
    text = changed["conversations"][1]["value"]
    (found,) = parse(text, *image.size, strict=True).objects
    # Where each corner lands: the same corner mirrored in pixels of the new image.
    units = geometry.to_grammar(np.array(quad_px, dtype=float).reshape(1, 8), WIDTH, HEIGHT)
    moved = geometry.from_grammar(transform.points(units.reshape(4, 2)).reshape(1, 8), *image.size)
    expected = {tuple(np.round(corner, 3)) for corner in moved.reshape(4, 2)}
    assert {tuple(np.round(corner, 3)) for corner in found.quad} == expected
    assert text == format_quads(found.quad, *image.size)  # written clockwise from the top


@pytest.mark.parametrize("transform", ALL_DIHEDRAL, ids=repr)
def test_a_text_mask_turns_like_its_picture(transform):
    cells = np.zeros((16, 16), dtype=bool)
    cells[2:10, 3] = True  # an L: no symmetry of the square maps it onto itself
    cells[9, 3:8] = True
    record = refer_record("Segment the road.", format_mask(cells, 16))
    changed, _ = augment(record, picture(), transform)
    (found,) = parse(changed["conversations"][1]["value"], 16, 16, strict=True).objects
    turned = np.asarray(transform.image(Image.fromarray(cells)))
    assert np.array_equal(geometry.rle_to_mask(found.mask).astype(bool), turned)


@pytest.mark.parametrize(
    "question",
    ["Locate the top-most building.", "Count the trees on the left.", "Is the lake northern?"],
)
def test_words_that_name_a_place_keep_the_record_as_it_is(question):
    record = refer_record(question, format_hbbs(OBJECT_PX, WIDTH, HEIGHT))
    image = picture()
    assert names_a_place(record)
    assert augment(record, image, Dihedral(flip_x=True)) == (record, image)


def test_a_malformed_tag_is_an_error_of_the_record():
    record = refer_record("Find the pool.", "<box>[[10,20,30]]</box>")
    with pytest.raises(GrammarError):
        augment(record, picture(), Dihedral(flip_y=True))


def answers(dataset) -> list[str]:
    return [item["record"]["conversations"][1]["value"] for item in dataset]


@pytest.fixture
def pointing(tmp_path: Path) -> Path:
    """40 records asking for the one bright rectangle of the same picture."""
    (tmp_path / "images").mkdir()
    picture().save(tmp_path / "images" / "r0.png")
    answer = format_hbbs(OBJECT_PX, WIDTH, HEIGHT)
    records = [{**refer_record("Find the building.", answer), "id": f"r{i}"} for i in range(40)]
    write_jsonl(tmp_path / "train-00000.jsonl", records)
    return tmp_path


def test_the_dataset_draws_transforms_by_seed_epoch_and_index(pointing: Path):
    dataset = RecordDataset(pointing, "train", augmentation="dihedral")
    drawn = answers(dataset[i] for i in range(len(dataset)))
    assert len(set(drawn)) == 8  # 40 draws of 8 transforms see each of them
    # An item's transform does not depend on what was read before it, or on global state.
    random.seed(123)
    assert answers(dataset[i] for i in reversed(range(len(dataset)))) == drawn[::-1]
    dataset.set_epoch(1)
    assert answers(dataset[i] for i in range(len(dataset))) != drawn
    for item in (dataset[i] for i in range(5)):
        (found,) = parse(item["record"]["conversations"][1]["value"], *item["image"].size).objects
        assert np.allclose(found.hbb, bright_box(item["image"]), atol=1.0)
    plain = RecordDataset(pointing, "train")
    assert set(answers(plain[i] for i in range(len(plain)))) == {format_hbbs(OBJECT_PX, 100, 60)}


def test_the_streaming_dataset_augments_the_same_way_each_pass(pointing: Path):
    dataset = StreamingRecordDataset(pointing, "train", augmentation="dihedral")
    drawn = answers(dataset)
    assert len(set(drawn)) == 8
    assert answers(dataset) == drawn
    dataset.set_epoch(1)
    assert answers(dataset) != drawn


def test_an_unknown_augmentation_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown augmentation"):
        RecordDataset(tmp_path, "train", augmentation="mixup")
    with pytest.raises(RecipeError, match=r"data\.augment"):
        load_recipe("nano-synthetic", ["data.augment=mixup"])
