"""Painters of the ground and of surfaces: land use, water, roads, parking, runways, pitches."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import LineString, Point

from geochat.data_builders.render import Canvas, Texture
from geochat.data_builders.scene.brushes import (
    PaintContext,
    dashes,
    line_width_m,
    outline,
    strokes,
    vary,
)
from geochat.data_builders.scene.features import Feature
from geochat.data_builders.scene.palette import (
    ASPHALT,
    CONCRETE,
    CROPS,
    GROUND,
    PAVED,
    SMOOTH,
    WATER,
    WHITE_PAINT,
    YELLOW_PAINT,
)
from geochat.data_builders.scene.shapes import ParkingLayout, rect


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
