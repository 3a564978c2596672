"""Curricula from built records: pointing questions on small objects, with a share of the rest.

A pointing question asks for one small object by its category alone ("Where is the tree?") and
is answered with one box. geochat-nano v2, trained on every task at once, never learned to
point: rolled images left its boxes for trees and buildings where they were. A stage on a
selection where such questions are common (NANO.md: the simplest task first) taught it; a
later stage on a wider selection brings the other tasks back.

    python -m geochat.data_builders.curriculum --builds data/nano128 data/nano128b \
        --out data/nano-pointing --refer-fraction 0 --other-fraction 0.03

The output is one JSONL shard of the chosen records (all pointing questions, and each other
refer record or other record with the given probability), whose image paths point back into
the builds; no image is copied.
"""

from __future__ import annotations

import argparse
import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from geochat.records import Record, find_shards, image_path, iter_records, write_jsonl

# How pointing questions end after "the <category>" (the refer task's plain templates).
POINTING_ENDINGS = ("?", ".", " and answer")
MAX_EXTENT = 0.4  # a small object's box spans at most this share of the image's side
OTHER_TASKS = ("vqa", "count", "identify", "caption")


def is_pointing(record: Record, max_extent: float = MAX_EXTENT) -> bool:
    """A refer question naming one small object by its category alone, answered with one box."""
    if record["task"] != "refer" or len(record.get("objects") or []) != 1:
        return False
    answer = record["conversations"][1]["value"]
    if not answer.startswith("<box>") or "],[" in answer:
        return False
    thing = record["objects"][0]
    question = record["conversations"][0]["value"]
    if not any(f"the {thing['category']}{end}" in question for end in POINTING_ENDINGS):
        return False
    x0, y0, x1, y1 = thing["hbb"]
    return max((x1 - x0) / record["width"], (y1 - y0) / record["height"]) <= max_extent


def kind_of(record: Record) -> str | None:
    """``"pointing"``, ``"refer"`` (any other refer record), ``"other"``, or None (not used)."""
    if is_pointing(record):
        return "pointing"
    if record["task"] == "refer":
        return "refer"
    return "other" if record["task"] in OTHER_TASKS else None


def select(
    builds: Sequence[str | Path],
    out: Path,
    refer_fraction: float,
    other_fraction: float,
    seed: int = 0,
) -> Iterator[tuple[Record, str]]:
    """Yields the chosen records with their kind, image paths made relative to ``out``."""
    rng = random.Random(seed)
    keep = {"pointing": 1.0, "refer": refer_fraction, "other": other_fraction}
    for shard in tqdm(find_shards(list(builds), "train"), desc="curriculum", unit="shard"):
        for record in iter_records(shard):
            kind = kind_of(record)
            if kind is None or rng.random() >= keep[kind]:
                continue
            relative = os.path.relpath(image_path(record, shard), out)
            yield {**record, "image": relative}, kind


def write_curriculum(
    builds: Sequence[str | Path],
    out: str | Path,
    refer_fraction: float,
    other_fraction: float,
    seed: int = 0,
) -> Counter:
    """Writes the selection, shuffled, to ``out/train-00000.jsonl``; returns counts per kind."""
    out = Path(out).resolve()
    chosen = list(select(builds, out, refer_fraction, other_fraction, seed))
    random.Random(seed).shuffle(chosen)
    write_jsonl(out / "train-00000.jsonl", (record for record, _ in chosen))
    return Counter(kind for _, kind in chosen)


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: select from builds, write the shard, say what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", nargs="+", required=True, help="record build folders")
    parser.add_argument("--out", required=True, help="folder for the selection")
    parser.add_argument("--refer-fraction", type=float, default=0.0)
    parser.add_argument("--other-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = write_curriculum(
        args.builds, args.out, args.refer_fraction, args.other_fraction, args.seed
    )
    summary = ", ".join(f"{kind} {count}" for kind, count in counts.most_common())
    print(f"wrote {counts.total()} records ({summary}) to {Path(args.out) / 'train-00000.jsonl'}")


if __name__ == "__main__":
    main()
