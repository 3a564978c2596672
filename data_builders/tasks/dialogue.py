"""Multi-turn dialogues (task ``multi_turn``) that mix the single-turn tasks around one topic.

A dialogue asks whether a category is there, then (if it is) sometimes how many there are, and
where they are (boxes, quads or a mask of a verified expression), followed by one or two
follow-ups about the objects just located: "And the largest one?" (when the winner is clear),
"Segment them.", "How many of them are there?". Each follow-up refers to the previous answer's
objects, so it is decidable from the earlier turns and the image. Dialogues with room left may
close with the scene class or a caption. A share (``none_fraction``) of the dialogues is about
an absent category: "No", then a request to locate it, answered ``<none>``. A dialogue has at
most :data:`MAX_TURNS` turns. The truth is every object of the tile.
"""

from __future__ import annotations

import numpy as np

from geochat import prompts
from geochat.data_builders.tasks.caption import caption_turn
from geochat.data_builders.tasks.classify import classify_turn
from geochat.data_builders.tasks.common import Sample, Turn, draw, pick_varied
from geochat.data_builders.tasks.expressions import referring_expressions, superlative_winner
from geochat.data_builders.tasks.language import pick
from geochat.data_builders.tasks.refer import FORMS, locate_turn
from geochat.data_builders.tasks.scene import Scene
from geochat.data_builders.tasks.segment import segment_turn
from geochat.data_builders.tasks.vqa import count_turn, presence_turn
from geochat.grammar import format_ref

CLOSING_SHARE = 0.5  # dialogues with room left that end with the scene class or a caption
COUNT_SHARE = 0.5  # dialogues that count the topic before locating it
MAX_TURNS = 4  # geochat-nano trains on 160-token records
SUPERLATIVES = ("largest", "smallest")


def dialogue(scene: Scene, rng: np.random.Generator, topic: str) -> Sample:
    """A dialogue about one category (present or absent)."""
    turns = [presence_turn(scene, rng, topic)]
    members = scene.members.get(topic, ())
    if not members:
        plural = scene.vocabulary.plurals[topic]
        turns.append(locate_turn(scene, rng, f"all {plural}", (), pick(rng, FORMS), plural=True))
    else:
        counted: tuple[int, ...] = ()
        if scene.is_countable(topic) and rng.random() < COUNT_SHARE:
            turns.append(count_turn(scene, rng, scene.plural(topic), members))
            counted = members
        located = _locate_some(scene, rng, topic)
        if located is not None:
            turns.append(located[0])
            room = min(MAX_TURNS - len(turns), int(rng.integers(1, 3)))
            turns += follow_ups(scene, rng, *located, counted=counted, room=room)
    if len(turns) < MAX_TURNS and rng.random() < CLOSING_SHARE:
        closing = classify_turn(scene, rng) if rng.random() < 0.5 else caption_turn(scene, rng)
        turns += [closing] if closing is not None else []
    return Sample(tuple(turns), scene_level=True)


def generate(scene: Scene, rng: np.random.Generator, count: int) -> list[Sample]:
    """Dialogues on distinct topics; a share (``none_fraction``) on absent categories."""
    topics = draw(
        rng, scene.categories, scene.absent_categories, count, scene.options.none_fraction
    )
    return [dialogue(scene, rng, topic) for topic in topics]


def follow_ups(
    scene: Scene,
    rng: np.random.Generator,
    previous: Turn,
    form: str,
    counted: tuple[int, ...] = (),
    room: int = 2,
) -> list[Turn]:
    """Up to ``room`` follow-ups, each about the objects the answer before it located.

    Args:
        scene: The tile.
        rng: Random generator.
        previous: The turn that located the objects.
        form: Its geometry form, ``"box"``, ``"quad"`` or ``"mask"``.
        counted: Objects an earlier turn already counted (not asked again).
        room: Most follow-ups to add.
    """
    turns: list[Turn] = []
    targets, used = previous.targets, set()
    for _ in range(room):
        # Land cover and roads are not counted or compared one by one (see vqa, expressions).
        several = len(targets) > 1 and all(
            scene.is_countable(scene.objects[i].category) for i in targets
        )
        clear = {w: superlative_winner(scene, targets, w) for w in SUPERLATIVES} if several else {}
        winners = {w: i for w, i in clear.items() if i is not None}
        kinds = list(winners)
        kinds += ["segment"] if form != "mask" else []
        kinds += ["count"] if several and targets != counted else []
        kinds = [kind for kind in kinds if kind not in used]
        if not kinds:
            break
        kind = pick(rng, kinds)
        used.add(kind)
        question = pick(rng, prompts.FOLLOW_UP_QUESTIONS[kind])
        if kind == "count":
            turns.append(Turn(question, str(len(targets)), targets))
            counted = targets
        elif kind == "segment":
            question = question.format(them="it" if len(targets) == 1 else "them")
            turns.append(Turn(question, scene.geometry_text(targets, "mask"), targets))
            form = "mask"
        else:
            targets = (winners[kind],)
            form = form if form in scene.box_forms(targets) else "box"
            geometry = scene.geometry_text(targets, form)
            name = f"the {scene.describe(targets[0])}"
            turns.append(Turn(question, format_ref(name, geometry), targets))
    return turns


def _locate_some(scene: Scene, rng: np.random.Generator, topic: str) -> tuple[Turn, str] | None:
    """One turn locating a verified expression of the topic, and its form (box, quad, mask)."""
    expressions = [
        e
        for e in referring_expressions(scene)
        if e.category == topic and len(e.targets) <= scene.options.max_boxes
    ]
    chosen = pick_varied(rng, expressions, 1)
    if not chosen:
        return None
    expression = chosen[0]
    form = pick(rng, (*scene.box_forms(expression.targets), "mask"))
    if form == "mask":
        return segment_turn(scene, rng, expression.phrase, expression.targets), form
    plural = len(expression.targets) > 1
    turn = locate_turn(
        scene, rng, expression.phrase, expression.targets, form, plural, expression.name
    )
    return turn, form
