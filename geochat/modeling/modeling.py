"""The geochat model: Idefics3 (SmolVLM) with a configurable visual-token compressor.

Only the connector differs from Idefics3: a compressor (`compressor.py`) then a linear projector.
With `compressor="pixel_shuffle"` the parameter names and the computation are Idefics3's, so
Idefics3 and SmolVLM checkpoints load unchanged.
"""

import torch
from torch import nn
from transformers import Idefics3ForConditionalGeneration, Idefics3Model
from transformers.models.idefics3.modeling_idefics3 import Idefics3PreTrainedModel

from geochat.modeling.compressor import build_compressor
from geochat.modeling.configuration import GeoChatConfig, sub_config


class ImageTokenMismatchError(ValueError):
    """The image tokens of `input_ids` and the image features disagree in number."""


class LinearProjector(nn.Module):
    """Maps compressed visual tokens to the LLM width (Idefics3's `Idefics3SimpleMLP`)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projects `[N, T, in_dim]` to `[N, T, out_dim]`."""
        return self.proj(tokens)


class GeoChatConnector(nn.Module):
    """Compressor then linear projector: `[N, G*G, D_vision]` -> `[N, image_seq_len, D_text]`."""

    def __init__(self, config: GeoChatConfig):
        super().__init__()
        self.compressor = build_compressor(
            config.compressor, sub_config(config.vision_config).hidden_size, config.scale_factor
        )
        self.modality_projection = LinearProjector(
            self.compressor.out_dim, sub_config(config.text_config).hidden_size
        )

    def forward(self, image_hidden_states: torch.Tensor) -> torch.Tensor:
        """Compresses and projects the vision encoder's patch tokens."""
        return self.modality_projection(self.compressor(image_hidden_states))


class GeoChatModel(Idefics3Model):
    """Idefics3's vision encoder and LLM around a `GeoChatConnector`."""

    config: GeoChatConfig

    def __init__(self, config: GeoChatConfig):
        super().__init__(config)
        # Swap Idefics3's connector for ours; post_init initialises only the new modules.
        # transformers types the connector as Idefics3Connector; ours has its forward signature.
        self.connector = GeoChatConnector(config)  # type: ignore[assignment]
        self.post_init()

    def inputs_merger(
        self,
        input_ids: torch.LongTensor | None,
        # Idefics3 types these two as optional, yet calls this only with both (and needs both).
        inputs_embeds: torch.Tensor,  # type: ignore[override]
        image_hidden_states: torch.Tensor,  # type: ignore[override]
    ) -> torch.Tensor:
        """Scatters image features into the image-token positions: the one seam for images.

        Raises:
            ImageTokenMismatchError: When the number of image tokens differs from the number of
                image features (Idefics3's masked scatter would fail obscurely or drop features).
        """
        if input_ids is None:
            image_embedding = self.get_input_embeddings()(
                torch.tensor(self.config.image_token_id, device=inputs_embeds.device)
            )
            n_tokens = int((inputs_embeds == image_embedding).all(-1).sum())
        else:
            n_tokens = int((input_ids == self.config.image_token_id).sum())
        n_tiles, tile_len = image_hidden_states.shape[:2]  # [tiles, image_seq_len, D_text]
        if n_tokens != n_tiles * tile_len:
            raise ImageTokenMismatchError(
                f"the text holds {n_tokens} image tokens (id {self.config.image_token_id}) but the "
                f"images give {n_tiles} tiles x {tile_len} features = {n_tiles * tile_len}; build "
                f"the inputs with the processor of this model (image_seq_len {tile_len})"
            )
        # Idefics3 types input_ids as required, yet handles None (it matches the embeddings).
        return super().inputs_merger(input_ids, inputs_embeds, image_hidden_states)  # type: ignore[arg-type]


class GeoChatForConditionalGeneration(Idefics3ForConditionalGeneration):
    """Idefics3's generation model on a `GeoChatModel`; loads Idefics3 and SmolVLM checkpoints."""

    config: GeoChatConfig

    def __init__(self, config: GeoChatConfig):
        # Idefics3ForConditionalGeneration.__init__ would build a whole Idefics3Model first.
        Idefics3PreTrainedModel.__init__(self, config)
        self.model = GeoChatModel(config)
        self.image_token_id = config.image_token_id
        text_config = sub_config(config.text_config)
        self.lm_head = nn.Linear(text_config.hidden_size, text_config.vocab_size, bias=False)
        self.vocab_size = text_config.vocab_size
        self.post_init()


__all__ = [
    "GeoChatConnector",
    "GeoChatForConditionalGeneration",
    "GeoChatModel",
    "ImageTokenMismatchError",
]
