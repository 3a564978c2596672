"""Tests of the record contract: validation, JSONL reading and atomic writing."""

import json
from pathlib import Path

import pytest

from geochat.fileio import new_file_mode
from geochat.records import (
    RecordError,
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
    assert record_problems(record) == ["missing key 'image'", "missing key 'task'"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": ""}, "'id' must be a non-empty string"),
        ({"id": 7}, "'id' must be a non-empty string"),
        ({"width": 0}, "'width' must be a positive integer"),
        ({"height": 4.0}, "'height' must be a positive integer"),
        ({"width": True}, "'width' must be a positive integer"),  # regression: bool is an int
        ({"task": "detect"}, "unknown task 'detect'"),
        ({"objects": None}, "'objects' must be a list"),  # regression: used to raise TypeError
        ({"objects": {"category": "ship"}}, "'objects' must be a list"),
        ({"objects": ["ship"]}, "objects[0]: must be an object"),
        ({"objects": [{"hbb": [0, 0, 1, 1]}]}, "objects[0]: needs a string 'category'"),
        (
            {"objects": [{"category": "storage tank", "source_category": 7}]},
            "objects[0]: 'source_category' must be a string",
        ),
        ({"objects": [{"category": "a", "hbb": [0, 0, 1]}]}, "'hbb' must be [x0, y0, x1, y1]"),
        ({"objects": [{"category": "a", "quad": [[0, 0]] * 3}]}, "'quad' must be four"),
        ({"objects": [{"category": "a", "mask": {"size": [1, 1]}}]}, "'mask' must be COCO RLE"),
    ],
)
def test_record_problems_name_the_fault(changes, message):
    problems = record_problems(make_record(**changes))
    assert any(message in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("turns", "message"),
    [
        ("hello", "at least two turns"),
        ([{"from": "human", "value": "<image>\nq"}], "at least two turns"),
        ([{"from": "gpt", "value": "a"}, {"from": "gpt", "value": "b"}], "conversations[0]"),
        ([{"from": "human", "value": "<image>\nq"}, {"from": "gpt"}], "no string 'value'"),
        ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "'<image>'"),
    ],
)
def test_conversation_problems(turns, message):
    problems = record_problems(make_record(conversations=turns))
    assert any(message in problem for problem in problems), problems


def test_check_record_raises_with_the_id_and_every_problem():
    with pytest.raises(RecordError, match=r"record tile-0001: .*'width'.*unknown task"):
        check_record(make_record(width=-1, task="nope"))
    with pytest.raises(RecordError, match=r"record \?"):
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
    with pytest.raises(RecordError, match="unknown task"):
        list(iter_records(path))
    assert next(iter_records(path, validate=False))["task"] == "nope"


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
