"""ASGI middleware that `geochat serve` adds to vLLM's server (``--middleware``).

geochat's embedded API (`geochat api`) asks for grounded answers with ``"constrain":
"grounding"``; vLLM spells constraints ``"structured_outputs": {"regex": ...}`` and ignores
fields it does not know, so a client written for one server would silently get unconstrained
answers from the other. :class:`ConstrainField` makes vLLM read geochat's spelling: it turns
``constrain`` into ``structured_outputs`` with :data:`~geochat.engine.GROUNDING_REGEX`, and
answers 400 for a value it does not know or a ``structured_outputs`` that says otherwise
(:func:`geochat.engine.grounding.constraint_of`). For a backbone family that writes another
dialect (Qwen, LLaVA), `geochat serve` names it in ``$GEOCHAT_SERVED_DIALECT`` and the
constraint is that dialect's regex (:func:`geochat.engine.grounding.grounding_regex`).
"""

from __future__ import annotations

import json
import os

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geochat.app.vllm_launch import DIALECT_ENV
from geochat.engine.grounding import STRUCTURED_OUTPUTS, constraint_of, grounding_regex

COMPLETION_PATHS = ("/chat/completions", "/completions")


class ConstrainField:
    """Rewrites ``constrain`` in the JSON bodies of completion requests (see the module docs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.structured = {"regex": grounding_regex(os.environ.get(DIALECT_ENV, "canonical"))}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Passes every request on; completion requests with ``constrain`` rewritten."""
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith(COMPLETION_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            body = _rewritten(body, self.structured)
        except ValueError as error:
            problem = {"message": str(error), "type": "invalid_request_error", "code": 400}
            await JSONResponse({"error": problem}, 400)(scope, receive, send)
            return
        headers = MutableHeaders(raw=list(scope["headers"]))
        headers["content-length"] = str(len(body))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers.raw}, replay, send)


def _rewritten(body: bytes, structured: dict[str, str]) -> bytes:
    """The body with ``constrain`` written as ``structured``; others unchanged.

    Raises:
        ValueError: For a constraint that cannot be honoured (see ``constraint_of``).
    """
    try:
        parsed = json.loads(body)
    except ValueError:
        return body  # vLLM answers malformed JSON itself
    if not isinstance(parsed, dict) or "constrain" not in parsed:
        return body
    constrain = parsed.pop("constrain")
    given = parsed.get("structured_outputs")
    if constraint_of(constrain, STRUCTURED_OUTPUTS if given == structured else given):
        parsed["structured_outputs"] = structured
    return json.dumps(parsed).encode()
