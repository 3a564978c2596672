"""Visual tokens, prefill and generation speed of each backbone family, at proportional tiny sizes.

Each family is a tiny random checkpoint (LLM and vision tower 64 wide, 2 layers, head_dim 32:
`tests/data/backbones/data.py`, and `geochat.modeling.tiny` for geochat's own) whose image
settings are the real checkpoint's, so the number of visual tokens, which sets the prefill
cost, is the real one:

- geochat / SmolVLM-256M: 512 px tiles of 16 px patches, pixel shuffle 4 (64 tokens a tile),
  up to 2 x 2 tiles plus the global view;
- Qwen2.5-VL-7B-Instruct: 14 px patches merged 2 x 2, 3136 to 12845056 pixels;
- Qwen3-VL-8B-Instruct: 16 px patches merged 2 x 2, 65536 to 16777216 pixels;
- LLaVA-1.5-7B: CLIP-L/14 at 336 px; GeoChat-7B: the same tower at 504 px (padded square).

For one 1024 x 1024 image and a one-line question, through the family's own prompt path
(`Backbone.inputs`): the visual tokens (image tokens in the prompt), the prompt length, the
prefill (one forward) in CPU seconds of this process (median of --runs after a warm-up), and
greedy generation of --new-tokens tokens in tokens per wall-clock second (prefill included).
The widths are tiny, so absolute times say little about real sizes; the ratios between families
follow their visual tokens.

Run: python benchmarks/backbones.py [--runs 3] [--new-tokens 32] [--threads N]  (a few minutes)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import (
    CLIPImageProcessorPil,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    Qwen2VLImageProcessorPil,
)

from geochat.modeling import tiny
from geochat.modeling.families import load_backbone

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "backbones" / "data.py"
SIDE = 1024
QUESTION = [{"role": "user", "content": "<image>\nWhere is the pool?"}]
SEED = 0


def _data():
    spec = importlib.util.spec_from_file_location("backbones_data", DATA)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_geochat(folder: Path) -> Path:
    """The Idefics3 family (geochat's model) with SmolVLM-256M's tiling and compression."""
    model, processor = tiny(
        "pixel_shuffle", 4, image_size=512, patch_size=16, max_tiles_per_side=2, seed=SEED
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _qwen(builder: str, patch: int, pixels: tuple[int, int], **norm) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        getattr(_data(), builder)(folder)
        Qwen2VLImageProcessorPil(  # the real checkpoint's pixel budget
            size={"shortest_edge": pixels[0], "longest_edge": pixels[1]},
            patch_size=patch,
            merge_size=2,
            temporal_patch_size=2,
            **norm,
        ).save_pretrained(folder)
        return folder

    return build


def _llava(image_size: int) -> Callable[[Path], Path]:
    """LLaVA-1.5's CLIP-L/14 geometry (14 px patches) at `image_size`, tiny widths."""

    def build(folder: Path) -> Path:
        _data().build_llava(folder)
        config = LlavaConfig.from_pretrained(folder)
        config.vision_config.image_size, config.vision_config.patch_size = image_size, 14
        config.image_seq_length = (image_size // 14) ** 2
        torch.manual_seed(SEED)
        LlavaForConditionalGeneration(config).save_pretrained(folder)
        processor = LlavaProcessor.from_pretrained(folder)
        processor.image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        )
        processor.patch_size = 14
        processor.save_pretrained(folder)
        return folder

    return build


FAMILIES: dict[str, Callable[[Path], Path]] = {
    "geochat (SmolVLM-256M tiling)": build_geochat,
    "Qwen2.5-VL": _qwen("build_qwen2_5_vl", 14, (3136, 12845056)),
    "Qwen3-VL": _qwen(
        "build_qwen3_vl", 16, (65536, 16777216), image_mean=[0.5] * 3, image_std=[0.5] * 3
    ),
    "LLaVA-1.5 (336 px)": _llava(336),
    "GeoChat-7B (LLaVA, 504 px)": _llava(504),
}


def measure(folder: Path, image: Image.Image, runs: int, new_tokens: int) -> dict[str, float]:
    """Visual tokens, prompt length, prefill CPU seconds and generation tokens/s of a folder."""
    backbone = load_backbone(folder, dtype=torch.float32)
    inputs = backbone.inputs(image, QUESTION).inputs
    image_token = backbone.family.image_token_id(backbone.model.config)
    visual = int((inputs["input_ids"] == image_token).sum())
    times = []
    with torch.no_grad():
        for _ in range(runs + 1):  # the first is a warm-up
            started = time.process_time()
            backbone.model(**inputs, use_cache=True)
            times.append(time.process_time() - started)
        started = time.perf_counter()
        out = backbone.model.generate(
            **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
        )
        wall = time.perf_counter() - started
    generated = out.shape[1] - inputs["input_ids"].shape[1]
    return {
        "visual": visual,
        "prompt": int(inputs["input_ids"].shape[1]),
        "prefill_cpu_s": statistics.median(times[1:]),
        "tokens_per_s": generated / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed prefills per family")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(SEED)
    image = Image.fromarray(rng.integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {args.threads} threads; image {SIDE} x {SIDE}"
    )
    header = "| family | visual tokens | prompt tokens | prefill CPU s | generate tokens/s |"
    print(header + "\n|---|---:|---:|---:|---:|")
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for name, build in FAMILIES.items():
            folder = build(Path(root) / name.split()[0].lower())
            row = measure(folder, image, args.runs, args.new_tokens)
            results[name] = row
            print(
                f"| {name} | {row['visual']} | {row['prompt']} | {row['prefill_cpu_s']:.3f} "
                f"| {row['tokens_per_s']:.1f} |",
                flush=True,
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
