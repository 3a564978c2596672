"""Training losses beyond the model's own cross-entropy, for models trained from scratch.

**Coordinates** (``loss.coordinate_sigma``). With location tokens (one token per number 0..1000,
see `geochat.modeling.tokenizer`) a box coordinate is a 1,001-way classification, and plain
cross-entropy treats answering 181 for 180 like answering 900: the gradient says nothing about
which way the truth lies. Here the one-hot target of each coordinate inside a ``<box>`` or
``<quad>`` becomes a Gaussian over the coordinate tokens centred on the true value (label
smoothing along the number line), scored by its KL divergence. Every other answer token (words,
counts, tags) keeps plain cross-entropy. The target's mode is the true value, so greedy decoding
still aims at it.

**Patch positions** (``loss.position_weight``). A model trained from scratch may carry almost no
position in its visual tokens: in geochat-nano v2 a linear probe recovered neither the row nor
the column of a visual token from it (R^2 about 0), so its LLM could only guess where a token
lies from its place in the sequence, which gives the row (rows come one after the other) far
better than the column (its box centres correlate 0.7 with the truth in y, 0.4 in x). This term
asks the first 12 channels of each visual token (the connector's output, the LLM's input) to
hold a sine-cosine code of the token's column and row on its view's grid, in units of the
tokens' own RMS, so that the LLM can read a position where it reads the content.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from geochat.grammar.tags import COORDINATE_TAGS, GRAMMAR_SCALE
from geochat.training.collator import IGNORE_INDEX

# Frequencies of the patch-position code, in half periods across a view: coarse to fine.
POSITION_FREQUENCIES = (1, 2, 4)


class CoordinateLossError(ValueError):
    """The tokenizer cannot carry a coordinate loss (numbers or tags are not single tokens)."""


def _single_token_id(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise CoordinateLossError(
            f"the coordinate loss needs {text!r} as one token (location tokens, "
            f"model.tokenizer.loc_tokens); this tokenizer gives {len(ids)}"
        )
    return ids[0]


class CoordinateTargets:
    """Gaussian targets for the coordinates of the answers.

    Args:
        tokenizer: A tokenizer with one token per number 0..1000 and per geometry tag.
        sigma: Standard deviation of the target, in grammar units (1/1000 of the image side).

    Raises:
        CoordinateLossError: When a number or tag is more than one token.
        ValueError: When sigma is not positive.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, sigma: float):
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)
        ids = [_single_token_id(tokenizer, str(v)) for v in range(GRAMMAR_SCALE + 1)]
        self.coordinate_ids = torch.tensor(ids)  # [1001]: the token of each value
        vocab = max(max(ids), len(tokenizer)) + 1
        self.value_of_id = torch.full((vocab,), -1, dtype=torch.long)  # [V]: value or -1
        self.value_of_id[self.coordinate_ids] = torch.arange(GRAMMAR_SCALE + 1)
        tags = [[_single_token_id(tokenizer, tag) for tag in pair] for pair in COORDINATE_TAGS]
        self.open_ids = torch.tensor([opening for opening, _ in tags])
        self.close_ids = torch.tensor([closing for _, closing in tags])

    def coordinate_mask(self, targets: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` True where a target token is a number inside a box or quad tag.

        Args:
            targets: ``[B, T]`` token ids to predict, ``IGNORE_INDEX`` where not learned.
        """
        opens = torch.isin(targets, self.open_ids.to(targets.device)).long().cumsum(-1)
        closes = torch.isin(targets, self.close_ids.to(targets.device)).long().cumsum(-1)
        return (opens > closes) & torch.isin(targets, self.coordinate_ids.to(targets.device))

    def soft_targets(self, values: torch.Tensor) -> torch.Tensor:
        """``[K, 1001]``: a Gaussian over the coordinate values around each of ``values [K]``."""
        grid = torch.arange(GRAMMAR_SCALE + 1, device=values.device, dtype=torch.float32)
        weights = torch.exp(-0.5 * ((grid[None, :] - values[:, None].float()) / self.sigma) ** 2)
        return weights / weights.sum(-1, keepdim=True)

    def losses(self, log_probs: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """The KL divergence from each coordinate's Gaussian target.

        Args:
            log_probs: ``[K, V]`` predicted log-probabilities at coordinate positions.
            token_ids: ``[K]`` the true coordinate tokens.

        Returns:
            ``[K]`` losses; zero where the prediction is the target.
        """
        values = self.value_of_id.to(token_ids.device)[token_ids]
        coordinate_log_probs = log_probs[:, self.coordinate_ids.to(log_probs.device)]  # [K, 1001]
        target = self.soft_targets(values)  # [K, 1001]
        # KL divergence rather than cross-entropy: the same gradient, but zero at the optimum,
        # so the logged loss stays comparable with plain cross-entropy.
        return (torch.xlogy(target, target) - target * coordinate_log_probs).sum(-1)


def position_code(side: int, device: torch.device | None = None) -> torch.Tensor:
    """The code of each token's place on a ``side x side`` grid, row-major: ``[side**2, C]``.

    Column then row, each as the cosine and sine of ``pi * k * p`` for p in [0, 1] and each k
    of ``POSITION_FREQUENCIES``: a code whose dot product with another place's code peaks where
    the places agree, so that a linear readout (the LM head, over the coordinate tokens) can
    turn it into a peaked distribution over coordinates.
    """
    steps = torch.linspace(0.0, 1.0, side, device=device)
    rows, columns = torch.meshgrid(steps, steps, indexing="ij")  # [G, G] each
    frequencies = math.pi * torch.tensor(POSITION_FREQUENCIES, device=device, dtype=steps.dtype)
    parts = []
    for place in (columns.flatten(), rows.flatten()):
        phase = place[:, None] * frequencies  # [G*G, F]
        parts += [phase.cos(), phase.sin()]
    return torch.cat(parts, dim=-1)  # [G*G, 4F]


def patch_position_loss(image_hidden_states: torch.Tensor) -> torch.Tensor:
    """How far the first channels of each visual token are from the code of its place.

    Args:
        image_hidden_states: ``[views, G*G, D]`` the connector's output, G tokens a side.

    Returns:
        The mean squared error in units of the tokens' RMS (dimensionless, about 1 at first).
    """
    code = position_code(math.isqrt(image_hidden_states.shape[1]), image_hidden_states.device)
    features = image_hidden_states.float()
    unit = features.detach().pow(2).mean().sqrt().clamp(min=1e-6)
    return ((features[..., : code.shape[-1]] - unit * code) / unit).pow(2).mean()


class TrainingLoss:
    """The causal-LM loss with a recipe's options (a Trainer ``compute_loss_func``).

    Args:
        coordinates: Gaussian targets for coordinates, or None for plain cross-entropy.
        position_weight: Weight of :func:`patch_position_loss`; 0 leaves it out.
    """

    def __init__(self, coordinates: CoordinateTargets | None = None, position_weight: float = 0.0):
        if position_weight < 0:
            raise ValueError(f"position_weight must not be negative, got {position_weight}")
        self.coordinates = coordinates
        self.position_weight = float(position_weight)

    def __call__(
        self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """The mean loss per learned token (or its sum over ``num_items_in_batch``), plus terms.

        Args:
            outputs: The model output: ``logits`` ``[B, T, V]``, ``image_hidden_states``.
            labels: ``[B, T]`` aligned with the inputs (shifted here, as transformers does).
            num_items_in_batch: Learned tokens in the whole accumulated batch, from the Trainer.
        """
        logits = outputs.logits[:, :-1].float()  # [B, T-1, V]
        targets = labels[:, 1:]  # [B, T-1]
        learned = targets != IGNORE_INDEX
        log_probs = torch.log_softmax(logits[learned], dim=-1)  # [N, V]
        token_ids = targets[learned]
        losses = -log_probs.gather(-1, token_ids[:, None]).squeeze(-1)  # [N]
        if self.coordinates is not None:
            is_coordinate = self.coordinates.coordinate_mask(targets)[learned]
            if is_coordinate.any():
                soft = self.coordinates.losses(log_probs[is_coordinate], token_ids[is_coordinate])
                losses = losses.masked_scatter(is_coordinate, soft)
        tokens = learned.sum().clamp(min=1)
        count = tokens if num_items_in_batch is None else num_items_in_batch
        loss = losses.sum() / count
        images = getattr(outputs, "image_hidden_states", None)
        if self.position_weight and images is not None and len(images):
            # This batch's share of an accumulated batch, as for the token losses.
            share = tokens / count
            loss = loss + share * self.position_weight * patch_position_loss(images)
        return loss
