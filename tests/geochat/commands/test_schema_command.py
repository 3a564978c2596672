"""Tests of ``geochat schema``: the published JSON Schema of records."""

import copy
import json
from pathlib import Path

import pytest

from geochat.commands import schema
from geochat.records import RecordModel

COMMITTED = Path(__file__).parents[3] / "docs" / "record.schema.json"

RECORD = {
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
            "truncated": False,
        }
    ],
    "georef": {"crs": "EPSG:32633", "transform": [0.5, 0, 500000, 0, -0.5, 6000000]},
}


def test_schema_records_prints_the_record_json_schema(capsys):
    assert schema.main(["records"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert printed["properties"] == RecordModel.model_json_schema()["properties"]
    assert set(printed["required"]) == {"id", "image", "width", "height", "task", "conversations"}


def test_the_committed_schema_is_what_the_command_prints(capsys):
    schema.main(["records"])
    assert COMMITTED.read_text(encoding="utf-8") == capsys.readouterr().out, (
        "docs/record.schema.json is stale: geochat schema records > docs/record.schema.json"
    )


def test_an_unknown_schema_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        schema.main(["recipes"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'recipes'" in capsys.readouterr().err


def test_other_tools_read_records_with_the_committed_schema():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(COMMITTED.read_text()))
    assert list(validator.iter_errors(RECORD)) == []
    bad = copy.deepcopy(RECORD)
    bad["objects"][0]["hbb"] = [6.4, 9.6, 19.2]
    del bad["objects"][0]["category"]
    errors = sorted(".".join(map(str, e.absolute_path)) for e in validator.iter_errors(bad))
    assert errors == ["objects.0", "objects.0.hbb"]
