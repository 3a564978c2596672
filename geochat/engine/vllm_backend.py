"""The vLLM backend: a client of a vLLM (or any OpenAI-compatible) chat completions server.

The image goes in the first user turn as a PNG data URL, full resolution up to
:data:`MAX_UPLOAD_SIDE` pixels on its longest side; the server's processor resizes it anyway,
and the grammar's coordinates are fractions of each axis, so the answer maps back to the
original pixels whatever size was sent. `constrain="grounding"` sends
``{"structured_outputs": {"regex": ...}}`` with the regex of the dialect the model writes
(vLLM silently ignores the older ``guided_regex`` field). Streaming reads the server-sent events
of ``"stream": true``; token counts come from the server's ``usage``. Needs `httpx` (the `app`
extra).

Backbone families (Qwen2.5-VL, Qwen3-VL, LLaVA; `geochat.modeling.families`) write their own
coordinate dialects. The client finds the served model's family from the checkpoint folder
vLLM reports as the model's `root` in `/v1/models` (a LoRA adapter's: its base model's), when
that folder is readable here, and then speaks the family's dialect at the wire, as the
transformers backend does in process: regions in the messages are rewritten in it, LLaVA's
image is padded to a square first (as GeoChat trains), the structured-output regex is the
dialect's, and the answer is read back into pixels of the original image (Qwen2.5-VL's through
the size its processor resizes the sent image to). A server whose checkpoint folder is not
readable here is read in geochat's canonical grammar unless `dialect` names the model's.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image
from transformers import AutoConfig, ProcessorMixin

from geochat.engine.assistant import IMAGE_PLACE, Assistant, BackendError, GenerationStats, Request
from geochat.engine.grounding import grounding_regex
from geochat.grammar import DIALECTS
from geochat.modeling.families import (
    FRAME_DIALECTS,
    Family,
    dialect_for,
    family_of,
    to_dialect,
)
from geochat.modeling.families.base import square_image

DEFAULT_VLLM_URL = "http://127.0.0.1:8000/v1"
# Longer than any Idefics3 processor's resize target (at most 6 tiles of 512 px = 3072 px), so
# the server sees what it would see from the original; bigger images only cost upload time.
MAX_UPLOAD_SIDE = 4096
CONNECT_TIMEOUT_S = 10.0
PNG_COMPRESS_LEVEL = 1  # fast: the PNG crosses a local network once
SSE_DATA = "data:"
SSE_DONE = "[DONE]"


class VLLMAssistant(Assistant):
    """Talks to a running OpenAI-compatible server (`geochat serve`, vLLM)."""

    backend = "vllm"

    def __init__(
        self,
        url: str = DEFAULT_VLLM_URL,
        model_name: str | None = None,
        timeout_s: float = 600.0,
        dialect: str | None = None,
    ) -> None:
        """Connects to the server and checks that it serves the model.

        Args:
            url: The server's OpenAI base URL (`http://host:port/v1`); a URL without a path
                gets `/v1`.
            model_name: The served model (or LoRA adapter) name; None takes the first one the
                server lists.
            timeout_s: Longest wait for the server's next bytes during a generation.
            dialect: The dialect the model writes, a name in `geochat.grammar.DIALECTS`; None
                takes its family's when the served checkpoint folder is readable here, else
                the canonical grammar.

        Raises:
            BackendError: When the server cannot be reached, fails, or does not serve the model.
            ValueError: For an unknown dialect, or a served checkpoint no family supports.
        """
        if dialect is not None and dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; known: {sorted(DIALECTS)}")
        self.url = _base_url(url)
        self._client = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S)
        )
        entries = self._served_models()
        served = [entry["id"] for entry in entries]
        if model_name is None:
            if not served:
                raise BackendError(f"the server at {self.url} serves no model")
            model_name = served[0]
        elif model_name not in served:
            raise BackendError(f"the server at {self.url} serves {served}, not {model_name!r}")
        self.model_name = model_name
        folder = served_checkpoint(entries, model_name)
        self.family: Family | None = None
        self._processor: ProcessorMixin | None = None
        if folder is not None:
            self.family = family_of(folder)
            self._processor = self.family.load_processor(folder, AutoConfig.from_pretrained(folder))
        self.dialect = dialect or (self.family.dialect if self.family else "canonical")

    def close(self) -> None:
        """Closes the connection pool."""
        self._client.close()

    def _served_models(self) -> list[dict[str, Any]]:
        try:
            response = self._client.get("/models")
        except httpx.HTTPError as error:
            raise BackendError(f"cannot reach the model server at {self.url}: {error}") from error
        _check(response)
        return list(response.json().get("data", []))

    def _generate(self, request: Request) -> Generator[str, None, None]:
        if request.logits_processors:
            raise ValueError(
                "logits processors run inside transformers; the vllm backend cannot take them"
            )
        started = time.perf_counter()
        body = self._body(request, *self._native(request))
        request.stats.preprocess_s += time.perf_counter() - started
        if request.stream:
            return self._stream_events(body, request.stats)
        return self._complete(body, request.stats)

    def _native(self, request: Request) -> tuple[list[dict[str, str]], Image.Image | None]:
        """The messages and image to send, in the model's dialect; sets how to read the answer.

        Raises:
            BackendError: When the dialect is in pixels of the resized image (Qwen2.5-VL's) and
                the served checkpoint's processor is not readable here.
        """
        if request.image is None:
            return request.messages, None
        original = request.image.image
        image = upload_image(original)
        if self.dialect == "canonical":
            return request.messages, image
        frame = None
        if self.dialect in FRAME_DIALECTS:
            if self._processor is None or self.family is None:
                raise BackendError(
                    f"the {self.dialect!r} dialect is in pixels of the image the server's "
                    "processor resizes to, and the served checkpoint folder is not readable "
                    "here: run the client where the folder is"
                )
            frame = self.family.input_frame(self._processor, image)
        if self.family is not None and self._processor is not None and self.family.pads_to_square:
            image = square_image(self._processor, image)
        dialect = dialect_for(self.dialect, frame)
        request.dialect = dialect
        width, height = original.size
        messages = [
            {**m, "content": to_dialect(m["content"], width, height, dialect)}
            for m in request.messages
        ]
        return messages, image

    def _body(
        self, request: Request, messages: list[dict[str, str]], image: Image.Image | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": openai_messages(messages, image),
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "stream": request.stream,
        }
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        if request.constrain == "grounding":
            body["structured_outputs"] = {"regex": grounding_regex(self.dialect)}
        return body

    def _complete(self, body: dict[str, Any], stats: GenerationStats) -> Generator[str, None, None]:
        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as error:
            raise BackendError(f"the model server at {self.url} failed: {error}") from error
        _check(response)
        answer = _json_or_text(response)
        try:
            content = answer["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError) as error:
            raise BackendError(f"unexpected answer from {self.url}: {str(answer)[:500]}") from error
        _count(answer.get("usage"), stats)
        yield content or ""

    def _stream_events(
        self, body: dict[str, Any], stats: GenerationStats
    ) -> Generator[str, None, None]:
        started = time.perf_counter()
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.is_error:
                    response.read()
                    _check(response)
                for chunk in _events(response.iter_lines()):
                    _count(chunk.get("usage"), stats)
                    for choice in chunk.get("choices", []):
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            if stats.prefill_s is None:
                                stats.prefill_s = time.perf_counter() - started
                            yield delta
        except httpx.HTTPError as error:
            raise BackendError(f"the model server at {self.url} failed: {error}") from error


def served_checkpoint(entries: list[dict[str, Any]], name: str) -> Path | None:
    """The checkpoint folder a served model was loaded from, when it is readable here.

    vLLM lists each model's `root` (the folder or hub id it loaded) and, for a LoRA adapter,
    its base model as `parent`.

    Args:
        entries: The server's `/v1/models` data.
        name: The served model or adapter.

    Returns:
        The folder, or None when it is not a local folder with a `config.json` (another
        machine's path, a hub id, a server that does not say).
    """
    by_id = {entry.get("id"): entry for entry in entries}
    entry = by_id.get(name, {})
    entry = by_id.get(entry.get("parent"), entry)
    root = entry.get("root")
    if not isinstance(root, str) or not (Path(root) / "config.json").is_file():
        return None
    return Path(root)


def upload_image(image: Image.Image) -> Image.Image:
    """The image as it is sent: shrunk to `MAX_UPLOAD_SIDE` on its longest side if larger."""
    if max(image.size) > MAX_UPLOAD_SIDE:
        image = image.copy()
        image.thumbnail((MAX_UPLOAD_SIDE, MAX_UPLOAD_SIDE), Image.Resampling.LANCZOS)
    return image


def openai_messages(
    messages: list[dict[str, str]], image: Image.Image | None
) -> list[dict[str, Any]]:
    """OpenAI chat messages: the turn holding `<image>` becomes text and image_url parts."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        if image is None or IMAGE_PLACE not in message["content"]:
            converted.append(dict(message))
            continue
        before, _, after = message["content"].partition(IMAGE_PLACE)
        parts = [{"type": "image_url", "image_url": {"url": png_data_url(image)}}]
        if before:
            parts.insert(0, {"type": "text", "text": before})
        else:
            # vLLM's string content format joins the image placeholder and the text with a
            # newline itself: sending "<image>\n..." would give the model "<image>\n\n...".
            after = after.removeprefix("\n")
        if after:
            parts.append({"type": "text", "text": after})
        converted.append({"role": message["role"], "content": parts})
    return converted


def png_data_url(image: Image.Image) -> str:
    """`data:image/png;base64,...` of the image, shrunk to `MAX_UPLOAD_SIDE` if larger."""
    buffer = io.BytesIO()
    upload_image(image).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _base_url(url: str) -> str:
    url = url.rstrip("/")
    return url + "/v1" if not urlsplit(url).path else url


def _events(lines: Iterable[str]) -> Generator[dict[str, Any], None, None]:
    """The JSON payloads of server-sent events, up to `[DONE]`; raises on an error event."""
    for line in lines:
        if not line.startswith(SSE_DATA):
            continue
        data = line[len(SSE_DATA) :].strip()
        if data == SSE_DONE:
            return
        try:
            event = json.loads(data)
        except ValueError as error:
            raise BackendError(f"the model server sent a malformed event: {data[:200]}") from error
        if "error" in event:
            raise BackendError(f"the model server failed mid-stream: {_message(event)}")
        yield event


def _count(usage: dict[str, Any] | None, stats: GenerationStats) -> None:
    if usage:
        stats.prompt_tokens = usage.get("prompt_tokens", 0)
        stats.completion_tokens = usage.get("completion_tokens", 0)


def _check(response: httpx.Response) -> None:
    """Raises `BackendError` with the server's own message for an error status."""
    if response.is_error:
        raise BackendError(
            f"the model server answered {response.status_code} to {response.request.url}: "
            f"{_message(_json_or_text(response))}"
        )


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _message(payload: Any) -> str:
    """The message of an OpenAI (`{"error": {"message"}}`) or older vLLM error payload."""
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if "message" in payload:
            return str(payload["message"])
    return str(payload)
