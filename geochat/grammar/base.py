"""What every dialect shares: the :class:`Dialect` interface and a tag scanner for tagged text.

The scanner walks an answer once from left to right. One regular expression, an alternation of
literal tags (no nested quantifiers, so linear time), finds the next tag; the content of a
geometry tag runs to the very next tag, which must be its closing tag. A tag left open (often:
generation stopped at its token limit) is reported and its content is still read, so the
complete geometries inside it are kept.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from geochat import geometry
from geochat.grammar.core import (
    GrammarError,
    GroundedObject,
    Parsed,
    ProblemLog,
    check_image_size,
    field_of,
    kind_of,
    none_object,
    phrase_of,
    plain_text,
)

ObjectLike = GroundedObject | Mapping[str, Any]


class Dialect(abc.ABC):
    """A text format for geometry: parses answers into pixel geometry and writes it back."""

    name: ClassVar[str]
    # Whether an object's phrase is written inside its geometry (Qwen's JSON `label`), rather
    # than in a phrase tag before it.
    labels_in_geometry: ClassVar[bool] = False

    @property
    def tags(self) -> frozenset[str]:
        """The literal tags its answers are written with; none for plain-text dialects (JSON).

        A tokenizer may hold them as special tokens, which decoding must keep.
        """
        return frozenset()

    def parse(self, text: str, width: float, height: float, strict: bool = False) -> Parsed:
        """Parses an answer into objects in pixel coordinates of a ``width x height`` image.

        Args:
            text: The answer.
            width: Width of the original image in pixels.
            height: Height of the original image in pixels.
            strict: Raise :class:`GrammarError` on the first problem instead of collecting it.

        Returns:
            The objects, the problems (tolerant mode) and the plain text.

        Raises:
            GrammarError: in strict mode, for text that does not follow the dialect.
            geochat.geometry.GeometryError: for a non-positive image size (both modes).
        """
        check_image_size(width, height)
        log = ProblemLog(strict)
        if not isinstance(text, str):
            log.report(f"expected the answer as a string, got {type(text).__name__}", 0)
            return Parsed([], log.summary(), "")
        if strict:
            objects, plain = self.read(text, width, height, log)
            return Parsed(objects, [], plain)
        try:
            objects, plain = self.read(text, width, height, log)
        except Exception as error:  # tolerant parsing never raises; a bug here loses one answer
            log.report(f"internal parser error {type(error).__name__}: {error}", 0)
            return Parsed([], log.summary(), text)
        return Parsed(objects, log.summary(), plain)

    @abc.abstractmethod
    def read(
        self, text: str, width: float, height: float, log: ProblemLog
    ) -> tuple[list[GroundedObject], str]:
        """Reads the objects and the plain text of an answer, reporting problems to ``log``."""

    def format(self, objects: Iterable[ObjectLike], width: float, height: float) -> str:
        """Writes objects (pixel coordinates of a ``width x height`` image) as answer text.

        Args:
            objects: :class:`GroundedObject` items, or mappings with the same keys (``kind``,
                ``phrase``, ``hbb``, ``quad``, ``mask``, ``grid``).
            width: Width of the original image in pixels.
            height: Height of the original image in pixels.

        Raises:
            GrammarError: for an object this dialect cannot write (unknown kind, missing
                geometry, a phrase holding ``<`` or ``>``).
            geochat.geometry.GeometryError: for invalid geometry or a non-positive image size.
        """
        check_image_size(width, height)
        return self.write(list(objects), width, height)

    @abc.abstractmethod
    def write(self, objects: list[ObjectLike], width: float, height: float) -> str:
        """Writes validated-size objects as text."""


def required(item: ObjectLike, name: str) -> Any:
    """Reads a geometry field an object's kind needs; raises :class:`GrammarError` if missing."""
    value = field_of(item, name)
    if value is None:
        raise GrammarError(f"a {kind_of(item)!r} object needs its {name!r} to be written")
    return value


def enclosing_box(item: ObjectLike) -> np.ndarray:
    """The pixel box ``[4]`` of an object that is not ``"none"``, for formats without its kind."""
    kind = kind_of(item)
    if kind == "quad":
        return geometry.quad_to_hbb(required(item, "quad"))
    if kind == "mask" and field_of(item, "hbb") is None:
        box = geometry.mask_to_hbb(required(item, "mask"))
        if box is None:
            raise GrammarError("cannot write the box of an empty mask")
        return box
    return geometry.as_hbb(required(item, "hbb"))


def runs_of(
    objects: Sequence[ObjectLike], joinable: frozenset[str], same_kind: bool = True
) -> list[list[ObjectLike]]:
    """Groups consecutive objects of one phrase whose kinds are in ``joinable`` (one tag each).

    Args:
        objects: The objects, in order.
        joinable: Kinds that can share a tag.
        same_kind: Whether the objects of a group must also share their kind.
    """
    runs: list[list[ObjectLike]] = []
    for item in objects:
        kind, phrase = kind_of(item), field_of(item, "phrase")
        previous = runs[-1][-1] if runs else None
        if (
            previous is not None
            and kind in joinable
            and kind_of(previous) in joinable
            and (kind_of(previous) == kind or not same_kind)
            and field_of(previous, "phrase") == phrase
        ):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


@dataclass(frozen=True)
class TagContext:
    """What a content reader needs besides the content: the image size and where it is."""

    width: float
    height: float
    phrase: str | None
    span: tuple[int, int]
    log: ProblemLog


# reader(content, content_offset, context) -> objects, or None when the tag is ordinary text
ContentReader = Callable[[str, int, TagContext], list[GroundedObject] | None]


@dataclass(frozen=True)
class TagSyntax:
    """The tags of one dialect.

    Attributes:
        phrase: Opening and closing tag of a phrase.
        geometry: Closing tag of every geometry tag, by opening tag.
        none: A standalone tag meaning "nothing found", if the dialect has one.
        separators: Standalone tags that only separate geometries (GeoChat's ``<delim>``).
        phrase_spans_chain: Whether a phrase applies to every geometry tag that follows it with
            only spaces or separators between (GeoChat, Qwen2-VL), or to the next one only. An
            empty phrase tag ends a chain: the geometry after it has no phrase.
        text_closers: Closing tags that are ordinary text when nothing opened them (``}``).
        tags: Every tag above (derived).
    """

    phrase: tuple[str, str]
    geometry: Mapping[str, str]
    none: str | None = None
    separators: frozenset[str] = frozenset()
    phrase_spans_chain: bool = False
    text_closers: frozenset[str] = frozenset()
    tags: frozenset[str] = field(init=False, repr=False)
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        tags = {*self.phrase, *self.geometry, *self.geometry.values(), *self.separators}
        if self.none is not None:
            tags.add(self.none)
        object.__setattr__(self, "tags", frozenset(tags))
        # Longest first, so that a tag is never cut short by a shorter one it starts with.
        alternatives = sorted(tags, key=len, reverse=True)
        object.__setattr__(self, "pattern", re.compile("|".join(map(re.escape, alternatives))))


class _Scan:
    """State of one left-to-right pass over an answer."""

    def __init__(
        self,
        text: str,
        syntax: TagSyntax,
        readers: Mapping[str, ContentReader],
        log: ProblemLog,
        size: tuple[float, float],
    ) -> None:
        self.text = text
        self.syntax = syntax
        self.readers = readers
        self.log = log
        self.size = size
        self.objects: list[GroundedObject] = []
        self.pieces: list[str] = []
        self.phrase: str | None = None

    def gap(self, start: int, end: int) -> None:
        """Keeps the text between tags; text other than spaces ends the pending phrase."""
        piece = self.text[start:end]
        self.pieces.append(piece)
        if piece.strip():
            self.phrase = None


def scan(
    text: str,
    syntax: TagSyntax,
    readers: Mapping[str, ContentReader],
    log: ProblemLog,
    size: tuple[float, float],
) -> tuple[list[GroundedObject], str]:
    """Finds the phrases and geometry tags of an answer, in one linear pass.

    Args:
        text: The answer.
        syntax: The dialect's tags.
        readers: Reader of the content of each geometry tag, by opening tag.
        log: Where problems go.
        size: ``(width, height)`` of the original image in pixels.

    Returns:
        The objects in order of appearance and the plain text (phrases kept, tags removed).
    """
    state = _Scan(text, syntax, readers, log, size)
    position = 0
    match = syntax.pattern.search(text)
    while match is not None:
        state.gap(position, match.start())
        tag = match.group()
        following = syntax.pattern.search(text, match.end())
        if tag == syntax.phrase[0]:
            position, match = _phrase(state, match, following)
        elif tag in syntax.geometry:
            position, match = _geometry(state, match, following)
        else:
            _marker(state, match)
            position, match = match.end(), following
    state.gap(position, len(text))
    return state.objects, plain_text(state.pieces)


Step = tuple[int, re.Match[str] | None]


def _phrase(state: _Scan, opening: re.Match[str], following: re.Match[str] | None) -> Step:
    closing_tag = state.syntax.phrase[1]
    if following is None or following.group() != closing_tag:
        state.log.report(f"{opening.group()} without {closing_tag}", opening.start())
        state.phrase = None
        return opening.end(), following
    phrase = state.text[opening.end() : following.start()]
    state.pieces.append(phrase)
    state.phrase = phrase_of(phrase)
    return following.end(), state.syntax.pattern.search(state.text, following.end())


def _geometry(state: _Scan, opening: re.Match[str], following: re.Match[str] | None) -> Step:
    tag, text = opening.group(), state.text
    closing_tag = state.syntax.geometry[tag]
    closed = following is not None and following.group() == closing_tag
    content_end = following.start() if following is not None else len(text)
    end = following.end() if following is not None and closed else content_end
    content = text[opening.end() : content_end]
    context = TagContext(*state.size, state.phrase, (opening.start(), end), state.log)
    found = state.readers[tag](content, opening.end(), context)
    if found is None:
        state.pieces.append(text[opening.start() : end])
        state.phrase = None
    else:
        if not closed:
            state.log.report(f"{tag} without {closing_tag}", opening.start())
        state.objects.extend(found)
        if not state.syntax.phrase_spans_chain:
            state.phrase = None
    if closed:
        return end, state.syntax.pattern.search(text, end)
    return end, following


def _marker(state: _Scan, match: re.Match[str]) -> None:
    tag, syntax = match.group(), state.syntax
    if tag == syntax.none:
        state.objects.append(none_object(state.phrase, match.span()))
        state.phrase = None
    elif tag in syntax.text_closers:
        state.pieces.append(tag)
        state.phrase = None
    elif tag not in syntax.separators:
        state.log.report(f"{tag} without an opening tag", match.start())


class TagDialect(Dialect):
    """A dialect of tags: its syntax, and a reader for the content of each geometry tag."""

    SYNTAX: ClassVar[TagSyntax]
    readers: Mapping[str, ContentReader]

    @property
    def tags(self) -> frozenset[str]:
        """The tags of :attr:`SYNTAX`."""
        return self.SYNTAX.tags

    def read(
        self, text: str, width: float, height: float, log: ProblemLog
    ) -> tuple[list[GroundedObject], str]:
        """Reads the dialect's tags with :func:`scan`."""
        return scan(text, self.SYNTAX, self.readers, log, (width, height))
