"""``geochat eval``: scores a model's answers against records and reports metrics per task.

Usage::

    geochat eval --records R.jsonl --predictions P.jsonl [--out metrics.json] [--iou 0.5]
    geochat eval --model M --data DIR [--split test] [--out-dir DIR] [--limit N] [--no-ablation]

The second form runs the model on the records first (batched, greedy; :mod:`geochat.predict`)
and, unless ``--no-ablation``, again with every image blanked: the **image-ablation gap**, the
drop of each metric without the image, shows whether the model reads its images at all.

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
from geochat.records import (
    Record,
    RecordError,
    find_shards,
    iter_jsonl,
    iter_records,
    write_jsonl,
)

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
        description="Score a model's answers against records and print metrics per task.",
    )
    scored = parser.add_argument_group("scoring answers written elsewhere")
    scored.add_argument("--records", type=Path, help="records JSONL file")
    scored.add_argument(
        "--predictions",
        type=Path,
        help='predictions JSONL: one {"id": ..., "answer": "..."} a line',
    )
    scored.add_argument("--out", type=Path, help="write the metrics as JSON here")
    run = parser.add_argument_group("running a model on records")
    run.add_argument(
        "--model", help="model folder, training run folder (its final/ or newest checkpoint)"
    )
    run.add_argument("--data", type=Path, help="records: a JSONL file or a build folder")
    run.add_argument("--split", default="test", help="split of a build folder (default test)")
    run.add_argument("--limit", type=int, help="evaluate the first N records only")
    run.add_argument("--out-dir", type=Path, default=Path("eval"), help="predictions and metrics")
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--max-new-tokens", type=int, default=128)
    run.add_argument("--no-ablation", action="store_true", help="skip the blank-image run")
    parser.add_argument(
        "--iou", type=_iou, default=0.5, help="IoU threshold for boxes and quads (default 0.5)"
    )
    return parser


def _load_records(source: Path, split: str, limit: int | None) -> tuple[list[Record], list[Path]]:
    records, paths = [], []
    for shard in find_shards(source, split):
        for record in iter_records(shard):
            if record.get("split", split) == split:
                records.append(record)
                paths.append(shard)
            if limit is not None and len(records) >= limit:
                return records, paths
    return records, paths


def ablation_gap(with_images: Mapping[str, Any], blank: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each metric with images, with blank images, and the gap between them."""
    rows = []
    for task, families in with_images["tasks"].items():
        for family, metrics in families.items():
            for name, value in metrics.items():
                if name in ("n", "missing", "with_problems") or not isinstance(value, float):
                    continue
                blanked = blank["tasks"].get(task, {}).get(family, {}).get(name)
                gap = value - blanked if isinstance(blanked, float) else None
                rows.append(
                    {
                        "task": task,
                        "family": family,
                        "metric": name,
                        "image": value,
                        "blank": blanked,
                        "gap": gap,
                    }
                )
    return rows


def _run_model(args: argparse.Namespace, console: Console) -> int:
    from geochat.modeling import load_pretrained, resolve_checkpoint
    from geochat.predict import predict_records

    records, paths = _load_records(args.data, args.split, args.limit)
    if not records:
        print(f"geochat eval: no {args.split} records in {args.data}", file=sys.stderr)
        return 2
    try:
        model_path = resolve_checkpoint(args.model)  # a run folder: its final/ or checkpoint
        model, processor = load_pretrained(model_path)
    except (OSError, ValueError) as error:
        print(f"geochat eval: {error}", file=sys.stderr)
        return 2
    print(f"evaluating {model_path}")
    runs = {"predictions": False} if args.no_ablation else {"predictions": False, "blank": True}
    reports = {}
    for name, blank in runs.items():
        predictions = predict_records(
            model, processor, records, paths, args.batch_size, args.max_new_tokens, blank
        )
        write_jsonl(
            args.out_dir / f"{name}.jsonl",
            ({"id": key, "answer": answer} for key, answer in predictions.items()),
        )
        reports[name] = score(records, predictions, args.iou)
    report = {"model": str(model_path), "data": str(args.data), **reports["predictions"]}
    print_report(report, console)
    if "blank" in reports:
        report["ablation"] = ablation_gap(reports["predictions"], reports["blank"])
        table = Table(title="image-ablation gap (metric with images - with blank images)")
        for column in ("task", "scored as", "metric", "image", "blank", "gap"):
            table.add_column(column)
        for row in report["ablation"]:
            table.add_row(*(_format(value) for value in row.values()))
        console.print(table)
    write_jsonl(args.out_dir / "metrics.json", [report])
    print(f"wrote predictions and metrics to {args.out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``geochat eval``: scores a model's answers against records, printing metrics per task.

    Returns 0 on success, 2 for unreadable input.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console()
    if args.model or args.data:
        if not (args.model and args.data) or args.records or args.predictions:
            parser.error("a model run needs --model and --data (and no --records/--predictions)")
        return _run_model(args, console)
    if not (args.records and args.predictions):
        parser.error("give --records and --predictions, or --model and --data")
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
