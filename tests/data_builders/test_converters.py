"""Converters of public datasets, run on the committed fake files of tests/data/<name>/."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from geochat import categories, geometry
from geochat.data_builders.converters import CONVERTERS, ConversionError
from geochat.data_builders.converters.common import read_json, read_jsonl
from geochat.grammar import parse
from geochat.records import image_path, iter_records

DATA = Path(__file__).resolve().parents[1] / "data"


def fake(name: str) -> ModuleType:
    """The generator module of a dataset's fake files (it holds their truth)."""
    spec = importlib.util.spec_from_file_location(f"fake_{name}", DATA / name / "data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, out: Path, src: Path | None = None, split: str | None = None, **options: Any):
    """Converts one dataset; returns the summary and the records by id."""
    summary = CONVERTERS[name].convert(src or DATA / name, out, split, **options)
    records = {record["id"]: record for record in iter_records(summary["jsonl"])}
    assert len(records) == summary["records"]
    return summary, records


def copy_of(name: str, tmp_path: Path) -> Path:
    """A writable copy of a dataset's fake files, to corrupt."""
    return Path(
        shutil.copytree(DATA / name, tmp_path / "src", ignore=shutil.ignore_patterns("*.py"))
    )


def answer(record: dict[str, Any]) -> str:
    return record["conversations"][-1]["value"]


def parsed(record: dict[str, Any]):
    """The geometry of a record's answer, read back strictly with the canonical grammar."""
    return parse(answer(record), record["width"], record["height"], strict=True).objects


def grammar_tolerance(record: dict[str, Any]) -> float:
    """Largest pixel error of a coordinate written on the 0-1000 grid and read back."""
    return max(record["width"], record["height"]) / 2000 + 1e-9


def refgeo_record(records: dict[str, Any], question_id: int, kind: str) -> dict[str, Any]:
    """The refGeo record of a question (ids hold the file line, sources the question id)."""
    (record,) = [
        record
        for record_id, record in records.items()
        if record["source"]["question_id"] == str(question_id) and record_id.endswith(kind)
    ]
    return record


def assert_same_quad(actual: Any, expected: Any, atol: float) -> None:
    np.testing.assert_allclose(
        geometry.canonical_quad(actual), geometry.canonical_quad(expected), atol=atol
    )


# ---------------------------------------------------------------- registry and common behaviour


def test_every_converter_is_registered_with_a_description_and_options():
    assert set(CONVERTERS) == {
        "dota",
        "dior_rsvg",
        "rrsisd",
        "geochat_instruct",
        "refgeo",
        "earthreason",
        "geochat_bench",
    }
    for name, converter in CONVERTERS.items():
        assert converter.name == name and len(converter.description) > 20
        parser = argparse.ArgumentParser()
        converter.add_arguments(parser)
        assert set(converter.options(parser.parse_args([]))) <= set(
            converter.convert.__code__.co_varnames
        )


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_every_keyword_of_convert_is_an_option_with_help(name):
    converter = CONVERTERS[name]
    parser = argparse.ArgumentParser()
    converter.add_arguments(parser)
    keywords = set(inspect.signature(converter.convert).parameters) - {"src", "out", "split"}
    options = {action.dest: action for action in parser._actions if action.dest != "help"}
    assert set(options) == keywords
    assert all(len(action.help) > 10 for action in options.values())


@pytest.mark.parametrize(
    ("name", "argv", "expected"),
    [
        ("dota", ["--no-masks", "--skip-difficult"], {"masks": False, "skip_difficult": True}),
        (
            "dota",
            ["--tasks", "grounded_caption,ground"],
            {"tasks": ("grounded_caption", "ground")},
        ),
        ("refgeo", ["--geometry", "quad"], {"geometry_kinds": ("quad",)}),
        ("refgeo", ["--subsets", "dior_rsvg,geochat"], {"subsets": ("dior_rsvg", "geochat")}),
        ("geochat_bench", ["--parts", "lrben", "aid"], {"parts": ("lrben", "aid")}),
        ("rrsisd", ["--grid", "32", "--refs", "r.json"], {"grid": 32, "refs": Path("r.json")}),
        ("dior_rsvg", ["--link-images"], {"link_images": True}),
    ],
)
def test_options_keep_their_names_and_types(name, argv, expected):
    parser = argparse.ArgumentParser()
    CONVERTERS[name].add_arguments(parser)
    options = CONVERTERS[name].options(parser.parse_args(argv))
    assert {key: options[key] for key in expected} == expected


def test_run_from_command_line_arguments(tmp_path):
    converter = CONVERTERS["dota"]
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--split")
    converter.add_arguments(parser)
    args = parser.parse_args(
        [
            "--src",
            str(DATA / "dota"),
            "--out",
            str(tmp_path),
            "--split",
            "train",
            "--tasks",
            "ground",
            "--box",
            "hbb",
        ]
    )
    summary = converter.run(args)
    assert summary["tasks"] == {"ground": 5}
    assert "<box>" in Path(summary["jsonl"]).read_text()


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("dota", "train"),
        ("dior_rsvg", None),
        ("rrsisd", None),
        ("geochat_instruct", None),
        ("refgeo", None),
        ("earthreason", None),
    ],
)
def test_output_is_deterministic_and_images_are_copied(tmp_path, name, split):
    first, records = run(name, tmp_path / "a", split=split)
    second, _ = run(name, tmp_path / "b", split=split)
    assert Path(first["jsonl"]).read_bytes() == Path(second["jsonl"]).read_bytes()
    for record in records.values():
        copied = image_path(record, first["jsonl"])
        assert copied.is_file() and copied.is_relative_to(tmp_path / "a" / "images")
    assert first["images"] == len({record["image"] for record in records.values()})


def test_images_can_be_hard_linked_instead_of_copied(tmp_path):
    summary, records = run("dota", tmp_path, split="train", link_images=True)
    record = records["dota/train/P0001/grounded_caption"]
    source = DATA / "dota" / "train" / "images" / "P0001.png"
    assert image_path(record, summary["jsonl"]).samefile(source)


def test_an_image_path_cannot_lead_out_of_the_source_folder(tmp_path):
    src = copy_of("geochat_instruct", tmp_path)
    items = json.loads((src / "GeoChat_Instruct.json").read_text())
    shutil.copy(src / fake("geochat_instruct").IMAGE_DIR / "wide.png", src / "outside.png")
    items[0]["image"] = "../outside.png"
    (src / "GeoChat_Instruct.json").write_text(json.dumps(items))
    with pytest.raises(ConversionError, match="leads out of"):
        run("geochat_instruct", tmp_path / "out", src=src)
    assert not (tmp_path / "out" / "outside.png").exists()


def test_json_lines_name_the_bad_line_or_hand_it_to_skip(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n[2]\n')
    with pytest.raises(ConversionError, match=r"rows\.jsonl:3: not valid JSON"):
        list(read_jsonl(path))
    skipped: list[ConversionError] = []
    assert list(read_jsonl(path, skipped.append)) == [(1, {"a": 1}), (4, [2])]
    assert [error.line for error in skipped] == [3]
    path.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(ConversionError, match="not UTF-8"):
        list(read_jsonl(path))
    with pytest.raises(ConversionError, match="file not found"):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    (tmp_path / "bad.json").write_text('{\n  "a": }')
    with pytest.raises(ConversionError, match=r"bad\.json:2: not valid JSON"):
        read_json(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------- DOTA


def test_dota_records_match_the_fake_labels(tmp_path):
    truth = fake("dota")
    summary, records = run("dota", tmp_path, split="train")
    assert summary["tasks"] == {"grounded_caption": 3, "ground": 5}
    described = records["dota/train/P0001/grounded_caption"]
    assert described["task"] == "grounded_caption"
    assert described["gsd"] == 0.5 and described["split"] == "train"
    assert len(described["objects"]) == 5
    found = {(obj.phrase, tuple(np.round(obj.hbb))) for obj in parsed(described)}
    assert len(found) == 5 and all(obj.kind == "quad" for obj in parsed(described))
    assert {obj.phrase for obj in parsed(described)} == {
        "planes",
        "ships",
        "small vehicles",
        "storage tanks",
    }
    inside = [obj for obj in described["objects"] if not obj["truncated"]]
    for obj, (corners, _, difficult) in zip(inside, truth.IMAGES["P0001"][3][:4], strict=True):
        assert_same_quad(obj["quad"], np.reshape(corners, (4, 2)), atol=1e-9)
        assert obj["attributes"]["difficult"] is bool(difficult)
        assert geometry.mask_to_hbb(obj["mask"]) is not None
    planes = records["dota/train/P0001/ground/plane"]
    assert planes["conversations"][0]["value"] == (
        "<image>\nLocate all planes with oriented bounding boxes."
    )
    (plane,) = parsed(planes)
    assert plane.phrase == "planes"
    assert_same_quad(
        plane.quad,
        np.reshape(truth.IMAGES["P0001"][3][0][0], (4, 2)),
        atol=grammar_tolerance(planes),
    )


def test_dota_ground_records_find_every_object_of_their_category(tmp_path):
    _, records = run("dota", tmp_path, split="train")
    grounds = {key: record for key, record in records.items() if "/ground/" in key}
    assert sorted(grounds) == [
        "dota/train/P0001/ground/plane",
        "dota/train/P0001/ground/ship",
        "dota/train/P0001/ground/small-vehicle",
        "dota/train/P0001/ground/storage-tank",
        "dota/train/P0002/ground/tennis-court",
    ]
    vehicles = grounds["dota/train/P0001/ground/small-vehicle"]
    assert vehicles["conversations"][0]["value"].endswith(
        "Locate all small vehicles with oriented bounding boxes."
    )
    assert answer(vehicles).startswith("<ref>small vehicles</ref><quad>[[")
    for record in grounds.values():
        assert record["task"] == "ground" and answer(record) != "<none>"
        (category,) = {obj["category"] for obj in record["objects"]}
        found = parsed(record)
        assert {obj.phrase for obj in found} == {categories.plural(category)}
        assert len(found) == len(record["objects"])
    # The find-all records of an image share out the objects of its grounded description.
    described = records["dota/train/P0001/grounded_caption"]["objects"]
    asked = [obj for key, record in grounds.items() if "P0001" in key for obj in record["objects"]]
    assert sorted(obj["id"] for obj in asked) == sorted(obj["id"] for obj in described)


def test_dota_clips_objects_that_leave_the_image(tmp_path):
    _, records = run("dota", tmp_path, split="train")
    (ship,) = records["dota/train/P0001/ground/ship"]["objects"]
    assert ship["truncated"] is True
    assert ship["hbb"] == [56.0, 38.0, 64.0, 46.0]
    assert geometry.mask_area(ship["mask"]) == 8 * 8


def test_dota_rasterises_the_quad_as_mask(tmp_path):
    _, records = run("dota", tmp_path, split="train")
    vehicles = records["dota/train/P0001/ground/small-vehicle"]["objects"]
    assert [geometry.mask_area(obj["mask"]) for obj in vehicles] == [8 * 6, 8 * 6]
    assert [obj["category"] for obj in vehicles] == ["small vehicle", "small vehicle"]
    assert [obj["source_category"] for obj in vehicles] == ["small-vehicle", "small-vehicle"]


def test_dota_image_without_objects_answers_none(tmp_path):
    _, records = run("dota", tmp_path, split="train")
    empty = records["dota/train/P0003/grounded_caption"]
    assert answer(empty) == "<none>" and empty["objects"] == []
    assert not any(key.startswith("dota/train/P0003/ground/") for key in records)
    assert "gsd" not in empty and "gsd" not in records["dota/train/P0002/grounded_caption"]


def test_dota_options_skip_difficult_and_write_boxes(tmp_path):
    summary, records = run(
        "dota",
        tmp_path,
        split="train",
        tasks=("ground",),
        box="hbb",
        skip_difficult=True,
        masks=False,
    )
    assert summary["skipped"] == {"difficult object (--skip-difficult)": 1}
    assert summary["dropped"] == {"difficult object (--skip-difficult)": {"storage-tank": 1}}
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["summary"] == summary
    assert manifest["arguments"]["skip_difficult"] is True
    assert manifest["arguments"]["tasks"] == ["ground"]
    assert not any("storage" in record_id for record_id in records)
    assert all("mask" not in obj for record in records.values() for obj in record["objects"])
    court = records["dota/train/P0002/ground/tennis-court"]
    assert court["conversations"][0]["value"] == "<image>\nLocate all tennis courts."
    (box,) = parsed(court)
    assert box.phrase == "tennis courts"
    np.testing.assert_allclose(box.hbb, [4, 40, 20, 60], atol=grammar_tolerance(court))


def with_dota_class(tmp_path: Path, category: str, labels: str = "labelTxt") -> Path:
    """A copy of the fake DOTA with one more object of ``category`` in a label folder."""
    src = copy_of("dota", tmp_path)
    if labels != "labelTxt":
        (src / "train" / "labelTxt").rename(src / "train" / labels)
    label = src / "train" / labels / "P0002.txt"
    label.write_text(label.read_text() + f"30 2 40 2 40 12 30 12 {category} 0\n")
    return src


@pytest.mark.parametrize(
    ("category", "version", "labels", "warned"),
    [
        ("container-crane", "1.0", "labelTxt", True),  # a v1.5 class in v1.0 labels
        ("container-crane", None, "labelTxt-v1.0", True),  # the version from the folder name
        ("container-crane", "1.5", "labelTxt", False),
        ("helipad", "1.5", "labelTxt", True),  # a v2.0 class in v1.5 labels
        ("helipad", None, "labelTxt", False),  # no version named: 2.0
        ("Storage-Tank", "2.0", "labelTxt", True),  # no version spells it so
    ],
)
def test_dota_warns_of_a_class_outside_the_version(tmp_path, category, version, labels, warned):
    src = with_dota_class(tmp_path, category, labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary, records = run(
            "dota", tmp_path / "out", src=src, split="train", labels=labels, version=version
        )
    expected = version or ("1.0" if labels.endswith("v1.0") else "2.0")
    reason = f"class not in DOTA v{expected}"
    assert summary["warnings"] == ({reason: {category: 1}} if warned else {})
    assert [str(w.message) for w in caught] == ([f"{reason}: {category}"] if warned else [])
    (added,) = [
        o for o in records["dota/train/P0002/grounded_caption"]["objects"] if o["hbb"][1] == 2
    ]
    assert added["source_category"] == category
    assert added["category"] == categories.normalise(category)


def test_dota_refuses_a_version_it_does_not_know(tmp_path):
    with pytest.raises(ValueError, match=r"1\.0, 1\.5, 2\.0"):
        run("dota", tmp_path, split="train", version="3.0")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 2 3 4 5 6 7", "fields"),
        ("1 2 3 4 5 6 7 x plane 0", "not a number"),
        ("1 2 3 4 5 6 7 8 plane 2", "difficult"),
    ],
)
def test_dota_malformed_line_names_file_and_line(tmp_path, line, message):
    src = copy_of("dota", tmp_path)
    label = src / "train" / "labelTxt" / "P0002.txt"
    label.write_text(label.read_text() + line + "\n")
    with pytest.raises(ConversionError, match=rf"P0002\.txt:2: .*{message}"):
        run("dota", tmp_path / "out", src=src, split="train")


def test_dota_header_after_objects_is_an_error(tmp_path):
    src = copy_of("dota", tmp_path)
    label = src / "train" / "labelTxt" / "P0002.txt"
    label.write_text(label.read_text() + "gsd:0.3\n")
    with pytest.raises(ConversionError, match=r"P0002\.txt:2: header line 'gsd' after objects"):
        run("dota", tmp_path / "out", src=src, split="train")


def test_dota_missing_image_or_folder_is_an_error(tmp_path):
    src = copy_of("dota", tmp_path)
    (src / "train" / "images" / "P0002.png").unlink()
    with pytest.raises(ConversionError, match="P0002"):
        run("dota", tmp_path / "out", src=src, split="train")
    with pytest.raises(ConversionError, match="folder not found"):
        run("dota", tmp_path / "out", src=src, split="val")


# -------------------------------------------------------------------------------- DIOR-RSVG


def test_dior_rsvg_split_files_index_objects_across_files(tmp_path):
    truth = fake("dior_rsvg")
    objects = [obj for _, _, found in truth.IMAGES.values() for obj in found]
    for split, indices in truth.SPLITS.items():
        summary, records = run("dior_rsvg", tmp_path / split, split=split)
        described = [i for i in indices if objects[i][2] is not None]
        assert sorted(records) == sorted(f"dior_rsvg/{split}/{i}" for i in described)
        assert sum(summary["skipped"].values()) == len(indices) - len(described)
        for index in described:
            record = records[f"dior_rsvg/{split}/{index}"]
            _, box, description = objects[index]
            (found,) = parsed(record)
            assert (
                found.phrase == description and description in record["conversations"][0]["value"]
            )
            np.testing.assert_allclose(found.hbb, box, atol=grammar_tolerance(record))
            assert record["objects"][0]["hbb"] == box


def test_dior_rsvg_class_names_become_the_vocabulary_s_names(tmp_path):
    _, records = run("dior_rsvg", tmp_path)
    names = {
        (obj["category"], obj["source_category"])
        for record in records.values()
        for obj in record["objects"]
    }
    assert names == {
        ("golf field", "golffield"),
        ("storage tank", "storagetank"),
        ("vehicle", "vehicle"),
    }


def test_dior_rsvg_malformed_inputs_are_errors(tmp_path):
    src = copy_of("dior_rsvg", tmp_path)
    (src / "train.txt").write_text("0\nten\n")
    with pytest.raises(ConversionError, match=r"train\.txt:2"):
        run("dior_rsvg", tmp_path / "out", src=src, split="train")
    (src / "train.txt").write_text("0\n99\n")
    with pytest.raises(ConversionError, match="name no object"):
        run("dior_rsvg", tmp_path / "out", src=src, split="train")
    xml = src / "Annotations" / "00002.xml"
    xml.write_text(xml.read_text().replace("<xmin>10</xmin>", "<xmin>ten</xmin>"))
    with pytest.raises(ConversionError, match=r"00002\.xml.*xmin"):
        run("dior_rsvg", tmp_path / "out", src=src)
    xml.write_text("<annotation><filename>")
    with pytest.raises(ConversionError, match="not valid XML"):
        run("dior_rsvg", tmp_path / "out", src=src)


# ---------------------------------------------------------------------------------- RRSIS-D


def test_rrsisd_masks_match_the_fake_segmentations(tmp_path):
    truth = fake("rrsisd")
    masks = truth.truth_masks()
    summary, records = run("rrsisd", tmp_path)
    assert summary["records"] == 4 and summary["skipped"] == {"empty mask": 1}
    for record in records.values():
        (obj,) = record["objects"]
        ann_id = int(obj["id"].split(":")[1])
        np.testing.assert_array_equal(geometry.rle_to_mask(obj["mask"]), masks[ann_id])
        assert obj["source_category"] == truth.CATEGORIES[ann_id]  # "storagetank"
        assert obj["category"] == categories.normalise(truth.CATEGORIES[ann_id])
        (found,) = parsed(record)
        assert found.kind == "mask" and found.phrase in record["conversations"][0]["value"]
        assert geometry.mask_iou([found.mask], [obj["mask"]])[0, 0] > 0.5
    # The rectangle lies on whole cells of the 16 x 16 grid: the text-mask is exact.
    top_left = records["rrsisd/train/0/0"]
    np.testing.assert_array_equal(geometry.rle_to_mask(parsed(top_left)[0].mask), masks[1])


def test_rrsisd_split_and_sentence_options(tmp_path):
    _, records = run("rrsisd", tmp_path, split="train", sentences="first", grid=32)
    assert sorted(records) == ["rrsisd/train/0/0", "rrsisd/train/1/2"]
    assert answer(records["rrsisd/train/1/2"]).count("<seg>32|") == 1


def test_rrsisd_reads_a_json_export_of_the_refs(tmp_path):
    src = copy_of("rrsisd", tmp_path)
    refs = fake("rrsisd").refs()
    (src / "rrsisd" / "refs(unc).p").unlink()
    (src / "rrsisd" / "refs(unc).json").write_text(json.dumps(refs))
    _, from_json = run("rrsisd", tmp_path / "json", src=src)
    _, from_pickle = run("rrsisd", tmp_path / "pickle")
    assert from_json == from_pickle


def test_rrsisd_refs_repeated_in_the_file_are_an_error(tmp_path):
    src = copy_of("rrsisd", tmp_path)
    refs = fake("rrsisd").refs()
    (src / "rrsisd" / "refs(unc).json").write_text(json.dumps([*refs, refs[0]]))
    with pytest.raises(ConversionError, match="two records have the id 'rrsisd/train/0/0'"):
        run("rrsisd", tmp_path / "out", src=src)
    assert not (tmp_path / "out" / "rrsisd.jsonl").exists()


class _Payload:
    """Pickles into a call of os.makedirs: what a malicious refs file could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.makedirs, (str(self.path),)


def test_rrsisd_refuses_a_pickle_that_would_run_code(tmp_path):
    src = copy_of("rrsisd", tmp_path)
    marker = tmp_path / "the pickle ran code"
    with (src / "rrsisd" / "refs(unc).p").open("wb") as handle:
        pickle.dump([_Payload(marker)], handle, protocol=2)
    with pytest.raises(ConversionError, match="refusing to load"):
        run("rrsisd", tmp_path / "out", src=src)
    assert not marker.exists()


def test_rrsisd_missing_or_broken_files_are_errors(tmp_path):
    src = copy_of("rrsisd", tmp_path)
    (src / "rrsisd" / "refs(unc).json").write_text('{"refs": []}')
    with pytest.raises(ConversionError, match="list of ref objects"):
        run("rrsisd", tmp_path / "out", src=src)
    (src / "rrsisd" / "refs(unc).json").unlink()
    (src / "rrsisd" / "refs(unc).p").write_bytes(b"not a pickle")
    with pytest.raises(ConversionError, match=r"refs\(unc\)\.p"):
        run("rrsisd", tmp_path / "out", src=src)
    shutil.rmtree(src / "rrsisd")
    with pytest.raises(ConversionError, match="not found"):
        run("rrsisd", tmp_path / "out", src=src)


# ------------------------------------------------------------------------- GeoChat_Instruct


def test_geochat_instruct_tasks_and_truth_match_the_fake_boxes(tmp_path):
    truth = fake("geochat_instruct")
    summary, records = run("geochat_instruct", tmp_path)
    assert summary["records"] == len(truth.ITEMS)
    for index, item in enumerate(truth.ITEMS):
        record = records[f"geochat_instruct/{index}"]
        assert record["task"] == item["task"] and record["source"]["id"] == item["id"]
        assert len(record["objects"]) == len(item["truth"])
        for obj, (label, category, kind, pixels) in zip(
            record["objects"], item["truth"], strict=True
        ):
            assert (obj["source_category"], obj["category"]) == (label, category)
            expected = geometry.hbb_to_quad(pixels) if kind == "hbb" else pixels
            assert_same_quad(obj["quad"], expected, atol=1e-6)


def test_geochat_instruct_answers_are_canonical_grammar(tmp_path):
    truth = fake("geochat_instruct")
    _, records = run("geochat_instruct", tmp_path)
    for index, item in enumerate(truth.ITEMS):
        record = records[f"geochat_instruct/{index}"]
        text = " ".join(turn["value"] for turn in record["conversations"])
        assert "<p>" not in text and "{<" not in text and "<delim>" not in text
        if item["task"] in ("grounded_caption", "refer"):
            found = parsed(record)
            assert [(obj.phrase, obj.kind) for obj in found] == [
                (label, kind) for label, _, kind, _ in item["truth"]
            ]
            for obj, (_, _, kind, pixels) in zip(found, item["truth"], strict=True):
                expected = geometry.hbb_to_quad(pixels) if kind == "hbb" else pixels
                assert_same_quad(obj.quad, expected, atol=grammar_tolerance(record))
    identify = records["geochat_instruct/2"]["conversations"][0]["value"]
    (region,) = parse(identify, 64, 48, strict=True).objects
    assert region.kind == "hbb" and "<image>" in identify


def test_geochat_instruct_every_round_keeps_its_phrase_and_identify_label(tmp_path):
    _, records = run("geochat_instruct", tmp_path)
    turns = records["geochat_instruct/4"]["conversations"]
    (tank,) = parse(turns[5]["value"], 64, 48, strict=True).objects
    assert (tank.phrase, tank.kind) == ("storage tank", "quad")  # not a bare <quad>
    (region,) = parse(turns[6]["value"], 64, 48, strict=True).objects
    assert region.kind == "hbb" and turns[7]["value"] == "A ship."
    every_answer = [
        obj
        for record in records.values()
        for turn in record["conversations"][1::2]
        for obj in parse(turn["value"], record["width"], record["height"], strict=True).objects
    ]
    assert every_answer and all(obj.phrase for obj in every_answer)


@pytest.mark.parametrize(
    ("layout", "images"),
    [
        ("share/softwares/kartik/GeoChat_finetuning/final_images_llava", None),  # unzipped here
        ("images/share/softwares/kartik/GeoChat_finetuning/final_images_llava", None),
        ("images/final_images_llava", None),
        ("images", None),
        ("pictures/share/softwares/kartik/GeoChat_finetuning/final_images_llava", "pictures"),
        ("pictures", "pictures"),
    ],
)
def test_geochat_instruct_finds_images_in_the_released_nesting(tmp_path, layout, images):
    src = copy_of("geochat_instruct", tmp_path)
    nested = src / fake("geochat_instruct").IMAGE_DIR
    if layout != fake("geochat_instruct").IMAGE_DIR.as_posix():
        (src / layout).parent.mkdir(parents=True, exist_ok=True)
        nested.rename(src / layout)
        shutil.rmtree(src / "share")
    summary, records = run("geochat_instruct", tmp_path / "out", src=src, images=images)
    assert summary["records"] == 6
    assert {record["image"] for record in records.values()} == {
        "images/geochat_instruct/square.png",
        "images/geochat_instruct/wide.png",
    }


def test_geochat_instruct_bad_boxes_stop_or_are_skipped(tmp_path):
    src = copy_of("geochat_instruct", tmp_path)
    items = json.loads((src / "GeoChat_Instruct.json").read_text())
    items[1]["conversations"][1]["value"] = "{<16><55><240><63>|<11>}"
    (src / "GeoChat_Instruct.json").write_text(json.dumps(items))
    with pytest.raises(ConversionError, match=r"GeoChat_Instruct\.json \[item 1\].*out of range"):
        run("geochat_instruct", tmp_path / "out", src=src)
    summary, records = run("geochat_instruct", tmp_path / "out", src=src, skip_invalid=True)
    assert summary["skipped"] == {"GrammarError (--skip-invalid)": 1}
    assert "geochat_instruct/1" not in records and len(records) == 5


def test_geochat_instruct_malformed_items_and_missing_images_are_errors(tmp_path):
    src = copy_of("geochat_instruct", tmp_path)
    (src / fake("geochat_instruct").IMAGE_DIR / "square.png").unlink()
    with pytest.raises(ConversionError, match=r"\[item 1\].*square\.png"):
        run("geochat_instruct", tmp_path / "out", src=src)
    items = json.loads((src / "GeoChat_Instruct.json").read_text())
    items[0]["conversations"][1]["from"] = "human"
    (src / "GeoChat_Instruct.json").write_text(json.dumps(items))
    with pytest.raises(ConversionError, match=r"\[item 0\].*turn 1"):
        run("geochat_instruct", tmp_path / "out", src=src, skip_invalid=True)
    (src / "GeoChat_Instruct.json").write_text("{}")
    with pytest.raises(ConversionError, match="JSON list"):
        run("geochat_instruct", tmp_path / "out", src=src)


# ----------------------------------------------------------------------------------- refGeo


def test_refgeo_boxes_quads_and_masks_match_the_fake_rows(tmp_path):
    truth = fake("refgeo")
    summary, records = run("refgeo", tmp_path)
    assert summary["dropped"] == {
        "row without bbox or poly": {"geochat": 1},
        "field not converted": truth.UNUSED_FIELDS,
    }
    assert summary["tasks"] == {"refer": 6}
    for stem, rows in truth.ROWS.items():
        for row in rows:
            if row["bbox"] is None:
                continue
            boxes = np.reshape(row["bbox"], (-1, 4))
            polys = np.reshape(row["poly"], (-1, 4, 2))
            box_record = refgeo_record(records, row["question_id"], "hbb")
            quad_record = refgeo_record(records, row["question_id"], "quad")
            assert box_record["split"] == stem.rpartition("_")[2]
            tolerance = grammar_tolerance(box_record)
            found_boxes, found_quads = parsed(box_record), parsed(quad_record)
            assert {obj.phrase for obj in found_boxes + found_quads} == {row["question"]}
            np.testing.assert_allclose([obj.hbb for obj in found_boxes], boxes, atol=tolerance)
            for obj, poly, truth_obj in zip(
                found_quads, polys, quad_record["objects"], strict=True
            ):
                assert_same_quad(obj.quad, poly, atol=tolerance)
                assert_same_quad(truth_obj["quad"], poly, atol=1e-9)


def test_refgeo_attaches_the_sam_mask_of_single_object_rows(tmp_path):
    truth = fake("refgeo")
    _, records = run("refgeo", tmp_path, geometry_kinds=("hbb",))
    (ship,) = refgeo_record(records, truth.MASK_QUESTION, "hbb")["objects"]
    expected = np.zeros((64, 48), dtype=bool)
    expected[truth.MASK_SLICE] = True
    np.testing.assert_array_equal(geometry.rle_to_mask(ship["mask"]), expected)
    cars = refgeo_record(records, 8, "hbb")["objects"]
    assert len(cars) == 2 and all("mask" not in car for car in cars)
    assert len(records) == 3


def test_refgeo_split_and_subset_filters(tmp_path):
    _, test_only = run("refgeo", tmp_path / "test", split="test")
    assert {record["source"]["subset"] for record in test_only.values()} == {"geochat"}
    _, dior_only = run("refgeo", tmp_path / "dior", subsets=("dior_rsvg",))
    assert sorted(dior_only) == ["refgeo/dior_rsvg_train/1/hbb", "refgeo/dior_rsvg_train/1/quad"]
    with pytest.raises(ConversionError, match="no annotation file"):
        run("refgeo", tmp_path / "none", split="val")


def test_refgeo_reads_the_released_and_the_training_code_s_layout(tmp_path):
    _, released = run("refgeo", tmp_path / "released")
    src = copy_of("refgeo", tmp_path)
    (src / "metadata").rename(src / "metainfo")
    _, training = run("refgeo", tmp_path / "training", src=src)
    assert json.dumps(training, sort_keys=True) == json.dumps(released, sort_keys=True)
    (src / "metainfo").rename(src / "annotations")
    with pytest.raises(ConversionError, match="no annotation folder"):
        run("refgeo", tmp_path / "none", src=src)


def test_refgeo_objects_keep_the_expression_and_name_its_category(tmp_path):
    _, records = run("refgeo", tmp_path, geometry_kinds=("hbb",))
    names = {
        (obj["category"], obj["source_category"])
        for record in records.values()
        for obj in record["objects"]
    }
    assert names == {
        ("storage tank", "the storage tank on the right"),
        ("ship", "the rotated ship"),
        ("car", "two small cars"),
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"image_id": "00001.jpg", "question": "x", "bbox": [1, 2, 3]}', "bbox"),
        ('{"image_id": "00001.jpg", "bbox": [1, 2, 3, 4]}', "question"),
        ('{"image_id": "00001.jpg", "question": "x", "bbox": [5, 2, 3, 4]}', "x0 <= x1"),
        ("{not json", "not valid JSON"),
    ],
)
def test_refgeo_malformed_rows_name_file_and_line(tmp_path, line, message):
    src = copy_of("refgeo", tmp_path)
    annotations = src / "metadata" / "dior_rsvg_train.jsonl"
    annotations.write_text(annotations.read_text() + line + "\n")
    with pytest.raises(ConversionError, match=rf"dior_rsvg_train\.jsonl:2.*{message}"):
        run("refgeo", tmp_path / "out", src=src)


# ------------------------------------------------------------------------------ EarthReason


def test_earthreason_masks_answers_and_empty_targets(tmp_path):
    truth = fake("earthreason")
    summary, records = run("earthreason", tmp_path)
    assert summary["tasks"] == {"reason_segment": 4} and summary["skipped"] == {}
    for split, samples in truth.SAMPLES.items():
        for stem, (target, questions, answers) in samples.items():
            for index, question in enumerate(questions):
                record = records[f"earthreason/{split}/{stem}/{index}"]
                assert record["conversations"][0]["value"].startswith(f"<image>\n{question} ")
                if target is None:
                    assert answer(record) == "<none>" and record["objects"] == []
                    continue
                expected = np.zeros((truth.HEIGHT, truth.WIDTH), dtype=bool)
                expected[target] = True
                (obj,) = record["objects"]
                np.testing.assert_array_equal(geometry.rle_to_mask(obj["mask"]), expected)
                assert answer(record).startswith(answers[index])
                (found,) = parsed(record)
                assert geometry.mask_iou([found.mask], [obj["mask"]])[0, 0] > 0.7


def test_earthreason_split_and_question_options(tmp_path):
    _, val = run("earthreason", tmp_path / "val", split="val")
    assert list(val) == ["earthreason/val/harbour_03/0"]
    summary, _ = run("earthreason", tmp_path / "first", questions="first")
    assert summary["records"] == 3


def test_earthreason_answers_and_mask_that_disagree_are_skipped(tmp_path):
    src = copy_of("earthreason", tmp_path)
    qa = src / "train" / "QAs" / "forest_02.json"
    qa.write_text(json.dumps({"questions": ["Where?"], "answer": ["There."]}))
    summary, records = run("earthreason", tmp_path / "out", src=src)
    assert summary["skipped"] == {"answers and mask disagree on whether there is a target": 1}
    assert not any("forest_02" in record_id for record_id in records)


def test_earthreason_missing_and_malformed_files_are_errors(tmp_path):
    src = copy_of("earthreason", tmp_path)
    qa = src / "val" / "QAs" / "harbour_03.json"
    qa.write_text(json.dumps({"questions": ["Where?"], "answer": "not a list"}))
    with pytest.raises(ConversionError, match=r"harbour_03\.json \[answer\]"):
        run("earthreason", tmp_path / "out", src=src, split="val")
    qa.unlink()
    with pytest.raises(ConversionError, match="harbour_03"):
        run("earthreason", tmp_path / "out", src=src, split="val")
