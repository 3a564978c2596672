import numpy as np
import pytest
import torch
from PIL import Image

from geochat.modeling import conversation_to_messages, image_size, tiny


def test_large_non_square_image_is_tiled_with_a_global_view(wide_image, question):
    # 200 x 100 -> longest edge 3 tiles of 64 px: 192 x 96 -> whole tiles: 192 x 128 = 3 x 2 tiles.
    _, processor = tiny(image_size=64, max_tiles_per_side=3)

    chat = processor.build_chat_inputs(wide_image, question)

    assert chat.image_sizes == [(200, 100)]
    assert chat.inputs["pixel_values"].shape == (1, 3 * 2 + 1, 3, 64, 64)
    text = processor.tokenizer.decode(chat.inputs["input_ids"][0])
    assert "<row_2_col_3>" in text
    assert "<row_3_col_1>" not in text
    assert text.count("<global-img>") == 1


def test_one_tile_per_side_keeps_only_the_global_view(wide_image, question):
    _, processor = tiny(max_tiles_per_side=1)

    chat = processor.build_chat_inputs(wide_image, question)

    assert chat.inputs["pixel_values"].shape[1] == 1
    assert "<row_1_col_1>" not in processor.tokenizer.decode(chat.inputs["input_ids"][0])


def test_original_sizes_of_several_images_in_order(wide_image):
    _, processor = tiny()
    tall = wide_image.transpose(Image.Transpose.ROTATE_90)
    messages = [{"role": "user", "content": "<image><image>\nWhich one shows a harbour?"}]

    chat = processor.build_chat_inputs([wide_image, tall], messages)

    assert chat.image_sizes == [(200, 100), (100, 200)]


def test_image_count_must_match_the_image_places(wide_image, question):
    _, processor = tiny()
    with pytest.raises(ValueError, match="number of images"):
        processor.build_chat_inputs([wide_image, wide_image], question)


def test_text_only_conversation_has_no_pixels():
    _, processor = tiny()
    chat = processor.build_chat_inputs(None, [{"role": "user", "content": "Hello"}])
    assert chat.image_sizes == []
    assert "pixel_values" not in chat.inputs


def test_chat_template_renders_string_and_part_contents_alike():
    _, processor = tiny()
    as_string = [
        {"role": "user", "content": "<image>\nWhere is the ship?"},
        {"role": "assistant", "content": "<ref>the ship</ref><box>[[1,2,3,4]]</box>"},
    ]
    as_parts = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "\nWhere is the ship?"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "<ref>the ship</ref><box>[[1,2,3,4]]</box>"}],
        },
    ]

    rendered = processor.apply_chat_template(as_string, tokenize=False)

    assert rendered == processor.apply_chat_template(as_parts, tokenize=False)
    assert rendered == (
        "<|im_start|>User:<image>\nWhere is the ship?<end_of_utterance>\n"
        "Assistant: <ref>the ship</ref><box>[[1,2,3,4]]</box><end_of_utterance>\n"
    )
    prompt = processor.apply_chat_template(
        as_string[:1], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<end_of_utterance>\nAssistant:")


def test_conversation_to_messages_maps_record_speakers():
    conversations = [
        {"from": "human", "value": "<image>\nCount the cars."},
        {"from": "gpt", "value": "3"},
    ]
    assert conversation_to_messages(conversations) == [
        {"role": "user", "content": "<image>\nCount the cars."},
        {"role": "assistant", "content": "3"},
    ]
    with pytest.raises(ValueError, match="unknown speaker"):
        conversation_to_messages([{"from": "robot", "value": "hi"}])


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((30, 50, 3), dtype=np.uint8),
        np.zeros((3, 30, 50), dtype=np.float32),
        Image.new("RGB", (50, 30)),
        torch.zeros(3, 30, 50),
    ],
)
def test_image_size_is_width_then_height(image):
    assert image_size(image) == (50, 30)


def test_too_many_tiles_per_side_is_refused():
    with pytest.raises(ValueError, match="max_tiles_per_side"):
        tiny(max_tiles_per_side=7)
