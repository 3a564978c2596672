"""What a backbone family states, and the prompt helpers the chat-template families share.

A :class:`Family` is everything the rest of geochat needs to know about one kind of checkpoint:
how to load it, how to build a prompt with an image, the coordinate dialect it writes, its task
prompts, the module names of its parts and its vLLM architecture. Families are chosen by the
checkpoint's ``model_type`` (``config.json``), never by its path (see ``families/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from PIL import Image
from transformers import BatchFeature, PretrainedConfig, PreTrainedModel
from transformers.processing_utils import ProcessorMixin

IMAGE_PLACE = "<image>"  # where the engine's messages put the image (DESIGN.md, "The record")
BYTE_MAX = 255


@dataclass(frozen=True)
class Modules:
    """Names (prefixes in `model.named_modules()`) of a model's parts.

    A parameter belongs to the part of the longest prefix it starts with, so a connector nested
    inside the vision tower (Qwen's `model.visual.merger`) is the connector, not the tower.

    Attributes:
        vision_tower: The image encoder.
        connector: What maps image features into the LLM (projector, merger, compressor).
        language_model: The LLM's decoder (embeddings, layers, final norm).
        lm_head: The output projection.
    """

    vision_tower: tuple[str, ...]
    connector: tuple[str, ...]
    language_model: tuple[str, ...]
    lm_head: tuple[str, ...] = ("lm_head",)

    def parts(self) -> dict[str, tuple[str, ...]]:
        """The prefixes of each part, by part name."""
        return {
            "vision_tower": self.vision_tower,
            "connector": self.connector,
            "language_model": self.language_model,
            "lm_head": self.lm_head,
        }

    def part_of(self, name: str) -> str | None:
        """The part a module or parameter name belongs to, or None when it is in none."""
        best, length = None, -1
        for part, prefixes in self.parts().items():
            for prefix in prefixes:
                inside = name == prefix or name.startswith(prefix + ".")
                if inside and len(prefix) > length:
                    best, length = part, len(prefix)
        return best

    def quantization_skip(self) -> list[str]:
        """Modules to keep in full precision under QLoRA: the tower, the connector, the head."""
        return [*self.vision_tower, *self.connector, *self.lm_head]


@dataclass(frozen=True)
class ModelInputs:
    """A conversation ready for `generate`, and the frame of the image the model saw.

    Attributes:
        inputs: `input_ids`, `attention_mask` and the family's image tensors.
        frame: `(width, height)` in pixels of the image after the processor resized it, for
            dialects whose coordinates are pixels of that image (`qwen25vl`); None otherwise.
    """

    inputs: BatchFeature
    frame: tuple[int, int] | None = None


# The processor class of a family: what its loader returns is what its other functions take.
P = TypeVar("P", bound=ProcessorMixin)
# load_processor(folder, config) -> processor; raises ValueError when it cannot serve the model
ProcessorLoader = Callable[[str | Path, PretrainedConfig], P]
# input_frame(processor, image) -> (width, height) the model will see, or None
FrameOf = Callable[[P, Image.Image], tuple[int, int] | None]
# build_inputs(processor, image or None, messages) -> inputs (messages as the engine writes them)
InputBuilder = Callable[[P, Image.Image | None, list[dict[str, str]]], BatchFeature]
# A protocol rather than a Callable: callers name add_generation_prompt.
P_contra = TypeVar("P_contra", bound=ProcessorMixin, contravariant=True)


class TextRenderer(Protocol[P_contra]):
    """Renders messages with a processor's chat template (see :func:`chat_text`)."""

    def __call__(
        self,
        processor: P_contra,
        messages: list[dict[str, str]],
        add_generation_prompt: bool = True,
    ) -> str:
        """The rendered prompt, with the assistant's opening when ``add_generation_prompt``."""
        ...


@runtime_checkable
class TrainedInputs(Protocol):
    """A processor that keeps what training recorded about its images (every family's does).

    Both are ``__init__`` arguments of the processor class, which is what transformers saves in
    processor_config.json and passes back when loading.

    Attributes:
        imagery: ``geochat.imagery.ImagerySettings.to_dict()`` of the training builds, which
            the engine applies by default; None for the defaults.
        native_input: ``{"image_size": int, "gsd": [low, high]}``, the tiles the model was
            trained on (``geochat.engine.NativeInput``); None when unknown.
    """

    imagery: dict[str, Any] | None
    native_input: dict[str, Any] | None


def image_token(processor: ProcessorMixin) -> str:
    """The text of the token that places the image (``<image>``, ``<|image_pad|>``)."""
    # Every multimodal processor has image_token; transformers declares it per processor class.
    return str(processor.image_token)  # type: ignore[attr-defined]


def content_parts(messages: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Turns string messages into the content-part lists that chat templates expect.

    `<image>` (with the newline after it) becomes a `{"type": "image"}` part in place; the text
    around it becomes `{"type": "text"}` parts.

    Args:
        messages: `[{"role", "content": str}]`.

    Returns:
        `[{"role", "content": [{"type": "image"} | {"type": "text", "text": str}, ...]}]`.
    """
    converted = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        pieces = message["content"].split(IMAGE_PLACE)
        for index, piece in enumerate(pieces):
            if index:
                parts.append({"type": "image"})
                piece = piece.removeprefix("\n")
            if piece:
                parts.append({"type": "text", "text": piece})
        converted.append({"role": message["role"], "content": parts})
    return converted


def chat_text(
    processor: ProcessorMixin, messages: list[dict[str, str]], add_generation_prompt: bool = True
) -> str:
    """Messages rendered by the processor's chat template (`<image>` as an image part).

    Raises:
        ValueError: When the checkpoint has no chat template.
    """
    if not processor.chat_template:
        raise ValueError(
            "the checkpoint has no chat template (chat_template.jinja or chat_template.json); "
            "save its processor with one"
        )
    return processor.apply_chat_template(
        content_parts(messages), add_generation_prompt=add_generation_prompt, tokenize=False
    )


@dataclass(frozen=True)
class Family(Generic[P]):
    """One backbone family: how its checkpoints load, are prompted and write geometry.

    Attributes:
        name: What users call it ("Qwen2.5-VL").
        model_types: The `model_type` values of its `config.json`.
        model_class: The transformers class that loads its weights (`from_pretrained` with
            `dtype`, then `.to(device)`).
        load_processor: Builds its processor from the checkpoint folder and checks it against
            the model's config.
        build_inputs: Renders messages (strings; `<image>` at the head of the first user turn)
            with the checkpoint's chat template and processes them with the image.
        input_frame: The size the processor will resize an image to, or None when the dialect
            does not need it.
        image_token_id: Reads the image token's id from the model's config.
        dialect: Its native coordinate dialect, a name in `geochat.grammar.DIALECTS`.
        task_prompts: The prompt of each task it was trained on (`refer`, `grounded_caption`,
            `identify`, ...), with `{phrase}` and `{region}` places (a region in geochat's
            grammar, rewritten in its dialect at the edge); applied by
            `geochat.engine.task_question`. Empty: asked in geochat's wording.
        modules: The names of its vision tower, connector, LLM and head.
        vllm_architecture: `architectures[0]` that vLLM serves it with.
        pads_to_square: Whether the image is padded to a centred square before processing
            (LLaVA's and GeoChat's `expand2square`).
        chat_text: Renders messages with the chat template as `build_inputs` does (training
            cuts this text into context and answers).
        vllm_content_format: How vLLM's server hands messages to the chat template
            (`--chat-template-content-format`): "openai" (lists of image and text parts, as
            `build_inputs` renders them) or "string" (the image placeholder, a newline, then
            the text: geochat's own template), so both backends see the same prompt tokens.
    """

    name: str
    model_types: tuple[str, ...]
    model_class: type[PreTrainedModel]
    load_processor: ProcessorLoader[P]
    build_inputs: InputBuilder[P]
    input_frame: FrameOf[P]
    image_token_id: Callable[[PretrainedConfig], int]
    dialect: str
    task_prompts: Mapping[str, str]
    modules: Modules
    vllm_architecture: str
    pads_to_square: bool = False
    chat_text: TextRenderer[P] = chat_text
    vllm_content_format: str = "openai"


def no_frame(processor: ProcessorMixin, image: Image.Image) -> None:
    """`Family.input_frame` of families whose dialect does not depend on the resized size."""
    return None


def render(
    processor: ProcessorMixin, image: Image.Image | None, messages: list[dict[str, str]]
) -> BatchFeature:
    """Renders messages with the processor's chat template and processes them with the image.

    Raises:
        ValueError: When the checkpoint has no chat template.
    """
    images = None if image is None else [image]
    return processor(images=images, text=chat_text(processor, messages), return_tensors="pt")


def pad_to_square(image: Image.Image, fill: tuple[int, ...]) -> Image.Image:
    """LLaVA's `expand2square`: the image centred on a square of its longest side.

    The offset is `((side - width) // 2, (side - height) // 2)`, the frame that
    `geochat.grammar.GeoChatDialect(pad_to_square=True)` reads coordinates in.
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def square_image(processor: ProcessorMixin, image: Image.Image) -> Image.Image:
    """The image padded as LLaVA and GeoChat pad it: centred on a square of the mean colour.

    The colour is `int(255 * mean)` of the processor's `image_mean`: LLaVA's fill truncates
    (CLIP's mean gives 122, 116, 104).
    """
    mean = processor.image_processor.image_mean
    return pad_to_square(image, tuple(int(BYTE_MAX * value) for value in mean))
