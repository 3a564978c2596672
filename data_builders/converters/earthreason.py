"""EarthReason: geospatial pixel reasoning (implicit questions, mask answers) -> ``reason_segment``.

Format (Li et al., "SegEarth-R1: Geospatial Pixel Reasoning via Large Language Model",
arXiv 2504.09644; data on Hugging Face, ``earth-insights/EarthReason``; layout as read by
github.com/earth-insights/SegEarth-R1, ``segearth_r1/train/train_dataset.py`` and
``eval_and_test/eval_dataset/RS_val_dataset.py``)::

    train/images/<stem>.jpg|png    the image
    train/labels/<stem>.png        the target mask: every non-zero pixel is target
    train/QAs/<stem>.json          {"questions": ["...", ...], "answer": ["...", ...]}
    val/...  test/...

``questions`` are implicit queries ("where could a plane land?"); ``answer`` holds textual
answers explaining the target. An empty ``answer`` list marks a sample without target (the
official loaders then answer "There is no target object in the image.").

Records: one ``reason_segment`` record per question (or the first only, ``--questions first``).
The answer is the explanation (the answer with the same index when there are as many answers
as questions, else the first) followed by the text-mask ``<seg>N|...</seg>``; the truth object
carries the full-resolution mask. A sample without target is answered ``<none>`` and has no
objects. Files are matched by stem; an image without its label or QA file is an error.

Added in geochat 0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from geochat.cliargs import Flag
from geochat.data_builders.converters.common import (
    IMAGE_SUFFIXES,
    ConversionError,
    ImageStore,
    Report,
    conversation,
    mask_truth,
    progress,
    read_binary_mask,
    read_json,
    write_output,
)
from geochat.grammar import DEFAULT_GRID, GRID_SIDES, NONE, format_mask
from geochat.records import Record

DATASET = "earthreason"
SPLITS = ("train", "val", "test")
QUESTION_CHOICES = ("all", "first")
PROMPT = "{question} Explain briefly and give the mask of the area."


@dataclass(frozen=True)
class Sample:
    """One EarthReason sample: its three files and its questions and answers."""

    stem: str
    image: Path
    label: Path
    questions: list[str]
    answers: list[str]


def read_qa(path: Path) -> tuple[list[str], list[str]]:
    """Reads a QA file: at least one question, and answers (none for a sample without target).

    Raises:
        ConversionError: for invalid JSON or a missing or malformed key.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConversionError(path, "expected a JSON object with 'questions' and 'answer'")
    questions, answers = data.get("questions"), data.get("answer")
    if not _strings(questions) or not questions or not all(q.strip() for q in questions):
        raise ConversionError(path, "expected a non-empty list of questions", key="questions")
    if not _strings(answers):
        raise ConversionError(path, "expected a list of answer strings", key="answer")
    return [" ".join(q.split()) for q in questions], [" ".join(a.split()) for a in answers]


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise ConversionError(folder, "folder not found")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def read_samples(split_dir: Path) -> list[Sample]:
    """Matches the images, labels and QA files of one split folder by stem.

    Raises:
        ConversionError: for a missing folder, a file without its partners or a bad QA file.
    """
    images = _by_stem(split_dir / "images", IMAGE_SUFFIXES)
    labels = _by_stem(split_dir / "labels", (".png",))
    qas = _by_stem(split_dir / "QAs", (".json",))
    unmatched = sorted(
        (images.keys() | labels.keys() | qas.keys()) - (images.keys() & labels.keys() & qas.keys())
    )
    if unmatched:
        raise ConversionError(
            split_dir,
            f"{len(unmatched)} stems lack an image, label or QA file, e.g. {unmatched[:5]}",
        )
    return [
        Sample(stem, images[stem], labels[stem], *read_qa(qas[stem])) for stem in sorted(images)
    ]


def _answer_text(sample: Sample, index: int) -> str:
    if len(sample.answers) == len(sample.questions):
        return sample.answers[index]
    return sample.answers[0]


def _sample_records(
    sample: Sample,
    split: str,
    image: tuple[str, int, int],
    options: dict[str, Any],
    report: Report,
) -> Iterator[Record]:
    path, width, height = image
    mask = read_binary_mask(sample.label, width, height)
    has_target = bool(sample.answers)
    if has_target != bool(mask.any()):
        report.drop("answers and mask disagree on whether there is a target", split)
        return
    objects, mask_text = [], NONE
    if has_target:
        objects = [mask_truth("object", mask, object_id=f"{split}/{sample.stem}")]
        mask_text = format_mask(mask, options["grid"])
    questions = sample.questions[:1] if options["questions"] == "first" else sample.questions
    for index, question in enumerate(questions):
        explanation = _answer_text(sample, index) if has_target else ""
        answer = f"{explanation}\n{mask_text}" if explanation else mask_text
        yield {
            "id": f"{DATASET}/{split}/{sample.stem}/{index}",
            "image": path,
            "width": width,
            "height": height,
            "task": "reason_segment",
            "conversations": conversation(PROMPT.format(question=question), answer),
            "objects": objects,
            "source": {"dataset": DATASET, "sample": sample.stem, "question": index},
            "split": split,
        }


def convert(
    src: Path,
    out: Path,
    split: str | None = None,
    questions: Annotated[str, Flag(choices=QUESTION_CHOICES)] = "all",
    grid: Annotated[int, Flag(choices=GRID_SIDES)] = DEFAULT_GRID,
    link_images: bool = False,
) -> dict[str, Any]:
    """Converts EarthReason into ``reason_segment`` records.

    Args:
        src: EarthReason root holding ``train/``, ``val/`` and ``test/``.
        out: Output folder (``out/earthreason[_<split>].jsonl``, ``out/images/earthreason/``).
        split: One split folder, or None for every split folder present.
        questions: ``all`` (one record per question) or ``first``.
        grid: Side of the text-mask grid in the answers (16 or 32).
        link_images: Hard-link images instead of copying them.

    Returns:
        The summary of :func:`data_builders.converters.common.write_output`.

    Raises:
        ConversionError: for missing folders or files and malformed QA files or masks.
    """
    if questions not in QUESTION_CHOICES or grid not in GRID_SIDES:
        raise ValueError(f"questions must be one of {QUESTION_CHOICES}, grid one of {GRID_SIDES}")
    splits = [split] if split else [name for name in SPLITS if (src / name).is_dir()]
    if not splits:
        raise ConversionError(src, f"no split folder among {SPLITS}")
    samples = {name: read_samples(src / name) for name in splits}
    store = ImageStore(src, out, DATASET, link=link_images)
    report = Report()
    options = {"questions": questions, "grid": grid}

    def records() -> Iterator[Record]:
        for name in splits:
            for sample in progress(samples[name], f"{DATASET} {name}"):
                image = store.add(sample.image)
                yield from _sample_records(sample, name, image, options, report)

    arguments = {"src": src, "questions": questions, "grid": grid}
    return write_output(out, DATASET, split, records(), store, report, arguments)
