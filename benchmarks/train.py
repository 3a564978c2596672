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
from geochat.modeling.families.idefics3 import IDEFICS3
from geochat.training.collator import ChatCollator
from geochat.training.data import RecordDataset
from geochat.training.recipe import load_recipe
from geochat.training.trainer import lora_targets


def nano_model():
    """The nano recipe's architecture, randomly initialised."""
    options = dict(load_recipe("nano-synthetic").model.tiny)
    return tiny(**options)


def variant(name: str):
    model, processor = nano_model()
    if name != "full":
        targets = lora_targets(model, IDEFICS3.modules, ["llm"])
        config = LoraConfig(r=16, lora_alpha=32, use_dora=name == "dora", target_modules=targets)
        model = get_peft_model(model, config)
    return model.train(), processor


class Variant:
    """A model in training with its optimizer; times optimizer steps on given batches."""

    def __init__(self, name: str, bf16: bool):
        self.model, _ = variant(name)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=1e-4)
        self.bf16 = bf16

    def step(self, batch: dict) -> None:
        """One forward, backward and optimizer step."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()

    def time(self, batches: list[dict]) -> float:
        """Seconds to take one step per batch."""
        start = time.perf_counter()
        for batch in batches:
            self.step(batch)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a build folder of records")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    args = parser.parse_args()
    torch.manual_seed(0)
    _, processor = nano_model()
    dataset = RecordDataset(args.data, "train", limit=args.batch_size * 4)
    collate = ChatCollator(processor, load_recipe("nano-synthetic").data.max_length)
    batches = [
        collate([dataset[i] for i in range(start, start + args.batch_size)])
        for start in range(0, len(dataset) - args.batch_size + 1, args.batch_size)
    ]
    steps = [batches[i % len(batches)] for i in range(args.steps)]
    variants = {name: Variant(name, not args.fp32) for name in ("full", "lora", "dora")}
    for trainer in variants.values():
        trainer.step(batches[0])  # warm-up: allocations and kernels
    # Rounds interleave the variants and each keeps its fastest round, so that load from other
    # jobs on the machine favours no variant in particular.
    best = {name: float("inf") for name in variants}
    for _ in range(args.rounds):
        for name, trainer in variants.items():
            best[name] = min(best[name], trainer.time(steps))
    samples = sum(len(batch["input_ids"]) for batch in steps)
    tokens = sum(int(batch["attention_mask"].sum()) for batch in steps)
    print(
        f"nano model, batch {args.batch_size}, best of {args.rounds} rounds of {args.steps} "
        f"steps, torch threads {torch.get_num_threads()}"
    )
    print(f"{'variant':<8} {'samples/s':>10} {'tokens/s':>10} {'vs full':>8}")
    for name, seconds in best.items():
        print(
            f"{name:<8} {samples / seconds:>10.2f} {tokens / seconds:>10.0f} "
            f"{best['full'] / seconds:>8.2f}"
        )


if __name__ == "__main__":
    main()
