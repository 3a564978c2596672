"""Imagery as people have it: open, choose bands, mask no-data, stretch to 8-bit RGB.

One reader for everything that turns imagery into model input: the dataset builders (tiles),
the engine (``load_image``), the app and the API. What it does to a raster is decided by an
:class:`ImagerySettings` and recorded as a *resolved* one (concrete bands, fill value and
stretch limits), which a build writes into its manifest and training copies into the
checkpoint, so the model is served the same pixels it was trained on.

Sources: GeoTIFF / COG (and anything GDAL reads) through rasterio, by path or bytes; PNG and
JPEG through PIL; PIL images and numpy arrays.

Bands (1-based, three for RGB or one for grey), first rule that applies:

1. ``bands`` asked explicitly (``--bands 4,3,2``);
2. a ``preset``: a sensor (:data:`SENSORS`: ``landsat8``, ``landsat9``, ``sentinel2``,
   ``planetscope``, ``planetscope8``, ``naip``) with a composite, ``natural`` (default) or
   ``cir`` (colour-infrared false colour: NIR, red, green), written ``sentinel2:cir``; a
   sensor's bands are found by the file's band descriptions when they carry the sensor's band
   names, else by the sensor's band order. ``cir`` alone finds NIR, red and green from the
   file (descriptions, colour interpretation; the band left over in a 4-band RGB+1 file),
   else assumes the order red, green, blue, NIR;
3. the file's colour interpretation (red, green, blue), then its band descriptions ("red",
   "B4", ...: Landsat 8/9 and Sentinel-2 agree on B2-B4 being blue, green, red);
4. the first three bands, or band 1 (grey) for a file with fewer.

No-data, all masked (black in the output, ``valid`` False for builders): the file's nodata
value, its internal mask or alpha band, NaN, and a *fill* value that frames the scene: with
``fill="auto"`` (default) and no nodata value or mask in the file, when some pixel on the
raster's border has 0 (or, for signed and float data, -9999 or the type's lowest value) in
every chosen band, every pixel with that value in every chosen band is no-data (the zero
collar of a Landsat scene). ``fill`` may also be a number, or None for no fill.

Stretch to 8 bits, per band: ``auto`` (default) keeps 8-bit data as it is and stretches
anything else by percentile; ``percentile`` maps the ``percentiles`` (default 2 and 98) of the
band's *valid* pixels to 0 and 255 (computed over the whole raster, from a read decimated to
at most :data:`STATS_SIDE` pixels a side, so every window of a raster is stretched alike);
``minmax`` maps fixed ``limits`` to 0 and 255; ``none`` keeps values, clipped to 0-255 (for
8-bit data).
"""

from __future__ import annotations

import argparse
import io
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from PIL import Image, UnidentifiedImageError
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.transform import Affine
from rasterio.windows import Window

from geochat.georef import Georef

DEFAULT_MAX_PIXELS = 200_000_000
DEFAULT_PERCENTILES = (2.0, 98.0)
STRETCHES = ("auto", "percentile", "minmax", "none")
COMPOSITES = ("natural", "cir")
# Stretch statistics come from a read decimated to at most this many pixels a side: exact for
# tiles and small images, fast on scenes of hundreds of megapixels.
STATS_SIDE = 1024
# Raster pixels a decimated read holds at once: it reads full-resolution strips of this many
# pixels and keeps every n-th (GDAL's own decimated read of a tiled, compressed raster took
# 70 s for 8,192 px a side; strips 1 s).
STRIP_PIXELS = 2**22
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF
CHANNELS = (1, 3, 4)  # array channels: grey, RGB, RGBA (alpha dropped)
_DEEP_PIL_MODES = ("I", "I;16", "I;16B", "I;16L", "F")
_FILL_FLOOR = -9999.0  # the common fill value of signed and float products

ImageSource = str | Path | Image.Image | np.ndarray | bytes
Limits = tuple[tuple[float, float], ...]


class ImageError(ValueError):
    """An image that cannot be used: corrupt, unsupported, too large or of a wrong shape."""


@dataclass(frozen=True)
class Sensor:
    """A sensor's band order and its composites.

    Attributes:
        title: For people.
        band_names: Names of the bands in the sensor's usual file order.
        natural: Band names shown as red, green, blue in natural colour.
        cir: Band names shown as red, green, blue in colour-infrared (NIR, red, green).
    """

    title: str
    band_names: tuple[str, ...]
    natural: tuple[str, str, str]
    cir: tuple[str, str, str]


_LANDSAT = Sensor(
    "Landsat 8/9 OLI (B1 coastal ... B7 SWIR 2)",
    ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11"),
    ("B4", "B3", "B2"),
    ("B5", "B4", "B3"),
)
SENSORS: dict[str, Sensor] = {
    "landsat8": _LANDSAT,
    "landsat9": _LANDSAT,
    "sentinel2": Sensor(
        "Sentinel-2 MSI, 13 bands (B1 ... B8, B8A, B9 ... B12)",
        ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"),
        ("B4", "B3", "B2"),
        ("B8", "B4", "B3"),
    ),
    "planetscope": Sensor(
        "PlanetScope 4-band (blue, green, red, NIR)",
        ("blue", "green", "red", "nir"),
        ("red", "green", "blue"),
        ("nir", "red", "green"),
    ),
    "planetscope8": Sensor(
        "PlanetScope SuperDove 8-band",
        ("coastal_blue", "blue", "green_i", "green", "yellow", "red", "red_edge", "nir"),
        ("red", "green", "blue"),
        ("nir", "red", "green"),
    ),
    "naip": Sensor(
        "NAIP (red, green, blue, NIR)",
        ("red", "green", "blue", "nir"),
        ("red", "green", "blue"),
        ("nir", "red", "green"),
    ),
}
# Band descriptions that name a colour (normalised: lower case, no spaces, "-" or "_").
_DESCRIBED = {
    "red": ("red", "r", "b4", "b04", "srb4"),
    "green": ("green", "g", "b3", "b03", "srb3"),
    "blue": ("blue", "b", "b2", "b02", "srb2"),
    "nir": ("nir", "nearinfrared", "nir08"),
}
_INTERPRETED = {"red": ColorInterp.red, "green": ColorInterp.green, "blue": ColorInterp.blue}


@dataclass(frozen=True)
class ImagerySettings:
    """How imagery becomes 8-bit RGB (see the module docs); JSON-ready with to_dict/from_dict.

    A *resolved* settings object (from :func:`resolve`) has concrete ``bands``, a numeric or
    None ``fill`` and a ``minmax`` or ``none`` stretch: applied again it gives the same pixels.

    Attributes:
        bands: 1-based bands shown as R, G, B (or one, grey); None chooses from the file.
        preset: ``"<sensor>[:natural|cir]"``, ``"natural"`` or ``"cir"``; used when ``bands``
            is None.
        stretch: ``auto``, ``percentile``, ``minmax`` or ``none``.
        percentiles: Low and high percentiles of the valid pixels for ``percentile``.
        limits: ``(low, high)`` for ``minmax``: one pair for every band or one per band.
        fill: ``"auto"``, a number, or None (see the module docs).
    """

    bands: tuple[int, ...] | None = None
    preset: str | None = None
    stretch: str = "auto"
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    limits: Limits | None = None
    fill: float | Literal["auto"] | None = "auto"

    def __post_init__(self) -> None:
        # Lists from JSON become tuples, so settings compare and hash by value.
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(int(band) for band in self.bands))
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if self.limits is not None:
            limits = tuple((float(low), float(high)) for low, high in self.limits)
            object.__setattr__(self, "limits", limits)
        self._check()

    def _check(self) -> None:
        if self.bands is not None and (len(self.bands) not in (1, 3) or min(self.bands) < 1):
            raise ValueError(
                f"choose 3 bands (RGB) or 1 (grey), numbered from 1, got {list(self.bands)}"
            )
        if self.preset is not None:
            _parse_preset(self.preset)
        if self.stretch not in STRETCHES:
            raise ValueError(f"stretch must be one of {STRETCHES}, got {self.stretch!r}")
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles need 0 <= low < high <= 100, got {low}, {high}")
        if self.stretch == "minmax" and not self.limits:
            raise ValueError("the minmax stretch needs limits, e.g. minmax:0,3000")
        for low, high in self.limits or ():
            if not low < high:
                raise ValueError(f"stretch limits need low < high, got {low}, {high}")
        if isinstance(self.fill, str) and self.fill != "auto":
            raise ValueError(f"fill must be 'auto', a number or None, got {self.fill!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples)."""
        document = asdict(self)
        for key in ("bands", "percentiles", "limits"):
            if document[key] is not None:
                document[key] = json_ready(document[key])
        return document

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> ImagerySettings:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: for unknown keys or bad values.
        """
        unknown = set(document) - {item.name for item in fields(cls)}
        if unknown:
            raise ValueError(f"unknown imagery settings {sorted(unknown)}")
        return cls(**document)

    def updated(
        self,
        bands: str | Sequence[int] | None = None,
        preset: str | None = None,
        stretch: str | None = None,
        fill: str | float | None = None,
    ) -> ImagerySettings:
        """These settings with what a user asked (CLI, API, UI) put over them; None keeps.

        Args:
            bands: ``"4,3,2"`` or a sequence of band numbers; clears the preset.
            preset: A preset name (see the class); clears the bands. ``"auto"`` clears both.
            stretch: ``auto``, ``none``, ``percentile``, ``percentile:LOW,HIGH`` or
                ``minmax:LOW,HIGH``.
            fill: ``auto``, ``none`` or a number.

        Raises:
            ValueError: for text that does not parse or values out of range.
        """
        changes: dict[str, Any] = {}
        if bands is not None:
            changes.update(bands=parse_bands(bands), preset=None)
        if preset is not None:
            changes.update(bands=None, preset=None if preset == "auto" else preset)
        if stretch is not None:
            changes.update(parse_stretch(stretch))
        if fill is not None:
            changes["fill"] = parse_fill(fill)
        return replace(self, **changes)

    def describe(self) -> str:
        """One line for people, e.g. ``bands 4,3,2; stretch minmax 312-8804, ...; fill 0``."""
        bands = ",".join(map(str, self.bands)) if self.bands else (self.preset or "auto")
        stretch = self.stretch
        if self.stretch == "percentile":
            stretch += " {:g}-{:g} %".format(*self.percentiles)
        elif self.stretch == "minmax" and self.limits:
            stretch += " " + ", ".join(f"{low:.6g}-{high:.6g}" for low, high in self.limits)
        fill = "none" if self.fill is None else f"{self.fill:g}" if self.fill != "auto" else "auto"
        return f"bands {bands}; stretch {stretch}; fill {fill}"


def json_ready(value: Any) -> Any:
    """Tuples (nested) as lists, for JSON."""
    if isinstance(value, (tuple, list)):
        return [json_ready(item) for item in value]
    return value


def parse_bands(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"4,3,2"`` (or a sequence) -> ``(4, 3, 2)``.

    Raises:
        ValueError: for anything but one or three 1-based integers.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        bands = tuple(int(str(part).strip()) for part in parts)
    except ValueError:
        raise ValueError(f"bands are 1-based integers like 4,3,2, got {text!r}") from None
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise ValueError(f"choose 3 bands (RGB) or 1 (grey), numbered from 1, got {text!r}")
    return bands


def parse_stretch(text: str) -> dict[str, Any]:
    """``auto``, ``none``, ``percentile[:LOW,HIGH]`` or ``minmax:LOW,HIGH`` -> settings fields.

    Raises:
        ValueError: for text that does not parse.
    """
    name, _, numbers = text.strip().lower().partition(":")
    if name not in STRETCHES:
        raise ValueError(f"stretch is one of {STRETCHES} (e.g. percentile:2,98), got {text!r}")
    if not numbers:
        return {"stretch": name, "limits": None}
    try:
        low, high = (float(part) for part in numbers.split(","))
    except ValueError:
        raise ValueError(f"the stretch takes two numbers LOW,HIGH, got {text!r}") from None
    if name == "percentile":
        return {"stretch": name, "percentiles": (low, high), "limits": None}
    if name == "minmax":
        return {"stretch": name, "limits": ((low, high),)}
    raise ValueError(f"the {name} stretch takes no numbers, got {text!r}")


def parse_fill(value: str | float) -> float | Literal["auto"] | None:
    """``auto``, ``none`` or a number -> the ``fill`` field."""
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip().lower()
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"fill is auto, none or a number, got {value!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--bands --preset --stretch --fill`` (read back with :func:`from_arguments`)."""
    group = parser.add_argument_group("imagery (bands, no-data, stretch)")
    group.add_argument(
        "--bands",
        type=_checked(parse_bands),
        metavar="B,B,B",
        help="1-based bands shown as red, green, blue (e.g. 3,2,1), or one band for grey "
        "(default: by the file's colour interpretation or band descriptions, else 1,2,3)",
    )
    group.add_argument(
        "--preset",
        choices=["auto", *presets()],
        metavar="PRESET",
        help="natural, cir (colour-infrared), or a sensor's band order: "
        f"{', '.join(SENSORS)}, optionally with :cir (e.g. sentinel2:cir)",
    )
    group.add_argument(
        "--stretch",
        type=_checked(lambda text: (parse_stretch(text), text)[1]),
        metavar="STRETCH",
        help="auto (8-bit kept, else percentile; default), percentile[:LOW,HIGH] of the valid "
        "pixels (2,98), minmax:LOW,HIGH, or none",
    )
    group.add_argument(
        "--fill",
        type=_checked(lambda text: (parse_fill(text), text)[1]),
        metavar="VALUE",
        help="no-data fill value: auto (a 0 that frames the scene; default), none, or a number",
    )


def _checked(parse: Any) -> Any:
    """An argparse type that checks a value with ``parse`` (a usage error when it fails)."""

    def check(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return check


def from_arguments(
    args: argparse.Namespace, base: ImagerySettings | None = None
) -> ImagerySettings:
    """The settings of :func:`add_arguments`'s options, put over ``base`` (default settings).

    Raises:
        ValueError: for options that do not parse.
    """
    return (base or ImagerySettings()).updated(
        bands=args.bands, preset=args.preset, stretch=args.stretch, fill=args.fill
    )


def presets() -> list[str]:
    """Every preset name: the composites, then each sensor with each composite."""
    names = list(COMPOSITES)
    for sensor in SENSORS:
        names += [sensor, f"{sensor}:cir"]
    return names


def _parse_preset(preset: str) -> tuple[Sensor | None, str]:
    name, _, composite = preset.lower().partition(":")
    if name in COMPOSITES and not composite:
        return None, name
    if name not in SENSORS or (composite or "natural") not in COMPOSITES:
        raise ValueError(
            f"unknown preset {preset!r}; known: natural, cir, and a sensor "
            f"({', '.join(SENSORS)}) optionally followed by :natural or :cir"
        )
    return SENSORS[name], composite or "natural"


# ---------------------------------------------------------------------------------------------
# Band choice


@dataclass(frozen=True)
class BandInfo:
    """What a file says about its bands."""

    count: int
    colorinterp: tuple[ColorInterp, ...] = ()
    descriptions: tuple[str | None, ...] = ()

    def described(self, names: Sequence[str]) -> int | None:
        """The 1-based band whose description is one of ``names`` (normalised), else None."""
        wanted = {_normalise(name) for name in names}
        for index, description in enumerate(self.descriptions):
            if description and _normalise(description) in wanted:
                return index + 1
        return None

    def colour(self, colour: str) -> int | None:
        """The band of a colour (red, green, blue, nir): interpretation, then description."""
        if colour in _INTERPRETED and _INTERPRETED[colour] in self.colorinterp:
            return self.colorinterp.index(_INTERPRETED[colour]) + 1
        return self.described(_DESCRIBED[colour])


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def choose_bands(settings: ImagerySettings, info: BandInfo) -> tuple[int, ...]:
    """The bands shown as R, G, B (or one, grey), by the rules of the module docs.

    Raises:
        ImageError: for bands, or a preset's bands, that the file does not have.
    """
    if settings.bands is not None:
        return _check_bands(settings.bands, info.count, "")
    if settings.preset is not None:
        sensor, composite = _parse_preset(settings.preset)
        if sensor is not None:
            return _sensor_bands(sensor, composite, info, settings.preset)
        if composite == "cir":
            return _check_bands(_generic_cir(info), info.count, " for the cir preset")
    rgb = tuple(info.colour(colour) for colour in ("red", "green", "blue"))
    if all(rgb):
        return rgb  # type: ignore[return-value]
    return (1, 2, 3) if info.count >= 3 else (1,)


def _check_bands(bands: tuple[int, ...], count: int, why: str) -> tuple[int, ...]:
    if max(bands) > count:
        raise ImageError(
            f"the image has bands 1..{count}; cannot read bands {','.join(map(str, bands))}{why}"
        )
    return bands


def _sensor_bands(sensor: Sensor, composite: str, info: BandInfo, preset: str) -> tuple[int, ...]:
    names = sensor.natural if composite == "natural" else sensor.cir
    by_description = tuple(info.described([name]) for name in names)
    if all(by_description):
        return by_description  # type: ignore[return-value]
    bands = tuple(sensor.band_names.index(name) + 1 for name in names)
    return _check_bands(bands, info.count, f" for the {preset} preset ({sensor.title})")


def _generic_cir(info: BandInfo) -> tuple[int, ...]:
    """NIR, red, green from the file; else the order red, green, blue, NIR."""
    red, green, blue = (info.colour(colour) for colour in ("red", "green", "blue"))
    nir = info.colour("nir")
    if nir is None and red and green and blue and info.count == 4:
        (nir,) = {1, 2, 3, 4} - {red, green, blue}
    return (nir or 4, red or 1, green or 2)


# ---------------------------------------------------------------------------------------------
# Resolving and applying settings


def resolve_pixels(
    settings: ImagerySettings,
    bands: tuple[int, ...],
    sample: np.ma.MaskedArray,
    border: np.ma.MaskedArray,
    has_mask: bool,
) -> ImagerySettings:
    """Concrete settings from a sample of the chosen bands (see :func:`resolve`).

    Args:
        settings: What was asked.
        bands: The chosen bands.
        sample: ``[C, h, w]`` the chosen bands over the whole image (decimated), masked.
        border: ``[C, n]`` the chosen bands' pixels on the image's border, masked.
        has_mask: Whether the file has a nodata value or mask (then ``fill="auto"`` is None).
    """
    fill = settings.fill
    if fill == "auto":
        fill = None if has_mask else _find_fill(border)
    stretch = settings.stretch
    if stretch == "auto":
        stretch = "none" if sample.dtype == np.uint8 else "percentile"
    limits = settings.limits
    if stretch == "percentile":
        limits, stretch = (
            _percentile_limits(_mask_fill(sample, fill), settings.percentiles),
            "minmax",
        )
    elif stretch == "minmax" and limits is not None and len(limits) == 1:
        limits = limits * len(bands)
    elif stretch == "minmax" and limits is not None and len(limits) != len(bands):
        raise ImageError(f"{len(limits)} stretch limits for {len(bands)} bands")
    return replace(settings, bands=bands, preset=None, stretch=stretch, limits=limits, fill=fill)


def _find_fill(border: np.ma.MaskedArray) -> float | None:
    """A value that every chosen band has at some border pixel (a fill frame), else None."""
    candidates = [0.0]
    if border.dtype.kind in "if":
        lowest = (
            np.finfo(border.dtype).min if border.dtype.kind == "f" else np.iinfo(border.dtype).min
        )
        candidates += [_FILL_FLOOR, float(lowest)]
    valid = ~np.ma.getmaskarray(border).any(axis=0)
    for candidate in candidates:
        if np.any(valid & (border.data == candidate).all(axis=0)):
            return candidate
    return None


def _mask_fill(pixels: np.ma.MaskedArray, fill: float | None) -> np.ma.MaskedArray:
    """``pixels`` ``[C, H, W]`` with NaN and the pixels that hold ``fill`` in every band masked."""
    mask = np.ma.getmaskarray(pixels).any(axis=0)
    if pixels.dtype.kind == "f":
        mask = mask | ~np.isfinite(pixels.data).all(axis=0)
    if fill is not None:
        mask = mask | (pixels.data == fill).all(axis=0)
    return np.ma.MaskedArray(pixels.data, np.broadcast_to(mask, pixels.shape))


def _percentile_limits(sample: np.ma.MaskedArray, percentiles: tuple[float, float]) -> Limits:
    limits = []
    for band in sample:
        values = band.compressed().astype(np.float64)
        low, high = np.percentile(values, percentiles) if values.size else (0.0, 1.0)
        # A constant band maps to 0, like a band whose values all sit at its low percentile.
        limits.append((float(low), float(high) if high > low else float(low) + 1.0))
    return tuple(limits)


def apply(pixels: np.ma.MaskedArray, resolved: ImagerySettings) -> tuple[np.ndarray, np.ndarray]:
    """8-bit pixels from the chosen bands, by resolved settings.

    Args:
        pixels: ``[C, H, W]`` the chosen bands (C = 1 or 3), no-data masked.
        resolved: Settings from :func:`resolve`.

    Returns:
        ``rgb`` ``[H, W, 3]`` uint8 (no-data black; one band repeated as grey) and ``valid``
        ``[H, W]`` bool.
    """
    masked = _mask_fill(pixels, resolved.fill if resolved.fill != "auto" else None)
    valid = ~np.ma.getmaskarray(masked)[0]
    data = masked.data
    if resolved.stretch == "minmax" and resolved.limits:
        low = np.array([limit[0] for limit in resolved.limits])[:, None, None]
        high = np.array([limit[1] for limit in resolved.limits])[:, None, None]
        scaled = (data.astype(np.float64) - low) * (255.0 / (high - low))
        out = np.rint(np.clip(np.nan_to_num(scaled), 0.0, 255.0)).astype(np.uint8)
    elif data.dtype == np.uint8:
        out = data.copy()
    else:
        out = np.rint(np.clip(np.nan_to_num(data.astype(np.float64)), 0, 255)).astype(np.uint8)
    out[:, ~valid] = 0
    if len(out) == 1:
        out = np.repeat(out, 3, axis=0)
    return np.ascontiguousarray(np.moveaxis(out, 0, -1)), valid  # [H, W, 3]


# ---------------------------------------------------------------------------------------------
# Rasters (rasterio)


def band_info(dataset: DatasetReader) -> BandInfo:
    """What a rasterio dataset says about its bands."""
    return BandInfo(dataset.count, tuple(dataset.colorinterp), tuple(dataset.descriptions))


def has_mask(dataset: DatasetReader) -> bool:
    """Whether the file marks no-data itself (nodata value, internal mask, alpha band)."""
    return any(flags != [MaskFlags.all_valid] for flags in dataset.mask_flag_enums)


def resolve(dataset: DatasetReader, settings: ImagerySettings) -> ImagerySettings:
    """Concrete settings for a raster: its bands, fill value and stretch limits.

    Statistics cover the whole raster (decimated to :data:`STATS_SIDE`), so every window of it
    is rendered alike, in a build and at inference. A fill value is looked for on the edges
    that can be read (a truncated file still gives the tiles it holds).

    Raises:
        ImageError: for bands the raster does not have.
        rasterio.errors.RasterioError: when the statistics cannot be read.
    """
    bands = choose_bands(settings, band_info(dataset))
    needs_stats = settings.stretch == "percentile" or (
        settings.stretch == "auto" and dataset.dtypes[bands[0] - 1] != "uint8"
    )
    scale = max(1.0, max(dataset.width, dataset.height) / STATS_SIDE)
    shape = (
        len(bands),
        max(1, round(dataset.height / scale)),
        max(1, round(dataset.width / scale)),
    )
    if needs_stats:
        sample = decimated_pixels(dataset, bands, shape[1:])
    else:  # 8-bit data kept, or fixed limits: only the type matters
        sample = np.ma.MaskedArray(np.zeros((len(bands), 1, 1), dataset.dtypes[bands[0] - 1]))
    return resolve_pixels(settings, bands, sample, _border(dataset, bands), has_mask(dataset))


def decimated_pixels(
    dataset: DatasetReader, bands: Sequence[int], out_shape: tuple[int, int]
) -> np.ma.MaskedArray:
    """The whole raster's ``bands`` at ``out_shape`` ``(height, width)``, nearest neighbour.

    Read as full-resolution strips of at most :data:`STRIP_PIXELS` pixels, each keeping the
    rows and columns nearest the output's pixel centres, so the raster is never whole in memory.

    Returns:
        ``[C, height, width]`` the raster's pixels, no-data masked.
    """
    height, width = out_shape
    rows = ((np.arange(height) + 0.5) * (dataset.height / height)).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * (dataset.width / width)).astype(np.int64)
    strip = max(1, STRIP_PIXELS // dataset.width)  # raster rows per read
    dtype = dataset.dtypes[bands[0] - 1]
    out = np.ma.MaskedArray(
        np.zeros((len(bands), height, width), dtype), np.zeros((len(bands), height, width), bool)
    )
    for start in range(0, dataset.height, strip):
        picked = np.flatnonzero((rows >= start) & (rows < start + strip))
        if picked.size == 0:
            continue
        window = Window(0, start, dataset.width, min(strip, dataset.height - start))
        pixels = dataset.read(list(bands), window=window, masked=True)  # [C, strip, W]
        out[:, picked] = pixels[:, rows[picked] - start][:, :, cols]
    return out


def read_decimated(
    dataset: DatasetReader, resolved: ImagerySettings, out_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The whole raster at ``out_shape`` as 8-bit RGB (see :func:`decimated_pixels`).

    Returns:
        ``rgb`` ``[H, W, 3]`` uint8 and ``valid`` ``[H, W]`` bool (see :func:`apply`).
    """
    assert resolved.bands is not None, "read_decimated needs settings from resolve()"
    return apply(decimated_pixels(dataset, resolved.bands, out_shape), resolved)


def _border(dataset: DatasetReader, bands: tuple[int, ...]) -> np.ma.MaskedArray:
    """``[C, n]`` the pixels of the raster's first and last rows and columns that can be read."""
    width, height = dataset.width, dataset.height
    windows = [
        Window(0, 0, width, 1),
        Window(0, height - 1, width, 1),
        Window(0, 0, 1, height),
        Window(width - 1, 0, 1, height),
    ]
    parts = [np.ma.MaskedArray(np.zeros((len(bands), 0), dataset.dtypes[bands[0] - 1]))]
    for window in windows:
        try:
            parts.append(dataset.read(bands, window=window, masked=True).reshape(len(bands), -1))
        except RasterioError:
            continue  # a truncated file: its tiles report the loss
    return np.ma.concatenate(parts, axis=1)


def read(
    dataset: DatasetReader,
    resolved: ImagerySettings,
    window: tuple[int, int, int, int] | None = None,
    out_shape: tuple[int, int] | None = None,
    resampling: Resampling = Resampling.nearest,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads a window of a raster (only that window) as 8-bit RGB.

    Args:
        dataset: An open rasterio dataset.
        resolved: Settings from :func:`resolve` on the same dataset.
        window: ``(col_off, row_off, width, height)`` in raster pixels; None reads it all.
        out_shape: ``(height, width)`` to resample the window to; None keeps its size.
        resampling: How to resample.

    Returns:
        ``rgb`` ``[H, W, 3]`` uint8 and ``valid`` ``[H, W]`` bool (see :func:`apply`).

    Raises:
        rasterio.errors.RasterioError: when the window cannot be read.
    """
    assert resolved.bands is not None, "read needs settings from resolve()"
    box = Window(*window) if window is not None else None
    shape = None if out_shape is None else (len(resolved.bands), *out_shape)
    pixels = dataset.read(
        resolved.bands, window=box, out_shape=shape, resampling=resampling, masked=True
    )
    return apply(pixels, resolved)


@contextmanager
def open_raster(source: str | Path | bytes) -> Iterator[DatasetReader]:
    """Opens a raster with rasterio from a path or the bytes of a file.

    Raises:
        FileNotFoundError: for a path that does not exist.
        ImageError: for a file GDAL cannot read.
    """
    with warnings.catch_warnings():
        # A TIFF without a georeference is expected; the caller asks dataset.crs.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if isinstance(source, bytes):
            with MemoryFile(source) as memory, _opened(memory.open, "bytes") as dataset:
                yield dataset
            return
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no such image: {path}")
        with _opened(lambda: rasterio.open(path), str(path)) as dataset:
            yield dataset


@contextmanager
def _opened(opener: Any, source: str) -> Iterator[DatasetReader]:
    try:
        dataset = opener()
    except RasterioIOError as error:
        raise ImageError(f"{source}: corrupt or unsupported raster ({error})") from error
    with dataset:
        yield dataset


# ---------------------------------------------------------------------------------------------
# The engine's image: any source -> LoadedImage


@dataclass
class LoadedImage:
    """An image ready for the model, with what is needed to map answers back to it.

    Attributes:
        image: RGB, 8-bit, full resolution (of the window, when one was read).
        width: Original width in pixels (the grammar's frame).
        height: Original height in pixels.
        georef: The georeference of a georeferenced raster (of the window), else None.
        source: The path, or a description of where the image came from.
        imagery: The resolved settings that made ``image`` (bands, fill, stretch limits).
    """

    image: Image.Image
    width: int
    height: int
    georef: Georef | None = None
    source: str | None = None
    imagery: ImagerySettings | None = None


def load_image(
    source: ImageSource | LoadedImage,
    bands: Sequence[int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    imagery: ImagerySettings | None = None,
    window: tuple[int, int, int, int] | None = None,
) -> LoadedImage:
    """Reads an image from a file, encoded bytes, a PIL image or an array.

    Args:
        source: A path; the bytes of an encoded file (PNG, JPEG, TIFF, ...); a PIL image; an
            array ``[H, W]``, ``[H, W, C]`` or ``[C, H, W]`` with C in 1, 3, 4 (alpha dropped);
            or a ``LoadedImage``, returned unchanged.
        bands: Shortcut for ``imagery.bands``: 1-based bands, three for RGB or one for grey.
        max_pixels: Refuse images (or windows) with more pixels.
        imagery: Band choice, no-data and stretch (default :class:`ImagerySettings`).
        window: ``(col_off, row_off, width, height)``: read only this window of a raster (its
            stretch computed over the whole raster, as a build does).

    Returns:
        The RGB image, its size, its georeference if any, its source and the settings used.

    Raises:
        FileNotFoundError: For a path that does not exist.
        ImageError: For a corrupt or unsupported file, too many pixels, an unsupported array
            shape or type, or bands the image does not have.
    """
    if isinstance(source, LoadedImage):
        return source
    settings = imagery or ImagerySettings()
    if bands is not None:
        try:
            settings = replace(settings, bands=parse_bands(bands), preset=None)
        except ValueError as error:
            raise ImageError(str(error)) from error
    if isinstance(source, (str, Path)):
        return _from_path(Path(source), settings, max_pixels, window)
    if isinstance(source, bytes):
        return _from_bytes(source, settings, max_pixels, window)
    if isinstance(source, Image.Image):
        try:
            return _from_array(
                _pil_array(source, max_pixels), settings, max_pixels, window, "PIL image"
            )
        except OSError as error:  # a lazily opened image whose data is truncated
            raise ImageError(f"corrupt PIL image ({error})") from error
    if isinstance(source, np.ndarray):
        return _from_array(source, settings, max_pixels, window, "array")
    raise ImageError(
        f"cannot read an image from {type(source).__name__}; give a path, bytes, "
        "a PIL image or a numpy array"
    )


def _from_path(
    path: Path, settings: ImagerySettings, max_pixels: int, window: tuple[int, ...] | None
) -> LoadedImage:
    if not path.is_file():
        raise FileNotFoundError(f"no such image: {path}")
    with path.open("rb") as handle:
        is_tiff = handle.read(len(TIFF_MAGIC[0])) in TIFF_MAGIC
    if not is_tiff:
        array = _pil_decode(path, max_pixels, str(path))
        if array is not None:
            return _from_array(array, settings, max_pixels, window, str(path))
        # Not a format PIL knows (JPEG 2000 without openjpeg, ERDAS .img ...): ask GDAL.
    with open_raster(path) as dataset:
        return _from_dataset(dataset, settings, max_pixels, window, str(path))


def _from_bytes(
    data: bytes, settings: ImagerySettings, max_pixels: int, window: tuple[int, ...] | None
) -> LoadedImage:
    if data[: len(TIFF_MAGIC[0])] in TIFF_MAGIC:
        with open_raster(data) as dataset:
            return _from_dataset(dataset, settings, max_pixels, window, "bytes")
    array = _pil_decode(io.BytesIO(data), max_pixels, "bytes")
    if array is None:
        raise ImageError("bytes: not an image format that can be read")
    return _from_array(array, settings, max_pixels, window, "bytes")


def _from_dataset(
    dataset: DatasetReader,
    settings: ImagerySettings,
    max_pixels: int,
    window: tuple[int, ...] | None,
    source: str,
) -> LoadedImage:
    box = _check_window(window, dataset.width, dataset.height, source)
    _check_pixels(box[2], box[3], max_pixels, source)
    try:
        resolved = resolve(dataset, settings)
        rgb, _ = read(dataset, resolved, box)
    except RasterioError as error:
        raise ImageError(f"{source}: corrupt or unreadable raster ({error})") from error
    georef = None
    if dataset.crs is not None:
        transform = dataset.transform @ Affine.translation(box[0], box[1])
        georef = Georef(crs=dataset.crs.to_string(), transform=tuple(transform)[:6])
    return _loaded(rgb, georef, source, resolved)


def _check_window(
    window: tuple[int, ...] | None, width: int, height: int, source: str
) -> tuple[int, int, int, int]:
    if window is None:
        return (0, 0, width, height)
    col, row, w, h = (int(v) for v in window)
    if w < 1 or h < 1 or col < 0 or row < 0 or col + w > width or row + h > height:
        raise ImageError(
            f"{source}: window {list(window)} (col, row, width, height) is not inside the "
            f"image's {width}x{height} pixels"
        )
    return (col, row, w, h)


def _loaded(
    rgb: np.ndarray, georef: Georef | None, source: str, resolved: ImagerySettings
) -> LoadedImage:
    image = Image.fromarray(rgb, mode="RGB")
    return LoadedImage(image, image.width, image.height, georef, source, resolved)


def _pil_decode(file: Path | io.BytesIO, max_pixels: int, source: str) -> np.ndarray | None:
    """Decodes an image with PIL into an array; None when PIL does not know the format.

    Raises:
        ImageError: For too many pixels or a corrupt file of a format PIL knows.
    """
    try:
        with warnings.catch_warnings():
            # The size is checked against max_pixels before decoding; PIL's warning adds nothing.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                return _pil_array(image, max_pixels, source)
    except ImageError:
        raise
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as error:
        raise ImageError(f"{source}: refused as a decompression bomb ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{source}: corrupt or unreadable image ({error})") from error


def _pil_array(image: Image.Image, max_pixels: int, what: str = "the image") -> np.ndarray:
    """``[H, W]`` or ``[H, W, 3]`` from a (lazily opened) PIL image, after checking its size."""
    _check_pixels(image.width, image.height, max_pixels, what)
    image.load()
    if image.mode in _DEEP_PIL_MODES:
        return np.asarray(image)  # deeper than 8 bits: stretched, not clipped by convert()
    return np.asarray(image.convert("RGB"))


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{what} is empty ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise ImageError(
            f"{what} has {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (max_pixels); crop or downsample it first"
        )


def _channels_first(array: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` from ``[H, W]``, ``[H, W, C]`` or ``[C, H, W]`` (C in 1, 3, 4)."""
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3 and array.shape[2] in CHANNELS:
        return np.moveaxis(array, -1, 0)
    if array.ndim == 3 and array.shape[0] in CHANNELS:
        return array
    raise ImageError(
        f"unsupported image array shape {array.shape}; expected [H, W], [H, W, C] or [C, H, W] "
        f"with C in {CHANNELS}"
    )


def _from_array(
    array: np.ndarray,
    settings: ImagerySettings,
    max_pixels: int,
    window: tuple[int, ...] | None,
    source: str,
) -> LoadedImage:
    """An image from an in-memory array, by the same rules as a raster (all bands valid)."""
    if array.dtype.kind not in "biuf":
        raise ImageError(f"unsupported image array type {array.dtype}; expected numbers or bool")
    pixels = _channels_first(array)[:3]  # [C, H, W], alpha dropped
    _check_pixels(pixels.shape[2], pixels.shape[1], max_pixels, f"the image {source}")
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    col, row, width, height = _check_window(window, pixels.shape[2], pixels.shape[1], source)
    bands = choose_bands(settings, BandInfo(len(pixels)))
    chosen = np.ma.MaskedArray(pixels[[band - 1 for band in bands]])
    step = max(1, math.ceil(max(pixels.shape[1:]) / STATS_SIDE))
    resolved = resolve_pixels(
        settings, bands, chosen[:, ::step, ::step], _array_border(chosen), has_mask=False
    )
    rgb, _ = apply(chosen[:, row : row + height, col : col + width], resolved)
    return _loaded(rgb, None, source, resolved)


def _array_border(pixels: np.ma.MaskedArray) -> np.ma.MaskedArray:
    """``[C, n]`` the first and last rows and columns of ``[C, H, W]`` pixels."""
    edges = [pixels[:, 0, :], pixels[:, -1, :], pixels[:, :, 0], pixels[:, :, -1]]
    return np.ma.concatenate(edges, axis=1)


__all__ = [
    "COMPOSITES",
    "DEFAULT_MAX_PIXELS",
    "SENSORS",
    "STRETCHES",
    "BandInfo",
    "ImageError",
    "ImageSource",
    "ImagerySettings",
    "LoadedImage",
    "add_arguments",
    "apply",
    "choose_bands",
    "from_arguments",
    "load_image",
    "open_raster",
    "parse_bands",
    "parse_fill",
    "parse_stretch",
    "presets",
    "read",
    "resolve",
]
