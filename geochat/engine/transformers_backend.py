"""The embedded backend: a checkpoint of any backbone family run by transformers.

The family comes from the checkpoint's `model_type` (`geochat.modeling.families`): it builds the
prompt with its chat template and names the coordinate dialect the model writes, which the
reply is read in (and a region in the messages is written in), so geometry always comes back in
pixels of the original image.

Generation runs in a thread that feeds a `TextIteratorStreamer`, so text arrives token by
token (the streamer releases whole words); the non-streaming call consumes the same stream.
`constrain="grounding"` is honoured by :class:`GroundingLogitsProcessor`. Answers are decoded
without the special tokens but those the dialect writes geometry with (:func:`hidden_token_ids`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    BatchFeature,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from geochat.engine.assistant import (
    Assistant,
    GenerationStats,
    NativeInput,
    Reply,
    Request,
    _request,
)
from geochat.engine.grounding import GroundingLogitsProcessor, grounding_regex, token_pieces
from geochat.grammar import Dialect
from geochat.imagery import ImagerySettings, ImageSource, LoadedImage
from geochat.modeling import GeoChatProcessor, resolve_checkpoint
from geochat.modeling.families import Backbone, dialect_for, load_backbone
from geochat.modeling.families.batching import batch_inputs
from geochat.modeling.tokenizer import MAX_TILES_PER_SIDE


def hidden_token_ids(tokenizer: PreTrainedTokenizerBase, dialect: Dialect) -> frozenset[int]:
    """The special tokens an answer is decoded without: all but the dialect's own tags.

    `skip_special_tokens` would drop every special token, and with it the geometry of a
    dialect whose tags are special tokens (Qwen2-VL's `<|box_start|>`, `<|object_ref_start|>`);
    the end, pad, image and chat-turn tokens are still dropped.
    """
    special = {
        token_id for token_id, token in tokenizer.added_tokens_decoder.items() if token.special
    }
    special.update(tokenizer.all_special_ids)
    keep = dialect.tags
    return frozenset(
        token_id for token_id in special if tokenizer.convert_ids_to_tokens(token_id) not in keep
    )


def without(token_ids: Sequence[int], hidden: frozenset[int]) -> list[int]:
    """`token_ids` without the `hidden` ones."""
    return [token_id for token_id in token_ids if token_id not in hidden]


class _CountingStreamer(TextIteratorStreamer):
    """A `TextIteratorStreamer` that also counts generated tokens and times the first one.

    It decodes the answer without the `hidden` tokens (:func:`hidden_token_ids`).
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, stats: GenerationStats, hidden: frozenset[int]
    ) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=False)
        self.stats = stats
        self.hidden = hidden
        self.started = time.perf_counter()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        """Receives the prompt once, then each new token `[1]` (or `[1, 1]`)."""
        if self._prompt_seen:
            if self.stats.prefill_s is None:
                self.stats.prefill_s = time.perf_counter() - self.started
            self.stats.completion_tokens += value.numel()
            value = torch.tensor(without(value.flatten().tolist(), self.hidden), dtype=value.dtype)
        self._prompt_seen = True
        super().put(value)


class _Cancelled(StoppingCriteria):
    """Stops generation once `event` is set (the streaming consumer went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        """True for every sequence once cancelled."""
        stop = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)
        # transformers types this with torch's legacy BoolTensor, which no torch op returns.
        return stop  # type: ignore[return-value]


class TransformersAssistant(Assistant):
    """Runs a model in this process with transformers' `generate`.

    Attributes:
        backbone: The loaded checkpoint, its family and the dialect it is read in.
        model: The model, in eval mode.
        processor: Its processor (chat template, image processing, tokenizer).
    """

    backend = "transformers"

    def __init__(
        self, backbone: Backbone, model_name: str, max_tiles_per_side: int | None = None
    ) -> None:
        """Wraps a loaded checkpoint.

        Args:
            backbone: From `geochat.modeling.families.load_backbone`.
            model_name: What to call it: :func:`model_name_of` the folder or hub id it came
                from (shown to clients, so never a path).
            max_tiles_per_side: Tiles along an image's longest edge (1..6, Idefics3 family
                only); None keeps the processor's setting. More tiles see more detail and cost
                more tokens.

        Raises:
            ValueError: For `max_tiles_per_side` outside 1..6 or on another family.
        """
        self.backbone = backbone
        self.family = backbone.family
        self.model = backbone.model
        self.processor = backbone.processor
        self.model_name = model_name
        # The imagery settings training recorded in the processor config (None: the defaults).
        trained = getattr(backbone.processor, "imagery", None)
        if trained:
            self.imagery = ImagerySettings.from_dict(trained)
        self.native_input = _native_input(backbone.processor)
        if max_tiles_per_side is not None:
            if not isinstance(backbone.processor, GeoChatProcessor):
                raise ValueError(
                    f"max_tiles_per_side is an Idefics3 setting; {backbone.family.name} sizes "
                    "images by its processor's pixel budget"
                )
            _set_max_tiles(backbone.processor, max_tiles_per_side)
        self._pieces: list[str] | None = None
        self._hidden: frozenset[int] | None = None

    def _hidden_tokens(self) -> frozenset[int]:
        """The special tokens answers are decoded without (:func:`hidden_token_ids`)."""
        if self._hidden is None:
            tokenizer = self.processor.tokenizer
            self._hidden = hidden_token_ids(tokenizer, dialect_for(self.backbone.dialect))
        return self._hidden

    def close(self) -> None:
        """Nothing to free: the model goes with the assistant."""

    def _generate(self, request: Request) -> Generator[str, None, None]:
        if request.constrain == "grounding":
            grounding_regex(self.backbone.dialect)  # refused here, not in the generating thread
        return self._generation(self._inputs(request), request)

    def _inputs(self, request: Request) -> BatchFeature:
        """The model inputs of a request, on the model's device; fills the request's stats."""
        started = time.perf_counter()
        image = None if request.image is None else request.image.image
        prepared = self.backbone.inputs(image, request.messages)
        request.dialect = dialect_for(self.backbone.dialect, prepared.frame)
        inputs = prepared.inputs.to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        request.stats.prompt_tokens = inputs["input_ids"].shape[1]
        request.stats.preprocess_s += time.perf_counter() - started
        return inputs

    @torch.inference_mode()
    def chat_batch(
        self,
        conversations: Sequence[tuple[ImageSource | LoadedImage | None, list[dict[str, str]]]],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        logits_processor: Sequence[LogitsProcessor] | None = None,
    ) -> list[Reply]:
        """Answers many conversations in one `generate` call (left-padded): evaluation, scenes.

        Each conversation is prepared as :meth:`chat` prepares it (image reading with
        `self.imagery`, `<image>` placement, the family's prompt and dialect), so a batched
        answer is read exactly as a single one.

        Args:
            conversations: `(image, messages)` pairs, as :meth:`chat` takes them.
            max_new_tokens: Most tokens to generate for each.
            temperature: 0 decodes greedily; above 0 samples at that temperature.
            logits_processor: Applied to every row (e.g. one that forces a scripted answer).

        Returns:
            One `Reply` per conversation, in order; `timings` are the whole batch's.

        Raises:
            ImageError: For an unreadable image. ValueError: For malformed messages.
        """
        started = time.perf_counter()
        requests = [
            _request(
                image,
                self.imagery,
                messages,
                None,
                max_new_tokens,
                temperature,
                None,
                False,
                logits_processor,
            )
            for image, messages in conversations
        ]
        if not requests:
            return []
        rows = []
        for request in requests:
            image = None if request.image is None else request.image.image
            prepared = self.backbone.inputs(image, request.messages)
            request.dialect = dialect_for(self.backbone.dialect, prepared.frame)
            request.stats.prompt_tokens = prepared.inputs["input_ids"].shape[1]
            rows.append(prepared.inputs)
        pad = self._pad_token_id()
        inputs = batch_inputs(rows, pad, "left").to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        preprocess_s = time.perf_counter() - started
        # Backbone.model is typed PreTrainedModel, which declares no generate (see _generate).
        output = self.model.generate(  # type: ignore[operator]
            **inputs,
            **_sampling(temperature),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            logits_processor=LogitsProcessorList(logits_processor or []),
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]  # [B, new]
        hidden = self._hidden_tokens()
        texts = [
            self.processor.tokenizer.decode(without(row, hidden), skip_special_tokens=False)
            for row in new_tokens.tolist()
        ]
        ends = self._end_tokens()
        replies = []
        for request, tokens, text in zip(requests, new_tokens.tolist(), texts, strict=True):
            stops = [index for index, token in enumerate(tokens) if token in ends]
            request.stats.completion_tokens = stops[0] + 1 if stops else len(tokens)
            request.stats.preprocess_s += preprocess_s
            replies.append(self._finish(text, request, started))
        return replies

    def _pad_token_id(self) -> int:
        """The tokenizer's pad token, else the first end token (generation masks either)."""
        pad = self.processor.tokenizer.pad_token_id
        return pad if pad is not None else self._end_tokens()[0]

    def _generation(self, inputs: BatchFeature, request: Request) -> Generator[str, None, None]:
        """Runs `generate` in a thread and yields its text; closing stops the thread."""
        stats = request.stats
        streamer = _CountingStreamer(self.processor.tokenizer, stats, self._hidden_tokens())
        cancel = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                # PreTrainedModel lacks generate in its types (GenerationMixin adds it to
                # every family's model class).
                self.model.generate(  # type: ignore[operator]
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
                    self.processor.tokenizer,
                    prompt_tokens,
                    self._end_tokens(),
                    self._pieces,
                    grounding_regex(self.backbone.dialect),  # the family's own format, as vLLM
                )
            )
        return processors

    def _end_tokens(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        return [token for token in np.atleast_1d(eos).tolist() if token is not None]


def _native_input(processor: Any) -> NativeInput | None:
    """The processor's declared native input, else its tile size at no particular GSD."""
    declared = getattr(processor, "native_input", None)
    if declared:
        return NativeInput.from_dict(declared)
    sizes = getattr(getattr(processor, "image_processor", None), "max_image_size", None)
    if isinstance(sizes, dict) and "longest_edge" in sizes:
        return NativeInput(int(sizes["longest_edge"]), None, declared=False)
    return None


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
    dialect: str | None = None,
    base: str | Path | None = None,
) -> TransformersAssistant:
    """Loads a checkpoint folder (or hub id, where a hub is reachable) into an assistant.

    A training run folder loads its `final/` model, else its newest complete checkpoint
    (`geochat.modeling.resolve_checkpoint`); the assistant's `model_name` says which. A peft
    adapter folder loads on its base (`base`, else the one it names; see
    `geochat.modeling.families.load_backbone`).

    Raises:
        FileNotFoundError: For a path that does not exist and is no hub id, or a folder that
            holds no model (no `config.json`).
        ValueError: For an unknown dtype or dialect, `max_tiles_per_side` outside 1..6, an
            unsupported `model_type`, a tokenizer without the family's image token, or an
            adapter that does not fit its base.
    """
    folder = resolve_checkpoint(model)
    if isinstance(dtype, str):
        found = getattr(torch, dtype, None)
        if not isinstance(found, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; e.g. 'float32', 'bfloat16', 'float16'")
        dtype = found
    backbone = load_backbone(folder, dtype=dtype, device=device, dialect=dialect, base=base)
    return TransformersAssistant(backbone, model_name_of(model, folder), max_tiles_per_side)


def model_name_of(model: str | Path, loaded: str | Path | None = None) -> str:
    """The name a model goes by in answers and pages: a local folder's own name, or the hub id.

    Servers show this name to their clients, so it never holds the server's path to the folder.

    Args:
        model: The folder or hub id as given.
        loaded: What was loaded for it, when that is a folder inside it (a training run's
            ``final/`` or checkpoint): named after the run, e.g. ``nano/final``.
    """
    path = Path(model)
    if not path.exists():
        return str(model)
    name = path.resolve().name
    if loaded is not None and Path(loaded).is_relative_to(path) and Path(loaded) != path:
        name = f"{name}/{Path(loaded).relative_to(path)}"
    return name
