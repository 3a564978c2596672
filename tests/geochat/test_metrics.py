"""Tests of geochat.metrics: pure metrics against independent computations, then the scorer."""

import itertools

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from shapely.geometry import Polygon

from geochat import geometry, metrics
from geochat.geometry import GeometryError


def shapely_iou(a, b):
    polygon_a, polygon_b = Polygon(a), Polygon(b)
    union = polygon_a.union(polygon_b).area
    return polygon_a.intersection(polygon_b).area / union if union else 0.0


def best_assignment_by_brute_force(predictions, targets):
    """The largest total IoU over every one-to-one assignment (small inputs only)."""
    ious = [[shapely_iou(p, t) for t in targets] for p in predictions]
    size = min(len(predictions), len(targets))
    return max(
        sum(ious[p][t] for p, t in zip(rows, cols, strict=True))
        for rows in itertools.permutations(range(len(predictions)), size)
        for cols in itertools.permutations(range(len(targets)), size)
    )


# Matching boxes and quads


def test_hungarian_matching_beats_greedy():
    # Greedy takes the 0.9 pair and leaves 0.0; the best assignment finds both at >= 0.8.
    matching = metrics.match([[0.9, 0.8], [0.85, 0.0]])
    assert sorted(matching.ious) == [0.8, 0.85]
    assert matching.is_correct(0.5) and not matching.is_correct(0.81)


def test_matching_total_agrees_with_brute_force_over_shapely_ious():
    rng = np.random.default_rng(3)
    predictions = [geometry.obb_to_quad(*rng.uniform(20, 60, 2), 30, 12, a) for a in (0, 40, 80)]
    targets = [geometry.obb_to_quad(*rng.uniform(20, 60, 2), 28, 14, a) for a in (10, 60)]
    matching = metrics.match_quads(predictions, targets)
    assert matching.ious.sum() == pytest.approx(
        best_assignment_by_brute_force(predictions, targets)
    )
    assert (matching.num_predictions, matching.num_targets) == (3, 2)


def test_single_target_hbb():
    target = [[10, 10, 50, 50]]
    assert metrics.match_hbbs([[10, 10, 50, 50]], target).is_correct(0.5)
    assert not metrics.match_hbbs([[50, 10, 90, 50]], target).is_correct(0.5)  # touching: IoU 0
    shifted = metrics.match_hbbs([[20, 10, 60, 50]], target)  # IoU 30/50 = 0.6
    assert shifted.ious[0] == pytest.approx(0.6)
    assert shifted.is_correct(0.5) and not shifted.is_correct(0.7)


def test_rotated_quad_overlap_at_two_thresholds():
    target = geometry.obb_to_quad(100, 100, 40, 40, 0)
    rotated = geometry.obb_to_quad(100, 100, 40, 40, 45)
    matching = metrics.match_quads([rotated], [target])
    assert matching.ious[0] == pytest.approx(shapely_iou(rotated, target))
    assert matching.ious[0] == pytest.approx(2**-0.5)
    assert matching.is_correct(0.7) and not matching.is_correct(0.75)


def test_multi_target_with_an_extra_prediction_is_wrong_but_finds_every_target():
    targets = [[0, 0, 10, 10], [20, 20, 30, 30]]
    matching = metrics.match_hbbs([[20, 20, 30, 30], [0, 0, 10, 10], [50, 50, 60, 60]], targets)
    assert not matching.is_correct(0.5)
    scores = metrics.box_metrics([matching], 0.5)
    assert scores["precision@0.5"] == pytest.approx(2 / 3)
    assert scores["recall@0.5"] == 1.0
    assert scores["f1@0.5"] == pytest.approx(0.8)
    assert scores["mean_iou"] == pytest.approx(2 / 3)


def test_multi_target_with_a_missing_prediction():
    matching = metrics.match_hbbs([[0, 0, 10, 10]], [[0, 0, 10, 10], [20, 20, 30, 30]])
    assert not matching.is_correct(0.5)
    scores = metrics.box_metrics([matching], 0.5)
    assert (scores["precision@0.5"], scores["recall@0.5"]) == (1.0, 0.5)


def test_empty_answers():
    nothing_right = metrics.match_hbbs([], [])
    assert nothing_right.is_correct(0.5) and nothing_right.mean_iou == 1.0
    assert not metrics.match_hbbs([], [[0, 0, 1, 1]]).is_correct(0.5)
    assert not metrics.match_hbbs([[0, 0, 1, 1]], []).is_correct(0.5)
    missing = metrics.missing_matching(0)
    assert not missing.is_correct(0.5) and missing.mean_iou == 0.0


def test_box_metrics_micro_averages_over_samples():
    samples = [
        metrics.match_hbbs([[0, 0, 10, 10]], [[0, 0, 10, 10]]),  # right
        metrics.match_hbbs([[0, 0, 10, 10]], [[40, 40, 50, 50]]),  # wrong
        metrics.match_hbbs([], []),  # right: nothing to find, nothing found
        metrics.missing_matching(2),  # wrong: two targets never answered
    ]
    scores = metrics.box_metrics(samples, 0.5)
    assert scores["acc@0.5"] == 0.5
    assert scores["precision@0.5"] == 0.5  # 1 true positive of 2 predictions
    assert scores["recall@0.5"] == 0.25  # of 4 targets
    assert scores["mean_iou"] == pytest.approx((1 + 0 + 1 + 0) / 4)


def test_precision_and_recall_without_predictions_or_targets():
    nothing_found = metrics.box_metrics([metrics.missing_matching(2)], 0.5)
    assert (nothing_found["precision@0.5"], nothing_found["recall@0.5"]) == (0.0, 0.0)
    all_empty = metrics.box_metrics([metrics.match_hbbs([], [])], 0.5)
    assert (all_empty["precision@0.5"], all_empty["recall@0.5"], all_empty["f1@0.5"]) == (1, 1, 1)
    spurious = metrics.box_metrics([metrics.match_hbbs([[0, 0, 1, 1]], [])], 0.5)
    assert (spurious["precision@0.5"], spurious["recall@0.5"]) == (0.0, 0.0)


def test_match_rejects_a_non_matrix():
    with pytest.raises(GeometryError):
        metrics.match([0.5, 0.2])


# Masks


def test_mask_metrics_agree_with_numpy():
    rng = np.random.default_rng(0)
    predicted = [rng.random((20, 30)) < 0.5, np.zeros((20, 30), bool), np.zeros((20, 30), bool)]
    truth = [rng.random((20, 30)) < 0.5, np.zeros((20, 30), bool), rng.random((20, 30)) < 0.3]
    overlaps = [
        metrics.mask_overlap(geometry.mask_to_rle(p), geometry.mask_to_rle(t))
        for p, t in zip(predicted, truth, strict=True)
    ]
    intersections = [np.logical_and(p, t).sum() for p, t in zip(predicted, truth, strict=True)]
    unions = [np.logical_or(p, t).sum() for p, t in zip(predicted, truth, strict=True)]
    per_sample = [intersections[0] / unions[0], 1.0, 0.0]  # empty for empty scores 1
    scores = metrics.mask_metrics(overlaps)
    assert scores["giou"] == pytest.approx(np.mean(per_sample))
    assert scores["ciou"] == pytest.approx(sum(intersections) / sum(unions))
    assert scores["P@0.5"] == pytest.approx(np.mean([v >= 0.5 for v in per_sample]))
    assert scores["P@0.9"] == pytest.approx(np.mean([v >= 0.9 for v in per_sample]))


def test_mask_overlap_iou_equals_pycocotools():
    a = geometry.polygon_to_rle(geometry.obb_to_quad(30, 30, 40, 12, 20), 64, 64)
    b = geometry.polygon_to_rle(geometry.obb_to_quad(34, 30, 40, 12, 35), 64, 64)
    expected = coco_mask.iou(
        [{"size": a["size"], "counts": a["counts"].encode()}],
        [{"size": b["size"], "counts": b["counts"].encode()}],
        [0],
    )[0][0]
    assert metrics.mask_overlap(a, b).iou == pytest.approx(expected)


def test_missing_mask_prediction_scores_zero_even_for_an_empty_target():
    missing = metrics.MaskOverlap(0, 0, answered=False)
    assert missing.iou == 0.0
    scores = metrics.mask_metrics([missing, metrics.MaskOverlap(5, 10)])
    assert scores["giou"] == 0.25
    assert scores["ciou"] == 0.5
    assert metrics.mask_metrics([metrics.MaskOverlap(0, 0)])["ciou"] == 1.0


def test_union_mask():
    a = np.zeros((8, 8), bool)
    b = np.zeros((8, 8), bool)
    a[1:3, 1:3] = True
    b[2:6, 2:6] = True
    union = metrics.union_mask([geometry.mask_to_rle(a), geometry.mask_to_rle(b)], 8, 8)
    np.testing.assert_array_equal(geometry.rle_to_mask(union), a | b)
    assert geometry.mask_area(metrics.union_mask([], 8, 8)) == 0
    with pytest.raises(GeometryError, match="size"):
        metrics.union_mask([geometry.mask_to_rle(np.ones((4, 8), bool))], 8, 8)


# Counting and text


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("3", 3),
        ("There are three ships.", 3),
        ("Twenty-one cars are parked.", 21),
        ("1,204 trees", 1204),
        ("There are no ships.", 0),
        ("None.", 0),
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_extract_count(text, count):
    assert metrics.extract_count(text) == count


def test_count_metrics():
    scores = metrics.count_metrics([3, 5, None, 0], [3, 4, 2, 0])
    assert scores == {"accuracy": 0.5, "mae": pytest.approx((0 + 1 + 2 + 0) / 4), "unparsed": 1}
    with pytest.raises(ValueError, match="2 predictions for 1"):
        metrics.count_metrics([1, 2], [1])


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The answer: Twenty-One ships.", "answer 21 ships"),
        ("An Airport!", "airport"),
        ("3.5 m", "3.5 m"),
        ("Dense_Residential", "dense residential"),
        ("  seven  ", "7"),
    ],
)
def test_normalize_answer(text, normal):
    assert metrics.normalize_answer(text) == normal


@pytest.mark.parametrize(
    ("prediction", "reference", "same"),
    [
        ("Yes", "yes", True),
        ("Yeah, there is a bridge.", "Yes", True),
        ("No.", "yes", False),
        ("nope", "No", True),
        ("", "no", False),
        ("Three", "3", True),
        ("the airport", "Airport", True),
        ("an airport runway", "airport", False),
        ("farmland", "forest", False),
    ],
)
def test_exact_match(prediction, reference, same):
    assert metrics.exact_match(prediction, reference) is same


def test_unigram_f1():
    # "a red car parked" -> [red, car, parked]; "the red car" -> [red, car]: P 2/3, R 1.
    assert metrics.unigram_f1("a red car parked", "the red car") == pytest.approx(0.8)
    assert metrics.unigram_f1("ships ships ships", "two ships") == pytest.approx(0.4)
    assert metrics.unigram_f1("", "") == 1.0
    assert metrics.unigram_f1("", "a ship") == 0.0
    assert metrics.unigram_f1("forest", "a ship") == 0.0


# Scoring records (the grammar parses both the reference and the answer)

WIDTH, HEIGHT = 200, 100  # grammar coordinates: x' = 5 x, y' = 10 y


def make_record(task, reference, objects=(), width=WIDTH, height=HEIGHT, record_id="r"):
    return {
        "id": record_id,
        "image": "tile.png",
        "width": width,
        "height": height,
        "task": task,
        "conversations": [
            {"from": "human", "value": "<image>\nquestion"},
            {"from": "gpt", "value": reference},
        ],
        "objects": list(objects),
    }


def box_text(*boxes_px):
    rows = geometry.to_grammar(np.reshape(boxes_px, (-1, 4)), WIDTH, HEIGHT).tolist()
    return "<box>" + str(rows).replace(" ", "") + "</box>"


def quad_text(quad_px):
    row = geometry.to_grammar(np.reshape(quad_px, (1, 8)), WIDTH, HEIGHT).tolist()
    return "<quad>" + str(row).replace(" ", "") + "</quad>"


def score_one(record, answer):
    scores, skipped = metrics.score_record(record, answer)
    assert skipped == []
    assert len(scores) == 1
    return scores[0]


SHIP = {"category": "ship", "hbb": [20, 10, 60, 50]}


@pytest.mark.parametrize(
    ("answer", "iou", "has_problems"),
    [
        ("<ref>the ship</ref><box>[[100,100,300,500]]</box>", 1.0, False),
        ("It is here: <box>[[200,100,400,500]]</box>", 1 / 3, False),  # [40, 10, 80, 50]
        ("<box>[[100,100,300,500]]</box><box>[[900,900,1000,1000]]</box>", 1.0, False),  # extra
        ("<none>", None, False),
        ("<box>[[100,100,300", None, True),  # cut short: reported, nothing read
    ],
)
def test_refer_hbb(answer, iou, has_problems):
    record = make_record("refer", "<ref>the ship</ref>" + box_text(SHIP["hbb"]), [SHIP])
    sample = score_one(record, answer)
    assert sample.family == "boxes" and bool(sample.problems) is has_problems
    matching = sample.result
    if iou is None:
        assert matching.num_predictions == 0 and not matching.is_correct(0.5)
    else:
        assert matching.ious[0] == pytest.approx(iou)
        correct = iou >= 0.5 and matching.num_predictions == 1
        assert matching.is_correct(0.5) is correct


def test_refer_quad_is_scored_with_polygon_iou():
    truth = geometry.obb_to_quad(100, 50, 60, 20, 30)
    record = make_record("refer", quad_text(truth), [{"category": "ship", "quad": truth.tolist()}])
    rotated = geometry.obb_to_quad(100, 50, 60, 20, 60)
    sample = score_one(record, quad_text(rotated))
    # The answer went through the 0-1000 grammar: compare with its decoded corners.
    decoded = geometry.from_grammar(geometry.to_grammar(rotated, WIDTH, HEIGHT), WIDTH, HEIGHT)
    assert sample.result.ious[0] == pytest.approx(shapely_iou(decoded, truth))
    # A horizontal box answer to a quad question is compared as its own quad.
    box = [60, 30, 140, 70]
    sample = score_one(record, box_text(box))
    assert sample.result.ious[0] == pytest.approx(shapely_iou(geometry.hbb_to_quad(box), truth))


TWO_SHIPS = [SHIP, {"category": "ship", "hbb": [100, 50, 140, 90]}]


@pytest.mark.parametrize("task", ["refer", "ground", "multi_turn"])
@pytest.mark.parametrize(
    ("objects", "geometry_text"),
    [
        ([SHIP], box_text(SHIP["hbb"])),
        (TWO_SHIPS, box_text(*(o["hbb"] for o in TWO_SHIPS))),
        ([SHIP], quad_text(geometry.hbb_to_quad(SHIP["hbb"]))),
    ],
)
def test_a_ref_before_the_geometry_scores_exactly_as_the_bare_geometry(
    task, objects, geometry_text
):
    def score(reference, answer):
        result = score_one(make_record(task, reference, objects), answer).result
        return result.ious.tolist(), result.num_predictions, result.num_targets

    named = "<ref>ships</ref>" + geometry_text
    shifted = geometry_text.replace("[100,", "[110,").replace("[[100,", "[[110,")
    for answer in (geometry_text, named, shifted, "<ref>ships</ref>" + shifted, "<none>"):
        assert score(named, answer) == score(geometry_text, answer)
    assert score(named, named) == score(geometry_text, geometry_text)
    assert score(named, named)[0] == pytest.approx([1.0] * len(objects))
    assert metrics.score_record(make_record(task, named, objects), named)[1] == []


def test_an_empty_answer_to_an_empty_target_is_right():
    record = make_record("refer", "<none>")
    assert score_one(record, "<none>").result.is_correct(0.5)
    # Regression: text without geometry is no answer; "nothing found" is said with <none>.
    assert not score_one(record, "Nothing matches.").result.is_correct(0.5)
    assert not score_one(record, box_text([0, 0, 10, 10])).result.is_correct(0.5)
    assert not score_one(record, None).result.is_correct(0.5)  # a missing answer is wrong


def test_ground_with_extra_and_missing_predictions():
    objects = [
        {"category": "car", "hbb": [0, 0, 20, 20]},
        {"category": "car", "hbb": [100, 50, 140, 90]},
    ]
    reference = "Two <ref>cars</ref>" + box_text(*(o["hbb"] for o in objects))
    extra = make_record("ground", reference, objects, record_id="extra")
    short = make_record("ground", reference, objects, record_id="short")
    samples = [
        score_one(extra, box_text([0, 0, 20, 20], [100, 50, 140, 90], [160, 0, 200, 40])),
        score_one(short, box_text([100, 50, 140, 90])),
    ]
    summary = metrics.summarize(samples)["ground"]["boxes"]
    assert summary["acc@0.5"] == 0.0
    assert summary["precision@0.5"] == pytest.approx(3 / 4)
    assert summary["recall@0.5"] == pytest.approx(3 / 4)


def test_ground_reference_that_names_fewer_objects_gets_a_note():
    objects = [SHIP, {"category": "ship", "hbb": [100, 50, 140, 90]}]
    record = make_record("ground", "A <ref>ship</ref>" + box_text(SHIP["hbb"]), objects)
    assert score_one(record, box_text(SHIP["hbb"])).notes == (
        "reference names 1 geometries, the record holds 2 objects",
    )


SEG_SIZE = 160  # a 16 x 16 text-mask has 10-pixel cells
POND_ROWS = ";".join(["0*16"] * 2 + ["0*4,1*6,0*6"] * 4 + ["0*16"] * 10)


def pond_mask():
    mask = np.zeros((SEG_SIZE, SEG_SIZE), bool)
    mask[20:60, 40:100] = True
    return mask


@pytest.mark.parametrize(
    ("answer", "iou"),
    [
        (f"<ref>the pond</ref><seg>16|{POND_ROWS}</seg>", 1.0),
        ("<box>[[250,125,625,375]]</box>", 1.0),  # the same pixels, rasterised
        ("<box>[[250,125,438,375]]</box>", 0.5),  # its left half: cols 40..70
        ("<none>", 0.0),
        (None, 0.0),
    ],
)
def test_segment_against_the_union_of_object_masks(answer, iou):
    left, right = pond_mask(), pond_mask()
    left[:, 70:] = False
    right[:, :70] = False
    objects = [
        {"category": "pond", "mask": geometry.mask_to_rle(left)},
        {"category": "pond", "hbb": [70, 20, 100, 60]},  # no mask: rasterised
    ]
    record = make_record(
        "segment", f"<seg>16|{POND_ROWS}</seg>", objects, width=SEG_SIZE, height=SEG_SIZE
    )
    sample = score_one(record, answer)
    assert sample.family == "mask"
    assert sample.result.iou == pytest.approx(iou, abs=0.01)
    assert sample.result.union >= pond_mask().sum()


def test_segment_empty_truth_and_empty_answer_scores_one():
    record = make_record("reason_segment", "<none>", width=SEG_SIZE, height=SEG_SIZE)
    assert score_one(record, "<none>").result.iou == 1.0
    assert score_one(record, None).result.iou == 0.0
    assert score_one(record, "No idea.").result.iou == 0.0


@pytest.mark.parametrize(
    ("task", "reference", "answer", "result"),
    [
        ("count", "There are 3 ships.", "Three.", (3, 3)),
        ("count", "There are 3 ships.", "I see <ref>4 ships</ref><box>[[1,1,2,2]]</box>", (4, 3)),
        ("count", "<none>", "There are no ships.", (0, 0)),
        ("count", "3", "many", (None, 3)),
        ("count", "3", None, (None, 3)),
        ("vqa", "Yes", "Yes, there is a bridge.", True),
        ("vqa", "Yes", None, False),
        ("classify", "Dense residential", "dense residential.", True),
        ("classify", "Dense residential", "residential", False),
        ("identify", "a storage tank", "Storage tank", True),
        ("caption", "A red car on the road.", "a red car", pytest.approx(2 / 3)),
        ("caption", "A red car.", None, 0.0),
    ],
)
def test_text_tasks(task, reference, answer, result):
    assert score_one(make_record(task, reference), answer).result == result


def test_identify_with_a_geometry_reference_is_scored_as_boxes():
    record = make_record("identify", "<ref>the ship</ref>" + box_text(SHIP["hbb"]), [SHIP])
    sample = score_one(record, box_text(SHIP["hbb"]))
    assert sample.family == "boxes" and sample.result.is_correct(0.5)


def test_multi_turn_scores_each_turn_by_its_reference():
    record = make_record("multi_turn", "<ref>the ship</ref>" + box_text(SHIP["hbb"]))
    record["conversations"] += [
        {"from": "human", "value": "How many ships?"},
        {"from": "gpt", "value": "2"},
        {"from": "human", "value": "Describe the image."},
        {"from": "gpt", "value": "A harbour with two ships moored along a long concrete pier."},
    ]
    scores, skipped = metrics.score_record(record, [box_text(SHIP["hbb"]), "two"])
    assert skipped == []
    assert [(s.turn, s.family, s.answered) for s in scores] == [
        (0, "boxes", True),
        (1, "count", True),
        (2, "caption", False),  # the answer list stops early: the last turn is missing
    ]
    assert scores[0].result.is_correct(0.5) and scores[1].result == (2, 2)
    assert scores[2].result == 0.0
    only_first, _ = metrics.score_record(record, box_text(SHIP["hbb"]))
    assert len(only_first) == 1


def test_dialogues_are_summarised_per_turn_and_family():
    record = make_record("multi_turn", "<ref>the ship</ref>" + box_text(SHIP["hbb"]))
    record["conversations"] += [
        {"from": "human", "value": "How many ships?"},
        {"from": "gpt", "value": "2"},
    ]
    other = {**record, "id": "other"}
    report = metrics.score(
        [record, other],
        {"r": [box_text(SHIP["hbb"]), "two"], "other": ["<none>", "3"]},
    )
    by_turn = report["by_turn"]
    assert sorted(by_turn) == ["1", "2"]
    assert list(by_turn["1"]) == ["boxes"] and list(by_turn["2"]) == ["count"]
    assert by_turn["1"]["boxes"]["n"] == 2 and by_turn["1"]["boxes"]["acc@0.5"] == 0.5
    assert by_turn["2"]["count"]["accuracy"] == 0.5
    single = metrics.score([make_record("refer", box_text(SHIP["hbb"]), [SHIP])], {})
    assert single["by_turn"] == {}


def test_oriented_box_answers_get_their_own_category_rows():
    quad = [20, 10, 60, 10, 60, 50, 20, 50]
    ship = {"category": "ship", "quad": quad, "hbb": [20, 10, 60, 50]}
    as_quads = make_record("ground", "<ref>ships</ref>" + quad_text(quad), [ship], record_id="q")
    as_boxes = make_record("ground", "<ref>ships</ref>" + box_text(ship["hbb"]), [ship])
    report = metrics.score([as_quads, as_boxes], {"q": quad_text(quad), "r": "<none>"})
    rows = report["by_category"]["ground"]
    assert rows["ship (quad)"]["n"] == 1 and rows["ship (quad)"]["acc@0.5"] == 1.0
    assert rows["ship"]["n"] == 1 and rows["ship"]["acc@0.5"] == 0.0


def test_broken_references_and_truth_are_skipped_with_a_reason():
    broken = make_record("refer", "<box>[[1,2", [SHIP])
    no_geometry = make_record("refer", box_text(SHIP["hbb"]), [{"category": "ship"}])
    count = make_record("count", "Several.")
    for record, reason in [
        (broken, "<box>"),
        (no_geometry, "has no hbb"),
        (count, "holds no count"),
    ]:
        scores, skipped = metrics.score_record(record, "anything")
        assert scores == [] and reason in skipped[0].reason


def test_summarize_groups_by_task_and_family():
    refer = make_record("refer", box_text(SHIP["hbb"]), [SHIP])
    vqa = make_record("vqa", "No")
    samples = [
        score_one(refer, box_text(SHIP["hbb"])),
        score_one(refer, "<box>[[1,2"),
        score_one(vqa, "no"),
        score_one(vqa, None),
    ]
    summary = metrics.summarize(samples)
    assert summary["refer"]["boxes"]["n"] == 2
    assert summary["refer"]["boxes"]["acc@0.5"] == 0.5
    assert summary["refer"]["boxes"]["with_problems"] == 1
    assert summary["vqa"]["exact"] == {"n": 2, "missing": 1, "with_problems": 0, "accuracy": 0.5}
