"""The one category vocabulary: canonical names and every source's spellings."""

import pytest

from geochat import categories
from geochat.categories import DIOR_CLASSES, DOTA_CLASSES, CategoryError
from geochat.data_builders.tags import load_tag_table


@pytest.mark.parametrize(
    "spellings",
    [
        ("storage-tank", "storagetank", "storage tank", "Storage_Tank", "storage tanks"),
        ("plane", "airplane", "Airplane", "planes"),
        ("baseball-diamond", "baseballfield", "baseball field"),
        ("soccer-ball-field", "soccer field"),
        ("Expressway-Service-area", "expressway service area"),
        ("small-vehicle", "small vehicle"),
        ("harbor", "harbour"),
    ],
)
def test_every_spelling_of_a_category_meets_one_name(spellings):
    assert len({categories.normalise(spelling) for spelling in spellings}) == 1


def test_dota_dior_and_tag_table_labels_all_normalise():
    for version, classes in DOTA_CLASSES.items():
        names = {categories.normalise(label) for label in classes}
        assert len(names) == len(classes), version  # no two classes merge
    assert len({categories.normalise(label) for label in DIOR_CLASSES}) == 20
    for name in load_tag_table().categories:
        assert categories.normalise(name) == name


def test_dota_versions_add_classes():
    assert len(DOTA_CLASSES["1.0"]) == 15
    assert set(DOTA_CLASSES["1.5"]) - set(DOTA_CLASSES["1.0"]) == {"container-crane"}
    assert set(DOTA_CLASSES["2.0"]) - set(DOTA_CLASSES["1.5"]) == {"airport", "helipad"}


def test_canonical_names_are_their_own_spelling_with_a_plural():
    for name in categories.names():
        assert categories.normalise(name) == name == name.lower().strip()
        assert categories.plural(name) != name


def test_an_unknown_label_is_a_clear_error():
    assert categories.lookup("hangar") is None
    with pytest.raises(CategoryError, match="unknown category 'hangar'"):
        categories.normalise("hangar")
    with pytest.raises(CategoryError, match="not a canonical"):
        categories.category("storage-tank")


@pytest.mark.parametrize(
    ("phrase", "name"),
    [
        ("the small white car next to the storage tank", "car"),
        ("It is a small vehicle.", "small vehicle"),
        ("two planes", "plane"),
        ("the parking lot on the left", "parking lot"),
        ("tennis courts", "tennis court"),
        ("storage-tank", "storage tank"),
        ("a hangar", None),
        ("", None),
    ],
)
def test_the_category_a_phrase_names_is_its_first_head_noun(phrase, name):
    assert categories.find_in_phrase(phrase) == name
