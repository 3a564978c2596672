"""``geochat scene``: asks a model about a whole scene of any size and maps every object.

Usage::

    geochat scene --image world.tif "Where are the buildings?" --out DIR [--model DIR]
        [--gsd 0.3] [--overlap 0.25] [--batch-size 8] [--merge-iou 0.5]
        [--max-new-tokens N] [--device cpu] [--bands 4,3,2] [--stretch ...] [--fill ...]

The scene (a GeoTIFF/COG, or a PNG/JPEG with ``--gsd``) is read in windows at the model's
native GSD, tiles go through the model in batches and their geometry is merged across tiles
(:mod:`geochat.engine.scene`). The answer for the whole scene goes to stdout; the plan, a
progress bar and the files written go to stderr. ``DIR`` receives ``answer.txt``,
``objects.json``, ``scene.geojson`` (EPSG:4326), ``scene.gpkg`` (the scene's CRS) and
``overview.png`` (:mod:`geochat.engine.scene_output`), each written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from geochat import imagery
from geochat.engine import BACKENDS, BackendError, load
from geochat.engine.scene import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_OVERLAP,
    MERGE_IOU,
    ScenePlan,
    run_scene,
)
from geochat.engine.scene_output import scene_files, write_scene


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geochat scene",
        description="Ask a model about a whole scene; write every object in map coordinates.",
    )
    parser.add_argument("question", help="the question, asked of every tile")
    parser.add_argument("--image", required=True, type=Path, help="GeoTIFF/COG, PNG or JPEG")
    parser.add_argument("--out", required=True, type=Path, help="folder of the output files")
    parser.add_argument("--model", help="checkpoint or training run folder; default geochat-nano")
    parser.add_argument(
        "--gsd", type=float, help="metres per pixel of an image without a georeference"
    )
    parser.add_argument(
        "--overlap", type=float, default=DEFAULT_OVERLAP, help="share of a tile (default 0.25)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="tiles per batch (default 8)"
    )
    parser.add_argument(
        "--merge-iou", type=float, default=MERGE_IOU, help="IoU of one object (default 0.5)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=256, help="default 256")
    parser.add_argument("--backend", choices=BACKENDS, default="transformers")
    parser.add_argument("--vllm-url", help="vLLM server (default http://127.0.0.1:8000/v1)")
    parser.add_argument("--device", default="cpu", help="transformers device (default cpu)")
    imagery.add_arguments(parser)  # default: the settings the model was trained with
    return parser


def main(argv: list[str] | None = None) -> int:
    """``geochat scene``: asks about a whole scene; writes its objects as GeoJSON and GeoPackage.

    Returns 0 on success, 2 for bad input or an unusable model.
    """
    args = _parser().parse_args(argv)
    bar: list[tqdm] = []

    def on_plan(plan: ScenePlan) -> None:
        for note in plan.notes:
            print(note, file=sys.stderr)
        bar.append(tqdm(total=len(plan.tiles), desc="tiles", unit="tile", file=sys.stderr))

    def on_tiles(done: int) -> None:
        bar[0].update(done)

    try:
        imagery.from_arguments(args)  # bad options fail before the model loads
        if not args.image.is_file():
            raise FileNotFoundError(f"no such image: {args.image}")
        assistant = load(
            args.model, backend=args.backend, device=args.device, vllm_url=args.vllm_url
        )
        try:
            settings = imagery.from_arguments(args, assistant.imagery)
            result = run_scene(
                assistant,
                args.image,
                args.question,
                gsd=args.gsd,
                overlap=args.overlap,
                batch_size=args.batch_size,
                merge_iou=args.merge_iou,
                settings=settings,
                max_new_tokens=args.max_new_tokens,
                progress=on_tiles,
                on_plan=on_plan,
            )
        finally:
            for progress in bar:
                progress.close()
            assistant.close()
        files = scene_files(result, args.image, settings, args.gsd)
        written = write_scene(result, args.out, files)
    except (OSError, ValueError, BackendError) as error:
        print(f"geochat scene: {error}", file=sys.stderr)
        return 2
    print(result.answer)
    print(
        f"{result.tiles_run} tiles answered, {result.tiles_skipped} skipped as no-data; "
        f"{len(result.problems)} parse problems",
        file=sys.stderr,
    )
    if result.georef is None:
        print(
            "no georeference: scene.geojson is in pixel coordinates, no GeoPackage", file=sys.stderr
        )
    print(f"wrote {', '.join(path.name for path in written)} to {args.out}", file=sys.stderr)
    return 0
