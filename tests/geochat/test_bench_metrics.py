"""GeoChat-Bench scoring rules on hand-made records and predictions."""

from __future__ import annotations

import pytest

from geochat.metrics import (
    TruthError,
    bench_answer_key,
    meteor,
    referring_hits,
    rouge_1,
    rouge_l,
    score_bench_record,
    summarize_bench,
)

SIZE = 100


def square(x0: float, y0: float, side: float) -> list[list[float]]:
    return [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]]


def bench_record(part: str, answer: str, objects=(), **source) -> dict:
    return {
        "id": f"geochat_bench/{part}/1",
        "image": "x.png",
        "width": SIZE,
        "height": SIZE,
        "task": "refer",
        "conversations": [
            {"from": "human", "value": "<image>\nq"},
            {"from": "gpt", "value": answer},
        ],
        "objects": [{"category": "x", "quad": q} for q in objects],
        "source": {"dataset": "geochat_bench", "part": part, **source},
    }


def quad_text(*quads: list[list[float]]) -> str:
    """Quads in grammar v1 on the 100 px image (grammar units are 10 per pixel)."""
    rows = [",".join(str(round(10 * v)) for corner in q for v in corner) for q in quads]
    return "<quad>[" + ",".join(f"[{row}]" for row in rows) + "]</quad>"


# ------------------------------------------------------------------------------ text rules


@pytest.mark.parametrize(
    ("prediction", "truth", "same"),
    [
        ("Medium residential.", "MediumResidential", True),
        ("Yes.", "yes", True),
        (" rural ", "rural", True),
        ("No", "yes", False),
        ("Yes, there is one.", "yes", False),  # no first-word rule: the benchmark compares all
        ("two", "2", False),
    ],
)
def test_answer_key_is_geochats_normalisation(prediction, truth, same):
    assert (bench_answer_key(prediction) == bench_answer_key(truth)) is same


def test_rouge_scores_on_known_pairs():
    assert rouge_1("The cat sat.", "the cat") == pytest.approx(0.8)  # P 2/3, R 1
    assert rouge_l("a b c d", "a c b d") == pytest.approx(0.75)  # LCS 3 of 4
    assert rouge_l("a b", "b a") == pytest.approx(0.5)
    assert rouge_1("", "a caption") == rouge_l("!!", "a caption") == 0.0


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("a b c d", "a b c d", 1 - 0.5 * (1 / 4) ** 3),  # one chunk of four
        ("a b x d", "a b c d", 0.75 * (1 - 0.5 * (2 / 3) ** 3)),  # P = R = 3/4, two chunks
        ("c d a b", "a b c d", 1 - 0.5 * (2 / 4) ** 3),  # all matched, two chunks
        ("a a", "a", (0.5 / (0.9 * 0.5 + 0.1)) * (1 - 0.5)),  # P 1/2, R 1, one chunk of one
        ("", "a b", 0.0),
        ("x y", "a b", 0.0),
    ],
)
def test_meteor_follows_its_formula(prediction, reference, expected):
    assert meteor(prediction, reference) == pytest.approx(expected)


# ------------------------------------------------------------------------------- referring


def test_referring_hits_count_objects_found_one_to_one():
    truth = [square(10, 10, 20), square(60, 60, 20)]
    assert referring_hits(truth, truth) == 2
    # Extra and duplicate predictions do not add hits (nor cost any).
    assert referring_hits([*truth, truth[0], square(0, 80, 5)], truth) == 2
    assert referring_hits([square(14, 10, 20)], truth) == 1  # IoU 16/24 = 0.67
    assert referring_hits([square(20, 10, 20)], truth) == 0  # IoU 1/3
    assert referring_hits([square(20, 10, 20)], truth, threshold=0.3) == 1
    assert referring_hits([], truth) == referring_hits(truth, []) == 0


def test_referring_record_scores_hits_per_object_and_groups():
    truth = [square(10, 10, 20), square(60, 60, 20)]
    record = bench_record("referring", "", truth, type="gnd", size_group="small")
    score = score_bench_record(record, f"<ref>cars</ref>{quad_text(truth[0])}")
    assert score.values == {"hits": 1.0, "targets": 2.0, "predicted": 1.0}
    assert score.columns == ("Small", "Multi-object", "[grounding]", "Overall")
    single = bench_record("referring", "", truth[:1], type="ref", size_group=None)
    assert score_bench_record(single, None).columns == ("Single-object", "[refer]", "Overall")


@pytest.mark.parametrize(
    "answer",
    ["", "no idea", "<quad>[[1,2,3", "<box>[[900,900,100,100]]</box>", "<none>", "<quad>" * 50],
)
def test_malformed_model_output_scores_no_hit_without_raising(answer):
    record = bench_record("referring", "", [square(10, 10, 20)], type="ref")
    score = score_bench_record(record, answer)
    assert score.values["hits"] == 0.0 and score.answered


def test_a_box_answer_counts_as_its_quad():
    record = bench_record("referring", "", [square(10, 10, 20)], type="ref")
    assert score_bench_record(record, "<box>[[100,100,300,300]]</box>").values["hits"] == 1.0


def test_other_records_are_not_bench_records_and_unknown_parts_are_errors():
    other = {**bench_record("referring", ""), "source": {"dataset": "dota"}}
    assert score_bench_record(other, "x") is None
    assert score_bench_record({k: v for k, v in other.items() if k != "source"}, "x") is None
    with pytest.raises(TruthError, match="unknown GeoChat-Bench part"):
        score_bench_record(bench_record("grounding_description", "x"), "x")


# ------------------------------------------------------------------------------- summaries


def test_vqa_average_is_the_mean_of_types_and_count_stays_out():
    answers = [("presence", "yes", "Yes."), ("presence", "no", "no"), ("comp", "yes", "no")]
    answers += [("rural_urban", "urban", "rural"), ("count", "3", "3")]
    scores = [
        score_bench_record(bench_record("lrben", truth, type=kind), reply)
        for kind, truth, reply in answers
    ]
    table = summarize_bench(scores)["LRBEN"]
    assert list(table) == ["Presence", "Comparison", "Rural/Urban", "Count", "Average", "Overall"]
    assert table["Presence"]["accuracy"] == 1.0 and table["Comparison"]["accuracy"] == 0.0
    assert table["Count"] == {"n": 1, "missing": 0, "accuracy": 1.0}
    assert table["Average"]["accuracy"] == pytest.approx(1 / 3)
    assert table["Overall"]["accuracy"] == pytest.approx(2 / 4)


def test_referring_accuracy_is_hits_over_true_objects_per_column():
    one, two = square(10, 10, 20), square(60, 60, 20)
    scores = [
        score_bench_record(
            bench_record("referring", "", [one], type="ref", size_group="large"), quad_text(one)
        ),
        score_bench_record(
            bench_record("referring", "", [one, two], type="gnd", size_group="small"),
            quad_text(two, square(0, 80, 5)),
        ),
        score_bench_record(
            bench_record("referring", "", [two], type="ref", size_group="small"), None
        ),
    ]
    table = summarize_bench(scores)["referring"]
    assert list(table) == [
        "Small",
        "Large",
        "Single-object",
        "Multi-object",
        "[refer]",
        "[grounding]",
        "Overall",
    ]
    assert table["Overall"]["acc@0.5"] == pytest.approx(2 / 4)
    assert table["Overall"]["precision@0.5"] == pytest.approx(2 / 3)
    assert table["Overall"]["missing"] == 1
    assert table["Small"]["acc@0.5"] == pytest.approx(1 / 3)
    assert table["[refer]"]["acc@0.5"] == pytest.approx(1 / 2)
    assert summarize_bench(scores, 0.75)["referring"]["Overall"]["acc@0.75"] == pytest.approx(0.5)


def test_captions_and_scene_tables():
    caption = bench_record("region_captioning", "a white car")
    scene = bench_record("aid", "airport", type="Airport")
    scores = [
        score_bench_record(caption, "A white car."),
        score_bench_record(caption, "<ref>a white</ref><box>[[0,0,10,10]]</box> boat"),
        score_bench_record(scene, "airport"),
        score_bench_record(bench_record("ucmerced", "x", type="agricultural"), "forest"),
    ]
    summary = summarize_bench(scores)
    overall = summary["region captioning"]["Overall"]
    assert overall["ROUGE-1"] == pytest.approx((1 + 2 / 3) / 2)
    assert overall["ROUGE-L"] == pytest.approx((1 + 2 / 3) / 2)
    assert overall["METEOR"] == pytest.approx(
        (meteor("a white car", "a white car") + meteor("a white boat", "a white car")) / 2
    )
    assert summary["scene classification"] == {
        "UCMerced": {"n": 1, "missing": 0, "accuracy": 0.0},
        "AID": {"n": 1, "missing": 0, "accuracy": 1.0},
    }
    assert summarize_bench([]) == {}
