"""The wording of the task questions: what training data asks, and so what a model is asked.

The data builders (``geochat.data_builders.tasks``) draw their questions from these templates;
the model family's task prompts, the REST API and the UI ask with the same words, so that a
model trained on our data reads the questions it learned. Change a template here and every
one of them follows (records built before keep the old wording).

Template fields: ``{phrase}`` a referring phrase, ``{be}`` "is"/"are", ``{noun}`` and
``{a_noun}`` a geometry form's name (:func:`form_words`), ``{category}``, ``{plural}`` and
``{a_category}`` a category, ``{region}`` a ``<box>``/``<quad>`` region, ``{choices}`` a list
of classes.
"""

from __future__ import annotations

import re

# Geometry forms of answers and how questions name them (singular, plural).
FORM_NOUNS = {
    "box": ("bounding box", "bounding boxes"),
    "quad": ("oriented bounding box", "oriented bounding boxes"),
    "mask": ("segmentation mask", "segmentation mask"),
}
# What a reasoning question appends to ask for a form.
FORM_REQUESTS = {"box": "Answer with bounding boxes.", "mask": "Answer with a segmentation mask."}

# Words by which a question asks for a mask (every mask question below holds one, no box or
# quad question does): what SAM refinement reads to refine boxes and quads too.
MASK_WORDS = re.compile(r"\b(?:segment\w*|masks?|outline|pixels)\b", re.IGNORECASE)

LOCATE = "Locate {phrase}."
LOCATE_AS = "Locate {phrase} with {a_noun}."
WHERE = "Where {be} {phrase}?"
SEGMENT = "Segment {phrase}."
COUNT = "How many {plural} are there?"
DESCRIBE = "Describe this image."
FIND_ALL = "Locate all {plural}."

CAPTION_QUESTIONS = (
    DESCRIBE,
    "Write a short caption for this image.",
    "What does this aerial image show?",
    "Give a one-sentence description of the scene.",
)
CLASSIFY_OPEN_QUESTIONS = (
    "What kind of area is shown in this image?",
    "Classify this scene.",
    "What is the main land use in this image?",
    "What type of landscape is this?",
)
CLASSIFY_CHOICE_QUESTIONS = (
    "Which land cover dominates this image? Choose from: {choices}.",
    "Classify the scene as one of: {choices}.",
)
GROUNDED_CAPTION_QUESTIONS = (
    "Describe the image and give the {noun} of each kind of object.",
    "What objects are in this image? Answer with their {noun}.",
    "Ground every object in this image with {noun}.",
    "List what you see, with {noun}.",
)
# Find-all grounding: every object of one category. ``{category}`` only in templates that
# read well with a count noun ("Find every building", not "Find every water").
GROUND_QUESTIONS = {
    "box": (
        FIND_ALL,
        "Where are all the {plural}?",
        "Find every {category} in this image.",
        "Give the {noun} of all {plural}.",
    ),
    "quad": (
        "Locate all {plural} with {noun}.",
        "Where are all the {plural}? Answer with {noun}.",
        "Find every {category} in this image and answer with {noun}.",
        "Give the {noun} of all {plural}.",
    ),
}
IDENTIFY_QUESTIONS = (
    "What is in the region {region}?",
    "What is the object at {region}?",
    "Identify the object in {region}.",
    "What can you see in {region}?",
)
REFER_QUESTIONS = {
    "box": (
        LOCATE,
        WHERE,
        "Give the {noun} of {phrase}.",
        "Find {phrase} and answer with {a_noun}.",
    ),
    "quad": (
        "Give the {noun} of {phrase}.",
        LOCATE_AS,
        f"{WHERE} Answer with {{a_noun}}.",
    ),
}
SEGMENT_QUESTIONS = (
    SEGMENT,
    "Give a segmentation mask of {phrase}.",
    "Which pixels belong to {phrase}?",
    "Outline {phrase} with a mask.",
)
# Follow-ups in a dialogue about the objects the previous answer located; ``{them}`` is
# "it" or "them".
FOLLOW_UP_QUESTIONS = {
    "largest": ("And the largest one?", "Which one is the largest?"),
    "smallest": ("And the smallest one?", "Which one is the smallest?"),
    "segment": ("Segment {them}.", "Now give a segmentation mask of {them}."),
    "count": ("How many of them are there?", "How many are there?"),
}
PRESENCE_QUESTIONS = (
    "Is there {a_category} in this image?",
    "Are there any {plural} in the image?",
    "Does this image contain {a_category}?",
    "Can you see {a_category} here?",
)
COUNT_QUESTIONS = (
    COUNT,
    "Count the {plural} in this image.",
    "What is the number of {plural} in the image?",
    "How many {plural} can you see?",
)


def form_words(form: str, plural: bool) -> dict[str, str]:
    """Template fields naming a geometry form: ``noun`` ("bounding boxes") and ``a_noun``."""
    noun = FORM_NOUNS[form][1 if plural else 0]
    if plural:
        return {"noun": noun, "a_noun": noun}
    return {"noun": noun, "a_noun": f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"}


def locate(phrase: str, form: str = "box") -> str:
    """Asks where a phrase's objects are, as boxes (``"box"``) or oriented boxes (``"quad"``)."""
    if form == "box":
        return LOCATE.format(phrase=phrase)
    return LOCATE_AS.format(phrase=phrase, **form_words(form, plural=False))


def identify(region: str) -> str:
    """Asks what is in a region (a ``<box>`` or ``<quad>``): "What is in the region <box>...?"."""
    return IDENTIFY_QUESTIONS[0].format(region=region)


def where(phrase: str, plural: bool = False) -> str:
    """Asks where a phrase's objects are: "Where is the water?"."""
    return WHERE.format(phrase=phrase, be="are" if plural else "is")


def find_all(plural: str, form: str = "box") -> str:
    """Asks for every object of a (plural) category, as boxes or oriented boxes (``"quad"``).

    The first ``ground`` template of the form: what the data builders write most often.
    """
    return GROUND_QUESTIONS[form][0].format(plural=plural, **form_words(form, plural=True))


def segment(phrase: str) -> str:
    """Asks for the mask of a phrase's objects."""
    return SEGMENT.format(phrase=phrase)


def count(plural: str) -> str:
    """Asks how many objects of a (plural) category the image holds."""
    return COUNT.format(plural=plural)


def asks_for_mask(question: str) -> bool:
    """Whether a question asks for a mask ("Segment the pool.", "... with a mask")."""
    return MASK_WORDS.search(question) is not None


def reason(question: str, form: str = "mask") -> str:
    """A reasoning question, asking for its answer's geometry (``"box"`` or ``"mask"``)."""
    return f"{question} {FORM_REQUESTS[form]}"
