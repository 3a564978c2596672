#!/usr/bin/env python3
"""Writes tiny fake DIOR-RSVG files: Annotations/*.xml, JPEGImages/*.jpg and split files.

Layout from the RSVG-pytorch repository (``RSVGD/Annotations/00001.xml``, ``data_loader.py``):
VOC XML with ``<object><name/><bndbox/><description/></object>``; split files list 0-based
indices of objects counted over all annotation files in name order. One object has no
description (it must be skipped). Run from anywhere; deterministic.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent

# file stem -> (width, height, [(class name, [xmin, ymin, xmax, ymax], description or None)])
IMAGES = {
    "00001": (
        64,
        48,
        [
            ("golffield", [8, 6, 40, 30], "A green golf field"),
            ("storagetank", [44, 20, 60, 36], "The storage tank on the right"),
        ],
    ),
    "00002": (
        48,
        64,
        [
            ("vehicle", [10, 40, 20, 50], "The small vehicle at the bottom"),
            ("Expressway-Service-area", [2, 2, 30, 20], None),
        ],
    ),
}
SPLITS = {"train": [0, 2], "val": [1], "test": [3]}


def annotation_xml(stem: str, width: int, height: int, objects: list[tuple]) -> str:
    parts = [
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
        "<annotation>",
        f"  <filename>{stem}.jpg</filename>",
        "  <source><database>DIOR</database></source>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for name, (xmin, ymin, xmax, ymax), description in objects:
        parts += [
            "  <object>",
            f"    <name>{name}</name>",
            "    <pose>Unspecified</pose>",
            f"    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>",
        ]
        if description is not None:
            parts.append(f"    <description>{escape(description)}</description>")
        parts.append("  </object>")
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def main() -> None:
    rng = np.random.default_rng(0)
    for folder in ("Annotations", "JPEGImages"):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
        (ROOT / folder).mkdir()
    for stem, (width, height, objects) in IMAGES.items():
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(ROOT / "JPEGImages" / f"{stem}.jpg", quality=90)
        (ROOT / "Annotations" / f"{stem}.xml").write_text(
            annotation_xml(stem, width, height, objects)
        )
    for split, indices in SPLITS.items():
        (ROOT / f"{split}.txt").write_text("".join(f"{index}\n" for index in indices))


if __name__ == "__main__":
    main()
