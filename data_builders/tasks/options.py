"""Options of the task generators, their checks, and a simplest-first curriculum."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from geochat.grammar import GRID_SIDES
from geochat.records import TASKS

# Records per task in proportion to these weights: referring and segmentation carry the most
# geometry to learn, so they get more of each tile.
DEFAULT_MIX: Mapping[str, float] = {
    "caption": 1.0,
    "vqa": 2.0,
    "count": 2.0,
    "classify": 1.0,
    "refer": 3.0,
    "ground": 1.0,
    # Off by default: a whole-tile answer is long (max_boxes geometries) and ground's
    # per-category questions teach the same geometry.
    "grounded_caption": 0.0,
    "identify": 1.0,
    "segment": 2.0,
    "reason_segment": 1.0,
    "multi_turn": 1.0,
}
# Tasks whose answer is one word or number (yes/no, a count, a class, a category).
SHORT_ANSWER_TASKS = ("vqa", "count", "classify", "identify")
# Tag-table categories that cover land rather than stand on it: they are not counted, not
# used as landmarks, and decide the scene class.
LAND_COVER = ("residential area", "industrial area", "farmland", "forest", "grass", "park", "water")


class TaskOptionsError(ValueError):
    """Task options that are unknown or out of range."""


@dataclass(frozen=True)
class TaskOptions:
    """What the task generators make of each tile.

    Attributes:
        tasks: Task name -> mix weight (tasks of ``geochat.records.TASKS``; weight 0 turns a
            task off). Each tile's records are shared out in proportion to the weights.
        max_records: Records per tile at most (a task that a tile cannot support, e.g.
            classification without land cover, gives fewer).
        mask_grid: Side N of ``<seg>`` text-masks, 16 or 32.
        none_fraction: Share of referring, segmentation and reasoning questions (and of
            counting questions) that ask for a category absent from the tile; their answer is
            ``<none>`` (``0`` for counts). Presence questions are always half "no".
        max_boxes: Largest number of geometries in one answer; longer answers are not made.
        max_objects: Curriculum: tiles with more objects give no records (1 keeps
            single-object tiles only); None for no limit.
        short_answers: Curriculum: every answer is one word or number ("yes", "3",
            "swimming pool"); only the tasks in ``SHORT_ANSWER_TASKS`` may have weight.
        absent_categories: Categories that questions about absent targets may name; None
            for every tag-table category visible at the tile's ground sample distance.
        land_cover: Categories that are land cover rather than objects (see ``LAND_COVER``).
        tags: Tag table file the tiles were built with; None for the bundled one.
    """

    tasks: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    max_records: int = 16
    mask_grid: int = 16
    none_fraction: float = 0.15
    max_boxes: int = 32
    max_objects: int | None = None
    short_answers: bool = False
    absent_categories: tuple[str, ...] | None = None
    land_cover: tuple[str, ...] = LAND_COVER
    tags: str | None = None

    def __post_init__(self) -> None:
        """Checks every option and raises :class:`TaskOptionsError` naming the first bad one."""
        self._check_types()
        unknown = [task for task in self.tasks if task not in TASKS]
        if unknown:
            raise TaskOptionsError(f"unknown tasks {unknown}; expected some of {', '.join(TASKS)}")
        weights = list(self.tasks.values())
        if not all(isinstance(w, int | float) and math.isfinite(w) and w >= 0 for w in weights):
            raise TaskOptionsError(f"task weights must be finite and >= 0, got {dict(self.tasks)}")
        if not any(w > 0 for w in weights):
            raise TaskOptionsError("at least one task needs a positive weight")
        if self.max_records < 1:
            raise TaskOptionsError(f"max_records must be >= 1, got {self.max_records}")
        if self.mask_grid not in GRID_SIDES:
            raise TaskOptionsError(f"mask_grid must be one of {GRID_SIDES}, got {self.mask_grid}")
        if not 0.0 <= self.none_fraction <= 1.0:
            raise TaskOptionsError(f"none_fraction must be in [0, 1], got {self.none_fraction}")
        if self.max_boxes < 1:
            raise TaskOptionsError(f"max_boxes must be >= 1, got {self.max_boxes}")
        if self.max_objects is not None and self.max_objects < 0:
            raise TaskOptionsError(f"max_objects must be >= 0 or None, got {self.max_objects}")
        long_tasks = [t for t in self.active_tasks if t not in SHORT_ANSWER_TASKS]
        if self.short_answers and long_tasks:
            raise TaskOptionsError(
                f"short_answers allows only {', '.join(SHORT_ANSWER_TASKS)}; "
                f"give weight 0 to {', '.join(long_tasks)}"
            )

    def _check_types(self) -> None:
        if not isinstance(self.tasks, Mapping):
            raise TaskOptionsError(f"tasks must map task names to weights, got {self.tasks!r}")
        integers = {
            "max_records": self.max_records,
            "mask_grid": self.mask_grid,
            "max_boxes": self.max_boxes,
        }
        if self.max_objects is not None:
            integers["max_objects"] = self.max_objects
        for name, value in integers.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise TaskOptionsError(f"{name} must be an integer, got {value!r}")
        if not isinstance(self.none_fraction, int | float) or isinstance(self.none_fraction, bool):
            raise TaskOptionsError(f"none_fraction must be a number, got {self.none_fraction!r}")
        if not isinstance(self.short_answers, bool):
            raise TaskOptionsError(
                f"short_answers must be true or false, got {self.short_answers!r}"
            )

    @property
    def active_tasks(self) -> tuple[str, ...]:
        """Tasks with a positive weight, in the order of ``geochat.records.TASKS``."""
        return tuple(task for task in TASKS if self.tasks.get(task, 0) > 0)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TaskOptions:
        """Builds options from a JSON-like mapping (as stored in a build manifest).

        Raises:
            TaskOptionsError: for unknown keys or bad values.
        """
        names = {option.name for option in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TaskOptionsError(
                f"unknown task options {unknown}; expected some of {sorted(names)}"
            )
        converted = dict(values)
        for key in ("absent_categories", "land_cover"):
            if converted.get(key) is not None:
                converted[key] = tuple(converted[key])
        return cls(**converted)

    def to_mapping(self) -> dict[str, Any]:
        """Returns the options as a JSON-friendly dict (the inverse of :meth:`from_mapping`)."""
        values = dataclasses.asdict(self)
        values["tasks"] = dict(self.tasks)
        for key in ("absent_categories", "land_cover"):
            if values[key] is not None:
                values[key] = list(values[key])
        return values


# Simplest first (NANO.md): one object and one-word answers, then presence and counting,
# then boxes, then everything.
CURRICULUM: tuple[tuple[str, TaskOptions], ...] = (
    (
        "single_object",
        TaskOptions(tasks={"identify": 1.0, "vqa": 1.0}, max_objects=1, short_answers=True),
    ),
    (
        "presence_count",
        TaskOptions(
            tasks={"vqa": 2.0, "count": 2.0, "classify": 1.0, "identify": 1.0}, short_answers=True
        ),
    ),
    ("boxes", TaskOptions(tasks={"vqa": 1.0, "count": 1.0, "refer": 3.0, "ground": 1.0})),
    ("full", TaskOptions()),
)
