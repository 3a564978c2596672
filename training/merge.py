"""Folding adapters into base weights, and exporting adapters vLLM can load.

vLLM serves plain LoRA adapters (``--enable-lora``) but refuses DoRA adapters and adapters
with ``modules_to_save`` (a fully trained connector): those are merged into the base weights,
which gives a checkpoint any backend can serve. The base loads with its family's classes
(:mod:`geochat.modeling.families`, by its ``model_type``), so every family merges.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig

from geochat.modeling.checkpoints import ADAPTER_CONFIG
from geochat.modeling.families import check_adapter_base, family_of, processor_folder


class MergeError(ValueError):
    """An adapter folder that cannot be merged or exported as asked."""


def read_adapter_config(adapter_dir: str | Path) -> dict:
    """Reads ``adapter_config.json`` of a peft adapter folder."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise MergeError(f"{adapter_dir} is not a peft adapter folder (no {ADAPTER_CONFIG})")
    return json.loads(path.read_text())


def vllm_servable(config: dict) -> bool:
    """Whether vLLM accepts the adapter as it is: plain LoRA without fully trained modules."""
    return not config.get("use_dora") and not config.get("modules_to_save")


def merge_adapter(
    adapter_dir: str | Path,
    output_dir: str | Path,
    base: str | Path | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Merges a LoRA or DoRA adapter (and any fully trained modules) into its base model.

    Args:
        adapter_dir: Folder written by training (adapter weights, config, processor).
        output_dir: Where the merged model and the processor are saved.
        base: The base model; defaults to the adapter's ``base_model_name_or_path``.
        dtype: dtype to merge in (merge a 4-bit base in bfloat16: merging into 4 bits loses).

    Returns:
        The output folder.
    """
    from peft import PeftModel

    config = read_adapter_config(adapter_dir)
    base = base or config.get("base_model_name_or_path")
    if not base:
        raise MergeError(f"{adapter_dir}: the adapter names no base model; pass --base")
    try:
        family = family_of(base)
    except (OSError, ValueError) as error:
        raise MergeError(f"{adapter_dir}: base model {base}: {error}") from error
    try:
        check_adapter_base(adapter_dir, base)
    except ValueError as error:
        raise MergeError(str(error)) from error
    model = family.model_class.from_pretrained(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    output_dir = Path(output_dir)
    merged.save_pretrained(output_dir)
    source = processor_folder(adapter_dir, base)  # training saves it beside the adapter
    family.load_processor(source, AutoConfig.from_pretrained(base)).save_pretrained(output_dir)
    print(f"merged {adapter_dir} into {base}; wrote {output_dir}")
    return output_dir


def export_lora(adapter_dir: str | Path, output_dir: str | Path) -> Path:
    """Copies a plain LoRA adapter for ``vllm serve --enable-lora --lora-modules name=DIR``.

    Raises:
        MergeError: For DoRA adapters or adapters with ``modules_to_save``, which vLLM refuses.
    """
    config = read_adapter_config(adapter_dir)
    if not vllm_servable(config):
        raise MergeError(
            f"{adapter_dir}: vLLM refuses DoRA adapters and adapters with modules_to_save; "
            "merge it instead (geochat merge without --export-lora)"
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (ADAPTER_CONFIG, "adapter_model.safetensors"):
        shutil.copy2(Path(adapter_dir) / name, output_dir / name)
    print(f"exported the LoRA adapter {adapter_dir} to {output_dir}")
    return output_dir
