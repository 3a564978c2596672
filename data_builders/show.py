"""The dataset viewer: draws a record's truth (masks, quads, boxes, phrases) over its image.

``geochat build show DIR --id ID [--out PNG]`` finds the record in the JSONL files of ``DIR`` (a
build folder, any folder of JSONL files, or one JSONL file) and writes a PNG: the image,
enlarged to at least 512 pixels, with each object's mask tinted, its quad outlined, its
horizontal box drawn thin and its category and attributes written beside it, over a panel
with the record's task and conversation.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from geochat.data_builders.shards import MANIFEST
from geochat.fileio import atomic_path
from geochat.geometry import rle_to_mask
from geochat.records import Record, image_path, iter_jsonl

MIN_SIDE = 512
_PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
)
_MASK_ALPHA = 90
_FONT_SIZE = 13
_MARGIN = 6


class RecordNotFoundError(LookupError):
    """No JSONL file under the folder holds a record with that id."""


def find_record(location: str | Path, record_id: str) -> tuple[Record, Path]:
    """Finds a record by id.

    Args:
        location: A build folder (its manifest's shards are read), a folder of JSONL files
            (searched recursively) or one JSONL file.
        record_id: The record's ``id``.

    Returns:
        The record and the JSONL file that holds it (its image path is relative to that file).

    Raises:
        RecordNotFoundError: if no file holds it.
    """
    files = _jsonl_files(Path(location))
    for path in files:
        for record in iter_jsonl(path):
            if record.get("id") == record_id:
                return record, path
    raise RecordNotFoundError(
        f"no record with id {record_id!r} in {len(files)} JSONL file(s) under {location}"
    )


def _jsonl_files(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    manifest = location / MANIFEST
    if manifest.is_file():
        shards = json.loads(manifest.read_text(encoding="utf-8")).get("shards")
        if shards:
            return [location / shard["path"] for shard in shards]
    if not location.is_dir():
        raise FileNotFoundError(f"no such folder or file: {location}")
    return sorted(location.rglob("*.jsonl"))


def render(record: Record, image_file: str | Path) -> Image.Image:
    """Draws a record's objects over its image, above a panel with its conversation."""
    with Image.open(image_file) as opened:
        image = opened.convert("RGB")
    if image.size != (record["width"], record["height"]):
        image = image.resize((record["width"], record["height"]))
    scale = max(1, int(np.ceil(MIN_SIDE / max(image.size))))
    objects = record.get("objects", [])
    image = _tint_masks(image, objects).resize(
        (image.width * scale, image.height * scale), Image.NEAREST
    )
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=_FONT_SIZE)
    for obj in objects:
        _draw_object(draw, obj, scale, font)
    return _with_panel(image, record, font)


def show(location: str | Path, record_id: str, out: str | Path | None = None) -> Path:
    """Finds a record, renders it and writes the PNG; returns its path.

    Args:
        location: See :func:`find_record`.
        record_id: The record's id.
        out: Output PNG; defaults to ``<location folder>/show/<id>.png``.
    """
    record, jsonl = find_record(location, record_id)
    picture = render(record, image_path(record, jsonl))
    base = Path(location) if Path(location).is_dir() else Path(location).parent
    out = Path(out) if out is not None else base / "show" / f"{_safe_name(record_id)}.png"
    with atomic_path(out) as temporary:
        picture.save(temporary, format="PNG")
    return out


def category_colour(category: str) -> tuple[int, int, int]:
    """A fixed colour per category (stable across runs and machines)."""
    digest = hashlib.sha256(category.encode()).digest()
    return _PALETTE[digest[0] % len(_PALETTE)]


def _tint_masks(image: Image.Image, objects: list[dict[str, Any]]) -> Image.Image:
    overlay = np.zeros((image.height, image.width, 4), dtype=np.uint8)  # [H, W, RGBA]
    for obj in objects:
        if obj.get("mask"):
            mask = rle_to_mask(obj["mask"])
            if mask.shape == overlay.shape[:2]:
                overlay[mask] = (*category_colour(obj["category"]), _MASK_ALPHA)
    return Image.alpha_composite(image.convert("RGBA"), Image.fromarray(overlay, "RGBA")).convert(
        "RGB"
    )


def _draw_object(draw: ImageDraw.ImageDraw, obj: dict[str, Any], scale: int, font: Any) -> None:
    colour = category_colour(obj["category"])
    if obj.get("hbb"):
        x0, y0, x1, y1 = (v * scale for v in obj["hbb"])
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=1)
    if obj.get("quad"):
        corners = [(x * scale, y * scale) for x, y in obj["quad"]]
        draw.polygon(corners, outline=colour, width=2)
    anchor = _label_anchor(obj, scale)
    if anchor is not None:
        label = _label(obj)
        box = draw.textbbox(anchor, label, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text(anchor, label, fill=colour, font=font)


def _label_anchor(obj: dict[str, Any], scale: int) -> tuple[float, float] | None:
    if obj.get("hbb"):
        return obj["hbb"][0] * scale, max(0.0, obj["hbb"][1] * scale - _FONT_SIZE - 2)
    if obj.get("quad"):
        x, y = obj["quad"][0]
        return x * scale, max(0.0, y * scale - _FONT_SIZE - 2)
    return None


def _label(obj: dict[str, Any]) -> str:
    attributes = sorted(obj.get("attributes", {}).items())
    phrases = [f"{name}={value}" for name, value in attributes if name != "area_m2"]
    label = obj["category"] + (f" ({', '.join(phrases)})" if phrases else "")
    return label + (" [cut]" if obj.get("truncated") else "")


def _with_panel(image: Image.Image, record: Record, font: Any) -> Image.Image:
    lines = [f"{record['id']}  task={record['task']}  split={record.get('split', '?')}"]
    # Characters per line from the font's width of a typical character.
    chars = max(20, int((image.width - 2 * _MARGIN) / font.getlength("n")))
    for turn in record["conversations"]:
        for paragraph in f"{turn['from']}: {turn['value']}".splitlines():
            lines += textwrap.wrap(paragraph, chars) or [""]
    line_height = _FONT_SIZE + 4
    panel = Image.new("RGB", (image.width, line_height * len(lines) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for number, line in enumerate(lines):
        draw.text((_MARGIN, 4 + number * line_height), line, fill=(0, 0, 0), font=font)
    combined = Image.new("RGB", (image.width, image.height + panel.height), (255, 255, 255))
    combined.paste(image, (0, 0))
    combined.paste(panel, (0, image.height))
    return combined


def _safe_name(record_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in record_id)
