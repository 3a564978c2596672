"""Batched answers of a model to records, for evaluation at scale.

Each gpt turn of a record is one prompt: the reference conversation up to that turn, with the
record's image. Prompts are generated greedily in batches (left padding), and the answers go
back to their records in the form :mod:`geochat.commands.eval` scores: a string for a
single-turn record, a list (one answer per gpt turn) for ``multi_turn``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from geochat.modeling import GeoChatForConditionalGeneration, GeoChatProcessor
from geochat.modeling.processing import conversation_to_messages
from geochat.records import Record, image_path

BLANK_GREY = (128, 128, 128)  # the image-ablation input: same size, no content


@dataclass
class Prompt:
    """One gpt turn to answer: the record, which turn, and the messages before it."""

    record_index: int
    turn: int
    messages: list[dict[str, str]]


def record_prompts(records: Sequence[Record]) -> Iterator[Prompt]:
    """Yields a prompt per gpt turn (only the first for tasks other than ``multi_turn``)."""
    for index, record in enumerate(records):
        messages = conversation_to_messages(record["conversations"])
        answers = [k for k, message in enumerate(messages) if message["role"] == "assistant"]
        if record["task"] != "multi_turn":
            answers = answers[:1]
        for turn, position in enumerate(answers):
            yield Prompt(index, turn, messages[:position])


def _open_image(record: Record, jsonl_path: Path, blank: bool) -> Image.Image:
    with Image.open(image_path(record, jsonl_path)) as file:
        image = file.convert("RGB")
    return Image.new("RGB", image.size, BLANK_GREY) if blank else image


@torch.inference_mode()
def generate_batch(
    model: GeoChatForConditionalGeneration,
    processor: GeoChatProcessor,
    conversations: list[list[dict[str, str]]],
    images: list[Image.Image],
    max_new_tokens: int,
) -> list[str]:
    """Greedy answers to a batch of conversations, each with one image."""
    texts = [
        processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        for messages in conversations
    ]
    processor.tokenizer.padding_side = "left"  # generation continues every row at its end
    inputs = processor(
        images=[[image] for image in images], text=texts, padding=True, return_tensors="pt"
    ).to(model.device)
    # transformers types generate's self as a protocol that its models' read-only device and
    # dtype properties do not satisfy.
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)  # type: ignore[misc]
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]


def predict_records(
    model: GeoChatForConditionalGeneration,
    processor: GeoChatProcessor,
    records: Sequence[Record],
    jsonl_paths: Sequence[Path],
    batch_size: int = 16,
    max_new_tokens: int = 128,
    blank_images: bool = False,
) -> dict[str, str | list[str]]:
    """Answers every record; returns ``{record id: answer}`` as ``geochat eval`` reads it.

    Args:
        model: The model (eval mode).
        processor: Its processor.
        records: The records.
        jsonl_paths: For each record, the JSONL file it came from (its image path is relative).
        batch_size: Prompts generated together.
        max_new_tokens: Longest answer.
        blank_images: Replace every image by a grey one of the same size (image ablation).
    """
    prompts = list(record_prompts(records))
    answers: dict[tuple[int, int], str] = {}
    progress = tqdm(total=len(prompts), desc="answering", unit="prompt", disable=None)
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        images = [
            _open_image(records[p.record_index], jsonl_paths[p.record_index], blank_images)
            for p in batch
        ]
        texts = generate_batch(
            model, processor, [p.messages for p in batch], images, max_new_tokens
        )
        answers.update({(p.record_index, p.turn): t for p, t in zip(batch, texts, strict=True)})
        progress.update(len(batch))
    progress.close()
    predictions: dict[str, str | list[str]] = {}
    for prompt in prompts:
        record = records[prompt.record_index]
        answer = answers[(prompt.record_index, prompt.turn)]
        if record["task"] == "multi_turn":
            turns = predictions.setdefault(record["id"], [])
            assert isinstance(turns, list)  # a multi-turn record's answers are a list
            turns.append(answer)
        else:
            predictions[record["id"]] = answer
    return predictions
