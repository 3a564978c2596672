"""Find-all grounding (task ``ground``): one category named, every object of it located.

"Where are all the buildings?" -> ``<ref>buildings</ref><box>[[...],[...]]</box>``: the boxes
(or quads, when the question asks for oriented boxes and no object is round) of every object
of the category, in reading order. A share (``none_fraction``) of the questions asks for a
category absent from the tile and is answered ``<none>``. The record's truth is the category's
objects only, so its score and its category are the category's. Categories with more than
``max_boxes`` objects are not asked for.
"""

from __future__ import annotations

import numpy as np

from geochat import prompts
from geochat.data_builders.tasks.common import Sample, Turn, draw
from geochat.data_builders.tasks.language import MASS_NOUNS, pick
from geochat.data_builders.tasks.scene import Scene
from geochat.grammar import NONE, format_ref

FORMS = tuple(prompts.GROUND_QUESTIONS)


def ground_turn(scene: Scene, rng: np.random.Generator, category: str) -> Turn:
    """Asks for every object of a category; answers with their named geometry, or ``<none>``."""
    members = scene.members.get(category, ())
    form = pick(rng, scene.box_forms(members) if members else FORMS)
    templates = prompts.GROUND_QUESTIONS[form]
    if category in MASS_NOUNS:  # "Find every water" does not read
        templates = tuple(t for t in templates if "{category}" not in t)
    plural = scene.plural(category)
    question = pick(rng, templates).format(
        plural=plural, category=category, **prompts.form_words(form, plural=True)
    )
    answer = format_ref(plural, scene.geometry_text(members, form)) if members else NONE
    return Turn(question, answer, members)


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """Find-all questions on distinct categories; a share (``none_fraction``) on absent ones."""
    present = [c for c in scene.categories if len(scene.members[c]) <= scene.options.max_boxes]
    categories = draw(rng, present, scene.absent_categories, count, scene.options.none_fraction)
    return [Sample((ground_turn(scene, rng, category),)) for category in categories]
