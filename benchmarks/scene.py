"""Whole-scene grounding: km^2 per minute and peak memory as the scene grows.

Run: ``python benchmarks/scene.py [--sizes 2048 8192 16384] [--scripted] [--model DIR]
[--batch-size 8] [--striped] [--out DIR] [--engines N [--workers 2]]``.

Claim: :func:`geochat.engine.scene.run_scene` reads a scene window by window, so its memory
stays flat as the scene grows; only the merged objects grow with what the scene holds.

For each size, a synthetic GeoTIFF of that many pixels a side at the model's native GSD is
written tile by tile (tiled, deflate; windowed writes of one synthetic world repeated, never the
whole raster in memory); with ``--striped``, as a plain TIFF instead: not tiled (GDAL's default
strips, one row each at these widths) and uncompressed, so 26,000 px a side make a 2 GB file
that is still read window by window. A fresh child process per size loads the model, runs
``run_scene`` ("Where are the buildings?") and writes the outputs (GeoJSON, GeoPackage,
overview); the child reports its wall time and its peak resident memory (:func:`peak_rss_mb`): once
the model was loaded, after ``run_scene`` and after the outputs (streamed to disk); ``run min``
is ``run_scene``'s share of the minutes. The model is the bundled geochat-nano, or with
``--scripted`` an engine whose answer per tile is one fixed box (no network: the mechanics of
reading, merging and writing alone), or with ``--scripted empty`` nothing (reading alone).

With ``--engines N``, N scenes of the first size run as one batch three times, in one run: in
this process one after another (``--engine local``), on a plain process pool of ``--workers``
model replicas (the baseline for Ray), and on Ray Data with as many (``--engine ray``); the table
gives each engine's minutes, km^2 per minute and throughput against the local engine. Each
starts its workers (and loads a model in each) within the timed run, as a ``geochat scene``
run does.
"""

from __future__ import annotations

import argparse
import functools
import resource
import tempfile
import time
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import rasterio
from rasterio.windows import Window

from geochat.data_builders.synthetic import generate_world
from geochat.engine import Assistant, load
from geochat.engine.assistant import NativeInput, Request
from geochat.engine.scene import DEFAULT_GDAL_CACHE_MB, run_scene
from geochat.engine.scene_output import scene_files, write_scene
from geochat.engine.scene_runs import (
    SceneJob,
    SceneOptions,
    SceneOutcome,
    find_scenes,
    run_job,
    run_local,
    run_ray,
    scene_jobs,
)

QUESTION = "Where are the buildings?"
WORLD_SIDE = 1024  # px of the synthetic world repeated over the scene
SCRIPTED_INPUT = NativeInput(128, (0.3, 0.3))  # geochat-nano's input


class ScriptedAssistant(Assistant):
    """One building box in the middle of every tile (or nothing), at once: no model."""

    backend = "scripted"
    native_input = SCRIPTED_INPUT

    def __init__(self, empty: bool) -> None:
        self.answer = "<none>" if empty else "<ref>building</ref><box>[[400,400,600,600]]</box>"
        self.model_name = "scripted, nothing found" if empty else "scripted, a box a tile"

    def close(self) -> None:
        """Nothing to free."""

    def _generate(self, request: Request) -> Generator[str, None, None]:
        return (part for part in [self.answer])


def write_scene_tif(
    path: Path, side: int, gsd: float, world_dir: Path, striped: bool = False
) -> None:
    """A ``side`` x ``side`` GeoTIFF at ``gsd``, one synthetic world repeated, block by block.

    Tiled (512 px blocks) and deflate-compressed, or with ``striped`` neither: GDAL's default
    strips, uncompressed.
    """
    layout = {} if striped else {"tiled": True, "blockxsize": 512, "blockysize": 512}
    files = generate_world(world_dir, seed=0, size_px=WORLD_SIDE, gsd=gsd, scene="mixed")
    with rasterio.open(files.tif) as world:
        pixels = world.read()  # [3, 1024, 1024]: the only image held in memory
        profile = {
            "driver": "GTiff",
            "width": side,
            "height": side,
            "count": 3,
            "dtype": "uint8",
            "crs": world.crs,
            "transform": world.transform,
            "photometric": "RGB",
            "compress": "none" if striped else "deflate",
            "BIGTIFF": "IF_SAFER",
            **layout,
        }
    with rasterio.open(path, "w", **profile) as out:
        for row in range(0, side, WORLD_SIDE):
            for col in range(0, side, WORLD_SIDE):
                height, width = min(WORLD_SIDE, side - row), min(WORLD_SIDE, side - col)
                out.write(pixels[:, :height, :width], window=Window(col, row, width, height))


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program, in MB.

    Linux's ``VmHWM``: ``getrusage``'s maxrss survives ``exec``, so a child spawned by a parent
    that had just written a 2 GB scene through GDAL's cache reported the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child(
    path: str,
    model: str | None,
    scripted: str | None,
    batch_size: int,
    out: str,
    cache_mb: int,
) -> dict:
    """Runs one scene in this (fresh) process; returns its timings and memory."""
    assistant = ScriptedAssistant(scripted == "empty") if scripted else load(model)
    loaded_mb = peak_rss_mb()
    started = time.perf_counter()
    result = run_scene(assistant, path, QUESTION, batch_size=batch_size, gdal_cache_mb=cache_mb)
    run_mb = peak_rss_mb()
    run_seconds = time.perf_counter() - started
    write_scene(result, out, scene_files(result, path, assistant.imagery))
    seconds = time.perf_counter() - started
    return {
        "model": assistant.model_name,
        "tiles": result.tiles_run,
        "objects": len(result.objects),
        "run_seconds": run_seconds,
        "seconds": seconds,
        "loaded_mb": loaded_mb,
        "run_mb": run_mb,
        "peak_mb": peak_rss_mb(),
    }


def main() -> None:
    """Writes each scene, runs it in a child process and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 16384])
    parser.add_argument(
        "--scripted",
        nargs="?",
        const="box",
        choices=("box", "empty"),
        help="a scripted engine instead of a model: a box a tile (default), or nothing found",
    )
    parser.add_argument("--model", help="checkpoint (default: the bundled geochat-nano)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--striped",
        action="store_true",
        help="write the scenes as non-tiled (striped), uncompressed GeoTIFFs",
    )
    parser.add_argument("--out", type=Path, help="folder of the scenes (default: a temp dir)")
    parser.add_argument(
        "--gdal-cache-mb",
        type=int,
        default=DEFAULT_GDAL_CACHE_MB,
        help=f"GDAL's block cache (default: run_scene's, {DEFAULT_GDAL_CACHE_MB} MB); it holds "
        "blocks read before, up to this size, whatever the scene's size",
    )
    parser.add_argument(
        "--engines",
        type=int,
        metavar="N",
        help="instead: N scenes of the first size, run by the local engine and by Ray",
    )
    parser.add_argument("--workers", type=int, default=2, help="Ray's model replicas")
    args = parser.parse_args()
    gsd = SCRIPTED_INPUT.gsd[0] if args.scripted else _model_gsd(args.model)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.out or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        if args.engines:
            compare_engines(args, gsd, folder)
            return
        for side in args.sizes:
            path = folder / f"scene_{side}.tif"
            write_scene_tif(path, side, gsd, folder / "world", args.striped)
            # A fresh process per size: its peak memory is this scene's alone.
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                work = pool.submit(
                    child, str(path), args.model, args.scripted, args.batch_size,
                    str(folder / f"out_{side}"), args.gdal_cache_mb,
                )  # fmt: skip
                row = {"side": side, **work.result()}
            row["km2"] = (side * gsd) ** 2 / 1e6
            row["file_mb"] = path.stat().st_size / 2**20
            row["layout"] = "striped" if args.striped else "tiled"
            rows.append(row)
            path.unlink()
            _print(rows, args.gdal_cache_mb)


_POOL_WORKER: dict[str, Any] = {}  # a pool process's model and options


def _pool_start(load_model: Callable[[], Assistant], options: SceneOptions) -> None:
    """Loads the model once in a pool process."""
    _POOL_WORKER.update(assistant=load_model(), options=options)


def _pool_job(job: SceneJob) -> SceneOutcome:
    """Runs one scene in a pool process, as each engine does (:func:`run_job`)."""
    return run_job(_POOL_WORKER["assistant"], job, _POOL_WORKER["options"])


def run_pool(
    jobs: list[SceneJob],
    load_model: Callable[[], Assistant],
    options: SceneOptions,
    workers: int,
) -> list[SceneOutcome]:
    """The scenes on a plain process pool of ``workers`` model replicas (Ray's baseline)."""
    with ProcessPoolExecutor(
        workers, get_context("spawn"), initializer=_pool_start, initargs=(load_model, options)
    ) as pool:
        return list(pool.map(_pool_job, jobs))


def compare_engines(args: argparse.Namespace, gsd: float, folder: Path) -> None:
    """Runs ``args.engines`` scenes with each engine in turn; prints the table."""
    side = args.sizes[0]
    scenes = folder / "scenes"
    scenes.mkdir(exist_ok=True)
    for index in range(args.engines):
        write_scene_tif(scenes / f"scene_{index}.tif", side, gsd, folder / "world", args.striped)
    if args.scripted:
        load_model = functools.partial(ScriptedAssistant, args.scripted == "empty")
    else:
        load_model = functools.partial(load, args.model)
    options = SceneOptions(QUESTION, batch_size=args.batch_size, gdal_cache_mb=args.gdal_cache_mb)
    found = find_scenes([scenes])
    workers = f"{args.workers} workers"
    engines: dict[str, Callable[[list[SceneJob]], Iterable[SceneOutcome]]] = {
        "local": lambda jobs: run_local(jobs, load_model, options),
        f"process pool, {workers}": lambda jobs: run_pool(jobs, load_model, options, args.workers),
        f"ray, {workers}": lambda jobs: run_ray(jobs, load_model, options, args.workers),
    }
    minutes = {}
    for index, (engine, run) in enumerate(engines.items()):
        jobs = scene_jobs(found, folder / f"out_{index}", separate=True)
        started = time.perf_counter()
        failed = [o.error for o in run(jobs) if o.status != "done"]
        minutes[engine] = (time.perf_counter() - started) / 60
        if failed:
            raise SystemExit(f"{engine}: {failed[0]}")
    km2 = args.engines * (side * gsd) ** 2 / 1e6
    header = f"{'engine':>24} {'scenes':>7} {'side px':>8} {'km^2':>7} {'minutes':>8}"
    print(f"\n{header} {'km^2/min':>9} {'vs local':>9}  model: {load_model().model_name}")
    for engine, taken in minutes.items():
        print(
            f"{engine:>24} {args.engines:>7} {side:>8} {km2:>7.2f} {taken:>8.2f} "
            f"{km2 / taken:>9.2f} {minutes['local'] / taken:>8.2f}x"
        )


def _model_gsd(model: str | None) -> float:
    assistant = load(model)
    try:
        native = assistant.native_input
        if native is None or native.gsd is None:
            raise SystemExit(f"{assistant.model_name} declares no GSD; use --scripted")
        return native.gsd[0]
    finally:
        assistant.close()


def _print(rows: list[dict[str, Any]], cache_mb: int) -> None:
    cache = f"{cache_mb} MB"
    print(
        f"\n{'side px':>8} {'layout':>8} {'file MB':>8} {'km^2':>7} {'tiles':>6} {'objects':>7} "
        f"{'run min':>8} {'minutes':>8} {'km^2/min':>9} {'RSS loaded MB':>14} {'peak run MB':>12} "
        f"{'peak RSS MB':>12}  model"
    )
    for row in rows:
        minutes = row["seconds"] / 60
        print(
            f"{row['side']:>8} {row['layout']:>8} {row['file_mb']:>8.0f} {row['km2']:>7.2f} "
            f"{row['tiles']:>6} {row['objects']:>7} {row['run_seconds'] / 60:>8.2f} "
            f"{minutes:>8.2f} {row['km2'] / minutes:>9.2f} {row['loaded_mb']:>14.0f} "
            f"{row['run_mb']:>12.0f} {row['peak_mb']:>12.0f}  {row['model']}, GDAL cache {cache}",
            flush=True,
        )


if __name__ == "__main__":
    main()
