"""GeoGround's format: HBB on 0-1000, OBB on 0-100 with an angle, and a plain 0/1 Text-Mask.

Source: Zhou et al., "GeoGround: A Unified Large Vision-Language Model for Remote Sensing Visual
Grounding", arXiv 2411.11904, its figures (github.com/zytx121/GeoGround, ``framework.jpg``:
``<box>[[906,47,1000,141]]</box>``, ``<obb>[[20,19,2,10,52]]</obb>``,
``<box>[[155,143,250,238], [906,47,1000,141]]</box>``, ``<seg> 0, 0, ...; ...0, 1,1, 0 ...</seg>``
on a 32 x 32 grid) and its "[refer] output the (oriented) bounding box of the <ref>...</ref> in
the image." prompts. The model sees the image resized to a square (336 x 336), not padded, so
every coordinate is relative to the original image's own width and height.

- ``<box>[[x0,y0,x1,y1],...]</box>``: integers 0-1000 per axis, as in our grammar.
- ``<obb>[[cx,cy,w,h,θ],...]</obb>``: integers on 0-100; ``cx`` per width, ``cy`` per height, and
  both side lengths ``w`` and ``h`` per **width** (so a side keeps its length whatever its
  direction). θ in degrees is OpenCV's ``RotatedRect`` angle: the direction of side ``w`` from
  the image +x axis, **positive clockwise on screen** (y down), the convention of
  :func:`geochat.geometry.obb_to_quad`. The paper calls it a long-side 90° ("le90")
  representation (``w >= h``, θ in [-90, 90)); we write that, and read any w, h and θ (the
  paper's own figure has ``w < h``). An OBB reaching beyond the image by more than the rounding
  of its values is clipped to the image and reported, or dropped if none of it is inside
  (:func:`geochat.grammar.core.clip_to_image`).
- ``<seg>row;row;...</seg>``: an ``N x N`` grid (N = the number of rows; we write 32) of plain
  ``0``/``1`` values joined by ``,``.
- phrases: ``<ref>...</ref>`` (GeoGround puts them in the question; we write them before the
  geometry as in our grammar). There is no "nothing found" form: ``"none"`` objects are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

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
from geochat.grammar.canonical import (
    check_mask_size,
    format_hbbs,
    format_ref,
    mask_objects,
    read_boxes,
)
from geochat.grammar.core import (
    GroundedObject,
    clip_to_image,
    field_of,
    kind_of,
    quad_object,
    read_numbers,
)
from geochat.grammar.rows import read_rows
from geochat.grammar.textmask import decode_values, downsample, encode_values

OBB_SCALE = 100
DEFAULT_GRID = 32  # the grid of the paper's Text-Mask figure
MAX_ANGLE = 180.0


def _read_obbs(content: str, offset: int, context: TagContext) -> list[GroundedObject]:
    log, width, height = context.log, context.width, context.height
    # The longest side an object can have is the image diagonal, in hundredths of the width,
    # rounded up as the writer may round it.
    longest = math.ceil(OBB_SCALE * math.hypot(width, height) / width)
    objects = []
    for row in read_rows(content, offset, log, "<obb>"):
        if len(row.fields) != 5:
            log.report(f"<obb>: expected 5 numbers, got {len(row.fields)}", row.position)
            continue
        centre = read_numbers(row.fields[:2], 0, OBB_SCALE, log, "<obb> centre")
        sides = read_numbers(row.fields[2:4], 0, longest, log, "<obb> side")
        angle = read_numbers(row.fields[4:], -MAX_ANGLE, MAX_ANGLE, log, "<obb> angle")
        if centre is None or sides is None or angle is None:
            continue
        cx, cy = centre[0] * width / OBB_SCALE, centre[1] * height / OBB_SCALE
        w, h = (side * width / OBB_SCALE for side in sides)
        quad = geometry.obb_to_quad(cx, cy, w, h, angle[0])
        slack = _obb_slack(width, height, math.hypot(w, h) / 2)
        inside = clip_to_image(quad, width, height, slack, log, row.position, "<obb>")
        if inside is not None:
            objects.append(quad_object(inside, context.phrase, context.span))
    return objects


def _obb_slack(width: float, height: float, radius: float) -> float:
    """How far outside the image rounding alone can put a corner of an OBB read, in pixels.

    The centre is off by up to half a step per axis (``W / 200``, ``H / 200``), both half-sides
    by ``W / 400`` (at most ``sqrt(2)`` of it per image axis once turned), and the angle by half a
    degree (``radius * pi / 360`` at a corner ``radius`` from the centre).
    """
    half_step = max(width, height) / OBB_SCALE / 2
    return half_step + math.sqrt(2) * width / OBB_SCALE / 4 + radius * math.pi / 360


def _read_seg(content: str, offset: int, context: TagContext) -> list[GroundedObject]:
    cells = decode_values(content, offset, context.log)
    return [] if cells is None else mask_objects(cells, offset, context)


def _obb_values(quad: object, width: float, height: float) -> list[int]:
    """``[cx, cy, w, h, θ]`` of a quad's minimum-area rectangle, long side first (le90)."""
    cx, cy, w, h, angle = geometry.quad_to_obb(quad)
    if h > w:
        w, h, angle = h, w, angle + 90.0
    theta = (round(angle) + 90) % 180 - 90  # [-90, 90)
    scaled = np.rint(np.array([cx / width, cy / height, w / width, h / width]) * OBB_SCALE)
    return [*scaled.astype(int).tolist(), theta]


class GeoGroundDialect(TagDialect):
    """GeoGround: ``<box>`` on 0-1000, ``<obb>[[cx,cy,w,h,θ]]</obb>`` on 0-100, plain ``<seg>``.

    θ in degrees, positive clockwise on screen, w and h scaled by the image width (see the
    module docstring).
    """

    name = "geoground"
    SYNTAX = TagSyntax(
        phrase=("<ref>", "</ref>"),
        geometry={"<box>": "</box>", "<obb>": "</obb>", "<seg>": "</seg>"},
    )
    readers: Mapping[str, ContentReader] = {
        "<box>": read_boxes,
        "<obb>": _read_obbs,
        "<seg>": _read_seg,
    }

    def write(self, objects: list[ObjectLike], width: float, height: float) -> str:
        """Writes one tag per run of objects sharing a phrase and a kind, joined by spaces."""
        texts = []
        for run in runs_of(objects, frozenset({"hbb", "quad"})):
            kind = kind_of(run[0])
            if kind == "none":
                continue
            phrase = field_of(run[0], "phrase")
            geometry_text = self._tag(run, width, height)
            texts.append(geometry_text if phrase is None else format_ref(phrase, geometry_text))
        return " ".join(texts)

    @staticmethod
    def _tag(run: list[ObjectLike], width: float, height: float) -> str:
        kind = kind_of(run[0])
        if kind == "hbb":
            return format_hbbs([required(item, "hbb") for item in run], width, height)
        if kind == "quad":
            rows = [_obb_values(required(item, "quad"), width, height) for item in run]
            return "<obb>[" + ", ".join(f"[{','.join(map(str, row))}]" for row in rows) + "]</obb>"
        grid = field_of(run[0], "grid") or DEFAULT_GRID
        cells = downsample(check_mask_size(run[0], width, height), grid)
        return f"<seg>{encode_values(cells)}</seg>"
