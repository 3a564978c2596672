"""Training throughput of the nano model: full training vs LoRA vs DoRA, as ratios in one run.

Each variant trains the same model on the same batches of records from a build folder for a
few optimizer steps after a warm-up; the table gives samples/s, tokens/s (padding excluded)
and the ratio to full training.

    python benchmarks/train.py --data data/nano --steps 10 --batch-size 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from geochat.modeling import tiny
from training.collator import ChatCollator
from training.data import RecordDataset
from training.recipe import load_recipe
from training.trainer import PART_TARGETS


def nano_model():
    """The nano recipe's architecture, randomly initialised."""
    options = dict(load_recipe("nano-synthetic").model["tiny"])
    return tiny(**options)


def variant(name: str):
    model, processor = nano_model()
    if name != "full":
        config = LoraConfig(
            r=16, lora_alpha=32, use_dora=name == "dora", target_modules=PART_TARGETS["llm"]
        )
        model = get_peft_model(model, config)
    return model.train(), processor


def measure(name: str, batches: list[dict], steps: int, bf16: bool) -> tuple[float, float]:
    model, _ = variant(name)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch: dict) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step(batches[0])  # warm-up: allocations and kernels
    start = time.perf_counter()
    for index in range(steps):
        step(batches[index % len(batches)])
    elapsed = time.perf_counter() - start
    samples = sum(len(batches[i % len(batches)]["input_ids"]) for i in range(steps))
    tokens = sum(int(batches[i % len(batches)]["attention_mask"].sum()) for i in range(steps))
    return samples / elapsed, tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a build folder of records")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    args = parser.parse_args()
    torch.manual_seed(0)
    _, processor = nano_model()
    dataset = RecordDataset(args.data, "train", limit=args.batch_size * 4)
    collate = ChatCollator(processor, load_recipe("nano-synthetic").data["max_length"])
    batches = [
        collate([dataset[i] for i in range(start, start + args.batch_size)])
        for start in range(0, len(dataset) - args.batch_size + 1, args.batch_size)
    ]
    results = {
        name: measure(name, batches, args.steps, not args.fp32) for name in ("full", "lora", "dora")
    }
    print(
        f"nano model, batch {args.batch_size}, {args.steps} steps, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'variant':<8} {'samples/s':>10} {'tokens/s':>10} {'vs full':>8}")
    for name, (samples, tokens) in results.items():
        print(f"{name:<8} {samples:>10.2f} {tokens:>10.0f} {samples / results['full'][0]:>8.2f}")


if __name__ == "__main__":
    main()
