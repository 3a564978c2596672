"""``geochat chat``: asks a model one question about an image and saves what it locates.

Usage::

    geochat chat --image scene.tif "Where is the swimming pool?" [--model DIR]
        [--region x0,y0,x1,y1] [--draw out.png] [--geojson out.json] [--stream]
        [--max-new-tokens N] [--temperature T] [--constrain grounding]
        [--backend transformers|vllm] [--vllm-url URL] [--device cpu] [--max-tiles N]
        [--bands 4,3,2] [--preset sentinel2:cir] [--stretch percentile:2,98] [--fill auto]

The answer goes to stdout (token by token with ``--stream``); the objects found, parse
problems, token counts and the files written go to stderr, so that stdout holds only the
answer. ``--draw`` writes the image with the geometry drawn (format from the extension),
``--geojson`` the geometry as GeoJSON: WGS84 lon/lat (RFC 7946) for a georeferenced image, pixel
coordinates otherwise. Without ``--model`` the bundled geochat-nano model answers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

from geochat import imagery
from geochat.draw import draw_objects
from geochat.engine import BACKENDS, Assistant, BackendError, LoadedImage, Reply, load, load_image

REGION_SIZES = (4, 8)  # a box x0,y0,x1,y1 or a quad x1,y1,...,x4,y4


def _region(text: str) -> list[float]:
    try:
        values = [float(value) for value in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"a region is comma-separated numbers: {text!r}"
        ) from error
    if len(values) not in REGION_SIZES:
        raise argparse.ArgumentTypeError(
            f"a region is a box x0,y0,x1,y1 or a quad x1,y1,...,x4,y4 (pixels), got {text!r}"
        )
    return values


def _drawing_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in Image.registered_extensions():
        raise argparse.ArgumentTypeError(f"unknown image format for {text!r}; use .png or .jpg")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geochat chat",
        description="Ask a model about an image; print the answer, save its geometry.",
    )
    parser.add_argument("question", help="the question (one user turn)")
    parser.add_argument("--image", required=True, help="image file (PNG, JPEG, GeoTIFF ...)")
    parser.add_argument(
        "--model", help="checkpoint folder or hub id (vllm: served name); default geochat-nano"
    )
    parser.add_argument("--region", type=_region, help="pixel box x0,y0,x1,y1 or quad (8 values)")
    parser.add_argument("--draw", type=_drawing_path, help="write the image with geometry here")
    parser.add_argument("--geojson", type=Path, help="write the geometry as GeoJSON here")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="default 256")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    parser.add_argument("--stream", action="store_true", help="print the answer as it comes")
    parser.add_argument(
        "--constrain", choices=["grounding"], help="force the answer into the geometry grammar"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="transformers")
    parser.add_argument("--vllm-url", help="vLLM server (default http://127.0.0.1:8000/v1)")
    parser.add_argument("--device", default="cpu", help="transformers device (default cpu)")
    parser.add_argument("--max-tiles", type=int, help="tiles along the longest edge (1..6)")
    imagery.add_arguments(parser)  # default: the settings the model was trained with
    return parser


def _answer(assistant: Assistant, image: LoadedImage, args: argparse.Namespace) -> Reply:
    """Asks the question, printing the answer to stdout (as it comes with `--stream`)."""
    options = {
        "region": args.region,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "constrain": args.constrain,
    }
    messages = [{"role": "user", "content": args.question}]
    if not args.stream:
        reply = assistant.chat(image, messages, **options)
        print(reply.text)
        return reply
    for item in assistant.chat(image, messages, stream=True, **options):
        if isinstance(item, Reply):
            print()
            return item
        print(item, end="", flush=True)
    raise BackendError("the stream ended without a reply")


def _report(reply: Reply) -> None:
    """Prints the objects found, the parse problems and the token counts to stderr."""
    for obj in reply.parsed.objects:
        where = "" if obj.hbb is None else f" box {[round(v, 1) for v in obj.hbb]} px"
        print(f"  {obj.phrase or '(no phrase)'}: {obj.kind}{where}", file=sys.stderr)
    for problem in reply.parsed.problems:
        print(f"  problem: {problem}", file=sys.stderr)
    print(
        f"{reply.prompt_tokens} prompt + {reply.completion_tokens} completion tokens in "
        f"{reply.timings['total_s']:.2f} s ({reply.timings['tokens_per_s']:.1f} tokens/s)",
        file=sys.stderr,
    )


def _write_atomic(path: Path, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _save_outputs(reply: Reply, image: LoadedImage, args: argparse.Namespace) -> None:
    if args.draw is not None:
        buffer = io.BytesIO()
        drawn = draw_objects(image.image, reply.parsed.objects)
        drawn.save(buffer, format=Image.registered_extensions()[args.draw.suffix.lower()])
        _write_atomic(args.draw, buffer.getvalue())
        print(f"wrote the drawing to {args.draw}", file=sys.stderr)
    if args.geojson is not None:
        collection = reply.geojson if reply.geojson is not None else reply.pixel_geojson
        _write_atomic(args.geojson, json.dumps(collection, indent=1).encode("utf-8"))
        space = "lon/lat" if reply.geojson is not None else "pixel coordinates"
        print(f"wrote GeoJSON ({space}) to {args.geojson}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Runs ``geochat chat``; returns 0 on success, 2 for bad input or an unusable model."""
    args = _parser().parse_args(argv)
    try:
        imagery.from_arguments(args)  # bad options fail before the model loads
        assistant = load(
            args.model,
            backend=args.backend,
            device=args.device,
            vllm_url=args.vllm_url,
            max_tiles_per_side=args.max_tiles,
        )
        try:
            settings = imagery.from_arguments(args, assistant.imagery)
            image = load_image(args.image, imagery=settings)
            print(f"imagery: {image.imagery.describe()}", file=sys.stderr)
            reply = _answer(assistant, image, args)
        finally:
            assistant.close()
        _report(reply)
        _save_outputs(reply, image, args)
    except (OSError, ValueError, BackendError) as error:
        print(f"geochat chat: {error}", file=sys.stderr)
        return 2
    return 0
