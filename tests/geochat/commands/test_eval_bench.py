"""``geochat eval`` on converted GeoChat-Bench fixtures: the benchmark's tables, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geochat import cli
from geochat.data_builders.converters import CONVERTERS
from geochat.records import iter_records, write_jsonl

DATA = Path(__file__).resolve().parents[2] / "data" / "geochat_bench"
NANO = Path(__file__).resolve().parents[3] / "geochat" / "assets" / "geochat-nano"
TABLES = ["referring", "region captioning", "LRBEN", "HRBEN", "scene classification"]


@pytest.fixture
def bench(tmp_path):
    summary = CONVERTERS["geochat_bench"].convert(DATA, tmp_path / "bench", skip_invalid=True)
    return Path(summary["jsonl"])


def test_reference_answers_score_full_marks_in_the_papers_layout(bench, tmp_path, capsys):
    records = list(iter_records(bench))
    predictions = tmp_path / "perfect.jsonl"
    write_jsonl(
        predictions, ({"id": r["id"], "answer": r["conversations"][1]["value"]} for r in records)
    )
    out = tmp_path / "metrics.json"
    assert (
        cli.main(
            ["eval", "--records", str(bench), "--predictions", str(predictions), "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for title in TABLES:
        assert f"GeoChat-Bench {title} (%)" in printed
    assert "[refer]" in printed and "[grounding]" in printed and "Rural/Urban" in printed
    tables = json.loads(out.read_text())["geochat_bench"]
    assert list(tables) == TABLES
    assert list(tables["referring"]) == [
        "Small",
        "Medium",
        "Large",
        "Single-object",
        "Multi-object",
        "[refer]",
        "[grounding]",
        "Overall",
    ]
    assert tables["referring"]["Overall"]["acc@0.5"] == 1.0
    assert tables["LRBEN"]["Average"]["accuracy"] == tables["HRBEN"]["Overall"]["accuracy"] == 1.0
    assert tables["scene classification"]["AID"]["accuracy"] == 1.0
    captions = tables["region captioning"]["Overall"]
    assert captions["ROUGE-1"] == captions["ROUGE-L"] == 1.0
    assert 0.99 < captions["METEOR"] < 1.0  # METEOR's fragmentation penalty never vanishes


def test_wrong_and_missing_answers_lower_the_right_columns(bench, tmp_path):
    records = list(iter_records(bench))
    answers = {r["id"]: r["conversations"][1]["value"] for r in records}
    presence = next(
        r["id"] for r in records if r["source"].get("type") == "presence" and "lrben" in r["id"]
    )
    answers[presence] = "no"  # every presence truth in the fixture is "yes"
    del answers[next(r["id"] for r in records if r["source"]["part"] == "aid")]
    predictions = tmp_path / "predictions.jsonl"
    write_jsonl(predictions, ({"id": k, "answer": v} for k, v in answers.items()))
    out = tmp_path / "metrics.json"
    assert (
        cli.main(
            ["eval", "--records", str(bench), "--predictions", str(predictions), "--out", str(out)]
        )
        == 0
    )
    tables = json.loads(out.read_text())["geochat_bench"]
    lrben = tables["LRBEN"]
    assert lrben["Presence"]["accuracy"] == 0.0 and lrben["Comparison"]["accuracy"] == 1.0
    assert lrben["Average"]["accuracy"] == pytest.approx(2 / 3)
    assert tables["scene classification"]["AID"] == {"n": 2, "missing": 1, "accuracy": 0.5}


@pytest.mark.slow
def test_the_bundled_model_runs_on_the_benchmark(bench, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["eval", "--model", str(NANO), "--data", str(bench), "--out-dir", str(out)]
    assert cli.main([*args, "--no-ablation", "--max-new-tokens", "8", "--batch-size", "16"]) == 0
    assert "GeoChat-Bench referring (%)" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert list(report["geochat_bench"]) == TABLES and not report["missing_predictions"]
    for table in report["geochat_bench"].values():
        for metrics in table.values():
            assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if isinstance(v, float))
