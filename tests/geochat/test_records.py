"""Tests of the record contract: validation, JSONL reading and atomic writing."""

import json
from pathlib import Path

import pytest

from geochat.fileio import new_file_mode
from geochat.records import (
    RecordError,
    RecordModel,
    check_record,
    image_path,
    iter_jsonl,
    iter_records,
    record_problems,
    write_jsonl,
)


def make_record(**changes):
    record = {
        "id": "tile-0001",
        "image": "images/tile-0001.png",
        "width": 64,
        "height": 48,
        "task": "refer",
        "conversations": [
            {"from": "human", "value": "<image>\nWhere is the ship?"},
            {"from": "gpt", "value": "<ref>the ship</ref><box>[[100,200,300,400]]</box>"},
        ],
        "objects": [
            {
                "category": "ship",
                "hbb": [6.4, 9.6, 19.2, 19.2],
                "quad": [[6.4, 9.6], [19.2, 9.6], [19.2, 19.2], [6.4, 19.2]],
                "mask": {"size": [48, 64], "counts": "abc"},
            }
        ],
    }
    record.update(changes)
    return record


def test_a_valid_record_has_no_problems():
    assert record_problems(make_record()) == []
    assert record_problems(make_record(objects=[])) == []
    record = make_record()
    del record["objects"]
    assert check_record(record) is record


def test_non_dict_and_missing_keys():
    assert record_problems([1, 2]) == ["a record must be a JSON object, got list"]
    record = make_record()
    del record["image"], record["task"]
    assert record_problems(record) == ["image: Field required", "task: Field required"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": ""}, "id: String should have at least 1 character"),
        ({"id": 7}, "id: Input should be a valid string"),
        ({"width": 0}, "width: Input should be greater than 0"),
        ({"height": 4.0}, "height: Input should be a valid integer (got 4.0)"),
        ({"width": True}, "width: Input should be a valid integer"),  # regression: bool is an int
        ({"task": "detect"}, "task: 'detect' is not one of 'caption', 'vqa'"),
        ({"objects": None}, "objects: Input should be a valid list"),  # regression: TypeError
        ({"objects": {"category": "ship"}}, "objects: Input should be a valid list"),
        ({"objects": ["ship"]}, "objects.0: must be a JSON object, got str"),
        ({"objects": [{"hbb": [0, 0, 1, 1]}]}, "objects.0.category: Field required"),
        (
            {"objects": [{"category": "storage tank", "source_category": 7}]},
            "objects.0.source_category: Input should be a valid string",
        ),
        ({"objects": [{"category": "a", "hbb": [0, 0, 1]}]}, "objects.0.hbb: List should have"),
        ({"objects": [{"category": "a", "hbb": [2, 0, 1, 1]}]}, "objects.0.hbb: x1 must be >= x0"),
        ({"objects": [{"category": "a", "hbb": [0, 2, 1, 1]}]}, "objects.0.hbb: y1 must be >= y0"),
        ({"objects": [{"category": "a", "hbb": [0, 0, "1", 1]}]}, "objects.0.hbb.2: Input should"),
        ({"objects": [{"category": "a", "quad": [[0, 0]] * 3}]}, "objects.0.quad: List should"),
        ({"objects": [{"category": "a", "mask": {"size": [1, 1]}}]}, "objects.0.mask.counts"),
        ({"objects": [{"category": "a", "hbox": [0, 0, 1, 1]}]}, "objects.0.hbox: Extra inputs"),
        ({"objects": [{"category": "a", "truncated": "no"}]}, "objects.0.truncated: Input"),
        ({"gsd": 0}, "gsd: Input should be greater than 0"),
        ({"georef": {"crs": "EPSG:32633", "transform": [1, 0]}}, "georef.transform: List"),
    ],
)
def test_record_problems_name_the_field_and_the_fault(changes, message):
    problems = record_problems(make_record(**changes))
    assert any(problem.startswith(message) for problem in problems), problems


def test_optional_keys_and_unknown_record_keys_are_accepted():
    record = make_record(
        gsd=0.5,
        georef={"crs": "EPSG:32633", "transform": [0.5, 0, 500000, 0, -0.5, 6000000]},
        source={"dataset": "dota", "tile": "P0001"},
        split="val",
        answer_type="free",  # LLaVA-compatible files carry their own keys: kept as they are
    )
    record["objects"][0].update(id="way/1", truncated=True, tags={"building": "yes"}, score=0.9)
    assert check_record(record) is record
    assert RecordModel.model_validate(record).model_extra == {"answer_type": "free"}


@pytest.mark.parametrize(
    ("turns", "message"),
    [
        ("hello", "conversations: Input should be a valid list"),
        ([{"from": "human", "value": "<image>\nq"}], "conversations: List should have at least 2"),
        (
            [{"from": "gpt", "value": "a"}, {"from": "gpt", "value": "b"}],
            "conversations: turn 0 must be a 'human' turn",
        ),
        (
            [{"from": "human", "value": "<image>\nq"}, {"from": "human", "value": "a"}],
            "conversations: turn 1 must be a 'gpt' turn",
        ),
        ([{"from": "human", "value": "<image>\nq"}, {"from": "gpt"}], "conversations.1.value"),
        (
            [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
            "conversations: the first human turn must contain '<image>'",
        ),
    ],
)
def test_conversation_problems(turns, message):
    problems = record_problems(make_record(conversations=turns))
    assert any(problem.startswith(message) for problem in problems), problems


def test_check_record_raises_with_the_id_and_every_problem():
    expected = r"record tile-0001: width: .* \(got -1\); task: 'nope' is not one of"
    with pytest.raises(RecordError, match=expected):
        check_record(make_record(width=-1, task="nope"))
    with pytest.raises(RecordError, match=r"record \?: a record must be a JSON object, got str"):
        check_record("not a record")


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "nested" / "shard.jsonl"
    rows = [make_record(id=f"r{i}") for i in range(3)]
    assert write_jsonl(path, iter(rows)) == 3
    assert list(iter_records(path)) == rows
    assert [p.name for p in path.parent.iterdir()] == ["shard.jsonl"]  # no temporary left


def test_written_records_get_the_permissions_of_a_new_file(tmp_path):
    # Regression: shards, predictions and metrics were written 0600 (mkstemp's mode).
    path = tmp_path / "records.jsonl"
    write_jsonl(path, [make_record()])
    assert path.stat().st_mode & 0o777 == new_file_mode()


def test_iter_jsonl_skips_blank_lines_and_reports_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"b": 2}\n{oops\n', encoding="utf-8")
    rows = iter_jsonl(path)
    assert next(rows) == {"a": 1}
    assert next(rows) == {"b": 2}
    with pytest.raises(RecordError, match=r"bad\.jsonl:5: not valid JSON"):
        next(rows)
    with pytest.raises(FileNotFoundError):
        next(iter_jsonl(tmp_path / "missing.jsonl"))


def test_iter_records_validates_unless_told_not_to(tmp_path):
    path = tmp_path / "shard.jsonl"
    write_jsonl(path, [make_record(task="nope")])
    with pytest.raises(RecordError, match="task: 'nope' is not one of"):
        list(iter_records(path))
    assert next(iter_records(path, validate=False))["task"] == "nope"


def test_a_wrong_field_fails_at_the_boundary_with_its_file_line_and_path(tmp_path):
    bad = make_record(id="r3")
    bad["objects"][0]["hbb"] = [19.2, 9.6, 6.4, 19.2]
    path = tmp_path / "train-00000.jsonl"
    write_jsonl(path, [make_record(id="r1"), make_record(id="r2"), bad])
    # a blank line is skipped but still counted, so the number is the line an editor shows
    path.write_text(path.read_text().replace("\n", "\n\n", 1), encoding="utf-8")
    rows = iter_records(path)
    assert [next(rows)["id"], next(rows)["id"]] == ["r1", "r2"]
    expected = r"train-00000\.jsonl:4: record r3: objects\.0\.hbb: x1 must be >= x0$"
    with pytest.raises(RecordError, match=expected):
        next(rows)


def test_an_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "shard.jsonl"
    write_jsonl(path, [{"id": "old"}])

    def rows():
        yield {"id": "new"}
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        write_jsonl(path, rows())
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"id": "old"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.jsonl"]


def test_image_path_is_relative_to_the_jsonl_file(tmp_path):
    assert image_path(make_record(), tmp_path / "shards" / "a.jsonl") == Path(
        tmp_path / "shards" / "images" / "tile-0001.png"
    )
