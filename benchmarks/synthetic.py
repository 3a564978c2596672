"""Speed of the synthetic world generator, per world and in worlds per minute.

Seconds per world by size and scene, and worlds per minute with 1 and 2 worker processes. For
each scene and size, ``--repeats`` worlds (different seeds) are built in memory and then
written (GeoTIFF, OSM XML, OSM PBF, truth GeoJSON); the table gives the median wall time and
the median CPU time of this process for each step. CPU time is printed beside wall time because
on a shared machine wall time also counts other people's work. The last table times
:func:`generate_worlds` end to end.

Usage: ``python benchmarks/synthetic.py [--sizes 256 512 1024] [--repeats 3] [--worlds 16]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from geochat.data_builders.synthetic import SCENES, build_world, generate_worlds, write_world


def timed(function, *args, **kwargs):
    """Runs ``function`` and returns (its result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def per_world(sizes: list[int], repeats: int, folder: Path) -> None:
    print(
        f"{'scene':<11} {'size':>5} {'objects':>8} {'build wall':>11} {'build cpu':>10} "
        f"{'write wall':>11} {'write cpu':>10}"
    )
    for size in sizes:
        for scene in SCENES:
            rows = []
            for seed in range(repeats):
                world, build_wall, build_cpu = timed(build_world, seed, size, size, scene=scene)
                _, write_wall, write_cpu = timed(write_world, world, folder / f"{scene}_{size}")
                rows.append((len(world.features), build_wall, build_cpu, write_wall, write_cpu))
            objects, *times = (statistics.median(column) for column in zip(*rows, strict=True))
            print(
                f"{scene:<11} {size:>5} {objects:>8.0f} "
                + " ".join(f"{value:>10.3f}s" for value in times)
            )


def throughput(size: int, worlds: int, folder: Path) -> None:
    print(f"\ngenerate_worlds: {worlds} mixed-scene worlds of {size} px at 0.5 m")
    print(f"{'workers':>7} {'wall':>8} {'worlds/min':>11}")
    for workers in (1, 2):
        _, wall, _ = timed(
            generate_worlds,
            folder / f"set_{workers}",
            worlds,
            seed=0,
            width=size,
            height=size,
            workers=workers,
        )
        print(f"{workers:>7} {wall:>7.2f}s {60 * worlds / wall:>11.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worlds", type=int, default=16)
    parser.add_argument("--throughput-size", type=int, default=512)
    args = parser.parse_args()
    # Loads the tag table and warms imports, so the first row is not charged for them.
    build_world(0, 64, 64)
    with tempfile.TemporaryDirectory() as folder:
        per_world(args.sizes, args.repeats, Path(folder))
        throughput(args.throughput_size, args.worlds, Path(folder))


if __name__ == "__main__":
    main()
