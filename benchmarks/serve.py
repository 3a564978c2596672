"""Throughput and latency of the REST API (``geochat api``) under concurrent clients.

Run: ``python benchmarks/serve.py [--requests 32] [--concurrency 4] [--model DIR]
[--vllm-url http://127.0.0.1:8001/v1]``.

Starts uvicorn in this process on 127.0.0.1 with the embedded engine (the bundled geochat-nano
when it is installed, else a tiny random model) and sends ``--requests`` requests per endpoint
from ``--concurrency`` clients at once: ``/v1/ground`` (multipart PNG), ``/v1/chat/completions``
and the same streamed. With ``--vllm-url`` (a vLLM server on this machine: loopback only) it also
sends the chat requests straight to vLLM and through the API on the vLLM backend. Prints, per
row, requests per second, p50/p95 latency (and time to the first streamed event) and errors; the
first row, the same chat request on the engine itself one at a time, is the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import ipaddress
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from geochat.app.api import ApiSettings, create_app
from geochat.app.api_runtime import serve_in_background
from geochat.app.api_service import DEFAULT_CONCURRENCY
from geochat.engine import DEFAULT_MODEL, Assistant, load

IMAGE_SIDE = 256
EXPRESSION = "the largest ship"
QUESTION = "Describe the image."

# One request: returns whether it succeeded and the seconds to its first streamed event (or None).
Send = Callable[[httpx.AsyncClient], Awaitable[tuple[bool, float | None]]]


@dataclass
class Measured:
    """The requests of one row."""

    latencies: list[float] = field(default_factory=list)
    first_events: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0


def png_bytes() -> bytes:
    """A seeded random RGB PNG, ``IMAGE_SIDE`` pixels square."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def chat_body(model: str | None, max_tokens: int, stream: bool) -> dict:
    """An OpenAI chat request with the benchmark image as a data URL."""
    url = f"data:image/png;base64,{base64.b64encode(png_bytes()).decode()}"
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}]
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": stream,
    }


def ground_request(max_tokens: int) -> Send:
    files = {"image": ("scene.png", png_bytes(), "image/png")}
    data = {"expression": EXPRESSION, "max_new_tokens": str(max_tokens)}

    async def send(client: httpx.AsyncClient) -> tuple[bool, float | None]:
        response = await client.post("/v1/ground", files=files, data=data)
        return response.status_code == 200, None

    return send


def chat_request(model: str | None, max_tokens: int) -> Send:
    body = chat_body(model, max_tokens, stream=False)

    async def send(client: httpx.AsyncClient) -> tuple[bool, float | None]:
        response = await client.post("/v1/chat/completions", json=body)
        return response.status_code == 200, None

    return send


def stream_request(model: str | None, max_tokens: int) -> Send:
    body = chat_body(model, max_tokens, stream=True)

    async def send(client: httpx.AsyncClient) -> tuple[bool, float | None]:
        start = time.perf_counter()
        first, done = None, False
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if first is None and line.startswith("data: "):
                    first = time.perf_counter() - start
                done = done or line == "data: [DONE]"
                failed = line.startswith('data: {"error"')
                if failed:
                    return False, first
        return response.status_code == 200 and done, first

    return send


async def measure(base_url: str, send: Send, requests: int, concurrency: int) -> Measured:
    """Sends ``requests`` requests, at most ``concurrency`` at once, after one warm-up."""
    measured = Measured()
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
        await send(client)

        async def one() -> None:
            async with slots:
                start = time.perf_counter()
                try:
                    ok, first = await send(client)
                except httpx.HTTPError:
                    ok, first = False, None
                measured.latencies.append(time.perf_counter() - start)
                if first is not None:
                    measured.first_events.append(first)
                measured.errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(requests)))
        measured.wall_s = time.perf_counter() - start
    return measured


def engine_row(assistant: Assistant, args: argparse.Namespace) -> tuple:
    """The baseline: the same chat request on the engine itself, one at a time, no HTTP."""
    image, messages = png_bytes(), [{"role": "user", "content": QUESTION}]
    assistant.chat(image, messages, max_new_tokens=args.max_tokens)
    measured = Measured()
    start = time.perf_counter()
    for _ in range(args.requests):
        began = time.perf_counter()
        assistant.chat(image, messages, max_new_tokens=args.max_tokens)
        measured.latencies.append(time.perf_counter() - began)
    measured.wall_s = time.perf_counter() - start
    return ("engine, no HTTP", "Assistant.chat, one at a time", measured)


def tiny_model_folder(folder: Path) -> Path:
    """Saves a tiny random geochat model (the tests' default) into ``folder``."""
    from geochat.modeling import tiny

    model, processor = tiny()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise SystemExit(f"--vllm-url must be on this machine (loopback), got {url}")


def api_rows(assistant: Assistant, label: str, args: argparse.Namespace) -> list[tuple]:
    """Rows of the API in this process on ``assistant``: ground, chat, chat streamed."""
    slots = args.server_concurrency or DEFAULT_CONCURRENCY[assistant.backend]
    settings = ApiSettings(max_concurrency=slots, queue_timeout_s=600)
    label = f"{label} ({slots} slot{'s' if slots > 1 else ''})"
    requests = {
        "POST /v1/ground": ground_request(args.max_tokens),
        "POST /v1/chat/completions": chat_request(None, args.max_tokens),
        "  same, stream=true": stream_request(None, args.max_tokens),
    }
    rows = []
    with serve_in_background(create_app(assistant, settings)) as url:
        for endpoint, send in requests.items():
            measured = asyncio.run(measure(url, send, args.requests, args.concurrency))
            rows.append((label, endpoint, measured))
    return rows


def vllm_rows(vllm_url: str, model: str, args: argparse.Namespace) -> list[tuple]:
    """Rows of chat requests sent straight to the vLLM server."""
    root = vllm_url.rstrip("/").removesuffix("/v1")
    requests = {
        "POST /v1/chat/completions": chat_request(model, args.max_tokens),
        "  same, stream=true": stream_request(model, args.max_tokens),
    }
    return [
        ("vLLM server", endpoint, asyncio.run(measure(root, send, args.requests, args.concurrency)))
        for endpoint, send in requests.items()
    ]


def print_table(rows: list[tuple], args: argparse.Namespace, model: str) -> None:
    table = Table(
        title=f"{args.requests} requests per row, {args.concurrency} concurrent clients, "
        f"{args.max_tokens} new tokens"
    )
    for column in (
        "target",
        "endpoint",
        "req/s",
        "p50 ms",
        "p95 ms",
        "first event p50 ms",
        "errors",
    ):
        table.add_column(column, justify="left" if column in ("target", "endpoint") else "right")
    for target, endpoint, measured in rows:
        p50, p95 = np.percentile(measured.latencies, [50, 95]) * 1000
        first = (
            f"{np.percentile(measured.first_events, 50) * 1000:.0f}"
            if measured.first_events
            else "-"
        )
        table.add_row(
            target,
            endpoint,
            f"{len(measured.latencies) / measured.wall_s:.2f}",
            f"{p50:.0f}",
            f"{p95:.0f}",
            first,
            str(measured.errors),
        )
    console = Console(width=130)
    console.print(
        f"model {model}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs"
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per row")
    parser.add_argument("--concurrency", type=int, default=4, help="clients at once")
    parser.add_argument(
        "--server-concurrency", type=int, help="API inference slots (default: as geochat api)"
    )
    parser.add_argument("--max-tokens", type=int, default=16, help="new tokens per request")
    parser.add_argument("--model", help="checkpoint folder (default: geochat-nano or tiny random)")
    parser.add_argument("--device", default="cpu", help="torch device of the embedded engine")
    parser.add_argument("--vllm-url", help="a vLLM server's OpenAI base URL on this machine")
    parser.add_argument("--vllm-model", help="the model name vLLM serves (default: its first)")
    args = parser.parse_args()
    if args.vllm_url:
        check_loopback(args.vllm_url)
    with ExitStack() as stack:
        model = args.model
        if model is None and (DEFAULT_MODEL / "config.json").is_file():
            model = str(DEFAULT_MODEL)
        if model is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            model = str(tiny_model_folder(folder / "tiny-random-geochat"))
        embedded = load(model, device=args.device)
        rows = [engine_row(embedded, args), *api_rows(embedded, "API, embedded", args)]
        if args.vllm_url:
            remote = load(args.vllm_model, backend="vllm", vllm_url=args.vllm_url)
            rows += vllm_rows(args.vllm_url, remote.model_name, args)
            rows += api_rows(remote, "API on vLLM", args)
    print_table(rows, args, model)


if __name__ == "__main__":
    main()
