"""The airfield of an airport scene: a runway across the scene and an apron beside it."""

from __future__ import annotations

import math

import numpy as np

from geochat.data_builders.scene.builder import SceneBuilder
from geochat.data_builders.scene.features import LAYER_SURFACE, Feature, Look, metres_tag
from geochat.data_builders.scene.shapes import rect


def runway_ref(angle_deg: float) -> str:
    """Runway designators (``"09/27"``) from the direction of the runway in the image."""
    heading = (90.0 + angle_deg) % 360.0  # compass: 0 north, 90 east; image +x is east
    first = round(heading / 10.0) % 36 or 36
    second = (first + 18) % 36 or 36
    low, high = sorted((first, second))
    return f"{low:02d}/{high:02d}"


def add_airfield(builder: SceneBuilder) -> list[int]:
    """A runway across the scene and an apron beside it."""
    rng = builder.rng
    angle = builder.grid_angle + rng.normal(0.0, 2.0)
    theta = math.radians(angle)
    across = np.array([-math.sin(theta), math.cos(theta)])
    offset = rng.uniform(-0.2, 0.2) * min(builder.width, builder.height)
    centre = np.array([builder.width / 2, builder.height / 2]) + across * offset
    pose = builder.pose(centre[0], centre[1], angle)
    reach = math.hypot(builder.width, builder.height) / builder.px_per_m
    width = round(rng.uniform(30.0, 60.0))
    runway = pose.polygon(rect(2 * reach, width)).intersection(builder.frame)
    surface = "asphalt" if rng.random() < 0.6 else "concrete"
    tags = {"aeroway": "runway", "ref": runway_ref(angle), "surface": surface}
    tags["width"] = metres_tag(width)
    look = Look("runway", pose=pose, params={"width": width})
    ids = [builder.add(Feature(tags, runway, LAYER_SURFACE, look))]
    side = 1.0 if rng.random() < 0.5 else -1.0
    depth, length = rng.uniform(70.0, 150.0), rng.uniform(150.0, 400.0)
    distance = width / 2 + rng.uniform(70.0, 130.0) + depth / 2
    apron_centre = pose.points(np.array([[rng.uniform(-0.3, 0.3) * reach, side * distance]]))[0]
    apron_pose = builder.pose(apron_centre[0], apron_centre[1], angle)
    apron = apron_pose.polygon(rect(length, depth)).intersection(builder.frame)
    if builder.area_m2(apron) > 400.0:
        look = Look("apron", pose=apron_pose, params={"length": length, "width": depth})
        tags = {"aeroway": "apron", "surface": "concrete"}
        ids.append(builder.add(Feature(tags, apron, LAYER_SURFACE, look)))
    return ids
