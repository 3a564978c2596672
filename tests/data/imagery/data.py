"""Writes the small GeoTIFFs of the imagery tests (run: python tests/data/imagery/data.py).

Every file is 48 x 40 pixels in UTM 33N, 10 m pixels. Band contents tell bands apart by their
pattern, not their level: red rises left to right, green top to bottom, blue is noise, NIR
falls left to right (so a test can check which band went where).

- ``collar.tif``: uint16, 3 bands stored blue, green, red (Landsat-like), values 7000-12000,
  framed by a zero collar (a slanted scene edge) and no nodata tag or colour interpretation.
- ``bgrn.tif``: uint16, 4 bands blue, green, red, NIR with colour interpretation
  (blue, green, red, undefined).
- ``nodata.tif``: uint16, 3 bands red, green, blue, nodata tag 65535 over the top rows.
- ``masked.tif``: uint16, 3 bands red, green, blue, an internal mask hiding the left columns
  (which hold 60000).
- ``reflectance.tif``: float32 reflectance 0-0.4, 3 bands red, green, blue, NaN top-left.
- ``sentinel2.tif``: uint16, 13 bands in Sentinel-2 order (B1 ... B8, B8A, B9 ... B12) with
  their names as band descriptions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import Affine

HERE = Path(__file__).parent
WIDTH, HEIGHT = 48, 40
CRS = "EPSG:32633"
TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4650000.0)
COLLAR_ROWS = 6  # the zero collar: top rows, and a slanted left edge
S2_NAMES = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


def patterns(seed: int = 0) -> dict[str, np.ndarray]:
    """``[H, W]`` floats in 0..1 per colour: red ramps in x, green in y, blue noise, NIR falls."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, WIDTH)[None, :].repeat(HEIGHT, 0)
    y = np.linspace(0.0, 1.0, HEIGHT)[:, None].repeat(WIDTH, 1)
    return {
        "red": x,
        "green": y,
        "blue": rng.random((HEIGHT, WIDTH)),
        "nir": 1.0 - x,
    }


def collar_mask() -> np.ndarray:
    """``[H, W]`` True on the collar (top rows, and a slanted left edge like a scene's)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    return (rows < COLLAR_ROWS) | (cols < (HEIGHT - rows) // 4)


def to_uint16(values: np.ndarray, low: float = 7000, high: float = 12000) -> np.ndarray:
    return np.rint(low + values * (high - low)).astype(np.uint16)


def write(name: str, data: np.ndarray, **profile) -> Path:
    path = HERE / name
    colorinterp = profile.pop("colorinterp", None)
    descriptions = profile.pop("descriptions", None)
    mask = profile.pop("mask", None)
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=WIDTH,
            height=HEIGHT,
            count=data.shape[0],
            dtype=data.dtype,
            crs=CRS,
            transform=TRANSFORM,
            compress="deflate",
            **profile,
        ) as dataset,
    ):
        dataset.write(data)
        if colorinterp is not None:
            dataset.colorinterp = colorinterp
        for index, description in enumerate(descriptions or (), start=1):
            dataset.set_band_description(index, description)
        if mask is not None:
            dataset.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    return path


def main() -> None:
    bands = patterns()
    collar = collar_mask()
    bgr = np.stack([to_uint16(bands[name]) for name in ("blue", "green", "red")])
    bgr[:, collar] = 0
    write("collar.tif", bgr, photometric="minisblack")

    bgrn = np.stack([to_uint16(bands[name]) for name in ("blue", "green", "red", "nir")])
    interp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    write("bgrn.tif", bgrn, photometric="minisblack", colorinterp=interp)

    rgb = np.stack([to_uint16(bands[name]) for name in ("red", "green", "blue")])
    with_nodata = rgb.copy()
    with_nodata[:, :5] = 65535
    write("nodata.tif", with_nodata, nodata=65535, photometric="minisblack")

    shown = np.ones((HEIGHT, WIDTH), bool)
    shown[:, :7] = False
    under_mask = rgb.copy()
    under_mask[:, ~shown] = 60000  # would move the stretch if the mask were ignored
    write("masked.tif", under_mask, photometric="minisblack", mask=shown)

    reflectance = np.stack([bands[name] * 0.4 for name in ("red", "green", "blue")])
    reflectance = reflectance.astype(np.float32)
    reflectance[:, :4, :4] = np.nan
    write("reflectance.tif", reflectance, photometric="minisblack")

    rng = np.random.default_rng(1)
    s2 = to_uint16(rng.random((len(S2_NAMES), HEIGHT, WIDTH)), 200, 4000)
    for name, colour in (("B2", "blue"), ("B3", "green"), ("B4", "red"), ("B8", "nir")):
        s2[S2_NAMES.index(name)] = to_uint16(bands[colour], 200, 4000)
    write("sentinel2.tif", s2, photometric="minisblack", descriptions=S2_NAMES)


if __name__ == "__main__":
    main()
