"""Painters of raised objects and movers: roofs, pools, tanks, trees, vehicles, ships."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import Point

from geochat.data_builders.render import SHADOW_FACTOR, Canvas, Pose, Texture, sweep
from geochat.data_builders.scene.brushes import PaintContext, dome, facing, strokes, vary
from geochat.data_builders.scene.features import Feature
from geochat.data_builders.scene.palette import CONTAINERS, ROOF, SMOOTH, VEHICLE
from geochat.data_builders.scene.shapes import ellipse, hull, pool_outline, rect, shifted


def roof_faces(
    length: float, width: float, shape: str
) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """Faces of a pitched roof in local metres with their outward normals.

    A gable roof has two faces meeting at a ridge along its length; a hip roof also slopes at
    both ends.
    """
    u, v = length / 2, width / 2
    inset = min(v, u) if shape == "hip" else 0.0
    faces = [
        (np.array([[-u, -v], [u, -v], [u - inset, 0.0], [-u + inset, 0.0]]), (0.0, -1.0)),
        (np.array([[-u, v], [u, v], [u - inset, 0.0], [-u + inset, 0.0]]), (0.0, 1.0)),
    ]
    if inset:
        faces.append((np.array([[-u, -v], [-u + inset, 0.0], [-u, v]]), (-1.0, 0.0)))
        faces.append((np.array([[u, -v], [u - inset, 0.0], [u, v]]), (1.0, 0.0)))
    return faces


def paint_roof(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """A roof: pitched faces lit by the sun, or flat with a parapet and rooftop units."""
    pose, params = feature.look.pose, feature.look.params
    colour = vary(context.rng, ROOF[feature.tags["roof:colour"]], 0.05)
    texture = Texture(grain=0.04, mottle=0.04)
    if params["shape"] != "flat":
        # The faces tile the footprint; their anti-aliased seams draw the ridge and hips.
        for face, normal in roof_faces(params["length"], params["width"], params["shape"]):
            lit = 1.0 + 0.22 * facing(context, pose, normal)
            canvas.paint(pose.polygon(face), colour * lit, texture)
        return
    ribs = None
    if params["kind"] == "industrial":

        def ribs(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
            _, v = pose.local(xs, ys)
            return 1.0 + 0.05 * np.sin(2.0 * math.pi * v / 1.5)

    canvas.paint(feature.footprint, colour, texture, ribs)
    parapet = feature.footprint.difference(feature.footprint.buffer(-0.7 * context.px_per_m))
    canvas.paint(parapet, colour * 0.82, SMOOTH)
    paint_rooftop_units(canvas, feature, context)


def paint_rooftop_units(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """A few air-conditioning boxes on a flat roof, with their small shadows."""
    rng, pose, params = context.rng, feature.look.pose, feature.look.params
    units = []
    for _ in range(int(rng.integers(0, 6))):
        size = rng.uniform(1.5, 4.0, size=2)
        room = np.array([params["length"], params["width"]]) / 2 - 2.0 - size / 2
        if (room <= 0).any():
            continue
        centre = rng.uniform(-room, room)
        units.append(pose.polygon(rect(*size) + centre))
    offset = context.light.shadow_offset(1.5, context.px_per_m)
    for unit in units:
        shadow = shapely.union_all(sweep(unit, *offset)).intersection(feature.footprint)
        canvas.darken(shadow, SHADOW_FACTOR)
    canvas.paint(units, vary(rng, (188.0, 188.0, 186.0), 0.04), SMOOTH)


def paint_pool_deck(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """A paved deck one metre wide around a pool (outside its footprint)."""
    params = feature.look.params
    deck = feature.look.pose.polygon(
        pool_outline(params["oval"])(params["length"] + 2.0, params["width"] + 2.0)
    )
    canvas.paint(deck, vary(context.rng, (206.0, 200.0, 188.0), 0.04), Texture(grain=0.04))


def paint_pool(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """Clear turquoise water, a little lighter at the shallow end."""
    pose, length = feature.look.pose, feature.look.params["length"]
    colour = (70.0, 175.0, 210.0) if context.rng.random() < 0.6 else (62.0, 185.0, 196.0)

    def shallow_end(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        u, _ = pose.local(xs, ys)
        return 1.0 + 0.08 * u / length

    canvas.paint(
        feature.footprint,
        vary(context.rng, colour, 0.04),
        Texture(grain=0.02, streaks=0.04),
        shallow_end,
    )


def paint_tank(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """A round storage tank: a lit dome, or a sunken floating roof inside a rim."""
    pose = feature.look.pose
    radius = math.sqrt(feature.footprint.area / math.pi)
    water = feature.tags.get("content") == "water"
    base = (180.0, 198.0, 182.0) if water else (214.0, 214.0, 208.0)
    colour = vary(context.rng, base, 0.05)
    canvas.paint(feature.footprint, colour, SMOOTH, dome(context, pose, radius, 0.15))
    if feature.look.params["floating"]:
        roof = Point(pose.cx, pose.cy).buffer(0.9 * radius)
        canvas.paint(roof, colour * 0.78, SMOOTH, dome(context, pose, radius, -0.2))
    hatch = Point(pose.cx, pose.cy).buffer(max(0.08 * radius, 0.6))
    canvas.paint(hatch, colour * 0.6, SMOOTH)


def paint_tree(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """A tree crown: clumpy foliage, lit on the sunny side, darker at the rim."""
    x, y = feature.point
    radius = math.sqrt(feature.footprint.area / math.pi)
    needle = feature.tags.get("leaf_type") == "needleleaved"
    colour = vary(context.rng, (36.0, 64.0, 42.0) if needle else (58.0, 94.0, 46.0), 0.1)
    sun_x, sun_y = context.light.sun

    def crown(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        dx, dy = (xs - x) / radius, (ys - y) / radius
        return 1.0 + 0.3 * (dx * sun_x + dy * sun_y) - 0.2 * (dx * dx + dy * dy)

    canvas.paint(feature.footprint, colour, Texture(grain=0.06, mottle=0.12, relief=0.18), crown)


def paint_vehicle(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """A car (body, windscreen, rear window) or a truck (cab and trailer)."""
    pose, params = feature.look.pose, feature.look.params
    length, width = params["length"], params["width"]
    body = vary(context.rng, VEHICLE[feature.tags["colour"]], 0.04)
    if params["kind"] == "truck":
        canvas.paint(feature.footprint, (48.0, 48.0, 50.0), SMOOTH)
        cab = shifted(rect(2.2, width - 0.1), length / 2 - 1.15, 0.0)
        trailer = shifted(rect(length - 2.9, width - 0.1), -1.4, 0.0)
        trailer_colour = CONTAINERS[int(context.rng.integers(len(CONTAINERS)))]
        canvas.paint(pose.polygon(cab), body, SMOOTH)
        canvas.paint(pose.polygon(trailer), vary(context.rng, trailer_colour, 0.05), SMOOTH)
        return
    canvas.paint(feature.footprint, body, SMOOTH)
    glass = (38.0, 44.0, 54.0)
    for start, end in ((0.12, 0.32), (-0.42, -0.3)):
        window = shifted(
            rect((end - start) * length, 0.84 * width), (start + end) / 2 * length, 0.0
        )
        canvas.paint(pose.polygon(window), glass, SMOOTH, opacity=0.9)


def paint_ship(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """A ship: hull, deck, then containers and a bridge, a wheelhouse or a cabin."""
    rng, pose, params = context.rng, feature.look.pose, feature.look.params
    length, width, kind = params["length"], params["width"], params["kind"]
    hull_colours = {
        "cargo": ((120.0, 40.0, 36.0), (40.0, 50.0, 70.0), (30.0, 30.0, 34.0)),
        "fishing": ((40.0, 70.0, 130.0), (150.0, 45.0, 40.0), (225.0, 225.0, 220.0)),
        "yacht": ((236.0, 236.0, 232.0),),
    }[kind]
    canvas.paint(
        feature.footprint,
        vary(rng, hull_colours[int(rng.integers(len(hull_colours)))], 0.04),
        SMOOTH,
    )
    rail = max(0.06 * width, 0.3)
    deck_colour = {
        "cargo": (110.0, 100.0, 90.0),
        "fishing": (95.0, 92.0, 88.0),
        "yacht": (165.0, 125.0, 85.0),
    }[kind]
    canvas.paint(
        pose.polygon(hull(length - 2 * rail, width - 2 * rail)),
        vary(rng, deck_colour, 0.05),
        SMOOTH,
    )
    white = (232.0, 232.0, 228.0)
    if kind == "cargo":
        paint_containers(canvas, pose, length, width - 2 * rail, rng)
        canvas.paint(
            pose.polygon(shifted(rect(0.1 * length, 0.8 * width), -0.41 * length, 0.0)),
            white,
            SMOOTH,
        )
    elif kind == "fishing":
        canvas.paint(
            pose.polygon(shifted(rect(0.2 * length, 0.6 * width), 0.12 * length, 0.0)),
            white,
            SMOOTH,
        )
    else:
        cabin = pose.polygon(shifted(ellipse(0.4 * length, 0.62 * width), 0.02 * length, 0.0))
        canvas.paint(cabin, (205.0, 210.0, 215.0), SMOOTH)


def paint_containers(
    canvas: Canvas, pose: Pose, length: float, beam: float, rng: np.random.Generator
) -> None:
    """Stacks of containers in bays along a cargo ship's deck, each stack one colour."""
    bay = 12.2 if length > 100.0 else 6.1
    rows = max(int(beam // 2.44), 1)
    cells = []
    for u in np.arange(-0.32 * length, 0.36 * length - bay, bay + 0.4):
        for row in range(rows):
            v = (row - (rows - 1) / 2) * 2.44
            if rng.random() < 0.85:
                cells.append(
                    (
                        shifted(rect(bay, 2.3), u + bay / 2, v),
                        CONTAINERS[int(rng.integers(len(CONTAINERS)))],
                    )
                )
    for cell, colour in cells:
        canvas.paint(pose.polygon(cell), vary(rng, colour, 0.06), SMOOTH)


def paint_wake(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """Foam behind a moving ship, on its water only: a churned trail and two diverging arms."""
    if not feature.look.params["wake"]:
        return
    pose, params = feature.look.pose, feature.look.params
    length, width = params["length"], params["width"]
    stern = -length / 2
    # Kelvin wake arms open at about 19.5 degrees on each side.
    spread = math.tan(math.radians(19.5)) * length
    arms = [
        np.array([[stern, side * width / 2], [stern - length, side * (width / 2 + spread)]])
        for side in (-1.0, 1.0)
    ]
    water = context.features[feature.support].footprint
    foam = (212.0, 224.0, 226.0)
    trail = Texture(grain=0.15, streaks=0.5)
    for reach, opacity in ((1.2, 0.15), (0.5, 0.25)):
        churn = pose.polygon(
            shifted(rect(reach * length, 0.7 * width), stern - reach * length / 2, 0.0)
        )
        canvas.paint(churn.intersection(water), foam, trail, opacity=opacity)
    canvas.paint(strokes(pose, arms, 0.4 * width).intersection(water), foam, trail, opacity=0.12)
