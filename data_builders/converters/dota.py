"""DOTA: oriented object detection in aerial images -> ``grounded_caption``, ``ground`` records.

Format (DOTA v1.0 / v1.5 / v2.0, https://captain-whu.github.io/DOTA/dataset.html, and the
DOTA devkit's ``dota_utils.parse_dota_poly``): one folder per split holding ``images/`` (PNG)
and ``labelTxt/``, one ``<image stem>.txt`` per image. A label file starts with up to two
optional header lines, ``imagesource:<source>`` and ``gsd:<metres per pixel or null>``, then
has one object per line::

    x1 y1 x2 y2 x3 y3 x4 y4 category difficult

four corners in pixels (clockwise as annotated), a category such as ``plane``,
``storage-tank`` or ``small-vehicle``, and ``difficult`` 0 or 1 (the devkit reads a missing
``difficult`` as 0). A label file with no object line is an image with nothing to find.
Versions differ in their classes (:data:`geochat.categories.DOTA_CLASSES`: v1.0 has 15, v1.5
adds ``container-crane``, v2.0 ``airport`` and ``helipad``); a class outside the version read
(``--version``, else the one a folder name such as ``labelTxt-v1.5`` states, else 2.0) is
converted with a warning, counted in the report.

Records: per image one ``grounded_caption`` record ("find every object", all objects, one
``<ref>`` per category; ``<none>`` for an image without objects) and per category present one
``ground`` record, the find-all question of :data:`geochat.prompts.GROUND_QUESTIONS` (its first
template, so a conversion is reproducible) answered with every object of that category
(``Locate all planes.`` -> ``<ref>planes</ref><box>[[...],[...]]</box>`` with ``--box hbb``).
Truth objects carry the canonical quad, its enclosing box, the rasterised quad as mask
(``--no-masks`` leaves it out), the vocabulary's category and DOTA's class as
``source_category``; objects that stick out of the image are clipped (``truncated``) and
``difficult`` is kept in ``attributes``. The label's ``gsd`` goes into the record. Images are
not tiled: DOTA's large images (up to about 4000 x 4000) are converted whole.

Added in geochat 0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from geochat import categories, geometry, prompts
from geochat.cliargs import Flag
from geochat.data_builders.converters.common import (
    ConversionError,
    ImageStore,
    Report,
    conversation,
    find_image,
    inside_image,
    progress,
    read_text,
    truth_object,
    write_output,
)
from geochat.grammar import NONE, format_hbbs, format_quads, format_ref
from geochat.records import Record

DATASET = "dota"
TASKS = ("grounded_caption", "ground")
BOX_KINDS = ("quad", "hbb")
GROUNDED_CAPTION_PROMPT = "Find every object in this image and give the {box} of each."
BOX_WORDS = {"quad": "oriented boxes", "hbb": "boxes"}
# The question form (geochat.prompts.GROUND_QUESTIONS) of each --box choice.
BOX_FORMS = {"quad": "quad", "hbb": "box"}
VERSIONS = tuple(categories.DOTA_CLASSES)
LATEST = VERSIONS[-1]
_VERSION_IN_NAME = re.compile(r"v(\d\.\d)(?!\d)")


@dataclass(frozen=True)
class DotaObject:
    """One annotated object of a label file.

    Attributes:
        category: Category as written, e.g. ``"storage-tank"``.
        quad: ``[4, 2]`` corners in pixels, as written.
        difficult: The annotators' "difficult" flag.
        line: Line number in the label file.
    """

    category: str
    quad: np.ndarray
    difficult: bool
    line: int


@dataclass(frozen=True)
class DotaLabels:
    """The content of one label file."""

    objects: list[DotaObject]
    gsd: float | None
    image_source: str | None


def read_labels(path: Path) -> DotaLabels:
    """Reads a DOTA label file strictly.

    Raises:
        ConversionError: naming the line of a header after objects, a wrong field count, a
            coordinate that is not a number or a ``difficult`` other than 0 or 1.
    """
    header: dict[str, str] = {}
    objects: list[DotaObject] = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        key, colon, value = text.partition(":")
        if colon and key.strip() in ("imagesource", "gsd"):
            if objects:
                raise ConversionError(path, f"header line {key!r} after objects", line=number)
            header[key.strip()] = value.strip()
        else:
            objects.append(_read_object(text, path, number))
    return DotaLabels(objects, _read_gsd(header.get("gsd"), path), header.get("imagesource"))


def _read_object(text: str, path: Path, number: int) -> DotaObject:
    fields = text.split()
    if len(fields) not in (9, 10):
        raise ConversionError(
            path,
            f"expected 'x1 y1 x2 y2 x3 y3 x4 y4 category [difficult]', got {len(fields)} fields",
            line=number,
        )
    try:
        corners = np.array([float(value) for value in fields[:8]]).reshape(4, 2)
    except ValueError as error:
        raise ConversionError(path, f"a corner is not a number ({error})", line=number) from error
    if not np.all(np.isfinite(corners)):
        raise ConversionError(path, "a corner is not finite", line=number)
    difficult = fields[9] if len(fields) == 10 else "0"
    if difficult not in ("0", "1"):
        raise ConversionError(path, f"difficult must be 0 or 1, got {difficult!r}", line=number)
    return DotaObject(fields[8], corners, difficult == "1", number)


def _read_gsd(value: str | None, path: Path) -> float | None:
    if value is None or value.lower() in ("null", "none", ""):
        return None
    try:
        gsd = float(value)
    except ValueError as error:
        raise ConversionError(path, f"gsd must be a number or null, got {value!r}") from error
    if not np.isfinite(gsd) or gsd <= 0:
        raise ConversionError(path, f"gsd must be positive, got {value!r}")
    return gsd


def version_of(label_dir: Path, version: str | None) -> str:
    """The DOTA version whose classes are expected: given, else named by a folder, else 2.0.

    Raises:
        ValueError: for a version DOTA does not have.
    """
    if version is None:
        named = [found for part in label_dir.parts for found in _VERSION_IN_NAME.findall(part)]
        version = next((found for found in reversed(named) if found in VERSIONS), LATEST)
    if version not in VERSIONS:
        raise ValueError(f"DOTA version must be one of {', '.join(VERSIONS)}, got {version!r}")
    return version


def _truth(
    obj: DotaObject, stem: str, width: int, height: int, with_mask: bool
) -> dict[str, Any] | None:
    """The record object of one annotation, clipped to the image; None if nothing is left."""
    polygon = geometry.quad_to_polygon(obj.quad)
    if polygon.is_empty or polygon.area == 0:
        return None
    quad, truncated = inside_image(obj.quad, width, height)
    if quad is None:
        return None
    mask = None
    if with_mask:
        pixels = geometry.rasterize(polygon, height, width)
        if not pixels.any():
            return None
        mask = geometry.mask_to_rle(pixels)
    return truth_object(
        obj.category,
        geometry.clip_hbb(geometry.quad_to_hbb(obj.quad), width, height),
        quad,
        mask,
        object_id=f"{stem}:{obj.line}",
        truncated=truncated,
        attributes={"difficult": obj.difficult},
    )


def _geometry_text(objects: list[dict[str, Any]], box: str, width: int, height: int) -> str:
    if box == "hbb":
        return format_hbbs([obj["hbb"] for obj in objects], width, height)
    return format_quads([obj["quad"] for obj in objects], width, height)


def _by_category(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        groups.setdefault(obj["category"], []).append(obj)
    return dict(sorted(groups.items()))


def _grounded_caption_answer(
    objects: list[dict[str, Any]], box: str, width: int, height: int
) -> str:
    if not objects:
        return NONE
    return " ".join(
        format_ref(categories.plural(category), _geometry_text(group, box, width, height))
        for category, group in _by_category(objects).items()
    )


def _image_records(
    labels: DotaLabels,
    stem: str,
    image: tuple[str, int, int],
    options: dict[str, Any],
    report: Report,
) -> Iterator[Record]:
    path, width, height = image
    objects = []
    for obj in labels.objects:
        if obj.category not in categories.DOTA_CLASSES[options["version"]]:
            report.warn(f"class not in DOTA v{options['version']}", obj.category)
        if obj.difficult and options["skip_difficult"]:
            report.drop("difficult object (--skip-difficult)", obj.category)
            continue
        truth = _truth(obj, stem, width, height, options["masks"])
        if truth is None:
            report.drop("object with no area inside the image", obj.category)
            continue
        objects.append(truth)
    base: Record = {"image": path, "width": width, "height": height}
    if labels.gsd is not None:
        base["gsd"] = labels.gsd
    base["source"] = {"dataset": DATASET, "image": stem, "image_source": labels.image_source}
    if options["split"]:
        base["split"] = options["split"]
    box, prefix = options["box"], f"{DATASET}/{options['split'] or 'all'}/{stem}"
    if "grounded_caption" in options["tasks"]:
        prompt = GROUNDED_CAPTION_PROMPT.format(box=BOX_WORDS[box])
        answer = _grounded_caption_answer(objects, box, width, height)
        yield {
            "id": f"{prefix}/grounded_caption",
            "task": "grounded_caption",
            **base,
            "conversations": conversation(prompt, answer),
            "objects": objects,
        }
    if "ground" in options["tasks"]:
        for category, group in _by_category(objects).items():
            plural = categories.plural(category)
            answer = format_ref(plural, _geometry_text(group, box, width, height))
            yield {
                "id": f"{prefix}/ground/{category.replace(' ', '-')}",
                "task": "ground",
                **base,
                "conversations": conversation(find_all(category, box), answer),
                "objects": group,
            }


def find_all(category: str, box: str) -> str:
    """The find-all question of a category: the first :data:`prompts.GROUND_QUESTIONS` template.

    Always the first, so that converting twice gives the same records; in ``--box`` ``hbb``
    that is ``Locate all planes.``, in ``quad`` the same asking for oriented bounding boxes.
    """
    form = BOX_FORMS[box]
    return prompts.GROUND_QUESTIONS[form][0].format(
        plural=categories.plural(category),
        category=category,
        **prompts.form_words(form, plural=True),
    )


def convert(
    src: Path,
    out: Path,
    split: str | None = None,
    tasks: Annotated[tuple[str, ...], Flag(choices=TASKS)] = TASKS,
    box: Annotated[str, Flag(choices=BOX_KINDS)] = "quad",
    labels: str = "labelTxt",
    images: str = "images",
    version: Annotated[str | None, Flag(choices=VERSIONS)] = None,
    skip_difficult: bool = False,
    masks: bool = True,
    link_images: bool = False,
) -> dict[str, Any]:
    """Converts a DOTA folder into records.

    Args:
        src: DOTA root; with ``split`` the split's folder ``src/<split>`` is read.
        out: Output folder (``out/dota[_<split>].jsonl``, ``out/images/dota/``).
        split: ``train``, ``val``... (a sub-folder of ``src``), or None for ``src`` itself.
        tasks: Record tasks to write, among ``grounded_caption`` and ``ground``.
        box: Geometry written in answers: ``quad`` (oriented) or ``hbb``.
        labels: Label folder below the split folder (e.g. ``labelTxt-v1.5``).
        images: Image folder below the split folder.
        version: DOTA version of the labels (``1.0``, ``1.5``, ``2.0``), whose class list a
            label is checked against; None reads it from the label folder's name (2.0 if it
            names none).
        skip_difficult: Leave out objects flagged difficult.
        masks: Rasterise each quad into a mask. This costs about 0.1 s per object on a
            4000 x 4000 image (an RLE of the whole image per object); leave them out for speed.
        link_images: Hard-link images instead of copying them.

    Returns:
        The summary of :func:`data_builders.converters.common.write_output`.

    Raises:
        ConversionError: for a missing folder or image and for malformed label files.
    """
    unknown = set(tasks) - set(TASKS)
    if unknown or box not in BOX_KINDS:
        raise ValueError(f"tasks must be among {TASKS} and box one of {BOX_KINDS}")
    root = src / split if split else src
    label_dir, image_dir = root / labels, root / images
    for folder in (label_dir, image_dir):
        if not folder.is_dir():
            raise ConversionError(
                folder, "folder not found (expected DOTA's images/ and labelTxt/)"
            )
    store = ImageStore(image_dir, out, DATASET, link=link_images)
    report = Report()
    options = {
        "version": version_of(label_dir, version),
        "split": split,
        "tasks": tuple(tasks),
        "box": box,
        "skip_difficult": skip_difficult,
        "masks": masks,
    }
    label_files = sorted(label_dir.glob("*.txt"))
    if not label_files:
        raise ConversionError(label_dir, "no label files (*.txt)")

    def records() -> Iterator[Record]:
        for label_file in progress(label_files, "dota"):
            image = store.add(find_image(image_dir, label_file.stem))
            yield from _image_records(
                read_labels(label_file), label_file.stem, image, options, report
            )

    arguments = {"src": src, "labels": labels, "images": images, **options}
    return write_output(out, DATASET, split, records(), store, report, arguments)
