import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers.models.idefics3.modeling_idefics3 import Idefics3Connector

from geochat.modeling import GeoChatConfig, tiny
from geochat.modeling.compressor import PixelShuffle, build_compressor

IMAGE_SIZE, PATCH_SIZE = 64, 8  # an 8 x 8 patch grid per tile
VARIANTS = [
    ("pixel_shuffle", 1),
    ("pixel_shuffle", 2),
    ("pixel_shuffle", 4),
    ("conv", 2),
    ("conv", 4),
    ("pool", 2),
    ("pool", 4),
]


@pytest.mark.parametrize(("compressor", "factor"), VARIANTS)
def test_visual_tokens_per_tile_follow_the_formula(compressor, factor, wide_image, question):
    expected = (IMAGE_SIZE // PATCH_SIZE) ** 2 // factor**2
    model, processor = tiny(compressor, factor, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    chat = processor.build_chat_inputs(wide_image, question)
    tiles = chat.inputs["pixel_values"].shape[1]

    with torch.no_grad():
        features = model.get_image_features(chat.inputs["pixel_values"]).pooler_output

    assert model.config.image_seq_len == processor.image_seq_len == expected
    assert features.shape == (tiles, expected, model.config.text_config.hidden_size)
    image_tokens = (chat.inputs["input_ids"] == model.config.image_token_id).sum()
    assert image_tokens == tiles * expected


def test_pixel_shuffle_matches_idefics3():
    tokens = torch.randn(3, 36, 5)  # [N, 6*6, D]
    ours = PixelShuffle(dim=5, factor=3)(tokens)
    theirs = Idefics3Connector.pixel_shuffle(None, tokens, scale_factor=3)
    assert torch.equal(ours, theirs)
    assert ours.shape == (3, 4, 45)


@pytest.mark.parametrize("name", ["pixel_shuffle", "conv", "pool"])
def test_compressor_rejects_a_grid_that_is_not_square_or_not_divisible(name):
    compressor = build_compressor(name, dim=8, factor=2)
    with pytest.raises(ValueError, match="square"):
        compressor(torch.randn(1, 12, 8))
    with pytest.raises(ValueError, match="not divisible"):
        compressor(torch.randn(1, 9, 8))


def test_unknown_compressor_is_refused():
    with pytest.raises(ValueError, match="unknown compressor"):
        build_compressor("perceiver", dim=8, factor=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compressor": "perceiver"}, "compressor must be one of"),
        ({"compressor": "conv", "scale_factor": 3}, "power-of-two"),
        ({"scale_factor": 0}, ">= 1"),
        ({"scale_factor": 3}, "not divisible"),
    ],
)
def test_config_validates_the_compressor(kwargs, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        GeoChatConfig(**kwargs)


def test_default_config_is_smolvlm_like_and_consistent():
    config = GeoChatConfig()
    assert config.compressor == "pixel_shuffle"
    assert (config.scale_factor, config.image_seq_len) == (2, 256)
    assert config.image_token_id < config.text_config.vocab_size
    assert config.pad_token_id < config.text_config.vocab_size
