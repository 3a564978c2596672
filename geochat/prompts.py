"""The wording of the task questions: what training data asks, and so what a model is asked.

The data builders (``geochat.data_builders.tasks``) draw their questions from these templates;
the model family's task prompts, the REST API and the UI ask with the same words, so that a
model trained on our data reads the questions it learned. Change a template here and every
one of them follows (records built before keep the old wording).

Template fields: ``{phrase}`` a referring phrase, ``{be}`` "is"/"are", ``{noun}`` and
``{a_noun}`` a geometry form's name (:func:`form_words`), ``{plural}`` and ``{a_category}`` a
category, ``{region}`` a ``<box>``/``<quad>`` region, ``{choices}`` a list of classes.
"""

from __future__ import annotations

# Geometry forms of answers and how questions name them (singular, plural).
FORM_NOUNS = {
    "box": ("bounding box", "bounding boxes"),
    "quad": ("oriented bounding box", "oriented bounding boxes"),
    "mask": ("segmentation mask", "segmentation mask"),
}
# What a reasoning question appends to ask for a form.
FORM_REQUESTS = {"box": "Answer with bounding boxes.", "mask": "Answer with a segmentation mask."}

LOCATE = "Locate {phrase}."
LOCATE_AS = "Locate {phrase} with {a_noun}."
WHERE = "Where {be} {phrase}?"
SEGMENT = "Segment {phrase}."
COUNT = "How many {plural} are there?"
FIND_ALL = "Where are all the {plural}?"
DESCRIBE = "Describe this image."

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
GROUND_QUESTIONS = (
    "Describe the image and give the {noun} of each kind of object.",
    "What objects are in this image? Answer with their {noun}.",
    "Ground every object in this image with {noun}.",
    "List what you see, with {noun}.",
)
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


def where(phrase: str, plural: bool = False) -> str:
    """Asks where a phrase's objects are: "Where is the water?"."""
    return WHERE.format(phrase=phrase, be="are" if plural else "is")


def find_all(plural: str, form: str = "box") -> str:
    """Asks for every object of a (plural) category, as boxes or oriented boxes (``"quad"``)."""
    question = FIND_ALL.format(plural=plural)
    if form == "box":
        return question
    return f"{question} Answer with {form_words(form, plural=True)['a_noun']}."


def segment(phrase: str) -> str:
    """Asks for the mask of a phrase's objects."""
    return SEGMENT.format(phrase=phrase)


def count(plural: str) -> str:
    """Asks how many objects of a (plural) category the image holds."""
    return COUNT.format(plural=plural)


def reason(question: str, form: str = "mask") -> str:
    """A reasoning question, asking for its answer's geometry (``"box"`` or ``"mask"``)."""
    return f"{question} {FORM_REQUESTS[form]}"
