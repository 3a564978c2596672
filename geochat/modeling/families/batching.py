"""Stacks the inputs of single conversations (any family) into one batch.

A family's processor returns, for one conversation, token tensors `[1, T]` and image tensors
in its own layout: Idefics3 tiles `pixel_values [1, tiles, 3, H, W]` with a
`pixel_attention_mask [1, tiles, H, W]`; Qwen's flattened patches `pixel_values [patches, D]`
with `image_grid_thw [images, 3]`; LLaVA's `pixel_values [images, 3, H, W]`. Token tensors are
padded to the longest row (left for generation, right for training); Idefics3 tiles are padded
with all-zero tiles, which the model skips; every other image tensor is concatenated in row
order, which is how those models pair images with their image tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers import BatchFeature

IGNORE_INDEX = -100  # label of tokens that are not learned (PyTorch's cross-entropy default)
# Per-token tensors `[1, T]`, and what pads them (input_ids: the tokenizer's pad id).
SEQUENCE_PADDING = {
    "attention_mask": 0,
    "token_type_ids": 0,
    "mm_token_type_ids": 0,
    "labels": IGNORE_INDEX,
}
TILED = {"pixel_values": 5, "pixel_attention_mask": 4}  # Idefics3's per-row tiles, by ndim


def batch_inputs(
    rows: Sequence[Mapping[str, torch.Tensor]], pad_token_id: int, padding_side: str = "left"
) -> BatchFeature:
    """One batch from the inputs of single conversations.

    Args:
        rows: Each a processor's output for one conversation (`input_ids [1, T]`), optionally
            with `labels [1, T]`.
        pad_token_id: Pads `input_ids`.
        padding_side: "left" (generation continues every row at its end) or "right".

    Raises:
        ValueError: For another padding side, or rows whose keys differ other than in images.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    length = max(row["input_ids"].shape[1] for row in rows)
    keys = list(dict.fromkeys(key for row in rows for key in row))
    batch: dict[str, torch.Tensor] = {}
    for key in keys:
        if key == "input_ids" or key in SEQUENCE_PADDING:
            pad = pad_token_id if key == "input_ids" else SEQUENCE_PADDING[key]
            if any(key not in row for row in rows):
                raise ValueError(f"some rows have no {key!r}")
            batch[key] = torch.cat([_pad(row[key], length, pad, padding_side) for row in rows])
        elif TILED.get(key) == rows_ndim(rows, key):
            batch[key] = _pad_tiles(rows, key)
        else:
            batch[key] = torch.cat([row[key] for row in rows if key in row])
    return BatchFeature(batch)


def rows_ndim(rows: Sequence[Mapping[str, torch.Tensor]], key: str) -> int:
    """The number of dimensions of `key` in the rows that have it."""
    return next(row[key].ndim for row in rows if key in row)


def _pad(tensor: torch.Tensor, length: int, value: int, side: str) -> torch.Tensor:
    padding = tensor.new_full((tensor.shape[0], length - tensor.shape[1]), value)
    return torch.cat([padding, tensor] if side == "left" else [tensor, padding], dim=1)


def _pad_tiles(rows: Sequence[Mapping[str, torch.Tensor]], key: str) -> torch.Tensor:
    """`[B, tiles, ...]`: each row's tiles, then all-zero tiles (rows without an image too)."""
    present = [row[key] for row in rows if key in row]
    tiles = max(tensor.shape[1] for tensor in present)
    shape = present[0].shape[2:]
    out = present[0].new_zeros((len(rows), tiles, *shape))
    for index, row in enumerate(rows):
        if key in row:
            out[index, : row[key].shape[1]] = row[key][0]
    return out
