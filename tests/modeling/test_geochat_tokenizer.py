import pytest
from transformers import AutoTokenizer

from geochat.grammar.tags import ALL_TAGS
from geochat.modeling import train_tokenizer
from geochat.modeling.factory import TINY_CORPUS
from geochat.modeling.tokenizer import IMAGE_TOKEN, SPECIAL_TOKENS

ANSWER = "<ref>the ship</ref><box>[[12,345,1000,7]]</box> seen in 2024"


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TINY_CORPUS, vocab_size=400, min_frequency=1)


def tokens(tokenizer, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])


def test_digits_are_split_one_per_token(tokenizer):
    pieces = tokens(tokenizer, ANSWER)
    assert pieces[pieces.index("[[") : pieces.index("]]") + 1] == ["[[", *"12,345,1000,7", "]]"]
    assert all(len(piece) == 1 for piece in pieces if any(c.isdigit() for c in piece))


@pytest.mark.parametrize("token", SPECIAL_TOKENS + ALL_TAGS)
def test_special_tokens_and_grammar_tags_are_single_tokens(tokenizer, token):
    assert len(tokenizer(f"a{token}b", add_special_tokens=False)["input_ids"]) == 3


def test_decoding_keeps_grammar_tags_and_drops_image_tokens(tokenizer):
    ids = tokenizer(f"{IMAGE_TOKEN}{ANSWER}")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == ANSWER
    assert tokenizer.decode(ids) == f"{IMAGE_TOKEN}{ANSWER}"


def test_special_tokens_are_set(tokenizer):
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<|im_start|>",
        "<end_of_utterance>",
        "<|pad|>",
    )


def test_save_and_load_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert len(loaded) == len(tokenizer)
    assert loaded(ANSWER)["input_ids"] == tokenizer(ANSWER)["input_ids"]
    assert loaded.eos_token == tokenizer.eos_token


def test_training_is_deterministic(tokenizer):
    again = train_tokenizer(TINY_CORPUS, vocab_size=400, min_frequency=1)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_grammar_tags_are_not_learned_as_merges(tokenizer):
    assert not any("box" in piece for piece in tokenizer.get_vocab() if piece not in ALL_TAGS)


def test_loc_tokens_make_coordinates_single_tokens_and_keep_the_text(tokenizer):
    with_loc = train_tokenizer(TINY_CORPUS, vocab_size=400, min_frequency=1, loc_tokens=True)

    pieces = tokens(with_loc, ANSWER)

    coordinates = pieces[pieces.index("[[") + 1 : pieces.index("]]")]
    assert coordinates == ["12", ",", "345", ",", "1000", ",", "7"]
    assert pieces[-4:] == ["2", "0", "2", "4"]  # not a coordinate: 2024 is out of range
    assert with_loc.decode(with_loc(ANSWER)["input_ids"]) == ANSWER
    assert len(with_loc) == len(tokenizer) + 991  # 10..1000; 0..9 are digits already
    # a lone digit and a digit inside a word share one id: no two ids spell the same text
    assert with_loc("[[7]]")["input_ids"][1] == with_loc("x7")["input_ids"][1]


def test_too_small_vocabulary_is_refused():
    with pytest.raises(ValueError, match="vocab_size must exceed"):
        train_tokenizer(TINY_CORPUS, vocab_size=256)


def test_corpus_must_hold_strings():
    with pytest.raises(TypeError, match="strings"):
        train_tokenizer(["fine", 3], vocab_size=400)
