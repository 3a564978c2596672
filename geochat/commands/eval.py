"""``geochat eval``: scores a model's answers against records and reports metrics per task.

Usage::

    geochat eval --records R.jsonl --predictions P.jsonl [--out metrics.json] [--iou 0.5]

The predictions file is JSONL, one object a line, joined to the records by ``id``::

    {"id": "<record id>", "answer": "<the model's reply to the record's first human turn>"}

For ``multi_turn`` records ``answer`` may instead be a list of replies, one per gpt turn, each
generated after the reference conversation up to that turn. A record without a prediction is
scored as wrong and listed under ``missing_predictions``; a prediction without a record is
listed under ``unknown_predictions``. How each task is scored is documented in
:mod:`geochat.metrics`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from geochat.metrics import score_record, summarize
from geochat.records import Record, RecordError, iter_jsonl, iter_records, write_jsonl

Answer = str | list[str]


class PredictionError(ValueError):
    """A predictions file that breaks the ``{"id", "answer"}`` JSONL format."""


def read_predictions(path: str | Path) -> dict[str, Answer]:
    """Reads a predictions JSONL file into ``{id: answer}``.

    Raises:
        PredictionError: for a line without a string ``id``, an ``answer`` that is neither a
            string nor a list of strings, or an ``id`` given twice.
        RecordError: for a line that is not JSON.
    """
    predictions: dict[str, Answer] = {}
    for number, row in enumerate(iter_jsonl(path), start=1):
        where = f"{path}: prediction {number}"
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise PredictionError(f"{where} needs a string 'id'")
        answer = row.get("answer")
        is_list = isinstance(answer, list) and all(isinstance(a, str) for a in answer)
        if not (isinstance(answer, str) or is_list):
            raise PredictionError(f"{where} needs an 'answer' string (or list of strings)")
        if row["id"] in predictions:
            raise PredictionError(f"{where}: id {row['id']!r} appears twice")
        predictions[row["id"]] = answer
    return predictions


def score(
    records: Iterable[Record], predictions: Mapping[str, Answer], iou_threshold: float = 0.5
) -> dict[str, Any]:
    """Scores predictions against records.

    Args:
        records: Valid records (:func:`geochat.records.iter_records`).
        predictions: ``{record id: answer}`` (see the module docs for the answer's form).
        iou_threshold: IoU at which a box or quad counts as found.

    Returns:
        A JSON-ready report: ``iou_threshold``, the ``records`` and ``predictions`` counts,
        ``missing_predictions`` and ``unknown_predictions`` (ids), ``skipped`` turns and
        ``notes`` (each with ``id``, ``turn`` and a reason), and ``tasks``:
        ``{task: {family: {"n", "missing", "with_problems", <metrics>}}}`` from
        :func:`geochat.metrics.summarize`.
    """
    samples, skipped, missing, record_ids = [], [], [], []
    for record in records:
        record_ids.append(record["id"])
        answer = predictions.get(record["id"])
        if answer is None:
            missing.append(record["id"])
        record_scores, record_skipped = score_record(record, answer)
        samples += record_scores
        skipped += record_skipped
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
        "tasks": summarize(samples, iou_threshold),
    }


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_report(report: Mapping[str, Any], console: Console) -> None:
    """Prints one table per task, then the counts of missing, unknown and skipped answers."""
    for task, families in report["tasks"].items():
        table = Table(title=task, title_justify="left")
        for column in ("scored as", "metric", "value"):
            table.add_column(column)
        for family, metrics in families.items():
            for name, value in metrics.items():
                table.add_row(family, name, _format(value))
        console.print(table)
    # Plain print: rich would wrap long lines and paths.
    print(
        f"{report['records']} records, {report['predictions']} predictions; "
        f"{len(report['missing_predictions'])} missing (scored as wrong), "
        f"{len(report['unknown_predictions'])} without a record, "
        f"{len(report['skipped'])} turns skipped, {len(report['notes'])} notes on the truth"
    )


def _iou(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"the IoU threshold must be in (0, 1], got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geochat eval",
        description="Score predictions against records and print metrics per task.",
    )
    parser.add_argument("--records", required=True, type=Path, help="records JSONL file")
    parser.add_argument(
        "--predictions",
        required=True,
        type=Path,
        help='predictions JSONL: one {"id": ..., "answer": "..."} a line',
    )
    parser.add_argument("--out", type=Path, help="write the metrics as JSON here")
    parser.add_argument(
        "--iou", type=_iou, default=0.5, help="IoU threshold for boxes and quads (default 0.5)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs ``geochat eval``; returns 0 on success, 2 for unreadable input."""
    args = _parser().parse_args(argv)
    console = Console()
    try:
        predictions = read_predictions(args.predictions)
        records = list(iter_records(args.records))
    except (OSError, RecordError, PredictionError) as error:
        print(f"geochat eval: {error}", file=sys.stderr)
        return 2
    report = score(
        tqdm(records, desc="scoring", unit="record", disable=None), predictions, args.iou
    )
    print_report(report, console)
    if args.out is not None:
        # One JSON object on one line is a valid JSON file, written atomically.
        write_jsonl(args.out, [report])
        print(f"wrote metrics to {args.out}")
    return 0
