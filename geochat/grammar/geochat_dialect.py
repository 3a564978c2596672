"""GeoChat's format: rotated boxes on 0-100 of the padded square, with an angle in degrees.

Source: Kuckreja et al., "GeoChat: Grounded Large Vision-Language Model for Remote Sensing",
CVPR 2024, arXiv 2311.15826, and its code, github.com/mbzuai-oryx/GeoChat (read, not copied).

Answer text: ``<p>phrase</p> {<x_left><y_top><x_right><y_bottom>|<θ>}``; several boxes of one
phrase follow each other, joined by ``<delim>`` (``{...}<delim>{...}``) or directly
(``{...}{...}``, which GeoChat's demo rewrites with ``<delim>`` before drawing). A phrase applies
to every box after it up to other text or another phrase; we write an empty ``<p></p>`` before
boxes without a phrase that follow one, and read it as "no phrase". A phrase cannot hold ``{`` or
``}`` (they would open or close a box). A box in a human
turn has no angle: ``[identify] what is this {<8><26><22><37>}``.

Coordinates: integers 0-100 of the square GeoChat's processor pads the image to
(``expand2square`` in ``geochat/mm_utils.py``): side ``S = max(W, H)``, the image pasted in the
middle, ``((S - W) // 2, (S - H) // 2)`` from the top-left. So a coordinate is within ``S / 200``
pixels of the one written. GeoChat's demo (``geochat_demo.py``) instead maps 0-100 straight to
the image's width and height. Both agree on a square image; ``GeoChatDialect(pad_to_square=False)``
reproduces the demo on any other.

Angle: ``{...}`` is the box before rotation; it is turned by θ degrees about its centre. The
demo draws it with ``cv2.getRotationMatrix2D(center, θ, 1)``, which turns **counter-clockwise on
screen** for positive θ; we follow it. (An unused helper in the same file,
``bbox_and_angle_to_polygon``, turns the other way: the sign is the one uncertain point of this
dialect.) θ absent or 0 gives an ``"hbb"`` object, any other θ a ``"quad"``.

Rotated boxes near the edge: the unrotated box of a rectangle lying in the image can leave it (a
long thin one along a diagonal), and clipping it to 0-100 would move the rectangle. So a box with
an angle may have values from ``-MARGIN`` to ``100 + MARGIN``: written with ``|θ| <= 45``, a
rectangle inside the frame has its unrotated box at most ``(sqrt(2) - 1) / 2`` of the frame
(20.7 of 100) beyond each side.

Reading: braces are a box when they hold ``<`` or nothing but numbers (``{10, 20, 30}``); a
box that does not read as four values and an optional angle is reported and dropped. Other
braces are ordinary text. A box in the padding (or a rotated box partly outside the image) is
clipped to the image and reported, unless it is outside by no more than the rounding of its
values; one with no area inside the image is reported and dropped
(:func:`geochat.grammar.core.clip_to_image`).

Writing: ``"quad"`` objects become the minimum-area rectangle's unrotated box and angle, ``θ``
between -45 and 45; masks are written as their enclosing box; ``"none"`` has no GeoChat form and
is left out. A geometry that lies in the image is written without clipping.
"""

from __future__ import annotations

import math
import re
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
    enclosing_box,
    required,
    runs_of,
)
from geochat.grammar.core import (
    GroundedObject,
    Number,
    ProblemLog,
    check_phrase,
    clip_to_image,
    field_of,
    hbb_object,
    kind_of,
    ordered_box,
    quad_object,
    read_numbers,
)

SCALE = 100
MAX_ANGLE = 180.0
# How far (in 0-100 units) the unrotated box of a rectangle inside the frame can reach beyond it
# when written with |θ| <= 45: its side w is at most sqrt(2) times the rectangle's extent along x.
MARGIN = math.ceil(SCALE * (math.sqrt(2) - 1) / 2)
# Braces around numbers alone ("{10, 20, 30}") are a box written wrong, not ordinary text.
_NUMBER_CHARACTERS = re.compile(r"[0-9\s.,|+-]+", re.ASCII)  # one class: linear time
_BOX = re.compile(r"\s*<([^<>]*)>\s*<([^<>]*)>\s*<([^<>]*)>\s*<([^<>]*)>\s*(?:\|\s*<([^<>]*)>\s*)?")


class GeoChatDialect(TagDialect):
    """GeoChat: ``<p>phrase</p> {<x0><y0><x1><y1>|<θ>}`` on 0-100 of the padded square.

    θ in degrees, positive counter-clockwise on screen (see the module docstring).

    Args:
        pad_to_square: Coordinates are relative to GeoChat's centred padded square (True, what
            the model sees) or to the image's own width and height (False, what its demo draws).
    """

    name = "geochat"
    SYNTAX = TagSyntax(
        phrase=("<p>", "</p>"),
        geometry={"{": "}"},
        separators=frozenset({"<delim>"}),
        phrase_spans_chain=True,
        text_closers=frozenset({"}"}),
    )

    def __init__(self, pad_to_square: bool = True) -> None:
        self.pad_to_square = pad_to_square
        self.readers: Mapping[str, ContentReader] = {"{": self._read_box}

    def write(self, objects: list[ObjectLike], width: float, height: float) -> str:
        """Writes ``<p>phrase</p> {...}<delim>{...}`` per run of objects sharing a phrase.

        A phrase runs on over the boxes after it, so boxes without one that follow a phrase get
        an empty ``<p></p>`` to end it.
        """
        texts = []
        previous: str | None = None
        for run in runs_of(objects, frozenset({"hbb", "quad", "mask"}), same_kind=False):
            boxes = [self._box_text(item, width, height) for item in run if kind_of(item) != "none"]
            if not boxes:
                continue
            phrase = field_of(run[0], "phrase")
            phrase = None if phrase is None else check_phrase(phrase, reserved="<>{}")
            prefix = "" if phrase is None and previous is None else f"<p>{phrase or ''}</p> "
            texts.append(prefix + "<delim>".join(boxes))
            previous = phrase
        return " ".join(texts)

    def _frame(self, width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
        """Offset ``[2]`` of the image in the square and the square's side per axis ``[2]``."""
        if not self.pad_to_square:
            return np.zeros(2), np.array([width, height], dtype=np.float64)
        side = max(width, height)
        offset = np.array([(side - width) // 2, (side - height) // 2], dtype=np.float64)
        return offset, np.array([side, side], dtype=np.float64)

    def _to_pixels(self, values: Any, width: float, height: float) -> np.ndarray:
        """GeoChat values ``[..., 2]`` (x, y pairs) to pixels of the original image."""
        offset, side = self._frame(width, height)
        return np.asarray(values, dtype=np.float64) * side / SCALE - offset

    def _to_values(self, points: Any, width: float, height: float, margin: int = 0) -> np.ndarray:
        """Pixels ``[..., 2]`` to GeoChat's integers, clipped to what the reader accepts.

        Args:
            points: Pixel points of the original image.
            width: Width of the original image in pixels.
            height: Height of the original image in pixels.
            margin: How far beyond 0-100 a value may go (:data:`MARGIN` for a rotated box). Only
                geometry outside the image reaches the clip.
        """
        offset, side = self._frame(width, height)
        values = np.rint((np.asarray(points, dtype=np.float64) + offset) * SCALE / side)
        return np.clip(values, -margin, SCALE + margin).astype(np.int64)

    def _read_box(
        self, content: str, offset: int, context: TagContext
    ) -> list[GroundedObject] | None:
        if "<" not in content and not _numbers_only(content):
            return None  # braces in ordinary text
        log = context.log
        match = _BOX.fullmatch(content)
        if match is None:
            log.report("{...}: expected {<x0><y0><x1><y1>|<angle>}", offset)
            return []
        angle = self._angle(match, offset, log)
        if angle is None:
            return []
        margin = 0 if angle == 0 else MARGIN
        corners = [Number(match.group(i), offset + match.start(i)) for i in range(1, 5)]
        values = read_numbers(corners, -margin, SCALE + margin, log, "{...}")
        if values is None:
            return []
        box = ordered_box(values, offset, log, "{...}")
        pixels = self._to_pixels(np.reshape(box, (2, 2)), context.width, context.height)
        (x0, y0), (x1, y1) = pixels
        # GeoChat turns counter-clockwise on screen; geometry's angles turn clockwise.
        quad = geometry.obb_to_quad((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, -angle)
        slack = self._slack(context.width, context.height, quad, angle != 0)
        inside = clip_to_image(quad, context.width, context.height, slack, log, offset, "{...}")
        if inside is None:
            return []
        if angle == 0:
            return [hbb_object(geometry.quad_to_hbb(inside), context.phrase, context.span)]
        return [quad_object(inside, context.phrase, context.span)]

    def _slack(self, width: float, height: float, quad: np.ndarray, rotated: bool) -> float:
        """How far outside the image rounding alone can put a corner of a box read, in pixels."""
        _, side = self._frame(width, height)
        step = float(side.max()) / SCALE / 2  # half a step of 0-100
        if not rotated:
            return step
        # The centre and both half-sides are each off by up to half a step (the half-sides along
        # turned axes: at most sqrt(2) of it per image axis), and the angle by half a degree.
        radius = float(np.hypot(*(quad[2] - quad[0]))) / 2
        return step * (1 + math.sqrt(2)) + radius * math.pi / 360

    @staticmethod
    def _angle(match: re.Match[str], offset: int, log: ProblemLog) -> float | None:
        if match.group(5) is None:
            return 0.0
        angle = Number(match.group(5), offset + match.start(5))
        values = read_numbers([angle], -MAX_ANGLE, MAX_ANGLE, log, "{...} angle")
        return None if values is None else values[0]

    def _box_text(self, item: ObjectLike, width: float, height: float) -> str:
        kind = kind_of(item)
        if kind == "quad":
            cx, cy, w, h, angle = geometry.quad_to_obb(required(item, "quad"))
            if abs(angle) > 45:  # the same rectangle turned a quarter less: |θ| <= 45 (MARGIN)
                w, h, angle = h, w, angle - math.copysign(90, angle)
            corners = [[cx - w / 2, cy - h / 2], [cx + w / 2, cy + h / 2]]
            theta, margin = -round(angle), MARGIN
        else:
            x0, y0, x1, y1 = enclosing_box(item)
            corners, theta, margin = [[x0, y0], [x1, y1]], 0, 0
        values = self._to_values(corners, width, height, margin).reshape(4)
        return "{" + "".join(f"<{v}>" for v in values) + f"|<{theta}>}}"


def _numbers_only(content: str) -> bool:
    """Whether the text in braces is numbers and their separators alone (a box written wrong)."""
    return _NUMBER_CHARACTERS.fullmatch(content) is not None and any(c.isdigit() for c in content)
