"""The Idefics3 family: geochat's own models, Idefics3 and SmolVLM (v1) checkpoints.

Loaded with `GeoChatForConditionalGeneration` (a plain Idefics3 checkpoint loads unchanged) and
`GeoChatProcessor` (Idefics3's tiling with geochat's chat template). Geometry is written in
geochat's canonical grammar. Module names are transformers 5.19's `Idefics3ForConditionalGeneration`
with geochat's connector (`model.connector.compressor`, `model.connector.modality_projection`).
"""

from __future__ import annotations

from PIL import Image
from transformers import BatchFeature

from geochat.modeling.families.base import Family, Modules, no_frame
from geochat.modeling.modeling import GeoChatForConditionalGeneration
from geochat.modeling.processing import GeoChatProcessor, load_processor


def build_inputs(
    processor: GeoChatProcessor, image: Image.Image | None, messages: list[dict[str, str]]
) -> BatchFeature:
    """Idefics3's tiles and image tokens through geochat's chat template."""
    return processor.build_chat_inputs(image, messages).inputs


def chat_text(
    processor: GeoChatProcessor, messages: list[dict[str, str]], add_generation_prompt: bool = True
) -> str:
    """Geochat's chat template over string messages, as `build_chat_inputs` renders them."""
    return processor.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=False
    )


IDEFICS3 = Family(
    name="Idefics3 (geochat, SmolVLM)",
    model_types=("geochat", "idefics3"),
    model_class=GeoChatForConditionalGeneration,
    load_processor=load_processor,
    build_inputs=build_inputs,
    input_frame=no_frame,
    image_token_id=lambda config: config.image_token_id,
    dialect="canonical",
    # None: geochat's models are asked in geochat's own wording (`geochat.prompts`, which the
    # data builders write), whatever the geometry form asked for.
    task_prompts={},
    modules=Modules(
        vision_tower=("model.vision_model",),
        connector=("model.connector",),
        language_model=("model.text_model",),
    ),
    vllm_architecture="GeoChatForConditionalGeneration",
    chat_text=chat_text,
    vllm_content_format="string",
)
