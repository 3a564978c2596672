"""Random geochat models of any compressor and size, for tests and training from scratch."""

import torch
from transformers import Idefics3VisionConfig, LlamaConfig
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from geochat.modeling.configuration import GeoChatConfig
from geochat.modeling.modeling import GeoChatForConditionalGeneration
from geochat.modeling.processing import GeoChatProcessor
from geochat.modeling.tokenizer import (
    BOS_TOKEN,
    END_OF_UTTERANCE_TOKEN,
    IMAGE_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    train_tokenizer,
)

MIN_HEAD_DIM = 32  # vLLM's CPU attention accepts head_dim 32, 64, 80, 96, ... only
MLP_RATIO = 4  # intermediate width / hidden width, in the vision encoder and the LLM
MAX_POSITIONS = 8192  # room for 6 x 6 uncompressed tiles of a small encoder plus text

# Enough text in the grammar's forms to train a small tokenizer when none is given.
TINY_CORPUS = (
    "<image>\nDescribe the image.",
    "An aerial view of a harbour with three ships, a pier and storage tanks.",
    "A residential area with houses, swimming pools, trees and a road.",
    "<image>\nWhere is the largest ship?",
    "<ref>the largest ship</ref><box>[[120,345,410,502]]</box>",
    "<image>\nOutline every storage tank.",
    "<ref>storage tanks</ref><quad>[[500,100,620,140,590,260,470,220]]</quad>",
    "<image>\nSegment the water.",
    "<seg>16|0*16;0*5,1*6,0*5;1*16</seg>",
    "<image>\nIs there an airplane?",
    "No. <none>",
    "<image>\nHow many buildings are there?",
    "There are 12 buildings.",
    "<image>\nWhat is in <box>[[0,0,1000,1000]]</box>?",
    "A tennis court next to a parking lot with 37 cars.",
)


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """The id of one token (transformers types the lookup for one token or a list)."""
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise ValueError(f"the tokenizer gives no single id for {token!r}")
    return found


def _check_width(name: str, width: int, head_dim: int) -> int:
    """Number of heads of a `width`-wide layer; the width must be a multiple of `head_dim`."""
    if head_dim < MIN_HEAD_DIM or width % head_dim:
        raise ValueError(
            f"{name} {width} must be a multiple of head_dim {head_dim} (>= {MIN_HEAD_DIM})"
        )
    return width // head_dim


def tiny(
    compressor: str = "pixel_shuffle",
    factor: int = 2,
    *,
    image_size: int = 64,
    patch_size: int = 8,
    vision_layers: int = 2,
    vision_hidden: int | None = None,
    text_layers: int = 2,
    hidden: int = 64,
    head_dim: int = 32,
    vocab_size: int = 512,
    max_tiles_per_side: int = 2,
    tokenizer: PreTrainedTokenizerBase | None = None,
    loc_tokens: bool = False,
    seed: int = 0,
) -> tuple[GeoChatForConditionalGeneration, GeoChatProcessor]:
    """Builds a random geochat model and its processor; the same arguments give the same model.

    Args:
        compressor: `pixel_shuffle`, `conv` or `pool`.
        factor: Patches merged per side by the compressor (tokens fall by factor**2).
        image_size: Tile side in pixels.
        patch_size: Patch side in pixels of the vision encoder.
        vision_layers: Layers of the vision encoder.
        vision_hidden: Width of the vision encoder; `hidden` when None.
        text_layers: Layers of the Llama LLM.
        hidden: Width of the LLM.
        head_dim: Width of each attention head (>= 32 for vLLM on CPU).
        vocab_size: BPE vocabulary size when a tokenizer is trained here.
        max_tiles_per_side: Tiles along an image's longest edge.
        tokenizer: A tokenizer from `train_tokenizer`; None trains one on `TINY_CORPUS`.
        loc_tokens: Location tokens in the trained tokenizer (see `tokenizer.py`).
        seed: Seed of the weight initialisation.

    Returns:
        The model (eval mode) and the processor.

    Raises:
        ValueError: For widths that are not multiples of `head_dim`, `head_dim` < 32, a
            compressor whose factor does not divide the patch grid, or a tokenizer without
            geochat's special tokens.
    """
    vision_hidden = vision_hidden or hidden
    if tokenizer is None:
        tokenizer = train_tokenizer(TINY_CORPUS, vocab_size, loc_tokens=loc_tokens, min_frequency=1)
    missing = sorted(set(SPECIAL_TOKENS) - set(tokenizer.get_vocab()))
    if missing:
        raise ValueError(f"the tokenizer lacks the special tokens {missing}; use train_tokenizer")
    ids = {
        "bos_token_id": token_id(tokenizer, BOS_TOKEN),
        "eos_token_id": token_id(tokenizer, END_OF_UTTERANCE_TOKEN),
        "pad_token_id": token_id(tokenizer, PAD_TOKEN),
    }
    vision_config = Idefics3VisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=MLP_RATIO * vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=_check_width("vision_hidden", vision_hidden, head_dim),
        image_size=image_size,
        patch_size=patch_size,
    )
    heads = _check_width("hidden", hidden, head_dim)
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=MLP_RATIO * hidden,
        num_hidden_layers=text_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=head_dim,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-5,
        bos_token_id=ids["bos_token_id"],
        eos_token_id=ids["eos_token_id"],
        pad_token_id=ids["pad_token_id"],
    )
    config = GeoChatConfig(
        compressor=compressor,
        scale_factor=factor,
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=token_id(tokenizer, IMAGE_TOKEN),
        pad_token_id=ids["pad_token_id"],
    )
    torch.manual_seed(seed)
    model = GeoChatForConditionalGeneration(config).eval()
    for name, value in ids.items():
        setattr(model.generation_config, name, value)
    return model, GeoChatProcessor.for_model(config, tokenizer, max_tiles_per_side)
