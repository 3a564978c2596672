"""The counts of a build: nested counters, what planning found, the summary and its report.

Jobs count what they write and drop in nested dicts (:func:`bump`); the build sums the planning's
counts and every job's into ``summary.json`` (:func:`summarise`) and prints a short report of it
(:func:`format_summary`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Errors listed one by one in the printed report (all of them are in summary.json).
PRINTED_ERRORS = 20


@dataclass
class Planning:
    """Counts and errors found while planning (recomputed identically on resume)."""

    counts: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)

    def error(self, kind: str, path: str, message: str) -> None:
        """Records an input that failed, with a message meant for the user."""
        self.errors.append({"kind": kind, "path": path, "message": message})


def summarise(planning: Planning, entries: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Sums planning counts and job stats into the build summary.

    Keys: ``tiles`` (planned, written, dropped by reason), ``records`` (total, by task, split
    and category), ``objects`` (kept by category, truncated, dropped by reason and category),
    ``features`` (read by category, skipped by reason), ``errors`` (each failed input with
    its message) and ``error_counts`` (by kind).
    """
    summary: dict[str, Any] = {}
    merge_counts(summary, planning.counts)
    summary["errors"] = list(planning.errors)
    for entry in entries:
        merge_counts(summary, entry["stats"])
    summary["error_counts"] = dict(Counter(error["kind"] for error in summary["errors"]))
    return summary


def format_summary(summary: Mapping[str, Any]) -> str:
    """Renders a summary as the short text report printed at the end of a build."""
    records = summary.get("records", {})
    tiles = summary.get("tiles", {})
    objects = summary.get("objects", {})
    lines = [
        f"tiles: {tiles.get('written', 0)} written of {tiles.get('planned', 0)} planned"
        f"{_inline(tiles.get('dropped', {}), ' (dropped: ', ')')}",
        f"records: {records.get('total', 0)}{_inline(records.get('by_split', {}), ' (', ')')}",
        f"records by task: {_inline(records.get('by_task', {})) or 'none'}",
        f"records by category: {_inline(records.get('by_category', {})) or 'none'}",
        f"objects kept: {_inline(objects.get('kept', {})) or 'none'}",
        f"objects truncated by tile edges: {objects.get('truncated', 0)}",
    ]
    for reason, by_category in sorted(objects.get("dropped", {}).items()):
        lines.append(f"objects dropped ({reason}): {_inline(by_category)}")
    features = summary.get("features", {})
    if features.get("skipped"):
        lines.append(f"OSM features skipped: {_inline(features['skipped'])}")
    errors = summary.get("errors", [])
    if errors:
        lines.append(f"errors ({len(errors)}): {_inline(summary.get('error_counts', {}))}")
        lines += [f"  {error['kind']}: {error['message']}" for error in errors[:PRINTED_ERRORS]]
        if len(errors) > PRINTED_ERRORS:
            lines.append(f"  ... and {len(errors) - PRINTED_ERRORS} more in summary.json")
    return "\n".join(lines)


def _inline(counts: Mapping[str, int], before: str = "", after: str = "") -> str:
    if not counts:
        return ""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return before + ", ".join(f"{name} {count}" for name, count in ordered) + after


def manifest_counts(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The counts of a summary that the manifest records."""
    records = summary.get("records", {})
    return {
        "tiles": summary.get("tiles", {}).get("written", 0),
        "records": records.get("total", 0),
        "by_split": records.get("by_split", {}),
        "by_task": records.get("by_task", {}),
        "errors": summary.get("error_counts", {}),
    }


def bump(counts: dict[str, Any], *keys: str, by: int = 1) -> None:
    """Adds ``by`` to a nested count, creating the levels it needs."""
    for key in keys[:-1]:
        counts = counts.setdefault(key, {})
    counts[keys[-1]] = counts.get(keys[-1], 0) + by


def merge_counts(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Adds nested counts (and concatenates lists) of ``other`` into ``into``."""
    for key, value in other.items():
        if isinstance(value, Mapping):
            merge_counts(into.setdefault(key, {}), value)
        elif isinstance(value, list):
            into.setdefault(key, []).extend(value)
        else:
            into[key] = into.get(key, 0) + value
