"""Multi-turn dialogues (task ``multi_turn``) that mix the single-turn tasks around one topic.

A dialogue asks whether a category is there, then (if it is) how many there are and where they
are (boxes, quads or a mask of a verified expression), and sometimes closes with the scene
class or a caption. A share (``none_fraction``) of the dialogues is about an absent category:
"No", then a request to locate it, answered ``<none>``. The truth is every object of the tile.
"""

from __future__ import annotations

import numpy as np

from geochat.data_builders.tasks.caption import caption_turn
from geochat.data_builders.tasks.classify import classify_turn
from geochat.data_builders.tasks.common import Sample, Turn, draw, pick_varied
from geochat.data_builders.tasks.expressions import referring_expressions
from geochat.data_builders.tasks.language import pick
from geochat.data_builders.tasks.refer import FORMS, locate_turn
from geochat.data_builders.tasks.scene import Scene
from geochat.data_builders.tasks.segment import segment_turn
from geochat.data_builders.tasks.vqa import count_turn, presence_turn

CLOSING_SHARE = 0.5  # dialogues that end with the scene class or a caption


def dialogue(scene: Scene, rng: np.random.Generator, topic: str) -> Sample:
    """A dialogue about one category (present or absent)."""
    turns = [presence_turn(scene, rng, topic)]
    members = scene.members.get(topic, ())
    if not members:
        plural = scene.vocabulary.plurals[topic]
        turns.append(locate_turn(scene, rng, f"all {plural}", (), pick(rng, FORMS), plural=True))
    else:
        if scene.is_countable(topic):
            turns.append(count_turn(scene, rng, scene.plural(topic), members))
        turns += _locate_some(scene, rng, topic)
    if rng.random() < CLOSING_SHARE:
        closing = classify_turn(scene, rng) if rng.random() < 0.5 else caption_turn(scene, rng)
        turns += [closing] if closing is not None else []
    return Sample(tuple(turns), scene_level=True)


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """Dialogues on distinct topics; a share (``none_fraction``) on absent categories."""
    topics = draw(
        rng, scene.categories, scene.absent_categories, count, scene.options.none_fraction
    )
    return [dialogue(scene, rng, topic) for topic in topics]


def _locate_some(scene: Scene, rng: np.random.Generator, topic: str) -> list[Turn]:
    """One turn locating a verified expression of the topic, as boxes, quads or a mask."""
    expressions = [
        e
        for e in referring_expressions(scene)
        if e.category == topic and len(e.targets) <= scene.options.max_boxes
    ]
    chosen = pick_varied(rng, expressions, 1)
    if not chosen:
        return []
    expression = chosen[0]
    form = pick(rng, (*scene.box_forms(expression.targets), "mask"))
    if form == "mask":
        return [segment_turn(scene, rng, expression.phrase, expression.targets)]
    plural = len(expression.targets) > 1
    return [
        locate_turn(
            scene, rng, expression.phrase, expression.targets, form, plural, expression.name
        )
    ]
