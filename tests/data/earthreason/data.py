#!/usr/bin/env python3
"""Writes a tiny fake EarthReason: <split>/images, <split>/labels (PNG masks), <split>/QAs.

Layout from SegEarth-R1's loaders: per split ``images/<stem>.jpg``, ``labels/<stem>.png``
(non-zero pixels are the target) and ``QAs/<stem>.json`` ``{"questions": [...], "answer":
[...]}``, an empty ``answer`` list meaning "no target". Three samples: two questions with two
answers, one without target, one in the val split. Run from anywhere; deterministic.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent
WIDTH, HEIGHT = 64, 48

# split -> stem -> (rows, columns of the target or None, questions, answers)
SAMPLES = {
    "train": {
        "airport_01": (
            (slice(10, 30), slice(20, 50)),
            ["Where could a plane take off?", "Which area is used by aircraft on the ground?"],
            ["The runway is long and straight.", "The apron next to the terminal."],
        ),
        "forest_02": (None, ["Where would a ship dock in this image?"], []),
    },
    "val": {
        "harbour_03": (
            (slice(30, 44), slice(4, 16)),
            ["Which structure protects boats from waves?"],
            ["The breakwater at the bottom left."],
        ),
    },
}


def main() -> None:
    rng = np.random.default_rng(0)
    for split, samples in SAMPLES.items():
        shutil.rmtree(ROOT / split, ignore_errors=True)
        for folder in ("images", "labels", "QAs"):
            (ROOT / split / folder).mkdir(parents=True)
        for stem, (target, questions, answers) in samples.items():
            pixels = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(ROOT / split / "images" / f"{stem}.jpg", quality=90)
            label = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
            if target is not None:
                label[target] = 255
            Image.fromarray(label).save(ROOT / split / "labels" / f"{stem}.png")
            qa = {"questions": questions, "answer": answers}
            (ROOT / split / "QAs" / f"{stem}.json").write_text(json.dumps(qa, indent=1))


if __name__ == "__main__":
    main()
