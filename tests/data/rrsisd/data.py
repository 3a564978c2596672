#!/usr/bin/env python3
"""Writes tiny fake RRSIS-D files: rrsisd/instances.json, rrsisd/refs(unc).p and the images.

Layout from the refer API as RMSIN and SegEarth-R1 use it (``refer/refer.py``): a COCO
``instances.json`` and a pickled list of refs ``{ref_id, ann_id, image_id, category_id, split,
sentences: [{raw, sent, sent_id, tokens}], sent_ids}`` (protocol 2, as Python 2 wrote it);
images in ``images/rrsisd/JPEGImages``. The segmentations use the three COCO forms: a polygon,
a compressed RLE and a list holding an uncompressed RLE; one polygon encloses nothing (its ref
must be skipped). Run from anywhere; deterministic.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

ROOT = Path(__file__).resolve().parent
WIDTH, HEIGHT = 64, 48
IMAGES = {1: "00001.jpg", 2: "00002.jpg", 3: "00003.jpg"}
# As RRSIS-D writes them: the DIOR class names (see geochat.categories.DIOR_CLASSES).
CATEGORIES = {1: "vehicle", 2: "bridge", 3: "storagetank"}


def truth_masks() -> dict[int, np.ndarray]:
    """The target mask of each annotation id (pixel rows and columns, [H, W] bools)."""
    rectangle = np.zeros((HEIGHT, WIDTH), dtype=bool)
    rectangle[6:18, 8:24] = True  # the pixel centres inside the polygon of annotation 1
    band = np.zeros((HEIGHT, WIDTH), dtype=bool)
    band[20:26, :] = True
    disc = np.zeros((HEIGHT, WIDTH), dtype=bool)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    disc[(rows - 30) ** 2 + (cols - 40) ** 2 <= 36] = True
    return {1: rectangle, 2: band, 3: disc}


def _segmentations(masks: dict[int, np.ndarray]) -> dict[int, object]:
    compressed = coco_mask.encode(np.asfortranarray(masks[2].astype(np.uint8)))
    column_major = masks[3].flatten(order="F").astype(np.int64)
    changes = np.flatnonzero(np.diff(column_major)) + 1
    runs = np.diff(np.concatenate([[0], changes, [column_major.size]])).tolist()
    if column_major[0]:
        runs = [0, *runs]  # COCO runs start with a run of zeros
    return {
        1: [[8, 6, 24, 6, 24, 18, 8, 18]],
        2: {"size": [HEIGHT, WIDTH], "counts": compressed["counts"].decode("ascii")},
        3: [{"size": [HEIGHT, WIDTH], "counts": runs}],
        4: [[2, 2, 10, 10, 20, 20]],  # three points on one line: no area
    }


# ref_id, ann_id, image_id, category_id, split, sentences
REFS = [
    (0, 1, 1, 1, "train", ["The vehicle at the top left", "a gray car on the left"]),
    (1, 2, 2, 2, "train", ["The bridge crossing the image"]),
    (2, 3, 3, 3, "val", ["The round storage tank"]),
    (3, 4, 1, 1, "test", ["A vehicle that is not there"]),
]


def refs() -> list[dict]:
    result, sent_id = [], 0
    for ref_id, ann_id, image_id, category_id, split, texts in REFS:
        sentences = []
        for text in texts:
            sentences.append(
                {
                    "raw": text,
                    "sent": text.lower(),
                    "sent_id": sent_id,
                    "tokens": text.lower().split(),
                }
            )
            sent_id += 1
        result.append(
            {
                "ref_id": ref_id,
                "ann_id": ann_id,
                "image_id": image_id,
                "category_id": category_id,
                "split": split,
                "file_name": IMAGES[image_id],
                "sentences": sentences,
                "sent_ids": [sentence["sent_id"] for sentence in sentences],
            }
        )
    return result


def main() -> None:
    rng = np.random.default_rng(0)
    annotation_dir, image_dir = ROOT / "rrsisd", ROOT / "images" / "rrsisd" / "JPEGImages"
    for folder in (annotation_dir, ROOT / "images"):
        shutil.rmtree(folder, ignore_errors=True)
    annotation_dir.mkdir()
    image_dir.mkdir(parents=True)
    for name in IMAGES.values():
        pixels = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / name, quality=90)
    segmentations = _segmentations(truth_masks())
    annotations = [
        {
            "id": ann_id,
            "image_id": image_id,
            "category_id": category_id,
            "segmentation": segmentations[ann_id],
            "iscrowd": 0,
        }
        for _, ann_id, image_id, category_id, _, _ in REFS
    ]
    instances = {
        "images": [
            {"id": i, "file_name": name, "width": WIDTH, "height": HEIGHT}
            for i, name in IMAGES.items()
        ],
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for i, name in CATEGORIES.items()],
    }
    (annotation_dir / "instances.json").write_text(json.dumps(instances))
    with (annotation_dir / "refs(unc).p").open("wb") as handle:
        pickle.dump(refs(), handle, protocol=2)


if __name__ == "__main__":
    main()
