"""Scores that cannot flatter: sampling across worlds, bootstrap intervals, trivial baselines.

A score on a few thousand records of a synthetic build is a claim about the worlds they were
cut from, not only about the records: tiles of one world share its ground, layout and
imagery. So

- :func:`sample_records` takes ``limit`` records spread evenly over the worlds (or images) of a
  build, with a fixed seed, instead of the first ``limit`` (which read only a few worlds);
- :func:`bootstrap_intervals` resamples whole worlds (``SampleScore.group``) to give each
  metric a percentile interval;
- :func:`fit_trivial_answers` learns, from a training build, the best *constant* answer of
  each question template (the same answer whatever the image): a model that does not beat it
  has learned the question, not the image. It sits beside the blank-image score, which asks
  the same of the model itself.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geochat.grammar import parse
from geochat.metrics import SampleScore, record_group, score_record, summarize

CONFIDENCE = 0.95
RESAMPLES = 500
CANDIDATES = 8  # commonest answers of a template tried as its constant answer
FIT_RECORDS = 100  # training records of a template each candidate is scored on
MIN_TEMPLATE_RECORDS = 5  # rarer templates take their task's constant answer

_NUMBER = re.compile(r"\d+")


def sample_records(records: Sequence[Any], limit: int | None, seed: int = 0) -> list[Any]:
    """Takes ``limit`` records spread evenly over the records' groups (worlds or images).

    Groups are visited in a seeded random order, round-robin, each yielding its records in a
    seeded random order, so every group contributes ``limit / groups`` records (give or take
    one) while it has them. The result keeps the records' original order.

    Args:
        records: The records (any sequence of record mappings).
        limit: How many to take; None (or at least ``len(records)``) takes all.
        seed: The seed of both random orders.
    """
    if limit is None or limit >= len(records):
        return list(records)
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_group[record_group(record)].append(index)
    queues = [by_group[key] for key in sorted(by_group)]
    rng.shuffle(queues)
    for queue in queues:
        rng.shuffle(queue)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit:
        chosen += [queue[depth] for queue in queues if depth < len(queue)][: limit - len(chosen)]
        depth += 1
    return [records[index] for index in sorted(chosen)]


def _metric_values(summary: Mapping[str, Any]) -> dict[tuple[str, str, str], float]:
    return {
        (task, family, name): value
        for task, families in summary.items()
        for family, metrics in families.items()
        for name, value in metrics.items()
        if isinstance(value, float)
    }


def bootstrap_intervals(
    samples: Sequence[SampleScore],
    iou_threshold: float = 0.5,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Percentile intervals of every metric, resampling groups (worlds) with replacement.

    Args:
        samples: The sample scores of one run (:func:`geochat.metrics.score_record`).
        iou_threshold: As for :func:`geochat.metrics.summarize`.
        resamples: Bootstrap draws.
        seed: Seed of the draws.
        confidence: Coverage of the interval (0.95: the 2.5th and 97.5th percentiles).

    Returns:
        ``{task: {family: {metric: [low, high]}}}`` for the float metrics of
        :func:`geochat.metrics.summarize`; a single group gives a zero-width interval.
    """
    by_group: dict[str, list[SampleScore]] = defaultdict(list)
    for sample in samples:
        by_group[sample.group].append(sample)
    groups = [by_group[key] for key in sorted(by_group)]
    if not groups:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for _ in range(resamples):
        picked = rng.integers(0, len(groups), size=len(groups))
        resampled = [sample for index in picked for sample in groups[index]]
        for key, value in _metric_values(summarize(resampled, iou_threshold)).items():
            draws[key].append(value)
    tail = 100 * (1 - confidence) / 2
    intervals: dict[str, dict[str, dict[str, list[float]]]] = {}
    for (task, family, name), values in draws.items():
        low, high = np.percentile(values, [tail, 100 - tail])
        intervals.setdefault(task, {}).setdefault(family, {})[name] = [float(low), float(high)]
    return intervals


def question_template(record: Mapping[str, Any]) -> str:
    """The task and first human turn as a template: no image tag or geometry, numbers as ``#``.

    Two records share a template when they ask the same question of different images, so a
    constant answer per template is the best a model can do without looking. A region in the
    question ("What is in <box>...</box>?") is dropped: its place belongs to the image.
    """
    question = next((t["value"] for t in record["conversations"] if t.get("from") == "human"), "")
    # Tolerant parsing: the text without geometry tags, whatever the question holds.
    text = parse(question.replace("<image>", ""), 1000, 1000).text
    return f"{record['task']}|{_NUMBER.sub('#', ' '.join(text.lower().split()))}"


@dataclass
class TrivialAnswers:
    """The best constant answer per question template, and per task for unseen templates.

    Attributes:
        by_template: ``{template: answer}`` (:func:`question_template`).
        by_task: ``{task: answer}``, for templates the training build never asked.
        fitted_on: Training records used.
    """

    by_template: dict[str, str] = field(default_factory=dict)
    by_task: dict[str, str] = field(default_factory=dict)
    fitted_on: int = 0

    def answer(self, record: Mapping[str, Any]) -> str | None:
        """The constant answer for a record's question (None when its task was never seen)."""
        template = question_template(record)
        return self.by_template.get(template, self.by_task.get(record["task"]))

    def predictions(self, records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
        """``{record id: constant answer}`` in the form ``geochat eval`` scores."""
        answers = {}
        for record in records:
            answer = self.answer(record)
            if answer is not None:
                answers[record["id"]] = answer
        return answers

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "by_template": self.by_template,
            "by_task": self.by_task,
            "fitted_on": self.fitted_on,
        }


def _first_answer(record: Mapping[str, Any]) -> str | None:
    return next((t["value"] for t in record["conversations"] if t.get("from") == "gpt"), None)


def _primary(summary: Mapping[str, Any]) -> float:
    """One number per candidate: the mean of the first metric of each scoring family."""
    values = []
    for families in summary.values():
        for metrics in families.values():
            first = next((v for k, v in metrics.items() if isinstance(v, float)), None)
            if first is not None:
                values.append(first)
    return float(np.mean(values)) if values else 0.0


def _best_constant(
    records: Sequence[Mapping[str, Any]], iou_threshold: float, rng: random.Random
) -> str | None:
    """The commonest answers of ``records``, each tried on all of them; returns the best."""
    candidates = Counter(a for a in map(_first_answer, records) if a is not None)
    if not candidates:
        return None
    fit = list(records) if len(records) <= FIT_RECORDS else rng.sample(list(records), FIT_RECORDS)
    best, best_score = None, -1.0
    for answer, _ in candidates.most_common(CANDIDATES):
        samples = [s for record in fit for s in score_record(record, answer)[0]]
        value = _primary(summarize(samples, iou_threshold))
        if value > best_score:
            best, best_score = answer, value
    return best


def fit_trivial_answers(
    records: Iterable[Mapping[str, Any]], iou_threshold: float = 0.5, seed: int = 0
) -> TrivialAnswers:
    """Learns the best constant answer of each question template from training records.

    For each template asked at least :data:`MIN_TEMPLATE_RECORDS` times, the
    :data:`CANDIDATES` commonest reference answers are scored as the
    answer to every one of its training records (at most :data:`FIT_RECORDS`, drawn with
    ``seed``), and the best is kept: "1" for "How many cars are there?", "No" for a presence
    question whose answer is mostly no, the commonest box for "Where is the water?". The same
    over a task's records gives the answer for templates the training build never asked.
    ``multi_turn`` records are fitted on their first turn.

    Args:
        records: Training records (never the test build).
        iou_threshold: As for :func:`geochat.metrics.summarize`.
        seed: Seed of the subsampling.
    """
    rng = random.Random(seed)
    by_template: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    by_task: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    fitted = 0
    for record in records:
        by_template[question_template(record)].append(record)
        by_task[record["task"]].append(record)
        fitted += 1
    trivial = TrivialAnswers(fitted_on=fitted)
    for template in sorted(by_template):
        if len(by_template[template]) < MIN_TEMPLATE_RECORDS:
            continue
        answer = _best_constant(by_template[template], iou_threshold, rng)
        if answer is not None:
            trivial.by_template[template] = answer
    for task in sorted(by_task):
        answer = _best_constant(by_task[task], iou_threshold, rng)
        if answer is not None:
            trivial.by_task[task] = answer
    return trivial
