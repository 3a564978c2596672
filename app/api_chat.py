"""``POST /v1/chat/completions``: OpenAI's chat format on the geochat engine.

What an OpenAI client sends works as it is: ``messages`` with ``system``, ``user`` and
``assistant`` roles, string content or content parts (``text``, ``image_url``), ``max_tokens``
(or ``max_completion_tokens``), ``temperature``, ``stream`` and ``stream_options``; other OpenAI
fields are ignored. The engine takes one image, in the first user message, as a base64 data URL
(remote URLs are not fetched). geochat adds ``region`` and ``constrain`` to the request (vLLM's
``structured_outputs`` with geochat's grounding regex is read as ``constrain``) and
``geochat`` (the parsed geometry) to the completion and to the last streamed chunk.

Streaming answers with server-sent events ``data: <chat.completion.chunk>`` and a last
``data: [DONE]``. The response starts at the first token, so errors before it (a bad image, a
busy server) get their HTTP status; a later failure becomes a ``data: {"error": ...}`` event
before ``data: [DONE]``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from geochat import geometry
from geochat.app.api_runtime import INTERNAL_ERROR, SCHEMA_REF, ApiError, logger, request_id_of
from geochat.app.api_service import (
    ERROR_RESPONSES,
    IMAGE_PLACEHOLDER,
    ApiService,
    Service,
    check_api_key,
    decode_data_url,
    detected,
    image_info,
    read_json_object,
    usage,
    validated,
)
from geochat.app.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChunkChoice,
    ChunkDelta,
    ErrorResponse,
    FinishReason,
    GeochatExtras,
    ImagePart,
)
from geochat.engine import LoadedImage, Reply
from geochat.engine.grounding import constraint_of

DEFAULT_MAX_TOKENS = 256
CHUNK_REF = SCHEMA_REF.format(model="ChatCompletionChunk")
REQUEST_REF = SCHEMA_REF.format(model="ChatCompletionRequest")

router = APIRouter(prefix="/v1", dependencies=[Depends(check_api_key)], responses=ERROR_RESPONSES)


@dataclass(frozen=True)
class Conversation:
    """A chat request, checked and turned into the engine's arguments.

    Attributes:
        messages: ``[{"role", "content": str}]`` for ``Assistant.chat``.
        image: The image file's bytes, or None.
        options: The other keyword arguments of ``Assistant.chat``.
    """

    messages: list[dict[str, str]]
    image: bytes | None
    options: dict[str, Any]

    @property
    def max_new_tokens(self) -> int:
        """The most tokens the model may write."""
        return self.options["max_new_tokens"]


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,  # or a stream of chunks, which the responses below document
    # The route reads its body itself, after the API key check (FastAPI would parse it first).
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REQUEST_REF}}},
        }
    },
    responses={
        200: {
            "description": "A chat.completion; with stream=true, server-sent events "
            "`data: <chat.completion.chunk>`, then `data: [DONE]`.",
            "content": {"text/event-stream": {"schema": {"$ref": CHUNK_REF}}},
        }
    },
)
async def chat_completions(
    request: Request, service: Service
) -> ChatCompletion | StreamingResponse:
    """OpenAI-compatible chat; the image is a data URL in the first user message."""
    body = await read_chat_request(request)
    conversation = to_conversation(body, service)
    completion_id = f"chatcmpl-{request_id_of(request.scope)}"
    chunk = partial(
        ChatCompletionChunk,
        id=completion_id,
        created=int(time.time()),
        model=service.assistant.model_name,
    )
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return await _stream(request, service, conversation, chunk, include_usage)
    image, reply = await service.running_gate().run(
        partial(_complete, service, conversation), service.settings.inference_timeout_s
    )
    return ChatCompletion(
        id=completion_id,
        created=chunk.keywords["created"],
        model=service.assistant.model_name,
        choices=[
            ChatChoice(
                message=AssistantMessage(content=reply.text),
                finish_reason=_finish_reason(reply, conversation),
            )
        ],
        usage=usage(reply),
        geochat=_extras(image, reply),
    )


async def read_chat_request(request: Request) -> ChatCompletionRequest:
    """The chat request of a JSON body (415 for another type, 400 bad JSON, 422 bad fields)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            f"send application/json, not {media_type or 'a body without Content-Type'}",
            "unsupported_media_type",
        )
    return validated(ChatCompletionRequest, await read_json_object(request), "body", [])


def to_conversation(body: ChatCompletionRequest, service: ApiService) -> Conversation:
    """Checks a chat request and turns it into the engine's arguments.

    Raises:
        ApiError: 404 for another model; 400 for messages the engine cannot take, text or
            tokens over the limits, or a bad region.
    """
    if body.model is not None and body.model != service.assistant.model_name:
        raise ApiError(
            404,
            f"this server runs model {service.assistant.model_name!r}, not {body.model!r}",
            "not_found_error",
        )
    messages, image = _engine_messages(body.messages)
    service.check_text("".join(message["content"] for message in messages), "the conversation")
    region = None
    if body.region is not None:
        if image is None:
            raise ApiError(400, "a region needs an image: its pixels are the region's frame")
        region = _checked_region(body.region)
    requested = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    options = {
        "region": region,
        "max_new_tokens": service.check_new_tokens(requested),
        "temperature": body.temperature,
        "constrain": _constraint(body),
    }
    return Conversation(messages, image, options)


def _constraint(body: ChatCompletionRequest) -> str | None:
    """The constraint asked for in geochat's or vLLM's spelling (400 for others)."""
    try:
        return constraint_of(body.constrain, body.structured_outputs)
    except ValueError as error:
        raise ApiError(400, str(error)) from None


def _engine_messages(messages: list[ChatMessage]) -> tuple[list[dict[str, str]], bytes | None]:
    """OpenAI messages -> the engine's ``{"role", "content"}`` turns and the image's bytes."""
    if messages[-1].role != "user":
        raise ApiError(400, f"the messages must end with a user message, not {messages[-1].role}")
    first_user = next(index for index, message in enumerate(messages) if message.role == "user")
    turns, urls = [], []
    for index, message in enumerate(messages):
        text, image_urls = _split_content(message)
        if image_urls and index != first_user:
            raise ApiError(400, "the image must be in the first user message")
        if IMAGE_PLACEHOLDER in text:
            raise ApiError(400, f"text cannot contain {IMAGE_PLACEHOLDER!r}; send an image_url")
        urls += image_urls
        turns.append({"role": message.role, "content": text})
    if len(urls) > 1:
        raise ApiError(400, f"one image per conversation is supported, got {len(urls)}")
    return turns, decode_data_url(urls[0]) if urls else None


def _split_content(message: ChatMessage) -> tuple[str, list[str]]:
    """A message's text (parts joined by newlines) and its image URLs."""
    if isinstance(message.content, str):
        return message.content, []
    texts = [part.text for part in message.content if not isinstance(part, ImagePart)]
    urls = [part.image_url.url for part in message.content if isinstance(part, ImagePart)]
    return "\n".join(texts), urls


def _checked_region(region: list[float] | list[list[float]]) -> list[float] | list[list[float]]:
    """A region as a validated pixel box or quad (GeometryError -> 400)."""
    if len(region) == 4 and not any(isinstance(value, list) for value in region):
        return geometry.as_hbb(region).tolist()
    return geometry.as_quad(region).tolist()


def _image(service: ApiService, conversation: Conversation) -> LoadedImage | None:
    if conversation.image is None:
        return None
    return service.load(conversation.image, {})  # the model's imagery settings


def _complete(
    service: ApiService, conversation: Conversation, cancel: threading.Event
) -> tuple[LoadedImage | None, Reply]:
    """Answers a conversation in one piece (in a worker thread)."""
    image = _image(service, conversation)
    reply = service.answer(image, conversation.messages, cancel, **conversation.options)
    return image, reply


def _stream_items(service: ApiService, conversation: Conversation) -> Iterator[Any]:
    """The decoded image (or None) first, then the engine's text deltas and its Reply."""
    image = _image(service, conversation)
    yield image
    yield from service.assistant.chat(
        image, conversation.messages, stream=True, **conversation.options
    )


async def _stream(
    request: Request,
    service: ApiService,
    conversation: Conversation,
    chunk: Callable[..., ChatCompletionChunk],
    include_usage: bool,
) -> StreamingResponse:
    """Starts the stream, waits for the first token, then answers with server-sent events."""
    items = service.running_gate().stream(
        partial(_stream_items, service, conversation), service.settings.inference_timeout_s
    )
    image = await anext(items)
    first = await anext(items)
    events = _events(request, chunk, image, first, items, conversation, include_usage)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _events(
    request: Request,
    chunk: Callable[..., ChatCompletionChunk],
    image: LoadedImage | None,
    first: str | Reply,
    items: AsyncGenerator[str | Reply, None],
    conversation: Conversation,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The events of a completion: role, text deltas, finish, usage, then ``[DONE]``."""
    yield _event(chunk(choices=[ChunkChoice(delta=ChunkDelta(role="assistant", content=""))]))
    try:
        item = first
        while isinstance(item, str):
            yield _event(chunk(choices=[ChunkChoice(delta=ChunkDelta(content=item))]))
            item = await anext(items)
        finish = ChunkChoice(delta=ChunkDelta(), finish_reason=_finish_reason(item, conversation))
        yield _event(chunk(choices=[finish], geochat=_extras(image, item)))
        if include_usage:
            yield _event(chunk(choices=[], usage=usage(item)))
    except ApiError as error:
        yield _error_event(request, error.status, error.message, error.type)
    except Exception:
        logger.exception("stream of request %s failed", request_id_of(request.scope))
        yield _error_event(request, 500, INTERNAL_ERROR, "server_error")
    finally:
        await items.aclose()  # stops the generation when the client left mid-stream
    yield "data: [DONE]\n\n"


def _event(chunk: ChatCompletionChunk) -> str:
    return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"


def _error_event(request: Request, status: int, message: str, type: str) -> str:
    error = {"message": message, "type": type, "code": status}
    body = ErrorResponse.model_validate(
        {"error": {**error, "request_id": request_id_of(request.scope)}}
    )
    return f"data: {body.model_dump_json()}\n\n"


def _finish_reason(reply: Reply, conversation: Conversation) -> FinishReason:
    return "length" if reply.completion_tokens >= conversation.max_new_tokens else "stop"


def _extras(image: LoadedImage | None, reply: Reply) -> GeochatExtras:
    return GeochatExtras(
        objects=[detected(obj) for obj in reply.parsed.objects if obj.kind != "none"],
        problems=reply.parsed.problems,
        image=None if image is None else image_info(image),
        geojson=reply.geojson,
        pixel_geojson=reply.pixel_geojson,
    )
