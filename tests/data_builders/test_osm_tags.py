import pytest
from shapely.geometry import LineString, Point, Polygon

from geochat import categories
from geochat.data_builders.tags import TagTableError, load_tag_table

CONTRACT_CATEGORIES = (
    "building",
    "swimming pool",
    "storage tank",
    "tennis court",
    "road",
    "river",
    "tree",
    "car",
    "ship",
    "water",
    "parking lot",
    "runway",
    "apron",
    "forest",
    "grass",
    "park",
)


@pytest.fixture(scope="module")
def table():
    return load_tag_table()


def test_bundled_table_is_versioned_and_knows_the_contract_categories(table):
    assert isinstance(table.version, int)
    assert len(table.digest) == 64
    assert set(CONTRACT_CATEGORIES) <= set(table.categories)
    assert {"building", "highway", "natural", "vehicle", "seamark:type"} <= set(table.keys)


@pytest.mark.parametrize(
    ("tags", "category"),
    [
        ({"building": "yes"}, "building"),
        ({"building": "house", "roof:colour": "red"}, "building"),
        ({"leisure": "pitch", "sport": "tennis"}, "tennis court"),
        ({"leisure": "pitch", "sport": "curling"}, "sports pitch"),
        ({"leisure": "swimming_pool"}, "swimming pool"),
        ({"man_made": "storage_tank"}, "storage tank"),
        ({"highway": "primary"}, "road"),
        ({"highway": "footway"}, "footpath"),
        ({"waterway": "river"}, "river"),
        ({"natural": "water", "water": "pond"}, "water"),
        ({"natural": "tree"}, "tree"),
        ({"vehicle": "car"}, "car"),
        ({"seamark:type": "vessel"}, "ship"),
        ({"ship": "cargo"}, "ship"),
        ({"aeroway": "runway"}, "runway"),
        ({"landuse": "forest"}, "forest"),
        ({"natural": "wood"}, "forest"),
    ],
)
def test_rule_for_finds_the_first_matching_category(table, tags, category):
    assert table.rule_for(tags).category == category


@pytest.mark.parametrize(
    "tags",
    [
        {"building": "no"},
        {"amenity": "parking", "parking": "underground"},
        {"highway": "residential", "tunnel": "yes"},
        {"vehicle": "no", "barrier": "gate"},
        {"name": "Main Street"},
    ],
)
def test_invisible_or_unknown_features_match_no_rule(table, tags):
    assert table.rule_for(tags) is None


def test_attribute_phrases_come_from_other_tags(table):
    rule = table.rule_for({"building": "house"})
    assert rule.phrases({"building": "house", "roof:colour": "red", "building:levels": "2"}) == {
        "colour": "red",
        "kind": "house",
        "levels": "2",
    }
    # A mapped attribute ignores values outside its mapping.
    assert "kind" not in rule.phrases({"building": "yes"})


def test_line_footprint_is_a_strip_of_the_table_width_or_the_width_tag(table):
    rule = table.rule_for({"highway": "residential"})
    line = LineString([(0, 0), (100, 0)])
    strip = rule.footprint("line", line, {"highway": "residential"})
    assert strip.bounds[1] == pytest.approx(-rule.width_m / 2)
    assert strip.area == pytest.approx(
        100 * rule.width_m + 3.1214 * (rule.width_m / 2) ** 2, rel=1e-3
    )
    wide = rule.footprint("line", line, {"highway": "residential", "width": "12 m"})
    assert wide.bounds[3] == pytest.approx(6.0)
    # Widths in other units are not guessed at.
    assert rule.line_width({"width": "20'"}) == rule.width_m


def test_node_footprint_is_a_disc_of_the_table_diameter(table):
    rule = table.rule_for({"natural": "tree"})
    disc = rule.footprint("node", Point(10, 10), {})
    assert disc.bounds == pytest.approx((8, 8, 12, 12))
    assert rule.footprint("node", Point(0, 0), {"diameter_crown": "10"}).bounds[2] == pytest.approx(
        5
    )
    area = Polygon([(0, 0), (1, 0), (1, 1)])
    assert table.rule_for({"building": "yes"}).footprint("area", area, {}) is area


GOOD_RULE = "{category: tree, plural: trees, match: {a: b}, kinds: [area], max_gsd: 1}"


def _table(rule: str) -> str:
    return f"version: 1\nrules: [{rule}]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: []", "version"),
        (_table(GOOD_RULE.replace("category: tree, ", "")), "category"),
        (_table(GOOD_RULE.replace("category: tree", "category: x")), "unknown category 'x'"),
        (_table(GOOD_RULE.replace("{a: b}", "{a: yes}")), "quote"),
        (_table(GOOD_RULE.replace("[area]", "[line]")), "width_m"),
        (_table(GOOD_RULE.replace("[area]", "[node]")), "footprint_m"),
        (_table(GOOD_RULE.replace("[area]", "[blob]")), "kinds"),
        (_table(GOOD_RULE.replace("max_gsd: 1", "max_gsd: 1, size: 2")), "unknown"),
        (_table(GOOD_RULE.replace("{a: b}", "{}")), "pattern"),
        (_table(GOOD_RULE.replace("max_gsd: 1", "max_gsd: 0")), "max_gsd"),
        ("version: [", "cannot read"),
    ],
)
def test_broken_tables_raise_a_clear_error(tmp_path, text, message):
    path = tmp_path / "tags.yaml"
    path.write_text(text)
    with pytest.raises(TagTableError, match=message):
        load_tag_table(path)


def test_a_valid_custom_table_loads(tmp_path):
    path = tmp_path / "tags.yaml"
    path.write_text(_table(GOOD_RULE))
    assert load_tag_table(path).rule_for({"a": "b"}).category == "tree"


def test_table_categories_are_the_vocabulary_s_names(tmp_path):
    assert all(categories.lookup(name) == name for name in load_tag_table().categories)
    path = tmp_path / "tags.yaml"
    path.write_text(_table(GOOD_RULE.replace("category: tree", "category: Storage-Tank")))
    assert load_tag_table(path).categories == ("storage tank",)
