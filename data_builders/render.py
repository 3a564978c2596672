"""Painting primitives for the synthetic world: anti-aliased polygons, noise, poses, light.

Geometry is in pixel coordinates of the canvas, the convention of :mod:`geochat.geometry`:
x to the right, y down, and pixel ``(col, row)`` covers ``[col, col + 1] x [row, row + 1]``.
Polygons are drawn with PIL on a supersampled mask, so a pixel's opacity is the fraction of it
the polygon covers; a pixel more than half covered is one whose centre is (almost always)
inside, which is what :func:`geochat.geometry.rasterize` sets, so truth masks and the picture
agree to a fraction of a pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from PIL import Image, ImageDraw, ImageFilter
from shapely import affinity
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

Colour = tuple[float, float, float]
# A multiplier of brightness over a window, from pixel-centre coordinates xs [1, w], ys [h, 1].
Pattern = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Sub-pixels per pixel side: edges within about 0.1 px, cheap enough to run once per object.
SUPERSAMPLE = 4
# Windows larger than this many pixels are drawn at half the supersampling (large polygons,
# where a 0.2 px edge error is invisible and a 4x mask would cost tens of milliseconds).
LARGE_WINDOW_PX = 384 * 384
# Darkening of a shadow per channel: sky light keeps shadows bluish.
SHADOW_FACTOR: Colour = (0.42, 0.47, 0.58)


@dataclass(frozen=True)
class Pose:
    """Places an object's local frame in the image.

    Local coordinates are metres, ``u`` along the object's length and ``v`` across it; the
    ``u`` axis points at ``angle_deg`` from the image +x axis, clockwise on screen, as in
    :func:`geochat.geometry.obb_to_quad`.

    Attributes:
        cx: Centre x in pixels.
        cy: Centre y in pixels.
        angle_deg: Direction of the local ``u`` axis.
        px_per_m: Pixels per metre (1 / GSD).
    """

    cx: float
    cy: float
    angle_deg: float
    px_per_m: float

    @cached_property
    def _axes(self) -> tuple[float, float]:
        theta = math.radians(self.angle_deg)
        return math.cos(theta) * self.px_per_m, math.sin(theta) * self.px_per_m

    @cached_property
    def _matrix(self) -> np.ndarray:
        c, s = self._axes
        return np.array([[c, s], [-s, c]])  # rows: where local u and v go

    def points(self, uv: np.ndarray) -> np.ndarray:
        """Maps local points ``[N, 2]`` (metres) to pixels ``[N, 2]``."""
        return uv @ self._matrix + (self.cx, self.cy)

    def direction(self, uv: tuple[float, float]) -> np.ndarray:
        """Maps a local unit direction to a unit direction ``(x, y)`` in the image."""
        return np.asarray(uv, dtype=np.float64) @ self._matrix / self.px_per_m

    def polygon(self, uv: np.ndarray) -> Polygon:
        """Returns the polygon whose local ring is ``uv`` ``[N, 2]``, placed in the image."""
        return shapely.polygons(self.points(uv))

    def place(self, geometry: BaseGeometry) -> BaseGeometry:
        """Places any shapely geometry given in local metres."""
        c, s = self._axes
        return affinity.affine_transform(geometry, [c, -s, s, c, self.cx, self.cy])

    def local(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maps pixel coordinates (broadcastable arrays) to local ``(u, v)`` metres."""
        c, s = self._axes
        scale = self.px_per_m**2
        dx, dy = xs - self.cx, ys - self.cy
        return (dx * c + dy * s) / scale, (dy * c - dx * s) / scale


@dataclass(frozen=True)
class Light:
    """The sun of a scene: one direction for every shadow and every lit roof face.

    Attributes:
        azimuth_deg: Direction towards the sun in the image, from +x, clockwise on screen.
        elevation_deg: Height of the sun above the horizon.
    """

    azimuth_deg: float
    elevation_deg: float

    @property
    def sun(self) -> np.ndarray:
        """Unit vector ``(x, y)`` pointing towards the sun in image coordinates."""
        theta = math.radians(self.azimuth_deg)
        return np.array([math.cos(theta), math.sin(theta)])

    def shadow_offset(self, height_m: float, px_per_m: float) -> tuple[float, float]:
        """Offset in pixels from an object's footprint to the shadow of its top."""
        length = height_m / math.tan(math.radians(self.elevation_deg)) * px_per_m
        dx, dy = -self.sun * length
        return float(dx), float(dy)


@dataclass(frozen=True)
class Texture:
    """Multiplicative brightness noise of a material, as amplitudes of the canvas noise fields.

    Attributes:
        grain: Per-pixel noise (sensor grain, gravel).
        mottle: Noise at a few metres (canopy clumps, stains).
        patches: Noise at tens of metres (moisture, wear).
        streaks: Elongated noise along the scene's wind direction (ripples, tracks).
        relief: The mottle as sunlit bumps (tree crowns in a canopy).
    """

    grain: float = 0.02
    mottle: float = 0.0
    patches: float = 0.0
    streaks: float = 0.0
    relief: float = 0.0


@dataclass(frozen=True)
class Patch:
    """The pixels a geometry covers: a window of the canvas and its opacity ``[h, w]``."""

    rows: slice
    cols: slice
    alpha: np.ndarray

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates of the window: ``xs [1, w]`` and ``ys [h, 1]``."""
        xs = np.arange(self.cols.start, self.cols.stop, dtype=np.float32)[None, :] + 0.5
        ys = np.arange(self.rows.start, self.rows.stop, dtype=np.float32)[:, None] + 0.5
        return xs, ys


def value_noise(
    rng: np.random.Generator,
    height: int,
    width: int,
    cell_px: float,
    stretch: float = 1.0,
    angle_deg: float = 0.0,
) -> np.ndarray:
    """Smooth random field with zero mean and unit standard deviation.

    Args:
        rng: Source of randomness.
        height: Rows of the field.
        width: Columns of the field.
        cell_px: Size of its features in pixels (across the elongation).
        stretch: Elongation of the features along ``angle_deg`` (1 is isotropic).
        angle_deg: Direction of the elongation from +x, clockwise on screen.

    Returns:
        ``[height, width]`` float32.
    """
    cell_y = max(cell_px, 1.0)
    cell_x = max(cell_px * stretch, 1.0)
    oriented = stretch != 1.0
    # An elongated field is drawn upright on a square covering every rotation, then turned.
    side_h = side_w = math.ceil(math.hypot(height, width)) + 2
    if not oriented:
        side_h, side_w = height, width
    grid_h = math.ceil(side_h / cell_y) + 2
    grid_w = math.ceil(side_w / cell_x) + 2
    grid = Image.fromarray(rng.standard_normal((grid_h, grid_w), dtype=np.float32))
    size = (round((grid_w - 1) * cell_x), round((grid_h - 1) * cell_y))
    field = grid.resize(size, Image.Resampling.BICUBIC)
    if oriented:
        # PIL turns counter-clockwise on screen for positive angles.
        field = field.crop((0, 0, side_w, side_h)).rotate(-angle_deg, Image.Resampling.BILINEAR)
        top, left = (side_h - height) // 2, (side_w - width) // 2
        field = field.crop((left, top, left + width, top + height))
    array = np.asarray(field, dtype=np.float32)[:height, :width]
    return (array - array.mean()) / (array.std() + 1e-6)


def _polygons(shapes: BaseGeometry | Iterable[BaseGeometry]) -> list[Polygon]:
    if isinstance(shapes, Polygon):
        # The common case, without the cost of splitting collections.
        return [] if shapes.is_empty else [shapes]
    geometries = [shapes] if isinstance(shapes, BaseGeometry) else list(shapes)
    parts = shapely.get_parts(np.asarray(geometries, dtype=object))
    return [part for part in parts if isinstance(part, Polygon) and not part.is_empty]


def _ring_points(ring: BaseGeometry, left: int, top: int, scale: int) -> list[float]:
    # PIL puts sub-pixel i's centre at coordinate i: shift by half a sub-pixel.
    coords = (shapely.get_coordinates(ring) - (left, top)) * scale - 0.5
    return coords.ravel().tolist()


def _bounds(polygons: list[Polygon]) -> tuple[float, float, float, float]:
    if len(polygons) == 1:
        return polygons[0].bounds
    bounds = shapely.bounds(np.asarray(polygons, dtype=object))  # [N, 4]
    return (*bounds[:, :2].min(axis=0), *bounds[:, 2:].max(axis=0))


class Canvas:
    """An RGB image being painted, as float32 ``[H, W, 3]`` in 0-255, with shared noise fields.

    Args:
        height: Rows.
        width: Columns.
        px_per_m: Pixels per metre, which sets the scale of the noise fields.
        rng: Source of the noise fields.
        wind_deg: Direction of the elongated noise (ripples, tracks).
        light: The sun, which lights the relief of bumpy textures (canopies).
    """

    def __init__(
        self,
        height: int,
        width: int,
        px_per_m: float,
        rng: np.random.Generator,
        wind_deg: float,
        light: Light,
    ) -> None:
        self.pixels = np.zeros((height, width, 3), dtype=np.float32)
        self.px_per_m = px_per_m
        self._rng = rng
        self._wind_deg = wind_deg
        self._light = light

    @property
    def height(self) -> int:
        """Rows of the canvas."""
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        """Columns of the canvas."""
        return self.pixels.shape[1]

    @cached_property
    def grain(self) -> np.ndarray:
        """Per-pixel noise ``[H, W]``."""
        return self._rng.standard_normal((self.height, self.width), dtype=np.float32)

    @cached_property
    def mottle(self) -> np.ndarray:
        """Noise with features of about 2.5 m ``[H, W]``."""
        return value_noise(self._rng, self.height, self.width, 2.5 * self.px_per_m)

    @cached_property
    def patches(self) -> np.ndarray:
        """Noise with features of about 30 m ``[H, W]``."""
        return value_noise(self._rng, self.height, self.width, 30.0 * self.px_per_m)

    @cached_property
    def streaks(self) -> np.ndarray:
        """Noise elongated along the wind, about 1.5 m across and 10 m long ``[H, W]``."""
        cell = 1.5 * self.px_per_m
        return value_noise(self._rng, self.height, self.width, cell, 7.0, self._wind_deg)

    @cached_property
    def relief(self) -> np.ndarray:
        """The mottle seen as bumps lit by the sun: its slope towards the sun ``[H, W]``."""
        slope_y, slope_x = np.gradient(self.mottle)
        sun_x, sun_y = self._light.sun
        lit = slope_x * sun_x + slope_y * sun_y
        return lit / (lit.std() + 1e-6)

    def coverage(self, shapes: BaseGeometry | Iterable[BaseGeometry]) -> Patch | None:
        """Returns the anti-aliased opacity of the union of polygons, or None off the canvas.

        Holes are kept; a polygon listed later may lie inside an earlier one's hole.
        """
        polygons = _polygons(shapes)
        if not polygons:
            return None
        x0, y0, x1, y1 = _bounds(polygons)
        left, top = max(math.floor(x0), 0), max(math.floor(y0), 0)
        right, bottom = min(math.ceil(x1), self.width), min(math.ceil(y1), self.height)
        if right <= left or bottom <= top:
            return None
        width, height = right - left, bottom - top
        scale = SUPERSAMPLE if width * height <= LARGE_WINDOW_PX else SUPERSAMPLE // 2
        mask = Image.new("L", (width * scale, height * scale), 0)
        draw = ImageDraw.Draw(mask)
        for polygon in polygons:
            draw.polygon(_ring_points(polygon.exterior, left, top, scale), fill=255)
            for hole in polygon.interiors:
                draw.polygon(_ring_points(hole, left, top, scale), fill=0)
        reduced = np.frombuffer(mask.reduce(scale).tobytes(), dtype=np.uint8)
        alpha = reduced.reshape(height, width).astype(np.float32) / 255.0
        return Patch(slice(top, bottom), slice(left, right), alpha)

    def paint(
        self,
        shapes: BaseGeometry | Iterable[BaseGeometry],
        colour: Sequence[float],
        texture: Texture | None = None,
        pattern: Pattern | None = None,
        opacity: float = 1.0,
    ) -> None:
        """Paints polygons with a colour, modulated by a texture and an optional pattern."""
        patch = self.coverage(shapes)
        if patch is None:
            return
        shade = self._texture(patch, texture or Texture())  # [h, w]
        if pattern is not None:
            shade = shade * pattern(*patch.centres())
        region = self.pixels[patch.rows, patch.cols]  # a view [h, w, 3]
        target = np.asarray(colour, dtype=np.float32) * shade[..., None]
        region += (target - region) * (patch.alpha * opacity)[..., None]

    def darken(
        self, shapes: BaseGeometry | Iterable[BaseGeometry], factor: Sequence[float]
    ) -> None:
        """Multiplies the covered pixels by ``factor`` per channel (shadows)."""
        patch = self.coverage(shapes)
        if patch is None:
            return
        loss = 1.0 - np.asarray(factor, dtype=np.float32)
        self.pixels[patch.rows, patch.cols] *= 1.0 - patch.alpha[..., None] * loss

    def _texture(self, patch: Patch, texture: Texture) -> np.ndarray:
        window = (patch.rows, patch.cols)
        shade = np.ones(patch.alpha.shape, dtype=np.float32)
        for amplitude, name in (
            (texture.grain, "grain"),
            (texture.mottle, "mottle"),
            (texture.patches, "patches"),
            (texture.streaks, "streaks"),
            (texture.relief, "relief"),
        ):
            if amplitude:
                shade += amplitude * getattr(self, name)[window]
        return shade


def sweep(polygon: Polygon, dx: float, dy: float) -> list[Polygon]:
    """Polygons whose union is ``polygon`` swept along ``(dx, dy)`` (the shadow of a prism)."""
    ring = np.asarray(polygon.exterior.coords)[:, :2]  # [N + 1, 2], closed
    offset = np.array([dx, dy])
    # One parallelogram per edge: the edge and its shifted copy.
    quads = np.stack([ring[:-1], ring[1:], ring[1:] + offset, ring[:-1] + offset], axis=1)
    shifted = affinity.translate(polygon, dx, dy)
    return [polygon, shifted, *shapely.polygons(quads)]


def blur_kernel(sigma: float) -> ImageFilter.Kernel:
    """A 3x3 Gaussian blur (the sensor's point spread) for PIL, normalised to sum 1."""
    weights = np.exp(-(np.arange(2) ** 2) / (2.0 * sigma**2))  # centre, side
    kernel = np.outer(weights[[1, 0, 1]], weights[[1, 0, 1]])  # [3, 3]
    return ImageFilter.Kernel((3, 3), (kernel / kernel.sum()).ravel().tolist(), 1)


def finish(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turns a painted canvas into a sensor image: haze, colour balance, blur and noise.

    Args:
        pixels: ``[H, W, 3]`` float32 in 0-255 (modified in place).
        rng: Source of the per-image variation.

    Returns:
        ``[H, W, 3]`` uint8.
    """
    haze = rng.uniform(0.02, 0.10)
    gains = rng.uniform(0.94, 1.06, size=3).astype(np.float32) * rng.uniform(0.92, 1.08)
    haze_colour = np.array([170.0, 180.0, 192.0], dtype=np.float32) * haze * gains
    pixels *= (1.0 - haze) * gains
    pixels += haze_colour
    # Sensor noise, the same in every band (luminance noise dominates).
    noise = rng.standard_normal(pixels.shape[:2], dtype=np.float32) * rng.uniform(1.0, 2.5)
    pixels += noise[..., None]
    np.clip(pixels, 0.0, 255.0, out=pixels)
    image = Image.fromarray(pixels.astype(np.uint8))
    return np.asarray(image.filter(blur_kernel(rng.uniform(0.35, 0.6))))
