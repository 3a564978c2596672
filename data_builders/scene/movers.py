"""Vehicles and ships of a synthetic scene, each entirely on the road, lot or water it uses."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import Point

from geochat.data_builders.render import Pose
from geochat.data_builders.scene.builder import SceneBuilder, choose
from geochat.data_builders.scene.features import LAYER_MOVER, Feature, Look
from geochat.data_builders.scene.shapes import hull, rect

# Vehicles per metre of road, by class (a quiet residential street has fewer).
TRAFFIC_PER_M = {"primary": 1 / 30, "secondary": 1 / 35, "residential": 1 / 50, "service": 1 / 60}


VEHICLE_COLOURS = {
    "white": 0.3,
    "black": 0.2,
    "silver": 0.2,
    "grey": 0.12,
    "red": 0.1,
    "blue": 0.08,
}


# Ship kinds: (length range in metres, beam as a fraction of length, height above water).
SHIP_SIZES = {
    "cargo": ((70.0, 160.0), 0.15, 12.0),
    "fishing": ((12.0, 28.0), 0.3, 4.0),
    "yacht": ((8.0, 20.0), 0.32, 2.5),
}


def add_vehicle(
    builder: SceneBuilder,
    pose: Pose,
    kind: str,
    support: int,
    avoid: np.ndarray | None = None,
) -> int | None:
    """Places a car or truck at ``pose`` if it lies on its support and clear of the rest.

    Args:
        builder: The scene.
        pose: Centre and heading.
        kind: ``"car"`` or ``"truck"``.
        support: Index of the road or parking lot it must lie on entirely.
        avoid: Footprints it must not touch (the other roads, so none stands on a junction).
    """
    rng = builder.rng
    if kind == "truck":
        length, width, height = rng.uniform(10.0, 16.5), rng.uniform(2.4, 2.55), 3.8
    else:
        length, width, height = rng.uniform(4.2, 4.9), rng.uniform(1.7, 1.9), 1.5
    footprint = pose.polygon(rect(length, width))
    zone = pose.polygon(rect(length + 1.0, width + 0.6))
    if not shapely.contains(builder.features[support].footprint, footprint):
        return None
    if avoid is not None and shapely.intersects(footprint, avoid).any():
        return None
    if not builder.movers.is_free(zone):
        return None
    tags = {"vehicle": kind, "colour": choose(rng, VEHICLE_COLOURS)}
    params = {"length": length, "width": width, "kind": kind}
    look = Look("vehicle", height_m=height, pose=pose, params=params)
    feature = Feature(tags, footprint, LAYER_MOVER, look, support=support)
    return builder.add(feature, builder.movers)


def add_traffic(builder: SceneBuilder, roads: list[int]) -> None:
    """Cars and trucks driving or parked along the roads, each entirely on one road."""
    rng = builder.rng
    footprints = np.array([builder.features[i].footprint for i in roads], dtype=object)
    for position, index in enumerate(roads):
        road = builder.features[index]
        road_class = road.tags["highway"]
        if road_class not in TRAFFIC_PER_M:
            continue
        shapely.prepare(road.footprint)
        others = np.delete(footprints, position)
        half = builder.px(float(road.tags["width"])) / 2
        line = road.line
        for _ in range(builder.count(line.length / builder.px_per_m * TRAFFIC_PER_M[road_class])):
            truck = rng.random() < (0.25 if road_class in ("primary", "service") else 0.05)
            side = 1.0 if rng.random() < 0.5 else -1.0
            # Parked at the kerb or driving in the middle of the lane.
            offset = half - builder.px(1.4) if rng.random() < 0.5 else half / 2
            pose = builder.line_pose(line, rng.uniform(0.0, line.length), side * offset)
            add_vehicle(builder, pose, "truck" if truck else "car", index, others)


def add_apron_vehicles(builder: SceneBuilder, apron: int) -> None:
    """Service cars and trucks standing on an apron."""
    rng = builder.rng
    footprint = builder.features[apron].footprint
    shapely.prepare(footprint)
    for _ in range(builder.count(builder.area_m2(footprint) / 2500.0)):
        pose = builder.random_pose(footprint, rng.uniform(0.0, 360.0))
        if pose is not None:
            add_vehicle(builder, pose, "truck" if rng.random() < 0.4 else "car", apron)


def ship_kind(builder: SceneBuilder, water: Feature) -> str:
    """A kind of ship that suits a body of water."""
    if water.tags.get("water") == "harbour":
        return choose(builder.rng, {"cargo": 0.3, "fishing": 0.35, "yacht": 0.35})
    return "yacht" if builder.rng.random() < 0.8 else "fishing"


def ship_size(rng: np.random.Generator, kind: str) -> tuple[float, float]:
    """Length and beam in metres of a ship of ``kind``."""
    (low, high), beam, _ = SHIP_SIZES[kind]
    length = rng.uniform(low, high)
    return length, length * beam * rng.uniform(0.9, 1.1)


def add_ship(
    builder: SceneBuilder, water_index: int, pose: Pose, kind: str, size_m: tuple[float, float]
) -> int | None:
    """Places a ship of ``size_m`` (length, beam) at ``pose`` if it floats clear of the rest."""
    rng = builder.rng
    water = builder.features[water_index]
    length, width = size_m
    height = SHIP_SIZES[kind][2]
    zone = pose.polygon(hull(length + 4.0, width + 4.0))
    if not (shapely.contains(water.footprint, zone) and builder.movers.is_free(zone)):
        return None
    tags = {"seamark:type": "vessel", "ship": kind}
    moving = rng.random() < 0.4
    params = {"length": length, "width": width, "kind": kind, "wake": moving}
    look = Look("ship", height_m=height, pose=pose, params=params)
    feature = Feature(
        tags, pose.polygon(hull(length, width)), LAYER_MOVER, look, support=water_index
    )
    return builder.add(feature, builder.movers)


def add_ships(builder: SceneBuilder, waters: list[int]) -> None:
    """Ships on the sea and lakes, boats on wide rivers; some moored along the quay."""
    rng = builder.rng
    for index in waters:
        water = builder.features[index]
        shapely.prepare(water.footprint)
        if water.line is not None:
            if float(water.tags["width"]) < 12.0:
                continue
            for _ in range(builder.count(water.line.length / builder.px_per_m / 150.0)):
                pose = builder.line_pose(water.line, rng.uniform(0.0, water.line.length), 0.0)
                kind = ship_kind(builder, water)
                add_ship(builder, index, pose, kind, ship_size(rng, kind))
            continue
        area = builder.area_m2(water.footprint)
        per_ship = 6000.0 if water.tags.get("water") == "harbour" else 4000.0
        for _ in range(2 * min(builder.count(area / per_ship), 30)):
            kind = ship_kind(builder, water)
            size = ship_size(rng, kind)
            if kind == "cargo" and rng.random() < 0.6:
                # Moored along the quay (the image border is no quay).
                depth = builder.px(size[1] / 2 + 2.5)
                pose = builder.edge_poses(water.footprint, np.array([depth]), 0.5)[0]
                border = builder.frame.exterior
                if pose is not None and border.distance(Point(pose.cx, pose.cy)) < 2 * depth:
                    pose = None
            else:
                pose = builder.random_pose(water.footprint, rng.uniform(0.0, 360.0))
            if pose is not None:
                add_ship(builder, index, pose, kind, size)
