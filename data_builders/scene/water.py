"""Water of a synthetic scene: a harbour basin, a river or stream, lakes and ponds."""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.render import Pose
from geochat.data_builders.scene.builder import SceneBuilder
from geochat.data_builders.scene.features import LAYER_SURFACE, Feature, Look, metres_tag
from geochat.data_builders.scene.recipes import Recipe
from geochat.data_builders.scene.shapes import BLOB_REACH, blob, largest_polygon, longest_line


def add_sea(builder: SceneBuilder) -> int:
    """A harbour basin on one side of the scene, with a straight quay and maybe a dock."""
    rng = builder.rng
    angle = builder.grid_angle + 90.0 * rng.integers(4)
    theta = math.radians(angle + 90.0)
    span = min(builder.width, builder.height)
    shift = rng.uniform(-0.1, 0.25) * span
    centre = np.array([builder.width / 2, builder.height / 2])
    quay = centre + shift * np.array([math.cos(theta), math.sin(theta)])
    pose = builder.pose(quay[0], quay[1], angle)
    reach = math.hypot(builder.width, builder.height) / builder.px_per_m
    water = pose.polygon(np.array([[-reach, 0.0], [reach, 0.0], [reach, reach], [-reach, reach]]))
    if rng.random() < 0.5:
        # A dock cut into the land, perpendicular to the quay.
        dock_width, dock_length = rng.uniform(40.0, 90.0), rng.uniform(60.0, 160.0)
        dock = np.array(
            [[0.0, -dock_length], [dock_width, -dock_length], [dock_width, 1.0], [0.0, 1.0]]
        )
        dock[:, 0] += rng.uniform(-0.3, 0.3) * span / builder.px_per_m
        water = water.union(pose.polygon(dock))
    footprint = largest_polygon(water.intersection(builder.frame))
    tags = {"natural": "water", "water": "harbour"}
    return builder.add(Feature(tags, footprint, LAYER_SURFACE, Look("water")))


def add_river(builder: SceneBuilder) -> int | None:
    """A meandering river or stream across the scene, as a line with a ``width``."""
    rng = builder.rng
    angle = math.radians(rng.uniform(0.0, 180.0))
    reach = math.hypot(builder.width, builder.height) / 2 + 10.0
    steps = np.linspace(-reach, reach, 96)
    wavelength = builder.px(rng.uniform(150.0, 400.0))
    swing = builder.px(rng.uniform(5.0, 30.0))
    lateral = swing * np.sin(2 * math.pi * steps / wavelength + rng.uniform(0, 2 * math.pi))
    lateral += rng.uniform(-0.25, 0.25) * min(builder.width, builder.height)
    along, across = (
        np.array([math.cos(angle), math.sin(angle)]),
        np.array([-math.sin(angle), math.cos(angle)]),
    )
    centre = np.array([builder.width / 2, builder.height / 2])
    points = centre + steps[:, None] * along + lateral[:, None] * across
    line = longest_line(LineString(points).intersection(builder.frame))
    if line is None:
        return None
    kind = "river" if rng.random() < 0.7 else "stream"
    width = round(rng.uniform(12.0, 30.0) if kind == "river" else rng.uniform(4.0, 8.0))
    tags = {"waterway": kind, "width": metres_tag(width)}
    footprint = builder.drawn("line", line, tags).intersection(builder.frame)
    return builder.add(Feature(tags, footprint, LAYER_SURFACE, Look("water"), line=line))


def lake_polygon(builder: SceneBuilder, pose: Pose, radius_m: float) -> Polygon:
    """A lake outline, with an island (a hole) about half the time when it is large enough."""
    rng = builder.rng
    outline = pose.polygon(blob(rng, radius_m))
    if radius_m < 18.0 or rng.random() < 0.45:
        return outline
    island_pose = builder.pose(
        *pose.points(rng.uniform(-0.25, 0.25, size=(1, 2)) * radius_m)[0], 0.0
    )
    island = island_pose.polygon(blob(rng, rng.uniform(0.2, 0.35) * radius_m, vertices=24))
    if not outline.buffer(-builder.px(4.0)).contains(island):
        return outline
    return Polygon(outline.exterior.coords, [island.exterior.coords])


def add_lake(
    builder: SceneBuilder, region: BaseGeometry, radius_m: tuple[float, float], kind: str
) -> int | None:
    """Tries to place a lake or pond inside ``region``, clear of everything placed.

    The radius is at most a quarter of the region's smaller side, so a lake leaves room for
    the rest of a small scene.
    """
    rng = builder.rng
    smaller = min(region.bounds[2] - region.bounds[0], region.bounds[3] - region.bounds[1])
    radius = min(rng.uniform(*radius_m), smaller / builder.px_per_m / 4)
    if radius < radius_m[0] / 2:
        return None
    # Centres far enough inside for the largest outline a blob of this radius can have.
    centres = region.buffer(-builder.px(BLOB_REACH * radius + 4.0))
    for _ in range(10):
        pose = builder.random_pose(centres, 0.0)
        if pose is None:
            continue
        polygon = lake_polygon(builder, pose, radius)
        if builder.fits(region, polygon.buffer(builder.px(4.0)), builder.solids):
            tags = {"natural": "water", "water": kind}
            return builder.add(Feature(tags, polygon, LAYER_SURFACE, Look("water")), builder.solids)
    return None


def add_water(builder: SceneBuilder, recipe: Recipe) -> tuple[list[int], list[int]]:
    """Sea, river and lake by the recipe's odds: (indices of barriers, indices of lakes)."""
    rng = builder.rng
    barriers: list[int] = []
    if rng.random() < recipe.water.get("sea", 0.0):
        barriers.append(add_sea(builder))
    elif rng.random() < recipe.water.get("river", 0.0):
        river = add_river(builder)
        barriers.extend([] if river is None else [river])
    lakes = []
    if rng.random() < recipe.water.get("lake", 0.0):
        region = builder.frame.buffer(-builder.px(8.0))
        for index in barriers:
            region = region.difference(builder.features[index].footprint.buffer(builder.px(10.0)))
        lake = add_lake(builder, region, (25.0, 80.0), str(rng.choice(["lake", "pond"])))
        lakes.extend([] if lake is None else [lake])
    return barriers, lakes
