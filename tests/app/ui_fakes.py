"""A scripted assistant and a launcher for the UI tests: only the model is fake.

`ScriptedAssistant` subclasses the engine's `Assistant`, so the engine's own `chat` reads the
image, prepares the messages, streams and builds the `Reply` (geometry, GeoJSON); the scripted
part is the text, streamed in fixed pieces.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from geochat.engine import Assistant
from geochat.engine.assistant import NativeInput, Request

# Two boxes named by one phrase and an oriented box: grammar coordinates (0-1000 per axis).
ANSWER = (
    "There are <ref>two ships</ref><box>[[100,200,300,400],[500,550,700,800]]</box> "
    "beside <ref>the pier</ref><quad>[[600,100,900,300,800,450,500,250]]</quad>."
)
PIECE_CHARS = 12  # characters per streamed piece


@dataclass
class Call:
    """What one chat call received."""

    image: Any
    region: Any
    messages: list[dict[str, str]] = field(default_factory=list)


class ScriptedAssistant(Assistant):
    """Answers every question with `answer`, streamed `PIECE_CHARS` characters at a time.

    For scenes it declares a `native_input` (tiles of that size at that GSD) and may take
    `delay` seconds per answer, so that a progress bar has time to show.
    """

    backend = "scripted"

    def __init__(
        self,
        answer: str = ANSWER,
        failure: Exception | None = None,
        native_input: NativeInput | None = None,
        delay: float = 0.0,
    ) -> None:
        self.model_name = "scripted"
        self.answer = answer
        self.failure = failure
        self.native_input = native_input
        self.delay = delay
        self.calls: list[Call] = []

    def chat(self, image: Any, messages: list[dict[str, str]], **options: Any) -> Any:
        self.calls.append(Call(image, options.get("region")))
        return super().chat(image, messages, **options)

    def close(self) -> None:
        pass

    def _generate(self, request: Request) -> Generator[str, None, None]:
        self.calls[-1].messages = request.messages
        return self._pieces()

    def _pieces(self) -> Iterator[str]:
        if self.failure is not None:
            raise self.failure
        time.sleep(self.delay)
        for start in range(0, len(self.answer), PIECE_CHARS):
            yield self.answer[start : start + PIECE_CHARS]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(page: gr.Blocks) -> Iterator[str]:
    """Launches a page on 127.0.0.1 in this process; yields its URL."""
    port = free_port()
    page.queue().launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        page.close()
