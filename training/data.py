"""Datasets over record shards: JSONL files of records plus the images they name.

A data source is a JSONL file or a build folder (``geochat build``), whose shards are named
``<split>-<NNNNN>.jsonl``. Items are ``{"record": dict, "image": PIL image}``, which
:class:`training.collator.ChatCollator` turns into model inputs.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from geochat.imagery import ImagerySettings
from geochat.records import Record, find_shards, image_path, iter_records
from geochat.training.augment import AUGMENTATIONS, Dihedral, augment, draw_dihedral

MANIFEST = "manifest.json"  # a build folder's manifest (data_builders.shards)


def keep_record(record: Record, split: str | None, tasks: Sequence[str] | None) -> bool:
    """Whether a record belongs to the split (when it names one) and to the chosen tasks."""
    if split is not None and record.get("split", split) != split:
        return False
    return tasks is None or record["task"] in tasks


def split_shards(source: str | Path | Sequence[str | Path], split: str) -> list[Path]:
    """The shards named for a split (``<split>-*.jsonl``, ``<split>.jsonl``) in a source's folders.

    Unlike :func:`geochat.records.find_shards`, this never falls back to every shard: a build
    without ``val`` shards has no validation split here, rather than its training records.

    Raises:
        FileNotFoundError: When a source does not exist.
    """
    if not isinstance(source, str | Path):
        return [shard for one in source for shard in split_shards(one, split)]
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"no such data source: {source}")
    if source.is_file():
        return []
    shards = sorted(source.glob(f"{split}*.jsonl"))
    return [shard for shard in shards if shard.stem == split or shard.stem.startswith(f"{split}-")]


def _question_and_answer(record: Record) -> tuple[str, str]:
    """What the model is told (system and human turns) and what it answers (gpt turns)."""
    turns = record["conversations"]
    question = [turn["value"] for turn in turns if turn["from"] != "gpt"]
    answer = [turn["value"] for turn in turns if turn["from"] == "gpt"]
    return "\n".join(question), "\n".join(answer)


def balance_answers(
    items: list[tuple[Record, Path]], tasks: Sequence[str], seed: int = 0
) -> list[tuple[Record, Path]]:
    """Drops records so that no question can be answered from its words alone.

    Records of the given tasks are grouped by task and question text; within a group, each
    answer is kept at most as often as the group's second most common answer (chosen at random
    with ``seed``), so the most common answer is no likelier than the runner-up and a question
    that always has the same answer ("Are there any tennis courts?" -> "No") is dropped. A model
    trained on what is left must look at the image: the question gives no prior to learn.
    Records of other tasks, and questions asked once, are kept. The order is kept.

    Args:
        items: ``(record, shard)`` pairs.
        tasks: The tasks to balance, e.g. ``["vqa", "count"]``.
        seed: Seed of the choice of which records of an answer are kept.

    Returns:
        The kept pairs.
    """
    groups: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, (record, _) in enumerate(items):
        if record["task"] in tasks:
            question, answer = _question_and_answer(record)
            groups[record["task"], question][answer].append(index)
    generator = random.Random(seed)
    dropped: set[int] = set()
    for answers in groups.values():
        counts = Counter({answer: len(indices) for answer, indices in answers.items()})
        if counts.total() < 2:
            continue
        ranked = counts.most_common(2)
        cap = ranked[1][1] if len(ranked) > 1 else 0
        for indices in answers.values():
            if len(indices) > cap:
                dropped.update(generator.sample(indices, len(indices) - cap))
    return [item for index, item in enumerate(items) if index not in dropped]


def load_image(path: Path) -> Image.Image:
    """Opens a record's image as RGB, with the file named in the error if it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:
        raise OSError(f"cannot read the image {path}: {error}") from error


def training_imagery(source: str | Path | Sequence[str | Path]) -> ImagerySettings | None:
    """The imagery settings that the builds of a training source recorded in their manifests.

    Args:
        source: The recipe's ``data.train``.

    Returns:
        The settings, or None when no build of the source recorded any (public datasets of
        8-bit images, hand-made JSONL).

    Raises:
        ValueError: when the source mixes builds made with different settings: the model
            would then be served one of them, not what it saw.
    """
    found: dict[ImagerySettings, Path] = {}
    for manifest in {shard.parent / MANIFEST for shard in find_shards(source, "train")}:
        if not manifest.is_file():
            continue
        options = json.loads(manifest.read_text()).get("arguments", {}).get("options", {})
        if options.get("imagery") is not None:
            found.setdefault(ImagerySettings.from_dict(options["imagery"]), manifest)
    if len(found) > 1:
        listed = "; ".join(f"{path}: {settings.describe()}" for settings, path in found.items())
        raise ValueError(f"the training builds differ in their imagery settings ({listed})")
    return next(iter(found), None)


def training_native_input(source: str | Path | Sequence[str | Path]) -> dict[str, Any] | None:
    """The tiles a training source was cut into, as a checkpoint's ``native_input``.

    The tile side is the builds' ``tile_size`` (their manifests); the GSD range spans the
    ``gsd`` of the training records (what each tile was read at: a world's own GSD, or the
    build's ``--tile-gsd``), None when no record has one.

    Args:
        source: The recipe's ``data.train``.

    Returns:
        ``{"image_size": int, "gsd": [low, high] | None}``, or None when a build records no
        tile size (public datasets, hand-made JSONL) or the builds differ in it.
    """
    shards = find_shards(source, "train")
    sizes = set()
    for manifest in {shard.parent / MANIFEST for shard in shards}:
        document = json.loads(manifest.read_text()) if manifest.is_file() else {}
        sizes.add(document.get("arguments", {}).get("options", {}).get("tile_size"))
    if len(sizes) != 1 or not isinstance(size := sizes.pop(), int):
        return None
    gsds = [
        float(record["gsd"])
        for shard in shards
        for record in iter_records(shard)
        if isinstance(record.get("gsd"), int | float)
    ]
    return {"image_size": size, "gsd": [min(gsds), max(gsds)] if gsds else None}


def check_augmentation(augmentation: str | None) -> None:
    """Raises ValueError for an augmentation this module does not know."""
    if augmentation is not None and augmentation not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augmentation!r}; known: {AUGMENTATIONS}")


def _item(record: Record, shard: Path, transform: Dihedral | None) -> dict[str, Any]:
    image = load_image(image_path(record, shard))
    if transform is not None:
        record, image = augment(record, image, transform)
    return {"record": record, "image": image}


class RecordDataset(Dataset):
    """Map-style dataset: holds the records (not the images) of a source in memory.

    Args:
        source: A JSONL file, a build folder, or a list of them (mixed in that order).
        split: ``train``, ``val``, ``test`` or None for all.
        tasks: Keep only these tasks; None keeps all.
        limit: Keep at most this many records (the first ones, in shard order).
        balance: Tasks whose answers are balanced per question (see :func:`balance_answers`).
        seed: Seed of the balancing and of the augmentation.
        augmentation: ``"dihedral"`` draws one of the eight flips and quarter turns for each
            item from the seed, the epoch (:meth:`set_epoch`) and the item's index
            (:mod:`training.augment`); None reads records as they are.
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        split: str | None = None,
        tasks: Sequence[str] | None = None,
        limit: int | None = None,
        balance: Sequence[str] = (),
        seed: int = 0,
        augmentation: str | None = None,
    ):
        check_augmentation(augmentation)
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0
        pairs: Iterator[tuple[Record, Path]] = (
            (record, shard)
            for shard in find_shards(source, split)
            for record in iter_records(shard)
            if keep_record(record, split, tasks)
        )
        if balance:
            pairs = iter(balance_answers(list(pairs), balance, seed))
        # Without balancing, reading stops at the limit: a few records of a large source are cheap.
        self.items: list[tuple[Record, Path]] = list(itertools.islice(pairs, limit))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record, shard = self.items[index]
        transform = draw_dihedral(self.seed, self.epoch, index) if self.augmentation else None
        return _item(record, shard, transform)

    def set_epoch(self, epoch: int) -> None:
        """Draws new transforms for a new epoch (the trainer calls this)."""
        self.epoch = epoch

    @property
    def records(self) -> list[Record]:
        """The records, in order."""
        return [record for record, _ in self.items]


class StreamingRecordDataset(IterableDataset):
    """Iterable dataset for sources too large to hold: reads shards lazily, one at a time.

    Shards are dealt to data-loader workers round robin, and records are shuffled within a
    bounded buffer, so memory stays flat whatever the size of the source.

    Args:
        source: A JSONL file, a build folder, or a list of them (mixed in that order).
        split: See :class:`RecordDataset`.
        tasks: See :class:`RecordDataset`.
        shuffle_buffer: Records held for shuffling; 0 keeps the shard order.
        seed: Seed of the shard order and of the shuffle; change it per epoch with
            :meth:`set_epoch`.
        augmentation: See :class:`RecordDataset`; the index is the item's place in this
            worker's stream.
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        split: str | None = None,
        tasks: Sequence[str] | None = None,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        augmentation: str | None = None,
    ):
        check_augmentation(augmentation)
        self.augmentation = augmentation
        self.shards = find_shards(source, split)
        self.split = split
        self.tasks = tasks
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Changes the shuffle for a new epoch (the trainer calls this)."""
        self.epoch = epoch

    def _records(self, shards: list[Path]) -> Iterator[tuple[Record, Path]]:
        for shard in shards:
            for record in iter_records(shard):
                if keep_record(record, self.split, self.tasks):
                    yield record, shard

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        worker_id = 0 if worker is None else worker.id
        for index, pair in enumerate(self._shuffled(worker)):
            transform = None
            if self.augmentation:
                transform = draw_dihedral(self.seed, self.epoch, worker_id, index)
            yield _item(*pair, transform)

    def _shuffled(self, worker: Any) -> Iterator[tuple[Record, Path]]:
        """This worker's records, in an order shuffled within the buffer."""
        generator = random.Random(self.seed + self.epoch)
        shards = list(self.shards)
        if self.shuffle_buffer:
            generator.shuffle(shards)
        if worker is not None:
            shards = shards[worker.id :: worker.num_workers]
        buffer: list[tuple[Record, Path]] = []
        for pair in self._records(shards):
            if len(buffer) < self.shuffle_buffer:
                buffer.append(pair)
                continue
            slot = generator.randrange(len(buffer))
            buffer[slot], pair = pair, buffer[slot]
            yield pair
        generator.shuffle(buffer)
        yield from buffer
