"""Plumbing shared by the dataset converters: errors, images, truth objects and the output file.

Output layout of every converter (``out`` is the folder given on the command line)::

    out/<dataset>[_<split>].jsonl                 records, written atomically
    out/images/<dataset>/<path in the source>      the images the records use

Every converter also writes ``out/<dataset>[_<split>].manifest.json`` beside its records: the
arguments it ran with and its summary, including what it dropped and what it warned about
(:class:`Report`), so a folder of records says how it was made and what it left out.

Images are **copied** (or hard-linked with ``--link-images``) into ``out/images/``, never
referenced back into the source folder: the records then stay valid when the download folder
is moved or deleted, and a folder of records can be shipped on its own. A copy is written to a
temporary file and renamed, and an image already present with the same size is not copied
again, so an interrupted conversion resumes cheaply.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from geochat import categories, geometry
from geochat.data_builders.build_summary import bump
from geochat.data_builders.shards import write_json
from geochat.fileio import atomic_path
from geochat.records import Record, check_record, write_jsonl

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
REFER_PROMPT = 'Find the object described as "{expression}" and give its {box}.'
ANY_DETAIL = "all"


class ConversionError(ValueError):
    """Malformed or missing input of a public dataset, naming the file and the line or key.

    Attributes:
        path: The file (or folder) at fault.
        line: 1-based line number, when the fault is on one line.
        key: JSON key, XML tag or record index, when the fault is in one field.
    """

    def __init__(
        self, path: str | Path, message: str, line: int | None = None, key: str | None = None
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.key = key
        where = str(path) + (f":{line}" if line is not None else "")
        field = f" [{key}]" if key is not None else ""
        super().__init__(f"{where}{field}: {message}")


def read_text(path: Path) -> str:
    """Reads a UTF-8 text file of a dataset.

    Raises:
        ConversionError: if the file is missing or is not UTF-8 text.
    """
    if not path.is_file():
        raise ConversionError(path, "file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConversionError(path, f"not UTF-8 text ({error.reason})") from error


def read_json(path: Path) -> Any:
    """Reads a JSON file of a dataset.

    Raises:
        ConversionError: if the file is missing, not UTF-8 or not valid JSON (naming the line).
    """
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise ConversionError(path, f"not valid JSON ({error.msg})", line=error.lineno) from error


def read_jsonl(
    path: Path, skip: Callable[[ConversionError], None] | None = None
) -> Iterator[tuple[int, Any]]:
    """Streams ``(line number, JSON value)`` for every non-blank line of a JSON Lines file.

    Args:
        path: The file.
        skip: Called with the error of a line that is not valid JSON, which is then left out;
            None raises it.

    Raises:
        ConversionError: if the file is missing or not UTF-8, or (without ``skip``) for the
            first line that is not valid JSON.
    """
    if not path.is_file():
        raise ConversionError(path, "file not found")
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    invalid = ConversionError(path, f"not valid JSON ({error.msg})", line=number)
                    if skip is None:
                        raise invalid from error
                    skip(invalid)
                    continue
                yield number, value
    except UnicodeDecodeError as error:
        # Decoded in chunks, so the line at fault is not known exactly.
        raise ConversionError(path, f"not UTF-8 text ({error.reason})") from error


def image_size(path: Path) -> tuple[int, int]:
    """Returns ``(width, height)`` of an image, reading only its header.

    Raises:
        ConversionError: if the file is missing or is not an image PIL can read.
    """
    if not path.is_file():
        raise ConversionError(path, "image file not found")
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as error:
        raise ConversionError(path, f"not a readable image ({error})") from error


def find_image(folder: Path, stem: str) -> Path:
    """Returns the image ``folder/stem.<png|jpg|...>``.

    Raises:
        ConversionError: if there is no such image.
    """
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise ConversionError(
        folder / stem, f"no image with a suffix among {', '.join(IMAGE_SUFFIXES)}"
    )


def read_binary_mask(path: Path, width: int, height: int) -> np.ndarray:
    """Reads a mask image as a boolean ``[H, W]`` array: a pixel is set where its value is non-zero.

    Palette images are read as palette indices, colour images as "any channel non-zero".

    Raises:
        ConversionError: if the file is missing, unreadable or not ``width`` x ``height``.
    """
    if not path.is_file():
        raise ConversionError(path, "mask file not found")
    try:
        with Image.open(path) as image:
            values = np.asarray(image)
    except (UnidentifiedImageError, OSError) as error:
        raise ConversionError(path, f"not a readable mask image ({error})") from error
    if values.ndim == 3:
        values = values[..., :3].any(axis=2)  # colour: ignore an alpha channel
    if values.shape != (height, width):
        raise ConversionError(
            path, f"mask is {values.shape[1]}x{values.shape[0]}, its image is {width}x{height}"
        )
    return values != 0


class ImageStore:
    """Puts source images into ``out/images/<dataset>/`` once each and remembers their sizes.

    Args:
        source_root: Folder the source images are taken from; their path below it is kept.
        out: Output folder of the conversion.
        dataset: Name of the dataset: its own folder keeps two datasets' images apart.
        link: Hard-link instead of copying (falls back to a copy across file systems).
    """

    def __init__(self, source_root: Path, out: Path, dataset: str, link: bool = False) -> None:
        self.source_root = source_root
        self.record_root = Path("images") / dataset
        self.target_root = out / self.record_root
        self.link = link
        self._sizes: dict[Path, tuple[str, int, int]] = {}

    @property
    def count(self) -> int:
        """Number of distinct images placed so far."""
        return len(self._sizes)

    def add(self, source: Path) -> tuple[str, int, int]:
        """Places one image (once) and returns its record path (relative to ``out``) and size.

        Raises:
            ConversionError: for a missing or unreadable image, or a path (from the dataset's
                own files) that leads out of the source folder.
        """
        # Normalised without following links: a ".." in a dataset path cannot escape.
        source = Path(os.path.normpath(source.absolute()))
        if source not in self._sizes:
            root = Path(os.path.normpath(self.source_root.absolute()))
            if not source.is_relative_to(root):
                raise ConversionError(source, f"image path leads out of {root}")
            width, height = image_size(source)
            relative = source.relative_to(root)
            self._place(source, self.target_root / relative)
            self._sizes[source] = ((self.record_root / relative).as_posix(), width, height)
        return self._sizes[source]

    def _place(self, source: Path, target: Path) -> None:
        if target.is_file() and target.stat().st_size == source.stat().st_size:
            return  # already there from an earlier, interrupted run
        if self.link and _link(source, target):
            return
        with atomic_path(target) as temporary:
            shutil.copyfile(source, temporary)


def _link(source: Path, target: Path) -> bool:
    """Hard-links ``source`` at ``target`` atomically; False where the file system cannot.

    The link shares the source's inode, so its permissions are the source's: changing them
    would change the source's too.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # A fresh unused name next to the target: os.link refuses an existing file.
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(descriptor)
    os.unlink(temporary)
    try:
        os.link(source, temporary)
    except OSError:
        return False
    try:
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


class ConversionWarning(UserWarning):
    """Input that converts, but not as its dataset documents it (a class of another version)."""


class Report:
    """What a conversion dropped and what it warned about, each counted by reason and detail.

    The counts nest as the OSM pipeline's build summary does (reason -> detail -> count, see
    :func:`data_builders.build_summary.summarise`): the detail is the category of a dropped object,
    the name of a field the converter does not read, or :data:`ANY_DETAIL`.
    """

    def __init__(self) -> None:
        self.counts: dict[str, Any] = {}

    def drop(self, reason: str, detail: str = ANY_DETAIL, by: int = 1) -> None:
        """Counts items left out of the records for ``reason``."""
        bump(self.counts, "dropped", reason, detail, by=by)

    def warn(self, reason: str, detail: str = ANY_DETAIL, by: int = 1) -> None:
        """Counts converted items that deserve a look, and warns the first time of each."""
        if detail not in self.counts.get("warnings", {}).get(reason, {}):
            warnings.warn(f"{reason}: {detail}", ConversionWarning, stacklevel=2)
        bump(self.counts, "warnings", reason, detail, by=by)

    def invalid(self, error: Exception, detail: str = ANY_DETAIL) -> None:
        """Counts an item left out under ``--skip-invalid``, by the kind of its error."""
        self.drop(f"{type(error).__name__} (--skip-invalid)", detail)

    def unused_fields(self, data: Mapping[str, Any], used: Iterable[str]) -> None:
        """Counts each field of a source item that the converter does not carry into records."""
        for key in sorted(set(data) - set(used)):
            self.drop("field not converted", str(key))

    @property
    def dropped(self) -> dict[str, dict[str, int]]:
        """Reason -> detail -> count of what was left out."""
        return self.counts.get("dropped", {})

    @property
    def warnings(self) -> dict[str, dict[str, int]]:
        """Reason -> detail -> count of what was converted with a warning."""
        return self.counts.get("warnings", {})


def source_category(label: str) -> tuple[str, str]:
    """``(canonical category, label as written)`` of a dataset's class label.

    A label that no spelling of :mod:`geochat.categories` matches is searched for a category
    word (``"the rotated ship"`` -> ship), else becomes ``categories.UNKNOWN``; the label is
    kept either way, so nothing of the source is lost.
    """
    written = " ".join(label.split())
    return categories.find_in_phrase(written) or categories.UNKNOWN, written


def sentence_label(text: str) -> str:
    """A sentence as a label: its words, single-spaced, without the closing full stop."""
    return " ".join(text.split()).rstrip(".")


def truth_object(
    category: str,
    hbb: Any,
    quad: Any,
    mask: dict[str, Any] | None = None,
    object_id: str | None = None,
    truncated: bool = False,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Builds one record object (the keys of :class:`data_builders.tile.TileObject`).

    ``category`` is the source's label: the object gets its canonical name (see
    :func:`source_category`) and keeps the label as ``source_category``. ``mask`` is left out
    when the dataset has none, rather than invented from a box.
    """
    canonical, written = source_category(category)
    obj: dict[str, Any] = {
        "category": canonical,
        "source_category": written,
        "tags": {},
        "hbb": [float(v) for v in geometry.as_hbb(hbb)],
        "quad": geometry.canonical_quad(quad).tolist(),
        "id": object_id,
        "truncated": truncated,
        "attributes": attributes or {},
    }
    if mask is not None:
        obj["mask"] = mask
    return obj


def inside_image(quad: Any, width: int, height: int) -> tuple[np.ndarray | None, bool]:
    """A quad clipped to the image: ``(quad, truncated)``, the quad None if nothing is inside.

    A quad inside the image is kept as it is (any quadrilateral); one that sticks out becomes
    the minimum-area rectangle of its part inside (:func:`geochat.geometry.clip_quad`).
    """
    polygon = geometry.quad_to_polygon(quad)
    if shapely.box(0, 0, width, height).contains(polygon):
        return geometry.as_quad(quad), False
    return geometry.clip_quad(quad, width, height), True


def mask_truth(
    category: str, mask: np.ndarray, object_id: str | None = None
) -> dict[str, Any] | None:
    """Builds a record object from a boolean mask (box, min-area quad, RLE); None if empty."""
    hbb = geometry.mask_to_hbb(mask)
    if hbb is None:
        return None
    return truth_object(
        category, hbb, geometry.mask_to_quad(mask), geometry.mask_to_rle(mask), object_id
    )


def output_path(out: Path, dataset: str, split: str | None) -> Path:
    """Returns ``out/<dataset>.jsonl`` or ``out/<dataset>_<split>.jsonl``."""
    return out / (f"{dataset}_{split}.jsonl" if split else f"{dataset}.jsonl")


def conversation(prompt: str, answer: str) -> list[dict[str, str]]:
    """One human turn (with the image placeholder) and one gpt turn."""
    return [
        {"from": "human", "value": f"<image>\n{prompt}"},
        {"from": "gpt", "value": answer},
    ]


def write_output(
    out: Path,
    dataset: str,
    split: str | None,
    records: Iterable[Record],
    images: ImageStore | Collection[ImageStore],
    report: Report,
    arguments: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validates the records (and that their ids are unique), writes them and the manifest.

    ``records`` may be a generator that fills ``report`` as it goes: the summary is built after
    it is exhausted. Both files are written atomically, the manifest last.

    Args:
        out: Output folder.
        dataset: Dataset name (the file names).
        split: Split name (the file names), or None.
        records: The records, in output order.
        images: The store that placed the records' images (or the stores, one per source
            folder, of a dataset whose images come from several).
        report: What the conversion dropped and warned about.
        arguments: The converter's arguments, recorded in the manifest.

    Returns:
        ``{"dataset", "split", "jsonl", "manifest", "records", "images", "tasks", "skipped",
        "dropped", "warnings"}``: ``skipped`` maps each reason to the number of items left out
        for it, ``dropped`` and ``warnings`` break reasons down by detail (see :class:`Report`).
    """
    tasks: Counter[str] = Counter()
    path = output_path(out, dataset, split)
    seen: set[str] = set()

    def validated() -> Iterator[Record]:
        for record in records:
            if record["id"] in seen:
                raise ConversionError(path, f"two records have the id {record['id']!r}")
            seen.add(record["id"])
            tasks[record["task"]] += 1
            yield check_record(record)

    count = write_jsonl(path, validated())
    stores = [images] if isinstance(images, ImageStore) else images
    manifest = path.with_suffix(".manifest.json")
    summary = {
        "dataset": dataset,
        "split": split,
        "jsonl": str(path),
        "manifest": str(manifest),
        "records": count,
        "images": sum(store.count for store in stores),
        "tasks": dict(sorted(tasks.items())),
        "skipped": {
            reason: sum(details.values()) for reason, details in sorted(report.dropped.items())
        },
        "dropped": report.dropped,
        "warnings": report.warnings,
    }
    recorded = {key: _jsonable(value) for key, value in (arguments or {}).items()}
    write_json(manifest, {"arguments": recorded, "summary": summary})
    return summary


def _jsonable(value: Any) -> Any:
    """An argument as JSON: paths as strings, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    return value


def progress(items: Iterable[Any], description: str, total: int | None = None) -> Iterable[Any]:
    """Wraps an iterable in a tqdm progress bar on stderr (silent when stderr is not a terminal)."""
    return tqdm(items, desc=description, total=total, unit="item", disable=None, leave=False)
