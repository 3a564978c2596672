#!/usr/bin/env python3
"""Writes a tiny fake GeoChat-Bench in its released layout, with the images it needs.

Files (see :mod:`data_builders.converters.geochat_bench` for the format)::

    referring.jsonl  region_captioning.jsonl  lrben.jsonl  hrben.jsonl  aid.jsonl  UCmerced.jsonl
    images/<image_id>.png                          GeoChat_Instruct images
    RSVQA_LR/Images_LR/<id>.tif, RSVQA_LR/LR_split_test_answers.json
    RSVQA_HR/Data/<id>.tif, RSVQA_HR/USGS_split_test_phili_answers.json
    AID/<Class>/<name>.jpg                          (aid.jsonl says .png, as the real file does)
    UCMerced_LandUse/Images/<class>/<name>.tif

The last line of referring.jsonl is malformed (cut short); one referring line has more
``obj_ids`` than quads, one LRBEN line a field the converter does not read, and one UCMerced
question does not list its true class (what the conversion reports). Referring truth is in
pixels; the region of ``wide.png`` (64 x 48) is written on 0-100 of GeoChat's padded square,
and its pixel truth is computed here from that definition (:data:`REGIONS`). Run from
anywhere; deterministic.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent

# name -> (width, height)
INSTRUCT_IMAGES = {"P0001_0000": (64, 64), "wide": (64, 48)}
LR_IMAGES = {"0": (32, 32), "1": (32, 32)}
HR_IMAGES = {"10": (48, 48)}
AID_IMAGES = {"Airport/airport_1": (40, 40), "MediumResidential/mediumresidential_2": (40, 40)}
UCM_IMAGES = {
    "agricultural/agricultural00": (32, 32),
    "denseresidential/denseresidential01": (32, 32),
    "storagetanks/storagetanks03": (32, 32),
}

REFERRING = [
    {
        "question_id": 1,
        "image_id": "P0001_0000",
        "question": "the large plane on the left",
        "ground_truth": [[[4, 10], [20, 10], [20, 30], [4, 30]]],
        "type": "ref",
        "dataset": "SOTA",
        "obj_ids": [7],
        "size_group": "large",
    },
    {
        "question_id": 2,
        "image_id": "P0001_0000",
        "question": "all the small white cars",
        # A rotated quad as eight numbers, and a box that sticks out of the image.
        "ground_truth": [[40, 40, 50, 44, 48, 52, 38, 48], [[56, 2], [70, 2], [70, 8], [56, 8]]],
        "type": "gnd",
        "dataset": "SOTA",
        "obj_ids": [8, 9],
        "size_group": "small",
    },
    {
        "question_id": 3,
        "image_id": "wide",
        "question": "the ship at the bottom",
        "ground_truth": [[[10, 30], [30, 30], [30, 40], [10, 40]]],
        "type": "ref",
        "dataset": "FAST",
        "obj_ids": [1, 2],  # not one id per quad: a warning, and no ids
        "size_group": "medium",
    },
]
MALFORMED_REFERRING = '{"question_id": 4, "image_id": "wide", "question": "the'

# Regions: GeoChat values, and the pixel box they mean on wide.png (side 64, image 8 px down).
REGION_CAPTIONS = [
    {
        "question_id": 11,
        "image_id": "wide",
        "question": "{<25><25><50><50>|<0>}",
        "ground_truth": "a small white car parked next to a building",
        "type": "region",
        "dataset": "FAST",
        "obj_ids": [3],
        "size_group": "small",
    },
    {
        "question_id": 12,
        "image_id": "P0001_0000",
        "question": "{<10><10><40><30>|<30>}",
        "ground_truth": "a large plane on the apron",
        "type": "region",
        "dataset": "SOTA",
        "obj_ids": [7],
        "size_group": "large",
    },
]
REGIONS = {11: [16.0, 8.0, 32.0, 24.0]}

SUFFIX = "\nAnswer the question using a single word or phrase."
LRBEN = [
    {
        "question_id": 100,
        "image": "0.tif",
        "text": "Is there a road?" + SUFFIX,
        "category": "presence",
        "img_id": 0,  # a field the converter does not read
    },
    {
        "question_id": 101,
        "image": "0.tif",
        "text": "Are there more water areas than buildings?" + SUFFIX,
        "category": "comp",
    },
    {
        "question_id": 102,
        "image": "1.tif",
        "text": "Is it a rural or an urban area?" + SUFFIX,
        "category": "rural_urban",
    },
    {
        "question_id": 103,
        "image": "1.tif",
        "text": "How many buildings are there?" + SUFFIX,
        "category": "count",
    },
]
LR_ANSWERS = {100: "yes", 101: "no", 102: "rural", 103: "12"}
HRBEN = [
    {
        "question_id": 500,
        "image": "10.tif",
        "text": "Is there a residential building?" + SUFFIX,
        "category": "presence",
    },
    {
        "question_id": 501,
        "image": "10.tif",
        "text": "Is the number of roads equal to the number of buildings?" + SUFFIX,
        "category": "comp",
    },
]
HR_ANSWERS = {500: "yes", 501: "no"}

CLASSIFY = (
    "Classify the image within one of the given classes: Classes: {classes}\n"
    "Answer in one word or a short phrase."
)
AID = [
    {
        "question_id": "Airport/airport_1.jpg",
        "image": "Airport/airport_1.png",
        "text": CLASSIFY.format(classes="airport, bare land, medium residential"),
        "ground_truth": "Airport",
    },
    {
        "question_id": "MediumResidential/mediumresidential_2.jpg",
        "image": "MediumResidential/mediumresidential_2.png",
        "text": CLASSIFY.format(classes="airport, bare land, medium residential"),
        "ground_truth": "MediumResidentialgt",
    },
]
UCMERCED = [
    {
        "question_id": "agricultural/agricultural00.tif",
        "image": "agricultural/agricultural00.tif",
        # The true class is not listed: a warning, and the answer as the folder writes it.
        "text": CLASSIFY.format(classes="dense residential, storage tanks"),
        "ground_truth": "agricultural",
    },
    {
        "question_id": "denseresidential/denseresidential01.tif",
        "image": "denseresidential/denseresidential01.tif",
        "text": CLASSIFY.format(classes="agricultural, dense residential"),
        "ground_truth": "denseresidential",
    },
    {
        "question_id": "storagetanks/storagetanks03.tif",
        "image": "storagetanks/storagetanks03.tif",
        "text": CLASSIFY.format(classes="agricultural, dense residential, storage tanks"),
        "ground_truth": "storagetanks",
    },
]


def _images(folder: Path, sizes: dict[str, tuple[int, int]], suffix: str, rng) -> None:
    for name, (width, height) in sizes.items():
        path = folder / f"{name}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)


def _jsonl(name: str, rows: list[dict], extra: str = "") -> None:
    lines = [json.dumps(row) for row in rows] + ([extra] if extra else [])
    (ROOT / name).write_text("\n".join(lines) + "\n")


def _answers(path: Path, answers: dict[int, str]) -> None:
    rows = [
        {"id": 9000 + index, "question_id": qid, "answer": text, "active": True}
        for index, (qid, text) in enumerate(answers.items())
    ]
    # An inactive answer is ignored even when it comes first.
    rows.insert(
        0, {"id": 8999, "question_id": next(iter(answers)), "answer": "maybe", "active": False}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"answers": rows}))


def main() -> None:
    rng = np.random.default_rng(0)
    for folder in ("images", "RSVQA_LR", "RSVQA_HR", "AID", "UCMerced_LandUse"):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
    _images(ROOT / "images", INSTRUCT_IMAGES, ".png", rng)
    _images(ROOT / "RSVQA_LR" / "Images_LR", LR_IMAGES, ".tif", rng)
    _images(ROOT / "RSVQA_HR" / "Data", HR_IMAGES, ".tif", rng)
    _images(ROOT / "AID", AID_IMAGES, ".jpg", rng)
    _images(ROOT / "UCMerced_LandUse" / "Images", UCM_IMAGES, ".tif", rng)
    _answers(ROOT / "RSVQA_LR" / "LR_split_test_answers.json", LR_ANSWERS)
    _answers(ROOT / "RSVQA_HR" / "USGS_split_test_phili_answers.json", HR_ANSWERS)
    _jsonl("referring.jsonl", REFERRING, MALFORMED_REFERRING)
    _jsonl("region_captioning.jsonl", REGION_CAPTIONS)
    _jsonl("lrben.jsonl", LRBEN)
    _jsonl("hrben.jsonl", HRBEN)
    _jsonl("aid.jsonl", AID)
    _jsonl("UCmerced.jsonl", UCMERCED)


if __name__ == "__main__":
    main()
