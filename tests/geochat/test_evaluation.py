"""Sampling across worlds, bootstrap intervals, the trivial-answer baseline, per-category scores."""

from collections import Counter

import pytest

from geochat.evaluation import (
    MIN_TEMPLATE_RECORDS,
    bootstrap_intervals,
    fit_trivial_answers,
    question_template,
    sample_records,
)
from geochat.metrics import record_group, score_record, summarize, summarize_by_category

WIDTH = HEIGHT = 100


def record(index, world, task="vqa", question="Is there a ship?", answer="Yes", objects=()):
    return {
        "id": f"{world}:{index}",
        "image": f"{world}_{index}.png",
        "width": WIDTH,
        "height": HEIGHT,
        "task": task,
        "conversations": [
            {"from": "human", "value": f"<image>\n{question}"},
            {"from": "gpt", "value": answer},
        ],
        "objects": list(objects),
        "source": {"raster": f"/worlds/{world}.tif"},
    }


def test_a_record_group_is_its_source_raster_else_its_image():
    assert record_group(record(0, "w1")) == "/worlds/w1.tif"
    bare = {**record(0, "w1"), "source": None}
    assert record_group(bare) == "w1_0.png"


def test_limit_spreads_records_evenly_over_worlds():
    sizes = {"big": 100, "mid": 10, "small": 5, "one": 1}
    records = [record(i, world) for world, size in sizes.items() for i in range(size)]
    chosen = sample_records(records, 12, seed=3)
    per_world = Counter(r["source"]["raster"] for r in chosen)
    assert len(chosen) == 12 and per_world["/worlds/one.tif"] == 1
    # The three worlds with records to spare give 11 records between them, 3 or 4 each
    # (a prefix of 12 would have read one world only).
    assert sorted(per_world[f"/worlds/{w}.tif"] for w in ("big", "mid", "small")) == [3, 4, 4]
    assert chosen == [r for r in records if r in chosen]  # original order kept
    assert sample_records(records, 12, seed=3) == chosen
    assert sample_records(records, 12, seed=4) != chosen
    assert sample_records(records, None) == records
    assert sample_records(records, 500) == records


def refer(index, world, correct):
    ship = {"category": "ship", "hbb": [10, 10, 50, 50]}
    answer = "<box>[[100,100,500,500]]</box>" if correct else "<box>[[600,600,900,900]]</box>"
    truth = record(index, world, "refer", "Where is the ship?", "<box>[[100,100,500,500]]</box>")
    return {**truth, "objects": [ship]}, answer


def scores(pairs):
    return [sample for r, answer in pairs for sample in score_record(r, answer)[0]]


def test_bootstrap_resamples_worlds_and_brackets_the_estimate():
    # Four worlds: two always right, two always wrong, ten questions each.
    pairs = [refer(i, f"w{w}", correct=w < 2) for w in range(4) for i in range(10)]
    samples = scores(pairs)
    point = summarize(samples)["refer"]["boxes"]["acc@0.5"]
    low, high = bootstrap_intervals(samples, resamples=200, seed=0)["refer"]["boxes"]["acc@0.5"]
    assert point == 0.5 and 0.0 <= low < point < high <= 1.0
    # Worlds, not records, are resampled: the same answers spread over 40 worlds are
    # far more certain than over 4.
    spread = [refer(i, f"v{i}", correct=i % 2 == 0) for i in range(40)]
    low40, high40 = bootstrap_intervals(scores(spread), resamples=200, seed=0)["refer"]["boxes"][
        "acc@0.5"
    ]
    assert high40 - low40 < high - low
    assert bootstrap_intervals(samples, resamples=200, seed=0) == bootstrap_intervals(
        samples, resamples=200, seed=0
    )
    one_world = scores([refer(i, "w", correct=i < 5) for i in range(10)])
    assert bootstrap_intervals(one_world, resamples=50)["refer"]["boxes"]["acc@0.5"] == [0.5, 0.5]


def test_templates_ignore_the_image_tag_geometry_and_numbers():
    a = record(0, "w", question="What is in <box>[[1,2,3,4]]</box>?")
    b = record(1, "w", question="What is  in <box>[[5,6,70,80]]</box>?")
    assert question_template(a) == question_template(b) == "vqa|what is in?"
    assert question_template(record(0, "w", "count", "How many of 3 cars?")) == (
        "count|how many of # cars?"
    )


def test_the_trivial_baseline_is_the_best_constant_answer_per_template():
    many = MIN_TEMPLATE_RECORDS * 2
    train = [
        # A presence question mostly answered "No", a count mostly "1".
        *(
            record(i, "w", question="Is there a ship?", answer="No" if i % 4 else "Yes")
            for i in range(many)
        ),
        *(
            record(i, "x", "count", "How many cars are there?", "2" if i % 3 == 0 else "1")
            for i in range(many)
        ),
        # A referring question whose truth is nearly always the same box.
        *(refer(i, "y", correct=True)[0] for i in range(many)),
        # A template asked too rarely to get its own constant: its task's constant instead.
        record(0, "z", question="Is there a plane?", answer="Yes"),
    ]
    trivial = fit_trivial_answers(train)
    assert trivial.fitted_on == len(train)
    assert trivial.answer(record(0, "t", question="Is there a ship?")) == "No"
    assert trivial.answer(record(0, "t", "count", "How many cars are there?")) == "1"
    assert trivial.answer(refer(0, "t", correct=True)[0]) == "<box>[[100,100,500,500]]</box>"
    assert trivial.answer(record(0, "t", question="Is there a plane?")) == trivial.by_task["vqa"]
    assert trivial.answer(record(0, "t", "caption", "Describe it.")) is None
    test = [record(0, "t", question="Is there a ship?", answer="No")]
    assert trivial.predictions(test) == {"t:0": "No"}


@pytest.mark.parametrize("correct_ships", [0, 3])
def test_scores_are_summarised_per_category(correct_ships):
    pairs = []
    for i in range(3):
        ship_record, answer = refer(i, "w", correct=i < correct_ships)
        pairs.append((ship_record, answer))
        tank = {
            **ship_record,
            "id": f"tank{i}",
            "objects": [{"category": "tank", "hbb": [60, 60, 90, 90]}],
        }
        pairs.append((tank, "<box>[[600,600,900,900]]</box>"))
    by_category = summarize_by_category(scores(pairs))
    assert by_category["refer"]["ship"]["acc@0.5"] == correct_ships / 3
    assert by_category["refer"]["tank"]["acc@0.5"] == 1.0
    assert (
        by_category["refer"]["ship"]["n"] == 3 and by_category["refer"]["ship"]["family"] == "boxes"
    )
