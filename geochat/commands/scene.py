"""``geochat scene``: asks a model about whole scenes of any size and maps every object.

Usage::

    geochat scene --image world.tif [--image more.tif | --image FOLDER ...]
        "Where are the buildings?" --out DIR [--model DIR]
        [--engine local|ray] [--workers N] [--ray-address ADDR]
        [--gsd 0.3] [--overlap 0.25] [--batch-size 8] [--merge-iou 0.5]
        [--max-new-tokens N] [--gdal-cache-mb 256] [--device cpu]
        [--bands 4,3,2] [--stretch ...] [--fill ...] [--sam PATH]

A scene (a GeoTIFF/COG, or a PNG/JPEG with ``--gsd``) is read in windows at the model's native
GSD, tiles go through the model in batches and their geometry is merged across tiles
(:mod:`geochat.engine.scene`). The answer for the whole scene goes to stdout; the plan, a
progress bar and the files written go to stderr. ``DIR`` receives ``answer.txt``,
``objects.json``, ``scene.geojson`` (EPSG:4326), ``scene.gpkg`` (the scene's CRS) and
``overview.png`` (:mod:`geochat.engine.scene_output`), each written atomically.

Several ``--image`` or a folder run as one batch (:mod:`geochat.engine.scene_runs`): each scene's
files go to ``DIR/<scene name>/``, in this process (``--engine local``) or on Ray Data with
``--workers`` model replicas (``--engine ray``). A scene whose outputs are all present is
skipped, so a stopped run resumes. With ``--sam`` (a SAM checkpoint) each tile's masks, and
its boxes and quads when the question asks for a mask, are refined into full-resolution masks
before the merge.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from tqdm import tqdm

from geochat import imagery
from geochat.engine import BACKENDS, BackendError, load
from geochat.engine.scene import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GDAL_CACHE_MB,
    DEFAULT_OVERLAP,
    MERGE_IOU,
    ScenePlan,
)
from geochat.engine.scene_runs import (
    SceneOptions,
    SceneOutcome,
    find_scenes,
    finished,
    run_local,
    run_ray,
    scene_jobs,
)

ENGINES = ("local", "ray")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geochat scene",
        description="Ask a model about whole scenes; write every object in map coordinates.",
    )
    parser.add_argument("question", help="the question, asked of every tile")
    parser.add_argument(
        "--image",
        required=True,
        type=Path,
        action="append",
        help="a GeoTIFF/COG, PNG or JPEG, or a folder of them; repeat it for several",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="folder of the output files (of one subfolder per scene, for several scenes)",
    )
    parser.add_argument("--engine", choices=ENGINES, default="local", help="default local")
    parser.add_argument(
        "--workers", type=int, default=1, help="ray: actors, one model each (default 1)"
    )
    parser.add_argument("--ray-address", help="ray: a cluster's address (default: a local Ray)")
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
    parser.add_argument(
        "--gdal-cache-mb",
        type=_megabytes,
        default=DEFAULT_GDAL_CACHE_MB,
        help=f"GDAL's block cache while reading, in MB (default {DEFAULT_GDAL_CACHE_MB})",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="transformers")
    parser.add_argument("--vllm-url", help="vLLM server (default http://127.0.0.1:8000/v1)")
    parser.add_argument("--device", default="cpu", help="transformers device (default cpu)")
    imagery.add_arguments(parser)  # default: the settings the model was trained with
    parser.add_argument(
        "--sam", metavar="PATH", help="SAM checkpoint to refine each tile's masks with"
    )
    return parser


def _megabytes(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"the GDAL cache needs at least 1 MB, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    """``geochat scene``: asks about whole scenes; writes their objects as GeoJSON and GeoPackage.

    Returns 0 when every scene is done or skipped, 2 for bad input, an unusable model or a
    scene that failed.
    """
    args = _parser().parse_args(argv)
    bar: list[tqdm] = []

    def on_plan(plan: ScenePlan) -> None:
        for progress in bar:
            progress.close()
        bar.clear()
        for note in plan.notes:
            print(note, file=sys.stderr)
        bar.append(tqdm(total=len(plan.tiles), desc="tiles", unit="tile", file=sys.stderr))

    def on_tiles(done: int) -> None:
        bar[0].update(done)

    outcomes: list[SceneOutcome] = []
    try:
        imagery.from_arguments(args)  # bad options fail before the model loads
        images: list[Path] = args.image
        scenes = find_scenes(images)
        separate = len(images) > 1 or images[0].is_dir()
        options = SceneOptions(
            args.question,
            args.gsd,
            args.overlap,
            args.batch_size,
            args.merge_iou,
            args.max_new_tokens,
            {
                "bands": args.bands,
                "preset": args.preset,
                "stretch": args.stretch,
                "fill": args.fill,
            },
            args.gdal_cache_mb,
            {
                "model": args.model,
                "backend": args.backend,
                "vllm_url": args.vllm_url,
                "sam": args.sam,
            },
        )
        pending = []
        for job in scene_jobs(scenes, args.out, separate):
            done = finished(job, options)
            if done is None:
                pending.append(job)
            else:
                outcomes.append(done)
        # On Ray each actor loads its own replica: on the GPU Ray gives it ("cuda").
        on_gpu = args.backend == "transformers" and args.device.startswith("cuda")
        device = "cuda" if args.engine == "ray" and on_gpu else args.device
        load_model = functools.partial(
            load,
            args.model,
            backend=args.backend,
            device=device,
            vllm_url=args.vllm_url,
            sam=args.sam,
        )
        if not pending:
            runs: list[SceneOutcome] = []
        elif args.engine == "ray":
            runs = list(
                run_ray(pending, load_model, options, args.workers, 1 if on_gpu else 0,
                        args.ray_address)
            )  # fmt: skip
        else:
            runs = list(run_local(pending, load_model, options, on_tiles, on_plan))
    except (OSError, ValueError, BackendError) as error:
        print(f"geochat scene: {error}", file=sys.stderr)
        return 2
    finally:
        for progress in bar:
            progress.close()
    outcomes += runs
    return _report(sorted(outcomes, key=lambda outcome: outcome.scene), separate)


def _report(outcomes: list[SceneOutcome], separate: bool) -> int:
    """Prints each scene's answer (stdout) and what was done (stderr); the exit status."""
    for outcome in outcomes:
        name = Path(outcome.scene).name
        if outcome.status == "failed":
            prefix = f"{name}: " if separate else ""
            print(f"geochat scene: {prefix}{outcome.error}", file=sys.stderr)
            continue
        print(f"{name}: {outcome.answer}" if separate else outcome.answer)
        if outcome.status == "skipped":
            print(f"{name}: skipped, its outputs are all in {outcome.out}", file=sys.stderr)
            continue
        print(
            f"{name}: {outcome.tiles_run} tiles answered, {outcome.tiles_skipped} skipped as "
            f"no-data; {outcome.problems} parse problems",
            file=sys.stderr,
        )
        if not outcome.georeferenced:
            print(
                f"{name}: no georeference: scene.geojson is in pixel coordinates, no GeoPackage",
                file=sys.stderr,
            )
        print(f"wrote {', '.join(outcome.written)} to {outcome.out}", file=sys.stderr)
    counts = {
        status: sum(o.status == status for o in outcomes)
        for status in ("done", "skipped", "failed")
    }
    skipped = [Path(o.scene).name for o in outcomes if o.status == "skipped"]
    if not separate:
        return 2 if counts["failed"] else 0
    print(
        f"{len(outcomes)} scene{'s' if len(outcomes) != 1 else ''}: {counts['done']} run, "
        f"{counts['skipped']} skipped (outputs present{': ' if skipped else ''}"
        f"{', '.join(skipped)}), {counts['failed']} failed",
        file=sys.stderr,
    )
    return 2 if counts["failed"] else 0
