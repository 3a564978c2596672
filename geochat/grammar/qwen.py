"""Qwen2-VL's special-token boxes and Qwen2.5-VL's JSON boxes. Neither has angles or masks.

Qwen2-VL (Wang et al., "Qwen2-VL", arXiv 2409.12191): a phrase between
``<|object_ref_start|>`` and ``<|object_ref_end|>``, then
``<|box_start|>(x0,y0),(x1,y1)<|box_end|>`` with integers on 0-1000 per axis of the image; a
phrase applies to every box after it up to other text or another phrase (an empty one, which we
write before boxes without a phrase that follow one, means "no phrase"). The
paper's example (read in a summary of the paper): ``<|object_ref_start|>the eyes on a
giraffe<|object_ref_end|>`` followed by ``<|box_start|>(176,106),(232,160)<|box_end|>``.

Qwen2.5-VL (github.com/QwenLM/Qwen2.5-VL: the README's "absolute position coordinates" and
``cookbooks/ocr.ipynb``): a JSON list, usually in a ```` ```json ```` fence, of objects with
``"bbox_2d": [x0, y0, x1, y1]`` and ``"label"``, in **absolute pixels of the image the model
saw**. Its processor resizes images (``smart_resize``: sides multiples of 28), and the cookbooks
map back with ``x / input_width * width``; give that input size to :class:`Qwen25VLDialect`. The
model's lists are Python literals more than JSON: the OCR cookbook's answer closes every object
with a trailing comma (``"text_content": "CASH",}``) and the cookbook reads it with
``ast.literal_eval``. We accept trailing commas, and take ``"text_content"`` as the phrase when
there is no ``"label"``.

Qwen3-VL (github.com/QwenLM/Qwen3-VL, the 2D grounding cookbook): the same JSON lists, with
``"bbox_2d"`` on **0-1000 per axis** of the image instead of pixels (:class:`Qwen3VLDialect`).

Writing: quads and masks become their enclosing box; ``"none"`` objects are left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from geochat import geometry
from geochat.grammar.base import (
    ContentReader,
    Dialect,
    ObjectLike,
    TagContext,
    TagDialect,
    TagSyntax,
    enclosing_box,
)
from geochat.grammar.core import (
    GroundedObject,
    Number,
    ProblemLog,
    check_phrase,
    field_of,
    hbb_object,
    kind_of,
    ordered_box,
    phrase_of,
    plain_text,
    read_numbers,
)

SCALE = geometry.GRAMMAR_SCALE
_POINTS = re.compile(r"\s*\(([^(),]*),([^(),]*)\)\s*,\s*\(([^(),]*),([^(),]*)\)\s*")
_FENCE = "```"
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _boxes_of(objects: list[ObjectLike]) -> list[tuple[str | None, np.ndarray]]:
    """``(phrase, pixel box)`` of every object that has a box, in order."""
    boxes = []
    for item in objects:
        if kind_of(item) != "none":
            boxes.append((field_of(item, "phrase"), enclosing_box(item)))
    return boxes


class Qwen2VLDialect(TagDialect):
    """Qwen2-VL: ``<|box_start|>(x0,y0),(x1,y1)<|box_end|>`` on 0-1000 per axis; no angles."""

    name = "qwen2vl"
    SYNTAX = TagSyntax(
        phrase=("<|object_ref_start|>", "<|object_ref_end|>"),
        geometry={"<|box_start|>": "<|box_end|>"},
        phrase_spans_chain=True,
    )

    def __init__(self) -> None:
        self.readers: Mapping[str, ContentReader] = {"<|box_start|>": self._read_box}

    @staticmethod
    def _read_box(content: str, offset: int, context: TagContext) -> list[GroundedObject]:
        match = _POINTS.fullmatch(content)
        if match is None:
            context.log.report("<|box_start|>: expected (x0,y0),(x1,y1)", offset)
            return []
        fields = [Number(match.group(i), offset + match.start(i)) for i in range(1, 5)]
        values = read_numbers(fields, 0, SCALE, context.log, "<|box_start|>")
        if values is None:
            return []
        box = ordered_box(values, offset, context.log, "<|box_start|>")
        pixels = geometry.from_grammar(box, context.width, context.height)
        return [hbb_object(pixels, context.phrase, context.span)]

    def write(self, objects: list[ObjectLike], width: float, height: float) -> str:
        """Writes each phrase once, before the boxes that follow it.

        A phrase runs on over the boxes after it, so boxes without one that follow a phrase get
        an empty ``<|object_ref_start|><|object_ref_end|>`` to end it.
        """
        texts = []
        previous: str | None = None
        for phrase, box in _boxes_of(objects):
            phrase = None if phrase is None else check_phrase(phrase)
            if phrase != previous:
                texts.append(f"<|object_ref_start|>{phrase or ''}<|object_ref_end|>")
            x0, y0, x1, y1 = geometry.to_grammar(box, width, height)
            texts.append(f"<|box_start|>({x0},{y0}),({x1},{y1})<|box_end|>")
            previous = phrase
        return "".join(texts)


class Qwen25VLDialect(Dialect):
    """Qwen2.5-VL: JSON ``[{"bbox_2d": [x0, y0, x1, y1], "label": ...}]`` in absolute pixels.

    Args:
        input_size: ``(width, height)`` of the image the model saw, when its processor resized
            it; None when the model saw the original image. Coordinates are integers of that
            frame, so a value read back is within half of one of its pixels.
    """

    name = "qwen25vl"
    labels_in_geometry = True

    def __init__(self, input_size: tuple[int, int] | None = None) -> None:
        self.input_size = input_size

    def _scale(self, width: float, height: float) -> np.ndarray:
        """Model pixels per original pixel, per axis, for x, y, x, y ``[4]``."""
        input_width, input_height = self.input_size or (width, height)
        return np.tile([input_width / width, input_height / height], 2)

    def read(
        self, text: str, width: float, height: float, log: ProblemLog
    ) -> tuple[list[GroundedObject], str]:
        """Reads the first JSON value of the answer (inside a ```json fence if there is one)."""
        start, end = _json_region(text)
        if start is None:
            log.report("no JSON list found", 0)
            return [], plain_text([text])
        decoded = _decode(text[start:end])
        if isinstance(decoded, Exception):
            log.report(f"invalid JSON: {str(decoded)[:80]}", start)
            return [], plain_text([text])
        value, length = decoded
        items = value if isinstance(value, list) else [value]
        objects = self._objects(items, (start, start + length), width, height, log)
        prose = [text[:start], text[start + length : end], text[end:]]
        return objects, plain_text([_without_fences(piece) for piece in prose])

    def _objects(
        self, items: list[Any], span: tuple[int, int], width: float, height: float, log: ProblemLog
    ) -> list[GroundedObject]:
        limits = np.tile(self.input_size or (width, height), 2)  # [4] model pixels
        objects = []
        for index, item in enumerate(items):
            box = self._box(item, index, span[0], limits, log)
            if box is not None:
                label = item.get("label", item.get("text_content"))
                phrase = phrase_of(label) if isinstance(label, str) else None
                # Multiply before dividing: a value at the input's edge maps exactly to the
                # image's edge (dividing by the scale can land a hair beyond it).
                pixels = np.asarray(box) * np.tile([width, height], 2) / limits
                objects.append(hbb_object(pixels, phrase, span))
        return objects

    @staticmethod
    def _box(
        item: Any, index: int, start: int, limits: np.ndarray, log: ProblemLog
    ) -> list[float] | None:
        """The item's ``bbox_2d`` in model pixels, or None after a report."""
        what = f"JSON item {index}"
        box = item.get("bbox_2d") if isinstance(item, dict) else None
        if not isinstance(box, list) or len(box) != 4:
            log.report(f'{what}: expected "bbox_2d": [x0, y0, x1, y1]', start)
            return None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
            log.report(f"{what}: bbox_2d holds a value that is not a number", start)
            return None
        inside = (0 <= v <= limit for v, limit in zip(box, limits, strict=True))
        if not all(inside):
            log.report(f"{what}: bbox_2d {box} is outside the image", start)
            return None
        return ordered_box([float(v) for v in box], start, log, what)

    def write(self, objects: list[ObjectLike], width: float, height: float) -> str:
        """Writes a ```json fenced list, one object a line, as Qwen2.5-VL answers."""
        lines = []
        for phrase, box in _boxes_of(objects):
            values = np.rint(box * self._scale(width, height)).astype(int).tolist()
            item: dict[str, Any] = {"bbox_2d": values}
            if phrase is not None:
                item["label"] = check_phrase(phrase)
            lines.append("\t" + json.dumps(item, ensure_ascii=False))
        body = ",\n".join(lines)
        return f"{_FENCE}json\n[\n{body}\n]\n{_FENCE}" if lines else f"{_FENCE}json\n[]\n{_FENCE}"


class Qwen3VLDialect(Qwen25VLDialect):
    """Qwen3-VL: JSON ``[{"bbox_2d": [x0, y0, x1, y1], "label": ...}]`` on 0-1000 per axis."""

    name = "qwen3vl"

    def __init__(self) -> None:
        super().__init__(input_size=(SCALE, SCALE))  # a 1000 x 1000 frame is 0-1000 per axis


def _json_region(text: str) -> tuple[int | None, int]:
    """Start of the JSON value (after a ```json fence if any) and the end of its region."""
    fence = text.find(_FENCE + "json")
    if fence >= 0:
        start = fence + len(_FENCE) + len("json")
        closing = text.find(_FENCE, start)
        end = len(text) if closing < 0 else closing
    else:
        start, end = 0, len(text)
    brackets = [i for i in (text.find("[", start, end), text.find("{", start, end)) if i >= 0]
    return (min(brackets) if brackets else None), end


def _without_fences(text: str) -> str:
    return text.replace(_FENCE + "json", "").replace(_FENCE, "")


def _decode(region: str) -> tuple[Any, int] | Exception:
    """The first JSON value of ``region`` and the length it spans, allowing trailing commas."""
    decoder = json.JSONDecoder()
    try:
        return decoder.raw_decode(region)
    except (ValueError, RecursionError):
        pass
    try:
        value, _ = decoder.raw_decode(_TRAILING_COMMA.sub(r"\1", region))
    except (ValueError, RecursionError) as error:
        return error
    return value, len(region)  # the repaired text is shorter: take the whole region
