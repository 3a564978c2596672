"""``geochat chat``: asks a model one question about an image and saves what it locates.

Usage::

    geochat chat --image scene.tif "Where is the swimming pool?" [--model DIR]
        [--region x0,y0,x1,y1] [--draw out.png] [--geojson out.json] [--stream]
        [--max-new-tokens N] [--temperature T] [--constrain grounding]
        [--backend transformers|vllm] [--vllm-url URL] [--device cpu] [--max-tiles N]
        [--bands 4,3,2] [--preset sentinel2:cir] [--stretch percentile:2,98] [--fill auto]
        [--dialect NAME] [--sam PATH]

The answer goes to stdout as text, each geometry tag replaced by its phrase (the grammar's
plain text). A table of the objects found (phrase, kind, pixel box and, for a georeferenced
image, the lon/lat of the box's centre), parse problems, the model, token counts and the files
written go to stderr, so that stdout holds only the answer. ``--stream`` shows the model's raw
output on stderr as it is generated. ``--draw`` writes the image with the geometry drawn,
labelled, and a legend under it (format from the extension); ``--geojson`` the geometry as
GeoJSON: WGS84 lon/lat (RFC 7946) for a georeferenced image, pixel coordinates otherwise. Files
are written atomically with the usual permissions. ``--model`` takes a checkpoint folder or a
training run folder (its ``final/``, else its newest checkpoint); without it the bundled
geochat-nano model answers. With ``--sam`` (a SAM checkpoint) every text-mask, and every box
or quad of an answer to a question asking for a mask, is refined into a full-resolution mask,
which ``--draw`` and ``--geojson`` show in place of the model's geometry.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from PIL import Image

from geochat import imagery
from geochat.draw import KIND_NAMES, MASK_NAMES, draw_objects, legend_entries, legend_label
from geochat.engine import BACKENDS, Assistant, BackendError, LoadedImage, Reply, load, load_image
from geochat.fileio import atomic_write_bytes, atomic_write_text
from geochat.grammar import DIALECTS

REGION_SIZES = (4, 8)  # a box x0,y0,x1,y1 or a quad x1,y1,...,x4,y4
NOTHING_FOUND = "nothing found"


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
        "--model",
        help="checkpoint folder, training run folder or hub id (vllm: served name); "
        "default geochat-nano; or a LoRA adapter folder, loaded on its base",
    )
    parser.add_argument(
        "--base", help="base model of an adapter --model (default: the one it names)"
    )
    parser.add_argument("--region", type=_region, help="pixel box x0,y0,x1,y1 or quad (8 values)")
    parser.add_argument("--draw", type=_drawing_path, help="write the image with geometry here")
    parser.add_argument("--geojson", type=Path, help="write the geometry as GeoJSON here")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="default 256")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    parser.add_argument(
        "--stream", action="store_true", help="show the raw answer on stderr as it comes"
    )
    parser.add_argument(
        "--constrain", choices=["grounding"], help="force the answer into the geometry grammar"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="transformers")
    parser.add_argument("--vllm-url", help="vLLM server (default http://127.0.0.1:8000/v1)")
    parser.add_argument("--device", default="cpu", help="transformers device (default cpu)")
    parser.add_argument("--max-tiles", type=int, help="tiles along the longest edge (1..6)")
    imagery.add_arguments(parser)  # default: the settings the model was trained with
    parser.add_argument(
        "--dialect",
        choices=sorted(DIALECTS),
        help="coordinates the model writes (default: its family's, from config.json)",
    )
    parser.add_argument(
        "--sam", metavar="PATH", help="SAM checkpoint to refine masks with (folder, .pth, hub id)"
    )
    return parser


def _answer(assistant: Assistant, image: LoadedImage, args: argparse.Namespace) -> Reply:
    """Asks the question; with `--stream`, the raw answer goes to stderr as it comes.

    The text on stdout is printed after the whole answer is read, since a geometry tag can only
    be replaced by its phrase once it is complete.
    """
    options = {
        "region": args.region,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "constrain": args.constrain,
    }
    messages = [{"role": "user", "content": args.question}]
    if not args.stream:
        reply = assistant.chat(image, messages, **options)
        assert isinstance(reply, Reply)  # chat returns the whole reply unless it streams
        return reply
    stream = assistant.chat(image, messages, stream=True, **options)
    for item in stream:
        if isinstance(item, Reply):
            print(file=sys.stderr)
            return item
        print(item, end="", file=sys.stderr, flush=True)
    raise BackendError("the stream ended without a reply")


def answer_text(reply: Reply) -> str:
    """The answer to print: its text with each geometry tag replaced by its phrase.

    An answer that is only geometry reads as the legend (``unnamed (2 boxes)``), or
    :data:`NOTHING_FOUND` for a bare ``<none>``.
    """
    if reply.parsed.text:
        return reply.parsed.text
    entries = legend_entries(reply.parsed.objects)
    if entries:
        return "; ".join(text for _, text in entries)
    return NOTHING_FOUND if reply.parsed.objects else ""


def object_table(reply: Reply, image: LoadedImage) -> list[str]:
    """One aligned line per object: number, phrase, kind, pixel box, lon/lat of its centre.

    The lon/lat column is there for a georeferenced image only.
    """
    header = ["#", "phrase", "kind", "box x0,y0,x1,y1 (px)"]
    if image.georef is not None:
        header.append("centre lon,lat")
    rows = [header]
    for number, obj in enumerate(reply.parsed.objects, start=1):
        if obj.hbb is None:
            rows.append([str(number), legend_label(obj), NOTHING_FOUND])
            continue
        kind = KIND_NAMES.get(obj.kind, MASK_NAMES)[0]
        row = [str(number), legend_label(obj), kind, ",".join(f"{v:.0f}" for v in obj.hbb)]
        if image.georef is not None:
            centre = [(obj.hbb[0] + obj.hbb[2]) / 2, (obj.hbb[1] + obj.hbb[3]) / 2]
            lon, lat = image.georef.pixel_to_lonlat(centre)
            row.append(f"{lon:.6f},{lat:.6f}")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(header))]
    # strict=False: a "nothing found" row stops after its kind.
    return [
        "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)).rstrip()
        for row in rows
    ]


def _report(reply: Reply, image: LoadedImage, model_name: str) -> None:
    """Prints the objects found, the parse problems, the model and token counts to stderr."""
    if reply.parsed.objects:
        print("\n".join(object_table(reply, image)), file=sys.stderr)
    for problem in reply.parsed.problems:
        print(f"problem: {problem}", file=sys.stderr)
    refined = [number for number, sam in enumerate(reply.refined, start=1) if sam is not None]
    if refined:
        print(f"SAM refined objects {', '.join(map(str, refined))}", file=sys.stderr)
    print(
        f"{model_name}: {reply.prompt_tokens} prompt + {reply.completion_tokens} completion "
        f"tokens in {reply.timings['total_s']:.2f} s "
        f"({reply.timings['tokens_per_s']:.1f} tokens/s)",
        file=sys.stderr,
    )


def _save_outputs(reply: Reply, image: LoadedImage, args: argparse.Namespace) -> None:
    if args.draw is not None:
        buffer = io.BytesIO()
        drawn = draw_objects(image.image, reply.refined_objects())
        drawn.save(buffer, format=Image.registered_extensions()[args.draw.suffix.lower()])
        atomic_write_bytes(args.draw, buffer.getvalue())
        print(f"wrote the drawing to {args.draw}", file=sys.stderr)
    if args.geojson is not None:
        collection = reply.to_geojson()
        atomic_write_text(args.geojson, json.dumps(collection, indent=1))
        space = "lon/lat" if reply.geojson is not None else "pixel coordinates"
        print(f"wrote GeoJSON ({space}) to {args.geojson}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``geochat chat``: asks a model about an image; prints the answer and what it locates.

    Returns 0 on success, 2 for bad input or an unusable model.
    """
    args = _parser().parse_args(argv)
    try:
        imagery.from_arguments(args)  # bad options fail before the model loads
        assistant = load(
            args.model,
            backend=args.backend,
            device=args.device,
            vllm_url=args.vllm_url,
            max_tiles_per_side=args.max_tiles,
            dialect=args.dialect,
            base=args.base,
            sam=args.sam,
        )
        try:
            settings = imagery.from_arguments(args, assistant.imagery)
            image = load_image(args.image, imagery=settings)
            if image.imagery is not None:
                print(f"imagery: {image.imagery.describe()}", file=sys.stderr)
            reply = _answer(assistant, image, args)
        finally:
            assistant.close()
        print(answer_text(reply))
        _report(reply, image, assistant.model_name)
        _save_outputs(reply, image, args)
    except (OSError, ValueError, BackendError) as error:
        print(f"geochat chat: {error}", file=sys.stderr)
        return 2
    return 0
