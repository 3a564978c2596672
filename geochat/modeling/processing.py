"""The geochat processor: Idefics3's tiling and image tokens, our chat template, original sizes.

Idefics3's PIL image processor (no torchvision) resizes an image so that its longest edge is
`max_tiles_per_side` tiles, rounds both sides up to whole tiles (stretching each axis on its own),
cuts the tiles and adds a global view squashed to one tile. Each axis is scaled independently and
nothing is cropped, so grammar coordinates (0..1000 per axis of the ORIGINAL image) map back to
original pixels with the original (width, height) alone: `ChatInputs.image_sizes` keeps them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import (
    BatchFeature,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    PretrainedConfig,
)
from transformers.image_utils import get_image_size, to_numpy_array
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from geochat.modeling.configuration import GeoChatConfig, sub_config
from geochat.modeling.tokenizer import MAX_TILES_PER_SIDE

# SmolVLM's template (so fine-tuned SmolVLM checkpoints see their own format), also accepting a
# plain string as content, where "<image>" marks the image as in our records.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}"
    "{{ ':' if message['content'].startswith('<image>') else ': ' }}{{ message['content'] }}"
    "{% else %}{{ ':' if message['content'][0]['type'] == 'image' else ': ' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
RECORD_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}

ImageLike = Any  # a PIL image, an array or tensor (HWC or CHW), or a path or URL


@dataclass
class ChatInputs:
    """Model inputs for one conversation and the original size of each of its images.

    Attributes:
        inputs: `input_ids`, `attention_mask`, `pixel_values` `[1, tiles, 3, H, W]` and
            `pixel_attention_mask`, ready for `model(**inputs)` or `model.generate(**inputs)`.
        image_sizes: `(width, height)` in pixels of each image before any resizing or tiling,
            in the order of the images: the frame of the grammar's 0..1000 coordinates.
    """

    inputs: BatchFeature
    image_sizes: list[tuple[int, int]]


def image_size(image: ImageLike) -> tuple[int, int]:
    """`(width, height)` in pixels of a PIL image or an image array (HWC or CHW)."""
    height, width = get_image_size(to_numpy_array(image))
    return width, height


def conversation_to_messages(conversations: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Turns a record's LLaVA-style `conversations` into chat messages for the template.

    Args:
        conversations: `[{"from": "human" | "gpt" | "system", "value": str}, ...]`; the
            `<image>` placeholder stays in the text.

    Returns:
        `[{"role": "user" | "assistant" | "system", "content": str}, ...]`.

    Raises:
        ValueError: For a speaker other than human, gpt or system.
    """
    messages = []
    for turn in conversations:
        if turn["from"] not in RECORD_ROLES:
            raise ValueError(
                f"unknown speaker {turn['from']!r}; expected one of {list(RECORD_ROLES)}"
            )
        messages.append({"role": RECORD_ROLES[turn["from"]], "content": turn["value"]})
    return messages


class GeoChatProcessor(Idefics3Processor):
    """Idefics3's processor with geochat's chat template and the original sizes of images.

    Attributes:
        imagery: The imagery settings the model was trained with
            (``geochat.imagery.ImagerySettings.to_dict()``, saved in processor_config.json),
            which the engine applies by default; None for the defaults.
        native_input: ``{"image_size": int, "gsd": [low, high]}``, the tiles the model was
            trained on (``geochat.engine.NativeInput``; scene inference); None when unknown.
    """

    def __init__(
        self,
        image_processor: Any,
        tokenizer: PreTrainedTokenizerBase | None = None,
        image_seq_len: int = 169,
        chat_template: str | None = None,
        imagery: dict[str, Any] | None = None,
        native_input: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_processor, tokenizer, image_seq_len, chat_template, **kwargs)
        self.imagery = imagery
        self.native_input = native_input

    @classmethod
    def for_model(
        cls,
        config: GeoChatConfig,
        tokenizer: PreTrainedTokenizerBase,
        max_tiles_per_side: int = 4,
    ) -> "GeoChatProcessor":
        """Builds the processor that matches a model configuration.

        Args:
            config: The model's configuration; its tile size (vision `image_size`) and
                `image_seq_len` (which follows from the compressor) set the image tokens.
            tokenizer: The model's tokenizer.
            max_tiles_per_side: Tiles along the longest edge (at most 6); images are resized so
                that their longest edge spans this many tiles. 1 keeps only the global view.

        Returns:
            The processor.

        Raises:
            ValueError: For `max_tiles_per_side` outside 1..6.
        """
        if not 1 <= max_tiles_per_side <= MAX_TILES_PER_SIDE:
            raise ValueError(
                f"max_tiles_per_side must be in 1..{MAX_TILES_PER_SIDE}, got {max_tiles_per_side}"
            )
        tile = sub_config(config.vision_config).image_size
        image_processor = Idefics3ImageProcessorPil(
            size={"longest_edge": tile * max_tiles_per_side},
            max_image_size={"longest_edge": tile},
        )
        return cls(
            image_processor,
            tokenizer,
            image_seq_len=config.image_seq_len,
            chat_template=CHAT_TEMPLATE,
        )

    def build_chat_inputs(
        self,
        images: ImageLike | Sequence[ImageLike] | None,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
    ) -> ChatInputs:
        """Renders `messages` with the chat template and processes them with `images`.

        Args:
            images: The images of the conversation, in the order of their `<image>` places
                (a `{"type": "image"}` part or `<image>` in a string content); None for none.
            messages: `[{"role": ..., "content": str | [{"type": "image"}, {"type": "text",
                "text": ...}]}, ...]`.
            add_generation_prompt: End with `Assistant:` so the model writes the answer.

        Returns:
            The PyTorch inputs and the original `(width, height)` of each image.

        Raises:
            ValueError: When the images and the image places differ in number.
        """
        if images is not None and not isinstance(images, (list, tuple)):
            images = [images]
        images = self.image_processor.fetch_images(list(images)) if images else None
        text = self.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        inputs = self(images=images, text=text, return_tensors="pt")
        sizes = [image_size(image) for image in images] if images else []
        return ChatInputs(inputs=inputs, image_sizes=sizes)


def load_processor(folder: str | Path, config: PretrainedConfig) -> GeoChatProcessor:
    """Loads the processor and checks that it writes as many image tokens as the model reads.

    Raises:
        ValueError: When the processor's image tokens per tile differ from the model's.
    """
    processor = GeoChatProcessor.from_pretrained(folder)
    expected = getattr(config, "image_seq_len", None)
    if expected is None:  # an Idefics3 config: its pixel shuffle by scale_factor
        patches = config.vision_config.image_size // config.vision_config.patch_size
        expected = (patches // config.scale_factor) ** 2
    if processor.image_seq_len != expected:
        raise ValueError(
            f"{folder}: the processor writes {processor.image_seq_len} image tokens per tile but "
            f"the model's compressor gives {expected}"
        )
    return processor
