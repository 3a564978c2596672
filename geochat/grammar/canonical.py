"""The canonical geometry grammar, version 1 (DESIGN.md, "Geometry grammar, version 1").

Coordinates are integers 0-1000 per axis of the original image: ``x' = round(1000 x / W)``,
``y' = round(1000 y / H)`` (``geochat.geometry.to_grammar``, which clips to 0-1000), so a
coordinate inside the image is read back within ``W / 2000`` (``H / 2000``) pixels.

- phrase: ``<ref>the largest ship</ref>`` right before its geometry tag; it applies to every
  geometry inside that one tag.
- horizontal boxes: ``<box>[[x0,y0,x1,y1],[...]]</box>``
- quads: ``<quad>[[x1,y1,x2,y2,x3,y3,x4,y4],[...]]</quad>``; written clockwise on screen from the
  top-most corner (left-most on ties); read in any order, returned in that order.
- masks: ``<seg>N|row;row;...</seg>``, an ``N x N`` grid (N = 16 or 32, see
  :mod:`geochat.grammar.textmask`), each row as ``v*count`` runs joined by ``,`` summing to N.
- nothing found: ``<none>``.

Tolerant parsing decides as follows. A box with ``x0 > x1`` (or ``y0 > y1``) is reported and
its corners are swapped. A single ``[x0,y0,x1,y1]`` without the outer brackets is reported and
read. A geometry with a value outside 0-1000, a value that is not a number, or the wrong number
of values is reported and dropped; decimals are reported and kept. A ``<seg>`` with a grid side
other than 16 or 32 (but within 1..128) is reported and read; bad rows are reported and repaired
(see :func:`geochat.grammar.textmask.decode_runs`); an empty mask is reported and dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from geochat import geometry
from geochat.grammar.base import (
    ContentReader,
    ObjectLike,
    TagContext,
    TagDialect,
    TagSyntax,
    required,
    runs_of,
)
from geochat.grammar.core import (
    GrammarError,
    GroundedObject,
    Number,
    ProblemLog,
    check_phrase,
    field_of,
    hbb_object,
    kind_of,
    mask_object,
    ordered_box,
    quad_object,
    read_numbers,
)
from geochat.grammar.rows import read_rows
from geochat.grammar.tags import BOX, DEFAULT_GRID, GRID_SIDES, NONE, QUAD, REF, SEG
from geochat.grammar.textmask import MAX_GRID, decode_runs, downsample, encode_runs, upsample

SCALE = geometry.GRAMMAR_SCALE


def format_hbbs(boxes_px: Any, width: float, height: float) -> str:
    """Writes horizontal boxes as ``<box>[[x0,y0,x1,y1],...]</box>``.

    Args:
        boxes_px: ``[N, 4]`` pixel boxes ``[x0, y0, x1, y1]``, or one box ``[4]``.
        width: Width of the original image in pixels.
        height: Height of the original image in pixels.

    Raises:
        GrammarError: for no boxes (write :data:`NONE` instead).
        geochat.geometry.GeometryError: for invalid boxes.
    """
    boxes = geometry.as_hbbs(_at_least_2d(boxes_px))
    if len(boxes) == 0:
        raise GrammarError("no boxes to write; write <none> for nothing found")
    return f"<box>{_lists(geometry.to_grammar(boxes, width, height))}</box>"


def format_quads(quads_px: Any, width: float, height: float) -> str:
    """Writes quads as ``<quad>[[x1,y1,...,x4,y4],...]</quad>`` in the canonical corner order.

    Args:
        quads_px: ``[N, 4, 2]`` or ``[N, 8]`` pixel corners, or one quad ``[4, 2]`` or ``[8]``.
        width: Width of the original image in pixels.
        height: Height of the original image in pixels.

    Raises:
        GrammarError: for no quads.
        geochat.geometry.GeometryError: for invalid quads.
    """
    array = np.asarray(quads_px, dtype=np.float64)
    if array.shape in ((4, 2), (8,)):
        array = array[None]
    if array.size == 0:
        raise GrammarError("no quads to write; write <none> for nothing found")
    corners = np.stack([geometry.canonical_quad(quad).reshape(8) for quad in array])
    return f"<quad>{_lists(geometry.to_grammar(corners, width, height))}</quad>"


def format_mask(mask: Any, grid: int = DEFAULT_GRID) -> str:
    """Writes a full-resolution mask as ``<seg>N|rows</seg>`` on an ``N x N`` grid.

    A cell is set when at least half of its pixels are (see :mod:`geochat.grammar.textmask`).

    Args:
        mask: Boolean ``[H, W]`` array or COCO RLE, at the size of the original image.
        grid: N, 16 or 32.

    Raises:
        GrammarError: for another grid side or an empty mask.
    """
    if grid not in GRID_SIDES:
        raise GrammarError(f"the grid side must be one of {GRID_SIDES}, got {grid!r}")
    return f"<seg>{grid}|{encode_runs(downsample(mask, grid))}</seg>"


def format_ref(phrase: str, geometry_text: str = "") -> str:
    """Writes ``<ref>phrase</ref>`` followed by the text of its geometry.

    Raises:
        GrammarError: if the phrase holds ``<`` or ``>``.
    """
    return f"<ref>{check_phrase(phrase)}</ref>{geometry_text}"


def format_region(region_px: Any, width: float, height: float) -> str:
    """Writes a region of a human turn: a box ``[4]`` as ``<box>``, a quad as ``<quad>``.

    Args:
        region_px: Pixel box ``[x0, y0, x1, y1]``, or quad ``[4, 2]`` or ``[8]``.
        width: Width of the original image in pixels.
        height: Height of the original image in pixels.

    Raises:
        GrammarError: for any other shape.
    """
    shape = np.shape(region_px)
    if shape == (4,):
        return format_hbbs(region_px, width, height)
    if shape in ((4, 2), (8,)):
        return format_quads(region_px, width, height)
    raise GrammarError(f"a region is a box [4] or a quad [4, 2] or [8], got shape {shape}")


def read_boxes(content: str, offset: int, context: TagContext) -> list[GroundedObject]:
    """Reads ``[[x0,y0,x1,y1],...]`` on 0-1000 per axis (``<box>``, also GeoGround's)."""
    boxes = []
    for row in read_rows(content, offset, context.log, "<box>"):
        values = _grammar_values(row.fields, 4, row.position, context.log, "<box>")
        if values is not None:
            boxes.append(ordered_box(values, row.position, context.log, "<box>"))
    pixels = geometry.from_grammar(np.reshape(boxes, (-1, 4)), context.width, context.height)
    return [hbb_object(box, context.phrase, context.span) for box in pixels]


def _read_quads(content: str, offset: int, context: TagContext) -> list[GroundedObject]:
    quads = []
    for row in read_rows(content, offset, context.log, "<quad>"):
        values = _grammar_values(row.fields, 8, row.position, context.log, "<quad>")
        if values is not None:
            quads.append(values)
    pixels = geometry.from_grammar(np.reshape(quads, (-1, 8)), context.width, context.height)
    return [quad_object(quad.reshape(4, 2), context.phrase, context.span) for quad in pixels]


def _read_seg(content: str, offset: int, context: TagContext) -> list[GroundedObject]:
    head, bar, body = content.partition("|")
    if not bar:
        context.log.report("<seg>: expected 'N|row;row;...'", offset)
        return []
    sides = read_numbers([Number(head, offset)], 1, MAX_GRID, context.log, "<seg> grid side")
    if sides is None:
        return []
    grid = int(sides[0])
    if grid not in GRID_SIDES:
        context.log.report(f"<seg>: grid side {grid}, expected one of {GRID_SIDES}", offset)
    cells = decode_runs(body, offset + len(head) + 1, grid, context.log)
    return mask_objects(cells, offset, context)


def mask_objects(cells: np.ndarray, offset: int, context: TagContext) -> list[GroundedObject]:
    """The mask object of a decoded ``[N, N]`` grid at image size, or nothing if it is empty."""
    height, width = round(context.height), round(context.width)
    found = mask_object(upsample(cells, height, width), len(cells), context.phrase, context.span)
    if found is None:
        context.log.report("<seg>: the mask is empty", offset)
        return []
    return [found]


def _grammar_values(
    fields: list[Number], count: int, position: int, log: ProblemLog, what: str
) -> list[float] | None:
    if len(fields) != count:
        log.report(f"{what}: expected {count} numbers, got {len(fields)}", position)
        return None
    return read_numbers(fields, 0, SCALE, log, what)


def _at_least_2d(boxes: Any) -> Any:
    return [boxes] if np.ndim(boxes) == 1 and np.size(boxes) > 0 else boxes


def _lists(rows: np.ndarray) -> str:
    return "[" + ",".join("[" + ",".join(str(int(v)) for v in row) + "]" for row in rows) + "]"


def check_mask_size(item: ObjectLike, width: float, height: float) -> dict[str, Any]:
    """The object's RLE mask, checked to be at the image size."""
    mask = required(item, "mask")
    size = list(mask.get("size", [])) if isinstance(mask, dict) else list(np.shape(mask))
    if size != [round(height), round(width)]:
        raise GrammarError(f"mask size {size} differs from the image size [{height}, {width}]")
    return mask


class CanonicalDialect(TagDialect):
    """Our grammar v1 (see the module docstring); angles never appear: quads are corners."""

    name = "canonical"
    SYNTAX = TagSyntax(
        phrase=REF,
        geometry=dict((BOX, QUAD, SEG)),
        none=NONE,
    )
    readers: Mapping[str, ContentReader] = {
        BOX[0]: read_boxes,
        QUAD[0]: _read_quads,
        SEG[0]: _read_seg,
    }

    def write(self, objects: list[ObjectLike], width: float, height: float) -> str:
        """Writes one tag per run of objects that share a phrase and a kind, joined by spaces."""
        texts = []
        for run in runs_of(objects, frozenset({"hbb", "quad"})):
            phrase = field_of(run[0], "phrase")
            geometry_text = self._tag(run, width, height)
            texts.append(geometry_text if phrase is None else format_ref(phrase, geometry_text))
        return " ".join(texts)

    def _tag(self, run: list[ObjectLike], width: float, height: float) -> str:
        kind = kind_of(run[0])
        if kind == "hbb":
            return format_hbbs([required(item, "hbb") for item in run], width, height)
        if kind == "quad":
            return format_quads([required(item, "quad") for item in run], width, height)
        if kind == "mask":
            grid = field_of(run[0], "grid")
            grid = grid if grid in GRID_SIDES else DEFAULT_GRID
            return format_mask(check_mask_size(run[0], width, height), grid)
        return NONE
