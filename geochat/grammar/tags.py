"""The vocabulary of grammar v1: its tags, coordinate scale and mask grids, in one place.

Everything that must agree on the grammar reads it from here: the canonical dialect
(:mod:`geochat.grammar.canonical`), the decoding regex (:mod:`geochat.engine.grounding`), the
tokenizer's tag tokens (:mod:`geochat.modeling.tokenizer`) and the coordinate loss
(``geochat.training.losses``).
"""

from __future__ import annotations

from geochat.geometry import GRAMMAR_SCALE  # the scale lives with the maths that applies it

__all__ = [
    "ALL_TAGS",
    "BOX",
    "COORDINATE_TAGS",
    "DEFAULT_GRID",
    "GEOMETRY_TAGS",
    "GRAMMAR_SCALE",
    "GRID_SIDES",
    "NONE",
    "QUAD",
    "REF",
    "SEG",
]

REF = ("<ref>", "</ref>")  # a phrase, right before its geometry
BOX = ("<box>", "</box>")  # horizontal boxes [[x0,y0,x1,y1],...] on 0..GRAMMAR_SCALE
QUAD = ("<quad>", "</quad>")  # oriented boxes as 4 corners on 0..GRAMMAR_SCALE
SEG = ("<seg>", "</seg>")  # a mask as run-length rows of an N x N grid
NONE = "<none>"  # nothing found: an explicit answer
GEOMETRY_TAGS = (BOX, QUAD, SEG)
COORDINATE_TAGS = (BOX, QUAD)  # tags whose content is coordinates (a <seg> holds grid runs)
ALL_TAGS = (*REF, *(tag for pair in GEOMETRY_TAGS for tag in pair), NONE)
GRID_SIDES = (16, 32)  # the mask grids N the grammar writes
DEFAULT_GRID = 16  # each row of a 16 x 16 grid is a few runs; SAM refines the rest
