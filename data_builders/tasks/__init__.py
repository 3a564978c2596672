"""Task generators: one tile with its pixel truth -> instruction records (DESIGN.md, "The record").

Families, one module each: ``caption``; ``vqa`` (presence, task ``vqa``, and counting, task
``count``); ``classify``; ``refer`` (boxes and quads of verified referring expressions,
see :mod:`data_builders.tasks.expressions`); ``ground`` (every object of one category);
``grounded_caption`` (every category of the tile, named and located); ``identify``;
``segment``; ``reason`` (task ``reason_segment``); ``dialogue`` (task ``multi_turn``).

Usage::

    records = generate_records(tile, numpy.random.default_rng(seed), TaskOptions(max_records=8))

Guarantees:

- Every record passes :func:`geochat.records.check_record`; geometry is written with
  :mod:`geochat.grammar` and parses back to the truth within the grammar's quantisation.
- Truth (``objects``): every object of the tile for caption, grounded_caption and
  multi_turn; the objects the answer names or counts otherwise (none for a ``<none>`` answer
  or a count of 0).
- Records of one tile share their ``objects`` dicts (built once per tile): treat them as
  read-only.
- All randomness comes from the ``rng`` argument, and nothing iterates over an unordered set,
  so a seed reproduces the records exactly.
- Record ids are ``"<tile id>:<task>:<index>"``, the index counting that task's records of the
  tile; the tile id is ``tile.source["tile"]``, else the image path without its extension.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from geochat.data_builders.tasks import (
    caption,
    classify,
    dialogue,
    ground,
    grounded_caption,
    identify,
    reason,
    refer,
    segment,
    vqa,
)
from geochat.data_builders.tasks.common import Sample, TaskGenerator
from geochat.data_builders.tasks.options import CURRICULUM, TaskOptions, TaskOptionsError
from geochat.data_builders.tasks.scene import Scene, TileError, load_vocabulary
from geochat.data_builders.tile import Tile
from geochat.records import IMAGE_PLACEHOLDER, Record, check_record

__all__ = [
    "CURRICULUM",
    "GENERATORS",
    "TaskOptions",
    "TaskOptionsError",
    "TileError",
    "allocate",
    "generate_records",
    "tile_id",
]

GENERATORS: Mapping[str, TaskGenerator] = {
    "caption": caption.generate,
    "vqa": vqa.generate_presence,
    "count": vqa.generate_count,
    "classify": classify.generate,
    "refer": refer.generate,
    "ground": ground.generate,
    "grounded_caption": grounded_caption.generate,
    "identify": identify.generate,
    "segment": segment.generate,
    "reason_segment": reason.generate,
    "multi_turn": dialogue.generate,
}


def generate_records(
    tile: Tile,
    rng: np.random.Generator,
    options: TaskOptions | Mapping[str, Any] | None = None,
) -> list[Record]:
    """Turns one tile into instruction records.

    Args:
        tile: The tile and its objects in pixel coordinates.
        rng: The only source of randomness (seed it per tile for reproducible builds).
        options: :class:`TaskOptions`, a mapping of their fields (as a build manifest stores
            them), or None for the defaults.

    Returns:
        At most ``options.max_records`` records, grouped by task in the order of
        ``geochat.records.TASKS``.

    Raises:
        TaskOptionsError: for unknown or out-of-range options.
        TileError: for a tile whose categories are not in the tag table.
    """
    options = _as_options(options)
    if options.max_objects is not None and len(tile.objects) > options.max_objects:
        return []
    scene = Scene(tile, options, load_vocabulary(options.tags))
    quotas = allocate(options, rng)
    truth = [obj.to_record_object() for obj in tile.objects]
    records = []
    for task, quota in quotas.items():
        samples = GENERATORS[task](scene, rng, quota) if quota > 0 else []
        records += [_record(scene, truth, task, i, sample) for i, sample in enumerate(samples)]
    return records


def allocate(options: TaskOptions, rng: np.random.Generator) -> dict[str, int]:
    """Shares ``max_records`` among the tasks in proportion to their weights.

    Each task gets the whole part of its share; the records left over go to tasks drawn
    (without repeats) with probability proportional to the fractional parts, so the expected
    count of every task is exactly its share.

    Returns:
        Task -> number of records, in the order of ``geochat.records.TASKS``.
    """
    tasks = options.active_tasks
    weights = np.array([options.tasks[task] for task in tasks], dtype=np.float64)
    shares = options.max_records * weights / weights.sum()  # [T]
    counts = np.floor(shares).astype(np.int64)
    left = int(options.max_records - counts.sum())
    if left > 0:
        fractions = shares - counts
        extra = rng.choice(len(tasks), size=left, replace=False, p=fractions / fractions.sum())
        counts[extra] += 1
    return {task: int(count) for task, count in zip(tasks, counts, strict=True)}


def tile_id(tile: Tile) -> str:
    """The tile's id in record ids: ``tile.source["tile"]``, else the image path stem."""
    explicit = tile.source.get("tile")
    return str(explicit) if explicit else Path(tile.image).with_suffix("").as_posix()


def _as_options(options: TaskOptions | Mapping[str, Any] | None) -> TaskOptions:
    if options is None:
        return TaskOptions()
    if isinstance(options, TaskOptions):
        return options
    if isinstance(options, Mapping):
        return TaskOptions.from_mapping(options)
    raise TaskOptionsError(
        f"options must be TaskOptions, a mapping or None, got {type(options).__name__}"
    )


def _record(
    scene: Scene, truth: list[dict[str, Any]], task: str, index: int, sample: Sample
) -> Record:
    tile = scene.tile
    conversations = []
    for number, turn in enumerate(sample.turns):
        question = f"{IMAGE_PLACEHOLDER}\n{turn.question}" if number == 0 else turn.question
        conversations += [
            {"from": "human", "value": question},
            {"from": "gpt", "value": turn.answer},
        ]
    named = range(len(tile.objects)) if sample.scene_level else sample.targets
    identifier = tile_id(tile)
    record: Record = {
        "id": f"{identifier}:{task}:{index}",
        "image": tile.image,
        "width": tile.width,
        "height": tile.height,
        "task": task,
        "conversations": conversations,
        "objects": [truth[i] for i in named],
        "split": tile.split,
        "source": {**tile.source, "tile": identifier},
    }
    if tile.gsd is not None:
        record["gsd"] = tile.gsd
    if tile.georef is not None:
        record["georef"] = tile.georef
    return check_record(record)
