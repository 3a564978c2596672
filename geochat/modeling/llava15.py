"""Converts GeoChat-7B's released checkpoint (LLaVA-1.5's layout) into transformers' LLaVA.

GeoChat-7B (and GeoGround) were trained with the LLaVA-1.5 code base, whose checkpoints hold:

- `config.json`: a LLaMA config plus `mm_vision_tower` (the CLIP tower to load, e.g.
  `openai/clip-vit-large-patch14-336`), `mm_hidden_size` (the tower's width),
  `mm_vision_select_layer` (the hidden state the projector reads, -2), `mm_vision_select_feature`
  (`patch`: the class token dropped; `cls_patch`: kept) and `mm_projector_type` (`mlp2x_gelu`);
- weights of a `LlamaForCausalLM` (`model.embed_tokens`, `model.layers.*`, `model.norm`,
  `lm_head`) and of the projector `model.mm_projector.{0,2}` (linear, GELU, linear);
- optionally the tower itself under `model.vision_tower.vision_tower.vision_model.*`; otherwise
  it is loaded from `mm_vision_tower`.

GeoChat runs the CLIP ViT-L/14 tower on 504-pixel images: its position embeddings (24 x 24
patches at 336 px) are interpolated bicubically (corners aligned, class token kept) to the
36 x 36 patches of 504 px when the tower loads. The image is padded to a centred square in the
processor's mean colour first (`image_aspect_ratio="pad"`). The original code splices the image
features where the prompt holds the placeholder id -200; transformers' LLaVA holds an `<image>`
token in the tokenizer instead, repeated once per image feature, so the converter adds it (and a
`<pad>` token when there is none), with embedding rows set to the mean of the existing ones.

The result is a folder that `LlavaForConditionalGeneration`, geochat's LLaVA family (dialect
`geochat`) and vLLM load: `config.json`, `model.safetensors`, the tokenizer, the CLIP image
processor at the tower's size, and LLaVA-1.5's `llava_v1` chat template, the conversation format
GeoChat was trained with.

Added in geochat 0.3.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file
from transformers import (
    AutoTokenizer,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerBase,
)

from geochat.fileio import atomic_folder
from geochat.modeling.factory import token_id

GEOCHAT_IMAGE_SIZE = 504  # GeoChat's tower input (CLIP-L/14 at 336 px, extended)
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
TOWER_PREFIX = "model.vision_tower.vision_tower."  # a tower saved inside the LLaVA checkpoint
CLIP_PREFIX = "vision_model."  # older transformers' CLIPVisionModel names; 5.x has none
POSITIONS = "embeddings.position_embedding.weight"
PROJECTOR = {"model.mm_projector.0.": "linear_1.", "model.mm_projector.2.": "linear_2."}
# LLaVA's name -> transformers'
SELECT_STRATEGY: dict[str, Literal["default", "full"]] = {"patch": "default", "cls_patch": "full"}
PROJECTOR_TYPE = "mlp2x_gelu"
CLASS_TOKENS = 1  # CLIP's class token, counted by the processor, dropped by "default"
# Buffers older checkpoints saved beside the weights; transformers recomputes them.
BUFFER_SUFFIXES = ("rotary_emb.inv_freq", "embeddings.position_ids")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
# LLaVA-1.5's `llava_v1` conversation (GeoChat's too): a system line, "USER: <image>\n...",
# "ASSISTANT: ...</s>", turns joined by a space; the generation prompt is "ASSISTANT:".
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ \"" + SYSTEM + ' " }}{% endif %}'
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}{% set images = 0 %}"
    "{% else %}{% set text = message['content'] | selectattr('type', 'equalto', 'text') "
    "| map(attribute='text') | join(' ') %}"
    "{% set images = message['content'] | selectattr('type', 'equalto', 'image') | list "
    "| length %}{% endif %}"
    "{% if message['role'] == 'system' %}{{ text + ' ' }}"
    "{% elif message['role'] == 'user' %}{{ 'USER: ' + '<image>\n' * images + text + ' ' }}"
    "{% else %}{{ 'ASSISTANT: ' + text + '</s>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


class ConversionError(ValueError):
    """The source folder is not a LLaVA-1.5-layout checkpoint the converter can read."""


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (safetensors shards, else PyTorch `.bin` shards).

    Raises:
        ConversionError: When the folder holds no weights.
    """
    for pattern in WEIGHT_PATTERNS:
        files = sorted(folder.glob(pattern))
        if files:
            break
    else:
        raise ConversionError(f"{folder} holds no *.safetensors or pytorch_model*.bin weights")
    weights: dict[str, torch.Tensor] = {}
    for path in files:
        if path.suffix == ".safetensors":
            weights.update(load_file(path))
        else:  # weights_only: a pickle may hold code, tensors may not
            weights.update(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
    return {key: value for key, value in weights.items() if not key.endswith(BUFFER_SUFFIXES)}


def interpolate_positions(table: torch.Tensor, grid: int) -> torch.Tensor:
    """GeoChat's resize of a CLIP position table to a `grid` x `grid` patch grid.

    Args:
        table: `[1 + g * g, D]`: the class token's row, then the patches' in row-major order.
        grid: Patches per side after the resize.

    Returns:
        `[1 + grid * grid, D]`; the class token's row unchanged, the patch rows resized
        bicubically with the corners aligned (as GeoChat does when its tower loads).

    Raises:
        ConversionError: When the patch rows do not form a square grid.
    """
    side = math.isqrt(table.shape[0] - CLASS_TOKENS)
    if side * side != table.shape[0] - CLASS_TOKENS:
        raise ConversionError(f"{table.shape[0] - 1} position rows are not a square grid")
    if side == grid:
        return table
    patches = table[CLASS_TOKENS:].T.reshape(1, -1, side, side).float()  # [1, D, g, g]
    resized = torch.nn.functional.interpolate(
        patches, size=(grid, grid), mode="bicubic", align_corners=True
    )
    rows = resized.reshape(table.shape[1], grid * grid).T.to(table.dtype)  # [grid * grid, D]
    return torch.cat([table[:CLASS_TOKENS], rows])


def _tower(
    source: dict, weights: dict[str, torch.Tensor], vision_tower: str | None
) -> tuple[CLIPVisionConfig, dict[str, torch.Tensor]]:
    """The tower's config and weights (`CLIPVisionModel`'s names), from inside or loaded."""
    inside = {
        key.removeprefix(TOWER_PREFIX).removeprefix(CLIP_PREFIX): value
        for key, value in weights.items()
        if key.startswith(TOWER_PREFIX)
    }
    name = vision_tower or source.get("mm_vision_tower")
    if not name:
        raise ConversionError("config.json names no mm_vision_tower; pass --vision-tower")
    try:
        if inside and vision_tower is None:  # only the tower's config is read from `name`
            return CLIPVisionConfig.from_pretrained(name), inside
        tower = CLIPVisionModel.from_pretrained(name, dtype=torch.float32)
    except OSError as error:
        raise ConversionError(f"cannot load the CLIP vision tower {name}: {error}") from error
    return tower.config, {k.removeprefix(CLIP_PREFIX): v for k, v in tower.state_dict().items()}


def _text_config(source: dict, vocab_size: int, tokens: PreTrainedTokenizerBase) -> LlamaConfig:
    """The LLaMA config of the source, its vocabulary grown by the added tokens."""
    keys = LlamaConfig().to_dict().keys()
    text = {key: value for key, value in source.items() if key in keys}
    text.update(vocab_size=vocab_size, pad_token_id=tokens.pad_token_id)
    text.pop("architectures", None)
    text.pop("model_type", None)
    return LlamaConfig(**text)


def _grow(matrix: torch.Tensor, rows: int) -> torch.Tensor:
    """`matrix` with rows appended up to `rows`, each the mean of the existing ones."""
    extra = rows - matrix.shape[0]
    if extra <= 0:
        return matrix
    mean = matrix.float().mean(dim=0, keepdim=True).to(matrix.dtype)
    return torch.cat([matrix, mean.expand(extra, -1)])


def _rename(weights: dict[str, torch.Tensor], tower: dict[str, torch.Tensor]) -> dict:
    """Source names -> `LlavaForConditionalGeneration`'s (in-memory module names)."""
    renamed, unknown = {}, []
    for key, value in weights.items():
        if key.startswith(TOWER_PREFIX):
            continue
        projector = next((p for p in PROJECTOR if key.startswith(p)), None)
        if projector is not None:
            name = "model.multi_modal_projector." + PROJECTOR[projector]
            renamed[name + key.removeprefix(projector)] = value
        elif key == "lm_head.weight":
            renamed[key] = value
        elif key.startswith("model."):
            renamed["model.language_model." + key.removeprefix("model.")] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"unexpected weights in a LLaVA-1.5 checkpoint: {unknown[:5]}")
    for key, value in tower.items():
        renamed["model.vision_tower." + key] = value
    return renamed


def _source_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ConversionError(f"{folder} has no config.json: it is not a saved checkpoint")
    try:
        source = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConversionError(f"{path} is not JSON: {error}") from error
    missing = [k for k in ("mm_hidden_size", "mm_vision_select_layer") if k not in source]
    if missing:
        raise ConversionError(f"{path} has no {', '.join(missing)}: not a LLaVA-1.5 checkpoint")
    projector = source.get("mm_projector_type", "linear")
    if projector != PROJECTOR_TYPE:
        raise ConversionError(f"{path}: projector {projector!r} is not {PROJECTOR_TYPE!r}")
    if source.get("mm_vision_select_feature", "patch") not in SELECT_STRATEGY:
        raise ConversionError(f"{path}: unknown mm_vision_select_feature")
    return source


def convert_llava15(
    source_folder: str | Path,
    out: str | Path,
    image_size: int = GEOCHAT_IMAGE_SIZE,
    vision_tower: str | None = None,
) -> Path:
    """Converts a LLaVA-1.5-layout checkpoint (GeoChat-7B's) into a transformers LLaVA folder.

    Args:
        source_folder: The released checkpoint: config.json, weights, tokenizer.
        out: The folder to write (must not exist); written whole or not at all.
        image_size: The tower's input side in pixels: 504 for GeoChat-7B; its position
            embeddings are interpolated to it.
        vision_tower: A CLIP vision checkpoint (folder or hub id) that replaces the config's
            `mm_vision_tower` and any tower inside the checkpoint.

    Returns:
        The written folder.

    Raises:
        ConversionError: For a folder that is not a LLaVA-1.5 checkpoint, an existing output,
            or an image size that is not a multiple of the tower's patch size.
    """
    source_folder, out = Path(source_folder), Path(out)
    if out.exists():
        raise ConversionError(f"{out} exists; choose a new folder")
    source = _source_config(source_folder)
    weights = read_weights(source_folder)
    vision, tower = _tower(source, weights, vision_tower)
    # CLIPVisionConfig types patch_size loosely (an int, a pair or None); CLIP's is an int.
    patch_size = int(vision.patch_size)  # type: ignore[arg-type]
    if image_size % patch_size:
        raise ConversionError(f"image size {image_size} is not a multiple of the patch size")
    if vision.hidden_size != source["mm_hidden_size"]:
        raise ConversionError(
            f"the tower is {vision.hidden_size} wide but mm_hidden_size is "
            f"{source['mm_hidden_size']}"
        )
    grid = image_size // patch_size
    tower = {**tower, POSITIONS: interpolate_positions(tower[POSITIONS], grid)}
    vision.image_size = image_size

    tokens = AutoTokenizer.from_pretrained(source_folder)
    tokens.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokens.pad_token is None:
        tokens.add_special_tokens({"pad_token": PAD_TOKEN})
    renamed = _rename(weights, tower)
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        renamed[name] = _grow(renamed[name], len(tokens))
    config = LlavaConfig(
        vision_config=vision,
        text_config=_text_config(source, len(tokens), tokens),
        image_token_index=token_id(tokens, IMAGE_TOKEN),
        image_seq_length=grid * grid,
        vision_feature_layer=source["mm_vision_select_layer"],
        vision_feature_select_strategy=SELECT_STRATEGY[
            source.get("mm_vision_select_feature", "patch")
        ],
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.load_state_dict(renamed, strict=True, assign=True)
    model.generation_config.eos_token_id = tokens.eos_token_id
    model.generation_config.pad_token_id = tokens.pad_token_id

    images = _image_processor(vision_tower or source["mm_vision_tower"], image_size)
    processor = LlavaProcessor(
        images,
        tokens,
        patch_size=vision.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=CLASS_TOKENS,
        chat_template=CHAT_TEMPLATE,
    )
    return _save_whole(out, model, processor)


def _image_processor(tower: str, image_size: int) -> CLIPImageProcessorPil:
    """The tower's CLIP image processor (its mean and std) resizing to `image_size`."""
    try:
        base = CLIPImageProcessorPil.from_pretrained(tower)
        settings = {"image_mean": base.image_mean, "image_std": base.image_std}
    except OSError:  # a tower saved without its preprocessor_config.json: CLIP's defaults
        settings = {}
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        **settings,
    )


def _save_whole(out: Path, model: LlavaForConditionalGeneration, processor) -> Path:
    """Saves into a temporary sibling folder, then renames it: `out` is whole or absent."""
    with atomic_folder(out) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    return out
