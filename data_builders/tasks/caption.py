"""Scene captions (task ``caption``) from the tile's categories, counts and attributes.

"An aerial view of a residential area with 12 buildings, mostly red-roofed, two swimming pools
and a road." Each category is mentioned once: discrete objects with their count (and their
colour when most of them share one), roads, rivers and land cover by name. The scene class
(see :attr:`Scene.scene_class`) opens the sentence.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from geochat import prompts
from geochat.data_builders.tasks.common import Sample, Turn
from geochat.data_builders.tasks.language import counted, indefinite, join_list, pick, sentence
from geochat.data_builders.tasks.scene import Scene

OPENINGS = (
    "an aerial view of {place}",
    "a satellite image of {place}",
    "an overhead view of {place}",
    "this image shows {place}",
)
MOSTLY_SHARE = 0.6  # "mostly red-roofed" when at least this share of a category is red


def caption_turn(scene: Scene, rng: np.random.Generator) -> Turn:
    """Asks for a caption; the answer mentions every category of the tile once."""
    place = indefinite(scene.scene_class) if scene.scene_class else "an area"
    text = pick(rng, OPENINGS).format(place=place)
    mentions = [_mention(scene, c) for c in _mention_order(scene) if c != scene.scene_class]
    if mentions:
        text += f" with {join_list(mentions)}"
    return Turn(pick(rng, prompts.CAPTION_QUESTIONS), sentence(text))


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """One caption per tile (a second caption would say the same)."""
    if count < 1 or not scene.objects:
        return []
    return [Sample((caption_turn(scene, rng),), scene_level=True)]


def _mention_order(scene: Scene) -> list[str]:
    """Discrete objects first, most numerous first, then roads and rivers, then land cover."""

    def rank(category: str) -> tuple[int, int, str]:
        group = (
            0 if scene.is_countable(category) else 1 if category in scene.vocabulary.lines else 2
        )
        return group, -len(scene.members[category]), category

    return sorted(scene.categories, key=rank)


def _mention(scene: Scene, category: str) -> str:
    """Names a category in a caption: "12 buildings, mostly red-roofed", "a road", "water"."""
    members = scene.members[category]
    colours = Counter(scene.colour_phrase(i) for i in members)
    colour, share = colours.most_common(1)[0]
    if colour is None or not scene.is_countable(category):
        return scene.mention(category)
    if share == len(members):
        return counted(len(members), f"{colour} {category}", f"{colour} {scene.plural(category)}")
    if share >= MOSTLY_SHARE * len(members):
        return f"{scene.mention(category)}, mostly {colour}"
    return scene.mention(category)
