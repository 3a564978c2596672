"""Model inputs from records: the chat template, image tokens, and labels on assistant turns only.

Each conversation is cut into pieces at the turn boundaries that the model's own chat template
draws (any backbone family, :mod:`geochat.modeling.families`): the prompt pieces (system and
user turns, with the image) are context, the answer pieces (what the assistant writes, through
its end-of-turn token: ``<end_of_utterance>``, ``<|im_end|>``, ``</s>``) are learned. Answer
pieces are tokenised on their own, exactly as the model will produce them when it generates.
Geometry in the answers is written in the family's dialect (:func:`target_messages`).

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
from transformers.processing_utils import ProcessorMixin

from geochat.modeling import conversation_to_messages
from geochat.modeling.families import Family, dialect_for, to_answer, to_dialect
from geochat.modeling.families.base import image_token
from geochat.modeling.families.batching import IGNORE_INDEX, SEQUENCE_PADDING, batch_inputs
from geochat.modeling.families.idefics3 import IDEFICS3

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
        extras: The processor's other outputs for the prompt, batch of one: the image tensors
            in the family's layout (``pixel_values``, ``pixel_attention_mask``,
            ``image_grid_thw``...) and per-token ones (``mm_token_type_ids [1, T]``); empty
            for a text-only conversation of a family without per-token extras.
    """

    input_ids: list[int]
    labels: list[int]
    extras: dict[str, torch.Tensor]


def target_messages(
    conversations: list[dict],
    image: Image.Image | None,
    processor: ProcessorMixin,
    family: Family,
    dialect: str | None = None,
) -> list[dict[str, str]]:
    """A record's conversation as chat messages, geometry written in the model's dialect.

    Records write geometry in the canonical grammar over the image's pixels; a family that
    reads and writes another dialect learns its own (Qwen2.5-VL: pixels of the image as its
    processor resizes it).

    Args:
        conversations: A record's ``[{"from": ..., "value": ...}, ...]``.
        image: The record's image (its size is the geometry's frame), or None.
        processor: The model's processor (the resized frame).
        family: The model's family.
        dialect: A dialect that replaces the family's; None keeps the family's.
    """
    messages = conversation_to_messages(conversations)
    name = dialect or family.dialect
    if image is None or name == "canonical":
        return messages
    target = dialect_for(name, family.input_frame(processor, image))
    # Answers are written as the family answers (Qwen: labels inside the JSON); questions keep
    # their words, with any region rewritten in place.
    write = {"assistant": to_answer}
    return [
        {
            **m,
            "content": write.get(m["role"], to_dialect)(
                m["content"], image.width, image.height, target
            ),
        }
        for m in messages
    ]


def conversation_pieces(
    processor: ProcessorMixin, messages: list[dict[str, str]], family: Family = IDEFICS3
) -> list[Piece]:
    """Cuts a rendered conversation into context and learned pieces at assistant turns.

    Args:
        processor: Its chat template renders the messages.
        messages: ``[{"role", "content": str}]`` (``<image>`` where the image goes).
        family: The model's family, whose renderer draws the turns as at inference.

    Returns:
        Pieces whose texts join to the full rendering.
    """
    render = family.chat_text
    full = render(processor, messages, add_generation_prompt=False)
    pieces, cursor = [], 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(render(processor, messages[:index], add_generation_prompt=True))
        end = len(render(processor, messages[: index + 1], add_generation_prompt=False))
        # The newline after the end-of-turn token is template glue, not something to learn.
        end -= len(full[:end]) - len(full[:end].rstrip("\n"))
        pieces += [Piece(full[cursor:start], False), Piece(full[start:end], True)]
        cursor = end
    if cursor < len(full):
        pieces.append(Piece(full[cursor:], False))
    return [piece for piece in pieces if piece.text]


def _cut_answer(processor: ProcessorMixin, text: str, budget: int) -> list[int]:
    """Token ids of the longest prefix of an answer that fits ``budget`` and ends on an atom."""
    encoding = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends = {match.end() for match in _ANSWER_ATOM.finditer(text)}
    keep = 0
    for count, (_, char_end) in enumerate(encoding["offset_mapping"][:budget], start=1):
        if char_end in ends:
            keep = count
    return encoding["input_ids"][:keep]


def encode_example(
    processor: ProcessorMixin,
    conversations: list[dict],
    image: Image.Image | None,
    max_length: int,
    family: Family = IDEFICS3,
    dialect: str | None = None,
) -> EncodedExample:
    """Tokenises one conversation with its image and labels its assistant turns.

    The prompt (every turn before the first answer, with the image) goes through the family's
    own input builder, exactly as the engine builds it at inference.

    Args:
        processor: The model's processor.
        conversations: A record's conversations; ``<image>`` may appear in the first piece only.
        image: The record's image, or None for a text-only conversation.
        max_length: Maximum number of tokens.
        family: The model's family (chat template, image processing, dialect).
        dialect: A dialect that replaces the family's; None keeps the family's.

    Returns:
        The encoded example.

    Raises:
        ExampleTooLongError: When the first piece (with the image's tokens) exceeds max_length.
        ValueError: When ``<image>`` appears after the first turn or without an image, or the
            conversation has no answer to learn.
    """
    messages = target_messages(conversations, image, processor, family, dialect)
    pieces = conversation_pieces(processor, messages, family)
    first, rest = pieces[0], pieces[1:]
    placeholder = image_token(processor)
    if any(placeholder in piece.text for piece in rest):
        raise ValueError("the <image> placeholder may only appear in the first user turn")
    if image is None and placeholder in first.text:
        raise ValueError("the conversation has an <image> placeholder but no image was given")
    answers = [index for index, m in enumerate(messages) if m["role"] == "assistant"]
    if not answers:
        raise ValueError("the conversation has no gpt turn to learn")
    prompt = dict(family.build_inputs(processor, image, messages[: answers[0]]))
    input_ids = prompt.pop("input_ids")[0].tolist()
    prompt.pop("attention_mask", None)
    if len(input_ids) > max_length:
        raise ExampleTooLongError(
            f"the prompt with its image needs {len(input_ids)} tokens, more than max_length "
            f"{max_length}: raise max_length or lower the processor's image size or tiles"
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
    return EncodedExample(input_ids, labels, _extend_token_extras(prompt, len(input_ids)))


def _extend_token_extras(extras: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """The prompt's extras, per-token ones (``mm_token_type_ids``) extended with 0 (text).

    Image tensors are kept as they are.
    """
    extended = {}
    for key, value in extras.items():
        if key in SEQUENCE_PADDING:
            value = torch.nn.functional.pad(value, (0, length - value.shape[1]), value=0)
        extended[key] = value
    return extended


class ChatCollator:
    """Batches records for the trainer: pads tokens and labels, stacks the images.

    The dataset yields ``{"record": dict, "image": PIL image | None}``. Images are stacked in
    the family's layout (:func:`geochat.modeling.families.batching.batch_inputs`).

    Args:
        processor: The model's processor.
        max_length: Maximum number of tokens of an example.
        family: The model's family.
        dialect: A dialect that replaces the family's; None keeps the family's.
    """

    def __init__(
        self,
        processor: ProcessorMixin,
        max_length: int = 2048,
        family: Family = IDEFICS3,
        dialect: str | None = None,
    ):
        self.processor = processor
        self.max_length = max_length
        self.family = family
        self.dialect = dialect
        tokenizer = processor.tokenizer
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Encodes and pads a list of dataset items into a batch of tensors."""
        encoded = [
            encode_example(
                self.processor,
                item["record"]["conversations"],
                item["image"],
                self.max_length,
                self.family,
                self.dialect,
            )
            for item in examples
        ]
        return pad_batch(encoded, self.pad_token_id)


def pad_batch(encoded: list[EncodedExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pads tokens and labels to the longest example; stacks the images by family."""
    rows = [
        {
            "input_ids": torch.tensor([example.input_ids]),
            "attention_mask": torch.ones((1, len(example.input_ids)), dtype=torch.long),
            "labels": torch.tensor([example.labels]),
            **example.extras,
        }
        for example in encoded
    ]
    return dict(batch_inputs(rows, pad_token_id, padding_side="right"))
