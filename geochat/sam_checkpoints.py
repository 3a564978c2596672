"""Loading SAM: transformers checkpoints, and segment-anything checkpoints converted to them.

Checkpoints load from a transformers directory (``save_pretrained``), a Hub id (where there is
internet), or an original segment-anything ``.pth`` file (https://github.com/facebookresearch/
segment-anything), whose keys are renamed to transformers' names as in transformers'
``convert_sam_to_hf.py`` and whose configuration (vit_b, vit_l, vit_h or another size) is read
from the tensor shapes. Only tensors are loaded (``torch.load(weights_only=True)``): no
arbitrary object is ever unpickled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from transformers import AutoConfig, SamConfig, SamImageProcessorPil, SamModel, SamProcessor

from geochat.modeling.configuration import sub_config

# segment-anything's build_sam fixes the mask decoder at 8 heads; no tensor shape records it.
SAM_DECODER_HEADS = 8
# Suffixes of single-file checkpoints in segment-anything's naming.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
# A Hugging Face Hub id: "name" or "owner/name".
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")

# segment-anything name -> transformers name; applied in order to every key (the MLP heads are
# renamed separately, by _rename_mlp_heads, since their last layer's index depends on depth).
_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^image_encoder\.", "vision_encoder."),
        (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
        (r"\.blocks\.(\d+)\.", r".layers.\1."),
        (r"\.neck\.0\.", ".neck.conv1."),
        (r"\.neck\.1\.", ".neck.layer_norm1."),
        (r"\.neck\.2\.", ".neck.conv2."),
        (r"\.neck\.3\.", ".neck.layer_norm2."),
        (r"\.norm(\d)\.", r".layer_norm\1."),
        (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
        (
            r"\.pe_layer\.positional_encoding_gaussian_matrix$",
            ".shared_embedding.positional_embedding",
        ),
        (r"\.point_embeddings\.", ".point_embed."),
        (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
        (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
        (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
        (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
        (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
        (r"\.output_upscaling\.0\.", ".upscale_conv1."),
        (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
        (r"\.output_upscaling\.3\.", ".upscale_conv2."),
    )
)


# segment-anything's MLP heads keep every linear layer in `layers`; transformers' SamFeedForward
# splits them into proj_in, layers (the middle ones) and proj_out.
_MLP_HEAD_LAYER = re.compile(
    r"^(mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))\.layers\.(\d+)\.(\w+)$"
)
_SHARED_EMBEDDING = "prompt_encoder.shared_embedding.positional_embedding"
_IMAGE_EMBEDDING = "shared_image_embedding.positional_embedding"
# Buffers of segment-anything's Sam that transformers keeps in its processor instead.
_PIXEL_STATISTICS = ("pixel_mean", "pixel_std")


class SamCheckpointError(ValueError):
    """A SAM checkpoint that cannot be read, is not SAM, or does not match its configuration."""


def load_sam(path_or_id: str | os.PathLike[str]) -> tuple[SamModel, SamProcessor]:
    """Loads SAM from a transformers directory, a Hub id or a segment-anything checkpoint.

    Args:
        path_or_id: A directory written by ``save_pretrained``; a segment-anything checkpoint
            file (``.pth``, or ``.safetensors`` with the same keys); or a Hub id such as
            ``facebook/sam-vit-base`` (needs internet or the Hub cache).

    Returns:
        The model on the CPU, and its processor.

    Raises:
        FileNotFoundError: For a local path that does not exist.
        SamCheckpointError: For a checkpoint that cannot be read or is not SAM.
    """
    path = Path(path_or_id).expanduser()
    if path.is_file():
        model = load_segment_anything_checkpoint(path)
        return model, sam_processor_for(model.config)
    if path.is_dir() or _is_hub_id(str(path_or_id)):
        return _load_transformers_sam(str(path_or_id))
    raise FileNotFoundError(f"no SAM checkpoint file or directory at {path}")


def _is_hub_id(text: str) -> bool:
    """Whether ``text`` reads as a Hub id rather than a local path or checkpoint file."""
    return _HUB_ID.fullmatch(text) is not None and not text.endswith(CHECKPOINT_SUFFIXES)


def sam_processor_for(config: SamConfig) -> SamProcessor:
    """SAM's processor for a model's image size (ImageNet statistics, as segment-anything)."""
    image_size = sub_config(config.vision_config).image_size
    mask_size = 4 * sub_config(config.prompt_encoder_config).image_embedding_size
    image_processor = SamImageProcessorPil(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": mask_size},
        mask_pad_size={"height": mask_size, "width": mask_size},
    )
    return SamProcessor(image_processor=image_processor)


def _load_transformers_sam(source: str) -> tuple[SamModel, SamProcessor]:
    """Loads a SAM model and processor saved by transformers (a directory or a Hub id)."""
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise SamCheckpointError(
            f"cannot read a transformers config from {source!r} (neither a local directory "
            f"with config.json nor a Hub model that can be reached): {error}"
        ) from error
    if not isinstance(config, SamConfig):
        raise SamCheckpointError(f"{source!r} holds a {config.model_type!r} model, not SAM")
    model: SamModel
    info: dict[str, list[str]]
    try:
        # transformers types from_pretrained as returning the model alone, whatever its flags.
        model, info = SamModel.from_pretrained(  # type: ignore[misc]
            source, config=config, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise SamCheckpointError(f"cannot load SAM weights from {source!r}: {error}") from error
    faults = {
        name: sorted(info[name]) for name in ("missing_keys", "mismatched_keys") if info[name]
    }
    if faults:
        raise SamCheckpointError(f"SAM weights in {source!r} do not fit its config: {faults}")
    try:
        processor = SamProcessor.from_pretrained(source)
    except OSError:
        # A model saved without its processor: SAM's standard preprocessing fits it.
        processor = sam_processor_for(config)
    return model, processor


def load_segment_anything_checkpoint(path: str | os.PathLike[str]) -> SamModel:
    """Loads an original segment-anything checkpoint into transformers' ``SamModel``.

    Args:
        path: A ``.pth`` state dict as published by segment-anything (``sam_vit_b_01ec64.pth``
            ...), optionally wrapped as ``{"model": state_dict}``; or a ``.safetensors`` file
            with the same keys.

    Returns:
        The model in eval mode, on the CPU.

    Raises:
        FileNotFoundError: If there is no such file.
        SamCheckpointError: If the file is not a readable state dict of tensors, or its keys or
            shapes are not SAM's.
    """
    state_dict = convert_segment_anything_state_dict(_read_state_dict(Path(path)))
    config = sam_config_from_state_dict(state_dict)
    try:
        # No random initialisation of weights that are replaced at once (2.5 GB for vit_h).
        with torch.device("meta"):
            model = SamModel(config)
        model.load_state_dict(state_dict, strict=True, assign=True)
    except (RuntimeError, ValueError) as error:
        raise SamCheckpointError(f"{path} does not fit SAM's architecture: {error}") from error
    model.tie_weights()
    return model.eval()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Reads a flat ``{name: tensor}`` dict from a ``.pth`` or ``.safetensors`` file."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        if path.suffix == ".safetensors":
            loaded: Any = safetensors.torch.load_file(path)
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        # Decoding untrusted bytes fails in open-ended ways (IndexError, KeyError,
        # UnicodeDecodeError ... from the unpickler): each one means "not a checkpoint".
        # Its first line only: torch's unpickler errors run on for a page of advice.
        reason = next(iter(str(error).splitlines()), type(error).__name__)
        raise SamCheckpointError(
            f"cannot read {path} as a checkpoint of tensors (only plain tensors are loaded, "
            f"never arbitrary pickled objects): {reason}"
        ) from error
    for wrapper in ("model", "state_dict"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise SamCheckpointError(f"{path} does not hold a state dict of tensors")
    return dict(loaded)


def convert_segment_anything_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Renames a segment-anything state dict to transformers' ``SamModel`` names.

    Args:
        state_dict: Tensors named as in segment-anything (``image_encoder.blocks.0.attn.qkv
            .weight``, ``prompt_encoder.*``, ``mask_decoder.*``).

    Returns:
        The same tensors under ``SamModel``'s names, plus the positional embedding that
        ``SamModel`` holds twice (tied).
    """
    renamed = {}
    for name, tensor in state_dict.items():
        if name in _PIXEL_STATISTICS:
            continue
        for pattern, replacement in _RENAMES:
            name = pattern.sub(replacement, name)
        renamed[name] = tensor
    renamed = _rename_mlp_heads(renamed)
    if _SHARED_EMBEDDING in renamed:
        renamed[_IMAGE_EMBEDDING] = renamed[_SHARED_EMBEDDING]
    return renamed


def _rename_mlp_heads(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames an MLP head's ``layers.i`` to ``proj_in``, ``layers.{i-1}`` or ``proj_out``."""
    last_layer: dict[str, int] = {}
    for name in state_dict:
        match = _MLP_HEAD_LAYER.match(name)
        if match:
            head, index = match.group(1), int(match.group(2))
            last_layer[head] = max(index, last_layer.get(head, 0))
    renamed = {}
    for name, tensor in state_dict.items():
        match = _MLP_HEAD_LAYER.match(name)
        if match:
            head, index, parameter = match.group(1), int(match.group(2)), match.group(3)
            if index == 0:
                layer = "proj_in"
            elif index == last_layer[head]:
                layer = "proj_out"
            else:
                layer = f"layers.{index - 1}"
            name = f"{head}.{layer}.{parameter}"
        renamed[name] = tensor
    return renamed


def sam_config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> SamConfig:
    """Reads SAM's configuration from the tensor shapes of a ``SamModel`` state dict.

    Covers segment-anything's vit_b, vit_l and vit_h and other sizes (SlimSAM, tiny test
    models). The mask decoder's head count is not in any shape: segment-anything's 8 is used.

    Args:
        state_dict: Tensors under ``SamModel``'s names (see
            :func:`convert_segment_anything_state_dict`).

    Raises:
        SamCheckpointError: If a tensor SAM needs is missing or the shapes disagree.
    """
    vision_config = _vision_config(state_dict)
    return SamConfig(
        vision_config=vision_config,
        prompt_encoder_config=_prompt_encoder_config(state_dict, vision_config),
        mask_decoder_config=_mask_decoder_config(state_dict),
    )


def _shape(state_dict: Mapping[str, torch.Tensor], name: str, rank: int) -> tuple[int, ...]:
    """The shape of a tensor SAM needs, which must have ``rank`` non-empty dimensions."""
    if name not in state_dict:
        raise SamCheckpointError(f"not a SAM checkpoint: it has no tensor {name!r}")
    shape = tuple(state_dict[name].shape)
    if len(shape) != rank or 0 in shape:
        raise SamCheckpointError(
            f"not a SAM checkpoint: tensor {name!r} has shape {list(shape)}, "
            f"SAM's has {rank} non-empty dimensions"
        )
    return shape


def _count(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of ``<prefix><i>.`` entries, i = 0, 1, ... (layers of a ModuleList)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indexes = {int(m.group(1)) for name in state_dict if (m := pattern.match(name))}
    return max(indexes) + 1 if indexes else 0


def _vision_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    hidden_size, num_channels, patch_size, _ = _shape(
        state_dict, "vision_encoder.patch_embed.projection.weight", 4
    )
    grid = _shape(state_dict, "vision_encoder.pos_embed", 4)[1]  # [1, g, g, D]
    num_layers = _count(state_dict, "vision_encoder.layers.")
    if num_layers == 0:
        raise SamCheckpointError("not a SAM checkpoint: its image encoder has no layers")
    # rel_pos_h is [2 * side - 1, head_dim]; side is the grid for global attention layers.
    rel_pos = [
        _shape(state_dict, f"vision_encoder.layers.{i}.attn.rel_pos_h", 2)
        for i in range(num_layers)
    ]
    global_layers = [i for i, shape in enumerate(rel_pos) if shape[0] == 2 * grid - 1]
    window_lengths = {shape[0] for shape in rel_pos if shape[0] != 2 * grid - 1}
    head_dims = {shape[1] for shape in rel_pos}
    if len(window_lengths) > 1 or len(head_dims) > 1 or hidden_size % min(head_dims):
        raise SamCheckpointError(f"inconsistent attention shapes in the image encoder: {rel_pos}")
    head_dim = head_dims.pop()
    return {
        "hidden_size": hidden_size,
        "num_channels": num_channels,
        "patch_size": patch_size,
        "image_size": grid * patch_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": hidden_size // head_dim,
        "global_attn_indexes": global_layers,
        "window_size": (window_lengths.pop() + 1) // 2 if window_lengths else grid,
        "mlp_dim": _shape(state_dict, "vision_encoder.layers.0.mlp.lin1.weight", 2)[0],
        "qkv_bias": "vision_encoder.layers.0.attn.qkv.bias" in state_dict,
        "output_channels": _shape(state_dict, "vision_encoder.neck.conv1.weight", 4)[0],
        "num_pos_feats": _shape(state_dict, _SHARED_EMBEDDING, 2)[1],
    }


def _prompt_encoder_config(
    state_dict: Mapping[str, torch.Tensor], vision_config: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "hidden_size": _shape(state_dict, "prompt_encoder.no_mask_embed.weight", 2)[1],
        "image_size": vision_config["image_size"],
        "patch_size": vision_config["patch_size"],
        "mask_input_channels": _shape(state_dict, "prompt_encoder.mask_embed.conv2.weight", 4)[0],
        "num_point_embeddings": _count(state_dict, "prompt_encoder.point_embed."),
    }


def _mask_decoder_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    hidden_size = _shape(state_dict, "mask_decoder.iou_token.weight", 2)[1]
    cross_attention = "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"
    iou_head = "mask_decoder.iou_prediction_head."
    return {
        "hidden_size": hidden_size,
        "mlp_dim": _shape(state_dict, "mask_decoder.transformer.layers.0.mlp.lin1.weight", 2)[0],
        "num_hidden_layers": _count(state_dict, "mask_decoder.transformer.layers."),
        "num_attention_heads": SAM_DECODER_HEADS,
        "attention_downsample_rate": hidden_size // _shape(state_dict, cross_attention, 2)[0],
        "num_multimask_outputs": _shape(state_dict, "mask_decoder.mask_tokens.weight", 2)[0] - 1,
        "iou_head_depth": 2 + _count(state_dict, f"{iou_head}layers."),
        "iou_head_hidden_dim": _shape(state_dict, f"{iou_head}proj_in.weight", 2)[0],
    }
