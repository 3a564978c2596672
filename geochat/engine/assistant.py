"""What every backend shares: the conversation sent to the model, the reply and its geometry.

A backend subclasses :class:`Assistant` and implements :meth:`Assistant._generate`, which yields
the answer's text deltas and fills a :class:`GenerationStats`. :meth:`Assistant.chat` does the
rest, identically for every backend: it reads the image, puts ``<image>`` in the first user
turn and the region in the last one, and turns the answer into a :class:`Reply` whose geometry
is in pixels of the original image (and lon/lat for a georeferenced one). An assistant with a
``refiner`` (SAM, ``load(..., sam=PATH)``) adds full-resolution masks to every reply
(:mod:`.refinement`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

from transformers import LogitsProcessor

from geochat.engine.refinement import mask_object, refine_reply
from geochat.georef import to_geojson, to_pixel_geojson
from geochat.grammar import Dialect, GroundedObject, Parsed, format_region, parse, readable
from geochat.imagery import ImagerySettings, ImageSource, LoadedImage, load_image
from geochat.modeling.families.base import Family
from geochat.prompts import asks_for_mask

if TYPE_CHECKING:
    from geochat.refine import RefinedMask, Refiner

IMAGE_PLACE = "<image>"
ROLES = ("system", "user", "assistant")
CONSTRAINTS = ("grounding",)


class BackendError(RuntimeError):
    """The model server failed or could not be reached (the vLLM backend)."""


@dataclass
class Reply:
    """The model's answer and what it locates.

    Attributes:
        text: The answer as the model wrote it.
        parsed: `geochat.grammar.parse` of the text (in the model's dialect) in pixel
            coordinates of the original image: `.objects` (`.phrase .kind .hbb .quad .mask`),
            `.problems` and `.text` (without tags). Without an image no geometry is read:
            `objects` holds only `<none>` answers, and `text` is the answer without tags
            (`geochat.grammar.readable`).
        geojson: RFC 7946 FeatureCollection (WGS84 lon/lat) of the geometry when the image is
            georeferenced, else None.
        pixel_geojson: The same geometry in pixel coordinates (`coordinate_space: "pixel"`).
        image_size: `(width, height)` of the original image, None without an image.
        prompt_tokens: Tokens of the prompt, image tokens included.
        completion_tokens: Tokens generated, the end-of-turn token included.
        timings: Seconds: `preprocess_s` (image and inputs), `prefill_s` (to the first
            generated token, when the backend can tell), `refine_s` (SAM, when it ran),
            `total_s` (the whole call), and `tokens_per_s` (completion tokens per second after
            preprocessing).
        refined: SAM's full-resolution mask (`geochat.refine.RefinedMask`: COCO RLE at the
            image's size and SAM's score) per object of `parsed.objects`, in order, None for an
            object not refined; empty when the assistant has no refiner or nothing was
            refinable (`geochat.engine.refinement.refinable`).
        refined_geojson: `geojson` with each refined object's geometry replaced by its SAM
            mask's polygons; None without refinement or georeference.
    """

    text: str
    parsed: Parsed
    geojson: dict[str, Any] | None
    pixel_geojson: dict[str, Any]
    image_size: tuple[int, int] | None
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float]
    refined: list[RefinedMask | None] = field(default_factory=list)
    refined_geojson: dict[str, Any] | None = None

    def refined_objects(self) -> list[GroundedObject]:
        """`parsed.objects` with each refined object as its SAM mask (kind `mask`)."""
        if not self.refined:
            return list(self.parsed.objects)
        return [
            obj if sam is None else mask_object(obj, sam.mask)
            for obj, sam in zip(self.parsed.objects, self.refined, strict=True)
        ]

    def to_geojson(self) -> dict[str, Any]:
        """The geometry to save: lon/lat when georeferenced, else pixels; SAM's masks if refined."""
        if not self.refined:
            return self.geojson if self.geojson is not None else self.pixel_geojson
        if self.refined_geojson is not None:
            return self.refined_geojson
        return to_pixel_geojson(self.refined_objects())


ReplyStream: TypeAlias = Generator[str | Reply, None, None]
"""What ``Assistant.chat(..., stream=True)`` returns: ``str`` deltas, then the `Reply`; closing
it early stops the generation."""


@dataclass
class GenerationStats:
    """What a backend reports about one generation (filled while it runs)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    preprocess_s: float = 0.0
    prefill_s: float | None = None


@dataclass
class Request:
    """One chat call, checked and ready for a backend.

    Attributes:
        image: The image, or None for a text-only conversation.
        messages: `[{"role", "content": str}]`, `<image>` at the head of the first user turn
            when there is an image, the region (grammar text) at the end of the last one.
        max_new_tokens: Most tokens to generate.
        temperature: 0 for greedy decoding, else the sampling temperature.
        constrain: None or "grounding".
        stream: Whether the caller streams (the vLLM backend then asks the server to stream).
        logits_processors: Extra transformers logits processors (transformers backend only).
        stats: Filled by the backend.
        dialect: The dialect the answer is read in; the backend sets it when the model does
            not write geochat's canonical grammar.
    """

    image: LoadedImage | None
    messages: list[dict[str, str]]
    max_new_tokens: int
    temperature: float
    constrain: str | None
    stream: bool
    logits_processors: list[LogitsProcessor]
    stats: GenerationStats = field(default_factory=GenerationStats)
    dialect: str | Dialect = "canonical"


@dataclass(frozen=True)
class NativeInput:
    """The input a model was trained on: what scene inference resamples and tiles to.

    Saved as ``native_input`` in a checkpoint's processor config (``{"image_size": 128,
    "gsd": [0.3, 0.3]}``).

    Attributes:
        image_size: Side of the square tile the model sees, in pixels.
        gsd: ``(low, high)`` metres per pixel the model was trained on; None when unknown
            (scenes are then read at their own GSD).
        declared: Whether the checkpoint declares it (False: inferred from its image size).
    """

    image_size: int
    gsd: tuple[float, float] | None = None
    declared: bool = True

    def __post_init__(self) -> None:
        if int(self.image_size) < 1:
            raise ValueError(f"native image_size must be >= 1, got {self.image_size}")
        if self.gsd is not None:
            low, high = (float(value) for value in self.gsd)
            if not 0 < low <= high:
                raise ValueError(f"native gsd range needs 0 < low <= high, got {self.gsd}")
            object.__setattr__(self, "gsd", (low, high))

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> NativeInput:
        """Reads ``{"image_size": int, "gsd": [low, high] | null}``.

        Raises:
            ValueError: for unknown keys or bad values.
        """
        unknown = set(document) - {"image_size", "gsd"}
        if unknown or "image_size" not in document:
            raise ValueError(f"native_input needs image_size (and gsd), got {document!r}")
        gsd = document.get("gsd")
        return cls(int(document["image_size"]), None if gsd is None else tuple(gsd))

    def describe(self) -> str:
        """One line for people, e.g. ``128 px at 0.3 m (declared by the model)``."""
        if self.gsd is None:
            gsd = "at the scene's own GSD"
        elif self.gsd[0] == self.gsd[1]:
            gsd = f"at {self.gsd[0]:g} m"
        else:
            gsd = f"at {self.gsd[0]:g}-{self.gsd[1]:g} m"
        how = "declared by the model" if self.declared else "the model declares no native input"
        return f"{self.image_size} px {gsd} ({how})"


class Assistant(ABC):
    """A grounded vision-language assistant behind one of the backends.

    Attributes:
        model_name: The checkpoint folder's name or hub id (transformers), never a path, or the
            served name (vLLM).
        backend: "transformers" or "vllm".
        imagery: How images become the model's input by default: the settings the checkpoint
            was trained with (its processor config), else the defaults. Callers put a user's
            choice over them with ``assistant.imagery.updated(...)``.
        native_input: The tile size and GSD the model was trained on (scene inference), None
            when the backend cannot tell.
        family: The model's backbone family, None when the backend cannot tell (it decides
            how a task is asked: :func:`task_question`).
        refiner: SAM (`load(..., sam=PATH)`), which adds full-resolution masks to every
            reply about an image (`Reply.refined`); None (the default) refines nothing.
    """

    model_name: str
    backend: str
    imagery: ImagerySettings = ImagerySettings()
    native_input: NativeInput | None = None
    family: Family | None = None
    refiner: Refiner | None = None

    @overload
    def chat(
        self,
        image: ImageSource | LoadedImage | None,
        messages: list[dict[str, str]],
        *,
        region: Any = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        constrain: str | None = None,
        stream: Literal[False] = False,
        logits_processor: Sequence[LogitsProcessor] | None = None,
    ) -> Reply: ...

    @overload
    def chat(
        self,
        image: ImageSource | LoadedImage | None,
        messages: list[dict[str, str]],
        *,
        region: Any = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        constrain: str | None = None,
        stream: Literal[True],
        logits_processor: Sequence[LogitsProcessor] | None = None,
    ) -> ReplyStream: ...

    @overload
    def chat(
        self,
        image: ImageSource | LoadedImage | None,
        messages: list[dict[str, str]],
        *,
        region: Any = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        constrain: str | None = None,
        stream: bool,
        logits_processor: Sequence[LogitsProcessor] | None = None,
    ) -> Reply | ReplyStream: ...

    def chat(
        self,
        image: ImageSource | LoadedImage | None,
        messages: list[dict[str, str]],
        *,
        region: Any = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        constrain: str | None = None,
        stream: bool = False,
        logits_processor: Sequence[LogitsProcessor] | None = None,
    ) -> Reply | ReplyStream:
        """Answers the last user turn of a conversation about an image.

        Args:
            image: Anything `load_image` reads (read with `self.imagery`), a `LoadedImage`, or
                None for text only.
            messages: `[{"role": "system" | "user" | "assistant", "content": str}, ...]`,
                ending with a user turn. The image belongs to the first user turn: `<image>` is
                put at its head unless the caller wrote it there already.
            region: A pixel box `[x0, y0, x1, y1]` or quad `[4, 2]` (or `[8]`) of the image
                about which the last user turn asks; appended to it in the grammar.
            max_new_tokens: Most tokens to generate.
            temperature: 0 decodes greedily; above 0 samples at that temperature.
            constrain: "grounding" makes the answer match grammar v1 with at least one geometry
                (`GROUNDING_REGEX`), or the model's dialect (`grounding_regex`); None leaves it
                free.
            stream: Return a generator of text deltas ending with the `Reply`.
            logits_processor: The hook for forcing or shaping output with transformers logits
                processors (tests force known answers with it); applied before the grounding
                constraint. The transformers backend only.

        Returns:
            The `Reply`, or with `stream=True` a generator yielding `str` deltas as tokens are
            produced (their concatenation is `Reply.text`) and then the `Reply`. Closing the
            generator early stops the generation.

        Raises:
            ImageError: For an unreadable image. FileNotFoundError for a missing file.
            ValueError: For malformed messages or arguments, or a region without an image.
            geochat.grammar.GrammarError: For a region of a wrong shape.
            BackendError: When the model server fails (vLLM).
        """
        started = time.perf_counter()
        request = _request(
            image,
            self.imagery,
            messages,
            region,
            max_new_tokens,
            temperature,
            constrain,
            stream,
            logits_processor,
        )
        deltas = self._generate(request)
        if stream:
            return self._stream(deltas, request, started)
        text = "".join(deltas)
        return self._finish(text, request, started)

    def chat_batch(
        self,
        conversations: Sequence[tuple[ImageSource | LoadedImage | None, list[dict[str, str]]]],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        logits_processor: Sequence[LogitsProcessor] | None = None,
    ) -> list[Reply]:
        """Answers many conversations (scene tiles, evaluation records).

        Arguments as for :meth:`chat`, one `(image, messages)` pair a conversation. This answers
        one at a time; a backend that can generate several answers together (transformers)
        overrides it.

        Returns:
            One `Reply` per conversation, in order.
        """
        replies = []
        for image, messages in conversations:
            reply = self.chat(
                image,
                messages,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                logits_processor=logits_processor,
            )
            replies.append(reply)
        return replies

    @abstractmethod
    def close(self) -> None:
        """Frees what the backend holds open (connections); the assistant is unusable after."""

    @abstractmethod
    def _generate(self, request: Request) -> Generator[str, None, None]:
        """Checks the request, then returns a generator of the answer's text deltas.

        The generator yields deltas as they are produced and fills `request.stats`; closing it
        stops the generation. The check happens at the call, so that a streaming caller gets
        its error before iterating.

        Raises:
            ValueError: For an option this backend cannot honour.
        """

    def _stream(
        self, deltas: Generator[str, None, None], request: Request, started: float
    ) -> ReplyStream:
        pieces = []
        try:
            for delta in deltas:
                pieces.append(delta)
                yield delta
        finally:
            deltas.close()  # a consumer that stops early stops the generation
        yield self._finish("".join(pieces), request, started)

    def _finish(self, text: str, request: Request, started: float) -> Reply:
        """The reply to a request; refined by SAM when the assistant has a refiner."""
        reply = _reply(text, request, started)
        if self.refiner is None or request.image is None:
            return reply
        mask_asked = asks_for_mask(request.messages[-1]["content"])
        return refine_reply(reply, request.image, self.refiner, mask_asked)


def task_question(family: Family | None, task: str, question: str, **fields: str) -> str:
    """The question that asks a model for a task: its family's own prompt, else `question`.

    The one place a family's task prompt is applied (GeoChat-7B's `[refer]`, `[grounding]`
    and `[identify]` prompts, Qwen's cookbook grounding prompts); a family that declares none
    for the task (geochat's own models), or an unknown family, is asked in geochat's wording,
    the questions its training data holds.

    Args:
        family: The assistant's `family`.
        task: A key of `Family.task_prompts`: `refer`, `ground`, `identify`, `caption`.
        question: The question in geochat's wording (`geochat.prompts`), fields filled in.
        fields: The family prompt's fields: `phrase`, and `region` (a region in geochat's
            grammar, which the backend rewrites in the model's dialect).
    """
    template = None if family is None else family.task_prompts.get(task)
    return question if template is None else template.format(**fields)


def prepare_messages(
    messages: list[dict[str, str]], image: LoadedImage | None, region: Any = None
) -> list[dict[str, str]]:
    """Checks a conversation and writes the image place and the region into it.

    Args:
        messages: `[{"role", "content": str}]` ending with a user turn.
        image: The conversation's image, or None.
        region: Pixel box or quad for the last user turn, or None.

    Returns:
        New messages: `<image>` + newline at the head of the first user turn when there is an
        image (unless already there), the region in grammar form after the last user turn's
        text, separated by a space.

    Raises:
        ValueError: For an empty conversation, an unknown role, a content that is not a string,
            a last turn that is not the user's, `<image>` without an image (or more than one),
            or a region without an image.
        geochat.grammar.GrammarError: For a region that is neither a box nor a quad.
    """
    if not messages:
        raise ValueError("messages is empty; give at least one user turn")
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ValueError(f"message {number} needs a role among {ROLES}: {message!r}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"message {number} needs a string content: {message!r}")
    if messages[-1]["role"] != "user":
        raise ValueError(f"the last message must be the user's, not {messages[-1]['role']!r}")
    places = sum(message["content"].count(IMAGE_PLACE) for message in messages)
    if places > 1 or (places and image is None):
        raise ValueError(
            f"{places} {IMAGE_PLACE} places for {0 if image is None else 1} image; the engine "
            "takes one image, which belongs to the first user turn"
        )
    prepared = [{"role": m["role"], "content": m["content"]} for m in messages]
    if image is not None and not places:
        first = next(m for m in prepared if m["role"] == "user")
        first["content"] = f"{IMAGE_PLACE}\n{first['content']}"
    if region is not None:
        if image is None:
            raise ValueError("a region needs an image: its pixels are the region's frame")
        last = prepared[-1]
        last["content"] += f" {format_region(region, image.width, image.height)}"
    return prepared


def _request(
    image: ImageSource | LoadedImage | None,
    imagery: ImagerySettings,
    messages: list[dict[str, str]],
    region: Any,
    max_new_tokens: int,
    temperature: float,
    constrain: str | None,
    stream: bool,
    logits_processor: Sequence[LogitsProcessor] | None,
) -> Request:
    """Checks the arguments of a chat call, reads the image and prepares the messages."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if constrain is not None and constrain not in CONSTRAINTS:
        raise ValueError(f"constrain must be None or one of {CONSTRAINTS}, got {constrain!r}")
    started = time.perf_counter()
    loaded = None if image is None else load_image(image, imagery=imagery)
    prepared = prepare_messages(messages, loaded, region)
    stats = GenerationStats(preprocess_s=time.perf_counter() - started)
    processors = list(logits_processor or [])
    return Request(
        loaded, prepared, max_new_tokens, temperature, constrain, stream, processors, stats
    )


def _reply(text: str, request: Request, started: float) -> Reply:
    image, stats = request.image, request.stats
    if image is None:
        # No frame for coordinates: the tag-free text and any explicit "nothing found" only.
        read = readable(text)
        nothing = [obj for obj in read.objects if obj.kind == "none"]
        parsed, size, georef = Parsed(nothing, read.problems, read.text), None, None
    else:
        parsed = parse(text, image.width, image.height, request.dialect)
        size, georef = (image.width, image.height), image.georef
    total = time.perf_counter() - started
    generating = max(total - stats.preprocess_s, 1e-9)
    timings = {
        "preprocess_s": stats.preprocess_s,
        "total_s": total,
        "tokens_per_s": stats.completion_tokens / generating,
    }
    if stats.prefill_s is not None:
        timings["prefill_s"] = stats.prefill_s
    return Reply(
        text=text,
        parsed=parsed,
        geojson=None if georef is None else to_geojson(parsed.objects, georef),
        pixel_geojson=to_pixel_geojson(parsed.objects),
        image_size=size,
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        timings=timings,
    )
