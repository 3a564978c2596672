"""One inference interface, whatever runs the model (DESIGN.md, "Inference").

::

    from geochat.engine import load

    assistant = load("path/to/checkpoint")              # or load() for the bundled geochat-nano
    reply = assistant.chat("scene.tif", [{"role": "user", "content": "Where is the pool?"}])
    reply.text, reply.parsed.objects, reply.geojson      # geometry in original pixels / lon-lat

    for item in assistant.chat(image, messages, stream=True):
        ...                                              # str deltas, then the Reply

    assistant = load("path/to/checkpoint", sam="sam_vit_b_01ec64.pth")
    reply = assistant.chat("scene.tif", [{"role": "user", "content": "Segment the pool."}])
    reply.refined, reply.refined_geojson                 # SAM's full-resolution masks

Backends: ``transformers`` (embedded, CPU or GPU; :mod:`.transformers_backend`) and ``vllm``
(a client of an OpenAI-compatible vLLM server; :mod:`.vllm_backend`). Images:
:func:`load_image` (:mod:`geochat.imagery`). Constrained grounding: :data:`GROUNDING_REGEX`
(:mod:`.grounding`). Whole scenes of any size: :mod:`.scene` (files: :mod:`.scene_output`).
SAM refinement of replies: :mod:`.refinement`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from geochat.engine.assistant import (
    Assistant,
    BackendError,
    NativeInput,
    Reply,
    ReplyStream,
    prepare_messages,
    task_question,
)
from geochat.engine.grounding import GROUNDING_REGEX
from geochat.engine.transformers_backend import TransformersAssistant, load_transformers
from geochat.imagery import ImageError, LoadedImage, load_image

if TYPE_CHECKING:
    from geochat.refine import Refiner

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "geochat-nano"
BACKENDS = ("transformers", "vllm")


def load(
    model: str | Path | None = None,
    backend: str = "transformers",
    device: str | torch.device = "cpu",
    vllm_url: str | None = None,
    dtype: torch.dtype | str | None = None,
    max_tiles_per_side: int | None = None,
    dialect: str | None = None,
    base: str | Path | None = None,
    sam: str | Path | None = None,
) -> Assistant:
    """Returns an assistant for a model on a backend.

    Args:
        model: transformers: a checkpoint folder (`save_pretrained` of a model and its
            processor), a training run folder (its `final/`, else its newest checkpoint;
            `geochat.modeling.resolve_checkpoint`) or a hub id; None for the bundled
            geochat-nano (`DEFAULT_MODEL`); or a peft adapter folder (as `geochat train`
            writes), loaded on its base. The assistant's `model_name` is the folder loaded.
            vllm: the served model or adapter name; None for the first the server lists.
        backend: "transformers" (in this process) or "vllm" (a running server).
        device: Where transformers runs the model ("cpu", "cuda", "cuda:1", ...).
        vllm_url: The vLLM server's OpenAI base URL; None for `http://127.0.0.1:8000/v1`.
        dtype: The weights' dtype for transformers (`torch.bfloat16` or "bfloat16"); None
            keeps the saved one.
        max_tiles_per_side: Tiles along an image's longest edge for transformers (1..6); None
            keeps the checkpoint's setting (Idefics3 family only).
        dialect: The coordinate dialect the model writes, a name in `geochat.grammar.DIALECTS`;
            None takes its family's (`geochat.modeling.families`, chosen by the checkpoint's
            `model_type`; for vllm, read from the served checkpoint folder when it is readable
            here, else the canonical grammar).
        base: For an adapter folder on transformers, the base model to load it on instead of
            the one the adapter names (a folder, training run folder or hub id).
        sam: A SAM checkpoint (`geochat.sam_checkpoints.load_sam`: a transformers folder, a
            segment-anything `.pth`/`.safetensors` file or a hub id), run on `device`; every
            reply then carries full-resolution masks (`Reply.refined`,
            `geochat.engine.refinement`). None refines nothing and loads no SAM.

    Raises:
        FileNotFoundError: When the model folder is missing (the bundled one included) or holds
            no model, or the SAM checkpoint is missing.
        geochat.sam_checkpoints.SamCheckpointError: For a SAM checkpoint that cannot be read
            or is not SAM (a ValueError).
        ValueError: For an unknown backend, an option the backend does not take, an unsupported
            `model_type` or a tokenizer without the model's image token.
        BackendError: When the vLLM server cannot be reached or does not serve the model.
    """
    # SAM first: a bad checkpoint fails before the (larger) model loads.
    refiner = None if sam is None else _refiner(sam, device)
    assistant = _load_backend(
        model, backend, device, vllm_url, dtype, max_tiles_per_side, dialect, base
    )
    assistant.refiner = refiner
    return assistant


def _refiner(sam: str | Path, device: str | torch.device) -> Refiner:
    # Imported here: SAM's modules load only when refinement is asked for.
    from geochat.refine import Refiner

    return Refiner.from_pretrained(sam, device=device)


def _load_backend(
    model: str | Path | None,
    backend: str,
    device: str | torch.device,
    vllm_url: str | None,
    dtype: torch.dtype | str | None,
    max_tiles_per_side: int | None,
    dialect: str | None,
    base: str | Path | None,
) -> Assistant:
    """The assistant of :func:`load`, before SAM."""
    if backend == "transformers":
        if vllm_url is not None:
            raise ValueError("vllm_url is for backend='vllm'")
        return load_transformers(
            _model_folder(model), device, dtype, max_tiles_per_side, dialect, base
        )
    if backend == "vllm":
        if dtype is not None or max_tiles_per_side is not None or base is not None:
            raise ValueError(
                "dtype, max_tiles_per_side and base are for backend='transformers' (they are the "
                "vLLM server's settings: geochat serve, with --lora for adapters)"
            )
        # Imported here: httpx is needed only by this backend (the `app` extra).
        from geochat.engine.vllm_backend import DEFAULT_VLLM_URL, VLLMAssistant

        name = None if model is None else str(model)
        return VLLMAssistant(vllm_url or DEFAULT_VLLM_URL, name, dialect=dialect)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


def _model_folder(model: str | Path | None) -> str | Path:
    if model is not None:
        return model
    if not (DEFAULT_MODEL / "config.json").is_file():
        raise FileNotFoundError(
            f"the bundled geochat-nano model is not in this installation (expected in "
            f"{DEFAULT_MODEL}); pass a checkpoint folder instead (load(model=...), "
            "`geochat chat --model DIR`), e.g. one trained with `geochat train`"
        )
    return DEFAULT_MODEL


__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "GROUNDING_REGEX",
    "Assistant",
    "BackendError",
    "ImageError",
    "LoadedImage",
    "NativeInput",
    "Reply",
    "ReplyStream",
    "TransformersAssistant",
    "load",
    "load_image",
    "prepare_messages",
    "task_question",
]
