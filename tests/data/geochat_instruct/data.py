#!/usr/bin/env python3
"""Writes a tiny fake GeoChat_Instruct: GeoChat_Instruct.json and its images.

The images lie where the released ``images.zip`` unpacks them in the download folder,
``share/softwares/kartik/GeoChat_finetuning/final_images_llava/`` (:data:`IMAGE_DIR`); the
``image`` names are relative to that folder.

Format from the GeoChat paper (table 1) and repository: LLaVA conversations whose boxes are
``{<x_left><y_top><x_right><y_bottom>|<θ>}`` on 0-100 of the square the image is padded to
(centred), θ in degrees turning the box counter-clockwise on screen about its centre, phrases in
``<p>...</p>``, several boxes joined by ``<delim>``, task identifiers ``[grounding]``,
``[refer]``, ``[identify]``. One image is not square, so the padding matters.

The pixel truth of every box is computed here from that definition, independently of the
converter (see :func:`box_pixels` and :func:`rotated_pixels`). Run from anywhere; deterministic.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent
IMAGE_DIR = Path("share/softwares/kartik/GeoChat_finetuning/final_images_llava")
SIZES = {"wide.png": (64, 48), "square.png": (48, 48)}


def _frame(image: str) -> tuple[float, float, float]:
    """GeoChat's padded square: side and the image's offset in it."""
    width, height = SIZES[image]
    side = max(width, height)
    return side, (side - width) // 2, (side - height) // 2


def box_pixels(image: str, values: tuple[int, int, int, int]) -> list[float]:
    """``[x0, y0, x1, y1]`` in pixels of a GeoChat box (values 0-100 of the padded square)."""
    side, dx, dy = _frame(image)
    x0, y0, x1, y1 = values
    return [x0 * side / 100 - dx, y0 * side / 100 - dy, x1 * side / 100 - dx, y1 * side / 100 - dy]


def rotated_pixels(
    image: str, values: tuple[int, int, int, int], angle: float
) -> list[list[float]]:
    """Corners in pixels of a box turned ``angle`` degrees counter-clockwise on screen."""
    x0, y0, x1, y1 = box_pixels(image, values)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    theta = math.radians(angle)
    corners = []
    for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
        # Counter-clockwise on screen (y down) is clockwise in the usual y-up frame.
        dx, dy = x - cx, y - cy
        corners.append(
            [
                cx + dx * math.cos(theta) + dy * math.sin(theta),
                cy - dx * math.sin(theta) + dy * math.cos(theta),
            ]
        )
    return corners


# Each item: the GeoChat conversation, the task the converter must find and the truth objects
# (source label, canonical category, kind, pixel geometry) it must recover. The source label is
# the box's phrase, or the answer for the region of an [identify] question.
ITEMS = [
    {
        "id": "grounding_1",
        "image": "wide.png",
        "conversations": [
            ("human", "<image>\n[grounding] Describe the image in detail."),
            (
                "gpt",
                "The image shows <p>two planes</p> {<10><30><30><50>|<0>}<delim>"
                "{<60><35><80><55>|<0>} parked near <p>a hangar</p> {<20><30><60><50>|<30>}.",
            ),
        ],
        "task": "grounded_caption",
        "truth": [
            ("two planes", "plane", "hbb", box_pixels("wide.png", (10, 30, 30, 50))),
            ("two planes", "plane", "hbb", box_pixels("wide.png", (60, 35, 80, 55))),
            ("a hangar", "object", "quad", rotated_pixels("wide.png", (20, 30, 60, 50), 30)),
        ],
    },
    {
        "id": "refer_1",
        "image": "square.png",
        "conversations": [
            ("human", "<image>\n[refer] give me the location of <p>silver plane</p>"),
            ("gpt", "{<16><55><24><63>|<11>}"),
        ],
        "task": "refer",
        "truth": [
            ("silver plane", "plane", "quad", rotated_pixels("square.png", (16, 55, 24, 63), 11))
        ],
    },
    {
        "id": "identify_1",
        "image": "wide.png",
        "conversations": [
            ("human", "[identify] What is the object present at {<8><26><22><37>}\n<image>"),
            ("gpt", "It is a small white car."),
        ],
        "task": "identify",
        "truth": [
            ("It is a small white car", "car", "hbb", box_pixels("wide.png", (8, 26, 22, 37)))
        ],
    },
    {
        "id": "vqa_1",
        "image": "square.png",
        "conversations": [
            (
                "human",
                "<image>\nIs there a ship? Answer the question using a single word or phrase.",
            ),
            ("gpt", "No"),
        ],
        "task": "vqa",
        "truth": [],
    },
    {
        "id": "conversation_1",
        "image": "wide.png",
        "conversations": [
            ("human", "<image>\nHow many planes are there?"),
            ("gpt", "There are two planes."),
            ("human", "Where are they parked?"),
            ("gpt", "They are parked near a hangar."),
            ("human", "[refer] give me the location of <p>storage tank</p>"),
            ("gpt", "{<70><30><80><40>|<45>}"),
            ("human", "[identify] What is the object present at {<40><60><50><70>}"),
            ("gpt", "A ship."),
        ],
        "task": "multi_turn",
        "truth": [
            (
                "storage tank",
                "storage tank",
                "quad",
                rotated_pixels("wide.png", (70, 30, 80, 40), 45),
            ),
            ("A ship", "ship", "hbb", box_pixels("wide.png", (40, 60, 50, 70))),
        ],
    },
    {
        "id": "description_1",
        "image": "square.png",
        "conversations": [
            ("human", "<image>\nDescribe the image in detail."),
            ("gpt", "An airport with two planes parked near a hangar."),
        ],
        "task": "caption",
        "truth": [],
    },
]


def instruction_items() -> list[dict]:
    return [
        {
            "id": item["id"],
            "image": item["image"],
            "conversations": [{"from": who, "value": text} for who, text in item["conversations"]],
        }
        for item in ITEMS
    ]


def main() -> None:
    rng = np.random.default_rng(0)
    shutil.rmtree(ROOT / IMAGE_DIR.parts[0], ignore_errors=True)
    image_dir = ROOT / IMAGE_DIR
    image_dir.mkdir(parents=True)
    for name, (width, height) in SIZES.items():
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / name)
    (ROOT / "GeoChat_Instruct.json").write_text(json.dumps(instruction_items(), indent=1))


if __name__ == "__main__":
    main()
