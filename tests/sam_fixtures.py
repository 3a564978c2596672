"""A tiny random SAM (hidden 32, 2 layers, 256 px images), seeded, for the SAM tests."""

from pathlib import Path

import torch
from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor

TINY_CONFIG = {
    "vision_config": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 256,
        "patch_size": 16,
        "output_channels": 32,
        "mlp_dim": 64,
        "window_size": 4,
        "global_attn_indexes": [1],
        "num_pos_feats": 16,  # half the prompt encoder's hidden size
    },
    "prompt_encoder_config": {
        "hidden_size": 32,
        "image_size": 256,
        "patch_size": 16,
        "mask_input_channels": 8,
    },
    "mask_decoder_config": {
        "hidden_size": 32,
        "mlp_dim": 64,
        "num_attention_heads": 8,  # segment-anything's fixed count, which shapes cannot tell
        "iou_head_hidden_dim": 32,
    },
}


def tiny_sam() -> SamModel:
    """A seeded tiny random SAM (its masks cover 5-65 % of the test image, varying by prompt)."""
    torch.manual_seed(0)
    return SamModel(SamConfig(**TINY_CONFIG)).eval()


def tiny_processor() -> SamProcessor:
    image_processor = SamImageProcessorPil(
        size={"longest_edge": 256},
        pad_size={"height": 256, "width": 256},
        mask_size={"longest_edge": 64},
        mask_pad_size={"height": 64, "width": 64},
    )
    return SamProcessor(image_processor=image_processor)


def save(model: SamModel, directory: Path) -> Path:
    model.save_pretrained(directory)
    tiny_processor().save_pretrained(directory)
    return directory
