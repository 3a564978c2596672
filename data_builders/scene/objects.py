"""Objects placed inside blocks: buildings, pools, trees, parking lots, pitches, paths, tanks."""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.render import Pose
from geochat.data_builders.scene.builder import SceneBuilder, choose
from geochat.data_builders.scene.features import (
    LAYER_OBJECT,
    LAYER_SURFACE,
    Feature,
    Look,
    metres_tag,
)
from geochat.data_builders.scene.movers import add_vehicle
from geochat.data_builders.scene.shapes import (
    CAR_PARKING,
    TRUCK_PARKING,
    ParkingLayout,
    largest_polygon,
    longest_line,
    pool_outline,
    rect,
)

ROOF_COLOURS = {
    "house": {"red": 0.32, "grey": 0.22, "brown": 0.2, "white": 0.14, "blue": 0.12},
    "industrial": {"grey": 0.4, "white": 0.3, "blue": 0.2, "red": 0.05, "brown": 0.05},
    "commercial": {"grey": 0.3, "white": 0.3, "blue": 0.14, "red": 0.13, "brown": 0.13},
}


PITCH_SURFACES = {
    "tennis": ("clay", "hard", "grass"),
    "basketball": ("asphalt", "hard"),
    "soccer": ("grass", "artificial_turf"),
}


def add_building(
    builder: SceneBuilder,
    region: BaseGeometry,
    pose: Pose | None,
    size_m: tuple[float, float],
    kind: str,
    clearance_m: float,
) -> int | None:
    """Places a building of ``size_m`` (length, width) at ``pose`` if it fits."""
    if pose is None:
        return None
    length, width = size_m
    zone = pose.polygon(rect(length + 2 * clearance_m, width + 2 * clearance_m))
    if not builder.fits(region, zone, builder.solids):
        return None
    rng = builder.rng
    roof = choose(rng, ROOF_COLOURS[kind])
    tags = {"building": kind, "roof:colour": roof}
    if kind == "house":
        levels = int(rng.choice([1, 1, 2]))
        shape = "hip" if rng.random() < 0.35 else "gable"
        height = 3.0 * levels + 2.5
    else:
        levels = int(rng.integers(1, 4 if kind == "industrial" else 6))
        shape = "flat"
        height = 4.0 * levels + 2.0
    tags["building:levels"] = str(levels)
    if kind == "industrial" and rng.random() < 0.3:
        tags["building"] = "yes"
    params = {"shape": shape, "length": length, "width": width, "kind": kind}
    look = Look("roof", height_m=height, pose=pose, params=params)
    return builder.add(
        Feature(tags, pose.polygon(rect(length, width)), LAYER_OBJECT, look), builder.solids
    )


def add_pool(builder: SceneBuilder, region: BaseGeometry, pose: Pose) -> int | None:
    """Places a swimming pool (rectangular or oval) at ``pose`` if it fits, with its deck."""
    rng = builder.rng
    length, width = rng.uniform(6.0, 12.0), rng.uniform(3.0, 5.5)
    oval = rng.random() < 0.25
    outline = pool_outline(oval)
    if not builder.fits(region, pose.polygon(outline(length + 3.0, width + 3.0)), builder.solids):
        return None
    tags = {"leisure": "swimming_pool", "access": "private"}
    look = Look("pool", pose=pose, params={"length": length, "width": width, "oval": oval})
    footprint = pose.polygon(outline(length, width))
    return builder.add(Feature(tags, footprint, LAYER_OBJECT, look), builder.solids)


def add_tree(builder: SceneBuilder, region: BaseGeometry, x: float, y: float) -> int | None:
    """Places a tree (an OSM node with ``diameter_crown``) at pixel ``(x, y)`` if it fits."""
    rng = builder.rng
    diameter = round(rng.uniform(3.5, 10.0), 1)
    radius = builder.px(diameter / 2)
    # A 16-gon around the crown plus clearance still contains the crown.
    zone = Point(x, y).buffer(radius + builder.px(0.4), quad_segs=4)
    if not builder.fits(region, zone, builder.solids):
        return None
    leaf = "needleleaved" if rng.random() < 0.25 else "broadleaved"
    tags = {"natural": "tree", "diameter_crown": metres_tag(diameter), "leaf_type": leaf}
    look = Look("tree", height_m=diameter * 1.3 + 2.0)
    footprint = builder.drawn("node", Point(x, y), tags)
    feature = Feature(tags, footprint, LAYER_OBJECT, look, point=(float(x), float(y)))
    return builder.add(feature, builder.solids)


def add_trees(builder: SceneBuilder, region: Polygon, count: int, cluster_m: float = 0.0) -> None:
    """Scatters about ``count`` trees over ``region``; in clusters when ``cluster_m`` > 0."""
    rng = builder.rng
    x0, y0, x1, y1 = region.bounds
    centre = (rng.uniform(x0, x1), rng.uniform(y0, y1))
    for index in range(count):
        if cluster_m and index % 6 == 0:
            centre = (rng.uniform(x0, x1), rng.uniform(y0, y1))
        if cluster_m:
            x, y = np.asarray(centre) + rng.normal(0.0, builder.px(cluster_m), size=2)
        else:
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        add_tree(builder, region, x, y)


def add_parking(builder: SceneBuilder, region: BaseGeometry, vehicle: str) -> int | None:
    """Places a surface parking lot inside ``region`` and fills some of its stalls."""
    rng = builder.rng
    if vehicle == "truck":
        layout = ParkingLayout(int(rng.integers(3, 9)), 1, **TRUCK_PARKING)
    else:
        layout = ParkingLayout(int(rng.integers(5, 20)), int(rng.integers(1, 4)), **CAR_PARKING)
    pose = builder.random_pose(region, builder.grid_angle + 90.0 * rng.integers(2))
    if pose is None:
        return None
    zone = pose.polygon(rect(layout.length + 4.0, layout.width + 4.0))
    if not builder.fits(region, zone, builder.solids):
        return None
    lot = pose.polygon(rect(layout.length, layout.width))
    tags = {"amenity": "parking", "parking": "surface", "capacity": str(layout.capacity)}
    look = Look("parking", pose=pose, params={"layout": layout})
    index = builder.add(Feature(tags, lot, LAYER_SURFACE, look), builder.solids)
    fill = rng.uniform(0.25, 0.95)
    for u in layout.stall_edges()[:-1] + layout.stall_width / 2:
        for v, aisle_side in layout.rows():
            if rng.random() < fill:
                jitter = rng.normal(0.0, 0.15, size=2)
                centre = pose.points(np.array([[u + jitter[0], v + jitter[1]]]))[0]
                heading = pose.angle_deg + 90.0 * aisle_side + rng.normal(0.0, 2.0)
                add_vehicle(builder, builder.pose(*centre, heading), vehicle, index)
    return index


def add_pitch(builder: SceneBuilder, region: BaseGeometry) -> int | None:
    """Places a tennis court, basketball court or soccer field inside ``region``."""
    rng = builder.rng
    sport = str(rng.choice(list(PITCH_SURFACES)))
    if sport == "tennis":
        length, width = 36.6, 18.3
    elif sport == "basketball":
        length, width = 32.0, 19.0
    else:
        # From a small-sided field to a full one, as the block allows.
        longest = float(np.clip(0.8 * math.sqrt(builder.area_m2(region)), 41.0, 105.0))
        length = rng.uniform(40.0, longest)
        width = length * 0.66
    pose = builder.random_pose(region, builder.grid_angle + 90.0 * rng.integers(2))
    if pose is None or not builder.fits(
        region, pose.polygon(rect(length + 6, width + 6)), builder.solids
    ):
        return None
    tags = {"leisure": "pitch", "sport": sport, "surface": str(rng.choice(PITCH_SURFACES[sport]))}
    look = Look("pitch", pose=pose, params={"length": length, "width": width})
    footprint = pose.polygon(rect(length, width))
    return builder.add(Feature(tags, footprint, LAYER_SURFACE, look), builder.solids)


def add_footway(builder: SceneBuilder, block: Polygon) -> int | None:
    """A straight footpath across a park, between two points of its outline."""
    rng = builder.rng
    inner = largest_polygon(block.buffer(-builder.px(4.0)))
    if inner is None:
        return None
    ring = inner.exterior
    start = rng.uniform(0.0, ring.length)
    end = (start + rng.uniform(0.3, 0.7) * ring.length) % ring.length
    chord = LineString([ring.interpolate(start), ring.interpolate(end)])
    line = longest_line(chord.intersection(inner))
    if line is None or line.length < builder.px(20.0):
        return None
    surface = str(rng.choice(["gravel", "paved"]))
    tags = {"highway": "footway", "width": metres_tag(2.5), "surface": surface}
    footprint = builder.drawn("line", line, tags)
    if not builder.solids.is_free(footprint.buffer(builder.px(1.0))):
        return None
    look = Look("road", params={"class": "footway"})
    return builder.add(Feature(tags, footprint, LAYER_SURFACE, look, line=line), builder.solids)


def add_tank_farm(builder: SceneBuilder, block: Polygon) -> None:
    """A grid of storage tanks of one size."""
    rng = builder.rng
    diameter = round(rng.uniform(10.0, 28.0), 1)
    spacing = diameter + rng.uniform(5.0, 9.0)
    anchor = builder.random_pose(block, builder.grid_angle)
    if anchor is None:
        return
    content = str(rng.choice(["oil", "water", "fuel"]))
    floating = content != "water" and rng.random() < 0.6
    height = float(np.clip(0.6 * diameter, 8.0, 20.0))
    radius = builder.px(diameter / 2)
    for row in range(int(rng.integers(1, 4))):
        for column in range(int(rng.integers(1, 5))):
            x, y = anchor.points(np.array([[column * spacing, row * spacing]]))[0]
            zone = Point(x, y).buffer(radius + builder.px(3.0), quad_segs=8)
            if not builder.fits(block, zone, builder.solids):
                continue
            tags = {"man_made": "storage_tank", "content": content}
            look = Look(
                "tank", height_m=height, pose=builder.pose(x, y, 0.0), params={"floating": floating}
            )
            footprint = Point(x, y).buffer(radius, quad_segs=8)
            builder.add(Feature(tags, footprint, LAYER_OBJECT, look), builder.solids)
