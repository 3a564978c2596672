"""Throughput of all-pairs IoU in geochat.geometry: horizontal boxes, quads and RLE masks.

Run: ``python benchmarks/geometry.py [--repeats 5]``. Prints pairs per second (median of the
repeats) for each kind, on random rotated boxes with a fixed seed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from geochat import geometry

MASK_SIZE = 512


def random_obbs(rng: np.random.Generator, count: int, extent: float) -> np.ndarray:
    """Random oriented boxes ``[count, 5]`` (cx, cy, w, h, angle) inside ``extent`` pixels."""
    centres = rng.uniform(0.1 * extent, 0.9 * extent, (count, 2))
    sides = rng.uniform(0.02 * extent, 0.2 * extent, (count, 2))
    angles = rng.uniform(-90, 90, (count, 1))
    return np.hstack([centres, sides, angles])


def random_hbbs(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random horizontal boxes ``[count, 4]``."""
    return np.array([geometry.quad_to_hbb(q) for q in random_quads(rng, count)])


def random_quads(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Random quads, each ``(4, 2)``."""
    return [geometry.obb_to_quad(*obb) for obb in random_obbs(rng, count, 1000.0)]


def random_masks(rng: np.random.Generator, count: int) -> list[geometry.RLE]:
    """RLE masks of rasterised random rotated boxes, ``MASK_SIZE`` pixels square."""
    return [
        geometry.polygon_to_rle(geometry.obb_to_quad(*obb), MASK_SIZE, MASK_SIZE)
        for obb in random_obbs(rng, count, float(MASK_SIZE))
    ]


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    hbbs_a, hbbs_b = random_hbbs(rng, 1000), random_hbbs(rng, 1000)
    quads_a, quads_b = random_quads(rng, 200), random_quads(rng, 200)
    masks_a, masks_b = random_masks(rng, 100), random_masks(rng, 100)
    cases = [
        ("hbb_iou", "1000 x 1000 boxes", 1000 * 1000, lambda: geometry.hbb_iou(hbbs_a, hbbs_b)),
        ("quad_iou", "200 x 200 quads", 200 * 200, lambda: geometry.quad_iou(quads_a, quads_b)),
        (
            "mask_iou",
            f"100 x 100 RLE masks {MASK_SIZE}x{MASK_SIZE}",
            100 * 100,
            lambda: geometry.mask_iou(masks_a, masks_b),
        ),
    ]
    table = Table(title=f"all-pairs IoU throughput (median of {args.repeats})")
    for column in ("function", "input", "pairs", "median s", "pairs / s"):
        table.add_column(column, justify="right" if column != "input" else "left")
    for name, description, pairs, run in cases:
        seconds = median_seconds(run, args.repeats)
        table.add_row(name, description, f"{pairs:,}", f"{seconds:.4f}", f"{pairs / seconds:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
