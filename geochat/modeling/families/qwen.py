"""The Qwen2.5-VL and Qwen3-VL families.

Both resize an image so that each side is a multiple of `patch_size * merge_size` (28 for
Qwen2.5-VL, 32 for Qwen3-VL) within a pixel budget (`smart_resize`), and place it in the chat
template as `<|vision_start|><|image_pad|><|vision_end|>`, expanded to one `<|image_pad|>` per
merged patch. They answer grounding questions with JSON lists of `"bbox_2d"` boxes: Qwen2.5-VL in
absolute pixels of the resized image (dialect `qwen25vl`, which needs that size, see
:func:`input_frame`), Qwen3-VL on 0-1000 per axis (dialect `qwen3vl`).

Their processors are built image-only: transformers' video processors need torchvision, which
geochat does not require. Module names are transformers 5.19's: the vision tower
`model.visual`, whose patch merger (`model.visual.merger`, and Qwen3-VL's DeepStack mergers
`model.visual.deepstack_merger_list`) is the connector, and the LLM `model.language_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from transformers import (
    BatchFeature,
    PretrainedConfig,
    ProcessorMixin,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from geochat.modeling.families.base import Family, Modules, ProcessorLoader, render


class _ImagesOnly(ProcessorMixin):
    """A Qwen processor's ``__init__`` for images and text only, with what training recorded.

    Its arguments are what transformers saves and loads; the video processor is left out (it
    needs torchvision), and ``imagery`` and ``native_input`` are kept
    (:class:`~geochat.modeling.families.base.TrainedInputs`).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        imagery: dict[str, Any] | None = None,
        native_input: dict[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template)
        self.imagery = imagery
        self.native_input = native_input


class Qwen25VLImageProcessor(_ImagesOnly, Qwen2_5_VLProcessor):
    """`Qwen2_5_VLProcessor` for images and text only (no video processor, no torchvision)."""


class Qwen3VLImageProcessor(_ImagesOnly, Qwen3VLProcessor):
    """`Qwen3VLProcessor` for images and text only (no video processor, no torchvision)."""


QwenProcessor = Qwen2_5_VLProcessor | Qwen3VLProcessor


def _loader(processor_class: type[QwenProcessor]) -> ProcessorLoader[QwenProcessor]:
    def load_processor(folder: str | Path, config: PretrainedConfig) -> QwenProcessor:
        """Loads the image processor, the tokenizer and the chat template of a checkpoint."""
        return processor_class.from_pretrained(folder)

    return load_processor


def input_frame(processor: QwenProcessor, image: Image.Image) -> tuple[int, int]:
    """`(width, height)` the processor resizes `image` to (`smart_resize`)."""
    settings = processor.image_processor
    height, width = smart_resize(
        image.height,
        image.width,
        factor=settings.patch_size * settings.merge_size,
        min_pixels=settings.size["shortest_edge"],
        max_pixels=settings.size["longest_edge"],
    )
    return width, height


def build_inputs(
    processor: QwenProcessor, image: Image.Image | None, messages: list[dict[str, str]]
) -> BatchFeature:
    """Renders the chat template and processes the image.

    Raises:
        RuntimeError: When the processor resized the image to another size than
            :func:`input_frame` computed (geometry would be read in the wrong frame).
    """
    inputs = render(processor, image, messages)
    if image is not None:
        _, rows, columns = inputs["image_grid_thw"][0].tolist()
        patch = processor.image_processor.patch_size
        seen, expected = (columns * patch, rows * patch), input_frame(processor, image)
        if seen != expected:
            raise RuntimeError(
                f"the processor resized the image to {seen}, not {expected} as geochat computed"
            )
    return inputs


QWEN_MODULES = Modules(
    vision_tower=("model.visual",),
    connector=("model.visual.merger",),
    language_model=("model.language_model",),
)

QWEN2_5_VL = Family(
    name="Qwen2.5-VL",
    model_types=("qwen2_5_vl",),
    model_class=Qwen2_5_VLForConditionalGeneration,
    load_processor=_loader(Qwen25VLImageProcessor),
    build_inputs=build_inputs,
    input_frame=input_frame,
    image_token_id=lambda config: config.image_token_id,
    dialect="qwen25vl",
    task_prompts={  # the form of the Qwen2.5-VL cookbooks (spatial_understanding.ipynb)
        "refer": "Locate {phrase} in the image and output its bbox coordinates in JSON format.",
        "grounded_caption": (
            "Locate every object in the image and output their bbox coordinates and "
            "labels in JSON format."
        ),
        "identify": "What is the object in the region {region}?",
        "caption": "Describe this image.",
    },
    modules=QWEN_MODULES,
    vllm_architecture="Qwen2_5_VLForConditionalGeneration",
)

QWEN3_VL = Family(
    name="Qwen3-VL",
    model_types=("qwen3_vl",),
    model_class=Qwen3VLForConditionalGeneration,
    load_processor=_loader(Qwen3VLImageProcessor),
    build_inputs=build_inputs,
    input_frame=input_frame,
    image_token_id=lambda config: config.image_token_id,
    dialect="qwen3vl",
    task_prompts={  # the form of the Qwen3-VL cookbooks (2d_grounding.ipynb)
        "refer": "Locate {phrase} in the image, output its bbox_2d coordinates in JSON format.",
        "grounded_caption": (
            "Locate every object in the image, output their bbox_2d coordinates and "
            "labels in JSON format."
        ),
        "identify": "What is the object in the region {region}?",
        "caption": "Describe this image.",
    },
    modules=Modules(
        vision_tower=("model.visual",),
        connector=("model.visual.merger", "model.visual.deepstack_merger_list"),
        language_model=("model.language_model",),
    ),
    vllm_architecture="Qwen3VLForConditionalGeneration",
)
