"""The embedded backend: a geochat (Idefics3, SmolVLM) checkpoint run by transformers.

Generation runs in a thread that feeds a `TextIteratorStreamer`, so text arrives token by
token (the streamer releases whole words); the non-streaming call consumes the same stream.
`constrain="grounding"` is honoured by :class:`GroundingLogitsProcessor`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch
from transformers import (
    BatchFeature,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from geochat.engine.assistant import Assistant, GenerationStats, Request
from geochat.engine.grounding import GroundingLogitsProcessor, token_pieces
from geochat.imagery import ImagerySettings
from geochat.modeling import GeoChatForConditionalGeneration, GeoChatProcessor, load_pretrained
from geochat.modeling.tokenizer import MAX_TILES_PER_SIDE


class _CountingStreamer(TextIteratorStreamer):
    """A `TextIteratorStreamer` that also counts generated tokens and times the first one."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stats: GenerationStats) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.stats = stats
        self.started = time.perf_counter()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        """Receives the prompt once, then each new token `[1]` (or `[1, 1]`)."""
        if self._prompt_seen:
            if self.stats.prefill_s is None:
                self.stats.prefill_s = time.perf_counter() - self.started
            self.stats.completion_tokens += value.numel()
        self._prompt_seen = True
        super().put(value)


class _Cancelled(StoppingCriteria):
    """Stops generation once `event` is set (the streaming consumer went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> bool:
        """True for every sequence once cancelled."""
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class TransformersAssistant(Assistant):
    """Runs a model in this process with transformers' `generate`.

    Attributes:
        model: The model, in eval mode.
        processor: Its processor (tiling, chat template, tokenizer).
    """

    backend = "transformers"

    def __init__(
        self,
        model: GeoChatForConditionalGeneration,
        processor: GeoChatProcessor,
        model_name: str,
        max_tiles_per_side: int | None = None,
    ) -> None:
        """Wraps a loaded model.

        Args:
            model: A geochat (or Idefics3) generation model.
            processor: Its processor.
            model_name: What to call it (the folder or hub id it came from).
            max_tiles_per_side: Tiles along an image's longest edge (1..6); None keeps the
                processor's setting. More tiles see more detail and cost more tokens.

        Raises:
            ValueError: For `max_tiles_per_side` outside 1..6.
        """
        self.model = model
        self.processor = processor
        self.model_name = model_name
        # The imagery settings training recorded in the processor config (None: the defaults).
        trained = getattr(processor, "imagery", None)
        if trained:
            self.imagery = ImagerySettings.from_dict(trained)
        if max_tiles_per_side is not None:
            _set_max_tiles(processor, max_tiles_per_side)
        self._pieces: list[str] | None = None

    def close(self) -> None:
        """Nothing to free: the model goes with the assistant."""

    def _generate(self, request: Request) -> Generator[str, None, None]:
        stats = request.stats
        started = time.perf_counter()
        image = None if request.image is None else request.image.image
        inputs = self.processor.build_chat_inputs(image, request.messages).inputs
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        stats.prompt_tokens = inputs["input_ids"].shape[1]
        stats.preprocess_s += time.perf_counter() - started
        return self._generation(inputs, request)

    def _generation(self, inputs: BatchFeature, request: Request) -> Generator[str, None, None]:
        """Runs `generate` in a thread and yields its text; closing stops the thread."""
        stats = request.stats
        streamer = _CountingStreamer(self.processor.tokenizer, stats)
        cancel = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                self.model.generate(
                    **inputs,
                    **_sampling(request.temperature),
                    max_new_tokens=request.max_new_tokens,
                    logits_processor=self._logits_processors(request, stats.prompt_tokens),
                    stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                    streamer=streamer,
                )
            except BaseException as error:  # handed to the consumer's thread below
                failures.append(error)
                streamer.end()  # unblocks the consumer

        thread = threading.Thread(target=run, name="geochat-generate", daemon=True)
        thread.start()
        try:
            yield from (delta for delta in streamer if delta)
        finally:
            cancel.set()
            thread.join()
        if failures:
            raise failures[0]

    def _logits_processors(self, request: Request, prompt_tokens: int) -> LogitsProcessorList:
        processors = LogitsProcessorList(request.logits_processors)
        if request.constrain == "grounding":
            if self._pieces is None:
                self._pieces = token_pieces(self.processor.tokenizer)
            processors.append(
                GroundingLogitsProcessor(
                    self.processor.tokenizer, prompt_tokens, self._end_tokens(), self._pieces
                )
            )
        return processors

    def _end_tokens(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        return [token for token in np.atleast_1d(eos).tolist() if token is not None]


def _sampling(temperature: float) -> dict[str, object]:
    if temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature}


def _set_max_tiles(processor: GeoChatProcessor, max_tiles_per_side: int) -> None:
    """Makes the processor resize images to `max_tiles_per_side` tiles along the longest edge."""
    if not 1 <= max_tiles_per_side <= MAX_TILES_PER_SIDE:
        raise ValueError(
            f"max_tiles_per_side must be in 1..{MAX_TILES_PER_SIDE}, got {max_tiles_per_side}"
        )
    tile = processor.image_processor.max_image_size["longest_edge"]
    processor.image_processor.size = {"longest_edge": tile * max_tiles_per_side}


def load_transformers(
    model: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    max_tiles_per_side: int | None = None,
) -> TransformersAssistant:
    """Loads a checkpoint folder (or hub id, where a hub is reachable) into an assistant.

    Raises:
        FileNotFoundError: For a path that does not exist and is no hub id.
        ValueError: For an unknown dtype or `max_tiles_per_side` outside 1..6.
    """
    if not Path(model).exists() and not _looks_like_hub_id(str(model)):
        raise FileNotFoundError(f"no model folder {model}")
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; e.g. 'float32', 'bfloat16', 'float16'")
        dtype = getattr(torch, dtype)
    loaded, processor = load_pretrained(model, dtype=dtype, device=device)
    return TransformersAssistant(loaded, processor, str(model), max_tiles_per_side)


def _looks_like_hub_id(text: str) -> bool:
    """`owner/name`: a relative path of two parts that is not a file here may be a hub id."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))
