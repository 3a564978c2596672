"""Atomic shards, the build manifest, and resuming an interrupted build.

Layout of a build folder::

    DIR/manifest.json          builder arguments, tag table version, shards, counts
    DIR/summary.json           records per task and category, drops and errors
    DIR/<split>-<NNNNN>.jsonl  record shards (image paths relative to DIR)
    DIR/images/<tile id>.png   tile images
    DIR/jobs/<NNNNN>.json      one commit marker per finished shard job

The unit of work is a shard job (a fixed, deterministic group of tiles). A job writes its
images, then its JSONL shards, each to a temporary file renamed into place, and last its
commit marker. A job with a marker is done; a restart skips it and redoes any other job,
overwriting whatever half of it a killed run left, with identical content, and removes the
temporary files a killed run left behind. So an interrupted and resumed build ends
byte-identical to an uninterrupted one. One build runs in a folder at a time.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geochat.fileio import atomic_write_text
from geochat.records import Record, write_jsonl

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
IMAGES_DIR = "images"
JOBS_DIR = "jobs"
FORMAT = "geochat-build/1"


class BuildDirectoryError(ValueError):
    """A build folder that holds a different build (or something that is not a build)."""


def write_json(path: str | Path, document: Any) -> None:
    """Writes JSON atomically (sorted keys, indented, so equal content gives equal bytes)."""
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


def shard_name(split: str, index: int) -> str:
    """Returns the file name of a split's shard of job ``index``."""
    return f"{split}-{index:05d}.jsonl"


def commit_shard(
    out_dir: str | Path,
    index: int,
    records: list[Record],
    stats: Mapping[str, Any],
) -> dict[str, Any]:
    """Writes a finished job's records as one JSONL shard per split, then its commit marker.

    Args:
        out_dir: The build folder.
        index: The job's index.
        records: The job's records in order; each has a ``split``.
        stats: The job's counts (kept in the marker, so a resumed build can sum them).

    Returns:
        The job's manifest entry: ``{"index", "shards": {split: {"path", "records"}}, "stats"}``.
    """
    out_dir = Path(out_dir)
    by_split: dict[str, list[Record]] = {}
    for record in records:
        by_split.setdefault(record["split"], []).append(record)
    shards = {}
    for split, rows in sorted(by_split.items()):
        name = shard_name(split, index)
        shards[split] = {"path": name, "records": write_jsonl(out_dir / name, rows)}
    entry = {"index": index, "shards": shards, "stats": dict(stats)}
    write_json(out_dir / JOBS_DIR / f"{index:05d}.json", entry)
    return entry


def completed_jobs(out_dir: str | Path) -> dict[int, dict[str, Any]]:
    """Returns the manifest entries of every committed job, by index."""
    jobs = {}
    for marker in sorted((Path(out_dir) / JOBS_DIR).glob("*.json")):
        entry = json.loads(marker.read_text(encoding="utf-8"))
        jobs[entry["index"]] = entry
    return jobs


def prepare(out_dir: str | Path, arguments: Mapping[str, Any], overwrite: bool) -> bool:
    """Readies a build folder and says whether this is a resumed build.

    Args:
        out_dir: The build folder.
        arguments: Everything that decides the build's output (recorded in the manifest).
        overwrite: Remove a previous build's files first, even if its arguments differ.

    Returns:
        True when the folder holds an unfinished or finished build with the same arguments.

    Raises:
        BuildDirectoryError: when it holds a build with other arguments and ``overwrite`` is
            False, or holds files but no manifest.
    """
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST
    if overwrite:
        clear(out_dir)
    if manifest_path.is_file():
        previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        if previous.get("arguments") != json.loads(json.dumps(arguments)):
            raise BuildDirectoryError(
                f"{out_dir} holds a build made with other arguments "
                f"({_difference(previous.get('arguments', {}), arguments)}); "
                "use another output folder or --overwrite"
            )
        _remove_temporaries(out_dir)
        return True
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise BuildDirectoryError(
            f"{out_dir} is not empty and holds no {MANIFEST}; refusing to mix"
        )
    write_json(manifest_path, {"format": FORMAT, "status": "running", "arguments": arguments})
    return False


def finish(
    out_dir: str | Path,
    arguments: Mapping[str, Any],
    jobs: list[Mapping[str, Any]],
    counts: Mapping[str, Any],
) -> None:
    """Writes the final manifest: arguments, every job's shards in job order, and counts."""
    shards = [
        {"job": job["index"], "split": split, **shard}
        for job in sorted(jobs, key=lambda job: job["index"])
        for split, shard in sorted(job["shards"].items())
    ]
    manifest = {
        "format": FORMAT,
        "status": "complete",
        "arguments": arguments,
        "shards": shards,
        "counts": counts,
    }
    write_json(Path(out_dir) / MANIFEST, manifest)


def clear(out_dir: str | Path) -> None:
    """Removes the files a build writes (and nothing else) from a build folder."""
    out_dir = Path(out_dir)
    for name in (MANIFEST, SUMMARY):
        (out_dir / name).unlink(missing_ok=True)
    for name in (IMAGES_DIR, JOBS_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    for shard in out_dir.glob("*-[0-9][0-9][0-9][0-9][0-9].jsonl"):
        shard.unlink()
    _remove_temporaries(out_dir)


def _remove_temporaries(out_dir: Path) -> None:
    """Removes the temporary files a killed build left (one build runs per folder at a time)."""
    for folder in (out_dir, out_dir / IMAGES_DIR, out_dir / JOBS_DIR):
        for temporary in folder.glob(".*.tmp"):
            temporary.unlink()


def _difference(previous: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    current = json.loads(json.dumps(current))
    keys = sorted(
        key for key in set(previous) | set(current) if previous.get(key) != current.get(key)
    )
    return ", ".join(f"{key}: {previous.get(key)!r} -> {current.get(key)!r}" for key in keys)
