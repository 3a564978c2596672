"""Referring (task ``refer``): a verified expression in, its objects' boxes or quads out.

Expressions come from :mod:`data_builders.tasks.expressions`, so each names exactly its
targets; the answer names them before their geometry (``<ref>the largest ship</ref><quad>..``),
and several targets ("all swimming pools") are answered in one tag,
``<ref>swimming pools</ref><box>[[...],[...]]</box>``, in reading order. A share
(``none_fraction``) of the questions asks for a category absent from the tile and is answered
a bare ``<none>``.
"""

from __future__ import annotations

import numpy as np

from geochat import prompts
from geochat.data_builders.tasks.common import (
    Sample,
    Turn,
    absent_phrase,
    count_absent,
    pick_varied,
)
from geochat.data_builders.tasks.expressions import referring_expressions
from geochat.data_builders.tasks.language import pick, sentence
from geochat.data_builders.tasks.scene import Scene
from geochat.grammar import NONE, format_ref

FORMS = tuple(prompts.REFER_QUESTIONS)


def locate_turn(
    scene: Scene,
    rng: np.random.Generator,
    phrase: str,
    targets: tuple[int, ...],
    form: str,
    plural: bool,
    name: str | None = None,
) -> Turn:
    """Asks where a phrase's objects are; answers with their named boxes or quads, or ``<none>``.

    Args:
        scene: The tile.
        rng: Random generator.
        phrase: The referring phrase.
        targets: Its objects (empty for an absent category).
        form: ``"box"`` or ``"quad"``.
        plural: Whether the phrase is plural (for "is"/"are" and "box"/"boxes").
        name: The phrase of the answer's ``<ref>`` (:attr:`Expression.name`); None for the
            question's phrase.
    """
    fields = {"phrase": phrase, "be": "are" if plural else "is", **prompts.form_words(form, plural)}
    question = sentence(pick(rng, prompts.REFER_QUESTIONS[form]).format(**fields))
    answer = format_ref(name or phrase, scene.geometry_text(targets, form)) if targets else NONE
    return Turn(question, answer, targets)


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """Referring questions on distinct expressions, plus a share about absent categories."""
    absent = count_absent(rng, scene, count)
    turns = []
    for _ in range(absent):
        phrase, plural = absent_phrase(rng, scene)
        turns.append(locate_turn(scene, rng, phrase, (), pick(rng, FORMS), plural))
    expressions = [
        e for e in referring_expressions(scene) if len(e.targets) <= scene.options.max_boxes
    ]
    for expression in pick_varied(rng, expressions, count - absent):
        plural = len(expression.targets) > 1
        form = pick(rng, scene.box_forms(expression.targets))
        turns.append(
            locate_turn(
                scene, rng, expression.phrase, expression.targets, form, plural, expression.name
            )
        )
    return [Sample((turn,)) for turn in turns]
