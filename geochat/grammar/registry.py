"""The dialects by name, and :func:`parse` / :func:`format` over any of them."""

from __future__ import annotations

from collections.abc import Iterable

from geochat import geometry
from geochat.grammar.base import Dialect, ObjectLike
from geochat.grammar.canonical import CanonicalDialect
from geochat.grammar.core import GrammarError, Parsed
from geochat.grammar.geochat_dialect import GeoChatDialect
from geochat.grammar.geoground import GeoGroundDialect
from geochat.grammar.qwen import Qwen2VLDialect, Qwen3VLDialect, Qwen25VLDialect

DIALECTS: dict[str, Dialect] = {
    dialect.name: dialect
    for dialect in (
        CanonicalDialect(),
        GeoChatDialect(),
        GeoGroundDialect(),
        Qwen2VLDialect(),
        Qwen25VLDialect(),
        Qwen3VLDialect(),
    )
}


def get_dialect(dialect: str | Dialect) -> Dialect:
    """Returns a dialect given by name (see :data:`DIALECTS`) or as an instance.

    Raises:
        GrammarError: for an unknown name.
    """
    if isinstance(dialect, Dialect):
        return dialect
    if dialect not in DIALECTS:
        raise GrammarError(f"unknown dialect {dialect!r}; known: {sorted(DIALECTS)}")
    return DIALECTS[dialect]


def parse(
    text: str,
    width: float,
    height: float,
    dialect: str | Dialect = "canonical",
    strict: bool = False,
) -> Parsed:
    """Parses an answer into geometry in pixel coordinates of the original image.

    Tolerant parsing (the default, for model output) never raises for any text: it returns every
    well-formed geometry and one problem line for everything else. Strict parsing (for datasets)
    raises :class:`GrammarError` with the character position of the first problem.

    Args:
        text: The answer.
        width: Width of the original image in pixels.
        height: Height of the original image in pixels.
        dialect: A name from :data:`DIALECTS` or a :class:`Dialect` instance.
        strict: Raise on the first problem instead of collecting problems.

    Raises:
        GrammarError: in strict mode for malformed text, and for an unknown dialect.
        geochat.geometry.GeometryError: for a non-positive image size.
    """
    return get_dialect(dialect).parse(text, width, height, strict=strict)


def format(
    objects: Iterable[ObjectLike],
    width: float,
    height: float,
    dialect: str | Dialect = "canonical",
) -> str:
    """Writes objects (pixel coordinates) as answer text in a dialect.

    Args:
        objects: :class:`GroundedObject` items (e.g. ``parse(...).objects``) or mappings with the
            same keys. Consecutive objects sharing a phrase and a kind share one tag.
        width: Width of the original image in pixels.
        height: Height of the original image in pixels.
        dialect: A name from :data:`DIALECTS` or a :class:`Dialect` instance.

    Raises:
        GrammarError: for an object the dialect cannot write.
        geochat.geometry.GeometryError: for invalid geometry or a non-positive image size.
    """
    return get_dialect(dialect).format(objects, width, height)


def readable(text: str, partial: bool = False) -> Parsed:
    """Reads an answer that has no image frame, or is still being written, for display.

    Geometry tags are taken out of the text (phrases kept), as :func:`parse` does; the
    coordinates are read on the grammar's own 0-1000 scale, since there are no pixels to map
    them to: use ``.text`` and the ``"none"`` objects (nothing found), not the geometry.

    Args:
        text: An answer in the canonical grammar.
        partial: The answer is still streaming: a tag being written at its end is held back
            until it closes (free text never holds ``<``, so a ``<`` without ``>`` opens one).
    """
    if partial:
        opening = text.rfind("<")
        if opening > text.rfind(">"):
            text = text[:opening]
    scale = geometry.GRAMMAR_SCALE
    return parse(text, scale, scale)
