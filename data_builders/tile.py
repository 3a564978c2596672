"""A tile with its pixel truth: what the OSM pipeline produces and the task generators consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, StrictStr

from geochat.records import Hbb, Quad, Rle, TruthObject


class TileObject(TruthObject):
    """One visible object of a tile, in the tile's pixel coordinates: a record's truth object.

    The OSM pipeline always knows its tags and all three geometries, so here they are required.

    Attributes:
        category: Category name from the tag table (e.g. ``"swimming pool"``).
        tags: The OSM tags of the feature it came from.
        hbb: ``[x0, y0, x1, y1]``.
        quad: Four ``[x, y]`` corners of the minimum-area rectangle, canonical order.
        mask: COCO RLE ``{"size": [h, w], "counts": str}`` of the tile.
        id: Stable identifier, e.g. ``"way/123"``.
        truncated: True when the tile edge cuts the object.
        attributes: Phrases and values the tag table derives, e.g. ``{"colour": "red"}``;
            ``area_m2`` is always present when the tile has a ground sample distance.
    """

    tags: dict[StrictStr, StrictStr]
    hbb: Hbb
    quad: Quad
    mask: Rle
    attributes: dict[str, Any] = Field(default_factory=dict)

    def to_record_object(self) -> dict[str, Any]:
        """Returns the object as it is stored in a record's ``objects`` list."""
        return self.model_dump(exclude=_ANSWER_ONLY)


_ANSWER_ONLY = {"phrase", "score", "source_category"}  # what OSM truth never has


@dataclass
class Tile:
    """An image tile and its objects.

    Attributes:
        image: Path of the tile's image file, relative to the output folder.
        width: Width in pixels.
        height: Height in pixels.
        objects: Visible objects, in pixel coordinates of this tile.
        gsd: Ground sample distance in metres per pixel, if known.
        georef: ``{"crs": "EPSG:...", "transform": [a, b, c, d, e, f]}`` (rasterio Affine order).
        source: Where the tile came from (raster file, window, OSM file).
        split: ``"train" | "val" | "test"``, assigned by area so no area leaks across splits.
    """

    image: str
    width: int
    height: int
    objects: list[TileObject]
    gsd: float | None = None
    georef: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    split: str = "train"
