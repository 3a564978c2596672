"""GeoChat_Instruct: GeoChat's instruction set -> records in grammar v1.

Format (Kuckreja et al., "GeoChat: Grounded Large Vision-Language Model for Remote Sensing",
CVPR 2024, table 1; github.com/mbzuai-oryx/GeoChat ``docs/Data.md``; data on Hugging Face,
``MBZUAI/GeoChat_Instruct``): ``GeoChat_Instruct.json`` is LLaVA's format, a list of::

    {"id": "...", "image": "<file in the image folder>",
     "conversations": [{"from": "human", "value": "<image> ..."}, {"from": "gpt", ...}, ...]}

The images come as one zip (``cat images_parta* > images.zip``) that unpacks into
``share/softwares/kartik/GeoChat_finetuning/final_images_llava/``, the folder the ``image``
names are relative to (:data:`RELEASED_NESTING`). The image folder is found below ``--images``
(default: ``images/``, else the download folder itself): the released nesting, its last
folder, or the folder itself, in that order.

Geometry is written in GeoChat's dialect, ``<p>phrase</p> {<x0><y0><x1><y1>|<θ>}`` on 0-100
of the padded square; it is read with ``geochat.grammar.parse(..., dialect="geochat",
strict=True)`` and written again in the canonical grammar: a phrase and its boxes become
``<ref>phrase</ref><box>[[...]]</box>`` (``<quad>`` when any of them is rotated), a region in
a human turn becomes ``<box>`` or ``<quad>``; every other character of the text is kept,
GeoChat's task identifiers (``[grounding]``, ``[refer]``, ``[identify]``) included, since they
tell apart answers with and without boxes.

Tasks, from the first human turn: ``[grounding]`` -> ``grounded_caption``, ``[refer]`` ->
``refer``, ``[identify]`` -> ``identify``; otherwise several rounds -> ``multi_turn``,
"describe ... in detail" -> ``caption``, "classify" -> ``classify``, anything else ``vqa``.
``[grounding]`` is GeoChat's grounded description of the whole image, not a search for one
category: "When asked to describe the image with the special token '[grounding]', GeoChat
outputs both the description of the image as well as the bounding boxes for all the objects
detected" (GeoChat's README, section "Grounded Description"), so its records hold every
object the answer names. GeoChat answers a ``[refer]`` question with bare boxes; the converted
answer names them with the question's ``<p>`` phrase (``<ref>silver plane</ref><quad>...``), as
every referring answer in grammar v1 does, in any round of a conversation. Truth objects are
the boxes of the gpt turns with the category their phrase names
(:func:`geochat.categories.find_in_phrase`) and the phrase as ``source_category``; for an
``[identify]`` round, the region asked about, with the category the answer names and the
answer's words as ``source_category``.

Added in geochat 0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from geochat import categories, geometry
from geochat.data_builders.converters.common import (
    ConversionError,
    ImageStore,
    Report,
    progress,
    read_json,
    sentence_label,
    truth_object,
    write_output,
)
from geochat.grammar import GrammarError, GroundedObject, format, parse
from geochat.records import IMAGE_PLACEHOLDER, Record

DATASET = "geochat_instruct"
RELEASED_NESTING = Path("share/softwares/kartik/GeoChat_finetuning/final_images_llava")
IDENTIFY = "[identify]"
DIALECT = "geochat"
TASK_TAGS = {"[grounding]": "grounded_caption", "[refer]": "refer", IDENTIFY: "identify"}
_CAPTION = re.compile(r"\bdescribe\b.*\bin detail\b", re.IGNORECASE)
_CLASSIFY = re.compile(r"\bclassify\b", re.IGNORECASE)
_PHRASE = re.compile(r"<p>([^<>]*)</p>")
_PHRASE_BEFORE = re.compile(r"<p>([^<>]*)</p>(?:\s|<delim>)*$")
_JOINER = re.compile(r"(?:\s|<delim>)*")


def task_of(turns: list[dict[str, str]]) -> str:
    """The record task of a GeoChat conversation (see the module docstring)."""
    first = turns[0]["value"]
    for tag, task in TASK_TAGS.items():
        if tag in first:
            return task
    if len(turns) > 2:
        return "multi_turn"
    if _CAPTION.search(first):
        return "caption"
    if _CLASSIFY.search(first):
        return "classify"
    return "vqa"


def to_canonical(
    text: str, width: int, height: int, default_phrase: str | None = None
) -> tuple[str, list[GroundedObject]]:
    """Rewrites one GeoChat turn in the canonical grammar.

    Args:
        text: The turn as GeoChat wrote it.
        width: Image width in pixels.
        height: Image height in pixels.
        default_phrase: Phrase given to geometry that has none (a ``refer`` answer).

    Returns:
        The rewritten text and the geometry read from it (pixels, phrases filled in).

    Raises:
        GrammarError: if the text is not valid GeoChat (strict parsing).
    """
    objects = parse(text, width, height, dialect=DIALECT, strict=True).objects
    pieces, found, position = [], [], 0
    for run in _runs(text, objects):
        start = run[0].span[0]
        before = _PHRASE_BEFORE.search(text, position, start)
        if run[0].phrase is not None and before is not None:
            start = before.start()
        phrase = run[0].phrase or default_phrase
        items = _canonical_items(run, phrase)
        pieces += [_plain(text[position:start]), format(items, width, height)]
        found += [replace(obj, phrase=phrase) for obj in run]
        position = run[-1].span[1]
    pieces.append(_plain(text[position:]))
    return "".join(pieces), found


def _runs(text: str, objects: list[GroundedObject]) -> list[list[GroundedObject]]:
    """Groups geometry of one phrase written one after the other (spaces or ``<delim>``)."""
    runs: list[list[GroundedObject]] = []
    for obj in objects:
        previous = runs[-1][-1] if runs else None
        if (
            previous is not None
            and previous.phrase == obj.phrase
            and _JOINER.fullmatch(text, previous.span[1], obj.span[0]) is not None
        ):
            runs[-1].append(obj)
        else:
            runs.append([obj])
    return runs


def _canonical_items(run: list[GroundedObject], phrase: str | None) -> list[dict[str, Any]]:
    """Objects to format: all quads when any box of the run is rotated, else all boxes."""
    kind = "quad" if any(obj.kind == "quad" for obj in run) else "hbb"
    return [{"kind": kind, "phrase": phrase, "hbb": obj.hbb, "quad": obj.quad} for obj in run]


def _plain(text: str) -> str:
    """Text between geometry: phrase tags without geometry become their words."""
    return _PHRASE.sub(r"\1", text).replace("<delim>", "")


def _truth(objects: list[GroundedObject], label: str | None = None) -> list[dict[str, Any]]:
    """Truth objects of the boxes and quads: labelled ``label`` if given, else their phrase."""
    return [
        truth_object(label or obj.phrase or categories.UNKNOWN, obj.hbb, obj.quad)
        for obj in objects
        if obj.kind in ("hbb", "quad")
    ]


def _turns(item: Any, index: int, path: Path) -> list[dict[str, str]]:
    """The conversation of one item, checked to be human/gpt turns with string values."""
    key = f"item {index}"
    if not isinstance(item, dict) or not isinstance(item.get("image"), str):
        raise ConversionError(path, "expected an object with a string 'image'", key=key)
    turns = item.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2:
        raise ConversionError(path, "'conversations' must hold human/gpt pairs", key=key)
    for number, turn in enumerate(turns):
        expected = "human" if number % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected:
            raise ConversionError(path, f"turn {number} must come from {expected!r}", key=key)
        if not isinstance(turn.get("value"), str):
            raise ConversionError(path, f"turn {number} has no string 'value'", key=key)
    return turns


def convert_item(
    turns: list[dict[str, str]], width: int, height: int
) -> tuple[str, list[dict[str, str]], list[dict[str, Any]]]:
    """Converts one conversation: its task, canonical turns and truth objects.

    Each round (a human turn and the gpt answer) is read on its own: bare boxes of an answer
    take the question's ``<p>`` phrase, and an ``[identify]`` question's region takes the
    answer as its label, in the first round or any later one.

    Raises:
        GrammarError: for geometry GeoChat's dialect cannot read.
    """
    conversations: list[dict[str, str]] = []
    truth: list[dict[str, Any]] = []
    for human, gpt in zip(turns[::2], turns[1::2], strict=True):
        phrases = _PHRASE.findall(human["value"])
        question, asked = to_canonical(human["value"], width, height)
        answer, answered = to_canonical(
            gpt["value"], width, height, phrases[0].strip() if phrases else None
        )
        if IDENTIFY in human["value"]:
            truth += _truth(asked, sentence_label(_plain(answer)))
        else:
            truth += _truth(answered)
        conversations += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    if IMAGE_PLACEHOLDER not in conversations[0]["value"]:
        conversations[0]["value"] = f"{IMAGE_PLACEHOLDER}\n{conversations[0]['value']}"
    return task_of(turns), conversations, truth


def image_folder(src: Path, images: str | None) -> Path:
    """The folder the items' ``image`` names are relative to.

    Below each root (``src/<images>``; by default ``src/images``, then ``src``) it tries the
    released nesting, its last folder (``final_images_llava``) and the root itself.

    Raises:
        ConversionError: if none of them is a folder.
    """
    roots = [src / images] if images is not None else [src / "images", src]
    tried = [
        candidate
        for root in roots
        for candidate in (root / RELEASED_NESTING, root / RELEASED_NESTING.name, root)
    ]
    for candidate in tried:
        if candidate.is_dir():
            return candidate
    raise ConversionError(src, f"image folder not found (tried {', '.join(map(str, tried))})")


def load_items(path: Path) -> list[Any]:
    """Reads the instruction file (a JSON list).

    Raises:
        ConversionError: for a missing file, invalid JSON or anything but a list.
    """
    items = read_json(path)
    if not isinstance(items, list):
        raise ConversionError(path, "expected a JSON list of conversations")
    return items


def convert(
    src: Path,
    out: Path,
    split: str | None = None,
    instructions: str = "GeoChat_Instruct.json",
    images: str | None = None,
    skip_invalid: bool = False,
    link_images: bool = False,
) -> dict[str, Any]:
    """Converts GeoChat_Instruct into records.

    Args:
        src: Folder holding the instruction file and the image folder.
        out: Output folder (``out/geochat_instruct[_<split>].jsonl``, images in ``out/images/``).
        split: Written into every record (GeoChat_Instruct is one training set; nothing is
            filtered).
        instructions: The instruction file, relative to ``src`` (or absolute).
        images: Folder holding the images, relative to ``src`` (or absolute), searched as
            :func:`image_folder` says; None searches ``src/images``, then ``src``.
        skip_invalid: Count items with a missing image or unreadable geometry as skipped
            instead of stopping with an error.
        link_images: Hard-link images instead of copying them.

    Returns:
        The summary of :func:`data_builders.converters.common.write_output`.

    Raises:
        ConversionError: for a missing file, a malformed item or, unless ``skip_invalid``, a
            missing image or geometry that GeoChat's dialect cannot read.
    """
    path = src / instructions
    items = load_items(path)
    image_dir = image_folder(src, images)
    store = ImageStore(image_dir, out, DATASET, link=link_images)
    report = Report()

    def records() -> Iterator[Record]:
        for index, item in enumerate(progress(items, DATASET)):
            turns = _turns(item, index, path)
            try:
                image, width, height = store.add(image_dir / item["image"])
                task, conversations, objects = convert_item(turns, width, height)
            except (ConversionError, GrammarError, geometry.GeometryError) as error:
                if not skip_invalid:
                    raise ConversionError(path, str(error), key=f"item {index}") from error
                report.invalid(error, task_of(turns))
                continue
            record: Record = {
                "id": f"{DATASET}/{index}",
                "image": image,
                "width": width,
                "height": height,
                "task": task,
                "conversations": conversations,
                "objects": objects,
                "source": {"dataset": DATASET, "id": item.get("id"), "index": index},
            }
            if split:
                record["split"] = split
            yield record

    arguments = {
        "src": src,
        "instructions": instructions,
        "images": image_dir,
        "skip_invalid": skip_invalid,
    }
    return write_output(out, DATASET, split, records(), store, report, arguments)
