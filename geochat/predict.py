"""Batched answers of a model to records, through the engine, for evaluation at scale.

Each gpt turn of a record is one prompt: the reference conversation up to that turn, with the
record's image. Prompts go through the engine's batched path
(:meth:`geochat.engine.TransformersAssistant.chat_batch`), the one users run, so any backbone
family can be evaluated: its answers, read in its own dialect, are rewritten in geochat's
canonical grammar for scoring. They go back to their records in the form
:func:`geochat.metrics.score` reads: a string for a single-turn record, a list (one answer per
gpt turn) for ``multi_turn``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from geochat.engine import Reply, TransformersAssistant
from geochat.modeling.families import to_canonical
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


def canonical_answer(assistant: TransformersAssistant, reply: Reply) -> str:
    """The reply's text with its geometry in the canonical grammar (as the records write it)."""
    text = reply.text.strip()
    if assistant.backbone.dialect == "canonical" or reply.image_size is None:
        return text
    return to_canonical(text, reply.parsed.objects, *reply.image_size)


def predict_records(
    assistant: TransformersAssistant,
    records: Sequence[Record],
    jsonl_paths: Sequence[Path],
    batch_size: int = 16,
    max_new_tokens: int = 128,
    blank_images: bool = False,
) -> dict[str, str | list[str]]:
    """Answers every record greedily; returns ``{record id: answer}`` as ``geochat eval`` reads it.

    Args:
        assistant: The model behind the engine (``geochat.engine.load``).
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
        conversations = [
            (
                _open_image(records[p.record_index], jsonl_paths[p.record_index], blank_images),
                p.messages,
            )
            for p in batch
        ]
        replies = assistant.chat_batch(conversations, max_new_tokens=max_new_tokens)
        for prompt, reply in zip(batch, replies, strict=True):
            answers[(prompt.record_index, prompt.turn)] = canonical_answer(assistant, reply)
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
