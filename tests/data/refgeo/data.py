#!/usr/bin/env python3
"""Writes a tiny fake refGeo: metadata/*.jsonl, images/<subset>/* and one SAM mask.

Layout of the released set (annotations in ``metadata/``; the public training code reads the
same files from ``metainfo/``): ``metadata/<subset>_<split>.jsonl`` rows ``{question_id,
image_id, question, bbox, poly, dataset}`` with ``bbox`` ``[x0, y0, x1, y1]`` and ``poly``
four ``[x, y]`` pixel corners, plus, on one row, fields the converter does not use (AVVG's
``bbox_3d`` and ``pitch_angle``: see :data:`UNUSED_FIELDS`); images in ``images/<dataset>/``,
masks in ``masks/<dataset>/<image stem>_<question_id>.png``.
Rows cover: a box whose poly is the box itself, a rotated poly, two objects in one row, and a
row with neither (to be skipped). Run from anywhere; deterministic.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent
IMAGES = {("dior_rsvg", "00001.jpg"): (64, 48), ("geochat", "P0001_0000.png"): (48, 64)}

ROWS = {
    "dior_rsvg_train": [
        {
            "question_id": 0,
            "image_id": "00001.jpg",
            "question": "the storage tank on the right",
            "bbox": [40, 10, 60, 30],
            "poly": [[40, 10], [60, 10], [60, 30], [40, 30]],
            "dataset": "dior_rsvg",
        },
    ],
    "geochat_test": [
        {
            "question_id": 7,
            "image_id": "P0001_0000.png",
            "question": "the rotated ship",
            "bbox": [10, 12, 30, 36],
            "poly": [[20, 12], [30, 24], [20, 36], [10, 24]],
            "dataset": "geochat",
            "bbox_3d": [10, 12, 0, 30, 36, 5],
            "pitch_angle": 35.5,
        },
        {
            "question_id": 8,
            "image_id": "P0001_0000.png",
            "question": "two small cars",
            "bbox": [[2, 40, 10, 46], [30, 50, 40, 60]],
            "poly": [
                [[2, 40], [10, 40], [10, 46], [2, 46]],
                [[30, 50], [40, 50], [40, 60], [30, 60]],
            ],
            "dataset": "geochat",
        },
        {
            "question_id": 9,
            "image_id": "P0001_0000.png",
            "question": "nothing annotated",
            "bbox": None,
            "poly": None,
            "dataset": "geochat",
        },
    ],
}
# Fields of the rows above that records do not carry, and how many rows hold each.
UNUSED_FIELDS = {"bbox_3d": 1, "pitch_angle": 1}
# question_id of the geochat row with a SAM mask, and the mask's rows and columns.
MASK_QUESTION = 7
MASK_SLICE = (slice(14, 34), slice(12, 28))


def main() -> None:
    rng = np.random.default_rng(0)
    for folder in ("metadata", "images", "masks"):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
        (ROOT / folder).mkdir()
    for (subset, name), (width, height) in IMAGES.items():
        (ROOT / "images" / subset).mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(ROOT / "images" / subset / name)
    for stem, rows in ROWS.items():
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        (ROOT / "metadata" / f"{stem}.jsonl").write_text(lines)
    mask = np.zeros((64, 48), dtype=np.uint8)
    mask[MASK_SLICE] = 255
    (ROOT / "masks" / "geochat").mkdir()
    Image.fromarray(mask).save(ROOT / "masks" / "geochat" / f"P0001_0000_{MASK_QUESTION}.png")


if __name__ == "__main__":
    main()
