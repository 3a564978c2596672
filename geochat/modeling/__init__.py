"""The geochat model family (Idefics3 with a choice of compressor), its processor and tokenizer.

Other backbone families (Qwen2.5-VL, Qwen3-VL, LLaVA) are in `geochat.modeling.families`.
Importing this package registers `model_type="geochat"` with transformers' AutoConfig, AutoModel,
AutoModelForImageTextToText and AutoProcessor.
"""

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from geochat.modeling.checkpoints import (
    FINAL_DIR,
    last_complete_checkpoint,
    resolve_checkpoint,
)
from geochat.modeling.configuration import COMPRESSORS, GeoChatConfig
from geochat.modeling.factory import tiny
from geochat.modeling.modeling import (
    GeoChatForConditionalGeneration,
    GeoChatModel,
    ImageTokenMismatchError,
)
from geochat.modeling.processing import (
    ChatInputs,
    GeoChatProcessor,
    conversation_to_messages,
    image_size,
    load_processor,
)
from geochat.modeling.tokenizer import train_tokenizer

AutoConfig.register(GeoChatConfig.model_type, GeoChatConfig, exist_ok=True)
AutoModel.register(GeoChatConfig, GeoChatModel, exist_ok=True)
AutoModelForImageTextToText.register(GeoChatConfig, GeoChatForConditionalGeneration, exist_ok=True)
AutoProcessor.register(GeoChatConfig, GeoChatProcessor, exist_ok=True)


def load_pretrained(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> tuple[GeoChatForConditionalGeneration, GeoChatProcessor]:
    """Loads a saved geochat, Idefics3 or SmolVLM checkpoint and its processor from a folder.

    Args:
        path: Folder written by `model.save_pretrained` and `processor.save_pretrained`.
        dtype: Weights' dtype; None keeps the saved one.
        device: Where to put the model.

    Returns:
        The model in eval mode and the processor.

    Raises:
        ValueError: When the processor's image tokens per tile differ from the model's.
    """
    # transformers' wrapper of `to` types its argument as the model itself.
    model = GeoChatForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device).eval()  # type: ignore[arg-type]
    return model, load_processor(Path(path), model.config)


__all__ = [
    "COMPRESSORS",
    "FINAL_DIR",
    "ChatInputs",
    "GeoChatConfig",
    "GeoChatForConditionalGeneration",
    "GeoChatModel",
    "GeoChatProcessor",
    "ImageTokenMismatchError",
    "conversation_to_messages",
    "image_size",
    "last_complete_checkpoint",
    "load_pretrained",
    "resolve_checkpoint",
    "tiny",
    "train_tokenizer",
]
