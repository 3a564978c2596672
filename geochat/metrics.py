"""Evaluation metrics for grounded remote-sensing answers, and the per-task scorer over records.

Pure metrics (numpy arrays and COCO RLE in, numbers out):

- Boxes and quads: predictions are matched one-to-one to targets by the Hungarian algorithm
  maximising the total IoU (:func:`match`). A sample is **correct at IoU t** when it has as
  many predictions as targets and every matched pair has IoU >= t; so an extra or a missing
  prediction makes a sample wrong, and an empty answer (``<none>``) to an empty target is
  correct. Single-target referring is the case of one target. Across samples, matched pairs
  with IoU >= t are true positives for micro precision (over all predictions), recall (over
  all targets) and F1. ``mean_iou`` averages per sample the matched IoUs summed over
  ``max(#predictions, #targets)`` (1 for an empty answer to an empty target).
- Masks: gIoU is the mean of per-sample IoUs, where an empty prediction for an empty target
  scores 1; cIoU is the total intersection over the total union (1 when every union is empty);
  ``P@t`` is the fraction of samples with IoU >= t.
- Counting: accuracy of the integer and its mean absolute error; an answer without a number
  is wrong and counts as 0 in the error.
- Short answers (VQA, scene classification): exact match after :func:`normalize_answer`
  (lower case, number words to digits, no punctuation or articles); when the reference is
  yes or no, the first word of the prediction decides, with synonyms (yeah, true, nope...).
- Captions: SQuAD-style unigram F1 of normalised words, a crude word-overlap score with no
  notion of order, synonyms or geometry; use it to compare checkpoints, not as a quality claim.

Where each task's truth comes from (:func:`score_record`): the prediction answers the first
human turn, so single-turn tasks are scored on the first gpt turn.

- ``caption`` / ``vqa`` / ``classify``: that turn's text, geometry tags removed.
- ``count``: the integer in that turn's text (``<none>`` or "no" means 0).
- ``refer`` / ``ground`` / ``grounded_caption``: the record's ``objects`` (pixel ``hbb`` or
  ``quad``); the reference answer's geometry says which (a ``<quad>`` reference is scored with
  quad IoU, anything else with hbb IoU). A ``ground`` or ``grounded_caption`` reference naming
  a different number of geometries than the record has objects gets a note.
- ``identify``: like ``refer`` when its reference holds geometry, else like ``vqa``.
- ``segment`` / ``reason_segment``: the union of the objects' masks (a box or quad object
  without a mask is rasterised) against the union of the predicted geometries (boxes and
  quads rasterised too).
- ``multi_turn``: the answer may be a list, one reply per gpt turn (each generated after the
  reference history). Each turn is scored by its reference: geometry against the geometry the
  reference text holds (the record's objects are the whole tile, not what a turn names); a
  bare number by counting; up to :data:`SHORT_ANSWER_WORDS` words by exact match; longer text
  by unigram F1.

GeoChat-Bench records (``source.dataset == "geochat_bench"``) are also scored by the
benchmark's own rules, into tables laid out like GeoChat's paper (:func:`score_bench_record`,
:func:`summarize_bench`): referring accuracy at IoU 0.5 of oriented boxes per object size,
object count and question kind; region-captioning ROUGE-1, ROUGE-L and METEOR; RSVQA accuracy
per question type after GeoChat's answer normalisation; scene-classification accuracy.

In box tasks a prediction of another kind is converted to the truth's kind: a quad or a mask
becomes its enclosing box for hbb truth, a box its own quad and a mask its minimum-area
rectangle for quad truth.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from geochat import geometry
from geochat.geometry import RLE, GeometryError
from geochat.grammar import GrammarError, parse

Answer = str | list[str]  # a reply, or for multi_turn one per gpt turn

MASK_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
SHORT_ANSWER_WORDS = 5  # multi_turn references up to this many words are scored by exact match
GEOMETRY_KINDS = ("hbb", "quad", "mask")

Family = Literal["boxes", "mask", "count", "exact", "caption"]


class TruthError(ValueError):
    """Truth that cannot be scored: an object without geometry, a count reference without number."""


# Matching


@dataclass(frozen=True)
class Matching:
    """A sample's predictions matched one-to-one to its targets.

    Attributes:
        ious: IoU of each matched pair, ``[min(num_predictions, num_targets)]``.
        num_predictions: Number of predicted geometries.
        num_targets: Number of true geometries.
        answered: False for a missing prediction, which is wrong whatever the target.
    """

    ious: np.ndarray
    num_predictions: int
    num_targets: int
    answered: bool = True

    def true_positives(self, threshold: float) -> int:
        """Number of matched pairs with IoU >= threshold."""
        return int(np.count_nonzero(self.ious >= threshold))

    def is_correct(self, threshold: float) -> bool:
        """Whether the counts agree and every matched pair reaches the threshold."""
        return (
            self.answered
            and self.num_predictions == self.num_targets
            and self.true_positives(threshold) == self.num_targets
        )

    @property
    def mean_iou(self) -> float:
        """Matched IoUs summed over ``max(#predictions, #targets)``; 1 for empty vs empty."""
        if not self.answered:
            return 0.0
        size = max(self.num_predictions, self.num_targets)
        return float(self.ious.sum() / size) if size else 1.0


def match(ious: Any) -> Matching:
    """Matches predictions (rows) to targets (columns) one-to-one, maximising the total IoU.

    Args:
        ious: IoU matrix ``[num_predictions, num_targets]``.
    """
    matrix = np.asarray(ious, dtype=np.float64)
    if matrix.ndim != 2:
        raise GeometryError(f"an IoU matrix must be 2-D, got shape {matrix.shape}")
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return Matching(
        matrix[rows, cols], num_predictions=matrix.shape[0], num_targets=matrix.shape[1]
    )


def match_hbbs(predictions: Any, targets: Any) -> Matching:
    """Matches horizontal boxes ``[N, 4]`` to ``[M, 4]`` by IoU."""
    return match(geometry.hbb_iou(predictions, targets))


def match_quads(predictions: Sequence[Any], targets: Sequence[Any]) -> Matching:
    """Matches quads (each ``(4, 2)``) by polygon IoU."""
    return match(geometry.quad_iou(predictions, targets))


def missing_matching(num_targets: int) -> Matching:
    """The matching of a sample whose prediction is missing: wrong, no true positive."""
    return Matching(np.zeros(0), num_predictions=0, num_targets=num_targets, answered=False)


def _ratio(numerator: float, denominator: float, empty: float) -> float:
    return float(numerator / denominator) if denominator else empty


def box_metrics(matchings: Sequence[Matching], threshold: float = 0.5) -> dict[str, float]:
    """Aggregates matchings: ``acc@t``, micro ``precision@t``, ``recall@t``, ``f1@t``, mean IoU.

    With no prediction at all, precision is 1 if there was also nothing to find, else 0; with
    nothing to find, recall is 1 if nothing was predicted, else 0.
    """
    true_positives = sum(m.true_positives(threshold) for m in matchings)
    predicted = sum(m.num_predictions for m in matchings)
    expected = sum(m.num_targets for m in matchings)
    nothing_either = float(predicted == expected == 0)
    precision = _ratio(true_positives, predicted, nothing_either)
    recall = _ratio(true_positives, expected, nothing_either)
    tag = f"{threshold:g}"
    return {
        f"acc@{tag}": _ratio(sum(m.is_correct(threshold) for m in matchings), len(matchings), 0.0),
        f"precision@{tag}": precision,
        f"recall@{tag}": recall,
        f"f1@{tag}": _ratio(2 * precision * recall, precision + recall, 0.0),
        "mean_iou": _ratio(sum(m.mean_iou for m in matchings), len(matchings), 0.0),
    }


# Masks


@dataclass(frozen=True)
class MaskOverlap:
    """Pixel counts of a sample's predicted and true masks (both unions of their objects).

    Attributes:
        intersection: Pixels set in both.
        union: Pixels set in either.
        answered: False for a missing prediction, whose IoU is 0 even for an empty target.
    """

    intersection: int
    union: int
    answered: bool = True

    @property
    def iou(self) -> float:
        """Intersection over union; 1 for an empty prediction of an empty target."""
        if not self.answered:
            return 0.0
        return self.intersection / self.union if self.union else 1.0


def union_mask(masks: Iterable[RLE], height: int, width: int) -> RLE:
    """Returns the union of RLE masks of size ``height x width`` (an empty mask for none)."""
    pixels = np.zeros((height, width), dtype=bool)
    for mask in masks:
        decoded = geometry.rle_to_mask(mask)
        if decoded.shape != pixels.shape:
            raise GeometryError(f"mask of size {decoded.shape}, expected {pixels.shape}")
        pixels |= decoded
    return geometry.mask_to_rle(pixels)


def mask_overlap(prediction: RLE, target: RLE) -> MaskOverlap:
    """Compares one predicted mask with one true mask of the same size."""
    return MaskOverlap(*geometry.mask_intersection_union(prediction, target))


def mask_metrics(
    overlaps: Sequence[MaskOverlap], thresholds: Sequence[float] = MASK_THRESHOLDS
) -> dict[str, float]:
    """Aggregates mask overlaps into ``giou``, ``ciou`` and ``P@t`` for each threshold."""
    ious = np.array([o.iou for o in overlaps])
    intersection = sum(o.intersection for o in overlaps if o.answered)
    union = sum(o.union for o in overlaps)
    metrics = {
        "giou": float(ious.mean()) if ious.size else 0.0,
        "ciou": _ratio(intersection, union, 1.0 if overlaps else 0.0),
    }
    for threshold in thresholds:
        metrics[f"P@{threshold:g}"] = float(np.mean(ious >= threshold)) if ious.size else 0.0
    return metrics


# Counting


def extract_count(text: str) -> int | None:
    """Returns the first integer of an answer (number words included), 0 for "no"/"none"."""
    words = normalize_answer(text).split()
    for word in words:
        if word.isdigit():
            return int(word)
    return 0 if {"no", "none", "nothing"} & set(words) else None


def count_metrics(predicted: Sequence[int | None], truth: Sequence[int]) -> dict[str, float]:
    """Counting ``accuracy``, ``mae`` and ``unparsed`` (None: no number, counted as 0)."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} truths")
    if not truth:
        return {"accuracy": 0.0, "mae": 0.0, "unparsed": 0}
    values = np.array([0 if p is None else p for p in predicted], dtype=np.float64)
    parsed = np.array([p is not None for p in predicted])
    expected = np.asarray(truth, dtype=np.float64)
    return {
        "accuracy": float(np.mean(parsed & (values == expected))),
        "mae": float(np.mean(np.abs(values - expected))),
        "unparsed": int(np.count_nonzero(~parsed)),
    }


# Text

_ARTICLES = frozenset({"a", "an", "the"})
_UNIT_WORDS = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
)
_TEN_WORDS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_UNITS = {word: value for value, word in enumerate(_UNIT_WORDS)}
_TENS = {word: 10 * value for value, word in enumerate(_TEN_WORDS, start=2)}
_YES = frozenset({"yes", "yeah", "yep", "yup", "true", "correct", "affirmative"})
_NO = frozenset({"no", "nope", "false", "incorrect", "negative"})
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")
# Punctuation, except a decimal point between digits.
_PUNCTUATION = re.compile(r"(?!(?<=\d)\.(?=\d))[^\w\s]|_")


def _number_words(words: list[str]) -> list[str]:
    """Replaces number words by digits, joining tens and units ("twenty one" -> "21")."""
    out: list[str] = []
    for word in words:
        if word in _UNITS and 0 < _UNITS[word] < 10 and out and out[-1] in _TENS_DIGITS:
            out[-1] = str(int(out[-1]) + _UNITS[word])
        elif word in _UNITS or word in _TENS:
            out.append(str(_UNITS.get(word, _TENS.get(word))))
        else:
            out.append(word)
    return out


_TENS_DIGITS = frozenset(str(value) for value in _TENS.values())


def normalize_answer(text: str) -> str:
    """Normalises a short answer: lower case, no punctuation or articles, number words to digits.

    Example: ``"The answer: Twenty-One ships."`` becomes ``"answer 21 ships"``.
    """
    text = _THOUSANDS_COMMA.sub("", text.lower())
    words = [w for w in _PUNCTUATION.sub(" ", text).split() if w not in _ARTICLES]
    return " ".join(_number_words(words))


def _yes_no(word: str) -> str:
    if word in _YES:
        return "yes"
    return "no" if word in _NO else word


def exact_match(prediction: str, reference: str) -> bool:
    """Whether two short answers agree after :func:`normalize_answer`.

    A yes/no reference (or a synonym) is matched by the prediction's first word, so that
    "Yes, there is a bridge." answers "yes".
    """
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if len(expected) == 1 and _yes_no(expected[0]) in {"yes", "no"}:
        return bool(predicted) and _yes_no(predicted[0]) == _yes_no(expected[0])
    return predicted == expected


def unigram_f1(prediction: str, reference: str) -> float:
    """SQuAD-style F1 of the normalised words shared by two texts (1 when both are empty)."""
    return _overlap_f1(normalize_answer(prediction).split(), normalize_answer(reference).split())


def _overlap_f1(predicted: Sequence[str], expected: Sequence[str]) -> float:
    """F1 of the words two token lists share (counted with multiplicity); 1 when both are empty."""
    if not predicted or not expected:
        return float(len(predicted) == len(expected))
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


# Scoring records


@dataclass(frozen=True)
class SampleScore:
    """The score of one answer (one gpt turn of one record), before aggregation.

    Attributes:
        record_id: The record's ``id``.
        task: The record's task.
        turn: Index of the gpt turn scored (0 for the first).
        family: How it is scored: ``boxes``, ``mask``, ``count``, ``exact`` or ``caption``.
        result: A :class:`Matching`, a :class:`MaskOverlap`, a ``(predicted, true)`` count
            pair, an exact-match bool or a caption F1.
        answered: False when the prediction was missing.
        problems: What tolerant parsing of the prediction reported.
        notes: Doubts about the truth (e.g. a reference that disagrees with the objects).
        category: The category of the record's objects when they share one, ``mixed`` when
            they do not, ``none`` when the record has none (:func:`record_category`).
        group: The world, scene or image the record was cut from (:func:`record_group`):
            samples of one group are not independent, so intervals resample groups.
        oriented: True when a box answer was scored against quads (rotated IoU).
    """

    record_id: str
    task: str
    turn: int
    family: Family
    result: Any
    answered: bool = True
    problems: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
    category: str = "none"
    group: str = ""
    oriented: bool = False


@dataclass(frozen=True)
class Skipped:
    """A turn that could not be scored, and why."""

    record_id: str
    turn: int
    reason: str


def record_category(record: Mapping[str, Any]) -> str:
    """The category of a record's objects: the shared one, ``mixed``, or ``none`` without any."""
    categories = {obj.get("category", "none") for obj in record.get("objects", [])}
    if not categories:
        return "none"
    return categories.pop() if len(categories) == 1 else "mixed"


def record_group(record: Mapping[str, Any]) -> str:
    """The world, scene or image a record was cut from: its source raster, else its image.

    Tiles of one synthetic world (or one scene) share their ground, layout and imagery, so a
    score's uncertainty comes from the number of worlds as much as the number of records.
    """
    source = record.get("source")
    if isinstance(source, Mapping):
        for key in ("raster", "image", "scene"):
            if isinstance(source.get(key), str):
                return source[key]
    return str(record.get("image", record.get("id", "")))


def _gpt_turns(record: Mapping[str, Any]) -> list[str]:
    return [t["value"] for t in record["conversations"] if t.get("from") == "gpt"]


def _geometric(parsed: Any) -> list[Any]:
    return [o for o in parsed.objects if o.kind in GEOMETRY_KINDS]


def _reference_kind(parsed: Any) -> str | None:
    kinds = {o.kind for o in _geometric(parsed)}
    for kind in ("quad", "mask", "hbb"):
        if kind in kinds:
            return kind
    return None


def _truth_hbb(obj: Mapping[str, Any]) -> Any:
    if obj.get("hbb") is not None:
        return obj["hbb"]
    if obj.get("quad") is not None:
        return geometry.quad_to_hbb(obj["quad"])
    return geometry.mask_to_hbb(obj["mask"]) if obj.get("mask") is not None else None


def _truth_quad(obj: Mapping[str, Any]) -> Any:
    if obj.get("quad") is not None:
        return obj["quad"]
    if obj.get("hbb") is not None:
        return geometry.hbb_to_quad(obj["hbb"])
    return geometry.mask_to_quad(obj["mask"]) if obj.get("mask") is not None else None


def _truth_mask(obj: Mapping[str, Any], height: int, width: int) -> RLE | None:
    if obj.get("mask") is not None:
        return obj["mask"]
    quad = _truth_quad(obj)
    if quad is None:
        return None
    return geometry.polygon_to_rle(geometry.quad_to_polygon(quad), height, width)


def _as_truth(geometries: list[Any], what: str) -> list[Any]:
    if any(g is None for g in geometries):
        raise TruthError(f"a true object has no {what}, box, quad or mask")
    return geometries


def _predicted_hbbs(objects: list[Any]) -> list[Any]:
    # Every parsed geometry carries its enclosing box in .hbb.
    return [o.hbb for o in objects]


def _predicted_quads(objects: list[Any]) -> list[Any]:
    return [o.quad if o.quad is not None else geometry.mask_to_quad(o.mask) for o in objects]


def _predicted_masks(objects: list[Any], height: int, width: int) -> list[RLE]:
    return [
        o.mask
        if o.mask is not None
        else geometry.polygon_to_rle(geometry.quad_to_polygon(o.quad), height, width)
        for o in objects
    ]


def _box_score(kind: str | None, objects: list[Any], truth: list[Any]) -> Matching:
    """Matches predicted objects to true geometries of ``kind`` (hbb unless quad)."""
    if kind == "quad":
        return match_quads(_predicted_quads(objects), truth)
    return match_hbbs(np.reshape(_predicted_hbbs(objects), (-1, 4)), np.reshape(truth, (-1, 4)))


def _mask_score(objects: list[Any], truth: list[RLE], height: int, width: int) -> MaskOverlap:
    predicted = union_mask(_predicted_masks(objects, height, width), height, width)
    return mask_overlap(predicted, union_mask(truth, height, width))


class _Turn:
    """One reference turn and its answer, parsed against the record's image size."""

    def __init__(self, record: Mapping[str, Any], reference: str, answer: str | None) -> None:
        self.width, self.height = record["width"], record["height"]
        # References come from datasets: strict, so that a broken one is skipped, not scored.
        self.reference = parse(reference, self.width, self.height, strict=True)
        self.answer = parse(answer or "", self.width, self.height)
        self.answered = answer is not None
        self.predicted = _geometric(self.answer) if self.answered else []


def _task_family(task: str, turn: _Turn) -> Family:
    if task in {"refer", "ground", "grounded_caption"}:
        return "boxes"
    if task in {"segment", "reason_segment"}:
        return "mask"
    if task == "identify":
        return "boxes" if _geometric(turn.reference) else "exact"
    by_task: dict[str, Family] = {"count": "count", "caption": "caption"}
    return by_task.get(task, "exact")


def _text_family(reference: Any) -> Family:
    text = reference.text
    if _geometric(reference) or any(o.kind == "none" for o in reference.objects):
        return "mask" if _reference_kind(reference) == "mask" else "boxes"
    words = normalize_answer(text).split()
    if len(words) == 1 and words[0].isdigit():
        return "count"
    return "exact" if len(words) <= SHORT_ANSWER_WORDS else "caption"


def _reference_count(turn: _Turn) -> int:
    count = extract_count(turn.reference.text)
    if count is None and any(o.kind == "none" for o in turn.reference.objects):
        return 0
    if count is None:
        raise TruthError("the reference answer holds no count")
    return count


def _predicted_count(turn: _Turn) -> int | None:
    count = extract_count(turn.answer.text)
    if count is None and any(o.kind == "none" for o in turn.answer.objects):
        return 0
    return count


def _object_truth(record: Mapping[str, Any], family: Family, kind: str | None) -> list[Any]:
    objects = record.get("objects", [])
    if family == "mask":
        masks = [_truth_mask(o, record["height"], record["width"]) for o in objects]
        return _as_truth(masks, "mask")
    if kind == "quad":
        return _as_truth([_truth_quad(o) for o in objects], "quad")
    return _as_truth([_truth_hbb(o) for o in objects], "hbb")


def _reference_truth(turn: _Turn, family: Family, kind: str | None) -> list[Any]:
    geometries = _geometric(turn.reference)
    if family == "mask":
        return _predicted_masks(geometries, turn.height, turn.width)
    return _predicted_quads(geometries) if kind == "quad" else _predicted_hbbs(geometries)


def _score_geometry(turn: _Turn, family: Family, truth: list[Any], kind: str | None) -> Any:
    # "Nothing found" must be said with <none>: text without any geometry is no answer, so
    # it cannot score as a correct empty prediction for an empty target.
    grounded = bool(turn.predicted) or any(o.kind == "none" for o in turn.answer.objects)
    if family == "mask":
        if not (turn.answered and grounded):
            target = union_mask(truth, turn.height, turn.width)
            return MaskOverlap(0, geometry.mask_area(target), answered=False)
        return _mask_score(turn.predicted, truth, turn.height, turn.width)
    if not (turn.answered and grounded):
        return missing_matching(len(truth))
    return _box_score(kind, turn.predicted, truth)


def _score_text(turn: _Turn, family: Family) -> Any:
    if family == "count":
        return (_predicted_count(turn) if turn.answered else None, _reference_count(turn))
    if family == "caption":
        return unigram_f1(turn.answer.text, turn.reference.text) if turn.answered else 0.0
    return turn.answered and exact_match(turn.answer.text, turn.reference.text)


def _truth_notes(record: Mapping[str, Any], turn: _Turn) -> list[str]:
    if record["task"] not in {"ground", "grounded_caption"}:
        return []
    named, held = len(_geometric(turn.reference)), len(record.get("objects", []))
    if named == held:
        return []
    return [f"reference names {named} geometries, the record holds {held} objects"]


def _score_turn(
    record: Mapping[str, Any], index: int, reference: str, answer: str | None
) -> SampleScore:
    turn = _Turn(record, reference, answer)
    task = record["task"]
    from_objects = task != "multi_turn"
    family = _task_family(task, turn) if from_objects else _text_family(turn.reference)
    notes, kind = [], None
    if family in {"boxes", "mask"}:
        kind = _reference_kind(turn.reference)
        if from_objects:
            truth = _object_truth(record, family, kind)
            notes = _truth_notes(record, turn)
        else:
            truth = _reference_truth(turn, family, kind)
        result = _score_geometry(turn, family, truth, kind)
    else:
        result = _score_text(turn, family)
    return SampleScore(
        record["id"],
        task,
        index,
        family,
        result,
        answered=turn.answered,
        problems=tuple(turn.answer.problems),
        notes=tuple(notes),
        category=record_category(record),
        group=record_group(record),
        oriented=family == "boxes" and kind == "quad",
    )


def score_record(
    record: Mapping[str, Any], answer: str | Sequence[str] | None
) -> tuple[list[SampleScore], list[Skipped]]:
    """Scores a record's answer against its truth (see the module docs for each task).

    Args:
        record: A valid record (:func:`geochat.records.check_record`).
        answer: The model's reply to the first human turn; for ``multi_turn`` records, a list
            of replies, one per gpt turn (a string scores the first turn only). None when the
            prediction is missing: scored as wrong.

    Returns:
        The scores of the turns scored, and the turns that could not be scored with the reason
        (a reference that breaks the grammar, truth without geometry, masks of a size other
        than the image's, a count reference without a number).
    """
    references = _gpt_turns(record)
    if record["task"] != "multi_turn" or isinstance(answer, str):
        references = references[:1]
    replies: list[str | None] = [answer] if isinstance(answer, str) else list(answer or [])
    # A list shorter than the conversation leaves its last turns unanswered.
    replies += [None] * (len(references) - len(replies))
    scores, skipped = [], []
    for index, (reference, reply) in enumerate(zip(references, replies, strict=False)):
        try:
            scores.append(_score_turn(record, index, reference, reply))
        except (TruthError, GeometryError, GrammarError) as error:
            skipped.append(Skipped(record["id"], index, str(error)))
    return scores, skipped


def _family_metrics(family: Family, results: list[Any], iou_threshold: float) -> dict[str, Any]:
    if family == "boxes":
        return box_metrics(results, iou_threshold)
    if family == "mask":
        return mask_metrics(results)
    if family == "count":
        predicted, truth = zip(*results, strict=True)
        return count_metrics(list(predicted), list(truth))
    name = "accuracy" if family == "exact" else "unigram_f1"
    return {name: float(np.mean(results))}


def _family_summary(family: Family, samples: list[SampleScore], iou_threshold: float) -> dict:
    return {
        "n": len(samples),
        "missing": sum(not s.answered for s in samples),
        "with_problems": sum(bool(s.problems) for s in samples),
        **_family_metrics(family, [s.result for s in samples], iou_threshold),
    }


def summarize(scores: Iterable[SampleScore], iou_threshold: float = 0.5) -> dict[str, Any]:
    """Aggregates sample scores per task and scoring family.

    Returns:
        ``{task: {family: {"n": ..., "missing": ..., "with_problems": ..., <metrics>}}}``, where
        ``with_problems`` counts answers whose parse reported problems.
    """
    grouped: dict[str, dict[Family, list[SampleScore]]] = defaultdict(lambda: defaultdict(list))
    for sample in scores:
        grouped[sample.task][sample.family].append(sample)
    return {
        task: {
            family: _family_summary(family, samples, iou_threshold)
            for family, samples in sorted(grouped[task].items())
        }
        for task in sorted(grouped)
    }


CATEGORY_TASKS = ("refer", "ground", "segment", "reason_segment", "count")


def summarize_by_category(
    scores: Iterable[SampleScore], iou_threshold: float = 0.5
) -> dict[str, dict[str, dict[str, Any]]]:
    """Aggregates the samples of :data:`CATEGORY_TASKS` per task and category of their truth.

    Returns:
        ``{task: {category: {"family": ..., "n": ..., <metrics>}}}``; a record whose objects
        are of several categories is summarised under ``mixed``, one without objects (a
        ``<none>`` answer) under ``none``; oriented-box answers under ``<category> (quad)``.
    """
    grouped: dict[tuple[str, str, Family], list[SampleScore]] = defaultdict(list)
    for sample in scores:
        if sample.task in CATEGORY_TASKS:
            category = f"{sample.category} (quad)" if sample.oriented else sample.category
            grouped[(sample.task, category, sample.family)].append(sample)
    summary: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (task, category, family), samples in sorted(grouped.items()):
        summary[task][category] = {
            "family": family,
            **_family_summary(family, samples, iou_threshold),
        }
    return dict(summary)


def summarize_by_turn(
    scores: Iterable[SampleScore], iou_threshold: float = 0.5
) -> dict[str, dict[str, dict[str, Any]]]:
    """Aggregates the samples of ``multi_turn`` records per gpt turn and scoring family.

    A dialogue's later answers are generated after the reference history, so comparing a
    family's score across turns (and with the single-turn task of that family) shows whether
    the model keeps its accuracy as a conversation goes on.

    Returns:
        ``{turn (1 for the first, as a string): {family: {"n": ..., <metrics>}}}``.
    """
    grouped: dict[tuple[int, Family], list[SampleScore]] = defaultdict(list)
    for sample in scores:
        if sample.task == "multi_turn":
            grouped[(sample.turn + 1, sample.family)].append(sample)
    summary: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (turn, family), samples in sorted(grouped.items()):
        summary[str(turn)][family] = _family_summary(family, samples, iou_threshold)
    return dict(summary)


# GeoChat-Bench: the benchmark's own rules (records of data_builders/converters/geochat_bench.py)

BENCH_DATASET = "geochat_bench"
METEOR_ALPHA, METEOR_BETA, METEOR_GAMMA = 0.9, 3.0, 0.5  # Banerjee & Lavie's (and nltk's) values
REFERRING_COLUMNS = (
    *("Small", "Medium", "Large", "Single-object", "Multi-object"),
    *("[refer]", "[grounding]", "Overall"),
)
VQA_TYPES = {"presence": "Presence", "comp": "Comparison", "rural_urban": "Rural/Urban"}
VQA_COLUMNS = (*VQA_TYPES.values(), "Count", "Other", "Average", "Overall")
SCENE_COLUMNS = {"ucmerced": "UCMerced", "aid": "AID"}
CAPTION_METRICS = ("ROUGE-1", "ROUGE-L", "METEOR")
BENCH_TABLES = {
    "referring": "referring",
    "region_captioning": "region captioning",
    "lrben": "LRBEN",
    "hrben": "HRBEN",
    "aid": "scene classification",
    "ucmerced": "scene classification",
}
_WORD = re.compile(r"[a-z0-9]+")
_BLANKS = re.compile(r"\s+")


def bench_answer_key(text: str) -> str:
    """GeoChat's normalisation of short answers: lower case, no white space, no full stops.

    GeoChat's scene scorer compares ``answer.replace(" ", "").lower().replace(".", "")`` with
    the class; its VQA results are scored the same way. So "Medium residential." matches
    ``MediumResidential`` and "Yes." matches "yes"; nothing else (synonyms, number words) does.
    """
    return _BLANKS.sub("", text).replace(".", "").lower()


def caption_words(text: str) -> list[str]:
    """Lower-case runs of letters and digits, as ROUGE's tokenizer splits a caption."""
    return _WORD.findall(text.lower())


def rouge_1(prediction: str, reference: str) -> float:
    """ROUGE-1 F-measure: F1 of the caption words two texts share (0 when either is empty)."""
    predicted, expected = caption_words(prediction), caption_words(reference)
    return _overlap_f1(predicted, expected) if predicted and expected else 0.0


def _lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    row = [0] * (len(second) + 1)
    for word in first:
        diagonal = 0
        for j, other in enumerate(second, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if word == other else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure: F1 of the longest common subsequence of caption words."""
    predicted, expected = caption_words(prediction), caption_words(reference)
    common = _lcs_length(predicted, expected) if predicted and expected else 0
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def _meteor_alignment(predicted: Sequence[str], expected: Sequence[str]) -> list[tuple[int, int]]:
    """Exact word matches ``(predicted index, expected index)``, one-to-one, in predicted order.

    Each predicted word takes the unused equal reference word right after the previous match
    when there is one (extending a chunk), else the first unused one.
    """
    used: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for i, word in enumerate(predicted):
        free = [j for j, other in enumerate(expected) if other == word and j not in used]
        if not free:
            continue
        follow = pairs[-1][1] + 1 if pairs else None
        j = follow if follow in free else free[0]
        used.add(j)
        pairs.append((i, j))
    return pairs


def meteor(prediction: str, reference: str) -> float:
    """METEOR of one caption against one reference, on exact word matches.

    ``Fmean = P·R / (α·P + (1 - α)·R)`` over matched unigrams, times ``1 - γ·(chunks/m)^β``
    with α = 0.9, β = 3, γ = 0.5, where a chunk is a run of matches adjacent in both texts.
    The paper's scorer (nltk's ``meteor_score``) also matches Porter stems and WordNet
    synonyms, so this exact-match METEOR is a lower bound of it: equal on captions that share
    only identical words, lower when a word matches only by stem or synonym.
    """
    predicted, expected = caption_words(prediction), caption_words(reference)
    pairs = _meteor_alignment(predicted, expected)
    if not pairs:
        return 0.0
    matches = len(pairs)
    precision, recall = matches / len(predicted), matches / len(expected)
    fmean = precision * recall / (METEOR_ALPHA * precision + (1 - METEOR_ALPHA) * recall)
    chunks = 1 + sum(
        (i1, j1) != (i0 + 1, j0 + 1) for (i0, j0), (i1, j1) in itertools.pairwise(pairs)
    )
    return fmean * (1 - METEOR_GAMMA * (chunks / matches) ** METEOR_BETA)


def referring_hits(predicted: Sequence[Any], truth: Sequence[Any], threshold: float = 0.5) -> int:
    """Objects found: the largest one-to-one set of (prediction, truth) quads with IoU >= t.

    The benchmark's accuracy is the sum of these hits over the sum of true objects; extra
    predictions cost nothing, so :func:`summarize_bench` also reports the precision. A greedy
    matching by decreasing IoU (what third-party scorers of the benchmark do) can find fewer
    pairs than this maximum when boxes overlap several truths; the two agree otherwise.
    """
    if len(predicted) == 0 or len(truth) == 0:
        return 0
    hits = geometry.quad_iou(predicted, truth) >= threshold
    return int(match(hits.astype(np.float64)).ious.sum())


@dataclass(frozen=True)
class BenchScore:
    """One GeoChat-Bench question scored by the benchmark's rule.

    Attributes:
        table: Table it belongs to (:data:`BENCH_TABLES`).
        columns: Columns of that table it counts in (e.g. ``("Small", "[refer]", "Overall")``).
        values: ``hits``, ``targets`` and ``predicted`` (referring), the caption metrics, or
            ``correct`` (1.0 or 0.0).
        answered: False when the prediction was missing (scored as wrong).
    """

    table: str
    columns: tuple[str, ...]
    values: dict[str, float]
    answered: bool = True


def _referring_columns(record: Mapping[str, Any]) -> tuple[str, ...]:
    source = record["source"]
    columns = []
    size = str(source.get("size_group") or "").capitalize()
    if size in REFERRING_COLUMNS[:3]:
        columns.append(size)
    columns.append("Single-object" if len(record.get("objects", [])) == 1 else "Multi-object")
    columns.append("[refer]" if source.get("type") == "ref" else "[grounding]")
    return (*columns, "Overall")


def _score_referring(record: Mapping[str, Any], answer: str | None, threshold: float) -> BenchScore:
    truth = _as_truth([_truth_quad(o) for o in record.get("objects", [])], "quad")
    predicted = []
    if answer is not None:
        parsed = parse(answer, record["width"], record["height"])
        predicted = _predicted_quads(_geometric(parsed))
    values = {
        "hits": float(referring_hits(predicted, truth, threshold)),
        "targets": float(len(truth)),
        "predicted": float(len(predicted)),
    }
    return BenchScore("referring", _referring_columns(record), values, answer is not None)


def _score_caption(record: Mapping[str, Any], answer: str | None) -> BenchScore:
    reference = _gpt_turns(record)[0]
    text = "" if answer is None else parse(answer, record["width"], record["height"]).text
    values = {
        "ROUGE-1": rouge_1(text, reference),
        "ROUGE-L": rouge_l(text, reference),
        "METEOR": meteor(text, reference),
    }
    return BenchScore("region captioning", ("Overall",), values, answer is not None)


def _score_short(record: Mapping[str, Any], answer: str | None, part: str) -> BenchScore:
    source = record["source"]
    columns: tuple[str, ...]
    if part in SCENE_COLUMNS:
        truth, columns = str(source.get("type")), (SCENE_COLUMNS[part],)
    else:
        truth = _gpt_turns(record)[0]
        kind = VQA_TYPES.get(str(source.get("type")))
        other = "Count" if source.get("type") == "count" else "Other"
        columns = (kind, "Average", "Overall") if kind else (other,)
    correct = answer is not None and bench_answer_key(answer) == bench_answer_key(truth)
    return BenchScore(BENCH_TABLES[part], columns, {"correct": float(correct)}, answer is not None)


def score_bench_record(
    record: Mapping[str, Any], answer: str | Sequence[str] | None, iou_threshold: float = 0.5
) -> BenchScore | None:
    """Scores a GeoChat-Bench record by the benchmark's own rule; None for any other record.

    - referring: oriented-box hits at IoU >= ``iou_threshold`` (:func:`referring_hits`) of the
      quads in the answer (boxes and masks become quads) against every true object.
    - region captioning: :func:`rouge_1`, :func:`rouge_l` and :func:`meteor` of the answer's
      text (geometry tags removed) against the caption.
    - lrben / hrben / aid / ucmerced: :func:`bench_answer_key` of the answer equals that of
      the truth (the RSVQA answer, or the scene class).

    Raises:
        TruthError: for a benchmark record of an unknown part or whose truth has no geometry.
    """
    source = record.get("source")
    if not isinstance(source, Mapping) or source.get("dataset") != BENCH_DATASET:
        return None
    part = source.get("part")
    if answer is not None and not isinstance(answer, str):
        answer = answer[0] if answer else None
    if part == "referring":
        return _score_referring(record, answer, iou_threshold)
    if part == "region_captioning":
        return _score_caption(record, answer)
    if part in BENCH_TABLES:
        return _score_short(record, answer, part)
    raise TruthError(f"unknown GeoChat-Bench part {part!r}")


def _column_metrics(table: str, scores: list[BenchScore], iou_threshold: float) -> dict[str, Any]:
    values = {key: sum(s.values[key] for s in scores) for key in scores[0].values}
    metrics: dict[str, Any] = {"n": len(scores), "missing": sum(not s.answered for s in scores)}
    if table == "referring":
        metrics[f"acc@{iou_threshold:g}"] = _ratio(values["hits"], values["targets"], 0.0)
        metrics[f"precision@{iou_threshold:g}"] = _ratio(values["hits"], values["predicted"], 0.0)
    elif table == "region captioning":
        metrics.update({name: values[name] / len(scores) for name in CAPTION_METRICS})
    else:
        metrics["accuracy"] = values["correct"] / len(scores)
    return metrics


def summarize_bench(scores: Iterable[BenchScore], iou_threshold: float = 0.5) -> dict[str, Any]:
    """GeoChat-Bench tables laid out as in GeoChat's paper: ``{table: {column: metrics}}``.

    Tables and columns, in the paper's order (columns without questions are left out):
    ``referring``: Small, Medium, Large, Single-object, Multi-object, [refer], [grounding],
    Overall, each ``acc@t`` (hits over true objects) and ``precision@t`` (hits over predicted
    quads); ``region captioning``: Overall with ROUGE-1, ROUGE-L, METEOR (means);
    ``LRBEN`` / ``HRBEN``: Presence, Comparison, Rural/Urban, Count, Average, Overall
    accuracy, where **Average** is the mean of the three types' accuracies and **Overall** the
    accuracy over their questions together (count and other questions, which GeoChat leaves
    out of its average, are in neither); ``scene classification``: UCMerced and AID accuracy.
    """
    grouped: dict[str, dict[str, list[BenchScore]]] = defaultdict(lambda: defaultdict(list))
    for sample in scores:
        for column in sample.columns:
            grouped[sample.table][column].append(sample)
    orders = {
        "referring": REFERRING_COLUMNS,
        "region captioning": ("Overall",),
        "LRBEN": VQA_COLUMNS,
        "HRBEN": VQA_COLUMNS,
        "scene classification": tuple(SCENE_COLUMNS.values()),
    }
    summary: dict[str, Any] = {}
    for table, order in orders.items():
        columns = grouped.get(table, {})
        rows = {c: _column_metrics(table, columns[c], iou_threshold) for c in order if c in columns}
        if table in ("LRBEN", "HRBEN") and "Average" in rows:
            types = [rows[c]["accuracy"] for c in VQA_TYPES.values() if c in rows]
            rows["Average"]["accuracy"] = float(np.mean(types))
        if rows:
            summary[table] = rows
    return summary


def score(
    records: Iterable[Mapping[str, Any]],
    predictions: Mapping[str, Answer],
    iou_threshold: float = 0.5,
    resamples: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores predictions against records.

    Args:
        records: Valid records (:func:`geochat.records.iter_records`).
        predictions: ``{record id: answer}`` (a string, or for ``multi_turn``
            a list with one answer per gpt turn).
        iou_threshold: IoU at which a box or quad counts as found.
        resamples: Bootstrap draws over worlds for the ``intervals``; 0 for none.
        seed: Seed of the bootstrap draws.

    Returns:
        A JSON-ready report: ``iou_threshold``, the ``records`` and ``predictions`` counts,
        ``missing_predictions`` and ``unknown_predictions`` (ids), ``skipped`` turns and
        ``notes`` (each with ``id``, ``turn`` and a reason), and ``tasks``:
        ``{task: {family: {"n", "missing", "with_problems", <metrics>}}}`` from
        :func:`geochat.metrics.summarize`, ``by_category`` from
        :func:`geochat.metrics.summarize_by_category`, ``by_turn`` (``multi_turn`` records per
        turn, :func:`geochat.metrics.summarize_by_turn`), ``groups`` (worlds or images scored)
        and, with ``resamples``, ``intervals`` (``{task: {family: {metric: [low, high]}}}``);
        for GeoChat-Bench records also ``geochat_bench``, the benchmark's tables
        (:func:`geochat.metrics.summarize_bench`).
    """
    # Imported here: geochat.evaluation builds on this module.
    from geochat.evaluation import bootstrap_intervals

    samples, skipped, missing, record_ids, bench = [], [], [], [], []
    for record in records:
        record_ids.append(record["id"])
        answer = predictions.get(record["id"])
        if answer is None:
            missing.append(record["id"])
        record_scores, record_skipped = score_record(record, answer)
        samples += record_scores
        skipped += record_skipped
        try:
            bench_score = score_bench_record(record, answer, iou_threshold)
        except (TruthError, GeometryError) as error:
            skipped.append(Skipped(record["id"], 0, f"{BENCH_DATASET}: {error}"))
            continue
        if bench_score is not None:
            bench.append(bench_score)
    extra = {BENCH_DATASET: summarize_bench(bench, iou_threshold)} if bench else {}
    return {
        "iou_threshold": iou_threshold,
        "records": len(record_ids),
        "predictions": len(predictions),
        "missing_predictions": missing,
        "unknown_predictions": sorted(set(predictions) - set(record_ids)),
        "skipped": [{"id": s.record_id, "turn": s.turn, "reason": s.reason} for s in skipped],
        "notes": [
            {"id": s.record_id, "turn": s.turn, "note": note} for s in samples for note in s.notes
        ],
        "groups": len({s.group for s in samples}),
        "tasks": summarize(samples, iou_threshold),
        "by_category": summarize_by_category(samples, iou_threshold),
        "by_turn": summarize_by_turn(samples, iou_threshold),
        "intervals": (
            bootstrap_intervals(samples, iou_threshold, resamples, seed) if resamples else {}
        ),
        **extra,
    }
