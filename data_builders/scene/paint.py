"""Painting a laid-out synthetic scene: materials, markings, shadows, in layer order.

Each painter draws one kind of feature inside its footprint only (markings, windows, court
lines are details inside it), so the footprint stays the exact truth of what was drawn. What
lies outside a footprint (shadows, pool decks, wakes) is drawn before the objects of the upper
layers, so it never covers another object. The painters are in :mod:`.paint_surfaces` and
:mod:`.paint_objects`, their colours in :mod:`.palette`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.render import SHADOW_FACTOR, Canvas, Light, finish, sweep
from geochat.data_builders.scene.brushes import PaintContext
from geochat.data_builders.scene.features import LAYER_SURFACE, Feature
from geochat.data_builders.scene.paint_objects import (
    paint_pool,
    paint_pool_deck,
    paint_roof,
    paint_ship,
    paint_tank,
    paint_tree,
    paint_vehicle,
    paint_wake,
)
from geochat.data_builders.scene.paint_surfaces import (
    paint_apron,
    paint_background,
    paint_ground,
    paint_parking,
    paint_pitch,
    paint_road,
    paint_runway,
    paint_water,
)


def shadow(feature: Feature, context: PaintContext) -> list[BaseGeometry]:
    """Polygons whose union is a raised feature's shadow.

    That is its prism swept away from the sun, or for a tree its crown moved (the crown floats
    above a short trunk).
    """
    if feature.look.height_m <= 0:
        return []
    dx, dy = context.light.shadow_offset(feature.look.height_m, context.px_per_m)
    if feature.look.painter == "tree":
        return [affinity.translate(feature.footprint, 0.8 * dx, 0.8 * dy)]
    return [
        polygon for part in shapely.get_parts(feature.footprint) for polygon in sweep(part, dx, dy)
    ]


Painter = Callable[[Canvas, Feature, PaintContext], None]
PAINTERS: dict[str, Painter] = {
    "ground": paint_ground,
    "water": paint_water,
    "road": paint_road,
    "parking": paint_parking,
    "runway": paint_runway,
    "apron": paint_apron,
    "pitch": paint_pitch,
    "roof": paint_roof,
    "pool": paint_pool,
    "tank": paint_tank,
    "tree": paint_tree,
    "vehicle": paint_vehicle,
    "ship": paint_ship,
}
# Drawn on the ground around an object, before any shadow or raised object.
DECORATIONS: dict[str, Painter] = {"pool": paint_pool_deck, "ship": paint_wake}


def paint_scene(
    features: Sequence[Feature],
    height: int,
    width: int,
    px_per_m: float,
    light: Light,
    rng: np.random.Generator,
) -> np.ndarray:
    """Paints a laid-out scene.

    Args:
        features: The scene's features (see :func:`data_builders.scene.layout.layout_scene`).
        height: Image rows.
        width: Image columns.
        px_per_m: Pixels per metre.
        light: The sun.
        rng: Source of every random choice of colour and noise.

    Returns:
        The image ``[height, width, 3]`` uint8.
    """
    canvas = Canvas(height, width, px_per_m, rng, float(rng.uniform(0.0, 180.0)), light)
    context = PaintContext(light, px_per_m, features, rng)
    paint_background(canvas)
    flat = sorted((f for f in features if f.layer <= LAYER_SURFACE), key=lambda f: f.layer)
    raised = sorted((f for f in features if f.layer > LAYER_SURFACE), key=lambda f: f.layer)
    for feature in flat:
        PAINTERS[feature.look.painter](canvas, feature, context)
    for feature in raised:
        if feature.look.painter in DECORATIONS:
            DECORATIONS[feature.look.painter](canvas, feature, context)
    # One pass for every shadow: where shadows overlap, the ground is not darkened twice.
    canvas.darken([part for feature in raised for part in shadow(feature, context)], SHADOW_FACTOR)
    for feature in raised:
        PAINTERS[feature.look.painter](canvas, feature, context)
    return finish(canvas.pixels, rng)
