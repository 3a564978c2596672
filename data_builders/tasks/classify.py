"""Scene classification (task ``classify``): the land cover that covers most of the tile.

The class is the land-cover category (``TaskOptions.land_cover``) whose objects' masks cover
the largest share of the tile, at least a quarter of it; tiles without one get no question.
The answer is the class name ("residential area"); the truth is that class's objects.
"""

from __future__ import annotations

import numpy as np

from geochat import prompts
from geochat.data_builders.tasks.common import Sample, Turn
from geochat.data_builders.tasks.language import pick, shuffled
from geochat.data_builders.tasks.scene import Scene


def classify_turn(scene: Scene, rng: np.random.Generator) -> Turn | None:
    """Asks for the scene class, or None when the tile has none."""
    label = scene.scene_class
    if label is None:
        return None
    if rng.random() < 0.5:
        question = pick(rng, prompts.CLASSIFY_OPEN_QUESTIONS)
    else:
        classes = [c for c in scene.options.land_cover if c in scene.vocabulary.plurals]
        question = pick(rng, prompts.CLASSIFY_CHOICE_QUESTIONS).format(
            choices=", ".join(shuffled(rng, classes))
        )
    return Turn(question, label, scene.members[label])


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """At most one classification question per tile (the tile has one class)."""
    turn = classify_turn(scene, rng) if count > 0 else None
    return [] if turn is None else [Sample((turn,))]
