import pytest
from PIL import Image

from geochat.grammar import parse
from geochat.modeling import conversation_to_messages, tiny
from geochat.training.collator import (
    IGNORE_INDEX,
    ChatCollator,
    ExampleTooLongError,
    conversation_pieces,
    encode_example,
)

BOX = "<ref>the pool</ref><box>[[100,200,300,400]]</box>"
CONVERSATION = [
    {"from": "human", "value": "<image>\nWhere is the pool?"},
    {"from": "gpt", "value": f"It is here: {BOX}"},
    {"from": "human", "value": "How many pools are there?"},
    {"from": "gpt", "value": "2"},
]

TEXT_ONLY = [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi"}]


@pytest.fixture(scope="module")
def processor():
    return tiny(image_size=32, patch_size=8, max_tiles_per_side=2)[1]


def learned_text(processor, example):
    ids = [i for i, label in zip(example.input_ids, example.labels, strict=True) if label != -100]
    return processor.tokenizer.decode(ids)


def test_pieces_join_to_the_rendering_and_mark_only_answers(processor):
    pieces = conversation_pieces(processor, conversation_to_messages(CONVERSATION))
    roles = ["user", "assistant"] * 2
    messages = [
        {"role": r, "content": turn["value"]} for r, turn in zip(roles, CONVERSATION, strict=True)
    ]
    full = processor.apply_chat_template(messages, tokenize=False)
    assert "".join(piece.text for piece in pieces) == full
    learned = [piece.text for piece in pieces if piece.learned]
    assert learned == [f" It is here: {BOX}<end_of_utterance>", " 2<end_of_utterance>"]


def test_labels_cover_assistant_turns_only(processor):
    example = encode_example(processor, CONVERSATION, Image.new("RGB", (80, 50)), 4096)
    expected = f" It is here: {BOX}<end_of_utterance> 2<end_of_utterance>"
    assert learned_text(processor, example) == expected
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    # Every image token is context, and the labels equal the ids where learned.
    for token, label in zip(example.input_ids, example.labels, strict=True):
        assert label in (IGNORE_INDEX, token)
        if token == image_token:
            assert label == IGNORE_INDEX
    # The image is resized to 2 x 2 tiles of 32 px (each side rounded up), plus the global view.
    assert example.extras["pixel_values"].shape[1] == 5  # [1, tiles, 3, H, W]


@pytest.mark.parametrize("cut", range(1, 40, 3))
def test_truncation_never_cuts_a_geometry_tag(processor, cut):
    image = Image.new("RGB", (64, 64))
    full = encode_example(processor, CONVERSATION, image, 4096)
    example = encode_example(processor, CONVERSATION, image, len(full.input_ids) - cut)
    assert len(example.input_ids) <= len(full.input_ids) - cut
    answer = learned_text(processor, example)
    # What is kept of the answer holds whole tags only: it parses strictly or has no tag.
    assert answer.count("<box>") == answer.count("</box>")
    assert answer.count("<ref>") == answer.count("</ref>")
    if "<box>" in answer:
        assert len(parse(answer.split("<end_of_utterance>")[0], 64, 64).objects) == 1


def test_a_prompt_longer_than_the_limit_is_refused(processor):
    with pytest.raises(ExampleTooLongError, match="max_length"):
        encode_example(processor, CONVERSATION, Image.new("RGB", (64, 64)), 20)


def test_image_placeholder_needs_an_image(processor):
    with pytest.raises(ValueError, match="no image"):
        encode_example(processor, CONVERSATION, None, 512)


def test_collator_pads_tokens_and_tiles(processor):
    items = [
        {"record": {"conversations": CONVERSATION}, "image": Image.new("RGB", (80, 50))},
        {"record": {"conversations": TEXT_ONLY}, "image": None},
    ]
    batch = ChatCollator(processor, 4096)(items)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["pixel_values"].shape[:2] == (2, 5)
    # The text-only row has no image: its tiles are all zero, which the model skips.
    assert batch["pixel_values"][1].abs().sum() == 0
    short = int(batch["attention_mask"][1].sum())
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][1, short:] == processor.tokenizer.pad_token_id).all()
