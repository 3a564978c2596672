"""The LLaVA family (LLaVA-1.5 layout in transformers): GeoChat-7B-style checkpoints.

A CLIP vision tower (`model.vision_tower`), a two-layer MLP projector
(`model.multi_modal_projector`) and a Llama LLM (`model.language_model`), as transformers 5.19's
`LlavaForConditionalGeneration`. Like LLaVA-1.5 (`image_aspect_ratio="pad"`) and GeoChat, the
image is first padded to a centred square in the image processor's mean colour
(`expand2square`), so the processor's resize and centre crop keep all of it and the model's
coordinates are GeoChat's: 0-100 of that square, with an angle (dialect `geochat`). Task
prompts are GeoChat's `[refer]`, `[grounding]` and `[identify]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from transformers import (
    BatchFeature,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PretrainedConfig,
)

from geochat.modeling.families.base import Family, Modules, no_frame, render, square_image


class LlavaTrainedProcessor(LlavaProcessor):
    """`LlavaProcessor` that keeps what training recorded (``imagery``, ``native_input``).

    See :class:`~geochat.modeling.families.base.TrainedInputs`. transformers saves and loads
    a processor's ``__init__`` arguments, hence LlavaProcessor's own are repeated here.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        patch_size=None,
        vision_feature_select_strategy=None,
        chat_template=None,
        image_token="<image>",
        num_additional_image_tokens=0,
        imagery: dict[str, Any] | None = None,
        native_input: dict[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(
            image_processor,
            tokenizer,
            patch_size,
            vision_feature_select_strategy,
            chat_template,
            image_token,
            num_additional_image_tokens,
            **kwargs,
        )
        self.imagery = imagery
        self.native_input = native_input


def load_processor(folder: str | Path, config: PretrainedConfig) -> LlavaProcessor:
    """Loads LLaVA's processor (CLIP or LLaVA image processor, tokenizer, chat template)."""
    return LlavaTrainedProcessor.from_pretrained(folder)


def build_inputs(
    processor: LlavaProcessor, image: Image.Image | None, messages: list[dict[str, str]]
) -> BatchFeature:
    """Pads the image to a square (`expand2square`), then renders and processes."""
    return render(processor, None if image is None else square_image(processor, image), messages)


LLAVA = Family(
    name="LLaVA",
    model_types=("llava",),
    model_class=LlavaForConditionalGeneration,
    load_processor=load_processor,
    build_inputs=build_inputs,
    input_frame=no_frame,
    image_token_id=lambda config: config.image_token_id,
    dialect="geochat",
    task_prompts={  # GeoChat's task identifiers (its demo and GeoChat_Instruct)
        "refer": "[refer] give me the location of <p>{phrase}</p>",
        "grounded_caption": "[grounding] Describe the image in detail.",
        "identify": "[identify] what is this {region}",
        "caption": "Describe the image in detail.",
    },
    modules=Modules(
        vision_tower=("model.vision_tower",),
        connector=("model.multi_modal_projector",),
        language_model=("model.language_model",),
    ),
    vllm_architecture="LlavaForConditionalGeneration",
    pads_to_square=True,
)
