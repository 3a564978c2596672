"""Model inputs from records: the chat template, image tokens, and labels on assistant turns only.

Each conversation is cut into pieces at the turn boundaries that the chat template draws: the
prompt pieces (system and user turns, with the image) are context, the answer pieces (what the
assistant writes, through its ``<end_of_utterance>``) are learned. Answer pieces are tokenised on
their own, exactly as the model will produce them after ``Assistant:`` when it generates.

Truncation never cuts through an image's tokens (the piece with the image is kept whole or the
example is refused) nor through a geometry tag: a too-long answer is cut at the last tag or word
boundary that fits, and later turns are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from geochat.modeling import GeoChatProcessor, conversation_to_messages

IGNORE_INDEX = -100  # label of tokens that are not learned (PyTorch's cross-entropy default)
# A geometry tag with its content, or a run of non-space characters: the units an answer may
# be cut between.
_ANSWER_ATOM = re.compile(r"<(ref|box|quad|seg)>.*?</\1>|\S+", re.DOTALL)


class ExampleTooLongError(ValueError):
    """The prompt with its image alone does not fit in the maximum length."""


@dataclass
class Piece:
    """A span of the rendered conversation and whether the model learns it."""

    text: str
    learned: bool


@dataclass
class EncodedExample:
    """One conversation as token ids and labels, with its image tensors.

    Attributes:
        input_ids: Token ids ``[T]``.
        labels: ``[T]``, the token id where learned, else ``IGNORE_INDEX``.
        pixel_values: ``[tiles, 3, H, W]`` or None for a text-only conversation.
        pixel_attention_mask: ``[tiles, H, W]`` or None.
    """

    input_ids: list[int]
    labels: list[int]
    pixel_values: torch.Tensor | None
    pixel_attention_mask: torch.Tensor | None


def conversation_pieces(processor: GeoChatProcessor, conversations: list[dict]) -> list[Piece]:
    """Cuts a rendered conversation into context and learned pieces at assistant turns.

    Args:
        processor: Its chat template renders the messages.
        conversations: A record's ``[{"from": ..., "value": ...}, ...]``.

    Returns:
        Pieces whose texts join to the full rendering.
    """
    messages = conversation_to_messages(conversations)

    def render(turns: list[dict], prompt: bool) -> str:
        return processor.apply_chat_template(turns, add_generation_prompt=prompt, tokenize=False)

    full = render(messages, prompt=False)
    pieces, cursor = [], 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(render(messages[:index], prompt=True))
        end = len(render(messages[: index + 1], prompt=False))
        # The newline after <end_of_utterance> is template glue, not something to learn.
        end -= len(full[:end]) - len(full[:end].rstrip("\n"))
        pieces += [Piece(full[cursor:start], False), Piece(full[start:end], True)]
        cursor = end
    if cursor < len(full):
        pieces.append(Piece(full[cursor:], False))
    return [piece for piece in pieces if piece.text]


def _cut_answer(processor: GeoChatProcessor, text: str, budget: int) -> list[int]:
    """Token ids of the longest prefix of an answer that fits ``budget`` and ends on an atom."""
    encoding = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends = {match.end() for match in _ANSWER_ATOM.finditer(text)}
    keep = 0
    for count, (_, char_end) in enumerate(encoding["offset_mapping"][:budget], start=1):
        if char_end in ends:
            keep = count
    return encoding["input_ids"][:keep]


def encode_example(
    processor: GeoChatProcessor,
    conversations: list[dict],
    image: Image.Image | None,
    max_length: int,
) -> EncodedExample:
    """Tokenises one conversation with its image and labels its assistant turns.

    Args:
        processor: The model's processor.
        conversations: A record's conversations; ``<image>`` may appear in the first piece only.
        image: The record's image, or None for a text-only conversation.
        max_length: Maximum number of tokens.

    Returns:
        The encoded example.

    Raises:
        ExampleTooLongError: When the first piece (with the image's tokens) exceeds max_length.
        ValueError: When ``<image>`` appears after the first turn or without an image.
    """
    pieces = conversation_pieces(processor, conversations)
    first, rest = pieces[0], pieces[1:]
    if any(processor.image_token in piece.text for piece in rest):
        raise ValueError("the <image> placeholder may only appear in the first user turn")
    if image is not None:
        prompt = processor(images=[[image]], text=[first.text], return_tensors="pt")
        pixel_values = prompt["pixel_values"][0]  # [tiles, 3, H, W]
        pixel_attention_mask = prompt["pixel_attention_mask"][0]  # [tiles, H, W]
    else:
        if processor.image_token in first.text:
            raise ValueError("the conversation has an <image> placeholder but no image was given")
        prompt = processor.tokenizer([first.text], return_tensors="pt")
        pixel_values = pixel_attention_mask = None
    input_ids = prompt["input_ids"][0].tolist()
    if len(input_ids) > max_length:
        raise ExampleTooLongError(
            f"the prompt with its image needs {len(input_ids)} tokens, more than max_length "
            f"{max_length}: raise max_length or lower the processor's tiles per side"
        )
    labels = [IGNORE_INDEX] * len(input_ids)
    for piece in rest:
        budget = max_length - len(input_ids)
        ids = processor.tokenizer(piece.text, add_special_tokens=False)["input_ids"]
        if len(ids) > budget:
            # Context that does not fit ends the example; an answer keeps what fits whole.
            ids = _cut_answer(processor, piece.text, budget) if piece.learned else []
            if not ids:
                break
        input_ids += ids
        labels += ids if piece.learned else [IGNORE_INDEX] * len(ids)
    return EncodedExample(input_ids, labels, pixel_values, pixel_attention_mask)


class ChatCollator:
    """Batches records for the trainer: pads tokens, labels and image tiles.

    The dataset yields ``{"record": dict, "image": PIL image | None}``. Images with fewer tiles
    than the batch's largest are padded with all-zero tiles, which Idefics3 skips.
    """

    def __init__(self, processor: GeoChatProcessor, max_length: int = 2048):
        self.processor = processor
        self.max_length = max_length
        self.pad_token_id = processor.tokenizer.pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Encodes and pads a list of dataset items into a batch of tensors."""
        encoded = [
            encode_example(
                self.processor, item["record"]["conversations"], item["image"], self.max_length
            )
            for item in examples
        ]
        return pad_batch(encoded, self.pad_token_id)


def pad_batch(encoded: list[EncodedExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pads token sequences and zero-pads image tiles to the longest in the batch."""
    length = max(len(example.input_ids) for example in encoded)
    batch = {
        "input_ids": torch.full((len(encoded), length), pad_token_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(encoded), length), dtype=torch.long),
        "labels": torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long),
    }
    for row, example in enumerate(encoded):
        size = len(example.input_ids)
        batch["input_ids"][row, :size] = torch.tensor(example.input_ids)
        batch["attention_mask"][row, :size] = 1
        batch["labels"][row, :size] = torch.tensor(example.labels)
    with_images = [example for example in encoded if example.pixel_values is not None]
    if with_images:
        tiles = max(example.pixel_values.shape[0] for example in with_images)
        _, channels, height, width = with_images[0].pixel_values.shape
        # [B, tiles, 3, H, W]; rows without an image (or with fewer tiles) stay all zero.
        pixel_values = torch.zeros((len(encoded), tiles, channels, height, width))
        pixel_mask = torch.zeros((len(encoded), tiles, height, width), dtype=torch.bool)
        for row, example in enumerate(encoded):
            if example.pixel_values is not None:
                count = example.pixel_values.shape[0]
                pixel_values[row, :count] = example.pixel_values
                pixel_mask[row, :count] = example.pixel_attention_mask.bool()
        batch["pixel_values"] = pixel_values
        batch["pixel_attention_mask"] = pixel_mask
    return batch
