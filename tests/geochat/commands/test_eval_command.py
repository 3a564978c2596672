"""End-to-end tests of ``geochat eval`` through the ``geochat`` command."""

import json

import pytest

from geochat import cli
from geochat.metrics import score
from geochat.records import write_jsonl

WIDTH, HEIGHT = 200, 100


def make_record(record_id, task, reference, objects=()):
    return {
        "id": record_id,
        "image": f"{record_id}.png",
        "width": WIDTH,
        "height": HEIGHT,
        "task": task,
        "conversations": [
            {"from": "human", "value": "<image>\nquestion"},
            {"from": "gpt", "value": reference},
        ],
        "objects": list(objects),
    }


RECORDS = [
    # The ship is [20, 10, 60, 50] px, i.e. [100, 100, 300, 500] in grammar coordinates.
    make_record(
        "refer-1",
        "refer",
        "<ref>the ship</ref><box>[[100,100,300,500]]</box>",
        [{"category": "ship", "hbb": [20, 10, 60, 50]}],
    ),
    make_record("refer-2", "refer", "<none>"),
    make_record("vqa-1", "vqa", "Yes"),
    make_record("count-1", "count", "There are 2 ships."),
]
PREDICTIONS = [
    # [30, 10, 70, 50]: IoU 0.6 with the ship.
    {"id": "refer-1", "answer": "<ref>the ship</ref><box>[[150,100,350,500]]</box>"},
    {"id": "refer-2", "answer": "<none>"},
    {"id": "vqa-1", "answer": "No."},
    {"id": "ghost", "answer": "a prediction without a record"},
]


@pytest.fixture
def files(tmp_path):
    records, predictions = tmp_path / "records.jsonl", tmp_path / "predictions.jsonl"
    write_jsonl(records, RECORDS)
    write_jsonl(predictions, PREDICTIONS)
    return records, predictions


def run_eval(records, predictions, *extra):
    return cli.main(["eval", "--records", str(records), "--predictions", str(predictions), *extra])


def test_eval_prints_tables_and_writes_json(files, tmp_path, capsys):
    out = tmp_path / "out" / "metrics.json"
    assert run_eval(*files, "--out", str(out)) == 0
    printed = capsys.readouterr().out
    for text in ("refer", "vqa", "count", "acc@0.5", "1 missing", f"wrote metrics to {out}"):
        assert text in printed
    report = json.loads(out.read_text())
    assert report["records"] == 4 and report["predictions"] == 4
    assert report["missing_predictions"] == ["count-1"]
    assert report["unknown_predictions"] == ["ghost"]
    assert report["tasks"]["refer"]["boxes"]["acc@0.5"] == 1.0
    assert report["tasks"]["vqa"]["exact"]["accuracy"] == 0.0
    count = report["tasks"]["count"]["count"]
    assert (count["n"], count["missing"], count["accuracy"], count["mae"]) == (1, 1, 0.0, 2.0)
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]


def test_the_iou_threshold_is_an_option(files, tmp_path):
    out = tmp_path / "metrics.json"
    assert run_eval(*files, "--iou", "0.7", "--out", str(out)) == 0
    report = json.loads(out.read_text())
    assert report["iou_threshold"] == 0.7
    assert report["tasks"]["refer"]["boxes"]["acc@0.7"] == 0.5  # only the <none> record


def test_score_is_reusable_without_files():
    predictions = {p["id"]: p["answer"] for p in PREDICTIONS}
    report = score(RECORDS[:2], predictions)
    assert report["tasks"]["refer"]["boxes"]["n"] == 2
    assert report["unknown_predictions"] == ["ghost", "vqa-1"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('{"id": "vqa-1", "answer": "yes"}\n{"id": "vqa-1", "answer": "no"}\n', "appears twice"),
        ('{"id": "vqa-1"}\n', "needs an 'answer'"),
        ('{"answer": "yes"}\n', "needs a string 'id'"),
        ('{"id": "vqa-1", "answer": [1]}\n', "needs an 'answer'"),
        ("not json\n", "not valid JSON"),
    ],
)
def test_bad_predictions_fail_with_a_message(files, tmp_path, capsys, lines, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines, encoding="utf-8")
    assert run_eval(files[0], bad) == 2
    assert message in capsys.readouterr().err


def test_missing_or_invalid_records_fail_with_a_message(files, tmp_path, capsys):
    assert run_eval(tmp_path / "missing.jsonl", files[1]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    invalid = tmp_path / "invalid.jsonl"
    write_jsonl(invalid, [{**RECORDS[0], "task": "dance"}])
    assert run_eval(invalid, files[1]) == 2
    err = capsys.readouterr().err
    assert "invalid.jsonl:1: record refer-1: task: 'dance' is not one of 'caption'" in err


def test_an_iou_out_of_range_is_a_usage_error(files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_eval(*files, "--iou", "1.5")
    assert exit_info.value.code == 2
    assert "(0, 1]" in capsys.readouterr().err


def test_model_run_writes_predictions_metrics_and_the_ablation_gap(tmp_path):
    from PIL import Image

    from geochat.modeling import tiny

    model, processor = tiny(image_size=32, patch_size=8, max_tiles_per_side=1)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    multi = make_record("multi-1", "multi_turn", "Yes")
    multi["conversations"] += [
        {"from": "human", "value": "How many?"},
        {"from": "gpt", "value": "2"},
    ]
    records = [*RECORDS, multi]
    for record in records:
        Image.new("RGB", (WIDTH, HEIGHT), (30, 90, 30)).save(tmp_path / record["image"])
    write_jsonl(tmp_path / "test.jsonl", [{**r, "split": "test"} for r in records])
    # A training build for the constant-answer baseline: "Yes" is the commonest answer.
    train = tmp_path / "train"
    write_jsonl(
        train / "train.jsonl",
        [
            {**make_record(f"t{i}", "vqa", "Yes" if i % 3 else "No"), "split": "train"}
            for i in range(6)
        ],
    )
    out = tmp_path / "eval"
    code = cli.main(
        [
            "eval",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(tmp_path),
            "--out-dir",
            str(out),
            "--max-new-tokens",
            "4",
            "--batch-size",
            "2",
            "--trivial-from",
            str(train),
            "--bootstrap",
            "20",
        ]
    )
    assert code == 0
    for name in ("predictions", "blank"):
        rows = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        assert {row["id"] for row in rows} == {record["id"] for record in records}
        # One answer per gpt turn of the multi-turn record, one string for the others.
        answers = {row["id"]: row["answer"] for row in rows}
        assert isinstance(answers["multi-1"], list) and len(answers["multi-1"]) == 2
        assert all(isinstance(answers[r["id"]], str) for r in RECORDS)
    report = json.loads((out / "metrics.json").read_text())
    assert report["records"] == len(records) and not report["missing_predictions"]
    rows = {(row["task"], row["metric"]): row for row in report["comparison"]}
    vqa = rows[("vqa", "accuracy")]
    # The constant "Yes" answers the vqa record right; the margin is over the best baseline.
    assert vqa["trivial"] == 1.0
    assert vqa["margin"] == pytest.approx(vqa["image"] - max(vqa["blank"], vqa["trivial"]))
    assert report["baselines"]["blank"]["vqa"]["exact"]["accuracy"] == vqa["blank"]
    assert "vqa" in report["intervals"]
    markdown = (out / "report.md").read_text()
    header = "| task | family | metric | n | image | interval | blank | trivial | margin |"
    assert header in markdown


def test_model_run_needs_model_and_data(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["eval", "--model", str(tmp_path)])
    assert "--model and --data" in capsys.readouterr().err


def test_model_run_takes_a_training_run_folder(tmp_path, capsys):
    from PIL import Image

    from geochat.modeling import tiny

    # A run killed before its final model: the newest complete checkpoint is evaluated.
    run = tmp_path / "run"
    model, processor = tiny(image_size=32, patch_size=8, max_tiles_per_side=1)
    for step in (1, 2):
        model.save_pretrained(run / f"checkpoint-{step}")
        processor.save_pretrained(run / f"checkpoint-{step}")
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    Image.new("RGB", (WIDTH, HEIGHT)).save(tmp_path / "vqa-1.png")
    write_jsonl(tmp_path / "test.jsonl", [{**RECORDS[2], "split": "test"}])
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(run), "--data", str(tmp_path), "--out-dir", str(out)]

    assert cli.main([*argv, "--no-ablation", "--max-new-tokens", "2"]) == 0

    assert f"evaluating {run / 'checkpoint-2'}" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["model"] == str(run / "checkpoint-2")


@pytest.mark.parametrize(
    ("model", "message"),
    [("empty-run", "holds no model: pass a checkpoint folder"), ("no/such/dir", "no model folder")],
)
def test_model_run_without_a_model_fails_with_a_message(files, tmp_path, capsys, model, message):
    (tmp_path / "empty-run").mkdir()
    write_jsonl(tmp_path / "test.jsonl", [{**RECORDS[2], "split": "test"}])
    argv = ["eval", "--model", str(tmp_path / model), "--data", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_model_run_evaluates_another_family_through_the_engine(checkpoints, tmp_path, capsys):
    # A tiny random Qwen2.5-VL checkpoint: its answers, in its dialect, are read by the engine.
    from PIL import Image

    model = checkpoints["qwen2_5_vl"]
    for record in RECORDS:
        Image.new("RGB", (WIDTH, HEIGHT), (30, 90, 30)).save(tmp_path / record["image"])
    write_jsonl(tmp_path / "test.jsonl", [{**r, "split": "test"} for r in RECORDS])
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(model), "--data", str(tmp_path / "test.jsonl")]
    argv += ["--out-dir", str(out), "--max-new-tokens", "4", "--batch-size", "3"]

    code = cli.main([*argv, "--device", "cpu", "--bootstrap", "0"])

    assert code == 0, capsys.readouterr().err
    for name in ("predictions", "blank"):
        rows = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        assert {row["id"] for row in rows} == {record["id"] for record in RECORDS}
    report = json.loads((out / "metrics.json").read_text())
    assert report["records"] == len(RECORDS) and not report["missing_predictions"]
