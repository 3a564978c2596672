"""DIOR-RSVG: visual grounding of referring expressions in DIOR images -> ``refer`` records.

Format (Zhan et al., "RSVG: Exploring Data and Models for Visual Grounding on Remote Sensing
Data", IEEE TGRS 2023; github.com/ZhanYang-nwpu/RSVG-pytorch, ``data_loader.py`` and the sample
``RSVGD/Annotations/00001.xml``)::

    Annotations/00001.xml     Pascal-VOC style, one file per image
    JPEGImages/00001.jpg      800 x 800 images
    train.txt val.txt test.txt

Each ``<object>`` has ``<name>`` (a DIOR class such as ``golffield``), ``<bndbox>`` with
``xmin ymin xmax ymax`` in pixels and ``<description>``, the referring expression. The split
files do **not** list image ids: each line is the 0-based index of one object in the
enumeration of every ``<object>`` of every annotation file, files in name order. (The official
loader counts objects while ``os.walk`` lists the folder; on the authors' Windows file system
that is name order, which is also the only order that does not depend on the file system.)

Records: one ``refer`` record per object of the split with a description: the expression is the
question and ``<ref>expression</ref><box>...</box>`` the answer; the truth object carries the
box, its quad, the vocabulary's category (:mod:`geochat.categories`) and the DIOR class as
``source_category`` (no mask: the dataset has none).

Added in geochat 0.1.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geochat import geometry
from geochat.data_builders.converters.common import (
    REFER_PROMPT,
    ConversionError,
    ImageStore,
    Report,
    conversation,
    progress,
    read_text,
    truth_object,
    write_output,
)
from geochat.grammar import format_hbbs, format_ref
from geochat.records import Record

DATASET = "dior_rsvg"
_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class RsvgObject:
    """One ``<object>`` of an annotation file.

    Attributes:
        index: Position in the enumeration the split files refer to.
        name: DIOR class name as written.
        hbb: ``[x0, y0, x1, y1]`` in pixels.
        description: The referring expression (spaces normalised), or None if absent.
    """

    index: int
    name: str
    hbb: list[float]
    description: str | None


@dataclass(frozen=True)
class RsvgAnnotation:
    """One annotation file: its image file name, declared size and objects."""

    path: Path
    filename: str
    size: tuple[int, int] | None
    objects: list[RsvgObject]


def read_annotations(folder: Path) -> list[RsvgAnnotation]:
    """Reads every ``*.xml`` of ``folder`` in name order, numbering objects across files.

    Raises:
        ConversionError: for a missing folder, invalid XML or a missing or non-numeric field.
    """
    if not folder.is_dir():
        raise ConversionError(folder, "annotation folder not found")
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise ConversionError(folder, "no annotation files (*.xml)")
    annotations, first_index = [], 0
    for path in files:
        annotation = _read_annotation(path, first_index)
        annotations.append(annotation)
        first_index += len(annotation.objects)
    return annotations


def _read_annotation(path: Path, first_index: int) -> RsvgAnnotation:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ConversionError(path, f"not valid XML ({error})") from error
    filename = _text(root, "filename", path)
    objects = [
        _read_object(element, first_index + offset, path)
        for offset, element in enumerate(root.findall("object"))
    ]
    return RsvgAnnotation(path, filename, _read_size(root, path), objects)


def _read_object(element: ET.Element, index: int, path: Path) -> RsvgObject:
    key = f"object {index}"
    name = _text(element, "name", path, key)
    box = element.find("bndbox")
    if box is None:
        raise ConversionError(path, "<object> without <bndbox>", key=key)
    values = [_number(box, tag, path, key) for tag in _BOX_TAGS]
    try:
        hbb = geometry.as_hbb(values).tolist()
    except geometry.GeometryError as error:
        raise ConversionError(path, str(error), key=key) from error
    description = element.findtext("description")
    description = _SPACES.sub(" ", description).strip() if description else None
    return RsvgObject(index, name, hbb, description or None)


def _read_size(root: ET.Element, path: Path) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    return int(_number(size, "width", path, "size")), int(_number(size, "height", path, "size"))


def _text(element: ET.Element, tag: str, path: Path, key: str | None = None) -> str:
    text = element.findtext(tag)
    if text is None or not text.strip():
        raise ConversionError(path, f"missing or empty <{tag}>", key=key)
    return text.strip()


def _number(element: ET.Element, tag: str, path: Path, key: str) -> float:
    text = _text(element, tag, path, key)
    try:
        return float(text)
    except ValueError as error:
        raise ConversionError(path, f"<{tag}> is not a number: {text!r}", key=key) from error


def read_split(path: Path) -> set[int]:
    """Reads a split file: one 0-based object index per line.

    Raises:
        ConversionError: for a missing file or a line that is not a non-negative integer.
    """
    indices = set()
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.isdigit():
            raise ConversionError(path, f"expected an object index, got {text!r}", line=number)
        indices.add(int(text))
    return indices


def _record(
    obj: RsvgObject,
    annotation: RsvgAnnotation,
    image: tuple[str, int, int],
    split: str | None,
) -> Record:
    path, width, height = image
    hbb = geometry.clip_hbb(obj.hbb, width, height)
    truth = truth_object(
        obj.name,
        hbb,
        geometry.hbb_to_quad(hbb),
        object_id=f"{annotation.path.stem}:{obj.index}",
        truncated=bool(hbb.tolist() != obj.hbb),
    )
    answer = format_ref(obj.description, format_hbbs(hbb, width, height))
    record: Record = {
        "id": f"{DATASET}/{split or 'all'}/{obj.index}",
        "image": path,
        "width": width,
        "height": height,
        "task": "refer",
        "conversations": conversation(
            REFER_PROMPT.format(expression=obj.description, box="box"), answer
        ),
        "objects": [truth],
        "source": {"dataset": DATASET, "annotation": annotation.path.name, "object": obj.index},
    }
    if split:
        record["split"] = split
    return record


def _check_size(annotation: RsvgAnnotation, width: int, height: int) -> None:
    if annotation.size is not None and annotation.size != (width, height):
        raise ConversionError(
            annotation.path,
            f"<size> says {annotation.size[0]}x{annotation.size[1]}, "
            f"the image {annotation.filename} is {width}x{height}",
        )


def _usable(obj: RsvgObject, report: Report) -> bool:
    if obj.description is None:
        report.drop("object without a description", obj.name)
        return False
    if "<" in obj.description or ">" in obj.description:
        report.drop("description holding '<' or '>'", obj.name)
        return False
    if obj.hbb[2] <= obj.hbb[0] or obj.hbb[3] <= obj.hbb[1]:
        report.drop("box with no area", obj.name)
        return False
    return True


def convert(
    src: Path,
    out: Path,
    split: str | None = None,
    split_file: Path | None = None,
    link_images: bool = False,
) -> dict[str, Any]:
    """Converts DIOR-RSVG into ``refer`` records.

    Args:
        src: Folder holding ``Annotations/``, ``JPEGImages/`` and the split files.
        out: Output folder (``out/dior_rsvg[_<split>].jsonl``, ``out/images/dior_rsvg/``).
        split: ``train``, ``val`` or ``test`` (reads ``src/<split>.txt``), or None for every
            object.
        split_file: Another file of object indices to use for ``split``.
        link_images: Hard-link images instead of copying them.

    Returns:
        The summary of :func:`data_builders.converters.common.write_output`.

    Raises:
        ConversionError: for missing files, malformed annotations or split indices that name
            no object.
    """
    annotations = read_annotations(src / "Annotations")
    selected = None
    if split or split_file:
        split_path = split_file or src / f"{split}.txt"
        selected = read_split(split_path)
        total = sum(len(annotation.objects) for annotation in annotations)
        beyond = sorted(index for index in selected if index >= total)
        if beyond:
            raise ConversionError(
                split_path, f"indices {beyond[:5]} name no object (there are {total} objects)"
            )
    image_dir = src / "JPEGImages"
    store = ImageStore(image_dir, out, DATASET, link=link_images)
    report = Report()

    def records() -> Iterator[Record]:
        for annotation in progress(annotations, DATASET):
            wanted = [o for o in annotation.objects if selected is None or o.index in selected]
            if not wanted:
                continue
            image = store.add(image_dir / annotation.filename)
            _check_size(annotation, image[1], image[2])
            for obj in wanted:
                if _usable(obj, report):
                    yield _record(obj, annotation, image, split)

    arguments = {"src": src, "split_file": split_file}
    return write_output(out, DATASET, split, records(), store, report, arguments)
