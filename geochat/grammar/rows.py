"""Reads the ``[[a,b,...],[c,d,...]]`` lists inside ``<box>``, ``<quad>`` and ``<obb>`` tags.

The content is split into tokens by one regular expression without nested quantifiers (linear
time), then checked by a small recursive-descent reader. Anything that is not exactly a list of
lists is reported once; tolerant parsing then salvages every innermost ``[...]`` group, so that
``[x0,y0,x1,y1]`` without the outer brackets, or a list cut short by the end of generation,
still gives its complete groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from geochat.grammar.core import Number, ProblemLog

_TOKEN = re.compile(r"\[|\]|,|[^\[\],\s]+")
_PUNCTUATION = ("[", "]", ",", None)  # None: past the end of the tokens


@dataclass(frozen=True)
class Row:
    """One innermost list: its fields as written and the position of its ``[``."""

    fields: list[Number]
    position: int


class _MalformedError(Exception):
    """The content is not exactly a list of lists (internal: turned into one report)."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


def read_rows(content: str, offset: int, log: ProblemLog, what: str) -> list[Row]:
    """Reads ``[[...],[...]]`` into rows; reports malformed content and salvages its groups.

    Args:
        content: Text between the opening and the closing tag.
        offset: Position of ``content`` in the whole answer.
        log: Where problems go.
        what: Name of the tag, for messages.
    """
    tokens = [Number(match.group(), offset + match.start()) for match in _TOKEN.finditer(content)]
    try:
        return _list_of_lists(tokens, offset + len(content))
    except _MalformedError as malformed:
        log.report(f"{what}: {malformed.reason}", malformed.position)
    return _innermost_groups(tokens)


def _list_of_lists(tokens: list[Number], end: int) -> list[Row]:
    if _text_at(tokens, 0) != "[":
        raise _unexpected("'[['", tokens, 0, end)
    if _text_at(tokens, 1) not in _PUNCTUATION:
        raise _MalformedError("one list without the outer brackets", tokens[0].position)
    rows = []
    index = 1
    while True:
        row, index = _flat_list(tokens, index, end)
        rows.append(row)
        separator = _text_at(tokens, index)
        if separator not in ("]", ","):
            raise _unexpected("',' or ']'", tokens, index, end)
        index += 1
        if separator == "]":
            break
    if index < len(tokens):
        raise _MalformedError("unexpected text after the list", tokens[index].position)
    return rows


def _flat_list(tokens: list[Number], index: int, end: int) -> tuple[Row, int]:
    """Reads ``[a,b,...]`` starting at ``tokens[index]``; returns the row and the next index."""
    if _text_at(tokens, index) != "[":
        raise _unexpected("'['", tokens, index, end)
    start = tokens[index].position
    fields = []
    index += 1
    while True:
        if _text_at(tokens, index) in _PUNCTUATION:
            raise _unexpected("a number", tokens, index, end)
        fields.append(tokens[index])
        separator = _text_at(tokens, index + 1)
        if separator not in ("]", ","):
            raise _unexpected("',' or ']'", tokens, index + 1, end)
        index += 2
        if separator == "]":
            return Row(fields, start), index


def _text_at(tokens: list[Number], index: int) -> str | None:
    """The token's text, or None past the end."""
    return tokens[index].text if index < len(tokens) else None


def _unexpected(expected: str, tokens: list[Number], index: int, end: int) -> _MalformedError:
    if index >= len(tokens):
        return _MalformedError(f"expected {expected}, found the end", end)
    return _MalformedError(
        f"expected {expected}, found {tokens[index].text[:20]!r}", tokens[index].position
    )


def _innermost_groups(tokens: list[Number]) -> list[Row]:
    """Every ``[...]`` group that holds no other group, in order; unclosed groups are dropped."""
    rows = []
    group: list[Number] | None = None
    start = 0
    for token in tokens:
        if token.text == "[":
            group, start = [], token.position
        elif token.text == "]":
            if group:
                rows.append(Row(group, start))
            group = None
        elif token.text != "," and group is not None:
            group.append(token)
    return rows
