"""GeoChat-Bench converter: records from the fake files of tests/data/geochat_bench/data.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from geochat import geometry
from geochat.data_builders.cli import main as build_main
from geochat.data_builders.converters import CONVERTERS, ConversionError
from geochat.data_builders.converters.common import ConversionWarning
from geochat.grammar import parse
from geochat.records import image_path, iter_records

DATA = Path(__file__).resolve().parents[1] / "data" / "geochat_bench"


def fake() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fake_geochat_bench", DATA / "data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAKE = fake()


def run(out: Path, src: Path = DATA, **options: Any) -> tuple[dict, dict[str, dict]]:
    summary = CONVERTERS["geochat_bench"].convert(src, out, None, **options)
    return summary, {r["id"]: r for r in iter_records(summary["jsonl"])}


def copy_of(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA, tmp_path / "src", ignore=shutil.ignore_patterns("*.py")))


def by_part(records: dict[str, dict], part: str) -> list[dict]:
    return [r for r in records.values() if r["source"]["part"] == part]


def test_the_malformed_line_stops_the_conversion_naming_file_and_line(tmp_path):
    with pytest.raises(ConversionError, match=r"referring\.jsonl:4: not valid JSON"):
        run(tmp_path)


def test_every_part_is_converted_and_the_malformed_line_skipped(tmp_path):
    summary, records = run(tmp_path, skip_invalid=True)
    assert summary["tasks"] == {"refer": 3, "identify": 2, "vqa": 6, "classify": 5}
    # Images of every folder are counted: 2 + 2 + 1 + 2 + 3.
    assert summary["images"] == len({r["image"] for r in records.values()}) == 10
    for record in records.values():
        assert image_path(record, summary["jsonl"]).is_file()
        assert record["source"]["dataset"] == "geochat_bench"
    again, _ = run(tmp_path / "again", skip_invalid=True)
    assert Path(again["jsonl"]).read_bytes() == Path(summary["jsonl"]).read_bytes()


def test_referring_truth_is_the_pixel_quads_and_the_answer_reads_back(tmp_path):
    _, records = run(tmp_path, skip_invalid=True)
    refer = {r["source"]["question_id"]: r for r in by_part(records, "referring")}
    assert set(refer) == {item["question_id"] for item in FAKE.REFERRING}
    for item in FAKE.REFERRING:
        record = refer[item["question_id"]]
        assert record["task"] == "refer"
        assert item["question"] in record["conversations"][0]["value"]
        source = record["source"]
        assert (source["question"], source["type"], source["size_group"]) == (
            item["question"],
            item["type"],
            item["size_group"],
        )
        answer = parse(
            record["conversations"][1]["value"], record["width"], record["height"], strict=True
        )
        assert [o.phrase for o in answer.objects] == [item["question"]] * len(item["ground_truth"])
        for obj, parsed in zip(record["objects"], answer.objects, strict=True):
            np.testing.assert_allclose(
                geometry.canonical_quad(parsed.quad), obj["quad"], atol=record["width"] / 2000
            )
    # The flat eight-number quad is kept; the box sticking out of the 64 px image is clipped.
    cars = refer[2]["objects"]
    np.testing.assert_allclose(
        cars[0]["quad"],
        geometry.canonical_quad(np.reshape(FAKE.REFERRING[1]["ground_truth"][0], (4, 2))),
    )
    assert cars[1]["hbb"] == [56.0, 2.0, 64.0, 8.0] and cars[1]["truncated"]
    assert [o["id"] for o in cars] == ["8", "9"]


def test_the_report_and_manifest_say_what_was_dropped_and_warned_about(tmp_path):
    with pytest.warns(ConversionWarning) as caught:
        summary, records = run(tmp_path, skip_invalid=True)
    assert summary["dropped"] == {
        "ConversionError (--skip-invalid)": {"referring": 1},
        "field not converted": {"img_id": 1},
    }
    assert summary["skipped"] == {"ConversionError (--skip-invalid)": 1, "field not converted": 1}
    assert summary["warnings"] == {
        "obj_ids not one per quad (ids left out)": {"referring": 1},
        "true class not among the listed classes (answered as written)": {"agricultural": 1},
    }
    assert len(caught) == 2
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["summary"] == summary
    arguments = manifest["arguments"]
    assert arguments["src"] == str(DATA) and arguments["skip_invalid"] is True
    assert arguments["parts"] == [
        "referring",
        "region_captioning",
        "lrben",
        "hrben",
        "aid",
        "ucmerced",
    ]
    assert arguments["aid_images"] == "AID"
    ship = next(r for r in records.values() if r["source"]["question_id"] == 3)
    assert [obj["id"] for obj in ship["objects"]] == [None]
    unlisted = next(r for r in records.values() if r["source"]["type"] == "agricultural")
    assert unlisted["conversations"][1]["value"] == "agricultural"


def test_a_malformed_line_is_dropped_by_part_and_a_clean_run_warns_nothing(tmp_path):
    src = copy_of(tmp_path)
    (src / "aid.jsonl").write_text('{"question_id": \n' + json.dumps(FAKE.AID[0]) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary, _ = run(tmp_path / "out", src=src, parts=("aid",), skip_invalid=True)
    assert summary["tasks"] == {"classify": 1}
    assert summary["dropped"] == {"ConversionError (--skip-invalid)": {"aid": 1}}
    assert summary["warnings"] == {}


def test_referring_objects_take_the_category_their_expression_names(tmp_path):
    _, records = run(tmp_path, skip_invalid=True)
    found = {
        (obj["category"], obj["source_category"])
        for record in by_part(records, "referring")
        for obj in record["objects"]
    }
    assert found == {
        ("plane", "the large plane on the left"),
        ("car", "all the small white cars"),
        ("ship", "the ship at the bottom"),
    }


def test_region_objects_take_the_category_their_caption_names(tmp_path):
    _, records = run(tmp_path, skip_invalid=True)
    found = [
        (obj["category"], obj["source_category"])
        for record in by_part(records, "region_captioning")
        for obj in record["objects"]
    ]
    assert found == [
        ("car", "a small white car parked next to a building"),
        ("plane", "a large plane on the apron"),
    ]


def test_scene_classes_keep_their_words_and_get_the_vocabulary_name_where_it_has_one(tmp_path):
    _, records = run(tmp_path, skip_invalid=True)
    scenes = {
        r["source"]["source_category"]: r
        for r in by_part(records, "aid") + by_part(records, "ucmerced")
    }
    assert {name: r["source"]["category"] for name, r in scenes.items()} == {
        "Airport": "airport",
        "MediumResidential": None,
        "agricultural": None,
        "denseresidential": None,
        "storagetanks": "storage tank",
    }
    assert scenes["storagetanks"]["conversations"][1]["value"] == "storage tanks"
    assert all(r["objects"] == [] for r in scenes.values())


def test_region_captioning_reads_geochat_boxes_on_the_padded_square(tmp_path):
    _, records = run(tmp_path, skip_invalid=True)
    regions = {r["source"]["question_id"]: r for r in by_part(records, "region_captioning")}
    wide = regions[11]
    assert wide["task"] == "identify" and (wide["width"], wide["height"]) == (64, 48)
    np.testing.assert_allclose(wide["objects"][0]["hbb"], FAKE.REGIONS[11])
    question = parse(wide["conversations"][0]["value"], 64, 48, strict=True).objects
    np.testing.assert_allclose(question[0].hbb, FAKE.REGIONS[11], atol=0.05)
    assert wide["conversations"][1]["value"] == FAKE.REGION_CAPTIONS[0]["ground_truth"]
    assert wide["source"]["question"] == "{<25><25><50><50>|<0>}"
    # The rotated region is asked as a quad.
    assert "<quad>" in regions[12]["conversations"][0]["value"]


def test_vqa_answers_come_from_rsvqa_by_question_id(tmp_path):
    _, records = run(tmp_path, skip_invalid=True)
    answers = {**FAKE.LR_ANSWERS, **FAKE.HR_ANSWERS}
    vqa = by_part(records, "lrben") + by_part(records, "hrben")
    assert len(vqa) == len(answers)
    for record in vqa:
        source = record["source"]
        # The inactive "maybe" answer listed first is ignored.
        assert record["conversations"][1]["value"] == answers[source["question_id"]]
        assert record["conversations"][0]["value"] == f"<image>\n{source['question']}"
        assert source["type"] in {"presence", "comp", "rural_urban", "count"}


def test_scene_class_is_the_question_id_folder_and_answers_use_the_listed_words(tmp_path):
    _, records = run(tmp_path, skip_invalid=True)
    scenes = {
        r["source"]["question_id"]: r
        for r in by_part(records, "aid") + by_part(records, "ucmerced")
    }
    medium = scenes["MediumResidential/mediumresidential_2.jpg"]
    assert medium["source"]["type"] == "MediumResidential"  # not the "...gt" ground_truth
    assert medium["conversations"][1]["value"] == "medium residential"
    assert medium["image"].endswith("mediumresidential_2.jpg")  # found despite the .png name
    assert medium["source"]["classes"] == ["airport", "bare land", "medium residential"]
    assert scenes["denseresidential/denseresidential01.tif"]["conversations"][1]["value"] == (
        "dense residential"
    )


def test_parts_option_and_missing_folders_or_answers(tmp_path):
    summary, _ = run(tmp_path / "a", parts=("aid",))
    assert summary["tasks"] == {"classify": 2}
    with pytest.raises(ConversionError, match=r"image folder of hrben\.jsonl not found"):
        run(tmp_path / "b", parts=("hrben",), hrben_images="nowhere")
    with pytest.raises(ConversionError, match="file not found"):
        run(tmp_path / "c", parts=("lrben",), lrben_answers="missing.json")
    src = copy_of(tmp_path)
    (src / "RSVQA_LR" / "LR_split_test_answers.json").write_text('{"answers": []}')
    with pytest.raises(ConversionError, match=r"lrben\.jsonl:1: .*no answer to question 100"):
        run(tmp_path / "d", src=src, parts=("lrben",))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"question_id": 9, "image_id": "wide", "question": "x", "ground_truth": [[1, 2, 3]]}',
            "quad",
        ),
        (
            '{"question_id": 9, "image_id": "wide", "question": "x", '
            '"ground_truth": [[[1, 2, 9, 2], [9, 9, 1, 9]]]}',
            "quad",
        ),
        (
            '{"question_id": 9, "image_id": "wide", "question": "x", "ground_truth": []}',
            "non-empty",
        ),
        (
            '{"question_id": 9, "image_id": "wide", "question": "x", '
            '"ground_truth": [[[500, 500], [600, 500], [600, 600], [500, 600]]]}',
            "outside",
        ),
        (
            '{"question_id": 9, "image_id": "nope", "question": "x", '
            '"ground_truth": [[0, 0, 1, 0, 1, 1, 0, 1]]}',
            "image",
        ),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_referring_lines_name_file_and_line(tmp_path, line, message):
    src = copy_of(tmp_path)
    (src / "referring.jsonl").write_text(line + "\n")
    with pytest.raises(ConversionError, match=rf"referring\.jsonl:1: .*{message}"):
        run(tmp_path / "out", src=src, parts=("referring",))


def test_a_bad_region_box_is_an_error(tmp_path):
    src = copy_of(tmp_path)
    item = {**FAKE.REGION_CAPTIONS[0], "question": "{<25><25><50>}"}
    (src / "region_captioning.jsonl").write_text(json.dumps(item) + "\n")
    with pytest.raises(ConversionError, match=r"region_captioning\.jsonl:1"):
        run(tmp_path / "out", src=src, parts=("region_captioning",))


def test_command_line(tmp_path, capsys):
    args = ["convert", "geochat_bench", "--src", str(DATA), "--out", str(tmp_path)]
    assert build_main([*args, "--skip-invalid", "--parts", "lrben,ucmerced"]) == 0
    assert '"vqa": 4' in capsys.readouterr().out
    assert build_main(args) != 0
    assert "referring.jsonl:4" in capsys.readouterr().err
