"""Geometry-consistent augmentation: the eight flips and quarter turns of an image.

Flipping an image moves its objects, so every geometry of the conversation (``<box>``,
``<quad>``, ``<seg>`` in grammar units, see :mod:`geochat.grammar`) moves with it, and the
answer stays true. A record whose words name a side or a place ("on the left", "the top-most
building", "north") is left as it is: flipping its image would make its words wrong.

A model trained on few images learns the priors of their layout (in our synthetic world a third
of the training boxes start at x = 0); the eight transforms show each object in eight places.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from geochat import geometry
from geochat.grammar import format_hbbs, format_mask, format_quads, parse
from geochat.records import Record

SCALE = geometry.GRAMMAR_SCALE
# Words whose truth depends on the image's orientation; "\w*" takes "top-most", "northern"...
PLACE_WORDS = re.compile(
    r"\b(left|right|top|bottom|upper|lower|north|south|east|west|centre|center|middle|corner"
    r"|above|below|horizontal|vertical)\w*",
    re.IGNORECASE,
)
GEOMETRY_TAG = re.compile(r"<(box|quad|seg)>.*?</\1>", re.DOTALL)
AUGMENTATIONS = ("dihedral",)


@dataclass(frozen=True)
class Dihedral:
    """One of the eight symmetries of a square: an optional transpose, then optional flips.

    Attributes:
        transpose: Swap the x and y axes (a reflection across the main diagonal).
        flip_x: Mirror left to right.
        flip_y: Mirror top to bottom.
    """

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    def image(self, image: Image.Image) -> Image.Image:
        """The transformed image (width and height swap under a transpose)."""
        if self.transpose:
            image = image.transpose(Image.Transpose.TRANSPOSE)
        if self.flip_x:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.flip_y:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        return image

    def points(self, points: np.ndarray) -> np.ndarray:
        """Transforms ``[..., 2]`` points ``(x, y)`` in grammar units (0-1000 per axis)."""
        x, y = points[..., 0], points[..., 1]
        if self.transpose:
            x, y = y, x
        if self.flip_x:
            x = SCALE - x
        if self.flip_y:
            y = SCALE - y
        return np.stack([x, y], axis=-1)

    def cells(self, cells: np.ndarray) -> np.ndarray:
        """Transforms a ``[rows (y), columns (x)]`` grid the way :meth:`image` does the image."""
        if self.transpose:
            cells = cells.T
        if self.flip_x:
            cells = cells[:, ::-1]
        if self.flip_y:
            cells = cells[::-1, :]
        return cells

    def text(self, text: str) -> str:
        """Rewrites every geometry tag of a turn; other words are kept as they are.

        Raises:
            geochat.grammar.GrammarError: for a malformed tag (the record is wrong, not the
                augmentation).
        """
        return GEOMETRY_TAG.sub(lambda match: self._tag(match.group(0)), text)

    def _tag(self, tag: str) -> str:
        if tag.startswith("<seg>"):
            # Parsed on an N x N image, a text mask comes back as its own grid of cells.
            grid = int(tag[len("<seg>") : tag.index("|")])
            (mask,) = parse(tag, grid, grid, strict=True).objects
            assert mask.mask is not None  # a strict parse of a <seg> tag is one mask
            cells = geometry.rle_to_mask(mask.mask).astype(bool)
            return format_mask(np.ascontiguousarray(self.cells(cells)), grid)
        objects = parse(tag, SCALE, SCALE, strict=True).objects
        if tag.startswith("<quad>"):
            quads = self.points(np.array([item.quad for item in objects], dtype=np.float64))
            return format_quads(quads, SCALE, SCALE)
        corners = self.points(np.array([item.hbb for item in objects]).reshape(-1, 2, 2))
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        return format_hbbs(boxes, SCALE, SCALE)


ALL_DIHEDRAL = tuple(
    Dihedral(transpose, flip_x, flip_y)
    for transpose in (False, True)
    for flip_x in (False, True)
    for flip_y in (False, True)
)


def names_a_place(record: Record) -> bool:
    """Whether any turn of the record names a side or a place of the image."""
    return any(PLACE_WORDS.search(turn["value"]) for turn in record["conversations"])


def augment(record: Record, image: Image.Image, transform: Dihedral) -> tuple[Record, Image.Image]:
    """The record and image under ``transform``, or both unchanged if the words name a place.

    The returned record is a copy with its conversation rewritten and its width and height
    swapped under a transpose; its ``objects`` are dropped (they would still be in the original
    image's pixels). The input record is not modified.
    """
    if transform == Dihedral() or names_a_place(record):
        return record, image
    conversations = [
        {**turn, "value": transform.text(turn["value"])} for turn in record["conversations"]
    ]
    width, height = record.get("width"), record.get("height")
    if transform.transpose:
        width, height = height, width
    changed: dict[str, Any] = {key: value for key, value in record.items() if key != "objects"}
    changed.update(conversations=conversations, width=width, height=height)
    return changed, transform.image(image)


def draw_dihedral(*key: object) -> Dihedral:
    """One of the eight transforms, uniformly, decided by ``key`` alone.

    A key such as ``(seed, epoch, index)`` makes the draw independent of the order in which
    items are read, of data-loader workers and of any global random state, so a training run
    resumed from a checkpoint sees the same transforms as an uninterrupted one.
    """
    return random.Random(":".join(str(part) for part in key)).choice(ALL_DIHEDRAL)
