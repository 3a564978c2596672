"""Instruction records: the JSONL contract between data builders, training and evaluation.

One JSON object per line, LLaVA-compatible conversations plus structured truth (see DESIGN.md,
"The record"). Truth lives in pixel coordinates of the record's image, so evaluation never
re-parses the answer text.

The pydantic models here are the one definition of a record (:class:`RecordModel`) and of an
object (:class:`GeoObject`); ``geochat schema records`` prints their JSON Schema. Records travel
as plain dicts, validated once where they are read (:func:`iter_records`) or built
(:func:`check_record`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    with_config,
)
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from geochat.fileio import atomic_writer

TASKS = (
    "caption",
    "vqa",
    "count",
    "classify",
    "refer",
    "ground",
    "grounded_caption",
    "identify",
    "segment",
    "reason_segment",
    "multi_turn",
)
IMAGE_PLACEHOLDER = "<image>"

Record = dict[str, Any]
"""A record as read from JSONL: a plain dict that :class:`RecordModel` has validated."""

_FINITE = {"strict": True, "allow_inf_nan": False}  # a coordinate: no bool, string, nan or inf

Coordinate = Annotated[float, Field(**_FINITE)]
Point = Annotated[list[Coordinate], Field(min_length=2, max_length=2, description="[x, y]")]
Quad = Annotated[
    list[Point],
    Field(
        min_length=4,
        max_length=4,
        description="Four [x, y] corners in pixels, clockwise on screen from the top-most one "
        "(left-most on ties).",
    ),
]
Phrase = Annotated[StrictStr, Field(description="The phrase an answer gave the object.")]
Score = Annotated[float, Field(**_FINITE, description="A confidence, e.g. SAM's predicted IoU.")]


def _ordered(box: list[float]) -> list[float]:
    """Checks that a box's corners are in order (a degenerate box, a line, is allowed)."""
    if box[2] < box[0]:
        raise ValueError("x1 must be >= x0")
    if box[3] < box[1]:
        raise ValueError("y1 must be >= y0")
    return box


Hbb = Annotated[
    list[Coordinate],
    Field(min_length=4, max_length=4, description="[x0, y0, x1, y1] in pixels, x0 <= x1, y0 <= y1"),
    AfterValidator(_ordered),
]


# A dict, not a model: geochat.geometry and pycocotools read masks as dicts.
@with_config(ConfigDict(extra="forbid", use_attribute_docstrings=True))
class Rle(TypedDict):
    """A COCO run-length encoded mask (decode with ``pycocotools.mask.decode``)."""

    size: Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=2, max_length=2)]
    """[height, width] in pixels."""
    counts: StrictStr
    """Compressed COCO counts."""


class GeoObject(BaseModel):
    """One object in pixel coordinates of an image: a record's truth or an answer's find.

    Unknown keys are errors: every key of an object is one of these.
    """

    model_config = ConfigDict(extra="forbid")

    phrase: Phrase | None = None
    category: StrictStr | None = Field(default=None, description="The canonical category name.")
    source_category: StrictStr | None = Field(
        default=None, description="The label as the source dataset wrote it."
    )
    hbb: Hbb | None = None
    quad: Quad | None = None
    mask: Rle | None = Field(default=None, description="COCO RLE at the image's size.")
    score: Score | None = None
    tags: dict[StrictStr, StrictStr] | None = Field(
        default=None, description="OSM tags of the feature, where known."
    )
    id: StrictStr | StrictInt | None = Field(default=None, description="Stable identifier.")
    truncated: StrictBool = Field(default=False, description="Cut by the tile's edge.")
    attributes: dict[str, Any] | None = Field(
        default=None,
        description='Phrases and values the builder derived, e.g. {"colour": "red"}.',
    )


class TruthObject(GeoObject):
    """An object of a record's truth: a :class:`GeoObject` whose category is known."""

    category: StrictStr = Field(description="The canonical category name.")


class Turn(BaseModel):
    """One turn of a LLaVA-style conversation."""

    model_config = ConfigDict(extra="forbid")

    speaker: Literal["human", "gpt"] = Field(alias="from")
    value: StrictStr = Field(description="Geometry is written in the canonical grammar.")


class Georef(BaseModel):
    """Where the image lies on the map."""

    model_config = ConfigDict(extra="forbid")

    crs: StrictStr = Field(description="E.g. EPSG:32633.")
    transform: list[Coordinate] = Field(
        min_length=6, max_length=6, description="[a, b, c, d, e, f], rasterio Affine order."
    )


class RecordModel(BaseModel):
    """One line of a records JSONL file (DESIGN.md, "The record").

    Keys beyond these are kept as they are: LLaVA-compatible files carry their own, and
    readers ignore what they do not know.
    """

    model_config = ConfigDict(extra="allow", title="geochat record")

    id: StrictStr = Field(min_length=1, description="Unique in its build.")
    image: StrictStr = Field(description="Path of the image, relative to the JSONL file.")
    width: StrictInt = Field(gt=0, description="Pixels of the image.")
    height: StrictInt = Field(gt=0, description="Pixels of the image.")
    task: Literal[TASKS]  # type: ignore[valid-type]
    conversations: list[Turn] = Field(
        min_length=2,
        description="Alternating human and gpt turns; the first one holds '<image>'.",
    )
    objects: list[TruthObject] = Field(default_factory=list, description="Truth in pixels.")
    gsd: Annotated[float, Field(**_FINITE, gt=0)] | None = Field(
        default=None, description="Metres per pixel."
    )
    georef: Georef | None = None
    source: dict[str, Any] | None = Field(default=None, description="Dataset, ids, tile.")
    split: StrictStr | None = None

    @field_validator("conversations")
    @classmethod
    def _alternate(cls, turns: list[Turn]) -> list[Turn]:
        for index, turn in enumerate(turns):
            expected = "human" if index % 2 == 0 else "gpt"
            if turn.speaker != expected:
                raise ValueError(f"turn {index} must be a {expected!r} turn")
        if IMAGE_PLACEHOLDER not in turns[0].value:
            raise ValueError(f"the first human turn must contain {IMAGE_PLACEHOLDER!r}")
        return turns


class RecordError(ValueError):
    """A record or a JSONL file that breaks the record contract."""


def record_problems(record: Any) -> list[str]:
    """Lists what is wrong with a record as ``field.path: message`` (empty when it is valid)."""
    try:
        RecordModel.model_validate(record)
    except ValidationError as error:
        return [_problem(detail) for detail in error.errors(include_url=False)]
    return []


_NO_VALUE = {"missing", "extra_forbidden"}  # errors whose value says nothing more


def _problem(detail: Any) -> str:
    """One validation error as ``field.path: message``."""
    where = ".".join(str(part) for part in detail["loc"])
    message = detail["msg"].removeprefix("Value error, ")
    value = detail.get("input")
    if detail["type"] == "model_type":  # pydantic names the class; the reader wrote JSON
        message = f"must be a JSON object, got {type(value).__name__}"
    elif detail["type"] == "literal_error":
        message = f"{value!r} is not one of {detail['ctx']['expected']}"
    elif detail["type"] not in _NO_VALUE and isinstance(value, str | int | float | None):
        message += f" (got {value!r})"
    return f"{where}: {message}" if where else f"a record {message}"


def check_record(record: Any) -> Record:
    """Returns the record if it is valid, else raises :class:`RecordError` listing the problems."""
    problems = record_problems(record)
    if problems:
        record_id = record.get("id", "?") if isinstance(record, dict) else "?"
        raise RecordError(f"record {record_id}: " + "; ".join(problems))
    return record


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Streams the JSON objects of a JSONL file, skipping blank lines.

    Raises:
        RecordError: with the file and line number of a line that is not valid JSON.
        FileNotFoundError: if the file does not exist.
    """
    for _, row in _numbered_jsonl(path):
        yield row


def _numbered_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """:func:`iter_jsonl` with the line number of each object."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise RecordError(f"{path}:{number}: not valid JSON ({error.msg})") from error


def iter_records(path: str | Path, validate: bool = True) -> Iterator[Record]:
    """Streams the records of a JSONL file, validating each one unless told not to.

    Raises:
        RecordError: naming the file, the line and the field of the first invalid record,
            e.g. ``train-00000.jsonl:12: record r7: objects.3.hbb: x1 must be >= x0``.
    """
    for number, record in _numbered_jsonl(path):
        if validate:
            try:
                check_record(record)
            except RecordError as error:
                raise RecordError(f"{path}:{number}: {error}") from None
        yield record


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Writes rows as JSONL atomically (:mod:`geochat.fileio`) and returns the count.

    A crash mid-write leaves either the old file or no file, never half of one.
    """
    count = 0
    with atomic_writer(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count


def find_shards(source: str | Path | Sequence[str | Path], split: str | None = None) -> list[Path]:
    """Lists the JSONL files of a data source.

    Args:
        source: A ``.jsonl`` file, a folder of them, or a list of files and folders (their
            shards in list order: a mix of builds).
        split: In a folder, keep the shards named ``<split>-*.jsonl`` or ``<split>.jsonl``;
            when no file is named so, every shard is read and records are filtered by their
            ``split`` field instead (readers filter records by it).

    Raises:
        FileNotFoundError: When a source does not exist or holds no JSONL file.
    """
    if not isinstance(source, str | Path):
        return [shard for one in source for shard in find_shards(one, split)]
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"no such data source: {source}")
    shards = sorted(source.glob("*.jsonl"))
    if split is not None:
        named = [s for s in shards if s.stem == split or s.stem.startswith(f"{split}-")]
        shards = named or shards
    if not shards:
        raise FileNotFoundError(f"{source} holds no .jsonl shard")
    return shards


def image_path(record: Record, jsonl_path: str | Path) -> Path:
    """Resolves a record's image path, which is relative to the JSONL file that holds it."""
    return Path(jsonl_path).parent / record["image"]


def record_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one line of a records file."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **RecordModel.model_json_schema(),
    }
