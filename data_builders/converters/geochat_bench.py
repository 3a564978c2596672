"""GeoChat-Bench: GeoChat's evaluation files -> records that ``geochat eval`` scores by its rules.

Source: Kuckreja et al., "GeoChat: Grounded Large Vision-Language Model for Remote Sensing",
CVPR 2024 (arXiv 2311.15826); files on Hugging Face, ``MBZUAI/GeoChat-Bench``; GeoChat's
``docs/Evaluation.md`` and ``geochat/eval/batch_geochat_*.py`` (read, not copied). Layout::

    referring.jsonl            {"question_id", "image_id", "question", "ground_truth",
    region_captioning.jsonl     "type", "dataset", "obj_ids", "size_group"}  (one JSON a line)
    lrben.jsonl, hrben.jsonl   {"question_id", "image", "text", "category"}  (no answers)
    aid.jsonl, UCmerced.jsonl  {"question_id", "image", "text", "ground_truth"}

plus images the benchmark does not ship, each in its own folder (options, relative to SRC):
GeoChat_Instruct's images for referring and region captioning (``--images``, files
``<image_id>.png``), RSVQA's low- and high-resolution test images (``--lrben-images``,
``--hrben-images``), AID (``--aid-images``) and UCMerced (``--ucmerced-images``).

- **referring**: ``question`` is a referring expression, ``ground_truth`` a list of its
  objects' oriented boxes as four ``[x, y]`` corners (or eight numbers) in **pixels** of the
  image, as third-party scorers of the released file read it. ``type`` ``"ref"`` is GeoChat's
  ``[refer]`` question (one attribute), anything else its ``[grounding]`` question;
  ``size_group`` is small, medium or large. -> ``refer`` records whose truth holds every quad,
  with the category the expression names (:func:`geochat.categories.find_in_phrase`) and the
  expression as ``source_category``, and ``obj_ids`` as object ids.
- **region_captioning**: ``question`` is a region in GeoChat's box format
  ``{<x0><y0><x1><y1>|<θ>}`` on 0-100 of the padded square (read with the ``geochat`` dialect
  of :mod:`geochat.grammar`), ``ground_truth`` its caption. -> ``identify`` records whose
  truth is the region, with the category its caption names and the caption as
  ``source_category``.
- **lrben / hrben** (RSVQA low / high resolution): the released files hold no answers, so
  they are taken from RSVQA's own answers file (``--lrben-answers``, ``--hrben-answers``;
  ``{"answers": [{"question_id", "answer", "active"}, ...]}``), joined by question id.
  ``category`` is the question type (presence, comp, rural_urban, count). -> ``vqa`` records.
- **aid / ucmerced**: ``text`` asks to choose among the classes it lists after
  ``Classes:``; the true class is the folder of ``question_id`` (``Airport/airport_1.jpg``),
  which is what GeoChat's scene scorer compares with (AID's ``ground_truth`` field has stray
  characters), or ``ground_truth`` when the id has no folder. An ``image`` whose suffix is
  wrong (AID's images are JPEG, the file says ``.png``) is found by its stem.
  -> ``classify`` records without objects (a scene is none); ``source`` keeps the class as
  ``source_category`` and, where the vocabulary has it, its canonical name as ``category``.

``grounding_description.jsonl`` is not converted. The summary and the manifest
(:func:`data_builders.converters.common.write_output`) count what was left out and why
(:class:`~data_builders.converters.common.Report`): lines skipped with ``--skip-invalid`` by
part, fields of a line that no record carries, and warnings for ``obj_ids`` that are not one
per quad and for a true class that the question does not list.

The human turn asks in the wording our models learn (the benchmark's ``text`` is kept for VQA
and classification, whose prompts are part of the benchmark); every record keeps the
benchmark's own question, its ids and question type in ``source`` (``part``, ``line``,
``question_id``, ``question``, ``type`` ...), which :func:`geochat.metrics.score_bench_record`
reads to apply the benchmark's rules.

Added in geochat 0.1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from geochat import categories, geometry
from geochat.cliargs import Flag
from geochat.data_builders.converters.common import (
    ConversionError,
    ImageStore,
    Report,
    conversation,
    find_image,
    inside_image,
    progress,
    read_json,
    read_jsonl,
    sentence_label,
    truth_object,
    write_output,
)
from geochat.grammar import GrammarError, format_quads, format_ref, format_region, parse
from geochat.records import Record

DATASET = "geochat_bench"
REFER_QUESTION = "Give the oriented bounding boxes of {expression}."
REGION_QUESTION = "What is the object at {region}?"
CLASSES_LABEL = "Classes:"


@dataclass(frozen=True)
class Part:
    """One file of the benchmark.

    Attributes:
        name: Name in ``source.part`` and ``--parts``.
        file: The question file in SRC.
        images: The option naming its image folder.
        fields: The fields of a line that records carry (others are counted as not converted).
        answers: The option naming RSVQA's answers file (VQA parts only).
    """

    name: str
    file: str
    images: str
    fields: tuple[str, ...]
    answers: str | None = None


GROUNDING_FIELDS = (
    *("question_id", "image_id", "question", "ground_truth"),
    *("type", "dataset", "obj_ids", "size_group"),
)
VQA_FIELDS = ("question_id", "image", "text", "category")
SCENE_FIELDS = ("question_id", "image", "text", "ground_truth")
PARTS = {
    part.name: part
    for part in (
        Part("referring", "referring.jsonl", "images", GROUNDING_FIELDS),
        Part("region_captioning", "region_captioning.jsonl", "images", GROUNDING_FIELDS),
        Part("lrben", "lrben.jsonl", "lrben_images", VQA_FIELDS, "lrben_answers"),
        Part("hrben", "hrben.jsonl", "hrben_images", VQA_FIELDS, "hrben_answers"),
        Part("aid", "aid.jsonl", "aid_images", SCENE_FIELDS),
        Part("ucmerced", "UCmerced.jsonl", "ucmerced_images", SCENE_FIELDS),
    )
}
DEFAULT_FOLDERS = {
    "images": "images",
    "lrben_images": "RSVQA_LR/Images_LR",
    "hrben_images": "RSVQA_HR/Data",
    "aid_images": "AID",
    "ucmerced_images": "UCMerced_LandUse/Images",
    "lrben_answers": "RSVQA_LR/LR_split_test_answers.json",
    "hrben_answers": "RSVQA_HR/USGS_split_test_phili_answers.json",
}
# Image folder option -> its folder in out/images/geochat_bench/.
STORE_NAMES = {
    "images": "instruct",
    "lrben_images": "lrben",
    "hrben_images": "hrben",
    "aid_images": "aid",
    "ucmerced_images": "ucmerced",
}


def read_answers(path: Path) -> dict[str, str]:
    """RSVQA's answers file as ``{question id: answer}`` (inactive answers left out).

    Raises:
        ConversionError: for a missing file, invalid JSON or another structure.
    """
    data = read_json(path)
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(answers, list):
        raise ConversionError(path, 'expected RSVQA\'s {"answers": [...]}')
    found: dict[str, str] = {}
    for index, answer in enumerate(answers):
        if not isinstance(answer, dict) or not isinstance(answer.get("answer"), str):
            raise ConversionError(
                path, "an answer needs a string 'answer'", key=f"answers[{index}]"
            )
        if "question_id" not in answer:
            raise ConversionError(path, "an answer needs a 'question_id'", key=f"answers[{index}]")
        if answer.get("active", True):
            found.setdefault(str(answer["question_id"]), answer["answer"])
    return found


def _field(item: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = item.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"needs a {key!r} of type {getattr(kind, '__name__', kind)}")
    return value


def _image(store: ImageStore, folder: Path, name: str) -> tuple[str, int, int]:
    """Places an image named by the benchmark, finding it by its stem when the suffix is wrong."""
    path = folder / name
    if not path.is_file():
        path = find_image(path.parent, path.stem)
    return store.add(path)


def _true_quads(value: Any, width: int, height: int) -> list[tuple[np.ndarray, bool]]:
    """The referring truth: ``(quad, truncated)`` per object, clipped to the image."""
    if not isinstance(value, list) or not value:
        raise ValueError("'ground_truth' must be a non-empty list of quads")
    quads = []
    for polygon in value:
        try:
            corners = np.asarray(polygon, dtype=np.float64)
        except (TypeError, ValueError):
            corners = None
        # Only these two shapes: reshaping anything of 8 numbers would read [[x0, y0, x1, y1],
        # [x2, y2, x3, y3]] as corners too.
        if corners is None or corners.shape not in ((4, 2), (8,)):
            raise ValueError(f"a quad must be 4 [x, y] corners or 8 numbers: {polygon!r}")
        corners = corners.reshape(4, 2)
        quad, truncated = inside_image(corners, width, height)
        if quad is None:
            raise ValueError(f"quad {polygon!r} lies outside the {width}x{height} image")
        quads.append((quad, truncated))
    return quads


def _grounding_source(item: dict[str, Any], part: str, line: int) -> dict[str, Any]:
    return {
        "dataset": DATASET,
        "part": part,
        "line": line,
        "question_id": item.get("question_id"),
        "image_id": item.get("image_id"),
        "question": item.get("question"),
        "type": item.get("type"),
        "subset": item.get("dataset"),
        "obj_ids": item.get("obj_ids"),
        "size_group": item.get("size_group"),
    }


def _object_ids(item: dict[str, Any], count: int, report: Report) -> list[str | None]:
    """``obj_ids`` as one id per quad; a list of another length is warned about and left out."""
    ids = item.get("obj_ids")
    if isinstance(ids, list) and len(ids) == count:
        return [None if object_id is None else str(object_id) for object_id in ids]
    if ids is not None:
        report.warn("obj_ids not one per quad (ids left out)", "referring")
    return [None] * count


def referring_record(
    item: dict[str, Any], line: int, store: ImageStore, folder: Path, report: Report
) -> Record:
    """One referring question -> a ``refer`` record with every object's quad.

    The objects take the category the expression names (:func:`truth_object`), the expression
    as ``source_category``.
    """
    expression = _field(item, "question", str).strip()
    image, width, height = _image(store, folder, f"{_field(item, 'image_id', str)}.png")
    quads = _true_quads(item.get("ground_truth"), width, height)
    ids = _object_ids(item, len(quads), report)
    objects = [
        truth_object(
            expression,
            geometry.quad_to_hbb(quad),
            quad,
            object_id=object_id,
            truncated=truncated,
        )
        for (quad, truncated), object_id in zip(quads, ids, strict=True)
    ]
    answer = format_ref(expression, format_quads([q for q, _ in quads], width, height))
    return {
        "image": image,
        "width": width,
        "height": height,
        "task": "refer",
        "conversations": conversation(REFER_QUESTION.format(expression=expression), answer),
        "objects": objects,
        "source": _grounding_source(item, "referring", line),
    }


def region_record(item: dict[str, Any], line: int, store: ImageStore, folder: Path) -> Record:
    """One region-captioning question -> an ``identify`` record (region in, caption out).

    The region's object takes the category its caption names, the caption as
    ``source_category`` (as GeoChat_Instruct's ``[identify]`` regions do).
    """
    region_text = _field(item, "question", str)
    caption = _field(item, "ground_truth", str).strip()
    image, width, height = _image(store, folder, f"{_field(item, 'image_id', str)}.png")
    regions = parse(region_text, width, height, dialect="geochat", strict=True).objects
    if len(regions) != 1:
        raise ValueError(f"'question' must hold one GeoChat box, found {len(regions)}")
    (region,) = regions
    corners = region.quad if region.kind == "quad" else region.hbb
    return {
        "image": image,
        "width": width,
        "height": height,
        "task": "identify",
        "conversations": conversation(
            REGION_QUESTION.format(region=format_region(corners, width, height)), caption
        ),
        "objects": [
            truth_object(sentence_label(caption), region.hbb, geometry.as_quad(region.quad))
        ],
        "source": _grounding_source(item, "region_captioning", line),
    }


def vqa_record(
    item: dict[str, Any], line: int, part: str, store: ImageStore, folder: Path, answers: dict
) -> Record:
    """One RSVQA question -> a ``vqa`` record answered from RSVQA's answers file."""
    question_id = _field(item, "question_id", (int, str))
    text = _field(item, "text", str).strip()
    answer = answers.get(str(question_id))
    if answer is None:
        raise ValueError(f"the answers file has no answer to question {question_id!r}")
    image, width, height = _image(store, folder, _field(item, "image", str))
    return {
        "image": image,
        "width": width,
        "height": height,
        "task": "vqa",
        "conversations": conversation(text, answer),
        "objects": [],
        "source": {
            "dataset": DATASET,
            "part": part,
            "line": line,
            "question_id": question_id,
            "image_id": item["image"],
            "question": text,
            "type": item.get("category"),
        },
    }


def classes_of(text: str) -> list[str]:
    """The classes a scene question lists after ``Classes:`` (comma-separated)."""
    if CLASSES_LABEL not in text:
        return []
    listed = text.rsplit(CLASSES_LABEL, 1)[1].split("\n")[0]
    return [name.strip().rstrip(".") for name in listed.split(",") if name.strip()]


def scene_class(question_id: str, ground_truth: Any) -> str:
    """The true class: the folder of the question id, else the ``ground_truth`` field."""
    if "/" in question_id:
        return question_id.split("/")[0]
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        raise ValueError("no class: 'question_id' has no folder and 'ground_truth' is empty")
    return ground_truth.strip()


def _squashed(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def scene_record(
    item: dict[str, Any], line: int, part: str, store: ImageStore, folder: Path, report: Report
) -> Record:
    """One scene-classification question -> a ``classify`` record.

    A scene is no object, so the record has none; its ``source`` keeps the class as written in
    ``source_category`` and, where the vocabulary has that class (AID's ``Airport``, UCMerced's
    ``storagetanks``), its canonical name in ``category`` (else None: ``DenseResidential``).
    """
    question_id = str(_field(item, "question_id", (int, str)))
    text = _field(item, "text", str).strip()
    truth = scene_class(question_id, item.get("ground_truth"))
    classes = classes_of(text)
    # The answer in the words of the listed class, when the question lists it.
    named = [name for name in classes if _squashed(name) == _squashed(truth)]
    image, width, height = _image(store, folder, _field(item, "image", str))
    if not named:
        report.warn("true class not among the listed classes (answered as written)", truth)
    return {
        "image": image,
        "width": width,
        "height": height,
        "task": "classify",
        "conversations": conversation(text, named[0] if named else truth),
        "objects": [],
        "source": {
            "dataset": DATASET,
            "part": part,
            "line": line,
            "question_id": question_id,
            "image_id": item["image"],
            "question": text,
            "type": truth,
            "category": categories.lookup(truth),
            "source_category": truth,
            "classes": classes,
            "ground_truth": item.get("ground_truth"),
        },
    }


def _resolve(src: Path, path: str | Path) -> Path:
    return Path(path) if Path(path).is_absolute() else src / path


def _selected_parts(src: Path, parts: tuple[str, ...] | None) -> list[Part]:
    if parts is not None:
        return [PARTS[name] for name in parts]
    found = [part for part in PARTS.values() if (src / part.file).is_file()]
    if not found:
        names = ", ".join(part.file for part in PARTS.values())
        raise ConversionError(src, f"no GeoChat-Bench file ({names})")
    return found


def convert(
    src: Path,
    out: Path,
    split: str | None = None,
    parts: Annotated[tuple[str, ...] | None, Flag(choices=tuple(PARTS))] = None,
    images: str = DEFAULT_FOLDERS["images"],
    lrben_images: str = DEFAULT_FOLDERS["lrben_images"],
    hrben_images: str = DEFAULT_FOLDERS["hrben_images"],
    aid_images: str = DEFAULT_FOLDERS["aid_images"],
    ucmerced_images: str = DEFAULT_FOLDERS["ucmerced_images"],
    lrben_answers: str = DEFAULT_FOLDERS["lrben_answers"],
    hrben_answers: str = DEFAULT_FOLDERS["hrben_answers"],
    skip_invalid: bool = False,
    link_images: bool = False,
) -> dict[str, Any]:
    """Converts GeoChat-Bench into records.

    Args:
        src: Folder holding the benchmark's ``*.jsonl`` files.
        out: Output folder (``out/geochat_bench[_<split>].jsonl``, images in
            ``out/images/geochat_bench/<folder>/``).
        split: Written into every record (the benchmark is one test set; nothing is filtered).
        parts: Parts to convert (names of :data:`PARTS`); None converts every part whose file
            is in ``src``.
        images: GeoChat_Instruct's image folder (referring and region captioning); this and
            the folders and files below are relative to ``src`` (or absolute).
        lrben_images: RSVQA low-resolution images.
        hrben_images: RSVQA high-resolution images.
        aid_images: AID images (class folders).
        ucmerced_images: UCMerced images (class folders).
        lrben_answers: RSVQA-LR answers file of the test questions.
        hrben_answers: RSVQA-HR answers file of the test questions.
        skip_invalid: Leave out malformed lines, missing images and unanswered questions,
            counting them in the summary's ``dropped`` by part, instead of stopping with an
            error.
        link_images: Hard-link images instead of copying them.

    Returns:
        The summary of :func:`data_builders.converters.common.write_output`.

    Raises:
        ConversionError: for a missing file or folder, or, unless ``skip_invalid``, a malformed
            line (naming the file and line), a missing image or an unanswered question.
    """
    folders = {
        "images": images,
        "lrben_images": lrben_images,
        "hrben_images": hrben_images,
        "aid_images": aid_images,
        "ucmerced_images": ucmerced_images,
        "lrben_answers": lrben_answers,
        "hrben_answers": hrben_answers,
    }
    paths = {option: _resolve(src, path) for option, path in folders.items()}
    selected = _selected_parts(src, parts)
    report = Report()
    stores: dict[str, ImageStore] = {}
    jobs = []
    for part in selected:
        folder = paths[part.images]
        if not folder.is_dir():
            option = "--" + part.images.replace("_", "-")
            raise ConversionError(folder, f"image folder of {part.file} not found (see {option})")
        if part.images not in stores:
            stores[part.images] = ImageStore(
                folder, out, f"{DATASET}/{STORE_NAMES[part.images]}", link_images
            )
        make = _maker(part, folder, stores[part.images], paths, report)
        jobs.append((part, make))

    def records() -> Iterator[Record]:
        for part, make in jobs:
            path = src / part.file
            skip = partial(report.invalid, detail=part.name) if skip_invalid else None
            for line, item in progress(read_jsonl(path, skip), part.name):
                try:
                    if not isinstance(item, dict):
                        raise ValueError("expected a JSON object")
                    record = make(item, line)
                except (ConversionError, ValueError, GrammarError, geometry.GeometryError) as error:
                    if not skip_invalid:
                        raise ConversionError(path, str(error), line=line) from error
                    report.invalid(error, part.name)
                    continue
                report.unused_fields(item, part.fields)
                record = {"id": f"{DATASET}/{part.name}/{line}", **record}
                if split:
                    record["split"] = split
                yield record

    arguments = {
        "src": src,
        "parts": [part.name for part in selected],
        **folders,
        "skip_invalid": skip_invalid,
    }
    return write_output(out, DATASET, split, records(), list(stores.values()), report, arguments)


def _maker(
    part: Part, folder: Path, store: ImageStore, paths: dict[str, Path], report: Report
) -> Callable[[dict[str, Any], int], Record]:
    """The function turning one line of ``part`` into a record (without id and split)."""
    if part.name == "referring":
        return lambda item, line: referring_record(item, line, store, folder, report)
    if part.name == "region_captioning":
        return lambda item, line: region_record(item, line, store, folder)
    if part.answers is not None:
        answers = read_answers(paths[part.answers])
        return lambda item, line: vqa_record(item, line, part.name, store, folder, answers)
    return lambda item, line: scene_record(item, line, part.name, store, folder, report)
