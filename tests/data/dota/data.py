#!/usr/bin/env python3
"""Writes tiny fake DOTA files: train/images/*.png and train/labelTxt/*.txt.

Layout and line format from the DOTA devkit (``imagesource:`` and ``gsd:`` header lines, then
``x1 y1 x2 y2 x3 y3 x4 y4 category difficult``). Three images: one with a header, rotated and
difficult objects and one object sticking out of the image; one without header whose line has
no ``difficult``; one with ``gsd:null`` and no object. Run from anywhere; deterministic.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent
SPLIT = "train"

# name -> (width, height, header lines, [(corners x1 y1 ... y4, category, difficult or None)])
IMAGES = {
    "P0001": (
        64,
        48,
        ["imagesource:GoogleEarth", "gsd:0.5"],
        [
            ((10, 6, 30, 10, 27, 24, 7, 20), "plane", 0),
            ((40, 30, 48, 30, 48, 36, 40, 36), "small-vehicle", 0),
            ((50, 8, 58, 8, 58, 14, 50, 14), "small-vehicle", 0),
            ((20, 34, 30, 34, 30, 44, 20, 44), "storage-tank", 1),
            ((56, 38, 70, 38, 70, 46, 56, 46), "ship", 0),  # right part outside the image
        ],
    ),
    "P0002": (48, 64, [], [((4, 40, 20, 40, 20, 60, 4, 60), "tennis-court", None)]),
    "P0003": (40, 40, ["imagesource:GF-2", "gsd:null"], []),
}
GSD = {"P0001": 0.5, "P0002": None, "P0003": None}


def label_text(header: list[str], objects: list[tuple]) -> str:
    lines = list(header)
    for corners, category, difficult in objects:
        fields = [f"{value:g}" for value in corners] + [category]
        lines.append(" ".join(fields if difficult is None else [*fields, str(difficult)]))
    return "\n".join(lines) + "\n"


def main() -> None:
    rng = np.random.default_rng(0)
    split_dir = ROOT / SPLIT
    shutil.rmtree(split_dir, ignore_errors=True)
    (split_dir / "images").mkdir(parents=True)
    (split_dir / "labelTxt").mkdir()
    for name, (width, height, header, objects) in IMAGES.items():
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(split_dir / "images" / f"{name}.png")
        (split_dir / "labelTxt" / f"{name}.txt").write_text(label_text(header, objects))


if __name__ == "__main__":
    main()
