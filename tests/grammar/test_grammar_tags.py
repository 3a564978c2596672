"""Everything derived from the grammar's vocabulary (geochat.grammar.tags) agrees with it."""

import json
from importlib import resources

import pytest
import regex

from geochat.engine.grounding import GROUNDING_REGEX, integer_pattern
from geochat.grammar import CanonicalDialect, format_mask
from geochat.grammar.tags import (
    ALL_TAGS,
    COORDINATE_TAGS,
    GEOMETRY_TAGS,
    GRAMMAR_SCALE,
    GRID_SIDES,
    NONE,
    REF,
)
from geochat.modeling.tokenizer import train_tokenizer
from geochat.training.losses import CoordinateTargets


def test_every_tag_appears_in_the_decoding_regex():
    for tag in ALL_TAGS:
        assert tag in GROUNDING_REGEX


def test_the_canonical_dialect_reads_every_geometry_tag():
    syntax = CanonicalDialect.SYNTAX
    assert syntax.phrase == REF
    assert syntax.none == NONE
    assert list(syntax.geometry.items()) == list(GEOMETRY_TAGS)
    assert set(CanonicalDialect.readers) == {opening for opening, _ in GEOMETRY_TAGS}


def test_the_regex_accepts_the_scale_and_every_grid_and_nothing_beyond():
    box = "<box>[[0,0,{v},{v}]]</box>"
    assert regex.fullmatch(GROUNDING_REGEX, box.format(v=GRAMMAR_SCALE))
    assert not regex.fullmatch(GROUNDING_REGEX, box.format(v=GRAMMAR_SCALE + 1))
    for side in GRID_SIDES:
        mask = [[True] * side] * side
        assert regex.fullmatch(GROUNDING_REGEX, format_mask(mask, side))


@pytest.mark.parametrize("largest", [0, 1, 9, 10, 99, 100, 256, 999, 1000, 1024])
def test_integer_pattern_matches_exactly_zero_to_largest(largest):
    pattern = regex.compile(integer_pattern(largest))
    matched = [n for n in range(2 * largest + 20) if pattern.fullmatch(str(n))]
    assert matched == list(range(largest + 1))
    assert not pattern.fullmatch("01")


def test_a_trained_tokenizer_and_the_coordinate_loss_take_their_tags_from_the_grammar():
    tokenizer = train_tokenizer(["<box>[[1,2,3,4]]</box> a ship"] * 4, 400, loc_tokens=True)
    for tag in ALL_TAGS:
        assert len(tokenizer.encode(tag, add_special_tokens=False)) == 1
    targets = CoordinateTargets(tokenizer, sigma=2.0)
    assert len(targets.coordinate_ids) == GRAMMAR_SCALE + 1
    assert targets.open_ids.tolist() == [
        tokenizer.convert_tokens_to_ids(o) for o, _ in COORDINATE_TAGS
    ]


def test_the_bundled_tokenizer_holds_every_tag_as_one_token():
    bundled = resources.files("geochat") / "assets" / "geochat-nano" / "tokenizer.json"
    added = {token["content"] for token in json.loads(bundled.read_text())["added_tokens"]}
    assert set(ALL_TAGS) <= added
