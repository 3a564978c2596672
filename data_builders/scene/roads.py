"""The road grid of a synthetic scene and the blocks of land it leaves between roads and water."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.scene.builder import SceneBuilder
from geochat.data_builders.scene.features import LAYER_SURFACE, Feature, Look, metres_tag
from geochat.data_builders.scene.recipes import Recipe

# Carriageway widths in metres (before a +-10 % jitter); written to OSM as ``width``.
ROAD_WIDTH_M = {
    "primary": 14.0,
    "secondary": 11.0,
    "residential": 7.5,
    "service": 5.5,
    "footway": 2.5,
}


def grid_offsets(rng: np.random.Generator, reach: float, spacing: float) -> list[float]:
    """Offsets of parallel roads from the scene centre, about ``spacing`` apart."""
    offsets, offset = [], -reach + rng.uniform(0.0, spacing)
    while offset < reach:
        offsets.append(offset)
        offset += spacing * rng.uniform(0.75, 1.3)
    return offsets


def road_lines(builder: SceneBuilder, recipe: Recipe) -> list[tuple[LineString, str]]:
    """Straight roads of a grid at the scene's angle, with their classes, before clipping."""
    rng = builder.rng
    reach = math.hypot(builder.width, builder.height) / 2 + 10.0
    centre = np.array([builder.width / 2, builder.height / 2])
    lines = []
    for angle in (builder.grid_angle, builder.grid_angle + 90.0):
        theta = math.radians(angle)
        along, across = (
            np.array([math.cos(theta), math.sin(theta)]),
            np.array([-math.sin(theta), math.cos(theta)]),
        )
        offsets = grid_offsets(rng, reach, builder.px(rng.uniform(*recipe.road_spacing_m)))
        major = int(rng.integers(len(offsets))) if offsets and rng.random() < 0.7 else -1
        for index, offset in enumerate(offsets):
            if index != major and rng.random() > 0.85:
                continue
            road_class = (
                str(rng.choice(recipe.major_roads)) if index == major else recipe.minor_road
            )
            middle = centre + across * offset
            lines.append((LineString([middle - along * reach, middle + along * reach]), road_class))
    return lines


def with_junctions(lines: list[LineString]) -> list[LineString]:
    """Adds each crossing of two lines as a vertex of both, so OSM ways share the node."""
    crossings: list[list[Point]] = [[] for _ in lines]
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            meeting = lines[i].intersection(lines[j])
            points = [p for p in shapely.get_parts(meeting) if isinstance(p, Point)]
            crossings[i].extend(points)
            crossings[j].extend(points)
    result = []
    for line, points in zip(lines, crossings, strict=True):
        vertices = [Point(c) for c in line.coords] + points
        vertices.sort(key=line.project)
        coords = [(p.x, p.y) for p in vertices]
        unique = [c for k, c in enumerate(coords) if k == 0 or c != coords[k - 1]]
        result.append(LineString(unique))
    return result


def add_roads(builder: SceneBuilder, recipe: Recipe, barrier: BaseGeometry) -> list[int]:
    """The road grid, stopped short of ``barrier`` (water, runways), as OSM lines."""
    rng = builder.rng
    pieces: list[LineString] = []
    tags_of: list[dict[str, str]] = []
    for line, road_class in road_lines(builder, recipe):
        width = round(ROAD_WIDTH_M[road_class] * rng.uniform(0.9, 1.1) * 2) / 2
        keep_out = barrier.buffer(builder.px(width / 2 + 8.0)) if not barrier.is_empty else None
        visible = line.intersection(builder.frame)
        if keep_out is not None:
            visible = visible.difference(keep_out)
        for piece in shapely.get_parts(visible):
            if isinstance(piece, LineString) and piece.length >= builder.px(30.0):
                pieces.append(piece)
                tags = {"highway": road_class, "width": metres_tag(width), "surface": "asphalt"}
                if road_class in ("primary", "secondary"):
                    tags["lanes"] = str(rng.choice([2, 4]) if road_class == "primary" else 2)
                tags_of.append(tags)
    ids = []
    for line, tags in zip(with_junctions(pieces), tags_of, strict=True):
        footprint = builder.drawn("line", line, tags).intersection(builder.frame)
        look = Look("road", params={"class": tags["highway"]})
        ids.append(builder.add(Feature(tags, footprint, LAYER_SURFACE, look, line=line)))
    return ids


def carve_blocks(builder: SceneBuilder, roads: list[int], barrier: BaseGeometry) -> list[Polygon]:
    """The land between roads, water and runways, with a verge along the roads."""
    verge = builder.px(builder.rng.uniform(2.0, 4.0))
    cuts = [
        builder.features[i].line.buffer(
            builder.px(float(builder.features[i].tags["width"])) / 2 + verge
        )
        for i in roads
    ]
    if not barrier.is_empty:
        cuts.append(barrier.buffer(builder.px(3.0)))
    land = builder.frame.difference(shapely.union_all(cuts)) if cuts else builder.frame
    blocks = []
    for part in shapely.get_parts(land):
        if not isinstance(part, Polygon) or builder.area_m2(part) < 225.0:
            continue
        simple = part.simplify(0.25)
        blocks.append(simple if simple.is_valid and not simple.is_empty else part)
    return blocks
