"""RRSIS-D: referring remote-sensing image segmentation -> ``segment`` records.

Format (Liu et al., "Rotated Multi-Scale Interaction Network for Referring Remote Sensing Image
Segmentation", CVPR 2024; github.com/Lsan2401/RMSIN and SegEarth-R1's loader, both reading it
with the refer API ``refer/refer.py``)::

    rrsisd/instances.json              COCO: images, annotations, categories
    rrsisd/refs(unc).p                 the referring expressions (a Python pickle)
    images/rrsisd/JPEGImages/<file_name>

``refs(unc).p`` holds a list of refs ``{"ref_id", "ann_id", "image_id", "category_id",
"split": "train" | "val" | "test", "sentences": [{"raw", "sent", "sent_id", "tokens"}, ...]}``;
``ann_id`` names the COCO annotation whose ``segmentation`` is the target: polygons
``[[x1, y1, x2, y2, ...], ...]`` or COCO RLE (one dict or a list of dicts, all of them merged,
as the refer API's ``getMask`` sums them).

Pickles can run code when loaded, so ``refs(unc).p`` is read with an unpickler that refuses
every class and function (plain dicts, lists, strings and numbers need none) and fails with a
clear error on anything else. The same content as JSON (``refs(unc).json``, e.g. exported once
with ``json.dump``) is read in preference when present, or given with ``--refs``.

Records: one ``segment`` record per sentence (or only the first, ``--sentences first``): the
sentence is the question, ``<ref>sentence</ref><seg>N|...</seg>`` the answer (an N x N
text-mask) and the truth object the full-resolution mask as RLE with its box and min-area quad.

Added in geochat 0.1.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from shapely.geometry import MultiPolygon, Polygon

from geochat import categories, geometry
from geochat.cliargs import Flag
from geochat.data_builders.converters.common import (
    ConversionError,
    ImageStore,
    Report,
    conversation,
    mask_truth,
    progress,
    read_json,
    read_text,
    write_output,
)
from geochat.grammar import DEFAULT_GRID, GRID_SIDES, format_mask, format_ref
from geochat.records import Record

DATASET = "rrsisd"
PROMPT = 'Segment the object described as "{expression}".'
SENTENCE_CHOICES = ("all", "first")
_SPACES = re.compile(r"\s+")


class _ContainersOnly(pickle.Unpickler):
    """An unpickler for plain data: it refuses to import anything but ``set``/``frozenset``."""

    _ALLOWED = frozenset({("builtins", "set"), ("builtins", "frozenset")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only plain containers, strings and numbers"
        )


def load_refs(path: Path) -> list[dict[str, Any]]:
    """Loads the refs from JSON or, safely, from the original pickle.

    Raises:
        ConversionError: for a missing file, invalid content or anything but a list of dicts.
    """
    if not path.is_file():
        raise ConversionError(path, "refs file not found")
    try:
        if path.suffix == ".json":
            refs = json.loads(read_text(path))
        else:
            with path.open("rb") as handle:
                refs = _ContainersOnly(handle, encoding="utf-8").load()
    except (json.JSONDecodeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise ConversionError(path, f"cannot read the refs ({error})") from error
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise ConversionError(path, "expected a list of ref objects")
    return refs


def find_refs(annotation_dir: Path) -> Path:
    """``refs(unc).json`` if present, else ``refs(unc).p``."""
    exported = annotation_dir / "refs(unc).json"
    return exported if exported.is_file() else annotation_dir / "refs(unc).p"


def load_instances(path: Path) -> tuple[dict[int, Any], dict[int, Any], dict[int, str]]:
    """Reads ``instances.json`` into images, annotations and category names by id.

    Raises:
        ConversionError: for a missing file, invalid JSON or a missing key.
    """
    data = read_json(path)
    try:
        images = {item["id"]: item for item in data["images"]}
        annotations = {item["id"]: item for item in data["annotations"]}
        categories = {item["id"]: str(item["name"]) for item in data["categories"]}
    except (KeyError, TypeError) as error:
        raise ConversionError(
            path, f"expected COCO images/annotations/categories ({error!r})"
        ) from error
    return images, annotations, categories


def segmentation_mask(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """Rasterises a COCO segmentation (polygons, an RLE or a list of RLEs) to ``[H, W]`` bools.

    Args:
        segmentation: The annotation's ``segmentation`` value.
        height: Image height in pixels.
        width: Image width in pixels.
        where: Location for error messages.

    Raises:
        ValueError: naming ``where`` for a malformed segmentation or an RLE of another size.
    """
    if isinstance(segmentation, dict):
        segmentation = [segmentation]
    if not isinstance(segmentation, list) or not segmentation:
        raise ValueError(f"{where}: segmentation must be polygons or RLE, got {segmentation!r:.80}")
    if all(isinstance(part, dict) for part in segmentation):
        return _rle_union(segmentation, height, width, where)
    if all(isinstance(part, list) for part in segmentation):
        return geometry.rasterize(_polygons(segmentation, where), height, width)
    raise ValueError(f"{where}: segmentation mixes polygons and RLE")


def _rle_union(rles: list[dict[str, Any]], height: int, width: int, where: str) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for rle in rles:
        try:
            part = geometry.rle_to_mask(rle)
        except geometry.GeometryError as error:
            raise ValueError(f"{where}: {error}") from error
        if part.shape != mask.shape:
            raise ValueError(
                f"{where}: RLE size {list(part.shape)} is not the image's {[height, width]}"
            )
        mask |= part
    return mask


def _polygons(rings: list[list[Any]], where: str) -> MultiPolygon:
    polygons = []
    for ring in rings:
        if len(ring) % 2 or not all(isinstance(v, int | float) for v in ring):
            raise ValueError(f"{where}: a polygon must be an even list of numbers")
        if len(ring) >= 6:  # fewer than 3 points enclose nothing
            polygons.append(Polygon(np.reshape(ring, (-1, 2))))
    return MultiPolygon(polygons)


def _sentences(ref: dict[str, Any], which: str) -> list[tuple[str, str]]:
    """``(sentence id, text)`` pairs of a ref; the text is ``raw`` (else ``sent``), tidied."""
    pairs = []
    for index, sentence in enumerate(ref["sentences"]):
        text = sentence.get("raw") or sentence.get("sent") or ""
        pairs.append((str(sentence.get("sent_id", index)), _SPACES.sub(" ", text).strip()))
    return pairs[:1] if which == "first" else pairs


def _check_ref(ref: dict[str, Any], index: int, path: Path) -> None:
    for key in ("ref_id", "ann_id", "image_id", "split", "sentences"):
        if key not in ref:
            raise ConversionError(path, f"ref without {key!r}", key=f"refs[{index}]")
    if not isinstance(ref["sentences"], list) or not all(
        isinstance(sentence, dict) for sentence in ref["sentences"]
    ):
        raise ConversionError(path, "'sentences' must be a list of objects", key=f"refs[{index}]")


@dataclass
class _Source:
    """What the records of one ref need: the instances, the image store and the options."""

    refs_path: Path
    instances_path: Path
    images: dict[int, Any]
    annotations: dict[int, Any]
    categories: dict[int, str]
    store: ImageStore
    sentences: str
    grid: int

    def records(self, ref: dict[str, Any], index: int, report: Report) -> Iterator[Record]:
        """The records of one ref: one per kept sentence, sharing one truth mask."""
        if ref["image_id"] not in self.images or ref["ann_id"] not in self.annotations:
            raise ConversionError(
                self.refs_path, "image_id or ann_id not in instances.json", key=f"refs[{index}]"
            )
        image_info, ann = self.images[ref["image_id"]], self.annotations[ref["ann_id"]]
        path, width, height = self.store.add(self.store.source_root / image_info["file_name"])
        where = f"annotation {ref['ann_id']}"
        try:
            mask = segmentation_mask(ann.get("segmentation"), height, width, where)
        except ValueError as error:
            raise ConversionError(self.instances_path, str(error)) from error
        category = self.categories.get(ann.get("category_id"), categories.UNKNOWN)
        truth = mask_truth(category, mask, object_id=f"ann:{ref['ann_id']}")
        if truth is None:
            report.drop("empty mask", category)
            return
        mask_text = format_mask(mask, self.grid)
        for sent_id, sentence in _sentences(ref, self.sentences):
            if not sentence or "<" in sentence or ">" in sentence:
                report.drop("sentence empty or holding '<' or '>'", category)
                continue
            answer = format_ref(sentence, mask_text)
            yield {
                "id": f"{DATASET}/{ref['split']}/{ref['ref_id']}/{sent_id}",
                "image": path,
                "width": width,
                "height": height,
                "task": "segment",
                "conversations": conversation(PROMPT.format(expression=sentence), answer),
                "objects": [truth],
                "source": {"dataset": DATASET, "ref_id": ref["ref_id"], "ann_id": ref["ann_id"]},
                "split": ref["split"],
            }


def convert(
    src: Path,
    out: Path,
    split: str | None = None,
    refs: Path | None = None,
    sentences: Annotated[str, Flag(choices=SENTENCE_CHOICES)] = "all",
    grid: Annotated[int, Flag(choices=GRID_SIDES)] = DEFAULT_GRID,
    link_images: bool = False,
) -> dict[str, Any]:
    """Converts RRSIS-D into ``segment`` records.

    Args:
        src: RRSIS-D root, holding ``rrsisd/`` and ``images/rrsisd/JPEGImages/``.
        out: Output folder (``out/rrsisd[_<split>].jsonl``, ``out/images/rrsisd/``).
        split: ``train``, ``val`` or ``test`` (the refs' ``split``), or None for all.
        refs: The refs file (JSON or pickle); default ``rrsisd/refs(unc).json``, else ``.p``.
        sentences: ``all`` (one record per sentence) or ``first``.
        grid: Side of the text-mask grid in the answers (16 or 32).
        link_images: Hard-link images instead of copying them.

    Returns:
        The summary of :func:`data_builders.converters.common.write_output`.

    Raises:
        ConversionError: for missing files and malformed refs, instances or segmentations.
    """
    if sentences not in SENTENCE_CHOICES or grid not in GRID_SIDES:
        raise ValueError(f"sentences must be one of {SENTENCE_CHOICES}, grid one of {GRID_SIDES}")
    annotation_dir = src / DATASET
    refs_path = refs or find_refs(annotation_dir)
    all_refs = load_refs(refs_path)
    instances_path = annotation_dir / "instances.json"
    image_dir = src / "images" / DATASET / "JPEGImages"
    source = _Source(
        refs_path,
        instances_path,
        *load_instances(instances_path),
        ImageStore(image_dir, out, DATASET, link=link_images),
        sentences,
        grid,
    )
    report = Report()

    def records() -> Iterator[Record]:
        for index, ref in enumerate(progress(all_refs, DATASET)):
            _check_ref(ref, index, refs_path)
            if split is None or ref["split"] == split:
                yield from source.records(ref, index, report)

    arguments = {"src": src, "refs": refs_path, "sentences": sentences, "grid": grid}
    return write_output(out, DATASET, split, records(), source.store, report, arguments)
