"""refGeo (GeoGround's grounding set): referring expressions with boxes -> ``refer`` records.

Format (Zhou et al., "GeoGround: A Unified Large Vision-Language Model for Remote Sensing
Visual Grounding", arXiv 2411.11904; github.com/zytx121/GeoGround describes the set but ships no
loader; the released set keeps its annotations in ``metadata/``, and the public code that
trains and evaluates on refGeo reads the same files from ``metainfo/``, so both are read:
``<folder>/<subset>_<split>.jsonl`` with fields ``image_id``, ``question``, ``bbox``,
``poly``, ``question_id``, ``dataset``)::

    metadata/dior_rsvg_train.jsonl ...    one JSON object per line (subsets: avvg, dior_rsvg,
                                          geochat, rsvg, vrsbench; splits: train, val, test);
                                          metainfo/ in the training code's layout
    images/<dataset>/<image_id>           the images
    masks/<dataset>/<image stem>_<question_id>.png   optional SAM masks

A row: ``question`` is the referring expression, ``bbox`` ``[x0, y0, x1, y1]`` in pixels and
``poly`` the four ``[x, y]`` corners of the oriented box (either may be null; for the subsets
without orientation ``poly`` is the box itself). A few rows name several objects (AVVG's
generalised grounding): then ``bbox`` / ``poly`` hold one entry per object. Other fields of a
row (AVVG's ``bbox_3d`` and ``pitch_angle``, ...) are not converted: the summary counts each
under "field not converted".

Records: per row one ``refer`` record answering with ``<box>`` and, when the row has a usable
``poly``, one answering with ``<quad>`` (``--geometry`` picks). Truth objects carry the box, the
quad (the box's own corners when there is no ``poly``), the category the expression names
(:func:`geochat.categories.find_in_phrase`; the expression itself is ``source_category``)
and, for single-object rows with a mask file, the mask.

Added in geochat 0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from geochat import geometry
from geochat.cliargs import Flag
from geochat.data_builders.converters.common import (
    REFER_PROMPT,
    ConversionError,
    ImageStore,
    Report,
    conversation,
    inside_image,
    progress,
    read_binary_mask,
    read_jsonl,
    truth_object,
    write_output,
)
from geochat.grammar import format_hbbs, format_quads, format_ref
from geochat.records import Record

DATASET = "refgeo"
GEOMETRIES = ("hbb", "quad")
SPLITS = ("train", "val", "test")
BOX_WORDS = {"hbb": "box", "quad": "oriented box"}
# Annotation folders: the released layout first, then the training code's.
ANNOTATION_FOLDERS = ("metadata", "metainfo")
# The fields of a row that records carry.
FIELDS = ("image_id", "question", "bbox", "poly", "question_id", "dataset")


@dataclass(frozen=True)
class RefGeoRow:
    """One annotation row, checked.

    Attributes:
        subset: Sub-dataset (the image folder), e.g. ``"dior_rsvg"``.
        image_id: Image file name inside ``images/<subset>/``.
        question: The referring expression.
        question_id: The row's id (its line number when the row has none).
        hbbs: ``[N, 4]`` pixel boxes, or None.
        quads: ``[N, 4, 2]`` pixel corners, or None.
    """

    subset: str
    image_id: str
    question: str
    question_id: str
    hbbs: np.ndarray | None
    quads: np.ndarray | None


def annotation_files(src: Path, split: str | None, subsets: tuple[str, ...] | None) -> list[Path]:
    """The annotation files to read (``metadata/``, else ``metainfo/``), in name order.

    Raises:
        ConversionError: if neither folder exists or no file matches.
    """
    folders = [src / name for name in ANNOTATION_FOLDERS if (src / name).is_dir()]
    if not folders:
        raise ConversionError(src, f"no annotation folder ({' or '.join(ANNOTATION_FOLDERS)})")
    folder = folders[0]
    files = [
        path
        for path in sorted(folder.glob("*.jsonl"))
        if (split is None or path.stem.endswith(f"_{split}"))
        and (subsets is None or _subset_of(path) in subsets)
    ]
    if not files:
        raise ConversionError(folder, f"no annotation file for split {split!r}, subsets {subsets}")
    return files


def _subset_of(path: Path) -> str:
    """``dior_rsvg_train.jsonl`` -> ``dior_rsvg``."""
    stem, _, last = path.stem.rpartition("_")
    return stem if last in SPLITS and stem else path.stem


def _split_of(path: Path) -> str | None:
    last = path.stem.rpartition("_")[2]
    return last if last in SPLITS else None


def read_rows(path: Path, report: Report) -> Iterator[tuple[int, RefGeoRow]]:
    """Reads one annotation file strictly, yielding ``(line number, row)``.

    Fields of a row that records do not carry are counted in ``report``.

    Raises:
        ConversionError: naming the line of invalid JSON, a missing field or a malformed box.
    """
    for number, data in read_jsonl(path):
        row = _row(data, path, number)
        report.unused_fields(data, FIELDS)
        yield number, row


def _row(data: Any, path: Path, number: int) -> RefGeoRow:
    if not isinstance(data, dict):
        raise ConversionError(path, "expected a JSON object", line=number)
    for key in ("image_id", "question"):
        if not isinstance(data.get(key), str):
            raise ConversionError(path, f"missing or non-string {key!r}", line=number, key=key)
    try:
        hbbs = None if data.get("bbox") is None else _hbbs(data["bbox"])
        quads = None if data.get("poly") is None else _quads(data["poly"])
    except (geometry.GeometryError, ValueError) as error:
        raise ConversionError(path, str(error), line=number) from error
    if hbbs is not None and quads is not None and len(hbbs) != len(quads):
        raise ConversionError(path, f"{len(hbbs)} boxes but {len(quads)} polys", line=number)
    return RefGeoRow(
        subset=str(data.get("dataset") or _subset_of(path)),
        image_id=data["image_id"],
        question=" ".join(data["question"].split()),
        question_id=str(data.get("question_id", number)),
        hbbs=hbbs,
        quads=quads,
    )


def _hbbs(value: Any) -> np.ndarray:
    """``[x0, y0, x1, y1]`` or a list of them -> ``[N, 4]``."""
    boxes = np.asarray(value, dtype=np.float64)
    boxes = boxes[None] if boxes.shape == (4,) else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise ValueError(f"bbox must be [x0, y0, x1, y1] or a list of them, got {value!r:.80}")
    return geometry.as_hbbs(boxes)


def _quads(value: Any) -> np.ndarray:
    """Four ``[x, y]`` corners (or 8 numbers), or a list of them -> ``[N, 4, 2]``."""
    corners = np.asarray(value, dtype=np.float64)
    if corners.shape in ((4, 2), (8,)):
        corners = corners[None]
    if corners.ndim == 2 and corners.shape[1] == 8:
        corners = corners.reshape(-1, 4, 2)
    if corners.ndim != 3 or corners.shape[1:] != (4, 2) or len(corners) == 0:
        raise ValueError(f"poly must be four [x, y] corners or a list of them, got {value!r:.80}")
    return np.stack([geometry.as_quad(quad) for quad in corners])


def _objects(
    row: RefGeoRow, width: int, height: int, mask: np.ndarray | None
) -> tuple[list[dict[str, Any]], bool]:
    """The truth objects of a row (clipped to the image) and whether its quads are usable."""
    count = len(row.hbbs) if row.hbbs is not None else len(row.quads)
    usable_quads = row.quads is not None and all(
        geometry.quad_to_polygon(quad).area > 0 for quad in row.quads
    )
    objects = []
    for index in range(count):
        hbb = row.hbbs[index] if row.hbbs is not None else geometry.quad_to_hbb(row.quads[index])
        clipped_hbb = geometry.clip_hbb(hbb, width, height)
        quad = row.quads[index] if usable_quads else geometry.hbb_to_quad(clipped_hbb)
        clipped_quad, truncated = inside_image(quad, width, height)
        if (
            clipped_quad is None
            or clipped_hbb[2] <= clipped_hbb[0]
            or clipped_hbb[3] <= clipped_hbb[1]
        ):
            return [], False
        objects.append(
            truth_object(
                row.question,
                clipped_hbb,
                clipped_quad,
                mask=geometry.mask_to_rle(mask) if mask is not None and count == 1 else None,
                object_id=f"{row.subset}/{row.question_id}/{index}",
                truncated=truncated or bool(np.any(clipped_hbb != hbb)),
            )
        )
    return objects, usable_quads


def _row_records(
    row: RefGeoRow,
    image: tuple[str, int, int],
    mask: np.ndarray | None,
    options: dict[str, Any],
    report: Report,
) -> Iterator[Record]:
    path, width, height = image
    if not row.question or "<" in row.question or ">" in row.question:
        report.drop("question empty or holding '<' or '>'", row.subset)
        return
    objects, usable_quads = _objects(row, width, height, mask)
    if not objects:
        report.drop("object with no area inside the image", row.subset)
        return
    for kind in options["geometry"]:
        if kind == "quad" and not usable_quads:
            report.drop("no usable poly for a quad record", row.subset)
            continue
        if kind == "hbb":
            geometry_text = format_hbbs([obj["hbb"] for obj in objects], width, height)
        else:
            geometry_text = format_quads([obj["quad"] for obj in objects], width, height)
        prompt = REFER_PROMPT.format(expression=row.question, box=BOX_WORDS[kind])
        record: Record = {
            "id": f"{DATASET}/{options['file']}/{options['line']}/{kind}",
            "image": path,
            "width": width,
            "height": height,
            "task": "refer",
            "conversations": conversation(prompt, format_ref(row.question, geometry_text)),
            "objects": objects,
            "source": {"dataset": DATASET, "subset": row.subset, "question_id": row.question_id},
        }
        if options["split"]:
            record["split"] = options["split"]
        yield record


def _mask_of(src: Path, row: RefGeoRow, width: int, height: int) -> np.ndarray | None:
    """The row's SAM mask when its file exists (GeoGround's naming), else None."""
    path = src / "masks" / row.subset / f"{Path(row.image_id).stem}_{row.question_id}.png"
    return read_binary_mask(path, width, height) if path.is_file() else None


def convert(
    src: Path,
    out: Path,
    split: str | None = None,
    geometry_kinds: Annotated[tuple[str, ...], Flag("--geometry", choices=GEOMETRIES)] = GEOMETRIES,
    subsets: tuple[str, ...] | None = None,
    link_images: bool = False,
) -> dict[str, Any]:
    """Converts refGeo into ``refer`` records.

    Args:
        src: refGeo root, holding ``metadata/`` (or ``metainfo/``), ``images/`` and optionally
            ``masks/``.
        out: Output folder (``out/refgeo[_<split>].jsonl``, ``out/images/refgeo/``).
        split: ``train``, ``val`` or ``test`` (files ``*_<split>.jsonl``), or None for all.
        geometry_kinds: Answers to write per row, among ``hbb`` and ``quad``.
        subsets: Sub-datasets to read (file name prefixes), or None for all.
        link_images: Hard-link images instead of copying them.

    Returns:
        The summary of :func:`data_builders.converters.common.write_output`.

    Raises:
        ConversionError: for missing files or images and malformed rows.
    """
    if not geometry_kinds or set(geometry_kinds) - set(GEOMETRIES):
        raise ValueError(f"geometry_kinds must be a non-empty subset of {GEOMETRIES}")
    files = annotation_files(src, split, subsets)
    store = ImageStore(src / "images", out, DATASET, link=link_images)
    report = Report()

    def records() -> Iterator[Record]:
        for path in progress(files, DATASET):
            options = {
                "file": path.stem,
                "split": split or _split_of(path),
                "geometry": geometry_kinds,
            }
            for line, row in read_rows(path, report):
                if row.hbbs is None and row.quads is None:
                    report.drop("row without bbox or poly", row.subset)
                    continue
                image = store.add(src / "images" / row.subset / row.image_id)
                mask = _mask_of(src, row, image[1], image[2])
                yield from _row_records(row, image, mask, {**options, "line": line}, report)

    arguments = {"src": src, "geometry_kinds": geometry_kinds, "subsets": subsets}
    return write_output(out, DATASET, split, records(), store, report, arguments)
