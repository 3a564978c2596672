"""Painting a laid-out synthetic scene: materials, markings, shadows, in layer order.

Each painter draws one kind of feature inside its footprint only (markings, windows, court
lines are details inside it), so the footprint stays the exact truth of what was drawn. What
lies outside a footprint (shadows, pool decks, wakes) is drawn before the objects of the upper
layers, so it never covers another object. Palettes are chosen so that categories and the colour
attributes the tags name stay apart (a blue roof is not the blue of a pool).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import affinity, ops
from shapely.geometry import LineString, MultiLineString, Point
from shapely.geometry.base import BaseGeometry

from geochat.data_builders.render import (
    SHADOW_FACTOR,
    Canvas,
    Colour,
    Light,
    Pattern,
    Pose,
    Texture,
    finish,
    sweep,
)
from geochat.data_builders.scene.features import LAYER_SURFACE, Feature
from geochat.data_builders.scene.shapes import (
    ParkingLayout,
    ellipse,
    hull,
    pool_outline,
    rect,
    shifted,
)

WHITE_PAINT: Colour = (226.0, 226.0, 216.0)
YELLOW_PAINT: Colour = (208.0, 176.0, 62.0)
ROOF: dict[str, Colour] = {
    "red": (170.0, 74.0, 58.0),
    "brown": (122.0, 86.0, 62.0),
    "grey": (128.0, 128.0, 134.0),
    "white": (224.0, 224.0, 218.0),
    "blue": (66.0, 98.0, 156.0),
}
VEHICLE: dict[str, Colour] = {
    "white": (228.0, 228.0, 225.0),
    "black": (32.0, 32.0, 36.0),
    "silver": (176.0, 179.0, 184.0),
    "grey": (108.0, 110.0, 114.0),
    "red": (172.0, 36.0, 36.0),
    "blue": (42.0, 72.0, 146.0),
}
GROUND: dict[str, tuple[Colour, Texture]] = {
    "residential": ((94.0, 124.0, 72.0), Texture(grain=0.03, mottle=0.07, patches=0.07)),
    "industrial": ((150.0, 146.0, 136.0), Texture(grain=0.05, mottle=0.05, patches=0.07)),
    "park": ((86.0, 134.0, 64.0), Texture(grain=0.03, mottle=0.05, patches=0.08)),
    "grass": ((110.0, 140.0, 74.0), Texture(grain=0.03, mottle=0.06, patches=0.07)),
    "forest": ((42.0, 72.0, 40.0), Texture(grain=0.06, mottle=0.15, patches=0.08, relief=0.25)),
    "farmland": ((0.0, 0.0, 0.0), Texture(grain=0.03, mottle=0.04, patches=0.1)),
}
CROPS: dict[str, Colour] = {
    "green": (106.0, 142.0, 64.0),
    "yellow": (196.0, 178.0, 108.0),
    "brown": (140.0, 112.0, 84.0),
    "pale": (168.0, 166.0, 118.0),
}
WATER: dict[str, Colour] = {
    "harbour": (30.0, 60.0, 88.0),
    "lake": (44.0, 84.0, 86.0),
    "pond": (50.0, 90.0, 78.0),
    "river": (52.0, 86.0, 84.0),
    "stream": (60.0, 90.0, 78.0),
}
ASPHALT: dict[str, Colour] = {
    "primary": (72.0, 72.0, 76.0),
    "secondary": (80.0, 80.0, 84.0),
    "residential": (92.0, 92.0, 95.0),
    "service": (112.0, 110.0, 106.0),
    "footway": (178.0, 168.0, 148.0),
}
CONCRETE: Colour = (168.0, 167.0, 160.0)
CONTAINERS: tuple[Colour, ...] = (
    (168.0, 52.0, 40.0),
    (40.0, 80.0, 150.0),
    (60.0, 120.0, 70.0),
    (200.0, 120.0, 40.0),
    (130.0, 130.0, 130.0),
    (215.0, 215.0, 210.0),
)
PAVED = Texture(grain=0.05, mottle=0.03, patches=0.06)
SMOOTH = Texture(grain=0.03, mottle=0.03)


@dataclass(frozen=True)
class PaintContext:
    """What every painter may read: the sun, the scale, all features, the scene's randomness."""

    light: Light
    px_per_m: float
    features: Sequence[Feature]
    rng: np.random.Generator


def vary(rng: np.random.Generator, colour: Colour, amount: float = 0.06) -> np.ndarray:
    """A colour with a random brightness change of up to ``amount`` and a slight tint."""
    tint = rng.uniform(1.0 - amount / 3, 1.0 + amount / 3, size=3)
    return np.asarray(colour) * rng.uniform(1.0 - amount, 1.0 + amount) * tint


def line_width_m(context: PaintContext, metres: float) -> float:
    """Width of a painted marking: its real width, but at least half a pixel, so it shows."""
    return max(metres, 0.5 / context.px_per_m)


def strokes(pose: Pose, lines: Sequence[np.ndarray], width_m: float) -> BaseGeometry:
    """Local polylines (metres) as thin polygons of ``width_m``, placed in the image."""
    drawn = MultiLineString([np.asarray(line, dtype=float) for line in lines])
    return pose.place(drawn.buffer(width_m / 2, cap_style="flat", join_style="mitre"))


def outline(length: float, width: float) -> np.ndarray:
    """The closed polyline of a rectangle's border in local metres ``[5, 2]``."""
    corners = rect(length, width)
    return np.concatenate([corners, corners[:1]])


def dashes(line: LineString, dash_px: float, gap_px: float, width_px: float) -> np.ndarray:
    """Dashed marking along a pixel line: an array of thin polygons."""
    starts = np.arange(gap_px / 2, line.length - dash_px, dash_px + gap_px)
    pieces = [ops.substring(line, start, start + dash_px) for start in starts]
    return shapely.buffer(np.array(pieces, dtype=object), width_px / 2, cap_style="flat")


def facing(context: PaintContext, pose: Pose, normal_uv: tuple[float, float]) -> float:
    """How much a face whose local normal is ``normal_uv`` turns to the sun (-1 to 1)."""
    return float(pose.direction(normal_uv) @ context.light.sun)


def dome(context: PaintContext, pose: Pose, radius_px: float, strength: float) -> Pattern:
    """A pattern lighting a round top on its sunny side (negative strength: a hollow)."""
    sun_x, sun_y = context.light.sun

    def pattern(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return 1.0 + strength * ((xs - pose.cx) * sun_x + (ys - pose.cy) * sun_y) / radius_px

    return pattern


# ---------------------------------------------------------------- ground and surfaces


def paint_background(canvas: Canvas) -> None:
    """Unmapped land: bare soil and dry grass in patches."""
    soil = np.array([146.0, 132.0, 102.0], dtype=np.float32)
    dry_grass = np.array([124.0, 134.0, 84.0], dtype=np.float32)
    mix = 1.0 / (1.0 + np.exp(-1.5 * canvas.patches))[..., None]  # [H, W, 1]
    shade = (1.0 + 0.06 * canvas.mottle + 0.03 * canvas.grain)[..., None]
    canvas.pixels[:] = (soil * (1.0 - mix) + dry_grass * mix) * shade


def paint_ground(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """Land use: lawn, concrete, crops in rows, forest canopy, grass."""
    ground = feature.look.params["ground"]
    colour, texture = GROUND[ground]
    pattern = None
    if ground == "farmland":
        colour = CROPS[feature.look.params["crop"]]
        rows, period = feature.look.pose, feature.look.params["row_m"]

        def pattern(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
            u, _ = rows.local(xs, ys)
            return 1.0 + 0.08 * np.sin(2.0 * math.pi * u / period)

    canvas.paint(feature.footprint, vary(context.rng, colour, 0.05), texture, pattern)


def paint_water(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """Water, lighter and greener in the shallows along the shore."""
    footprint = feature.footprint
    kind = feature.tags.get("water") or feature.tags.get("waterway", "lake")
    deep = vary(context.rng, WATER[kind], 0.05)
    shallow = deep * np.array([1.25, 1.3, 1.1])
    texture = Texture(grain=0.015, patches=0.05, streaks=0.025)
    canvas.paint(footprint, shallow, texture)
    frame = shapely.box(0, 0, canvas.width, canvas.height).exterior.buffer(0.01)
    shore = footprint.boundary.difference(frame)
    for depth_m, opacity in ((2.0, 0.6), (6.0, 1.0)):
        # GEOS can buffer a long, nearly straight shore into a self-intersecting polygon,
        # on which the difference below raises a TopologyException.
        shallows = shapely.make_valid(shore.buffer(depth_m * context.px_per_m))
        canvas.paint(
            footprint.difference(shallows),
            deep,
            texture,
            opacity=opacity,
        )


def paint_road(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """Asphalt (or gravel for footways), with lane markings on main roads."""
    road_class = feature.look.params["class"]
    canvas.paint(feature.footprint, vary(context.rng, ASPHALT[road_class], 0.04), PAVED)
    if road_class not in ("primary", "secondary"):
        return
    scale = context.px_per_m
    width = line_width_m(context, 0.3) * scale
    canvas.paint(
        dashes(feature.line, 3.0 * scale, 6.0 * scale, width), WHITE_PAINT, SMOOTH, opacity=0.85
    )
    if road_class == "primary":
        edge = (float(feature.tags["width"]) / 2 - 0.8) * scale
        lines = [feature.line.offset_curve(side * edge) for side in (1.0, -1.0)]
        edges = shapely.buffer(np.array(lines, dtype=object), width / 2, cap_style="flat")
        canvas.paint(list(edges), WHITE_PAINT, SMOOTH, opacity=0.8)


def paint_parking(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """Asphalt with a white line between stalls."""
    layout: ParkingLayout = feature.look.params["layout"]
    canvas.paint(feature.footprint, vary(context.rng, (96.0, 96.0, 99.0), 0.04), PAVED)
    lines = [
        np.array([[u, v - layout.stall_depth / 2], [u, v + layout.stall_depth / 2]])
        for v, _ in layout.rows()
        for u in layout.stall_edges()
    ]
    marks = strokes(feature.look.pose, lines, line_width_m(context, 0.15))
    canvas.paint(marks, WHITE_PAINT, SMOOTH, opacity=0.85)


def paint_runway(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """Runway pavement with side stripes, a dashed centre line and dark tyre marks."""
    pose, width = feature.look.pose, feature.look.params["width"]
    base = ASPHALT["primary"] if feature.tags.get("surface") == "asphalt" else CONCRETE
    canvas.paint(
        feature.footprint, vary(context.rng, base, 0.04), Texture(grain=0.04, patches=0.08)
    )
    reach = math.hypot(canvas.width, canvas.height) / context.px_per_m
    tyres = pose.polygon(rect(2 * reach, 0.35 * width)).intersection(feature.footprint)
    canvas.paint(tyres, (40.0, 40.0, 44.0), Texture(grain=0.1, streaks=0.4), opacity=0.3)
    sides = [np.array([[-reach, v], [reach, v]]) for v in (width / 2 - 1.5, 1.5 - width / 2)]
    canvas.paint(strokes(pose, sides, 0.9).intersection(feature.footprint), WHITE_PAINT, SMOOTH)
    axis = pose.place(LineString([(-reach, 0.0), (reach, 0.0)])).intersection(feature.footprint)
    for line in shapely.get_parts(axis):
        scale = context.px_per_m
        canvas.paint(
            list(dashes(line, 30.0 * scale, 20.0 * scale, 0.9 * scale)), WHITE_PAINT, SMOOTH
        )


def paint_apron(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """Concrete slabs with joints, and yellow lead-in lines of aircraft stands."""
    pose = feature.look.pose
    length, width = feature.look.params["length"], feature.look.params["width"]
    joint = line_width_m(context, 0.15) / 2

    def slabs(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        u, v = pose.local(xs, ys)
        on_joint = (np.abs(u % 5.0 - 2.5) > 2.5 - joint) | (np.abs(v % 5.0 - 2.5) > 2.5 - joint)
        return 1.0 - 0.08 * on_joint

    canvas.paint(feature.footprint, vary(context.rng, (176.0, 174.0, 166.0), 0.03), PAVED, slabs)
    stands = np.arange(-length / 2 + 25.0, length / 2 - 10.0, 45.0)
    lines = [np.array([[u, -width / 2 + 3.0], [u, width / 4]]) for u in stands]
    if lines:
        marks = strokes(pose, lines, line_width_m(context, 0.3)).intersection(feature.footprint)
        canvas.paint(marks, YELLOW_PAINT, SMOOTH, opacity=0.9)


def tennis_lines() -> list[np.ndarray]:
    """Lines of a tennis court (doubles), local metres."""
    half_length, half_width, singles, service = 11.885, 5.485, 4.115, 6.4
    return [
        outline(2 * half_length, 2 * half_width),
        np.array([[-half_length, singles], [half_length, singles]]),
        np.array([[-half_length, -singles], [half_length, -singles]]),
        np.array([[-service, -singles], [-service, singles]]),
        np.array([[service, -singles], [service, singles]]),
        np.array([[-service, 0.0], [service, 0.0]]),
    ]


def circle_line(centre_u: float, radius: float) -> np.ndarray:
    """A closed circle polyline, local metres ``[65, 2]``."""
    return np.asarray(Point(centre_u, 0.0).buffer(radius).exterior.coords)


def basketball_lines() -> list[np.ndarray]:
    """Lines of a basketball court (FIBA), local metres."""
    half_length, half_width = 14.0, 7.5
    lines = [
        outline(2 * half_length, 2 * half_width),
        np.array([[0.0, -half_width], [0.0, half_width]]),
        circle_line(0.0, 1.8),
    ]
    for end in (-1.0, 1.0):
        key = end * (half_length - 5.8)
        lines.append(
            np.array(
                [[end * half_length, -2.45], [key, -2.45], [key, 2.45], [end * half_length, 2.45]]
            )
        )
        # The three-point line: a circle round the basket, cut by the court and the corners.
        arc = LineString(circle_line(end * (half_length - 1.575), 6.75)).intersection(
            shapely.box(-half_length, -6.6, half_length, 6.6)
        )
        lines.extend(
            np.asarray(part.coords)
            for part in shapely.get_parts(arc)
            if isinstance(part, LineString)
        )
    return lines


def soccer_lines(length: float, width: float) -> list[np.ndarray]:
    """Lines of a soccer field filling ``length`` x ``width`` with a 2 m margin, local metres.

    A small-sided field (under 100 m) shrinks its circle and boxes in proportion.
    """
    half_length, half_width = length / 2 - 2.0, width / 2 - 2.0
    scale = min(1.0, length / 100.0)
    box_half = min(20.15 * scale, half_width - 2.0)
    lines = [
        outline(2 * half_length, 2 * half_width),
        np.array([[0.0, -half_width], [0.0, half_width]]),
        circle_line(0.0, 9.15 * scale),
    ]
    for end in (-1.0, 1.0):
        for depth, half in ((16.5 * scale, box_half), (5.5 * scale, 9.16 * scale)):
            inner = end * (half_length - depth)
            lines.append(
                np.array(
                    [
                        [end * half_length, -half],
                        [inner, -half],
                        [inner, half],
                        [end * half_length, half],
                    ]
                )
            )
    return lines


def paint_pitch(canvas: Canvas, feature: Feature, context: PaintContext) -> None:
    """A sports pitch: its surface, the playing area and white lines."""
    pose, params = feature.look.pose, feature.look.params
    sport, surface = feature.tags["sport"], feature.tags["surface"]
    rng = context.rng
    if sport == "soccer":
        turf = (60.0, 135.0, 70.0) if surface == "artificial_turf" else (76.0, 142.0, 62.0)

        def mown(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
            u, _ = pose.local(xs, ys)
            return 1.0 + 0.06 * np.sign(np.sin(2.0 * math.pi * u / 10.0))

        canvas.paint(feature.footprint, vary(rng, turf, 0.04), SMOOTH, mown)
        lines = soccer_lines(params["length"], params["width"])
    else:
        outer, inner = {
            "clay": ((174.0, 92.0, 62.0), (174.0, 92.0, 62.0)),
            "hard": ((60.0, 118.0, 80.0), (56.0, 92.0, 148.0)),
            "grass": ((98.0, 150.0, 78.0), (98.0, 150.0, 78.0)),
            "asphalt": ((100.0, 100.0, 104.0), (176.0, 102.0, 60.0)),
        }[surface]
        canvas.paint(feature.footprint, vary(rng, outer, 0.04), SMOOTH)
        court = (23.77, 10.97) if sport == "tennis" else (28.0, 15.0)
        canvas.paint(pose.polygon(rect(*court)), vary(rng, inner, 0.04), SMOOTH)
        lines = tennis_lines() if sport == "tennis" else basketball_lines()
    canvas.paint(
        strokes(pose, lines, line_width_m(context, 0.12)), WHITE_PAINT, SMOOTH, opacity=0.9
    )
    if sport == "tennis":
        net = strokes(pose, [np.array([[0.0, -6.4], [0.0, 6.4]])], line_width_m(context, 0.3))
        canvas.paint(net, (50.0, 50.0, 52.0), SMOOTH)


# ---------------------------------------------------------------- objects


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


# ---------------------------------------------------------------- shadows and order


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
