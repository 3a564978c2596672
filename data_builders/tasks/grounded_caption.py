"""Grounded description (task ``grounded_caption``): every group of objects named and located.

"The image shows <ref>two swimming pools</ref><box>[[...],[...]]</box>, <ref>a road</ref>
<box>[[...]]</box> and ...": one phrase per category, followed by the boxes (or quads) of all
its objects (boxes for round objects such as trees, whose quads have no meaningful angle).
Tiles with more than ``max_boxes`` objects get no grounded description.
"""

from __future__ import annotations

import numpy as np

from geochat import prompts
from geochat.data_builders.tasks.common import Sample, Turn
from geochat.data_builders.tasks.language import join_list, pick
from geochat.data_builders.tasks.scene import Scene
from geochat.grammar import format_ref

OPENINGS = ("The image shows {items}.", "This image contains {items}.", "I can see {items}.")
FORMS = ("box", "quad")


def grounded_caption_turn(scene: Scene, rng: np.random.Generator) -> Turn | None:
    """Describes and locates every category; None for an empty tile or too many objects."""
    if not scene.objects or len(scene.objects) > scene.options.max_boxes:
        return None
    form = pick(rng, FORMS)
    question = pick(rng, prompts.GROUNDED_CAPTION_QUESTIONS).format(
        **prompts.form_words(form, plural=True)
    )
    items = []
    for category in scene.categories:
        members = scene.members[category]
        # Round objects (trees) get boxes even in a quad answer: their quads have no angle.
        group_form = form if form in scene.box_forms(members) else "box"
        items.append(format_ref(scene.mention(category), scene.geometry_text(members, group_form)))
    answer = pick(rng, OPENINGS).format(items=join_list(items))
    return Turn(question, answer, tuple(range(len(scene.objects))))


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """At most one grounded description per tile."""
    turn = grounded_caption_turn(scene, rng) if count > 0 else None
    return [] if turn is None else [Sample((turn,), scene_level=True)]
