"""Configuration of the geochat model: an Idefics3 configuration with a choice of compressor."""

from huggingface_hub.dataclasses import strict
from transformers import Idefics3Config, Idefics3VisionConfig, PreTrainedConfig

COMPRESSORS = ("pixel_shuffle", "conv", "pool")


def sub_config(value: dict | PreTrainedConfig | None) -> PreTrainedConfig:
    """A sub-configuration (e.g. ``config.vision_config``) as ``__post_init__`` left it.

    transformers types sub-configurations by what the constructor takes (a dict, a config or
    None); once the config is built they are configs.

    Raises:
        TypeError: For a sub-configuration that was never built.
    """
    if not isinstance(value, PreTrainedConfig):
        raise TypeError(f"expected a built sub-configuration, got {type(value).__name__}")
    return value


@strict
class GeoChatConfig(Idefics3Config):
    """Idefics3 configuration whose connector reduces visual tokens with a chosen compressor.

    Every compressor merges `scale_factor` x `scale_factor` neighbouring patches into one token, so
    one tile gives `(image_size / patch_size)**2 / scale_factor**2` tokens to the language model.
    A plain Idefics3 (SmolVLM) configuration is the special case `compressor="pixel_shuffle"`.

    Args:
        compressor: `pixel_shuffle` (Idefics3's space-to-depth), `conv` (strided convolutions,
            SegEarth-R1 style; `scale_factor` must be a power of two) or `pool` (average pooling).
            `scale_factor` 1 keeps every patch.
    """

    model_type = "geochat"

    compressor: str = "pixel_shuffle"

    def __post_init__(self, **kwargs) -> None:
        if self.vision_config is None:
            # Idefics3's default encoder (224 px, 32 px patches) has a 7x7 grid that no factor
            # above 1 divides; default to SmolVLM's (512 px, 16 px patches, 32x32 grid).
            self.vision_config = Idefics3VisionConfig(
                hidden_size=768, num_attention_heads=12, image_size=512, patch_size=16
            )
        if self.text_config is None:
            # Idefics3's default Llama has 32000 tokens, fewer than its default image and pad
            # ids (transformers warns on every default config): size it like Idefics3-8B's.
            self.text_config = {
                "model_type": "llama",
                "vocab_size": 128_259,
                "rms_norm_eps": 1e-5,
                "pad_token_id": self.pad_token_id,
            }
        super().__post_init__(**kwargs)

    def validate_compressor(self) -> None:
        """Checks that the compressor exists and that the patch grid divides by its factor.

        Raises:
            ValueError: For an unknown compressor, a factor below 1, or a patch grid that the
                factor does not divide.
        """
        if self.compressor not in COMPRESSORS:
            raise ValueError(f"compressor must be one of {COMPRESSORS}, got {self.compressor!r}")
        if self.scale_factor < 1:
            raise ValueError(f"scale_factor must be >= 1, got {self.scale_factor}")
        if self.compressor == "conv" and self.scale_factor & (self.scale_factor - 1):
            raise ValueError(
                f"the conv compressor needs a power-of-two factor, got {self.scale_factor}"
            )
        grid, vision = self.patch_grid, sub_config(self.vision_config)
        if grid % self.scale_factor:
            raise ValueError(
                f"the patch grid of {grid}x{grid} (image_size {vision.image_size} / "
                f"patch_size {vision.patch_size}) is not divisible by scale_factor "
                f"{self.scale_factor}"
            )

    @property
    def patch_grid(self) -> int:
        """Patches per side of one tile seen by the vision encoder."""
        vision = sub_config(self.vision_config)
        return vision.image_size // vision.patch_size

    @property
    def image_seq_len(self) -> int:
        """Visual tokens that one tile gives the language model."""
        return (self.patch_grid // self.scale_factor) ** 2
