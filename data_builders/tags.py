"""The tag table: which OpenStreetMap tags are visible from above, as what, and at what GSD.

The table (``tags.yaml`` beside this module, versioned) maps tag patterns to a category, its
plural, attribute phrases derived from other tags (``roof:colour=red`` -> ``{"colour": "red"}``),
how the footprint is drawn (an area, a line buffered to a strip, or a node with a fixed
footprint) and the coarsest ground sample distance at which the category is recognisable.
The per-category GSD limit follows SkyScript (Wang et al., AAAI 2024).

Footprints are drawn in a metric CRS: lines become ``line.buffer(width / 2)`` (round caps and
joins, shapely's default) and nodes ``point.buffer(diameter / 2)``. Anything that draws OSM
features (the synthetic world included) should call :meth:`Rule.footprint` so that its
drawing and the pipeline's truth agree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from shapely.geometry import LineString, MultiLineString, Point
from shapely.geometry.base import BaseGeometry

from geochat import categories

DEFAULT_TABLE = Path(__file__).with_name("tags.yaml")
KINDS = ("area", "line", "node")
ANY_VALUE = "*"
_RULE_FIELDS = {
    "category",
    "plural",
    "match",
    "exclude",
    "kinds",
    "width_m",
    "footprint_m",
    "max_gsd",
    "min_pixels",
    "attributes",
}
_METRES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:m)?\s*$")
# Round caps and joins: consecutive ways of one road join without wedge gaps.
_BUFFER_SEGMENTS = 8

TagPattern = dict[str, frozenset[str] | None]


class TagTableError(ValueError):
    """A tag table that cannot be loaded or breaks the table's schema."""


@dataclass(frozen=True)
class Attribute:
    """An attribute phrase read from one tag, e.g. ``colour`` from ``roof:colour``.

    Attributes:
        tag: The OSM key to read.
        values: Optional mapping from OSM values to phrase values; when given, other values
            give no attribute.
    """

    tag: str
    values: Mapping[str, str] | None = None

    def read(self, tags: Mapping[str, str]) -> str | None:
        """Returns the attribute's value for these tags, or None."""
        value = tags.get(self.tag)
        if value is None or self.values is None:
            return value
        return self.values.get(value)


@dataclass(frozen=True)
class Rule:
    """One row of the tag table (see ``tags.yaml`` for the meaning of each field)."""

    category: str
    plural: str
    match: tuple[TagPattern, ...]
    exclude: TagPattern
    kinds: frozenset[str]
    max_gsd: float
    min_pixels: int
    width_m: float | None = None
    footprint_m: float | None = None
    attributes: Mapping[str, Attribute] = field(default_factory=dict)

    def matches(self, tags: Mapping[str, str]) -> bool:
        """True when the tags fit one of the rule's patterns and none of its exclusions."""
        if any(_value_matches(tags.get(key), values) for key, values in self.exclude.items()):
            return False
        return any(
            all(_value_matches(tags.get(key), values) for key, values in pattern.items())
            for pattern in self.match
        )

    def line_width(self, tags: Mapping[str, str]) -> float:
        """Strip width in metres: a parseable ``width`` tag, else the table's ``width_m``."""
        return _metres(tags.get("width")) or float(self.width_m or 0.0)

    def node_diameter(self, tags: Mapping[str, str]) -> float:
        """Node footprint diameter: a parseable ``diameter_crown`` tag, else ``footprint_m``."""
        return _metres(tags.get("diameter_crown")) or float(self.footprint_m or 0.0)

    def footprint(self, kind: str, geometry: BaseGeometry, tags: Mapping[str, str]) -> BaseGeometry:
        """Draws the footprint of a feature given in a metric CRS.

        Args:
            kind: ``"area"``, ``"line"`` or ``"node"``.
            geometry: The feature's (Multi)Polygon, (Multi)LineString or Point, in metres.
            tags: The feature's tags (for ``width`` / ``diameter_crown``).

        Returns:
            A (Multi)Polygon in the same CRS.
        """
        if kind == "line":
            if not isinstance(geometry, LineString | MultiLineString):
                raise TagTableError(f"a line footprint needs a line, got {geometry.geom_type}")
            return geometry.buffer(self.line_width(tags) / 2, quad_segs=_BUFFER_SEGMENTS)
        if kind == "node":
            if not isinstance(geometry, Point):
                raise TagTableError(f"a node footprint needs a point, got {geometry.geom_type}")
            return geometry.buffer(self.node_diameter(tags) / 2, quad_segs=_BUFFER_SEGMENTS)
        return geometry

    def phrases(self, tags: Mapping[str, str]) -> dict[str, str]:
        """Returns the attribute phrases these tags give, e.g. ``{"colour": "red"}``."""
        values = {name: attribute.read(tags) for name, attribute in self.attributes.items()}
        return {name: value for name, value in values.items() if value}


@dataclass(frozen=True)
class TagTable:
    """The loaded tag table.

    Attributes:
        version: The table's ``version`` key.
        digest: SHA-256 of the file's text, so a manifest notices any edit.
        rules: Rules in priority order (first match wins).
    """

    version: int
    digest: str
    rules: tuple[Rule, ...]

    def rule_for(self, tags: Mapping[str, str]) -> Rule | None:
        """Returns the first rule whose pattern matches these tags, or None."""
        # Only rules keyed on one of these tags can match; try those in table order.
        candidates = sorted({i for key in tags for i in self._rules_by_key.get(key, ())})
        return next((self.rules[i] for i in candidates if self.rules[i].matches(tags)), None)

    @cached_property
    def _rules_by_key(self) -> dict[str, tuple[int, ...]]:
        """Tag key -> indexes of the rules with a pattern that needs that key."""
        index: dict[str, list[int]] = {}
        for position, rule in enumerate(self.rules):
            for key in {key for pattern in rule.match for key in pattern}:
                index.setdefault(key, []).append(position)
        return {key: tuple(positions) for key, positions in index.items()}

    @property
    def keys(self) -> tuple[str, ...]:
        """Every tag key the rules' patterns need (to filter OSM data while reading)."""
        keys = {key for rule in self.rules for pattern in rule.match for key in pattern}
        return tuple(sorted(keys))

    @property
    def categories(self) -> tuple[str, ...]:
        """Category names in table order, without repeats."""
        return tuple(dict.fromkeys(rule.category for rule in self.rules))


def load_tag_table(path: str | Path | None = None) -> TagTable:
    """Loads and validates a tag table (the bundled ``tags.yaml`` by default).

    Raises:
        TagTableError: naming the file and the broken rule.
    """
    path = Path(path) if path is not None else DEFAULT_TABLE
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as error:
        raise TagTableError(f"cannot read tag table {path}: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise TagTableError(f"{path}: a tag table needs a 'version' and a list of 'rules'")
    if not isinstance(document.get("version"), int):
        raise TagTableError(f"{path}: 'version' must be an integer")
    defaults = document.get("defaults") or {}
    rules = []
    for index, entry in enumerate(document["rules"]):
        try:
            rules.append(_parse_rule(entry, defaults))
        except TagTableError as error:
            raise TagTableError(f"{path}: rule {index}: {error}") from error
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return TagTable(version=document["version"], digest=digest, rules=tuple(rules))


def _parse_rule(entry: Any, defaults: Mapping[str, Any]) -> Rule:
    if not isinstance(entry, dict):
        raise TagTableError(f"must be a mapping, got {entry!r}")
    unknown = set(entry) - _RULE_FIELDS
    if unknown:
        raise TagTableError(f"unknown fields {sorted(unknown)}")
    merged = {**defaults, **entry}
    for key in ("category", "plural", "match", "kinds", "max_gsd"):
        if key not in merged:
            raise TagTableError(f"missing {key!r}")
    kinds = frozenset(merged["kinds"])
    if not kinds or not kinds <= set(KINDS):
        raise TagTableError(f"'kinds' must be a non-empty subset of {KINDS}, got {merged['kinds']}")
    if "line" in kinds and not merged.get("width_m"):
        raise TagTableError("a rule that takes lines needs 'width_m'")
    if "node" in kinds and not merged.get("footprint_m"):
        raise TagTableError("a rule that takes nodes needs 'footprint_m'")
    if float(merged["max_gsd"]) <= 0:
        raise TagTableError("'max_gsd' must be positive")
    patterns = merged["match"] if isinstance(merged["match"], list) else [merged["match"]]
    return Rule(
        category=_canonical(str(merged["category"])),
        plural=str(merged["plural"]),
        match=tuple(_parse_pattern(pattern) for pattern in patterns),
        exclude=_parse_pattern(merged.get("exclude") or {}, allow_empty=True),
        kinds=kinds,
        max_gsd=float(merged["max_gsd"]),
        min_pixels=int(merged.get("min_pixels", 1)),
        width_m=_optional_float(merged.get("width_m")),
        footprint_m=_optional_float(merged.get("footprint_m")),
        attributes={
            name: _parse_attribute(spec) for name, spec in (merged.get("attributes") or {}).items()
        },
    )


def _canonical(label: str) -> str:
    """The vocabulary's name of a rule's category, so OSM records and datasets' records agree."""
    try:
        return categories.normalise(label)
    except categories.CategoryError as error:
        raise TagTableError(f"{error}; add it to geochat/categories.py first") from error


def _parse_pattern(pattern: Any, allow_empty: bool = False) -> TagPattern:
    if not isinstance(pattern, dict) or (not pattern and not allow_empty):
        raise TagTableError(f"a tag pattern must be a non-empty mapping, got {pattern!r}")
    parsed: TagPattern = {}
    for key, value in pattern.items():
        if value == ANY_VALUE:
            parsed[str(key)] = None
            continue
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in values):
            raise TagTableError(f"quote the values of {key!r}: YAML reads yes/no as booleans")
        parsed[str(key)] = frozenset(str(v) for v in values)
    return parsed


def _parse_attribute(spec: Any) -> Attribute:
    if not isinstance(spec, dict) or "tag" not in spec:
        raise TagTableError(f"an attribute needs a 'tag', got {spec!r}")
    values = spec.get("values")
    return Attribute(
        tag=str(spec["tag"]),
        values={str(k): str(v) for k, v in values.items()} if values is not None else None,
    )


def _value_matches(value: str | None, accepted: frozenset[str] | None) -> bool:
    if value is None:
        return False
    return value != "no" if accepted is None else value in accepted


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _metres(value: str | None) -> float | None:
    """Parses an OSM length in metres (``"7"``, ``"7.5 m"``); other units give None."""
    found = _METRES.match(value) if value else None
    return float(found.group(1)) if found and float(found.group(1)) > 0 else None
