"""The questions the engine, API and UI ask are questions the data builders write."""

import re
import string
from collections.abc import Iterator

import pytest

from geochat import prompts
from geochat.app.ui import EXAMPLES, EXAMPLES_DIR, TASKS
from geochat.data_builders.tasks.language import indefinite
from geochat.engine import task_question
from geochat.modeling.families.idefics3 import IDEFICS3
from geochat.modeling.families.llava import LLAVA


def written(templates, **fields) -> set[str]:
    """Every question the builders can write from ``templates`` with these fields."""
    return {template.format(**fields) for template in templates}


@pytest.mark.parametrize("form", ["box", "quad"])
def test_locate_asks_a_referring_question_of_its_form(form):
    fields = {"phrase": "the pier", "be": "is", **prompts.form_words(form, plural=False)}
    assert prompts.locate("the pier", form) in written(prompts.REFER_QUESTIONS[form], **fields)


def test_where_segment_count_and_reason_are_training_questions():
    box = {"phrase": "the water", "be": "is", **prompts.form_words("box", plural=False)}
    assert prompts.where("the water") in written(prompts.REFER_QUESTIONS["box"], **box)
    assert prompts.segment("the road") in written(prompts.SEGMENT_QUESTIONS, phrase="the road")
    assert prompts.count("ships") in written(prompts.COUNT_QUESTIONS, plural="ships")
    for form, request in prompts.FORM_REQUESTS.items():
        assert prompts.reason("Where can a boat land?", form).endswith(f"? {request}")


@pytest.mark.parametrize("form", sorted(prompts.FORM_NOUNS))
def test_form_words_use_the_article_of_the_builders(form):
    singular = prompts.form_words(form, plural=False)
    assert singular["a_noun"] == indefinite(singular["noun"])


def test_the_ui_asks_training_questions():
    questions = [template.format(target="ships") for _, template in TASKS]
    assert "Locate all ships." in questions
    assert prompts.DESCRIBE in prompts.CAPTION_QUESTIONS


def templates(value) -> Iterator[str]:
    """The strings in a template constant (a string, or tuples and dicts of them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | tuple):
        for item in value.values() if isinstance(value, dict) else value:
            yield from templates(item)


def question_templates() -> set[str]:
    """Every question template of geochat.prompts: its upper-case constants but the forms'."""
    names = [name for name in vars(prompts) if name.isupper() and not name.startswith("FORM_")]
    return {template for name in names for template in templates(getattr(prompts, name))}


def template_pattern(template: str) -> str:
    """A regex of the questions a template writes: its text, any value in each field."""
    pieces = string.Formatter().parse(template)
    return "".join(re.escape(text) + ("(.+)" if field else "") for text, field, *_ in pieces)


def test_every_example_is_an_image_and_questions_from_the_training_templates():
    patterns = [template_pattern(template) for template in question_templates()]
    assert len(EXAMPLES) == 3
    for name, questions in EXAMPLES:
        assert (EXAMPLES_DIR / name).is_file()
        assert len(questions) >= 2  # a conversation: a later question refers to earlier ones
        for question in questions:
            assert any(re.fullmatch(p, question) for p in patterns), question
    assert not any(re.fullmatch(p, "Show me all the buildings.") for p in patterns)


def test_geochat_models_are_asked_the_questions_the_builders_write():
    box = "<box>[[100,200,300,400]]</box>"
    quad = prompts.locate("the pier", "quad")
    assert task_question(IDEFICS3, "refer", quad, phrase="the pier") == quad
    assert task_question(None, "refer", quad, phrase="the pier") == quad
    identify = task_question(IDEFICS3, "identify", prompts.identify(box), region=box)
    assert identify == f"What is in the region {box}?"
    assert identify in written(prompts.IDENTIFY_QUESTIONS, region=box)


def test_other_families_are_asked_in_their_own_task_prompts():
    box = "<box>[[100,200,300,400]]</box>"
    refer = task_question(LLAVA, "refer", prompts.locate("the pool"), phrase="the pool")
    assert refer == "[refer] give me the location of <p>the pool</p>"
    assert task_question(LLAVA, "identify", prompts.identify(box), region=box).startswith(
        "[identify] what is this <box>"
    )


def test_mask_questions_and_only_they_ask_for_a_mask():
    fields = {"phrase": "the pool", "them": "them", "plural": "pools", "category": "pool"}
    mask_questions = [
        *(q.format(**fields) for q in prompts.SEGMENT_QUESTIONS),
        *(q.format(**fields) for q in prompts.FOLLOW_UP_QUESTIONS["segment"]),
        prompts.reason("Where could a boat be launched?", "mask"),
    ]
    other = [
        *(
            q.format(**fields, **prompts.form_words(form, False), be="is")
            for form, templates in prompts.REFER_QUESTIONS.items()
            for q in templates
        ),
        *(
            q.format(**fields, **prompts.form_words(form, True))
            for form, templates in prompts.GROUND_QUESTIONS.items()
            for q in templates
        ),
        prompts.reason("Where could a boat be launched?", "box"),
        prompts.count("pools"),
    ]
    assert all(prompts.asks_for_mask(q) for q in mask_questions)
    assert not any(prompts.asks_for_mask(q) for q in other)
