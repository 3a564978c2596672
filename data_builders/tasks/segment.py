"""Text-mask segmentation (task ``segment``): a verified expression in, ``<seg>N|...</seg>`` out.

The mask is the union of the targets' masks on the ``mask_grid`` grid (a cell is set when half
of its pixels are; a small object keeps its best-covered cell). A share (``none_fraction``) of
the questions asks for an absent category and is answered ``<none>``.
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
from geochat.data_builders.tasks.language import pick
from geochat.data_builders.tasks.scene import Scene
from geochat.grammar import NONE


def segment_turn(
    scene: Scene, rng: np.random.Generator, phrase: str, targets: tuple[int, ...]
) -> Turn:
    """Asks for a phrase's mask; answers with the text-mask of its objects, or ``<none>``."""
    answer = scene.geometry_text(targets, "mask") if targets else NONE
    return Turn(pick(rng, prompts.SEGMENT_QUESTIONS).format(phrase=phrase), answer, targets)


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """Segmentation questions on distinct expressions, plus a share about absent categories."""
    absent = count_absent(rng, scene, count)
    turns = [segment_turn(scene, rng, absent_phrase(rng, scene)[0], ()) for _ in range(absent)]
    for expression in pick_varied(rng, referring_expressions(scene), count - absent):
        turns.append(segment_turn(scene, rng, expression.phrase, expression.targets))
    return [Sample((turn,)) for turn in turns]
