"""Land use of the blocks of a synthetic scene, and the objects that belong to each."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import shapely
from shapely.geometry import Polygon

from geochat.data_builders.scene.builder import SceneBuilder, choose
from geochat.data_builders.scene.features import LAYER_GROUND, Feature, Look
from geochat.data_builders.scene.objects import (
    add_building,
    add_footway,
    add_parking,
    add_pitch,
    add_pool,
    add_tank_farm,
    add_trees,
)
from geochat.data_builders.scene.recipes import Recipe
from geochat.data_builders.scene.water import add_lake

GROUND_TAGS = {
    "residential": {"landuse": "residential"},
    "industrial": {"landuse": "industrial"},
    "park": {"leisure": "park"},
    "grass": {"landuse": "grass"},
    "forest": {"landuse": "forest"},
    "farmland": {"landuse": "farmland"},
}


def fill_residential(builder: SceneBuilder, block: Polygon, recipe: Recipe) -> None:
    """Houses along the streets, pools in the back gardens, trees, sometimes a shop."""
    rng = builder.rng
    if rng.random() < 0.2:
        size = (rng.uniform(20.0, 45.0), rng.uniform(15.0, 30.0))
        depth = builder.px(size[1] / 2 + rng.uniform(5.0, 10.0))
        pose = builder.edge_poses(block, np.array([depth]), 1.0)[0]
        add_building(builder, block, pose, size, "commercial", 4.0)
        add_parking(builder, block, "car")
    target = builder.count(block.exterior.length / builder.px_per_m / 16.0)
    tries = 3 * target
    lengths = rng.uniform(9.0, 16.0, size=tries)
    widths = rng.uniform(7.5, np.minimum(lengths, 12.0))
    depths = builder.px(rng.uniform(3.0, 8.0, size=tries) + widths / 2)
    placed = 0
    for length, width, pose in zip(
        lengths, widths, builder.edge_poses(block, depths, 2.0), strict=True
    ):
        if placed >= target:
            break
        if add_building(builder, block, pose, (length, width), "house", 2.5) is None:
            continue
        placed += 1
        if rng.random() < 0.4:
            behind = width / 2 + rng.uniform(3.0, 7.0) + 2.5
            spot = pose.points(np.array([[rng.uniform(-0.25, 0.25) * length, behind]]))[0]
            turn = 90.0 * rng.integers(2)
            add_pool(builder, block, builder.pose(spot[0], spot[1], pose.angle_deg + turn))
    add_trees(builder, block, builder.count(builder.area_m2(block) / 250.0))


def fill_industrial(builder: SceneBuilder, block: Polygon, recipe: Recipe) -> None:
    """Large flat-roofed buildings, a tank farm, parking lots with cars or trucks."""
    rng = builder.rng
    area = builder.area_m2(block)
    # Buildings scale with the block, so that small blocks still get some.
    longest = float(np.clip(0.7 * math.sqrt(area), 26.0, 90.0))
    for _ in range(4 * (builder.count(area / 6000.0) + 1)):
        length = rng.uniform(25.0, longest)
        width = rng.uniform(18.0, min(length, 50.0))
        pose = builder.random_pose(block, builder.grid_angle + 90.0 * rng.integers(2))
        add_building(builder, block, pose, (length, width), "industrial", 6.0)
    if rng.random() < recipe.tank_farm:
        add_tank_farm(builder, block)
    for _ in range(int(rng.integers(1, 4))):
        add_parking(builder, block, "truck" if rng.random() < 0.4 else "car")
    add_trees(builder, block, builder.count(area / 2500.0))


def fill_park(builder: SceneBuilder, block: Polygon, recipe: Recipe) -> None:
    """A footpath, maybe a pond, sports pitches and clusters of trees."""
    rng = builder.rng
    area = builder.area_m2(block)
    if rng.random() < 0.7:
        add_footway(builder, block)
    if rng.random() < 0.35 and area > 3000.0:
        add_lake(builder, block, (10.0, 30.0), "pond")
    for _ in range(min(builder.count(area / 3000.0), 3)):
        add_pitch(builder, block)
    add_trees(builder, block, builder.count(area / 180.0), cluster_m=10.0)


def fill_grass(builder: SceneBuilder, block: Polygon, recipe: Recipe) -> None:
    """A few scattered trees, sometimes a pitch."""
    if builder.rng.random() < 0.3:
        add_pitch(builder, block)
    add_trees(builder, block, builder.count(builder.area_m2(block) / 1500.0))


def add_fields(builder: SceneBuilder, block: Polygon) -> None:
    """Splits a block into parallel fields, each a ``landuse=farmland`` with its own crop."""
    rng = builder.rng
    angle = builder.grid_angle + 90.0 * rng.integers(2)
    x0, y0, x1, y1 = block.bounds
    pose = builder.pose((x0 + x1) / 2, (y0 + y1) / 2, angle)
    reach = math.hypot(x1 - x0, y1 - y0) / builder.px_per_m / 2 + 1.0
    start = -reach
    while start < reach:
        end = start + rng.uniform(30.0, 90.0)
        strip = pose.polygon(
            np.array([[start, -reach], [end, -reach], [end, reach], [start, reach]])
        )
        # Tracks of bare soil between fields.
        field_area = block.intersection(strip).buffer(-builder.px(1.0))
        for part in shapely.get_parts(field_area):
            if isinstance(part, Polygon) and builder.area_m2(part) > 200.0:
                crop = str(rng.choice(["green", "yellow", "brown", "pale"]))
                rows = builder.pose(pose.cx, pose.cy, angle + 90.0 * rng.integers(2))
                params = {"ground": "farmland", "crop": crop, "row_m": rng.uniform(1.5, 4.0)}
                look = Look("ground", pose=rows, params=params)
                builder.add(Feature(dict(GROUND_TAGS["farmland"]), part, LAYER_GROUND, look))
        start = end


def fill_block(
    builder: SceneBuilder, block: Polygon, recipe: Recipe, lakes: list[int], aprons: list[int]
) -> None:
    """Gives a block a land use and fills it with the objects that belong there.

    A block with a lake becomes a park or grass; one beside an apron, hangars (industrial).
    """
    rng = builder.rng
    reach = builder.px(60.0)
    if any(block.intersects(builder.features[i].footprint) for i in lakes):
        ground = "park" if rng.random() < 0.6 else "grass"
    elif any(block.distance(builder.features[i].footprint) < reach for i in aprons):
        ground = "industrial"
    else:
        ground = choose(rng, recipe.ground)
    if ground == "farmland":
        add_fields(builder, block)
        return
    if ground != "bare":
        tags = dict(GROUND_TAGS[ground])
        if ground == "forest":
            tags["leaf_type"] = str(rng.choice(["broadleaved", "needleleaved", "mixed"]))
        builder.add(Feature(tags, block, LAYER_GROUND, Look("ground", params={"ground": ground})))
    shapely.prepare(block)
    if ground in FILLERS:
        FILLERS[ground](builder, block, recipe)


# Objects of each land use (forest is a texture only).
FILLERS: dict[str, Callable[[SceneBuilder, Polygon, Recipe], None]] = {
    "residential": fill_residential,
    "industrial": fill_industrial,
    "park": fill_park,
    "grass": fill_grass,
    "bare": fill_grass,
}
