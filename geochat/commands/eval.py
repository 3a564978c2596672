"""``geochat eval``: scores a model's answers against records and reports metrics per task.

Usage::

    geochat eval --records R.jsonl --predictions P.jsonl [--out metrics.json] [--iou 0.5]
    geochat eval --model M --data DIR [--split test] [--out-dir DIR] [--limit N] [--seed S]
                 [--no-ablation] [--trivial-from TRAIN_BUILD] [--bootstrap 500]
                 [--device cuda]
    geochat eval --scenes WORLDS_DIR --model M [--categories car,water] [--limit N] ...

The third form scores whole scenes of synthetic worlds against their OSM truth
(:mod:`geochat.commands.eval_scenes`).

The second form runs the model on the records first (batched, greedy, through the engine:
:mod:`geochat.predict`) and, unless ``--no-ablation``, again with every image blanked: the
**image-ablation gap**, the drop of each metric without the image, shows whether the model
reads its images at all.
``--trivial-from`` adds the **trivial-answer baseline**: the best constant answer of each
question template, learned from a training build (:mod:`geochat.evaluation`). ``--limit``
takes records spread evenly over the build's worlds (or images) with ``--seed``, and every
metric gets a bootstrap interval over worlds. Besides ``metrics.json`` the run writes
``report.md``: the same tables in Markdown, to paste into a README or model card.

The predictions file is JSONL, one object a line, joined to the records by ``id``::

    {"id": "<record id>", "answer": "<the model's reply to the record's first human turn>"}

For ``multi_turn`` records ``answer`` may instead be a list of replies, one per gpt turn, each
generated after the reference conversation up to that turn. A record without a prediction is
scored as wrong and listed under ``missing_predictions``; a prediction without a record is
listed under ``unknown_predictions``. How each task is scored is documented in
:mod:`geochat.metrics`. Records converted from GeoChat-Bench (``geochat build convert
geochat_bench``) are also scored by the benchmark's own rules and printed as its tables.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from tqdm import tqdm

from geochat.commands import eval_scenes
from geochat.evaluation import RESAMPLES, fit_trivial_answers, sample_records
from geochat.fileio import atomic_write_text
from geochat.metrics import BENCH_DATASET, Answer, score
from geochat.records import (
    Record,
    RecordError,
    find_shards,
    iter_jsonl,
    iter_records,
    write_jsonl,
)

BENCH_TABLE_WIDTH = 120


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
        if not (
            isinstance(answer, str)
            or (isinstance(answer, list) and all(isinstance(a, str) for a in answer))
        ):
            raise PredictionError(f"{where} needs an 'answer' string (or list of strings)")
        if row["id"] in predictions:
            raise PredictionError(f"{where}: id {row['id']!r} appears twice")
        predictions[row["id"]] = answer
    return predictions


def _format(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _interval(report: Mapping[str, Any], task: str, family: str, name: str) -> str:
    low_high = report.get("intervals", {}).get(task, {}).get(family, {}).get(name)
    return "-" if low_high is None else f"{low_high[0]:.3f}-{low_high[1]:.3f}"


def comparison_rows(
    report: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per metric: the model's value and interval beside each baseline's value.

    Args:
        report: The model's report (:func:`score`).
        baselines: ``{name: report}``, e.g. ``{"blank": ..., "trivial": ...}``.

    Returns:
        Rows with ``task``, ``family``, ``metric``, ``n``, ``image``, ``interval``, one column
        per baseline, and ``margin``: the value minus the best baseline (for ``mae``, the best
        baseline minus the value, so that a positive margin is always better than baseline).
    """
    rows = []
    for task, families in report["tasks"].items():
        for family, metrics in families.items():
            for name, value in metrics.items():
                if not isinstance(value, float):
                    continue
                row = {
                    "task": task,
                    "family": family,
                    "metric": name,
                    "n": metrics["n"],
                    "image": value,
                    "interval": _interval(report, task, family, name),
                }
                others = []
                for baseline, baseline_report in baselines.items():
                    other = baseline_report["tasks"].get(task, {}).get(family, {}).get(name)
                    row[baseline] = other
                    if isinstance(other, float):
                        others.append(other)
                lower_is_better = name == "mae"
                if others:
                    best = min(others) if lower_is_better else max(others)
                    row["margin"] = best - value if lower_is_better else value - best
                else:
                    row["margin"] = None
                rows.append(row)
    return rows


def category_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per task and category: ``n`` and the family's headline metric."""
    rows = []
    for task, categories in report.get("by_category", {}).items():
        for category, metrics in categories.items():
            name = _headline(report, metrics["family"])
            rows.append(
                {
                    "task": task,
                    "category": category,
                    "n": metrics["n"],
                    "metric": name,
                    "value": metrics.get(name),
                }
            )
    return rows


def turn_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per dialogue turn and scoring family: ``n`` and the family's headline metric."""
    rows = []
    for turn, families in report.get("by_turn", {}).items():
        for family, metrics in families.items():
            name = _headline(report, family)
            rows.append(
                {
                    "turn": turn,
                    "family": family,
                    "n": metrics["n"],
                    "metric": name,
                    "value": metrics.get(name),
                }
            )
    return rows


def _headline(report: Mapping[str, Any], family: str) -> str:
    """The metric a family is summed up by in the per-category and per-turn tables."""
    headline = {
        "boxes": f"acc@{report['iou_threshold']:g}",
        "mask": "giou",
        "count": "accuracy",
        "caption": "unigram_f1",
    }
    return headline.get(family, "accuracy")


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in rows[0] if rows else ():
        table.add_column(column)
    for row in rows:
        table.add_row(*(_format(value) for value in row.values()))
    return table


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a GitHub Markdown table (what ``report.md`` holds, to paste into docs)."""
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_format(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def print_report(
    report: Mapping[str, Any],
    console: Console,
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Prints the metrics (beside any baselines) and the per-category table.

    Returns:
        The printed tables as ``(title, rows)``, for :func:`markdown_table`.
    """
    tables = [
        (
            "metrics (interval: bootstrap over worlds or images)",
            comparison_rows(report, baselines or {}),
        ),
        ("per category (refer, ground, segment, count)", category_rows(report)),
        ("dialogues (multi_turn) per turn", turn_rows(report)),
    ]
    for title, rows in tables:
        if rows:
            console.print(_table(title, rows))
    for title, columns in report.get(BENCH_DATASET, {}).items():
        print_bench_table(title, columns, console)
    # Plain print: rich would wrap long lines and paths.
    print(
        f"{report['records']} records from {report['groups']} worlds or images, "
        f"{report['predictions']} predictions; "
        f"{len(report['missing_predictions'])} missing (scored as wrong), "
        f"{len(report['unknown_predictions'])} without a record, "
        f"{len(report['skipped'])} turns skipped, {len(report['notes'])} notes on the truth"
    )
    return tables


def print_bench_table(title: str, columns: Mapping[str, Any], console: Console) -> None:
    """Prints one GeoChat-Bench table as the paper lays it out: a column per group, scores in %.

    The number of questions of each column is its first row; ``missing`` is in the JSON report.
    """
    heading = f"GeoChat-Bench {title} (%)"
    table = Table(title=heading, title_justify="left", min_width=len(heading))
    table.add_column("metric")
    for column in columns:
        table.add_column(escape(column), justify="right", no_wrap=True)
    names = list(dict.fromkeys(name for metrics in columns.values() for name in metrics))
    for name in (n for n in names if n != "missing"):
        values = [metrics.get(name) for metrics in columns.values()]
        table.add_row(name, *(f"{100 * v:.2f}" if isinstance(v, float) else str(v) for v in values))
    # The paper's tables are wide: never squeeze them into an 80-column pipe.
    Console(file=console.file, width=max(console.width, BENCH_TABLE_WIDTH)).print(table)


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
    run.add_argument("--base", help="base model of an adapter --model (default: the one it names)")
    run.add_argument("--data", type=Path, help="records: a JSONL file or a build folder")
    run.add_argument("--split", default="test", help="split of a build folder (default test)")
    run.add_argument(
        "--limit",
        type=int,
        help="evaluate N records spread evenly over the build's worlds or images (--seed)",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of --limit and the bootstrap")
    run.add_argument(
        "--trivial-from",
        type=Path,
        help="a training build: add the best-constant-answer-per-question baseline learned on it",
    )
    run.add_argument("--out-dir", type=Path, default=Path("eval"), help="predictions and metrics")
    run.add_argument(
        "--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1 (default cpu)"
    )
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--max-new-tokens", type=int, default=128)
    run.add_argument("--no-ablation", action="store_true", help="skip the blank-image run")
    eval_scenes.add_arguments(parser)
    parser.add_argument(
        "--iou", type=_iou, default=0.5, help="IoU threshold for boxes and quads (default 0.5)"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=RESAMPLES,
        help=f"bootstrap draws over worlds for the intervals; 0 for none (default {RESAMPLES})",
    )
    return parser


def _load_records(
    source: Path, split: str, limit: int | None, seed: int
) -> tuple[list[Record], list[Path]]:
    pairs = [
        (record, shard)
        for shard in find_shards(source, split)
        for record in iter_records(shard)
        if record.get("split", split) == split
    ]
    chosen = {id(record) for record in sample_records([r for r, _ in pairs], limit, seed)}
    kept = [(record, shard) for record, shard in pairs if id(record) in chosen]
    return [record for record, _ in kept], [shard for _, shard in kept]


def _trivial_predictions(
    train_build: Path, records: list[Record], iou_threshold: float, seed: int
) -> dict[str, Answer]:
    train = [r for shard in find_shards(train_build, "train") for r in iter_records(shard)]
    if not train:
        raise FileNotFoundError(f"no train records in {train_build}")
    trivial = fit_trivial_answers(
        tqdm(train, desc="fitting constant answers", unit="record", disable=None),
        iou_threshold,
        seed,
    )
    return dict(trivial.predictions(records))


def _write_markdown(path: Path, tables: list[tuple[str, list[dict[str, Any]]]]) -> None:
    text = "".join(f"### {title}\n\n{markdown_table(rows)}\n" for title, rows in tables if rows)
    atomic_write_text(path, text)


def _run_model(args: argparse.Namespace, console: Console) -> int:
    from geochat.engine import load_transformers
    from geochat.modeling import resolve_checkpoint
    from geochat.predict import predict_records

    try:
        records, paths = _load_records(args.data, args.split, args.limit, args.seed)
    except (OSError, RecordError) as error:
        print(f"geochat eval: {error}", file=sys.stderr)
        return 2
    if not records:
        print(f"geochat eval: no {args.split} records in {args.data}", file=sys.stderr)
        return 2
    try:
        model_path = resolve_checkpoint(args.model)  # a run folder: its final/ or checkpoint
        assistant = load_transformers(model_path, device=args.device, base=args.base)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"geochat eval: {error}", file=sys.stderr)
        return 2
    print(f"evaluating {model_path}")
    baselines: dict[str, dict[str, Any]] = {}
    if args.trivial_from is not None:
        try:
            trivial = _trivial_predictions(args.trivial_from, records, args.iou, args.seed)
        except (OSError, RecordError) as error:
            print(f"geochat eval: {error}", file=sys.stderr)
            return 2
        write_jsonl(
            args.out_dir / "trivial.jsonl", ({"id": k, "answer": a} for k, a in trivial.items())
        )
        baselines["trivial"] = score(records, trivial, args.iou)
    runs = {"predictions": False} if args.no_ablation else {"predictions": False, "blank": True}
    reports = {}
    for name, blank in runs.items():
        predictions = predict_records(
            assistant, records, paths, args.batch_size, args.max_new_tokens, blank
        )
        write_jsonl(
            args.out_dir / f"{name}.jsonl",
            ({"id": key, "answer": answer} for key, answer in predictions.items()),
        )
        resamples = args.bootstrap if name == "predictions" else 0
        reports[name] = score(records, predictions, args.iou, resamples, args.seed)
    if "blank" in reports:
        baselines = {"blank": reports["blank"], **baselines}
    report = {"model": str(model_path), "data": str(args.data), **reports["predictions"]}
    tables = print_report(report, console, baselines)
    report["baselines"] = {name: base["tasks"] for name, base in baselines.items()}
    report["comparison"] = tables[0][1]
    write_jsonl(args.out_dir / "metrics.json", [report])
    _write_markdown(args.out_dir / "report.md", tables)
    print(f"wrote predictions, metrics.json and report.md to {args.out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``geochat eval``: scores a model's answers against records, printing metrics per task.

    Returns 0 on success, 2 for unreadable input.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console()
    if args.scenes is not None:
        if not args.model or args.data or args.records or args.predictions:
            parser.error("--scenes needs --model (and no --data, --records or --predictions)")
        return eval_scenes.run_scene_eval(args, console)
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
        tqdm(records, desc="scoring", unit="record", disable=None),
        predictions,
        args.iou,
        args.bootstrap,
    )
    print_report(report, console)
    if args.out is not None:
        # One JSON object on one line is a valid JSON file, written atomically.
        write_jsonl(args.out, [report])
        print(f"wrote metrics to {args.out}")
    return 0
