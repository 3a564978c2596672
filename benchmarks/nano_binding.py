"""Does a nano model from scratch read its image? Presence questions with and without captions.

The task is the smallest version of what geochat-nano failed at: 128 px images holding two
coloured squares out of four colours, and "Is there a red square?" with answers balanced
between yes and no. Answering needs the question matched to the image, which a model from
scratch does not find by itself; a caption ("blue and red"), learned alongside, names the
image's content without any question and gives the model a first path from pixels to words.

Each variant trains the nano recipe's architecture with the nano recipe (``geochat train``'s
code) for the same number of steps, then measures the loss of the yes/no answers on held-out
images, with each image and with the images shuffled across the questions. A model that reads
its image has a lower loss with the right image; an image-blind one has equal losses.

    python benchmarks/nano_binding.py --steps 600 --lr 2e-3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geochat.modeling import load_pretrained
from geochat.records import write_jsonl
from geochat.training.collator import ChatCollator
from geochat.training.data import RecordDataset
from geochat.training.recipe import load_recipe
from geochat.training.trainer import train

COLOURS = {
    "red": (220, 40, 40),
    "blue": (40, 60, 220),
    "green": (40, 200, 60),
    "yellow": (230, 220, 40),
}
SIZE = 128


def conversation(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


def write_squares(folder: Path, split: str, count: int, seed: int) -> None:
    """Writes ``count`` images with a presence question and a caption each."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        present = sorted(rng.choice(list(COLOURS), size=2, replace=False))
        image = np.full((SIZE, SIZE, 3), 90, dtype=np.uint8)
        for colour in present:
            side = int(rng.integers(10, 20))
            x, y = (int(v) for v in rng.integers(0, SIZE - side, size=2))
            image[y : y + side, x : x + side] = COLOURS[colour]
        name = f"images/{split}-{index:05d}.png"
        Image.fromarray(image).save(folder / name)
        asked = str(rng.choice(list(COLOURS)))
        common = {"image": name, "width": SIZE, "height": SIZE, "split": split, "objects": []}
        records.append(
            {
                "id": f"{split}-{index}-vqa",
                "task": "vqa",
                "conversations": conversation(
                    f"Is there a {asked} square?", "Yes" if asked in present else "No"
                ),
                **common,
            }
        )
        records.append(
            {
                "id": f"{split}-{index}-caption",
                "task": "caption",
                "conversations": conversation("Describe the image.", " and ".join(present)),
                **common,
            }
        )
    write_jsonl(folder / f"{split}-00000.jsonl", records)


def answer_losses(final: Path, data: Path) -> tuple[float, float]:
    """Validation loss of the yes/no answers with the right images and with shuffled ones."""
    model, processor = load_pretrained(final)
    model.eval()
    validation = RecordDataset(data, "val", ["vqa"])
    batch = ChatCollator(processor, 160)([validation[i] for i in range(len(validation))])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        right = model(**batch).loss.item()
        order = torch.randperm(len(validation), generator=generator)
        batch["pixel_values"] = batch["pixel_values"][order]
        shuffled = model(**batch).loss.item()
    return right, shuffled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps per variant")
    parser.add_argument("--train", type=int, default=4096, help="training images")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    args = parser.parse_args()
    variants = {"presence only": "[vqa]", "presence + captions": "[vqa, caption]"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "squares"
        write_squares(data, "train", args.train, seed=0)
        write_squares(data, "val", 256, seed=1)
        for name, tasks in variants.items():
            recipe = load_recipe(
                "nano-synthetic",
                [
                    f"data.train={data}",
                    f"data.tasks={tasks}",
                    "model.tokenizer.vocab_size=300",
                    f"training.max_steps={args.steps}",
                    f"training.learning_rate={args.lr}",
                    "training.warmup_steps=20",
                    "training.save_strategy='no'",
                    "training.report_to=[]",
                ],
            )
            final = train(recipe, Path(tmp) / name.replace(" ", "-"), resume=False)
            rows.append((name, *answer_losses(final, data)))
    print(f"\n{args.steps} steps of 32 at lr {args.lr}, yes/no answers on 256 held-out images")
    print(f"| {'variant':<20} | loss, right image | loss, shuffled images | gap |")
    print(f"| {'-' * 20} | --- | --- | --- |")
    for name, right, shuffled in rows:
        print(f"| {name:<20} | {right:.4f} | {shuffled:.4f} | {shuffled - right:.4f} |")


if __name__ == "__main__":
    main()
