"""English for the task generators: articles, numbers, lists, and random picks from templates.

Every random choice goes through :func:`pick` or :func:`shuffled` with the generator that
:func:`data_builders.tasks.generate_records` was given, so a seed reproduces a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

Item = TypeVar("Item")

# Categories of the tag table that read as mass nouns: "water", not "a water".
MASS_NOUNS = frozenset({"water", "grass", "farmland"})
NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)
_VOWELS = frozenset("aeiou")


def pick(rng: np.random.Generator, items: Sequence[Item]) -> Item:
    """Returns one item, uniformly (the sequence must not be empty)."""
    if not items:
        raise ValueError("cannot pick from an empty sequence")
    return items[int(rng.integers(len(items)))]


def shuffled(rng: np.random.Generator, items: Sequence[Item]) -> list[Item]:
    """Returns the items in a random order."""
    return [items[int(index)] for index in rng.permutation(len(items))]


def indefinite(noun_phrase: str) -> str:
    """Adds ``a``/``an`` to a count noun phrase; mass nouns stay bare ("water")."""
    if noun_phrase in MASS_NOUNS:
        return noun_phrase
    article = "an" if noun_phrase[:1].lower() in _VOWELS else "a"
    return f"{article} {noun_phrase}"


def number_words(count: int) -> str:
    """Writes counts up to ten in words and larger ones in digits ("two", "12")."""
    return NUMBER_WORDS[count] if 0 <= count < len(NUMBER_WORDS) else str(count)


def counted(count: int, singular: str, plural: str) -> str:
    """Writes "a building", "two buildings" or "12 buildings"."""
    return indefinite(singular) if count == 1 else f"{number_words(count)} {plural}"


def join_list(parts: Sequence[str]) -> str:
    """Joins phrases as "a", "a and b" or "a, b and c"."""
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} and {parts[-1]}"


def sentence(text: str) -> str:
    """Capitalises the first letter and ends with a full stop unless punctuation ends it."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else f"{text}."
