"""Referring expressions that single out exactly their targets, verified against the whole tile.

The engine enumerates candidate expressions for each category (its category alone, attributes,
position, size and relations, at most two modifiers) and keeps those whose denotation is
exactly a set of objects, with no doubt left:

- Every test is three-valued: yes, no, or unknown. An object of unknown roof colour may be red;
  an object whose centre lies near a boundary between thirds is neither clearly "on the left"
  nor clearly not; two objects at a middling distance are neither clearly "next to" each other
  nor clearly apart; the size of an object cut by the tile edge is unknown. An expression with
  any unknown among the objects it could denote is dropped.
- Superlatives ("the largest", "the left-most") need a clear winner: the runner-up must be
  30% smaller, or 5% of the image further away from the side.
- Every modifier must matter: an expression is dropped when leaving out one of its modifiers
  denotes the same objects ("the red-roofed building" when there is only one building).

Land cover and line categories (roads, rivers) are referred to as a whole only ("all roads",
"the water"): OpenStreetMap splits one road into many ways, so single ways are not objects a
reader could pick out. Categories with very many objects (trees) are referred to as a whole too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from geochat.data_builders.tasks.scene import ADJECTIVE_KINDS, Scene

YES, NO, UNKNOWN = 1, 0, -1
MAX_INSTANCES = 40  # categories with more objects are only referred to as a whole
MAX_LANDMARKS = 8  # objects that relations ("next to the pool") may use, simplest first
NEAR_FRACTION = 0.04  # "next to": at most this share of the image's longer side apart ...
FAR_FACTOR = 3.0  # ... and "not next to": at least this many times further
SIZE_RATIO = 1.3  # "the largest": the runner-up is at least this many times smaller
POSITION_GAP = 0.05  # "the left-most": the runner-up is at least this share of the image further
REGION_MARGIN = 0.04  # centres this close (share of the side) to a third's edge are unknown
MAX_MODIFIERS = 2
# Modifier kinds in the order they are written ("the largest red-roofed industrial building
# in the upper left next to the pool").
KIND_ORDER = ("size", "position", "colour", "type", "region", "relation")

Place = Literal["superlative", "adjective", "noun", "after"]


@dataclass(frozen=True)
class Modifier:
    """One part of an expression.

    Attributes:
        kind: ``"colour"``, ``"type"``, ``"region"``, ``"relation"``, ``"size"`` or
            ``"position"``.
        words: Its words, e.g. ``"red-roofed"``, ``"in the upper left"``, ``"largest"``.
        place: Where the words go: before the adjectives (superlative), as an adjective, as
            the head noun, or after the noun.
    """

    kind: str
    words: str
    place: Place


@dataclass(frozen=True)
class Expression:
    """A verified referring expression.

    Attributes:
        category: Category of every target.
        modifiers: The modifiers, in writing order.
        targets: Indices of exactly the objects it denotes, ascending.
        singular: The phrase for one target, e.g. ``"the largest red-roofed building"``.
        plural: Plural noun phrase without determiner (``"red-roofed buildings on the left"``),
            or None when the expression only has a singular (superlatives, noun kinds).
    """

    category: str
    modifiers: tuple[Modifier, ...]
    targets: tuple[int, ...]
    singular: str
    plural: str | None

    @property
    def phrase(self) -> str:
        """The phrase that names the targets: singular for one, ``"all ..."`` for several."""
        if len(self.targets) == 1:
            return self.singular
        return f"all {self.plural}"

    @property
    def name(self) -> str:
        """How an answer's ``<ref>`` names the targets.

        The singular phrase for one target, the plural noun phrase ("red-roofed buildings")
        for several, as ``ground`` names a category.
        """
        if len(self.targets) == 1 or self.plural is None:
            return self.singular
        return self.plural

    @property
    def kind(self) -> str:
        """A label for sampling variety: the modifier kinds, or ``"category"``."""
        return "+".join(m.kind for m in self.modifiers) or "category"


@dataclass(frozen=True)
class _Filter:
    """A modifier that keeps objects: its truth value per candidate object (YES/NO/UNKNOWN)."""

    modifier: Modifier
    truth: np.ndarray  # [n] int8 over the category's objects


@dataclass(frozen=True)
class _Superlative:
    """A modifier that picks one object: a sort key and what counts as a clear winner."""

    modifier: Modifier
    key: Callable[[int], float | None]  # None: unknown (e.g. the size of a truncated object)
    largest_first: bool
    clear: Callable[[float, float], bool]  # (winner key, runner-up key) -> clear winner?


# (words, rows, columns): thirds of the image a region covers.
REGIONS: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("in the upper left", (0, 0), (0, 0)),
    ("in the upper right", (0, 0), (2, 2)),
    ("in the lower left", (2, 2), (0, 0)),
    ("in the lower right", (2, 2), (2, 2)),
    ("in the centre", (1, 1), (1, 1)),
    ("at the top", (0, 0), (0, 2)),
    ("at the bottom", (2, 2), (0, 2)),
    ("on the left", (0, 2), (0, 0)),
    ("on the right", (0, 2), (2, 2)),
)


def referring_expressions(scene: Scene) -> list[Expression]:
    """Every verified expression of the tile, in a fixed order (computed once per scene)."""
    return scene.memo("referring_expressions", lambda: _all_expressions(scene))


def _all_expressions(scene: Scene) -> list[Expression]:
    landmarks = _landmarks(scene)
    expressions = []
    for category in scene.categories:
        members = scene.members[category]
        if not scene.is_countable(category) or len(members) > MAX_INSTANCES:
            expressions.append(whole_category(scene, category))
            continue
        relations = [
            _relation(scene, members, mark) for mark in landmarks if mark.category != category
        ]
        expressions += _category_expressions(scene, category, _filters(scene, members) + relations)
    return expressions


def whole_category(scene: Scene, category: str) -> Expression:
    """The expression for every object of a category ("the water", "all swimming pools")."""
    return Expression(
        category=category,
        modifiers=(),
        targets=scene.members[category],
        singular=f"the {category}",
        plural=scene.plural(category),
    )


def superlative_winner(scene: Scene, candidates: Sequence[int], words: str) -> int | None:
    """The clear winner among objects by a superlative ("largest", "left-most", ...).

    Returns:
        Its index, or None when the winner is not clear (a runner-up too close, or a
        truncated object whose size is unknown).
    """
    (chosen,) = [s for s in _superlatives(scene) if s.modifier.words == words]
    winner = _winner(tuple(candidates), chosen)
    return None if winner is None else winner[0]


def _landmarks(scene: Scene) -> list[Expression]:
    """Single countable objects named by at most one modifier, simplest first.

    A landmark named by its position would make the phrase ambiguous ("the car next to the
    pool in the upper left": which one is in the upper left?), so those are left out.
    """
    found = []
    for category in scene.countable_categories:
        members = scene.members[category]
        if len(members) <= MAX_INSTANCES:
            found += [
                e
                for e in _category_expressions(scene, category, _filters(scene, members), 1)
                if len(e.targets) == 1 and all(m.kind != "region" for m in e.modifiers)
            ]
    found.sort(key=lambda e: len(e.modifiers))
    return found[:MAX_LANDMARKS]


def _category_expressions(
    scene: Scene, category: str, filters: list[_Filter], max_modifiers: int = MAX_MODIFIERS
) -> list[Expression]:
    members = scene.members[category]
    superlatives = _superlatives(scene)
    kept = []
    for combination in _combinations(filters, superlatives, max_modifiers):
        targets = _denote(members, combination)
        if not targets or not _every_modifier_matters(members, combination, targets):
            continue
        expression = _expression(scene, category, combination, targets)
        if len(targets) == 1 or expression.plural is not None:
            kept.append(expression)
    return kept


def _combinations(
    filters: list[_Filter], superlatives: list[_Superlative], max_modifiers: int
) -> list[tuple[_Filter | _Superlative, ...]]:
    """Up to ``max_modifiers`` modifiers of different kinds, at most one superlative.

    A position superlative is not combined with a region.
    """
    combinations: list[tuple[_Filter | _Superlative, ...]] = [()]
    for size in range(1, max_modifiers + 1):
        for chosen in itertools.combinations(filters, size):
            kinds = [f.modifier.kind for f in chosen]
            if len(set(kinds)) == len(kinds):
                combinations.append(chosen)
    for superlative in superlatives:
        combinations.append((superlative,))
        if max_modifiers > 1:
            # "the left-most car on the right" is correct but reads as a contradiction.
            combinations += [
                (f, superlative)
                for f in filters
                if not (f.modifier.kind == "region" and superlative.modifier.kind == "position")
            ]
    return combinations


def _denote(
    members: tuple[int, ...], combination: Sequence[_Filter | _Superlative]
) -> tuple[int, ...] | None:
    """The objects a combination denotes, or None when some object leaves it in doubt."""
    filters = [m for m in combination if isinstance(m, _Filter)]
    truth = np.stack([f.truth for f in filters]) if filters else np.ones((1, len(members)), np.int8)
    excluded = (truth == NO).any(axis=0)
    if ((truth == UNKNOWN).any(axis=0) & ~excluded).any():
        return None
    candidates = tuple(i for i, out in zip(members, excluded, strict=True) if not out)
    superlatives = [m for m in combination if isinstance(m, _Superlative)]
    if not superlatives or not candidates:
        return candidates
    return _winner(candidates, superlatives[0])


def _winner(candidates: tuple[int, ...], superlative: _Superlative) -> tuple[int, ...] | None:
    keys = [superlative.key(i) for i in candidates]
    if any(key is None for key in keys):
        return None
    order = sorted(range(len(candidates)), key=lambda k: keys[k], reverse=superlative.largest_first)
    if len(order) > 1 and not superlative.clear(keys[order[0]], keys[order[1]]):
        return None
    return (candidates[order[0]],)


def _every_modifier_matters(
    members: tuple[int, ...],
    combination: Sequence[_Filter | _Superlative],
    targets: tuple[int, ...],
) -> bool:
    return all(
        _denote(members, [m for m in combination if m is not left_out]) != targets
        for left_out in combination
    )


def _expression(
    scene: Scene,
    category: str,
    combination: Sequence[_Filter | _Superlative],
    targets: tuple[int, ...],
) -> Expression:
    modifiers = tuple(
        sorted((m.modifier for m in combination), key=lambda m: KIND_ORDER.index(m.kind))
    )
    words = {place: [m.words for m in modifiers if m.place == place] for place in get_args(Place)}
    noun = words["noun"][0] if words["noun"] else category
    singular = " ".join(["the", *words["superlative"], *words["adjective"], noun, *words["after"]])
    plural = None
    if not words["superlative"] and not words["noun"]:
        plural = " ".join([*words["adjective"], scene.plural(category), *words["after"]])
    return Expression(category, modifiers, targets, singular, plural)


def _filters(scene: Scene, members: tuple[int, ...]) -> list[_Filter]:
    """Attribute and region filters over a category's objects."""
    filters = []
    colours = [scene.colour_phrase(i) for i in members]
    for colour in sorted({c for c in colours if c is not None}):
        filters.append(
            _Filter(Modifier("colour", colour, "adjective"), _attribute_truth(colours, colour))
        )
    kinds = [scene.kind(i) for i in members]
    for kind in sorted({k for k in kinds if k is not None}):
        place: Place = "adjective" if kind in ADJECTIVE_KINDS else "noun"
        filters.append(_Filter(Modifier("type", kind, place), _attribute_truth(kinds, kind)))
    for words, rows, columns in REGIONS:
        truth = np.array([_region_truth(scene, i, rows, columns) for i in members], dtype=np.int8)
        filters.append(_Filter(Modifier("region", words, "after"), truth))
    return filters


def _attribute_truth(values: list[str | None], wanted: str) -> np.ndarray:
    return np.array(
        [UNKNOWN if value is None else YES if value == wanted else NO for value in values],
        dtype=np.int8,
    )


def _region_truth(scene: Scene, index: int, rows: tuple[int, int], columns: tuple[int, int]) -> int:
    x0, y0, x1, y1 = scene.hbbs[index]
    if x1 - x0 > scene.width / 3 or y1 - y0 > scene.height / 3:
        return UNKNOWN  # a large object is not clearly in one part of the image
    cx, cy = scene.centres[index]
    return min(
        _band_truth(cx / scene.width, columns), _band_truth(cy / scene.height, rows), key=_rank
    )


def _band_truth(position: float, thirds: tuple[int, int]) -> int:
    """Whether a position (share of the side) lies in thirds ``first..last``; edges are unknown."""
    low, high = thirds[0] / 3, (thirds[1] + 1) / 3
    inner_low = low + REGION_MARGIN if low > 0 else low
    inner_high = high - REGION_MARGIN if high < 1 else high
    if inner_low <= position <= inner_high:
        return YES
    if position < low - REGION_MARGIN or position > high + REGION_MARGIN:
        return NO
    return UNKNOWN


def _rank(truth: int) -> int:
    """Orders truth values for a conjunction: NO < UNKNOWN < YES."""
    return {NO: 0, UNKNOWN: 1, YES: 2}[truth]


def _relation(scene: Scene, members: tuple[int, ...], landmark: Expression) -> _Filter:
    """The filter "next to <landmark>": near, clearly far, or in between (unknown)."""
    near = NEAR_FRACTION * max(scene.width, scene.height)
    distances = scene.distances[list(members), landmark.targets[0]]
    truth = np.where(distances <= near, YES, np.where(distances >= FAR_FACTOR * near, NO, UNKNOWN))
    return _Filter(
        Modifier("relation", f"next to {landmark.singular}", "after"), truth.astype(np.int8)
    )


def _superlatives(scene: Scene) -> list[_Superlative]:
    def area(index: int) -> float | None:
        return None if scene.objects[index].truncated else float(scene.areas[index])

    def bigger(winner: float, runner_up: float) -> bool:
        return winner >= SIZE_RATIO * runner_up

    def smaller(winner: float, runner_up: float) -> bool:
        return runner_up >= SIZE_RATIO * winner

    def apart(side: float) -> Callable[[float, float], bool]:
        return lambda winner, runner_up: abs(winner - runner_up) >= POSITION_GAP * side

    def centre(axis: int) -> Callable[[int], float]:
        return lambda index: float(scene.centres[index, axis])

    return [
        _Superlative(Modifier("size", "largest", "superlative"), area, True, bigger),
        _Superlative(Modifier("size", "smallest", "superlative"), area, False, smaller),
        _Superlative(
            Modifier("position", "left-most", "superlative"), centre(0), False, apart(scene.width)
        ),
        _Superlative(
            Modifier("position", "right-most", "superlative"), centre(0), True, apart(scene.width)
        ),
        _Superlative(
            Modifier("position", "top-most", "superlative"), centre(1), False, apart(scene.height)
        ),
        _Superlative(
            Modifier("position", "bottom-most", "superlative"), centre(1), True, apart(scene.height)
        ),
    ]
