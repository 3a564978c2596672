"""Visual-token compressors: the first half of the connector between vision encoder and LLM.

Each compressor takes the patch sequence of square tiles, `[N, G*G, D]` (G patches per side), and
merges every r x r block of neighbouring patches into one token: `[N, (G/r)**2, out_dim]`.
The linear projector after it maps `out_dim` to the LLM width.
"""

import math

import torch
from torch import nn


def _grid_side(tokens: torch.Tensor, factor: int) -> int:
    """Side of the square patch grid of `tokens` `[N, S, D]`, checked to divide by `factor`."""
    if tokens.dim() != 3:
        raise ValueError(f"expected visual tokens shaped [N, S, D], got {tuple(tokens.shape)}")
    side = math.isqrt(tokens.shape[1])
    if side * side != tokens.shape[1]:
        raise ValueError(f"{tokens.shape[1]} visual tokens do not form a square grid")
    if side % factor:
        raise ValueError(f"a {side}x{side} patch grid is not divisible by the factor {factor}")
    return side


class PixelShuffle(nn.Module):
    """Space-to-depth as in Idefics3: each r x r block becomes one token with r*r*D channels.

    The channel order matches `Idefics3Connector.pixel_shuffle`, so Idefics3 and SmolVLM
    projector weights apply unchanged. Idefics3: https://arxiv.org/abs/2408.12637
    """

    def __init__(self, dim: int, factor: int):
        super().__init__()
        self.factor = factor
        self.out_dim = dim * factor**2

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Merges r x r patch blocks: `[N, G*G, D]` -> `[N, (G/r)**2, r*r*D]`."""
        side, r = _grid_side(tokens, self.factor), self.factor
        n, _, dim = tokens.shape
        x = tokens.reshape(n, side, side // r, dim * r)  # [N, rows G, cols G/r, rD]
        x = x.transpose(1, 2)  # [N, cols G/r, rows G, rD]
        x = x.reshape(n, side // r, side // r, dim * r * r)  # [N, cols G/r, rows G/r, rrD]
        x = x.transpose(1, 2)  # [N, rows G/r, cols G/r, rrD]
        return x.reshape(n, (side // r) ** 2, dim * r * r)


class _GridCompressor(nn.Module):
    """Base of compressors that run 2-D layers over the patch grid, `[N, D, G, G]`."""

    def __init__(self, dim: int, factor: int):
        super().__init__()
        self.factor = factor
        self.out_dim = dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Reduces the grid: `[N, G*G, D]` -> `[N, (G/r)**2, D]`."""
        side = _grid_side(tokens, self.factor)
        n, _, dim = tokens.shape
        grid = tokens.transpose(1, 2).reshape(n, dim, side, side)  # [N, D, G, G]
        grid = self.reduce(grid)  # [N, D, G/r, G/r]
        return grid.flatten(2).transpose(1, 2)  # [N, (G/r)**2, D]

    def reduce(self, grid: torch.Tensor) -> torch.Tensor:
        """Maps `[N, D, G, G]` to `[N, D, G/r, G/r]`."""
        raise NotImplementedError


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a `[N, D, H, W]` grid.

    The class name holds "LayerNorm" so that transformers' weight initialisation recognises it.
    """

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """Normalises each position's channel vector."""
        return super().forward(grid.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvCompressor(_GridCompressor):
    """Strided convolutions as in SegEarth-R1's connector, for a power-of-two r.

    log2(r) stages of a 3x3 stride-2 convolution and a LayerNorm, each halving the grid side.
    SegEarth-R1: https://arxiv.org/abs/2504.09644
    """

    def __init__(self, dim: int, factor: int):
        super().__init__(dim, factor)
        if factor & (factor - 1):
            raise ValueError(f"the conv compressor needs a power-of-two factor, got {factor}")
        stages: list[nn.Module] = []
        for _ in range(factor.bit_length() - 1):  # log2(r) halvings
            stages.append(nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1))
            stages.append(ChannelLayerNorm(dim))
        self.stages = nn.Sequential(*stages)

    def reduce(self, grid: torch.Tensor) -> torch.Tensor:
        """Halves the grid side log2(r) times: `[N, D, G, G]` -> `[N, D, G/r, G/r]`."""
        return self.stages(grid)


class PoolCompressor(_GridCompressor):
    """Average pooling over r x r blocks: no parameters, the channel width stays D."""

    def reduce(self, grid: torch.Tensor) -> torch.Tensor:
        """Averages r x r blocks: `[N, D, G, G]` -> `[N, D, G/r, G/r]`."""
        return nn.functional.avg_pool2d(grid, self.factor)


def build_compressor(name: str, dim: int, factor: int) -> PixelShuffle | _GridCompressor:
    """Builds the compressor `name` for `dim`-channel patches and an r = `factor` reduction.

    Args:
        name: `pixel_shuffle`, `conv` or `pool`.
        dim: Channels of the vision encoder's output.
        factor: r, patches merged per side; the token count falls by r*r.

    Returns:
        The module; its `out_dim` is the channel width it outputs.

    Raises:
        ValueError: For an unknown name.
    """
    classes: dict[str, type[PixelShuffle | _GridCompressor]] = {
        "pixel_shuffle": PixelShuffle,
        "conv": ConvCompressor,
        "pool": PoolCompressor,
    }
    if name not in classes:
        raise ValueError(f"unknown compressor {name!r}; choose one of {sorted(classes)}")
    return classes[name](dim, factor)
