"""Instruction records: the JSONL contract between data builders, training and evaluation.

One JSON object per line, LLaVA-compatible conversations plus structured truth (see DESIGN.md,
"The record"). Truth lives in pixel coordinates of the record's image, so evaluation never
re-parses the answer text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from geochat.fileio import atomic_writer

TASKS = (
    "caption",
    "vqa",
    "count",
    "classify",
    "refer",
    "ground",
    "identify",
    "segment",
    "reason_segment",
    "multi_turn",
)
IMAGE_PLACEHOLDER = "<image>"

Record = dict[str, Any]


class RecordError(ValueError):
    """A record or a JSONL file that breaks the record contract."""


def record_problems(record: Any) -> list[str]:
    """Lists what is wrong with a record (an empty list means it is valid).

    Checks the required keys and their types, the task name, the alternation of human and
    gpt turns, and the shape of each object's truth. Geometry values are not re-validated
    against the image here; the builders produce them with ``geochat.geometry``.
    """
    if not isinstance(record, dict):
        return [f"a record must be a JSON object, got {type(record).__name__}"]
    problems = [
        f"missing key {key!r}"
        for key in ("id", "image", "width", "height", "task", "conversations")
        if key not in record
    ]
    if problems:
        return problems
    if not isinstance(record["id"], str) or not record["id"]:
        problems.append("'id' must be a non-empty string")
    for key in ("width", "height"):
        value = record[key]
        # bool is a subclass of int: `true` is not a size.
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            problems.append(f"{key!r} must be a positive integer, got {value!r}")
    if record["task"] not in TASKS:
        problems.append(f"unknown task {record['task']!r}; expected one of {', '.join(TASKS)}")
    problems += _conversation_problems(record["conversations"])
    objects = record.get("objects", [])
    if not isinstance(objects, list):
        return [*problems, f"'objects' must be a list, got {type(objects).__name__}"]
    for index, obj in enumerate(objects):
        problems += [f"objects[{index}]: {p}" for p in _object_problems(obj)]
    return problems


def _conversation_problems(turns: Any) -> list[str]:
    if not isinstance(turns, list) or len(turns) < 2:
        return ["'conversations' must be a list of at least two turns"]
    problems = []
    for index, turn in enumerate(turns):
        expected = "human" if index % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected:
            problems.append(f"conversations[{index}] must be a {expected!r} turn")
        elif not isinstance(turn.get("value"), str):
            problems.append(f"conversations[{index}] has no string 'value'")
    if not problems and IMAGE_PLACEHOLDER not in turns[0]["value"]:
        problems.append(f"the first human turn must contain {IMAGE_PLACEHOLDER!r}")
    return problems


def _object_problems(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return ["must be an object"]
    problems = [] if isinstance(obj.get("category"), str) else ["needs a string 'category'"]
    if "source_category" in obj and not isinstance(obj["source_category"], str):
        problems.append("'source_category' must be a string (the label as the source wrote it)")
    hbb = obj.get("hbb")
    if hbb is not None and (not isinstance(hbb, list) or len(hbb) != 4):
        problems.append("'hbb' must be [x0, y0, x1, y1]")
    quad = obj.get("quad")
    if quad is not None and (not isinstance(quad, list) or len(quad) != 4):
        problems.append("'quad' must be four [x, y] corners")
    mask = obj.get("mask")
    if mask is not None and not (isinstance(mask, dict) and {"size", "counts"} <= mask.keys()):
        problems.append("'mask' must be COCO RLE {'size': [h, w], 'counts': ...}")
    return problems


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
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise RecordError(f"{path}:{number}: not valid JSON ({error.msg})") from error


def iter_records(path: str | Path, validate: bool = True) -> Iterator[Record]:
    """Streams the records of a JSONL file, validating each one unless told not to."""
    for record in iter_jsonl(path):
        yield check_record(record) if validate else record


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
