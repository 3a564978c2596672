"""``geochat eval --scenes``: whole-scene answers on synthetic worlds, scored against OSM truth.

Usage::

    geochat eval --scenes WORLDS_DIR --model M [--categories car,building] [--limit N]
                 [--seed S] [--trivial-from TRAIN_BUILD] [--out-dir DIR] [--bootstrap 500]

``WORLDS_DIR`` holds worlds as ``geochat build synthetic --out WORLDS_DIR`` writes them: a
folder per world with ``world.tif`` and ``truth.geojson`` (the drawn footprint of every OSM
object, in the raster's CRS, with the ``category`` and ``min_pixels`` of the tag table's rule
for its tags, and a ``categories`` member saying each category's plural, whether it is
countable and whether it is segmented). The truth is read from that file alone, never from
the data builders: each footprint is moved to scene pixels and clipped to the scene;
footprints smaller than their ``min_pixels`` are dropped, as the builders drop them from tiles.

Questions, per category present in a world (and a seeded share of absent ones, whose answer
is nothing):

- **find all** (countable categories): "Where are all the cars? Answer with oriented bounding
  boxes." (quads for vehicles and ships, scored by rotated IoU) or "Where are all the
  buildings?" (boxes): F1 at ``--iou`` over the scene, one-to-one matching;
- **count** (countable categories): the scene path counts the merged objects of its find-all
  answer (counts come after the merge); the one-view path is asked "How many cars are
  there?": MAE and exact accuracy;
- **segment** (categories the truth marks segmented: land cover and buildings): "Segment the
  water.": IoU of the union mask.

Each question runs on these paths: ``scene`` (:func:`geochat.engine.scene.run_scene` at the
model's native input), ``tiles`` (find-all only, from the same scene run, before the merge:
each answered tile's boxes or quads against that tile's truth, i.e. every true object's part
visible in the tile's window, kept when it covers at least its ``min_pixels`` tile pixels as
the builders keep tile objects, its box the part's bounds and its quad the part's
minimum-area rectangle; true positives, predictions and truths are summed over the tiles of a
world, so ``scene`` beside ``tiles`` says what the merge gains or loses against the model's
tile-level F1), ``one_view`` (the whole world given to the model once, as ``geochat chat``
does), ``blank`` (a grey scene of the same size and georeference through the scene path: the
image-ablation baseline) and ``trivial`` (the constant answer: nothing found for find-all and
segment; for counts the training build's commonest count per category with
``--trivial-from``, else the median true count over the evaluated worlds, and the report says
which). Intervals are percentile bootstraps over worlds. The run writes ``metrics.json`` and
``report.md`` into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rich.console import Console
from shapely.geometry import shape
from tqdm import tqdm

from geochat import prompts
from geochat.engine import Assistant, Reply
from geochat.engine.scene import SceneError, SceneObject, Tile, run_scene
from geochat.evaluation import bootstrap_intervals, sample_records
from geochat.fileio import atomic_write_text
from geochat.geometry import GeometryError, min_area_rect, rasterize, rle_to_mask
from geochat.georef import Georef, GeorefError
from geochat.grammar.core import GroundedObject
from geochat.imagery import ImageError
from geochat.metrics import (
    Family,
    MaskOverlap,
    Matching,
    SampleScore,
    extract_count,
    match_hbbs,
    match_quads,
    record_category,
    summarize,
)
from geochat.predict import BLANK_GREY
from geochat.records import RecordError, find_shards, iter_records

QUAD_CATEGORIES = frozenset({"car", "truck", "ship"})  # oriented objects: asked for quads
ABSENT_SHARE = 0.25  # absent categories asked per present one, answered by nothing found
PATHS = ("scene", "tiles", "one_view", "blank", "trivial")
INTERVAL_PATHS = ("scene", "tiles", "one_view")  # paths whose overall rows show an interval
WORLD_IMAGE, WORLD_TRUTH = "world.tif", "truth.geojson"
TABLE_WIDTH = 150


class SceneEvalError(ValueError):
    """Worlds that cannot be evaluated: none found, no truth, a truth that does not parse."""


@dataclass(frozen=True)
class TruthObject:
    """One true object in scene pixels.

    Attributes:
        footprint: Its drawn footprint (a shapely polygon), clipped to the scene.
        min_pixels: The fewest pixels of it an image must show to hold it (the tag table's).
    """

    footprint: Any
    min_pixels: int


@dataclass
class WorldTruth:
    """One world and its truth in scene pixels.

    Attributes:
        name: The world's folder name (its bootstrap group).
        image: Its GeoTIFF.
        width: Scene width in pixels.
        height: Scene height in pixels.
        objects: Category -> objects that show at least their ``min_pixels`` in the scene.
        vocabulary: What the truth says about its categories.
    """

    name: str
    image: Path
    width: int
    height: int
    objects: dict[str, list[TruthObject]]
    vocabulary: Vocabulary


@dataclass(frozen=True)
class Question:
    """One question about one world.

    Attributes:
        world: Index of the world in the evaluated list.
        category: The category asked about.
        task: ``find_all_box``, ``find_all_quad`` or ``segment`` (counts ride on find-all).
        text: The question.
        count_text: The one-view count question of a find-all, else None.
    """

    world: int
    category: str
    task: str
    text: str
    count_text: str | None = None


@dataclass(frozen=True)
class Vocabulary:
    """What a world's truth says about its categories: plural, countable, segmented.

    Attributes:
        plurals: Category -> plural, in the tag table's order.
        countable: Categories asked to find all (and count).
        segmented: Categories asked for a mask.
    """

    plurals: dict[str, str]
    countable: frozenset[str]
    segmented: frozenset[str]

    @classmethod
    def from_truth(cls, categories: Mapping[str, Mapping[str, Any]]) -> Vocabulary:
        """From a truth's ``categories`` member (``{category: {plural, countable, segmented}}``).

        Raises:
            KeyError, TypeError: For a member that is not of that shape.
        """
        return cls(
            {category: str(facts["plural"]) for category, facts in categories.items()},
            frozenset(category for category, facts in categories.items() if facts["countable"]),
            frozenset(category for category, facts in categories.items() if facts["segmented"]),
        )


def shared_vocabulary(worlds: Sequence[WorldTruth]) -> Vocabulary:
    """The vocabulary every world's truth states.

    Raises:
        SceneEvalError: When two worlds state different ones (built with other tag tables).
    """
    first = worlds[0]
    for world in worlds[1:]:
        if world.vocabulary != first.vocabulary:
            raise SceneEvalError(
                f"worlds {first.name} and {world.name} name different categories (built with "
                "different tag tables): evaluate them separately"
            )
    return first.vocabulary


def find_worlds(root: Path) -> list[Path]:
    """The worlds' GeoTIFFs under ``root``, sorted.

    Raises:
        SceneEvalError: When ``root`` holds none.
    """
    if not root.is_dir():
        raise SceneEvalError(f"{root} is not a folder of worlds (geochat build synthetic --out)")
    found = sorted(root.rglob(WORLD_IMAGE))
    if not found:
        raise SceneEvalError(
            f"no {WORLD_IMAGE} under {root}: make worlds with geochat build synthetic --out {root}"
        )
    return found


def read_truth(image: Path) -> WorldTruth:
    """Reads a world's truth beside its GeoTIFF, in scene pixels, by category.

    Raises:
        SceneEvalError: For a missing or malformed ``truth.geojson``, or one written before
            truths named their categories.
    """
    path = image.with_name(WORLD_TRUTH)
    if not path.is_file():
        raise SceneEvalError(f"{image}: no {WORLD_TRUTH} beside it, so no truth to score against")
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SceneEvalError(f"{path}: not a synthetic world's truth ({error})") from error
    if isinstance(document, dict) and "world" in document and "categories" not in document:
        raise SceneEvalError(
            f"{path}: built by an older geochat, whose truth names no categories; rebuild the "
            "worlds with geochat build synthetic"
        )
    try:
        vocabulary = Vocabulary.from_truth(document["categories"])
        world = document["world"]
        georef = Georef(world["crs"], tuple(world["transform"]))
        width, height = int(world["width"]), int(world["height"])
        frame = shapely.box(0, 0, width, height)
        objects: dict[str, list[TruthObject]] = defaultdict(list)
        for feature in document["features"]:
            properties = feature["properties"]
            category = properties.get("category")
            if category is None:  # no rule of the tag table takes its tags
                continue
            if category not in vocabulary.plurals:
                raise ValueError(f"feature {feature.get('id')}: unknown category {category!r}")
            pixels = shapely.transform(shape(feature["geometry"]), georef.crs_to_pixel)
            pixels = pixels.intersection(frame)
            if pixels.area >= properties["min_pixels"]:
                objects[category].append(TruthObject(pixels, int(properties["min_pixels"])))
    except (ValueError, KeyError, TypeError, AttributeError, GeorefError) as error:
        raise SceneEvalError(f"{path}: not a synthetic world's truth ({error})") from error
    return WorldTruth(image.parent.name, image, width, height, dict(objects), vocabulary)


def plan_questions(
    worlds: Sequence[WorldTruth],
    vocabulary: Vocabulary,
    categories: Sequence[str] | None,
    limit: int | None,
    seed: int,
) -> list[Question]:
    """The questions of every world: present categories, plus a seeded share of absent ones.

    ``limit`` takes that many questions spread evenly over the worlds (seeded).
    """
    rng = random.Random(seed)
    asked = [c for c in vocabulary.plurals if categories is None or c in categories]
    questions = []
    for index, world in enumerate(worlds):
        present = [c for c in asked if world.objects.get(c)]
        absent = [c for c in asked if not world.objects.get(c)]
        share = min(len(absent), round(ABSENT_SHARE * len(present)))
        chosen = set(present) | set(rng.sample(absent, share))
        for category in (c for c in asked if c in chosen):
            plural = vocabulary.plurals[category]
            if category in vocabulary.countable:
                form = "quad" if category in QUAD_CATEGORIES else "box"
                questions.append(
                    Question(
                        index,
                        category,
                        f"find_all_{form}",
                        prompts.find_all(plural, form),
                        prompts.count(plural),
                    )
                )
            if category in vocabulary.segmented:
                phrase = plural if category in vocabulary.countable else category
                questions.append(
                    Question(index, category, "segment", prompts.segment(f"the {phrase}"))
                )
    rows = [{"image": str(q.world), "index": i} for i, q in enumerate(questions)]
    return [questions[row["index"]] for row in sample_records(rows, limit, seed)]


# ---------------------------------------------------------------------------------------------
# Answers, in scene pixels


@dataclass
class Answer:
    """One path's answer to one question: geometry in scene pixels and, for find-all, a count."""

    hbbs: list[list[float]]
    quads: list[np.ndarray]
    masks: list[Any]  # shapely polygons, or boolean arrays at the scene's size
    count: int | None
    problems: tuple[str, ...] = ()


NOTHING = Answer([], [], [], 0)


def scene_answer(objects: Sequence[SceneObject], problems: Sequence[str]) -> Answer:
    """A scene run's merged objects as an answer (its count: the merged boxes and quads)."""
    located = [o for o in objects if o.kind in ("hbb", "quad") and o.quad is not None]
    return Answer(
        [o.hbb for o in located],
        [np.asarray(o.quad) for o in located],
        [o.geometry for o in objects if o.kind == "mask"],
        len(located),
        tuple(problems),
    )


def view_answer(objects: Sequence[GroundedObject], problems: Sequence[str]) -> Answer:
    """A one-view reply's geometry (already in the scene's pixels) as an answer."""
    located = [o for o in objects if o.kind in ("hbb", "quad") and o.quad is not None]
    masks = [rle_to_mask(o.mask) for o in objects if o.kind == "mask" and o.mask is not None]
    return Answer(
        [list(o.hbb) for o in located if o.hbb is not None],
        [np.asarray(o.quad) for o in located],
        masks,
        None,
        tuple(problems),
    )


def _mask_pixels(parts: Sequence[Any], height: int, width: int) -> np.ndarray:
    """The union of masks and polygons as one boolean ``[height, width]`` scene mask."""
    pixels = np.zeros((height, width), dtype=bool)
    polygons = [part for part in parts if not isinstance(part, np.ndarray)]
    # One rasterisation of their union: a scene has hundreds of polygons and millions of pixels.
    union = shapely.union_all(polygons) if polygons else None
    if union is not None and not union.is_empty:
        pixels |= rasterize(union, height, width)
    for part in parts:
        if isinstance(part, np.ndarray):
            if part.shape != pixels.shape:
                raise GeometryError(f"a mask of {part.shape} for a {height}x{width} scene")
            pixels |= part
    return pixels


def match_answer(task: str, answer: Answer, truth: Sequence[Any]) -> Matching:
    """A find-all answer matched one-to-one to true footprints (shapely, scene pixels).

    Boxes are matched to the footprints' bounds; quads (``find_all_quad``), by rotated IoU, to
    their minimum-area rectangles.
    """
    if task == "find_all_quad":
        return match_quads(answer.quads, [min_area_rect(t) for t in truth])
    expected = np.array([t.bounds for t in truth], dtype=float).reshape(-1, 4)
    return match_hbbs(np.array(answer.hbbs, dtype=float).reshape(-1, 4), expected)


def _sample(
    question: Question,
    world: WorldTruth,
    task: str,
    family: Family,
    result: Any,
    problems: Sequence[str],
) -> SampleScore:
    """One scored sample of a question, grouped by its world for the bootstrap."""
    record_id = f"{world.name}|{question.category}|{question.task}"
    return SampleScore(
        record_id, task, 0, family, result, True, tuple(problems), (), question.category, world.name
    )


def score_answer(
    question: Question, answer: Answer, world: WorldTruth, count: int | None
) -> list[SampleScore]:
    """The samples of one answer: find-all boxes or quads and the count, or the mask."""
    truth = [t.footprint for t in world.objects.get(question.category, [])]
    if question.task == "segment":
        predicted = _mask_pixels(answer.masks, world.height, world.width)
        expected = _mask_pixels(truth, world.height, world.width)
        overlap = MaskOverlap(int((predicted & expected).sum()), int((predicted | expected).sum()))
        return [_sample(question, world, "segment", "mask", overlap, answer.problems)]
    matching = match_answer(question.task, answer, truth)
    return [
        _sample(question, world, question.task, "boxes", matching, answer.problems),
        _sample(question, world, "count", "count", (count, len(truth)), answer.problems),
    ]


class TileScorer:
    """The ``tiles`` path of one find-all question, fed by :func:`run_scene`'s ``on_tile``.

    Each answered tile's boxes or quads, moved to scene pixels, are matched to the truth that
    tile shows (see the module docs); the tiles' matchings are pooled into one per question.
    """

    def __init__(self, question: Question, world: WorldTruth) -> None:
        self.question = question
        self.world = world
        self.truth = world.objects.get(question.category, [])
        # Only objects that touch a window can show in it: an index finds them per tile.
        self.tree = shapely.STRtree([t.footprint for t in self.truth])
        self.matchings: list[Matching] = []

    def __call__(self, tile: Tile, reply: Reply) -> None:
        """Scores one answered tile (the ``on_tile`` hook)."""
        # As the scene path takes a tile's geometry: its boxes and quads after any refinement.
        quads = [
            tile.points_to_scene(np.asarray(o.quad, dtype=float))  # [4, 2] scene pixels
            for o in reply.refined_objects()
            if o.kind in ("hbb", "quad") and o.quad is not None
        ]
        boxes = [[*q.min(axis=0).tolist(), *q.max(axis=0).tolist()] for q in quads]
        answer = Answer(boxes, quads, [], None)
        self.matchings.append(match_answer(self.question.task, answer, self.visible(tile)))

    def visible(self, tile: Tile) -> list[Any]:
        """Each true object's part in the tile's window that shows its ``min_pixels``."""
        col, row, width, height = tile.window
        window = shapely.box(col, row, col + width, row + height)
        tile_pixels = tile.size[0] * tile.size[1] / (width * height)  # per scene pixel
        parts = []
        for index in self.tree.query(window, predicate="intersects"):
            obj = self.truth[index]
            part = obj.footprint.intersection(window)
            if not part.is_empty and part.area * tile_pixels >= obj.min_pixels:
                parts.append(part)
        return parts

    def sample(self, problems: Sequence[str]) -> SampleScore:
        """The tiles scored so far as one sample.

        Their matched pairs go together and their predictions and truths are summed, so F1
        pools true positives, false positives and false negatives over the world's tiles.
        """
        pooled = Matching(
            np.concatenate([np.zeros(0), *(m.ious for m in self.matchings)]),
            sum(m.num_predictions for m in self.matchings),
            sum(m.num_targets for m in self.matchings),
        )
        return _sample(self.question, self.world, self.question.task, "boxes", pooled, problems)


# ---------------------------------------------------------------------------------------------
# Running the paths


def write_blank(image: Path, out: Path) -> Path:
    """A grey GeoTIFF of ``image``'s size and georeference (the scene path's blank baseline)."""
    with rasterio.open(image) as source:
        profile = {
            "driver": "GTiff",
            "width": source.width,
            "height": source.height,
            "count": 3,
            "dtype": "uint8",
            "crs": source.crs,
            "transform": source.transform,
            "tiled": True,
        }
    grey = np.broadcast_to(
        np.array(BLANK_GREY, dtype=np.uint8)[:, None, None],
        (3, profile["height"], profile["width"]),
    )
    with rasterio.open(out, "w", **profile) as target:
        target.write(grey)
    return out


@dataclass
class RunOptions:
    """How the model is run: tiles per batch, longest answer."""

    batch_size: int = 8
    max_new_tokens: int = 256


def run_paths(
    assistant: Assistant,
    worlds: Sequence[WorldTruth],
    questions: Sequence[Question],
    trivial_counts: dict[str, int],
    options: RunOptions,
) -> dict[str, list[SampleScore]]:
    """Asks every question on every path and scores the answers.

    Returns:
        ``{path: samples}`` for :data:`PATHS`.
    """
    samples: dict[str, list[SampleScore]] = {path: [] for path in PATHS}
    with tempfile.TemporaryDirectory(prefix="geochat-eval-scenes-") as scratch:
        blanks: dict[int, Path] = {}
        bar = tqdm(total=3 * len(questions), desc="scene questions", unit="run", disable=None)
        with bar:
            for question in questions:
                world = worlds[question.world]
                if question.world not in blanks:
                    blanks[question.world] = write_blank(
                        world.image, Path(scratch) / f"blank_{question.world}.tif"
                    )
                for path, image in (("scene", world.image), ("blank", blanks[question.world])):
                    bar.set_postfix_str(f"{path}: {world.name} {question.category}")
                    # The tiles path scores the scene run's own tiles: no second model pass.
                    tiles = None
                    if path == "scene" and question.task != "segment":
                        tiles = TileScorer(question, world)
                    result = run_scene(
                        assistant,
                        image,
                        question.text,
                        batch_size=options.batch_size,
                        max_new_tokens=options.max_new_tokens,
                        on_tile=tiles,
                    )
                    answer = scene_answer(result.objects, result.problems)
                    samples[path] += score_answer(question, answer, world, answer.count)
                    if tiles is not None:
                        samples["tiles"].append(tiles.sample(answer.problems))
                    bar.update()
                bar.set_postfix_str(f"one view: {world.name} {question.category}")
                samples["one_view"] += _one_view(assistant, question, world, options)
                bar.update()
                trivial = trivial_counts.get(question.category, 0)
                samples["trivial"] += score_answer(question, NOTHING, world, trivial)
    return samples


def _one_view(
    assistant: Assistant, question: Question, world: WorldTruth, options: RunOptions
) -> list[SampleScore]:
    """The whole world given to the model once, as ``geochat chat`` does."""
    texts = [question.text] if question.count_text is None else [question.text, question.count_text]
    reply, *counts = assistant.chat_batch(
        [(world.image, [{"role": "user", "content": text}]) for text in texts],
        max_new_tokens=options.max_new_tokens,
    )
    answer = view_answer(reply.parsed.objects, reply.parsed.problems)
    count = None
    for counted in counts:
        # As the record eval reads counts: from the text around any geometry; <none> is 0.
        count = extract_count(counted.parsed.text)
        if count is None and any(o.kind == "none" for o in counted.parsed.objects):
            count = 0
    return score_answer(question, answer, world, count)


# ---------------------------------------------------------------------------------------------
# Trivial counts


def build_trivial_counts(build: Path) -> dict[str, int]:
    """The commonest count answer per category of a training build's count records.

    Raises:
        FileNotFoundError: When the build has no train records.
    """
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    seen = 0
    for shard in find_shards(build, "train"):
        for record in iter_records(shard):
            seen += 1
            if record["task"] != "count":
                continue
            answer = next((t["value"] for t in record["conversations"] if t["from"] == "gpt"), "")
            value = extract_count(answer)
            if value is not None:
                counts[record_category(record)][value] += 1
    if not seen:
        raise FileNotFoundError(f"no train records in {build}")
    return {category: found.most_common(1)[0][0] for category, found in counts.items()}


def median_counts(worlds: Sequence[WorldTruth], questions: Sequence[Question]) -> dict[str, int]:
    """The median true count per category over the evaluated worlds' count questions."""
    values: dict[str, list[int]] = defaultdict(list)
    for question in questions:
        if question.count_text is not None:
            values[question.category].append(
                len(worlds[question.world].objects.get(question.category, []))
            )
    return {category: round(statistics.median(found)) for category, found in values.items()}


# ---------------------------------------------------------------------------------------------
# Reports


def headline(task: str, iou_threshold: float) -> tuple[str, ...]:
    """The metrics a table shows for a task."""
    if task == "count":
        return ("mae", "accuracy")
    if task == "segment":
        return ("giou",)
    return (f"f1@{iou_threshold:g}", f"precision@{iou_threshold:g}", f"recall@{iou_threshold:g}")


def _value(summary: dict[str, Any], task: str, name: str) -> float | None:
    for metrics in summary.get(task, {}).values():
        if name in metrics:
            return metrics[name]
    return None


def _interval(intervals: dict[str, Any], task: str, name: str) -> str:
    for metrics in intervals.get(task, {}).values():
        if name in metrics:
            low, high = metrics[name]
            return f"{low:.3f}-{high:.3f}"
    return "-"


def overall_rows(report: dict[str, Any], iou_threshold: float) -> list[dict[str, Any]]:
    """One row per task and metric: each path's value, the scene path's interval."""
    paths = report["paths"]
    rows = []
    for task in paths["scene"]["tasks"]:
        for name in headline(task, iou_threshold):
            n = next(iter(paths["scene"]["tasks"][task].values()))["n"]
            row: dict[str, Any] = {"task": task, "metric": name, "n": n}
            for path in PATHS:
                row[path] = _value(paths[path]["tasks"], task, name)
                if path in INTERVAL_PATHS:
                    row[f"{path} interval"] = _interval(paths[path]["intervals"], task, name)
            rows.append(row)
    return rows


def category_rows(report: dict[str, Any], iou_threshold: float) -> list[dict[str, Any]]:
    """One row per category, task and headline metric: each path's value."""
    paths = report["paths"]
    rows = []
    for category, tasks in paths["scene"]["by_category"].items():
        for task in tasks:
            name = headline(task, iou_threshold)[0]
            n = next(iter(tasks[task].values()))["n"]
            row: dict[str, Any] = {"category": category, "task": task, "metric": name, "n": n}
            for path in PATHS:
                row[path] = _value(paths[path]["by_category"].get(category, {}), task, name)
            rows.append(row)
    return rows


def path_report(
    samples: Sequence[SampleScore], iou_threshold: float, resamples: int, seed: int
) -> dict[str, Any]:
    """One path's summary overall and per category, with intervals over worlds."""
    categories = sorted({s.category for s in samples})
    return {
        "tasks": summarize(samples, iou_threshold),
        "intervals": bootstrap_intervals(samples, iou_threshold, resamples, seed)
        if resamples
        else {},
        "by_category": {
            c: summarize([s for s in samples if s.category == c], iou_threshold) for c in categories
        },
    }


# ---------------------------------------------------------------------------------------------
# The verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``--scenes`` options to ``geochat eval``'s parser."""
    group = parser.add_argument_group("scoring whole scenes (synthetic worlds)")
    group.add_argument(
        "--scenes",
        type=Path,
        help="folder of synthetic worlds (geochat build synthetic --out): score the scene path, "
        "its tiles, one view, blank and trivial answers against their OSM truth (with --model)",
    )
    group.add_argument(
        "--categories",
        help="comma-separated categories to ask about (default: every category the truth names)",
    )


def run_scene_eval(args: argparse.Namespace, console: Console) -> int:
    """``geochat eval --scenes``: returns 0, or 2 with one sentence for unusable input."""
    from geochat.commands.eval import _table, _write_markdown  # eval imports this module
    from geochat.engine import load_transformers
    from geochat.modeling import resolve_checkpoint

    try:
        worlds = [read_truth(image) for image in find_worlds(args.scenes)]
        vocabulary = shared_vocabulary(worlds)
        categories = _categories(args.categories, vocabulary)
        questions = plan_questions(worlds, vocabulary, categories, args.limit, args.seed)
        if not questions:
            raise SceneEvalError(
                f"no questions: no asked category is in the worlds of {args.scenes}"
            )
        if args.trivial_from is not None:
            trivial_counts = build_trivial_counts(args.trivial_from)
            trivial_source = f"commonest count per category of {args.trivial_from}"
        else:
            trivial_counts = median_counts(worlds, questions)
            trivial_source = "median true count per category over the evaluated worlds"
        model_path = resolve_checkpoint(args.model)
        assistant = load_transformers(model_path, device=args.device)
    except (OSError, ValueError, RuntimeError, RecordError) as error:
        print(f"geochat eval: {error}", file=sys.stderr)
        return 2
    print(f"evaluating {model_path} on {len(questions)} questions about {len(worlds)} worlds")
    options = RunOptions(args.batch_size, args.max_new_tokens)
    try:
        samples = run_paths(assistant, worlds, questions, trivial_counts, options)
    except (OSError, SceneError, ImageError, GeometryError) as error:
        print(f"geochat eval: {error}", file=sys.stderr)
        return 2
    report = {
        "model": str(model_path),
        "scenes": str(args.scenes),
        "worlds": [w.name for w in worlds],
        "questions": len(questions),
        "iou_threshold": args.iou,
        "trivial_counts": {"source": trivial_source, "counts": trivial_counts},
        "paths": {
            path: path_report(
                found, args.iou, args.bootstrap if path != "trivial" else 0, args.seed
            )
            for path, found in samples.items()
        },
    }
    tables = [
        ("scenes: overall (interval: bootstrap over worlds)", overall_rows(report, args.iou)),
        ("scenes: per category", category_rows(report, args.iou)),
    ]
    # Wide tables: never squeezed into an 80-column pipe (the rows are what people paste).
    wide = Console(file=console.file, width=max(console.width, TABLE_WIDTH))
    for title, rows in tables:
        wide.print(_table(title, rows))
    print(f"trivial counts: {trivial_source}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out_dir / "metrics.json", json.dumps(report, indent=1))
    _write_markdown(args.out_dir / "report.md", tables)
    print(f"wrote metrics.json and report.md to {args.out_dir}")
    return 0


def _categories(text: str | None, vocabulary: Vocabulary) -> list[str] | None:
    if text is None:
        return None
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in vocabulary.plurals]
    if unknown or not chosen:
        raise SceneEvalError(
            f"--categories: unknown {unknown or text!r}; "
            f"choose from {', '.join(vocabulary.plurals)}"
        )
    return chosen
