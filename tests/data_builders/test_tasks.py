"""Task generators on hand-built tiles whose objects, positions and colours are known."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pydantic import ValidationError
from shapely import affinity
from shapely.geometry import Point, box

from geochat.data_builders.tasks import (
    CURRICULUM,
    TaskOptions,
    TaskOptionsError,
    TileError,
    allocate,
    generate_records,
)
from geochat.data_builders.tasks.dialogue import MAX_TURNS, follow_ups
from geochat.data_builders.tasks.expressions import referring_expressions
from geochat.data_builders.tasks.reason import RULES, reason_turn, rule_targets
from geochat.data_builders.tasks.refer import locate_turn
from geochat.data_builders.tasks.scene import Scene, load_vocabulary
from geochat.data_builders.tile import Tile, TileObject
from geochat.geometry import canonical_quad, mask_to_rle, min_area_rect, rasterize, rle_to_mask
from geochat.grammar import NONE, format_mask, format_ref, parse
from geochat.metrics import score_record
from geochat.prompts import FOLLOW_UP_QUESTIONS
from geochat.records import TruthObject, check_record

SIZE = 256
TOLERANCE = SIZE / 2000 + 1e-6  # grammar quantisation: half a step of 1000 per axis


def make_object(category, shape, tags=None, attributes=None, truncated=False):
    return TileObject(
        category=category,
        tags=tags or {},
        hbb=[float(v) for v in shape.bounds],
        quad=min_area_rect(shape).tolist(),
        mask=mask_to_rle(rasterize(shape, SIZE, SIZE)),
        truncated=truncated,
        attributes=attributes or {},
    )


def building(x, y, w, h, colour=None, angle=0.0, kind=None, truncated=False):
    tags, attributes = {"building": "yes"}, {}
    if colour:
        tags["roof:colour"] = colour
        attributes["colour"] = colour
    if kind:
        attributes["kind"] = kind
    shape = affinity.rotate(box(x, y, x + w, y + h), angle)
    return make_object("building", shape, tags, attributes, truncated)


def pool(x, y, w=15, h=10):
    return make_object("swimming pool", box(x, y, x + w, y + h), {"leisure": "swimming_pool"})


def car(x, y, angle=20.0):
    return make_object("car", affinity.rotate(box(x, y, x + 8, y + 4), angle), {"vehicle": "car"})


def make_tile(objects, name="t0", gsd=0.3, split="train"):
    return Tile(
        image=f"tiles/{name}.png",
        width=SIZE,
        height=SIZE,
        objects=objects,
        gsd=gsd,
        source={"tile": name},
        split=split,
    )


def rich_tile():
    """A residential tile: 4 buildings (3 red, 1 grey and largest), 2 pools, a car by the
    lower pool, a road, a pond."""
    return make_tile(
        [
            make_object("residential area", box(0, 0, 256, 256), {"landuse": "residential"}),
            building(20, 20, 30, 20, "red"),
            building(200, 30, 25, 25, "red"),
            building(110, 120, 50, 40, "grey", kind="industrial"),
            building(30, 200, 20, 20, "red", angle=30),
            pool(60, 30),
            pool(190, 190, 20, 10),
            car(213, 185),
            make_object("road", box(0, 100, 256, 110), {"highway": "residential"}, truncated=True),
            make_object("water", Point(60, 160).buffer(20), {"natural": "water"}),
        ]
    )


def scene_of(tile, **options):
    return Scene(tile, TaskOptions(**options), load_vocabulary())


def phrases(tile):
    return {e.phrase: e.targets for e in referring_expressions(scene_of(tile))}


def answers(record):
    return [turn["value"] for turn in record["conversations"][1::2]]


def records_of(tile, task, seeds=range(6), **options):
    options = {"tasks": {task: 1.0}, "max_records": 6, **options}
    return [
        r for seed in seeds for r in generate_records(tile, np.random.default_rng(seed), options)
    ]


def truth_boxes(record):
    return sorted(o["hbb"] for o in record["objects"])


def assert_boxes_match(parsed_boxes, expected_boxes):
    assert len(parsed_boxes) == len(expected_boxes)
    for got, want in zip(sorted(parsed_boxes), sorted(expected_boxes), strict=True):
        np.testing.assert_allclose(got, want, atol=TOLERANCE)


@pytest.fixture(scope="module")
def rich_records():
    return generate_records(rich_tile(), np.random.default_rng(0))


# Records and options.


def test_default_options_give_every_task_on_a_rich_tile(rich_records):
    assert {r["task"] for r in rich_records} == set(TaskOptions().active_tasks)
    assert len(rich_records) <= TaskOptions().max_records
    for record in rich_records:
        check_record(record)
        json.dumps(record)  # plain JSON types only
        assert record["split"] == "train"
        assert record["gsd"] == 0.3


def test_ids_are_tile_task_index_and_unique(rich_records):
    ids = [r["id"] for r in rich_records]
    assert len(set(ids)) == len(ids)
    for record in rich_records:
        tile, task, index = record["id"].split(":")
        assert (tile, task) == ("t0", record["task"])
        assert int(index) >= 0
    tile = rich_tile()
    tile.source = {}
    record = generate_records(tile, np.random.default_rng(0))[0]
    assert record["id"].startswith("tiles/t0:")


def test_split_comes_from_the_tile():
    tile = make_tile(rich_tile().objects, split="val")
    assert {r["split"] for r in generate_records(tile, np.random.default_rng(3))} == {"val"}


def test_same_seed_same_records_and_other_seed_other_records():
    tile = rich_tile()
    first = generate_records(tile, np.random.default_rng(7))
    again = generate_records(rich_tile(), np.random.default_rng(7))
    other = generate_records(tile, np.random.default_rng(8))
    assert json.dumps(first) == json.dumps(again)
    assert json.dumps(first) != json.dumps(other)


def test_scene_level_tasks_carry_every_object_and_others_their_targets(rich_records):
    tile = rich_tile()
    for record in rich_records:
        if record["task"] in ("caption", "grounded_caption", "multi_turn"):
            assert len(record["objects"]) == len(tile.objects)
        elif NONE in answers(record)[-1] or answers(record)[-1] in ("No", "0"):
            assert record["objects"] == []
        else:
            assert 1 <= len(record["objects"]) < len(tile.objects)


def test_count_records_carry_the_counted_objects_so_they_score_under_their_category():
    records = records_of(rich_tile(), "count", seeds=range(6), none_fraction=0.2)
    categories = set()
    for record in records:
        assert len(record["objects"]) == int(answers(record)[0])
        (sample,), _ = score_record(record, answers(record)[0])
        assert sample.result == (len(record["objects"]),) * 2
        category = {o["category"] for o in record["objects"]}
        assert sample.category == (category.pop() if category else "none") != "mixed"
        categories.add(sample.category)
    assert {"building", "swimming pool", "none"} <= categories


def test_options_from_a_mapping_round_trip_and_bad_options_raise():
    options = TaskOptions(tasks={"refer": 2.0, "vqa": 1.0}, mask_grid=32, max_records=4)
    assert TaskOptions.from_mapping(json.loads(json.dumps(options.to_mapping()))) == options
    with pytest.raises(TaskOptionsError, match="unknown tasks"):
        TaskOptions(tasks={"translate": 1.0})
    with pytest.raises(TaskOptionsError, match="mask_grid"):
        TaskOptions(mask_grid=20)
    with pytest.raises(TaskOptionsError, match="none_fraction"):
        TaskOptions(none_fraction=1.5)
    with pytest.raises(TaskOptionsError, match="unknown task options"):
        generate_records(rich_tile(), np.random.default_rng(0), {"grid": 16})
    with pytest.raises(TaskOptionsError, match="short_answers"):
        TaskOptions(short_answers=True)
    with pytest.raises(TaskOptionsError, match="max_records must be an integer"):
        TaskOptions.from_mapping({"max_records": "8"})


def test_a_category_missing_from_the_tag_table_is_a_clear_error():
    tile = make_tile([make_object("spaceship", box(10, 10, 40, 40))])
    with pytest.raises(TileError, match="spaceship"):
        generate_records(tile, np.random.default_rng(0))


def test_allocation_follows_the_weights_and_the_total():
    options = TaskOptions(tasks={"refer": 3.0, "vqa": 1.0, "count": 0.0}, max_records=6)
    totals = {"refer": 0, "vqa": 0}
    for seed in range(200):
        quotas = allocate(options, np.random.default_rng(seed))
        assert set(quotas) == {"vqa", "refer"} and sum(quotas.values()) == 6
        for task, count in quotas.items():
            totals[task] += count
    assert totals["refer"] / 200 == pytest.approx(4.5, abs=0.1)


def test_max_records_is_respected():
    records = generate_records(rich_tile(), np.random.default_rng(1), TaskOptions(max_records=3))
    assert 1 <= len(records) <= 3


# Geometry in answers.


def test_referring_boxes_and_quads_parse_back_to_the_truth():
    tile = rich_tile()
    forms = set()
    for record in records_of(tile, "refer", none_fraction=0.0):
        parsed = parse(answers(record)[0], SIZE, SIZE, strict=True)
        forms |= {o.kind for o in parsed.objects}
        if parsed.objects[0].kind == "hbb":
            assert_boxes_match([o.hbb for o in parsed.objects], truth_boxes(record))
        else:
            want = sorted(canonical_quad(o["quad"]).ravel().tolist() for o in record["objects"])
            got = sorted(np.ravel(o.quad).tolist() for o in parsed.objects)
            np.testing.assert_allclose(got, want, atol=TOLERANCE)
    assert forms == {"hbb", "quad"}


def test_referring_answers_name_their_targets_and_none_stays_bare():
    records = records_of(rich_tile(), "refer", seeds=range(10), none_fraction=0.3)
    named = {answers(r)[0] for r in records if r["objects"]}
    assert "<ref>swimming pools</ref><" in "".join(named)
    for record in records:
        answer = answers(record)[0]
        if not record["objects"]:
            assert answer == NONE
            continue
        question = record["conversations"][0]["value"]
        (phrase,) = {o.phrase for o in parse(answer, SIZE, SIZE, strict=True).objects}
        assert answer.startswith(f"<ref>{phrase}</ref><")
        # One target: the question's phrase; several: its plural noun without "all".
        assert (phrase if len(record["objects"]) == 1 else f"all {phrase}") in question
    assert any(not r["objects"] for r in records)


def test_multi_target_expressions_answer_all_matches_in_one_tag():
    records = [r for r in records_of(rich_tile(), "refer", seeds=range(30), none_fraction=0.0)]
    plural = [r for r in records if "all swimming pools" in r["conversations"][0]["value"]]
    assert plural, "expected a question about all swimming pools"
    for record in plural:
        answer = answers(record)[0]
        assert answer.count("<box>") + answer.count("<quad>") == 1
        assert len(parse(answer, SIZE, SIZE, strict=True).objects) == 2 == len(record["objects"])


def test_text_masks_parse_back_to_the_truth_at_grid_resolution():
    tile = rich_tile()
    for grid in (16, 32):
        records = records_of(tile, "segment", seeds=range(3), none_fraction=0.0, mask_grid=grid)
        assert records
        for record in records:
            answer = answers(record)[0]
            assert answer.startswith(f"<seg>{grid}|")
            (mask,) = parse(answer, SIZE, SIZE, strict=True).objects
            truth = np.zeros((SIZE, SIZE), dtype=bool)
            for obj in record["objects"]:
                truth |= rle_to_mask(obj["mask"])
            assert format_mask(truth, grid) == answer
            assert rle_to_mask(mask.mask)[truth].any()


def test_ground_finds_every_object_of_the_asked_category_under_its_plural():
    tile = rich_tile()
    records = records_of(tile, "ground", seeds=range(8), none_fraction=0.0)
    asked = set()
    for record in records:
        (category,) = {o["category"] for o in record["objects"]}
        asked.add(category)
        members = [o for o in tile.objects if o.category == category]
        assert len(record["objects"]) == len(members)
        plural = load_vocabulary().plurals[category]
        question = record["conversations"][0]["value"]
        assert plural in question or f"every {category} " in question
        answer = answers(record)[0]
        assert answer.startswith(f"<ref>{plural}</ref><")
        parsed = parse(answer, SIZE, SIZE, strict=True)
        assert {o.phrase for o in parsed.objects} == {plural}
        if parsed.objects[0].kind == "hbb":
            assert_boxes_match([o.hbb for o in parsed.objects], truth_boxes(record))
        else:
            assert "oriented" in question
            want = sorted(canonical_quad(o["quad"]).ravel().tolist() for o in record["objects"])
            got = sorted(np.ravel(o.quad).tolist() for o in parsed.objects)
            np.testing.assert_allclose(got, want, atol=TOLERANCE)
        scores, _ = score_record(record, answer)
        assert scores[0].category == category and scores[0].result.is_correct(0.9)
    assert {"building", "swimming pool", "car", "road"} <= asked


def test_ground_asks_for_absent_categories_and_answers_none():
    records = records_of(rich_tile(), "ground", seeds=range(4), none_fraction=1.0)
    assert records
    for record in records:
        assert answers(record) == [NONE] and record["objects"] == []
        assert re.search(r"(all|every) ", record["conversations"][0]["value"])


def test_ground_skips_categories_with_more_than_max_boxes_objects():
    records = records_of(rich_tile(), "ground", seeds=range(6), none_fraction=0.0, max_boxes=3)
    assert records
    assert all(o["category"] != "building" for r in records for o in r["objects"])


def test_grounded_captions_locate_every_object_under_its_phrase():
    tile = rich_tile()
    records = records_of(tile, "grounded_caption", seeds=range(4))
    assert records
    for record in records:
        parsed = parse(answers(record)[0], SIZE, SIZE, strict=True)
        assert len(parsed.objects) == len(tile.objects)
        assert {o.phrase for o in parsed.objects} >= {
            "four buildings",
            "two swimming pools",
            "a car",
        }
        if parsed.objects[0].kind == "hbb":
            assert_boxes_match([o.hbb for o in parsed.objects], truth_boxes(record))


def test_grounded_caption_is_skipped_when_the_answer_would_hold_too_many_boxes():
    assert records_of(rich_tile(), "grounded_caption", seeds=range(2), max_boxes=5) == []


def test_identify_regions_are_the_truth_and_answers_name_it():
    for record in records_of(rich_tile(), "identify"):
        (obj,) = record["objects"]
        (region,) = parse(record["conversations"][0]["value"], SIZE, SIZE, strict=True).objects
        np.testing.assert_allclose(region.hbb, obj["hbb"], atol=TOLERANCE + 1e-9)
        answer = answers(record)[0]
        assert obj["category"] in answer or obj["attributes"].get("kind", "") in answer
        if obj["attributes"].get("colour"):
            assert f"{obj['attributes']['colour']}-roofed" in answer


# Referring expressions.


def test_expressions_single_out_known_objects():
    found = phrases(rich_tile())
    assert found["the grey-roofed building"] == (3,)
    assert found["all red-roofed buildings"] == (1, 2, 4)
    assert found["the largest building"] == (3,)
    assert found["the building in the upper right"] == (2,)
    assert found["the swimming pool next to the car"] == (6,)
    assert found["all swimming pools"] == (5, 6)
    assert found["the road"] == (8,)
    # A modifier that changes nothing is left out.
    assert "the largest grey-roofed building" not in found
    assert "the car next to the largest swimming pool" not in found  # only one car anyway


def test_no_ambiguous_expression_in_an_ambiguous_scene():
    # Three buildings in a row, same size, in the centre, 10 px apart (under 5% of the image),
    # two red and one of unknown colour: nothing tells them apart.
    tile = make_tile(
        [
            building(100, 110, 8, 8, "red"),
            building(110, 110, 8, 8, "red"),
            building(120, 110, 8, 8),
        ]
    )
    assert phrases(tile) == {"all buildings": (0, 1, 2)}
    for record in records_of(tile, "refer", seeds=range(3), none_fraction=0.0):
        assert "all buildings" in record["conversations"][0]["value"]


def test_unknown_attributes_and_truncated_sizes_block_expressions():
    tile = make_tile(
        [
            building(10, 10, 20, 20, "red"),
            building(200, 200, 20, 20),  # colour unknown: it may be red too
            building(100, 100, 60, 60, "grey", truncated=True),  # size unknown
        ]
    )
    found = phrases(tile)
    assert not [p for p in found if "red" in p or "grey" in p]
    assert not [p for p in found if "largest" in p or "smallest" in p]
    assert found["the left-most building"] == (0,)


def test_next_to_needs_a_clear_nearest_object():
    near_and_far = make_tile([pool(100, 100), car(118, 103), car(220, 220)])
    assert phrases(near_and_far)["the car next to the swimming pool"] == (1,)
    # The second car is neither next to the pool nor clearly away from it.
    near_and_middling = make_tile([pool(100, 100), car(118, 103), car(100, 125)])
    assert not [p for p in phrases(near_and_middling) if "next to" in p]


def test_superlatives_need_a_clear_winner():
    close = make_tile([pool(100, 100, 20, 10), pool(160, 100, 21, 10)])  # about equal sizes
    assert not [p for p in phrases(close) if "largest" in p or "smallest" in p]
    clear = make_tile([pool(100, 100, 30, 10), pool(160, 100, 15, 10)])
    assert phrases(clear)["the largest swimming pool"] == (0,)


def test_every_phrase_names_one_target_set_on_random_scenes():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        objects = []
        for _ in range(12):
            x, y = rng.uniform(0, 230, 2)
            colour = rng.choice(["red", "grey", None])
            objects.append(building(x, y, *rng.uniform(6, 24, 2), colour, angle=rng.uniform(0, 90)))
        for _ in range(4):
            objects.append(car(*rng.uniform(0, 240, 2)))
        scene = scene_of(make_tile(objects))
        seen = {}
        for expression in referring_expressions(scene):
            assert seen.setdefault(expression.phrase, expression.targets) == expression.targets
            categories = {objects[i].category for i in expression.targets}
            assert categories == {expression.category}
            if [m.kind for m in expression.modifiers] == ["colour"]:
                # A colour alone is only safe when every object of the category has a known one.
                members = scene.members[expression.category]
                assert all(scene.colour_phrase(i) is not None for i in members)
                colour = expression.modifiers[0].words
                assert expression.targets == tuple(
                    i for i in members if scene.colour_phrase(i) == colour
                )


# Questions and answers.


def test_counts_are_right():
    tile = rich_tile()
    counts = {"buildings": 4, "swimming pools": 2, "cars": 1, "red-roofed buildings": 3}
    seen = set()
    for record in records_of(tile, "count", seeds=range(10), none_fraction=0.0):
        question = record["conversations"][0]["value"]
        for plural, count in counts.items():
            ending = r"(are there\?|can you see\?|in this image\.|in the image\?)$"
            whole = rf"(How many|Count the|the number of) {plural} {ending}"
            if re.search(whole, question):
                assert answers(record) == [str(count)]
                seen.add(plural)
    assert seen >= {"buildings", "swimming pools"}


def test_presence_is_balanced_and_right():
    tile = rich_tile()
    present = {o.category for o in tile.objects}
    records = records_of(tile, "vqa", seeds=range(5))
    assert {answers(r)[0] for r in records} == {"Yes", "No"}
    for record in records:
        asked = {
            c for c in load_vocabulary().categories if c in record["conversations"][0]["value"]
        }
        if answers(record) == ["Yes"]:
            assert asked & present
            assert {o["category"] for o in record["objects"]} <= asked
        else:
            assert not (asked & present) and record["objects"] == []


def test_absent_categories_are_answered_none():
    tile = rich_tile()
    present = {o.category for o in tile.objects}
    for task in ("refer", "segment"):
        records = records_of(tile, task, seeds=range(3), none_fraction=1.0)
        assert records
        for record in records:
            assert answers(record) == [NONE] and record["objects"] == []
            question = record["conversations"][0]["value"]
            assert not [c for c in present if re.search(rf"\b{c}s?\b", question)]
    counts = records_of(tile, "count", seeds=range(2), none_fraction=1.0)
    assert {answers(r)[0] for r in counts} == {"0"}


def test_absent_categories_respect_the_ground_sample_distance():
    coarse = make_tile([make_object("forest", box(0, 0, 256, 256), {"landuse": "forest"})], gsd=5.0)
    scene = scene_of(coarse)
    assert "car" not in scene.absent_categories and "farmland" in scene.absent_categories


def test_round_objects_get_boxes_not_quads():
    trees = [make_object("tree", Point(x, 60).buffer(6), {"natural": "tree"}) for x in (40, 200)]
    tile = make_tile([*trees, building(100, 150, 30, 20, "red", angle=25)])
    for task in ("refer", "identify", "ground", "grounded_caption"):
        for record in records_of(tile, task, seeds=range(4), none_fraction=0.0):
            if {o["category"] for o in record["objects"]} == {"tree"}:
                assert "<quad>" not in record["conversations"][0]["value"] + answers(record)[0]
            if task == "grounded_caption" and "<quad>" in answers(record)[0]:
                assert re.search(r"<ref>two trees</ref><box>", answers(record)[0])


def test_an_empty_tile_gets_only_questions_about_absent_things():
    records = generate_records(make_tile([]), np.random.default_rng(0))
    assert records
    for record in records:
        assert record["objects"] == []
        # A dialogue may close with a caption ("An overhead view of an area.").
        asked = answers(record)[:2] if record["task"] == "multi_turn" else answers(record)
        assert all(a in ("No", "0", NONE) or a.endswith(NONE) for a in asked)


def test_caption_mentions_each_category_once_with_counts_and_colours(rich_records):
    (record,) = [r for r in rich_records if r["task"] == "caption"]
    caption = answers(record)[0]
    assert "a residential area" in caption
    assert "four buildings, mostly red-roofed" in caption
    assert "two swimming pools" in caption and "a car" in caption and "a road" in caption
    assert caption.count("building") == 1 and caption.endswith(".")


def test_classify_answers_the_majority_land_cover():
    records = records_of(rich_tile(), "classify", seeds=range(3))
    assert records and {answers(r)[0] for r in records} == {"residential area"}
    without = make_tile([pool(10, 10)])
    assert records_of(without, "classify", seeds=range(2)) == []


def test_reasoning_answers_explain_then_locate():
    tile = rich_tile()
    scene = scene_of(tile)
    (cool_off,) = [rule for rule in RULES if "swimming pool" in rule.categories]
    turn = reason_turn(scene, np.random.default_rng(0), cool_off, rule_targets(scene, cool_off))
    explanation, geometry_text = turn.answer.split(" <")
    assert explanation.startswith("The two swimming pools are")
    assert turn.targets == (5, 6)
    assert len(parse("<" + geometry_text, SIZE, SIZE, strict=True).objects) in (1, 2)
    for record in records_of(tile, "reason_segment", seeds=range(3)):
        answer = answers(record)[0]
        assert re.match(r"[A-Z][^<]+\. <(box|seg|none)", answer)


def test_boat_launch_needs_water_next_to_a_road():
    (launch,) = [rule for rule in RULES if rule.near == "road"]
    road = make_object("road", box(0, 100, 256, 110), {"highway": "residential"})
    by_road = make_tile(
        [road, make_object("water", Point(60, 135).buffer(24), {"natural": "water"})]
    )
    assert rule_targets(scene_of(by_road), launch) == (1,)
    far = make_tile([road, make_object("water", Point(60, 220).buffer(20), {"natural": "water"})])
    assert rule_targets(scene_of(far), launch) is None


def test_dialogues_mix_tasks_and_mention_the_image_once():
    records = records_of(rich_tile(), "multi_turn", seeds=range(4))
    assert records
    for record in records:
        turns = record["conversations"]
        assert len(turns) >= 4
        assert sum("<image>" in t["value"] for t in turns) == 1
        assert answers(record)[0] in ("Yes", "No")
        assert len(turns) <= 2 * MAX_TURNS


MASK_THEM = FOLLOW_UP_QUESTIONS["segment"][1].format(them="them")


def all_buildings_turn(scene, form="box"):
    buildings = scene.members["building"]
    return locate_turn(scene, np.random.default_rng(0), "all buildings", buildings, form, True)


def test_follow_ups_answer_about_the_objects_located_before():
    """Rich tile: the grey industrial building (3) is the largest, the rotated 20 px one (4)
    the smallest, clearly (area ratios 2.5 and 1.5)."""
    scene = scene_of(rich_tile())
    seen = {}
    for seed in range(30):
        previous = all_buildings_turn(scene)
        turns = follow_ups(scene, np.random.default_rng(seed), previous, "box", room=2)
        assert 1 <= len(turns) <= 2
        for turn in turns:
            seen[turn.question] = turn.answer
            if turn.question in FOLLOW_UP_QUESTIONS["largest"]:
                assert turn.answer == format_ref(
                    "the grey-roofed industrial building", scene.boxes_text([3])
                )
                previous = turn
            elif turn.question in FOLLOW_UP_QUESTIONS["smallest"]:
                assert turn.answer == format_ref("the red-roofed building", scene.boxes_text([4]))
                previous = turn
            elif turn.question in FOLLOW_UP_QUESTIONS["count"]:
                assert turn.answer == str(len(previous.targets))
            else:
                them = "them" if len(previous.targets) > 1 else "it"
                segment = [q.format(them=them) for q in FOLLOW_UP_QUESTIONS["segment"]]
                assert turn.question in segment
                assert turn.answer == format_mask(scene.union_mask(previous.targets), 16)
    asked = set(seen)
    for kind in ("largest", "smallest", "count"):
        assert asked & set(FOLLOW_UP_QUESTIONS[kind]), kind
    assert {"Segment it.", "Segment them."} & asked


def test_follow_ups_skip_what_is_unclear_or_already_said():
    scene = scene_of(rich_tile())
    buildings = scene.members["building"]
    for seed in range(10):
        rng = np.random.default_rng(seed)
        # After a mask of the buildings, counted already: only a superlative is left to ask.
        (turn,) = follow_ups(scene, rng, all_buildings_turn(scene), "mask", buildings, room=1)
        assert "largest" in turn.question or "smallest" in turn.question
    # Land cover is not counted or compared: only "Segment them." is left.
    areas = [make_object("forest", box(x, 0, x + 60, 60), {"landuse": "forest"}) for x in (0, 150)]
    land = scene_of(make_tile(areas))
    previous = locate_turn(land, np.random.default_rng(0), "all forests", (0, 1), "box", True)
    for seed in range(5):
        turns = follow_ups(land, np.random.default_rng(seed), previous, "box", room=2)
        assert [t.question for t in turns] in (["Segment them."], [MASK_THEM])
    # Two pools of sizes 1.2 apart: no clear largest or smallest.
    close = scene_of(make_tile([pool(20, 20, 20, 10), pool(150, 150, 20, 12)]))
    pools = close.members["swimming pool"]
    previous = locate_turn(
        close, np.random.default_rng(0), "all swimming pools", pools, "box", True
    )
    for seed in range(10):
        for turn in follow_ups(close, np.random.default_rng(seed), previous, "box", room=2):
            assert "largest" not in turn.question and "smallest" not in turn.question


def test_dialogue_follow_ups_are_decidable_from_the_turn_before():
    records = records_of(rich_tile(), "multi_turn", seeds=range(20), none_fraction=0.0)
    follow = {q for questions in FOLLOW_UP_QUESTIONS.values() for q in questions}
    found = 0
    for record in records:
        turns = record["conversations"]
        for index in range(2, len(turns), 2):
            question, answer = turns[index]["value"], turns[index + 1]["value"]
            if not any(question == q.format(them=t) for q in follow for t in ("it", "them")):
                continue
            found += 1
            before = parse(turns[index - 1]["value"], SIZE, SIZE, strict=True).objects
            if answer.isdigit():
                assert int(answer) == len(before) or before[0].kind == "mask"
            elif answer.startswith("<ref>"):
                (winner,) = parse(answer, SIZE, SIZE, strict=True).objects
                boxes = [b.hbb for b in before if b.kind != "mask"]  # after a mask: new geometry
                assert not boxes or any(np.allclose(winner.hbb, b) for b in boxes)
    assert found >= 5


# Curriculum.


def test_curriculum_single_object_stage():
    stages = dict(CURRICULUM)
    single = make_tile([pool(100, 100)])
    records = generate_records(single, np.random.default_rng(0), stages["single_object"])
    assert records
    for record in records:
        assert record["task"] in ("identify", "vqa")
        assert re.fullmatch(r"[a-z ]+|Yes|No", answers(record)[0])
    assert generate_records(rich_tile(), np.random.default_rng(0), stages["single_object"]) == []
    assert list(stages)[-1] == "full" and stages["full"] == TaskOptions()


def test_a_tile_object_is_a_record_truth_object_with_every_geometry():
    obj = make_object("building", box(2, 3, 10, 12), tags={"building": "yes"})
    stored = obj.to_record_object()
    assert sorted(stored) == [
        "attributes", "category", "hbb", "id", "mask", "quad", "tags", "truncated"
    ]  # fmt: skip
    assert TruthObject.model_validate(stored).hbb == [2.0, 3.0, 10.0, 12.0]
    with pytest.raises(ValidationError, match="mask"):
        TileObject(category="building", tags={}, hbb=[0.0, 0.0, 1.0, 1.0], quad=obj.quad)
    with pytest.raises(ValidationError, match="x1 must be >= x0"):
        TileObject(**{**stored, "hbb": [10.0, 3.0, 2.0, 12.0]})
