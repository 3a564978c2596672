"""Presence questions (task ``vqa``) and counting (task ``count``).

"Is there a swimming pool?" -> "Yes"; "How many buildings are there?" -> "12".

Counting counts every object of the tile, truncated ones included: the tile shows part of each,
objects too small to recognise were already dropped by the tiling (``min_pixels``), and
annotated datasets (DOTA, DIOR) count partly visible objects too. Only discrete objects are
counted (not land cover, not roads or rivers, whose OSM ways are arbitrary pieces); a counting
question may narrow the set by an attribute or a part of the image ("How many red-roofed
buildings are there on the left?") when the expression engine finds that set without doubt.
"""

from __future__ import annotations

import numpy as np

from geochat import prompts
from geochat.data_builders.tasks.common import Sample, Turn, count_absent, draw, pick_varied
from geochat.data_builders.tasks.expressions import Expression, referring_expressions
from geochat.data_builders.tasks.language import indefinite, pick, shuffled
from geochat.data_builders.tasks.scene import Scene

YES, NO = "Yes", "No"
NEGATIVE_SHARE = 0.5  # presence questions are balanced, so "yes" alone scores at chance


def presence_turn(scene: Scene, rng: np.random.Generator, category: str) -> Turn:
    """Asks whether a category is in the tile; the answer names its objects when it is."""
    question = pick(rng, prompts.PRESENCE_QUESTIONS).format(
        a_category=indefinite(category), plural=scene.vocabulary.plurals[category]
    )
    targets = scene.members.get(category, ())
    return Turn(question, YES if targets else NO, targets)


def count_turn(
    scene: Scene, rng: np.random.Generator, plural: str, targets: tuple[int, ...]
) -> Turn:
    """Asks for the number of objects named by a plural noun phrase; the answer is the integer."""
    return Turn(
        pick(rng, prompts.COUNT_QUESTIONS).format(plural=plural), str(len(targets)), targets
    )


def countable_expressions(scene: Scene) -> list[Expression]:
    """Expressions a counting question can use: plural, of discrete objects, no relation.

    ("How many cars next to the pool are there?" reads badly and counts at most a few.)
    """
    return [
        e
        for e in referring_expressions(scene)
        if e.plural is not None
        and scene.is_countable(e.category)
        and all(m.kind != "relation" for m in e.modifiers)
    ]


def generate_presence(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """Balanced yes/no questions about distinct categories, present and absent."""
    topics = draw(rng, scene.categories, scene.absent_categories, count, NEGATIVE_SHARE)
    return [Sample((presence_turn(scene, rng, topic),)) for topic in topics]


def generate_count(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """Counting questions; a share (``none_fraction``) about absent categories, answered 0."""
    countable = [c for c in scene.absent_categories if scene.is_countable(c)]
    absent = shuffled(rng, countable)[: count_absent(rng, scene, count)]
    turns = [count_turn(scene, rng, scene.vocabulary.plurals[c], ()) for c in absent]
    present = pick_varied(rng, countable_expressions(scene), count - len(turns))
    turns += [count_turn(scene, rng, e.plural, e.targets) for e in present if e.plural]
    # The truth is the counted objects, so a count is scored under its category.
    return [Sample((turn,)) for turn in turns]
