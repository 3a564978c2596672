#!/usr/bin/env python3
"""Writes a tiny checkpoint in GeoChat-7B's released layout (LLaVA-1.5's code base).

`OUT/geochat7b/` holds what the released folder holds, at tiny sizes:

- `config.json`: a LLaMA config (2 layers, width 64, head_dim 32) plus LLaVA-1.5's multimodal
  keys: `mm_vision_tower` (here the path of `OUT/clip`, on the hub
  `openai/clip-vit-large-patch14-336`), `mm_hidden_size`, `mm_vision_select_layer` -2,
  `mm_vision_select_feature` "patch", `mm_projector_type` "mlp2x_gelu", `image_aspect_ratio`
  "pad";
- `model.safetensors` in the original names: `model.embed_tokens`, `model.layers.*`,
  `model.norm`, `lm_head` (a `LlamaForCausalLM`) and `model.mm_projector.{0,2}`; with
  `tower_inside=True` also the tower under `model.vision_tower.vision_tower.vision_model.*`;
- a LLaMA-style tokenizer (`<unk>`, `<s>`, `</s>`; no `<image>`: the original code splices the
  image at the placeholder id -200).

`OUT/clip/` is a tiny CLIP vision tower on 24-pixel images of 8-pixel patches (3 x 3 patches,
as CLIP-L/14 has 24 x 24 at 336 px), with its image processor; converting at 32 px interpolates
its position embeddings to 4 x 4 patches, as GeoChat does from 336 to 504 px.

Usage: `python data.py OUT_DIR`. Deterministic (seeded weights); tests call :func:`build`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)

BACKBONES = Path(__file__).resolve().parents[1] / "backbones" / "data.py"
WIDTH = 64
HEADS = 2  # head_dim 32
LAYERS = 2
TOWER_SIZE = 24  # pixels the tiny tower was "pretrained" at
PATCH = 8
SELECT_LAYER = -2
SEED = 0
SPECIAL = ("<unk>", "<s>", "</s>")


def _backbones():
    spec = importlib.util.spec_from_file_location("backbones_data", BACKBONES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_tower(folder: Path) -> Path:
    """A tiny CLIP vision tower and its image processor (CLIP's mean and std)."""
    config = CLIPVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=LAYERS + 1,  # select_layer -2 reads an inner layer
        num_attention_heads=HEADS,
        image_size=TOWER_SIZE,
        patch_size=PATCH,
    )
    torch.manual_seed(SEED)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(
        size={"shortest_edge": TOWER_SIZE}, crop_size={"height": TOWER_SIZE, "width": TOWER_SIZE}
    ).save_pretrained(folder)
    return folder


def build(root: Path, tower_inside: bool = False) -> Path:
    """Writes `root/clip` and `root/geochat7b`; returns the checkpoint folder."""
    root = Path(root)
    tower = build_tower(root / "clip")
    folder = root / "geochat7b"
    folder.mkdir(parents=True, exist_ok=True)
    tokens = _backbones().tokenizer(SPECIAL, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    text = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        bos_token_id=tokens.bos_token_id,
        eos_token_id=tokens.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED + 1)
    llm = LlamaForCausalLM(text)
    weights = {key: value.contiguous() for key, value in llm.state_dict().items()}
    projector = torch.nn.Sequential(
        torch.nn.Linear(WIDTH, WIDTH), torch.nn.GELU(), torch.nn.Linear(WIDTH, WIDTH)
    )
    weights |= {f"model.mm_projector.{k}": v for k, v in projector.state_dict().items()}
    if tower_inside:
        clip = CLIPVisionModel.from_pretrained(tower).state_dict()
        # the original code base's transformers named CLIPVisionModel's weights vision_model.*
        prefix = "model.vision_tower.vision_tower.vision_model."
        weights |= {prefix + k.removeprefix("vision_model."): v for k, v in clip.items()}
    save_file(weights, folder / "model.safetensors")
    config = text.to_dict() | {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava_llama",
        "mm_vision_tower": str(tower),
        "mm_hidden_size": WIDTH,
        "mm_vision_select_layer": SELECT_LAYER,
        "mm_vision_select_feature": "patch",
        "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "pad",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tokens.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python data.py OUT_DIR")
    print(build(Path(sys.argv[1])))
