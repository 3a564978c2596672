"""What every task family shares: turns and samples, geometry wording, and varied picking."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from geochat.data_builders.tasks.expressions import Expression
from geochat.data_builders.tasks.language import pick, shuffled
from geochat.data_builders.tasks.scene import Scene

Item = TypeVar("Item")


@dataclass(frozen=True)
class Turn:
    """One question and its answer.

    Attributes:
        question: The human turn, without the image placeholder.
        answer: The gpt turn, geometry in the canonical grammar.
        targets: Indices of the objects the answer names.
    """

    question: str
    answer: str
    targets: tuple[int, ...] = ()


@dataclass(frozen=True)
class Sample:
    """The conversation of one record, before it becomes a record.

    Attributes:
        turns: The question-answer pairs.
        scene_level: True when the record's truth is every object of the tile (captions,
            grounded captions, dialogues); otherwise it is the objects the answers name.
    """

    turns: tuple[Turn, ...]
    scene_level: bool = False

    @property
    def targets(self) -> tuple[int, ...]:
        """Indices of the objects named by any answer, ascending."""
        return tuple(sorted({index for turn in self.turns for index in turn.targets}))


# generate(scene, rng, count) -> at most `count` samples of one task family.
TaskGenerator = Callable[[Scene, np.random.Generator, int], list[Sample]]


def pick_varied(
    rng: np.random.Generator, expressions: Sequence[Expression], count: int
) -> list[Expression]:
    """Picks up to ``count`` distinct expressions, spreading the picks over expression kinds.

    Without this, a tile with many colour and position combinations would drown the plain
    "the swimming pool" questions.
    """
    pools: dict[str, list[Expression]] = {}
    for expression in expressions:
        pools.setdefault(expression.kind, []).append(expression)
    pools = {kind: shuffled(rng, pool) for kind, pool in pools.items()}
    chosen: list[Expression] = []
    while len(chosen) < count:
        kinds = [kind for kind, pool in pools.items() if pool]
        if not kinds:
            break
        chosen.append(pools[pick(rng, kinds)].pop())
    return chosen


def draw(
    rng: np.random.Generator,
    present: Sequence[Item],
    absent: Sequence[Item],
    count: int,
    absent_share: float,
) -> list[Item]:
    """Draws up to ``count`` distinct items, each from ``absent`` with probability ``absent_share``.

    When one pool runs out, the draws go on from the other.
    """
    pools = {True: shuffled(rng, absent), False: shuffled(rng, present)}
    drawn: list[Item] = []
    for _ in range(count):
        want_absent = bool(pools[True]) and (not pools[False] or rng.random() < absent_share)
        if not pools[want_absent]:
            break
        drawn.append(pools[want_absent].pop())
    return drawn


def count_absent(rng: np.random.Generator, scene: Scene, count: int) -> int:
    """How many of ``count`` questions ask for an absent category (``none_fraction`` each)."""
    if not scene.absent_categories:
        return 0
    return int((rng.random(count) < scene.options.none_fraction).sum())


def absent_phrase(rng: np.random.Generator, scene: Scene) -> tuple[str, bool]:
    """A phrase for a random absent category ("the tennis court" or "all tennis courts").

    Returns:
        The phrase and whether it is plural.
    """
    category = pick(rng, scene.absent_categories)
    if rng.random() < 0.5:
        return f"the {category}", False
    return f"all {scene.vocabulary.plurals[category]}", True
