"""The geochat architecture for vLLM: vLLM's Idefics3 with geochat's choice of compressor.

`GeoChatForConditionalGeneration` here is the vLLM twin of `geochat.modeling`'s model of the
same name and loads the same `save_pretrained` checkpoints. With `compressor="pixel_shuffle"` it
is exactly vLLM's own Idefics3 (so SmolVLM checkpoints behave as in vLLM); with `conv` or `pool`
the connector is geochat's compressor (the same torch modules as in transformers) followed by a
linear projector, with the weight names of the transformers checkpoint:
`model.connector.compressor.*` and `model.connector.modality_projection.proj.weight`.

Only vLLM imports this module, through the plugin in `geochat.app.vllm_plugin`.
"""

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.layers.linear import ReplicatedLinear
from vllm.model_executor.layers.quantization import QuantizationConfig
from vllm.model_executor.models.idefics3 import (
    Idefics3DummyInputsBuilder,
    Idefics3MultiModalProcessor,
    Idefics3ProcessingInfo,
)
from vllm.model_executor.models.idefics3 import (
    Idefics3ForConditionalGeneration as VllmIdefics3ForConditionalGeneration,
)
from vllm.model_executor.models.utils import maybe_prefix
from vllm.multimodal import MULTIMODAL_REGISTRY

from geochat.modeling import GeoChatConfig, GeoChatProcessor
from geochat.modeling.compressor import build_compressor
from geochat.modeling.configuration import sub_config

IDEFICS3_COMPRESSOR = "pixel_shuffle"  # the compressor that vLLM's own Idefics3 connector runs


class GeoChatProcessingInfo(Idefics3ProcessingInfo):
    """Idefics3's processing info that loads the checkpoint's processor as a `GeoChatProcessor`."""

    def get_hf_processor(self, **kwargs: object) -> GeoChatProcessor:
        """The transformers processor saved beside the checkpoint, with geochat's chat template."""
        return self.ctx.get_hf_processor(GeoChatProcessor, **kwargs)


class GeoChatProjector(nn.Module):
    """Linear map of compressed visual tokens to the LLM width (`modality_projection.proj`)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        quant_config: QuantizationConfig | None = None,
        prefix: str = "",
    ):
        super().__init__()
        self.proj = ReplicatedLinear(
            in_dim,
            out_dim,
            bias=False,
            quant_config=quant_config,
            prefix=maybe_prefix(prefix, "proj"),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projects `[N, T, in_dim]` to `[N, T, out_dim]`."""
        projected, _ = self.proj(tokens)  # ReplicatedLinear returns (output, bias)
        return projected


class GeoChatConnector(nn.Module):
    """geochat's compressor then the projector: `[N, G*G, D_vision]` -> `[N, T, D_text]`."""

    def __init__(
        self,
        config: GeoChatConfig,
        quant_config: QuantizationConfig | None = None,
        prefix: str = "",
    ):
        super().__init__()
        self.compressor = build_compressor(
            config.compressor, sub_config(config.vision_config).hidden_size, config.scale_factor
        )
        self.modality_projection = GeoChatProjector(
            self.compressor.out_dim,
            sub_config(config.text_config).hidden_size,
            quant_config,
            prefix=maybe_prefix(prefix, "modality_projection"),
        )

    def forward(self, image_hidden_states: torch.Tensor) -> torch.Tensor:
        """Compresses the patch grid of each tile, then projects it to the LLM width."""
        return self.modality_projection(self.compressor(image_hidden_states))


def _compressor_of(config: object) -> str:
    """The configured compressor; a plain Idefics3 configuration has Idefics3's pixel shuffle.

    Raises:
        ValueError: For a compressor or factor that geochat's model does not accept.
    """
    if not isinstance(config, GeoChatConfig):
        return IDEFICS3_COMPRESSOR
    config.validate_compressor()
    return config.compressor


@MULTIMODAL_REGISTRY.register_processor(
    Idefics3MultiModalProcessor,
    info=GeoChatProcessingInfo,
    dummy_inputs=Idefics3DummyInputsBuilder,
)
class GeoChatForConditionalGeneration(VllmIdefics3ForConditionalGeneration):
    """vLLM's Idefics3 whose connector follows the checkpoint's `compressor`.

    The vision encoder, the Llama LLM, the image-token layout, LoRA support and the multimodal
    processing are vLLM's Idefics3's; the processing info is re-registered only so that vLLM
    loads the checkpoint's processor as a `GeoChatProcessor`.
    """

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        config = vllm_config.model_config.hf_config
        if _compressor_of(config) != IDEFICS3_COMPRESSOR:
            # Replace the pixel-shuffle connector that Idefics3Model built. The module keeps its
            # name, so vLLM's tower bookkeeping (LoRA, encoder-only stages) still finds it.
            self.model.connector = GeoChatConnector(
                config,
                vllm_config.quant_config,
                prefix=maybe_prefix(prefix, "model.connector"),
            )
