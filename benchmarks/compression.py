"""Prefill time and memory of one tiled image under each visual-token compressor.

One random model of realistic shape for a small VLM (SigLIP-like vision encoder: 12 layers, 384
wide, 16 px patches on 384 px tiles; Llama LLM: 12 layers, 384 wide), one 768 x 768 image cut into
2 x 2 tiles plus the global view (5 tiles), a one-line question; a prefill is one forward with the
KV cache on, as `generate` does first.

Each measurement runs in a fresh subprocess. Time: medians of --runs prefills after one warm-up, in
wall seconds and in CPU seconds of the process (steadier when other work shares the machine), and
of the vision encoder plus connector alone ("vision CPU s"), which compression does not shrink; the
variants are timed in --rounds interleaved rounds and each keeps its quickest; the ratio "x CPU" is
against no compression. Memory: one prefill; "peak MiB" is the peak resident
memory of the process (getrusage maxrss), "prefill MiB" that peak minus the resident memory just
before the prefill (model and inputs built): the activations and KV cache. The memory process runs
with a fixed glibc mmap threshold so that freed blocks go back to the system and resident memory
follows the live tensors (with the adaptive default the same variant varied by +-40 MiB); the time
process runs without it, as that costs page faults.

Run: python benchmarks/compression.py [--runs 5] [--rounds 2] [--threads N]  (about 10 minutes)
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

from geochat.modeling import tiny

VARIANTS = [
    ("pixel_shuffle", 1),
    ("pixel_shuffle", 2),
    ("pixel_shuffle", 4),
    ("conv", 2),
    ("conv", 4),
    ("pool", 2),
    ("pool", 4),
]
MODEL = {
    "image_size": 384,
    "patch_size": 16,
    "vision_layers": 12,
    "vision_hidden": 384,
    "text_layers": 12,
    "hidden": 384,
    "head_dim": 64,
    "max_tiles_per_side": 2,
}
IMAGE_SIDE = 768
QUESTION = [{"role": "user", "content": "<image>\nWhere is the largest ship?"}]


def resident_mb() -> float:
    """Current resident memory of this process in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def median_seconds(run, runs: int) -> tuple[float, float]:
    """Median wall and CPU (all threads of this process) seconds of `runs` calls of `run`.

    One warm-up call comes first. CPU time is the steadier measure on a shared machine.
    """
    run()
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def build(compressor: str, factor: int) -> tuple[torch.nn.Module, dict]:
    """The model of one variant and the inputs of the tiled image and question."""
    model, processor = tiny(compressor, factor, **MODEL)
    pixels = np.random.default_rng(0).integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    return model, processor.build_chat_inputs(Image.fromarray(pixels), QUESTION).inputs


def prefill(model: torch.nn.Module, inputs: dict) -> None:
    """One forward over the whole prompt, keeping the KV cache and the last logits only."""
    with torch.inference_mode():
        model(**inputs, use_cache=True, logits_to_keep=1)


def measure_time(compressor: str, factor: int, runs: int) -> dict:
    """Token counts and prefill times of one variant."""
    model, inputs = build(compressor, factor)
    wall, cpu = median_seconds(lambda: prefill(model, inputs), runs)
    with torch.inference_mode():
        _, vision_cpu = median_seconds(
            lambda: model.get_image_features(inputs["pixel_values"]), runs
        )
    return {
        "variant": f"{compressor} r={factor}" if factor > 1 else "none (r=1)",
        "tiles": inputs["pixel_values"].shape[1],
        "visual_tokens": int((inputs["input_ids"] == model.config.image_token_id).sum()),
        "sequence": inputs["input_ids"].shape[1],
        "prefill_s": wall,
        "prefill_cpu_s": cpu,
        "vision_cpu_s": vision_cpu,
    }


def measure_memory(compressor: str, factor: int) -> dict:
    """Peak resident memory of one variant, and its rise during one prefill."""
    model, inputs = build(compressor, factor)
    before = resident_mb()
    prefill(model, inputs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"peak_mb": peak, "prefill_mb": peak - before}


def run_child(args: list[str], env: dict[str, str] | None = None) -> dict:
    """Runs this script with `args` in a fresh interpreter and returns the JSON it prints."""
    command = [sys.executable, __file__, *args]
    result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_args(compressor: str, factor: int, threads: int) -> list[str]:
    """Arguments of a subprocess that measures one variant."""
    return ["--threads", str(threads), "--child", compressor, str(factor)]


def measure_all(runs: int, threads: int, rounds: int) -> list[dict]:
    """Rows of every variant: timed in interleaved rounds, then its memory measured.

    Each variant keeps its quickest round: bursts of other work on a shared machine only add time.
    """
    timings = {variant: [] for variant in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            timings[variant].append(
                run_child([*child_args(*variant, threads), "--runs", str(runs)])
            )
    memory_env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    return [
        min(timings[variant], key=lambda row: row["prefill_cpu_s"])
        | run_child([*child_args(*variant, threads), "--memory"], env=memory_env)
        for variant in VARIANTS
    ]


def print_table(rows: list[dict]) -> None:
    """Prints the rows with ratios against the first (uncompressed) row."""
    base = rows[0]
    header = (
        f"{'compressor':<18}{'tiles':>6}{'visual tok':>11}{'seq':>6}{'prefill s':>10}"
        f"{'CPU s':>8}{'vision CPU s':>13}{'x CPU':>7}{'peak MiB':>10}{'prefill MiB':>12}"
        f"{'x mem':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['variant']:<18}{row['tiles']:>6}{row['visual_tokens']:>11}{row['sequence']:>6}"
            f"{row['prefill_s']:>10.2f}{row['prefill_cpu_s']:>8.2f}{row['vision_cpu_s']:>13.2f}"
            f"{row['prefill_cpu_s'] / base['prefill_cpu_s']:>7.2f}{row['peak_mb']:>10.0f}"
            f"{row['prefill_mb']:>12.0f}{row['prefill_mb'] / base['prefill_mb']:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed forwards per variant")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    parser.add_argument(
        "--child", nargs=2, metavar=("COMPRESSOR", "FACTOR"), help=argparse.SUPPRESS
    )
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        compressor, factor = args.child[0], int(args.child[1])
        if args.memory:
            print(json.dumps(measure_memory(compressor, factor)))
        else:
            print(json.dumps(measure_time(compressor, factor, args.runs)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print(f"1-minute load average before: {os.getloadavg()[0]:.2f}")
    print_table(measure_all(args.runs, args.threads, args.rounds))
    print(f"1-minute load average after: {os.getloadavg()[0]:.2f} (this benchmark adds ~2)")


if __name__ == "__main__":
    main()
