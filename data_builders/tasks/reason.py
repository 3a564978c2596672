"""Reasoning segmentation (task ``reason_segment``): implicit questions, a reason, then geometry.

"Where would you cool off on a hot day?" -> "The swimming pool is the place to cool off and
swim. <seg>16|...</seg>".

Each rule maps a question to the categories that answer it, optionally only those objects near
another category ("where could a boat be launched?": water next to a road). Nearness is measured
on the masks: near when the gap is at most 4% of the image's longer side, far when it is three
times that; a rule with an object in between is not asked. When none of a rule's categories is in
the tile (and all are visible at its ground sample distance), a share (``none_fraction``) of the
questions asks it anyway and is answered with the reason and ``<none>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from geochat import prompts
from geochat.data_builders.tasks.common import Sample, Turn, draw
from geochat.data_builders.tasks.expressions import FAR_FACTOR, NEAR_FRACTION
from geochat.data_builders.tasks.language import MASS_NOUNS, join_list, number_words, pick, sentence
from geochat.data_builders.tasks.scene import Scene
from geochat.grammar import NONE


@dataclass(frozen=True)
class ReasonRule:
    """An implicit question and what answers it.

    Attributes:
        questions: Wordings of the question.
        categories: Categories whose objects answer it.
        explanation: One sentence with ``{targets}`` (e.g. "the two swimming pools") and
            ``{be}`` ("is"/"are").
        near: Only objects near an object of this category answer it.
    """

    questions: tuple[str, ...]
    categories: tuple[str, ...]
    explanation: str
    near: str | None = None


RULES = (
    ReasonRule(
        ("Where would you cool off on a hot day?", "Where could someone go for a swim here?"),
        ("swimming pool",),
        "{targets} {be} the place to cool off and swim.",
    ),
    ReasonRule(
        ("Where could a boat be launched?", "Where could someone put a small boat in the water?"),
        ("water",),
        "{targets} {be} reached by a road, so a boat could be launched there.",
        near="road",
    ),
    ReasonRule(
        ("Where could a visitor leave their car?", "Where can cars be parked here?"),
        ("parking lot",),
        "{targets} {be} made for parking cars.",
    ),
    ReasonRule(
        ("Where could people play tennis?", "Where could two friends have a tennis match?"),
        ("tennis court",),
        "{targets} {be} where tennis is played.",
    ),
    ReasonRule(
        ("Where could a football match be played?", "Where could a team train for soccer?"),
        ("soccer field",),
        "{targets} {be} where soccer is played.",
    ),
    ReasonRule(
        ("Where could people shoot some hoops?",),
        ("basketball court",),
        "{targets} {be} where basketball is played.",
    ),
    ReasonRule(
        ("Where could people do sports here?", "Which places are meant for playing games?"),
        ("tennis court", "soccer field", "basketball court", "sports pitch"),
        "{targets} {be} built for sports.",
    ),
    ReasonRule(
        ("Which structures could store oil or water?", "Where could fuel be kept in bulk?"),
        ("storage tank",),
        "{targets} {be} built to store liquids in bulk.",
    ),
    ReasonRule(
        ("Where do aircraft take off and land?",),
        ("runway",),
        "{targets} {be} where aircraft take off and land.",
    ),
    ReasonRule(
        ("Where would aircraft be parked and loaded?",),
        ("apron",),
        "{targets} {be} where aircraft park and are loaded.",
    ),
    ReasonRule(
        ("Where could a family have a picnic?", "Where could children play outdoors?"),
        ("park", "grass"),
        "{targets} {be} open green space, good for a picnic or play.",
    ),
    ReasonRule(
        ("Where could someone find shade on a sunny day?",),
        ("tree", "forest"),
        "{targets} would give shade.",
    ),
    ReasonRule(
        ("Where could crops be grown?", "Which land is used for farming?"),
        ("farmland",),
        "{targets} {be} land for growing crops.",
    ),
    ReasonRule(
        ("Where could a train run?",),
        ("railway",),
        "{targets} {be} the only place a train can run.",
    ),
    ReasonRule(
        ("What here could carry goods or people across the water?",),
        ("ship",),
        "{targets} can carry goods or people across the water.",
    ),
    ReasonRule(
        ("Where could a car drive?", "Which parts of the image could vehicles travel on?"),
        ("road",),
        "{targets} {be} where vehicles drive.",
    ),
    ReasonRule(
        ("Where could someone go fishing?",),
        ("water", "river", "stream"),
        "{targets} may hold fish.",
    ),
)


def rule_targets(scene: Scene, rule: ReasonRule) -> tuple[int, ...] | None:
    """The objects that answer a rule in this tile; None when that is in doubt.

    An empty tuple means none of the rule's categories is in the tile.
    """
    candidates = tuple(sorted(i for c in rule.categories for i in scene.members.get(c, ())))
    if rule.near is None or not candidates:
        return candidates
    if rule.near not in scene.members:
        return None  # the water is there, but nothing says whether it can be reached
    near = NEAR_FRACTION * max(scene.width, scene.height)
    # [H, W] distance from each pixel to the nearest pixel of the near category.
    gaps = ndimage.distance_transform_edt(~scene.union_mask(scene.members[rule.near]))
    distances = [np.min(gaps[scene.union_mask((i,))], initial=np.inf) for i in candidates]
    if any(near < d < FAR_FACTOR * near for d in distances):
        return None
    targets = tuple(i for i, d in zip(candidates, distances, strict=True) if d <= near)
    return targets or None


def reason_turn(
    scene: Scene, rng: np.random.Generator, rule: ReasonRule, targets: tuple[int, ...]
) -> Turn:
    """Asks a rule's question; answers with a one-sentence reason, then the geometry."""
    forms = tuple(prompts.FORM_REQUESTS)
    form = "mask" if len(targets) > scene.options.max_boxes else pick(rng, forms)
    question = prompts.reason(pick(rng, rule.questions), form)
    if not targets:
        return Turn(question, f"{sentence(f'I see no {_nouns(scene, rule)} in this image')} {NONE}")
    names, plural = _targets_phrase(scene, rule, targets)
    explanation = sentence(rule.explanation.format(targets=names, be="are" if plural else "is"))
    return Turn(question, f"{explanation} {scene.geometry_text(targets, form)}", targets)


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """Questions of distinct rules; a share (``none_fraction``) about absent categories."""
    present, absent = [], []
    for rule in RULES:
        targets = rule_targets(scene, rule)
        if targets:
            present.append((rule, targets))
        elif targets == () and rule.near is None and _all_absent(scene, rule):
            absent.append((rule, ()))
    chosen = draw(rng, present, absent, count, scene.options.none_fraction)
    return [Sample((reason_turn(scene, rng, rule, targets),)) for rule, targets in chosen]


def _all_absent(scene: Scene, rule: ReasonRule) -> bool:
    return all(category in scene.absent_categories for category in rule.categories)


def _targets_phrase(scene: Scene, rule: ReasonRule, targets: tuple[int, ...]) -> tuple[str, bool]:
    """Names the targets ("the two swimming pools", "the water and the park"); plural or not."""
    parts, plural = [], False
    for category in rule.categories:
        found = sum(scene.objects[i].category == category for i in targets)
        if found == 0:
            continue
        if found == 1 or category in MASS_NOUNS:
            parts.append(f"the {category}")
        elif scene.is_countable(category):
            parts.append(f"the {number_words(found)} {scene.plural(category)}")
        else:
            parts.append(f"the {scene.plural(category)}")
        plural = plural or (found > 1 and category not in MASS_NOUNS)
    return join_list(parts), plural or len(parts) > 1


def _nouns(scene: Scene, rule: ReasonRule) -> str:
    nouns = [c if c in MASS_NOUNS else scene.vocabulary.plurals[c] for c in rule.categories]
    return " or ".join(nouns)
