"""What runs under the REST API: errors, request ids, the inference gate, a background server.

The engine is blocking (a forward pass holds a CPU core or the GPU for seconds), so the API never
calls it on the event loop. :class:`InferenceGate` runs it in worker threads:

- at most ``max_concurrency`` calls at once (one for the embedded CPU engine: torch already uses
  every core for one call, and a second one only halves the speed of both);
- requests beyond that wait in a queue of at most ``max_queue`` places, each for at most
  ``queue_timeout_s``; a full queue or a longer wait is answered 503 with ``Retry-After``, the
  seconds until the calls running and queued now should have finished, estimated from the
  measured duration of recent calls (:meth:`InferenceGate.drain_time_s`);
- a call that outlives its deadline is answered 504, and so told to stop (a cancel event that
  the API checks between tokens), as is a call whose client leaves. A Python thread cannot be
  killed: a call keeps its slot until it has actually stopped, so the gate never runs more than
  ``max_concurrency`` calls, whatever the clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import socket
import statistics
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("geochat.api")

T = TypeVar("T")

REQUEST_ID_HEADER = "x-request-id"
INTERNAL_ERROR = "internal server error; quote the request id to the server's operator"
SCHEMA_REF = "#/components/schemas/{model}"  # where OpenAPI keeps the schema of a model
# A client's own request id is kept when it is this tame (it ends up in logs and headers).
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Calls whose durations estimate the next one's: enough to smooth out one odd call, few enough
# to follow a change of load (longer prompts, a bigger image).
RECENT_CALLS = 16


class ApiError(Exception):
    """An error answered with its own status and message (both safe to show to the client).

    Attributes:
        status: HTTP status code.
        message: What went wrong and, where it helps, what to do.
        type: Machine-readable category (OpenAI's error ``type`` field).
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.headers = headers or {}


class BodyTooLargeError(HTTPException):
    """The request body is over the limit (413).

    An ``HTTPException``, so that FastAPI's body parsing passes it on instead of answering 400.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(413, f"the request body is {size:,} bytes or more; the limit is {limit:,}")


class ServerBusyError(ApiError):
    """Every inference slot is taken and the queue is full or was waited on too long (503)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(503, message, "server_busy", {"Retry-After": str(retry_after_s)})


class InferenceTimeoutError(ApiError):
    """Inference did not finish before its deadline (504)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(504, f"inference did not finish within {timeout_s:g} s", "timeout")


def error_body(status: int, message: str, type: str, request_id: str | None) -> dict[str, Any]:
    """The JSON body of every error: OpenAI's ``{"error": {...}}`` plus the request id."""
    return {"error": {"message": message, "type": type, "code": status, "request_id": request_id}}


def error_response(
    status: int,
    message: str,
    type: str,
    request_id: str | None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error as a JSON response."""
    return JSONResponse(error_body(status, message, type, request_id), status, headers=headers)


def request_id_of(scope: Scope) -> str | None:
    """The id :class:`RequestContextMiddleware` gave the request, or None outside it."""
    return scope.get("state", {}).get("request_id")


class RequestContextMiddleware:
    """Gives each request an id, limits the body's size, and hides internal errors.

    - The id is the client's ``X-Request-ID`` when it is short and plain, else a new uuid; it is
      stored in ``request.state.request_id`` and returned in the ``X-Request-ID`` header.
    - A declared ``Content-Length`` above ``max_body_bytes`` is answered 413 before anything is
      read; a body without one is counted as it is read, and reading past the limit raises
      :class:`BodyTooLargeError` (413).
    - ``path_limits`` gives some paths their own limit (scene uploads are larger than images).
    - An exception that no handler took is logged with its traceback and the request id, and the
      client gets a generic 500 with that id: never the exception's text.
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handles one ASGI connection (HTTP requests only; others pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = _request_id(headers.get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        started = False
        received = 0
        limit = self.path_limits.get(scope["path"], self.max_body_bytes)

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLargeError(received, limit)
            return message

        declared = _content_length(headers)
        if declared is not None and declared > limit:
            error = BodyTooLargeError(declared, limit)
            response = error_response(413, error.detail, "request_too_large", request_id)
            await response(scope, receive, send_with_id)
            return
        try:
            await self.app(scope, receive_within_limit, send_with_id)
        except Exception:
            logger.exception("request %s failed", request_id)
            if started:
                return  # the status is sent already; the client sees the stream cut
            response = error_response(500, INTERNAL_ERROR, "server_error", request_id)
            await response(scope, receive, send_with_id)


def _request_id(client_value: str | None) -> str:
    if client_value and _CLIENT_REQUEST_ID.fullmatch(client_value):
        return client_value
    return uuid.uuid4().hex


def _content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class _Failure:
    """An exception raised by the worker side of a stream, carried to the event loop."""

    error: Exception


_END = object()  # the worker side of a stream has finished


class InferenceGate:
    """Runs blocking calls in worker threads, bounded in number, queue and time.

    Create it inside the event loop that uses it (the app's lifespan does).
    """

    def __init__(self, max_concurrency: int, max_queue: int, queue_timeout_s: float) -> None:
        """Prepares the worker threads.

        Args:
            max_concurrency: Calls running at once (worker threads).
            max_queue: Requests allowed to wait for a slot; more are refused at once.
            queue_timeout_s: Longest wait for a slot before a request is refused.

        Raises:
            ValueError: For a concurrency below 1 or a negative queue or timeout.
        """
        if max_concurrency < 1 or max_queue < 0 or queue_timeout_s < 0:
            raise ValueError(
                f"need max_concurrency >= 1, max_queue >= 0 and queue_timeout_s >= 0, got "
                f"{max_concurrency}, {max_queue}, {queue_timeout_s}"
            )
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="geochat-infer")
        self._slots = asyncio.Semaphore(max_concurrency)
        self.running = 0
        self.waiting = 0
        self._started: dict[asyncio.Future[Any], float] = {}  # running call -> start time
        self._durations: deque[float] = deque(maxlen=RECENT_CALLS)  # of calls that succeeded

    def drain_time_s(self) -> float:
        """Estimated seconds until the calls running and queued now have all finished.

        Each call is expected to take the mean duration of the last :data:`RECENT_CALLS` calls
        that succeeded (a running one, what is left of it); the slots share the work. Before any
        call has finished, the longest-running call's time so far stands in, a lower bound.
        """
        now = time.monotonic()
        elapsed = [now - started for started in self._started.values()]
        if self._durations:
            per_call = statistics.fmean(self._durations)
        else:
            per_call = max(elapsed, default=0.0)
        left = sum(max(per_call - spent, 0.0) for spent in elapsed)
        return (left + self.waiting * per_call) / self.max_concurrency

    def retry_after_s(self) -> int:
        """Whole seconds for ``Retry-After``: the drain time, rounded up, at least 1."""
        return max(1, math.ceil(self.drain_time_s()))

    async def run(self, function: Callable[[threading.Event], T], timeout_s: float) -> T:
        """Runs ``function(cancel)`` in a worker thread and returns its result.

        ``cancel`` is set when the deadline passes or the client leaves: a function that checks
        it between steps (tokens) stops early and frees its slot; its result is dropped.

        Raises:
            ServerBusyError: No slot came free in time, or the queue is full.
            InferenceTimeoutError: The call took longer than ``timeout_s``.
            Exception: Whatever ``function`` raised.
        """
        await self._acquire()
        cancel = threading.Event()
        future = self._submit(lambda: function(cancel))
        try:
            # shield: a timed-out or abandoned request leaves the call to end in its own time.
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            cancel.set()
            raise InferenceTimeoutError(timeout_s) from None
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def stream(
        self, make_items: Callable[[], Iterator[T]], timeout_s: float
    ) -> AsyncGenerator[T, None]:
        """Iterates ``make_items()`` in a worker thread, passing each item to the event loop.

        The whole stream must end within ``timeout_s``. When the consumer stops early (the
        client left), the worker closes the iterator at its next item.

        Raises:
            ServerBusyError: No slot came free in time, or the queue is full.
            InferenceTimeoutError: The stream did not end within ``timeout_s``.
            Exception: Whatever the iterator raised.
        """
        await self._acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, item)

        self._submit(lambda: _produce(make_items, stop, put))
        deadline = loop.time() + timeout_s
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await queue.get()
                except TimeoutError:
                    raise InferenceTimeoutError(timeout_s) from None
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            stop.set()

    def close(self) -> None:
        """Drops queued calls and lets running ones finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _acquire(self) -> None:
        if self._slots.locked() and self.waiting >= self.max_queue:
            retry_after = self.retry_after_s()
            raise ServerBusyError(
                f"all {self.max_concurrency} inference slots are busy and {self.waiting} "
                f"requests are queued; retry in about {retry_after} s",
                retry_after,
            )
        self.waiting += 1
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await self._slots.acquire()
            return
        except TimeoutError:
            pass
        finally:
            self.waiting -= 1
        retry_after = self.retry_after_s()  # of the queue this request has left
        raise ServerBusyError(
            f"no inference slot came free within {self.queue_timeout_s:g} s; retry in about "
            f"{retry_after} s",
            retry_after,
        )

    def _submit(self, function: Callable[[], T]) -> asyncio.Future[T]:
        """Starts ``function`` on a worker; its slot is given back when it ends, not before."""
        self.running += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, function)
        self._started[future] = time.monotonic()
        future.add_done_callback(self._release)
        return future

    def _release(self, future: asyncio.Future[Any]) -> None:
        started = self._started.pop(future)
        self.running -= 1
        self._slots.release()
        # An abandoned call's error is retrieved, so that it is not "never retrieved"; a failed
        # call (a bad image fails in milliseconds) says nothing about how long answers take.
        if not future.cancelled() and future.exception() is None:
            self._durations.append(time.monotonic() - started)


def _produce(make_items: Callable[[], Iterator[Any]], stop: threading.Event, put: Callable) -> None:
    """The worker side of :meth:`InferenceGate.stream`: items, then a failure or the end."""
    try:
        iterator = make_items()
        try:
            for item in iterator:
                if stop.is_set():
                    break
                put(item)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
    except Exception as error:
        put(_Failure(error))
        raise  # the call failed: InferenceGate leaves its duration out of its estimate
    finally:
        put(_END)


@contextlib.contextmanager
def serve_in_background(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Runs ``app`` with uvicorn in a daemon thread; yields its base URL, stops it on exit.

    Args:
        app: The ASGI app.
        host: Interface to listen on.
        port: Port; 0 picks a free one.

    Raises:
        RuntimeError: If the server did not start within 30 s.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(3000):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise RuntimeError("uvicorn did not start within 30 s")
        bound_host, bound_port = sock.getsockname()[:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
