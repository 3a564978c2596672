"""What the task generators know about one tile: its objects' facts, words and geometry text.

Facts come from the tile's truth only (category, attributes, pixel geometry); words come from
the tag table (plurals, which categories are lines, where each is visible). Geometry text is
written with :mod:`geochat.grammar` so that every answer parses back to the truth.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import shapely

from geochat import geometry
from geochat.data_builders.tags import load_tag_table
from geochat.data_builders.tasks.language import MASS_NOUNS, counted, indefinite
from geochat.data_builders.tasks.options import TaskOptions
from geochat.data_builders.tile import Tile
from geochat.grammar import format_hbbs, format_mask, format_quads

# "kind" attributes of the tag table that read as adjectives ("an industrial building");
# the others name the object themselves ("a house", "a pond").
ADJECTIVE_KINDS = frozenset({"industrial", "commercial", "cargo", "fishing"})
# A land-cover category must cover this share of the tile to be its scene class.
SCENE_CLASS_MIN_SHARE = 0.25

Value = TypeVar("Value")


class TileError(ValueError):
    """A tile the task generators cannot describe (e.g. a category missing from the tag table)."""


@dataclass(frozen=True)
class Vocabulary:
    """The words and visibility limits of the tag table's categories.

    Attributes:
        categories: Category names in table order.
        plurals: Category -> plural.
        lines: Categories drawn only from lines (roads, rivers): never counted one by one,
            because OSM splits one road into many ways.
        max_gsd: Category -> coarsest ground sample distance at which it is visible.
        round: Categories that may be drawn as round node footprints (trees, storage tanks):
            their minimum-area rectangle has an arbitrary angle, so they get no quads.
    """

    categories: tuple[str, ...]
    plurals: Mapping[str, str]
    lines: frozenset[str]
    max_gsd: Mapping[str, float]
    round: frozenset[str]


@functools.lru_cache(maxsize=8)
def load_vocabulary(path: str | None = None) -> Vocabulary:
    """Reads the vocabulary of a tag table file (None: the bundled table), cached per path."""
    table = load_tag_table(Path(path) if path is not None else None)
    plurals: dict[str, str] = {}
    kinds: dict[str, set[str]] = {}
    max_gsd: dict[str, float] = {}
    for rule in table.rules:
        plurals.setdefault(rule.category, rule.plural)
        kinds.setdefault(rule.category, set()).update(rule.kinds)
        max_gsd[rule.category] = max(max_gsd.get(rule.category, 0.0), rule.max_gsd)
    lines = frozenset(category for category, found in kinds.items() if found == {"line"})
    round_ = frozenset(category for category, found in kinds.items() if "node" in found)
    return Vocabulary(table.categories, plurals, lines, max_gsd, round_)


class Scene:
    """One tile prepared for the generators: object facts by index, words and geometry text.

    Object indices are positions in ``tile.objects``; every generator names its truth by them.
    """

    def __init__(self, tile: Tile, options: TaskOptions, vocabulary: Vocabulary) -> None:
        unknown = sorted({o.category for o in tile.objects} - set(vocabulary.plurals))
        if unknown:
            raise TileError(
                f"tile {tile.image}: categories {unknown} are not in the tag table; "
                "pass the table the tile was built with (task option 'tags')"
            )
        self.tile = tile
        self.options = options
        self.vocabulary = vocabulary
        self.width = tile.width
        self.height = tile.height
        self.objects = tile.objects
        categories = sorted({o.category for o in tile.objects})
        self.members: dict[str, tuple[int, ...]] = {
            category: tuple(i for i, o in enumerate(tile.objects) if o.category == category)
            for category in categories
        }
        self.hbbs = geometry.as_hbbs([o.hbb for o in tile.objects])  # [N, 4]
        self.quads = np.array([geometry.as_quad(o.quad) for o in tile.objects]).reshape(-1, 4, 2)
        self.areas = np.array(
            [_pixel_area(o.mask, box) for o, box in zip(tile.objects, self.hbbs, strict=True)]
        )
        self.centres = (self.hbbs[:, :2] + self.hbbs[:, 2:]) / 2  # [N, 2] box centres
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, compute: Callable[[], Value]) -> Value:
        """Computes a value once per scene (e.g. its referring expressions) and keeps it."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # Categories.

    @property
    def categories(self) -> tuple[str, ...]:
        """Categories present in the tile, sorted."""
        return tuple(self.members)

    def plural(self, category: str) -> str:
        """Plural of a category, from the tag table."""
        return self.vocabulary.plurals[category]

    def is_countable(self, category: str) -> bool:
        """True for discrete objects; False for land cover and for line categories (roads)."""
        return category not in self.options.land_cover and category not in self.vocabulary.lines

    @property
    def countable_categories(self) -> tuple[str, ...]:
        """Present categories of discrete objects, sorted."""
        return tuple(c for c in self.categories if self.is_countable(c))

    @functools.cached_property
    def absent_categories(self) -> tuple[str, ...]:
        """Categories a question may ask for that the tile does not hold, in table order.

        Only categories visible at the tile's ground sample distance: asking for cars in a
        10 m/pixel tile would teach nothing.
        """
        candidates = self.options.absent_categories
        if candidates is None:
            candidates = self.vocabulary.categories
        gsd = self.tile.gsd
        return tuple(
            category
            for category in candidates
            if category not in self.members
            and category in self.vocabulary.plurals
            and (gsd is None or self.vocabulary.max_gsd[category] >= gsd)
        )

    @functools.cached_property
    def scene_class(self) -> str | None:
        """The land-cover category covering most of the tile (at least 25%), or None."""
        shares = {
            category: self.union_mask(self.members[category]).mean()
            for category in self.categories
            if category in self.options.land_cover
        }
        best = max(shares, key=lambda category: shares[category], default=None)
        return best if best is not None and shares[best] >= SCENE_CLASS_MIN_SHARE else None

    # Words for objects.

    def colour_phrase(self, index: int) -> str | None:
        """Colour words: "red-roofed" for a roof colour, "red" for others, None if unknown."""
        obj = self.objects[index]
        colour = obj.attributes.get("colour")
        if not isinstance(colour, str) or not colour:
            return None
        return f"{colour}-roofed" if obj.tags.get("roof:colour") == colour else colour

    def kind(self, index: int) -> str | None:
        """The object's kind attribute ("house", "industrial"), None if unknown."""
        kind = self.objects[index].attributes.get("kind")
        return kind if isinstance(kind, str) and kind else None

    def describe(self, index: int) -> str:
        """A noun phrase for one object: "red-roofed industrial building", "house", "pond"."""
        words = [self.colour_phrase(index)]
        kind = self.kind(index)
        noun = self.objects[index].category
        if kind in ADJECTIVE_KINDS:
            words.append(kind)
        elif kind is not None:
            noun = kind
        return " ".join([w for w in words if w] + [noun])

    def mention(self, category: str) -> str:
        """How a caption names a category: "12 buildings", "a road", "roads", "water"."""
        count = len(self.members[category])
        if category in MASS_NOUNS:
            return category
        if count == 1:
            return indefinite(category)
        if self.is_countable(category):
            return counted(count, category, self.plural(category))
        return self.plural(category)

    # Geometry.

    def reading_order(self, indices: Sequence[int]) -> list[int]:
        """Indices sorted top to bottom, then left to right (the order answers list them)."""
        return sorted(indices, key=lambda i: (self.hbbs[i, 1], self.hbbs[i, 0], i))

    def boxes_text(self, indices: Sequence[int]) -> str:
        """``<box>[[...],...]</box>`` of the objects, in reading order."""
        return format_hbbs(self.hbbs[self.reading_order(indices)], self.width, self.height)

    def quads_text(self, indices: Sequence[int]) -> str:
        """``<quad>[[...],...]</quad>`` of the objects, in reading order."""
        return format_quads(self.quads[self.reading_order(indices)], self.width, self.height)

    def box_forms(self, indices: Sequence[int]) -> tuple[str, ...]:
        """Forms that fit these objects: ``("box", "quad")``, or ``("box",)`` if one is round."""
        if any(self.objects[i].category in self.vocabulary.round for i in indices):
            return ("box",)
        return ("box", "quad")

    def geometry_text(self, indices: Sequence[int], form: str) -> str:
        """Geometry in one of the forms ``"box"``, ``"quad"`` or ``"mask"``."""
        if form == "box":
            return self.boxes_text(indices)
        if form == "quad":
            return self.quads_text(indices)
        if form == "mask":
            return format_mask(self.union_mask(indices), self.options.mask_grid)
        raise ValueError(f"unknown geometry form {form!r}; expected box, quad or mask")

    def union_mask(self, indices: Sequence[int]) -> np.ndarray:
        """Boolean ``[H, W]`` union of the objects' masks."""
        union = np.zeros((self.height, self.width), dtype=bool)
        for index in indices:
            union |= geometry.rle_to_mask(self.objects[index].mask)
        return union

    @functools.cached_property
    def distances(self) -> np.ndarray:
        """``[N, N]`` pixel distances between the objects' quads (0 where they touch)."""
        polygons = np.array([geometry.quad_to_polygon(q) for q in self.quads], dtype=object)
        if polygons.size == 0:
            return np.zeros((0, 0))
        return shapely.distance(polygons[:, None], polygons[None, :])


def _pixel_area(mask: Mapping[str, object], box: np.ndarray) -> float:
    """Mask pixels, or the box area when the mask is empty (a hand-built tile may have none)."""
    area = geometry.mask_area(dict(mask))
    return float(area) if area > 0 else float((box[2] - box[0]) * (box[3] - box[1]))
