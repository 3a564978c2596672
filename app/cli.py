"""The verbs of the ``app`` package, each a ``main(argv) -> int`` of the ``geochat.verbs`` group.

``geochat app`` (Gradio UI, ``app_main``), ``geochat api`` (REST API, ``api_main``) and
``geochat serve`` (vLLM, ``serve_main``). Each verb imports its own stack (Gradio, FastAPI and
uvicorn, vLLM) inside its function, so that one verb runs where the others' extras are missing.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import shlex
import socket
import sys
from pathlib import Path

# ----------------------------------------------------------------------------------------------
# geochat api
# ----------------------------------------------------------------------------------------------

API_KEY_ENV = "GEOCHAT_API_KEY"
LOOPBACK_NAMES = {"localhost"}


def _add_engine_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    """The options of the verbs that run the engine: which model, on what, and where to listen."""
    parser.add_argument(
        "--model",
        help="checkpoint folder or LoRA adapter folder (default: the bundled geochat-nano)",
    )
    parser.add_argument(
        "--base", help="base model of an adapter --model (default: the one it names)"
    )
    parser.add_argument("--backend", choices=("transformers", "vllm"), default="transformers")
    parser.add_argument("--vllm-url", help="a running vLLM server, e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--device", default="cpu", help="torch device of the embedded model")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--sam", metavar="PATH", help="SAM checkpoint to refine masks with")


def _api_parser() -> argparse.ArgumentParser:
    from geochat.app.api_service import ApiSettings

    defaults = ApiSettings()
    parser = argparse.ArgumentParser(
        prog="geochat api",
        description="Serve the REST API: POST /v1/ground, /v1/segment, /v1/chat/completions "
        "(OpenAI-compatible), GET /healthz; OpenAPI docs at /docs.",
    )
    _add_engine_arguments(parser, port=8000)
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"key clients send as 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}; "
        "none: no key needed)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        help="inference calls at once (default: 1 embedded, which uses every core for one "
        "call; 8 on vLLM, which batches)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=defaults.max_queue,
        help="requests that may wait for a free call; more are answered 503 with Retry-After, "
        "the seconds the queue takes to drain at the measured speed (default: %(default)s)",
    )
    parser.add_argument(
        "--queue-timeout",
        type=float,
        default=defaults.queue_timeout_s,
        help="longest wait in the queue in seconds, then 503 (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.inference_timeout_s,
        help="inference deadline in seconds, then 504 (default: %(default)s)",
    )
    parser.add_argument("--max-upload-mb", type=float, default=64.0, help="largest request body")
    parser.add_argument(
        "--max-scene-mb", type=float, default=2048.0, help="largest scene upload (POST /v1/scenes)"
    )
    parser.add_argument(
        "--jobs-dir",
        type=Path,
        help="folder of scene jobs and their results (default: a new temporary folder under "
        "the working directory)",
    )
    parser.add_argument(
        "--max-megapixels", type=float, default=50.0, help="largest image (decompression bombs)"
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    return parser


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port``; port 0 picks a free one.

    The verbs bind before their slow start (loading a model), so that a taken port is reported
    at once; a port left in TIME_WAIT by a previous run counts as free.

    Raises:
        OSError: When the port is taken or ``host`` is not an interface of this machine.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def listen_error(verb: str, host: str, port: int, error: OSError) -> str:
    """The one line a verb prints when it cannot listen on ``host:port``."""
    if error.errno == errno.EADDRINUSE:
        return (
            f"geochat {verb}: port {port} on {host} is already in use (another server?); "
            "stop it or choose another port with --port"
        )
    # Only the OS's reason: Gradio's own text points to launch(), not to this verb's flags.
    reason = f" ({error.strerror})" if error.strerror else ""
    where = f"{host}:{port}{reason}"
    return f"geochat {verb}: cannot listen on {where}; choose another --port or --host"


def api_main(argv: list[str] | None = None) -> int:
    """``geochat api``: serves the REST API on the embedded engine or a vLLM server."""
    parser = _api_parser()
    args = parser.parse_args(argv)
    if args.backend == "vllm" and not args.vllm_url:
        parser.error("--backend vllm needs --vllm-url")
    if not _is_loopback(args.host) and not args.api_key:
        print(
            f"geochat api: warning: listening on {args.host} without an API key; "
            f"set --api-key or ${API_KEY_ENV}",
            file=sys.stderr,
        )
    try:
        sock = listen(args.host, args.port)
    except OSError as error:
        print(listen_error("api", args.host, args.port, error), file=sys.stderr)
        return 1
    with sock:
        return _serve_api(args, sock)


def _serve_api(args: argparse.Namespace, sock: socket.socket) -> int:
    """Loads the model and serves the API on a bound socket until stopped."""
    import uvicorn

    from geochat.app.api import ApiSettings, create_app
    from geochat.app.api_service import DEFAULT_CONCURRENCY
    from geochat.engine import load
    from geochat.refine import Refiner

    settings = ApiSettings(
        api_key=args.api_key,
        max_body_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        max_concurrency=args.max_concurrency or DEFAULT_CONCURRENCY[args.backend],
        max_queue=args.max_queue,
        queue_timeout_s=args.queue_timeout,
        inference_timeout_s=args.timeout,
        max_scene_bytes=int(args.max_scene_mb * 2**20),
        jobs_dir=args.jobs_dir,
    )
    try:
        assistant = load(
            args.model,
            backend=args.backend,
            device=args.device,
            vllm_url=args.vllm_url,
            base=args.base,
        )
        refiner = Refiner.from_pretrained(args.sam, device=args.device) if args.sam else None
    except (OSError, ValueError) as error:
        print(f"geochat api: {error}", file=sys.stderr)
        return 1
    server = uvicorn.Server(
        uvicorn.Config(create_app(assistant, settings, refiner), log_level=args.log_level)
    )
    port = sock.getsockname()[1]
    print(
        f"geochat api: serving {assistant.model_name} ({args.backend}"
        f"{', SAM refinement' if refiner else ''}) on http://{args.host}:{port} "
        f"(OpenAPI docs at /docs)",
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    finally:
        assistant.close()
    return 0


# ----------------------------------------------------------------------------------------------
# geochat app
# ----------------------------------------------------------------------------------------------

APP_PORT = 7860  # Gradio's usual port


def _app_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geochat app",
        description="Open the web app (Gradio): upload a PNG, JPEG or GeoTIFF, chat about it, "
        "draw a region to ask about, see the answer's geometry and download it as GeoJSON.",
    )
    _add_engine_arguments(parser, port=APP_PORT)
    return parser


def app_main(argv: list[str] | None = None) -> int:
    """``geochat app``: the Gradio UI on the embedded engine or a vLLM server (never shared)."""
    parser = _app_parser()
    args = parser.parse_args(argv)
    if args.backend == "vllm" and not args.vllm_url:
        parser.error("--backend vllm needs --vllm-url")
    if not _is_loopback(args.host):
        print(
            f"geochat app: warning: listening on {args.host}: anyone who reaches it can use the "
            "model (the app has no login)",
            file=sys.stderr,
        )
    try:
        # Gradio binds the port itself, after the model has loaded: check it first.
        listen(args.host, args.port).close()
    except OSError as error:
        print(listen_error("app", args.host, args.port, error), file=sys.stderr)
        return 1
    from geochat.app.ui import build_ui
    from geochat.engine import load

    try:
        assistant = load(
            args.model,
            backend=args.backend,
            device=args.device,
            vllm_url=args.vllm_url,
            base=args.base,
            sam=args.sam,
        )
    except (OSError, ValueError) as error:
        print(f"geochat app: {error}", file=sys.stderr)
        return 1
    page = build_ui(assistant)
    try:
        # quiet: Gradio's banner suggests share=True, which this app never does.
        page.queue().launch(
            server_name=args.host,
            server_port=args.port,
            share=False,
            quiet=True,
            prevent_thread_lock=True,
        )
        print(
            f"geochat app: {assistant.model_name} ({args.backend}) on "
            f"http://{args.host}:{args.port} (Ctrl+C stops it)"
        )
        page.block_thread()
    except OSError as error:  # taken while the model loaded; Gradio's text names launch()
        print(listen_error("app", args.host, args.port, error), file=sys.stderr)
        return 1
    finally:
        assistant.close()
    return 0


# ----------------------------------------------------------------------------------------------
# geochat serve
# ----------------------------------------------------------------------------------------------

SERVE_PORT = 8001  # beside `geochat api` (8000), whose --vllm-url points here by default


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geochat serve",
        usage="geochat serve [options] [-- vLLM options]",
        description="Serve a geochat checkpoint and LoRA adapters with vLLM's OpenAI-compatible "
        "server (chat with images as data URLs, structured outputs). vLLM's own options go "
        "after '--', e.g. geochat serve --model M -- --enforce-eager. vLLM runs "
        "under $GEOCHAT_VLLM_PYTHON, else this Python if it has vLLM, else .venv-vllm/bin/python.",
    )
    parser.add_argument(
        "--model", help="checkpoint folder or hub name (default: the bundled geochat-nano)"
    )
    parser.add_argument("--name", help="model name clients ask for (default: the folder's name)")
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a peft LoRA adapter folder, served as model NAME (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=SERVE_PORT)
    parser.add_argument(
        "--max-model-len", type=int, help="longest prompt plus answer in tokens (default: model's)"
    )
    parser.add_argument(
        "--dtype",
        help="dtype of the weights and activations (default: float32 on CPUs, where vLLM's "
        "bfloat16 changes greedy answers; vLLM's 'auto' on GPUs)",
    )
    return parser


def _split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """Splits `argv` at the first `--` into our options and vLLM's."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def serve_main(argv: list[str] | None = None) -> int:
    """``geochat serve``: replaces this process with vLLM's OpenAI server and geochat's plugin."""
    ours, extra = _split_extra(sys.argv[1:] if argv is None else argv)
    args = _serve_parser().parse_args(ours)
    from geochat.app import vllm_launch

    try:
        if args.model is None:
            from geochat.engine import DEFAULT_MODEL

            if not DEFAULT_MODEL.is_dir():
                raise vllm_launch.ServeError(f"no bundled model at {DEFAULT_MODEL}; pass --model")
        model = args.model or str(DEFAULT_MODEL)
        vllm_launch.check_model(model)
        adapters = [vllm_launch.read_adapter(spec, model) for spec in args.lora]
        python = vllm_launch.find_vllm_python()
        content_format, dialect = vllm_launch.served_family(model)
        env = vllm_launch.server_environment(dict(os.environ), model, dialect)
        device = vllm_launch.check_plugin(python, env)
    except vllm_launch.ServeError as error:
        print(f"geochat serve: {error}", file=sys.stderr)
        return 1
    name = args.name or vllm_launch.served_name(model)
    command = vllm_launch.server_command(
        python,
        model,
        name=name,
        host=args.host,
        port=args.port,
        adapters=adapters,
        max_model_len=args.max_model_len,
        extra=extra,
        dtype=args.dtype or (vllm_launch.CPU_DTYPE if device == "cpu" else None),
        content_format=content_format,
    )
    served = ", ".join([name, *(adapter.name for adapter in adapters)])
    print(f"geochat serve: {served} at http://{args.host}:{args.port}/v1 (vLLM under {python})")
    print(f"geochat serve: {shlex.join(command)}", flush=True)
    os.execve(python, command, env)
