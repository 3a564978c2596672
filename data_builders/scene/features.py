"""What a synthetic scene is made of: features, their layers and how they are drawn.

Layers, and which footprints may overlap (everything else never does):

- ``LAYER_GROUND``: land use and parks, disjoint from each other; anything may lie on them.
- ``LAYER_SURFACE``: water, roads, rivers, parking, runways, aprons, pitches, footways. Roads
  overlap each other at junctions only.
- ``LAYER_OBJECT``: buildings, pools, storage tanks, trees.
- ``LAYER_MOVER``: vehicles and ships, each entirely on one surface feature, its ``support``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.geometry import LineString
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.render import Pose
from geochat.data_builders.tags import TagTable, load_tag_table

LAYER_GROUND = 0
LAYER_SURFACE = 1
LAYER_OBJECT = 2
LAYER_MOVER = 3


class SyntheticWorldError(ValueError):
    """Arguments or a tag table that cannot make a synthetic world."""


@dataclass(frozen=True)
class Look:
    """How the painter draws a feature (what the OSM tags do not say).

    Attributes:
        painter: Name of the painter (see :mod:`data_builders.scene.paint`).
        height_m: Height above the ground; a feature higher than 0 casts a shadow.
        pose: The feature's local frame, for roof faces, court lines, windows.
        params: Painter-specific values, e.g. roof shape, object length and width in metres.
    """

    painter: str
    height_m: float = 0.0
    pose: Pose | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Feature:
    """One mapped object: its tags, its exact drawn footprint, its OSM geometry.

    Attributes:
        tags: OSM tags.
        footprint: The painted area in pixels (Polygon or MultiPolygon, holes kept).
        layer: One of the ``LAYER_*`` constants.
        look: How to paint it.
        line: Centre line in pixels for linear features (roads, rivers): an OSM way.
        point: Position in pixels for point features (trees): an OSM node.
        support: Index of the feature a vehicle or ship lies on.
    """

    tags: dict[str, str]
    footprint: BaseGeometry
    layer: int
    look: Look
    line: LineString | None = None
    point: tuple[float, float] | None = None
    support: int | None = None

    @property
    def kind(self) -> str:
        """``"node"``, ``"line"`` or ``"area"``: how the feature is written to OSM."""
        if self.point is not None:
            return "node"
        return "line" if self.line is not None else "area"


@functools.cache
def tag_table() -> TagTable:
    """The bundled tag table, which says how lines and nodes are drawn."""
    return load_tag_table()


def drawn_footprint(
    kind: str, geometry: BaseGeometry, tags: Mapping[str, str], px_per_m: float
) -> BaseGeometry:
    """The footprint of a line or node as the OSM pipeline draws it, in pixels.

    The tag table's :meth:`~data_builders.tags.Rule.footprint` buffers in metres; drawing
    with it keeps the picture and the pipeline's truth the same polygon.

    Raises:
        SyntheticWorldError: when no rule of the tag table takes these tags.
    """
    rule = tag_table().rule_for(tags)
    if rule is None:
        raise SyntheticWorldError(f"the tag table has no rule for the synthetic tags {dict(tags)}")
    metres = shapely.transform(geometry, lambda coords: coords / px_per_m)
    return shapely.transform(rule.footprint(kind, metres, tags), lambda coords: coords * px_per_m)


def metres_tag(value: float) -> str:
    """Formats a length for an OSM tag (``"7.5"``, ``"12"``)."""
    return f"{value:g}"
