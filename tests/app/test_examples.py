"""The app's example images: drawn reproducibly from the synthetic world, and answered by the
bundled model with boxes that lie on the truth (what the README's first command promises)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from geochat import engine
from geochat.app.examples.make_examples import EXAMPLE_WORLDS, example_world
from geochat.app.ui import EXAMPLES, EXAMPLES_DIR
from geochat.data_builders.tags import load_tag_table
from geochat.geometry import hbb_iou, quad_to_hbb

# The category each example's conversation is about.
TOPICS = {"harbour.png": "ship", "suburb.jpg": "building", "port.tif": "industrial area"}
# The examples whose first question the bundled model answers on the truth: it locates large
# areas (industrial areas) far better than small objects (ships, buildings).
TARGETS = {"port.tif": "industrial area"}


@pytest.mark.parametrize("name", sorted(EXAMPLE_WORLDS))
def test_example_images_are_what_make_examples_draws(name):
    shown = np.asarray(Image.open(EXAMPLES_DIR / name).convert("RGB"), dtype=np.int16)
    drawn = example_world(name).image.astype(np.int16)
    assert shown.shape == drawn.shape
    assert np.abs(shown - drawn).mean() < 5.0  # JPEG (quality 85) loses about 3.4 per pixel


def truth_boxes(name: str, category: str) -> np.ndarray:
    """Pixel boxes `[N, 4]` of the example world's objects of one category."""
    table = load_tag_table()
    boxes = []
    for feature in example_world(name).features:
        rule = table.rule_for(feature.tags)
        if rule is not None and rule.category == category:
            boxes.append(feature.footprint.bounds)
    return np.array(boxes)


@pytest.mark.parametrize(("name", "questions"), EXAMPLES)
def test_each_example_conversation_is_about_objects_its_image_holds(name, questions):
    assert len(truth_boxes(name, TOPICS[name])), f"{name} holds no {TOPICS[name]}"
    assert TOPICS[name] in questions[0]


@pytest.mark.parametrize(("name", "questions"), [e for e in EXAMPLES if e[0] in TARGETS])
def test_bundled_model_grounds_the_example_first_question_on_the_truth(name, questions):
    messages = [{"role": "user", "content": questions[0]}]
    reply = engine.load().chat(EXAMPLES_DIR / name, messages)
    answered = [
        obj.hbb if obj.hbb is not None else quad_to_hbb(obj.quad)
        for obj in reply.parsed.objects
        if obj.hbb is not None or obj.quad is not None
    ]
    assert answered, f"no box in {reply.text!r}"
    truth = truth_boxes(name, TARGETS[name])
    assert len(truth), f"{name} holds no {TARGETS[name]}"
    assert hbb_iou(np.array(answered), truth).max() >= 0.5, reply.text
