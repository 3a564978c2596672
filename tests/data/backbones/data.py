#!/usr/bin/env python3
"""Writes tiny random checkpoints of the Qwen2.5-VL, Qwen3-VL and LLaVA families.

Each folder is what `save_pretrained` of a real checkpoint holds: `config.json` (the real
config class, tiny sizes: 2 layers, width 64, head_dim 32, a 2-block vision tower),
`model.safetensors`, `generation_config.json`, the tokenizer, the image processor's
`preprocessor_config.json` and the chat template. The tokenizer is a byte-level BPE trained here
with `tokenizers` on a few lines, carrying the family's special tokens (Qwen's `<|im_start|>`,
`<|vision_start|>`, `<|image_pad|>` ...; LLaVA's `<s>`, `</s>`, `<image>`). Chat templates:
Qwen2.5-VL's own; for Qwen3-VL and LLaVA-1.5 (llava-hf) the image-and-text part of theirs.

Usage: `python data.py OUT_DIR [family ...]` writes OUT_DIR/<model_type>/. Deterministic (seeded
weights); nothing is committed but this script. Tests call :func:`build`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

WIDTH = 64  # LLM and vision width
HEADS = 2  # head_dim 32: the smallest vLLM's CPU attention takes
LAYERS = 2
VOCAB = 400
SEED = 0
CORPUS = (
    "Where is the pool? Locate the ship in the image and output its bbox coordinates.",
    '```json\n[\n\t{"bbox_2d": [135, 114, 240, 224], "label": "small cake"}\n]\n```',
    "[refer] give me the location of <p>the pool</p> {<10><20><30><40>|<0>}<delim>",
    "[grounding] Describe the image in detail. [identify] what is this",
    "An aerial view of a harbour with three ships, a pier and storage tanks.",
)
QWEN_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
LLAVA_SPECIAL = ("<unk>", "<s>", "</s>", "<image>", "<pad>")

QWEN25_TEMPLATE = (  # Qwen/Qwen2.5-VL-7B-Instruct's chat_template.json
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_TEMPLATE = (  # Qwen3-VL-Instruct's, images and text only: no default system prompt
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_TEMPLATE = (  # llava-hf/llava-1.5-7b-hf's: images first in a turn, then its text
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% if message['role'] == 'assistant' %}"
    "{{ '</s>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}"
    "{% endif %}"
)


def tokenizer(special: tuple[str, ...], **roles: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `CORPUS` whose first ids are `special`.

    Args:
        special: Special tokens, one id each, never split.
        **roles: `bos_token`, `eos_token`, `pad_token`, `unk_token` among `special`.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=1,
        special_tokens=list(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, clean_up_tokenization_spaces=False, **roles
    )


def _save(
    folder: Path,
    model: PreTrainedModel,
    tokens: PreTrainedTokenizerFast,
    parts: tuple,
    template: str,
) -> Path:
    """Saves the model, the tokenizer, the processor parts and the chat template."""
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = tokens.eos_token_id
    model.generation_config.pad_token_id = tokens.pad_token_id
    model.save_pretrained(folder)
    tokens.save_pretrained(folder)
    for part in parts:
        part.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(template, encoding="utf-8")
    return folder


def _qwen_ids(tokens: PreTrainedTokenizerFast) -> dict[str, int]:
    names = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }
    return {key: tokens.convert_tokens_to_ids(token) for key, token in names.items()}


def _qwen_text(tokens: PreTrainedTokenizerFast, mrope_section: list[int]) -> dict:
    """A 2-layer, 64-wide Qwen LLM; `mrope_section` splits head_dim / 2 into t, h, w."""
    return {
        "vocab_size": len(tokens),
        "hidden_size": WIDTH,
        "intermediate_size": 2 * WIDTH,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "rope_parameters": {"rope_type": "default", "mrope_section": mrope_section},
        "bos_token_id": None,  # Qwen's chat template starts with <|im_start|>, no BOS
        "eos_token_id": tokens.eos_token_id,
        "pad_token_id": tokens.pad_token_id,
    }


def _qwen_vision(patch: int) -> dict:
    return {
        "depth": LAYERS,
        "hidden_size": WIDTH,
        "intermediate_size": 2 * WIDTH,
        "num_heads": HEADS,
        "out_hidden_size": WIDTH,
        "patch_size": patch,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }


def build_qwen2_5_vl(folder: Path) -> Path:
    """Qwen2.5-VL: 14-pixel patches merged 2 x 2; images resized to 4..24 merged patches."""
    tokens = tokenizer(QWEN_SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    vision = _qwen_vision(14) | {"window_size": 56, "fullatt_block_indexes": [1]}
    config = Qwen2_5_VLConfig(
        text_config=_qwen_text(tokens, [4, 6, 6]), vision_config=vision, **_qwen_ids(tokens)
    )
    torch.manual_seed(SEED)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    merged = 28 * 28  # pixels per merged patch
    images = Qwen2VLImageProcessorPil(
        size={"shortest_edge": 4 * merged, "longest_edge": 24 * merged},
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    return _save(folder, model, tokens, (images,), QWEN25_TEMPLATE)


def build_qwen3_vl(folder: Path) -> Path:
    """Qwen3-VL: 16-pixel patches merged 2 x 2, DeepStack features from vision block 1."""
    tokens = tokenizer(QWEN_SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    text = _qwen_text(tokens, [6, 5, 5]) | {"head_dim": WIDTH // HEADS}
    text["rope_parameters"]["mrope_interleaved"] = True
    vision = _qwen_vision(16) | {"num_position_embeddings": 64, "deepstack_visual_indexes": [1]}
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tokens))
    torch.manual_seed(SEED)
    model = Qwen3VLForConditionalGeneration(config).eval()
    merged = 32 * 32
    images = Qwen2VLImageProcessorPil(
        size={"shortest_edge": 4 * merged, "longest_edge": 24 * merged},
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return _save(folder, model, tokens, (images,), QWEN3_TEMPLATE)


def build_llava(folder: Path) -> Path:
    """LLaVA-1.5: a CLIP tower on 32-pixel images of 8-pixel patches (16 image tokens)."""
    tokens = tokenizer(
        LLAVA_SPECIAL, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    vision = CLIPVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=32,
        patch_size=8,
        projection_dim=WIDTH,
    )
    text = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        head_dim=WIDTH // HEADS,
        bos_token_id=tokens.bos_token_id,
        eos_token_id=tokens.eos_token_id,
        pad_token_id=tokens.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokens.convert_tokens_to_ids("<image>"),
        image_seq_length=16,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(SEED)
    model = LlavaForConditionalGeneration(config).eval()
    images = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor = LlavaProcessor(
        images,
        tokens,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by "default"
    )
    return _save(folder, model, tokens, (processor,), LLAVA_TEMPLATE)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen3_vl": build_qwen3_vl,
    "llava": build_llava,
}


def build(root: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Writes each family's checkpoint to `root/<model_type>`; returns the folders by name."""
    return {name: BUILDERS[name](Path(root) / name) for name in names or BUILDERS}


if __name__ == "__main__":
    if len(sys.argv) < 2 or not set(sys.argv[2:]) <= set(BUILDERS):
        sys.exit(f"usage: python data.py OUT_DIR [{' '.join(BUILDERS)}]")
    for name, path in build(Path(sys.argv[1]), sys.argv[2:]).items():
        print(f"{name}: {path}")
