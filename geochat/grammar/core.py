"""Types shared by every grammar: parsed objects, the parse result, errors and number checks.

A parser reports what it cannot read to a :class:`ProblemLog`: in strict mode the first report
raises :class:`GrammarError`, in tolerant mode it becomes one line of ``Parsed.problems`` and
parsing goes on. Every parser is written once and serves both modes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

from geochat import geometry

FLOAT_TOLERANCE_PX = 1e-6  # float error allowed on top of a format's rounding slack

Kind = Literal["hbb", "quad", "mask", "none"]
KINDS: tuple[Kind, ...] = ("hbb", "quad", "mask", "none")

MAX_PROBLEMS = 100  # a hostile answer can hold millions of faults; keep the first ones
MAX_NUMBER_DIGITS = 9  # longer digit runs are out of every range (and would be slow to convert)

_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?[0-9]*\.?[0-9]+", re.ASCII)
_SPACES = re.compile(r"[ \t]{2,}")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+([.,;:!?])")


class GrammarError(ValueError):
    """Text that does not follow the grammar (raised by strict parsing and by formatting).

    Attributes:
        reason: What is wrong, without the position.
        position: Character offset in the parsed text, or None when formatting.
    """

    def __init__(self, reason: str, position: int | None = None) -> None:
        self.reason = reason
        self.position = position
        where = "" if position is None else f" at position {position}"
        super().__init__(f"{reason}{where}")


@dataclass(frozen=True)
class GroundedObject:
    """One geometry found in an answer, in pixel coordinates of the original image.

    Attributes:
        kind: ``"hbb"``, ``"quad"``, ``"mask"`` or ``"none"`` (an explicit "nothing found").
        phrase: The phrase tag right before the geometry's tag (it applies to every geometry
            inside that tag), or None.
        hbb: ``[x0, y0, x1, y1]``: the box itself, the box enclosing a quad, or the box of a
            mask's pixels. None only for kind ``"none"``.
        quad: Four ``[x, y]`` corners, for kinds ``"hbb"`` and ``"quad"``; parsed quads are in
            the canonical order (clockwise on screen from the top-most corner).
        mask: COCO RLE ``{"size": [height, width], "counts": str}`` for kind ``"mask"``.
        grid: Side ``N`` of the text-mask grid a mask was read from.
        span: ``(start, end)`` character offsets of the geometry's text in the parsed answer.
    """

    kind: Kind
    phrase: str | None = None
    hbb: list[float] | None = None
    quad: list[list[float]] | None = None
    mask: dict[str, Any] | None = None
    grid: int | None = None
    span: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Parsed:
    """The result of parsing one answer.

    Attributes:
        objects: Every well-formed geometry, in order of appearance.
        problems: One line per thing that could not be read (always empty in strict mode).
        text: The answer without geometry tags, phrases kept, for display.
    """

    objects: list[GroundedObject] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    text: str = ""


class ProblemLog:
    """Collects parse problems, or raises the first one in strict mode."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.problems: list[str] = []
        self._dropped = 0

    def report(self, reason: str, position: int) -> None:
        """Records a problem found at ``position``; raises :class:`GrammarError` when strict."""
        if self.strict:
            raise GrammarError(reason, position)
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{reason} at position {position}")
        else:
            self._dropped += 1

    def summary(self) -> list[str]:
        """The problems, with one last line counting those beyond :data:`MAX_PROBLEMS`."""
        if self._dropped:
            return [*self.problems, f"... and {self._dropped} more problems"]
        return list(self.problems)


class Number(NamedTuple):
    """One field of the text (a number, if well-formed) and where it starts."""

    text: str
    position: int


def read_numbers(
    fields: list[Number],
    low: float,
    high: float,
    log: ProblemLog,
    what: str,
    integers: bool = True,
) -> list[float] | None:
    """Converts numeric fields, all inside ``[low, high]``; reports and returns None otherwise.

    Args:
        fields: The fields, as written.
        low: Smallest allowed value.
        high: Largest allowed value.
        log: Where problems go.
        what: Name of the geometry, for messages.
        integers: Whether the grammar writes integers. A decimal is then a problem, but tolerant
            parsing keeps its value.
    """
    values = []
    for number in fields:
        text = number.text.strip()
        digits = text.lstrip("+-").replace(".", "")
        if _DECIMAL.fullmatch(text) is None:
            log.report(f"{what}: {text[:20]!r} is not a number", number.position)
            return None
        if len(digits) > MAX_NUMBER_DIGITS:
            log.report(f"{what}: {text[:20]}... is out of range {low:g}..{high:g}", number.position)
            return None
        if integers and _INTEGER.fullmatch(text) is None:
            log.report(f"{what}: {text!r} is not an integer", number.position)
        value = float(text)
        if not low <= value <= high:
            log.report(f"{what}: {text} is out of range {low:g}..{high:g}", number.position)
            return None
        values.append(value)
    return values


def ordered_box(values: list[float], position: int, log: ProblemLog, what: str) -> list[float]:
    """Returns ``[x0, y0, x1, y1]`` with swapped corners reported and put in order."""
    x0, y0, x1, y1 = values
    if x0 > x1 or y0 > y1:
        log.report(f"{what} has x0 > x1 or y0 > y1 (swapped)", position)
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def clip_to_image(
    corners: Any,
    width: float,
    height: float,
    slack: float,
    log: ProblemLog,
    position: int,
    what: str,
) -> np.ndarray | None:
    """Pixel corners ``[4, 2]`` moved into the image, or None when no part of them is inside.

    Formats whose values can reach beyond the image (a padded square, a centre with sides)
    read geometry that is partly or wholly outside it. Corners outside by at most ``slack`` (the
    format's rounding) are clipped silently. Geometry further out is reported: its part inside
    the image is kept, as the minimum-area rectangle of that part
    (:func:`geochat.geometry.clip_quad`), and a geometry with no area inside is dropped.

    Args:
        corners: Four ``[x, y]`` pixel corners (an HBB's corners for a box).
        width: Width of the image in pixels.
        height: Height of the image in pixels.
        slack: How far outside, in pixels, rounding alone can put a corner.
        log: Where the problem goes.
        position: Where the geometry is in the text.
        what: Name of the geometry, for the message.
    """
    corners = geometry.as_quad(corners)
    limits = np.array([width, height], dtype=np.float64)
    outside = float(max(0.0, -corners.min(), (corners - limits).max()))
    # The slack is itself computed in floating point: half a grid unit can come out a hair over.
    if outside > slack + FLOAT_TOLERANCE_PX:
        kept = geometry.clip_quad(corners, width, height)
        if kept is None and _overlaps(corners, limits):
            # A degenerate box (a line or a point) has no area to clip, yet lies on the image.
            kept = np.clip(corners, 0, limits)
        action = "dropped" if kept is None else "clipped"
        log.report(f"{what} reaches {outside:.3g} px beyond the image ({action})", position)
        if kept is None:
            return None
        corners = kept
    # The minimum-area rectangle of a clipped part can still cross an edge by a hair.
    return np.clip(corners, 0, limits)


def _overlaps(corners: np.ndarray, limits: np.ndarray) -> bool:
    """Whether the bounds of ``[4, 2]`` corners meet the image ``[0, W] x [0, H]``."""
    return bool(np.all(corners.min(axis=0) <= limits) and np.all(corners.max(axis=0) >= 0))


def hbb_object(hbb_px: Any, phrase: str | None, span: tuple[int, int]) -> GroundedObject:
    """A kind ``"hbb"`` object from a pixel box."""
    quad = geometry.hbb_to_quad(hbb_px)  # validates the box
    return GroundedObject(
        kind="hbb",
        phrase=phrase,
        hbb=[float(v) for v in hbb_px],
        quad=quad.tolist(),
        span=span,
    )


def quad_object(quad_px: Any, phrase: str | None, span: tuple[int, int]) -> GroundedObject:
    """A kind ``"quad"`` object from pixel corners in any order (stored canonically)."""
    corners = geometry.canonical_quad(quad_px)
    return GroundedObject(
        kind="quad",
        phrase=phrase,
        hbb=geometry.quad_to_hbb(corners).tolist(),
        quad=corners.tolist(),
        span=span,
    )


def mask_object(
    mask: np.ndarray, grid: int, phrase: str | None, span: tuple[int, int]
) -> GroundedObject | None:
    """A kind ``"mask"`` object from a full-resolution boolean mask, or None if it is empty."""
    box = geometry.mask_to_hbb(mask)
    if box is None:
        return None
    return GroundedObject(
        kind="mask",
        phrase=phrase,
        hbb=box.tolist(),
        mask=geometry.mask_to_rle(mask),
        grid=grid,
        span=span,
    )


def none_object(phrase: str | None, span: tuple[int, int]) -> GroundedObject:
    """A kind ``"none"`` object: the answer says nothing matches."""
    return GroundedObject(kind="none", phrase=phrase, span=span)


def field_of(item: GroundedObject | Mapping[str, Any], name: str) -> Any:
    """Reads ``name`` from a :class:`GroundedObject` or from a mapping with the same keys."""
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def kind_of(item: GroundedObject | Mapping[str, Any]) -> Kind:
    """The kind of an object to format; raises :class:`GrammarError` for an unknown one."""
    kind = field_of(item, "kind")
    if kind not in KINDS:
        raise GrammarError(f"object kind must be one of {KINDS}, got {kind!r}")
    return kind


def check_phrase(phrase: str, reserved: str = "<>") -> str:
    """Returns a phrase fit for a phrase tag; raises :class:`GrammarError` if it holds a tag.

    Args:
        phrase: The phrase.
        reserved: Characters that start or end a tag of the dialect.
    """
    if not isinstance(phrase, str):
        raise GrammarError(f"a phrase must be a string, got {type(phrase).__name__}")
    if any(character in phrase for character in reserved):
        listed = " or ".join(repr(character) for character in reserved)
        raise GrammarError(f"a phrase cannot contain {listed}: {phrase!r}")
    return phrase.strip()


def phrase_of(text: str) -> str | None:
    """The phrase a tag holds: its text without surrounding spaces; None for an empty tag.

    Dialects whose phrase runs on over the geometry that follows write an empty phrase tag to
    end it before a geometry without one.
    """
    return text.strip() or None


def check_image_size(width: float, height: float) -> None:
    """Raises :class:`geochat.geometry.GeometryError` unless both sides are positive."""
    if not (np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0):
        raise geometry.GeometryError(f"image size must be positive, got {width}x{height}")


def plain_text(pieces: list[str]) -> str:
    """Joins the text left between geometry tags, tidying the spaces the tags leave behind."""
    text = _SPACES.sub(" ", "".join(pieces))
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text).strip()
