"""Region identification (task ``identify``): a box or quad in the question, what it holds out.

Only discrete objects whose box no other object's box overlaps by IoU 0.5 or more are asked
about, so that the region has one answer. The answer is the object with its attributes
("A red-roofed industrial building."), or the bare category with ``short_answers``.
"""

from __future__ import annotations

import numpy as np

from geochat import geometry, prompts
from geochat.data_builders.tasks.common import Sample, Turn
from geochat.data_builders.tasks.language import indefinite, pick, sentence, shuffled
from geochat.data_builders.tasks.scene import Scene
from geochat.grammar import format_region

MAX_SHARED_IOU = 0.5


def identify_turn(scene: Scene, rng: np.random.Generator, index: int, form: str) -> Turn:
    """Asks what one object's region holds."""
    region_px = scene.hbbs[index] if form == "box" else scene.quads[index]
    region = format_region(region_px, scene.width, scene.height)
    if scene.options.short_answers:
        answer = scene.objects[index].category
    else:
        answer = sentence(indefinite(scene.describe(index)))
    return Turn(pick(rng, prompts.IDENTIFY_QUESTIONS).format(region=region), answer, (index,))


def identifiable(scene: Scene) -> list[int]:
    """Discrete objects whose box overlaps no other object's box by IoU >= 0.5."""
    overlap = geometry.hbb_iou(scene.hbbs, scene.hbbs)  # [N, N]
    np.fill_diagonal(overlap, 0.0)
    return [
        index
        for index, obj in enumerate(scene.objects)
        if scene.is_countable(obj.category) and overlap[index].max(initial=0.0) < MAX_SHARED_IOU
    ]


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """Questions about distinct objects, each with a box or a quad region."""
    chosen = shuffled(rng, identifiable(scene))[:count]
    return [
        Sample((identify_turn(scene, rng, index, pick(rng, scene.box_forms((index,)))),))
        for index in chosen
    ]
