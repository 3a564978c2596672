"""Images for the engine: files, bytes, PIL images and arrays become one 8-bit RGB image.

GeoTIFFs (and any TIFF) are read with rasterio: the chosen bands (1-based, default the first
three; a single band gives grey), the nodata value and internal masks respected (such pixels
become black), and the georeference kept. Other formats are read with PIL (rasterio is tried as
well for what PIL does not know, e.g. JPEG 2000).

Scaling to 8 bits: 8-bit data is kept as it is; any other type (uint16, float, ...) is stretched
per band so that its 2nd percentile becomes 0 and its 98th 255 (a constant band becomes 0),
computed over valid pixels only. Geometry is unaffected: the pixel grid never changes.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, UnidentifiedImageError
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader, MemoryFile

from geochat.georef import Georef

DEFAULT_BANDS = (1, 2, 3)
DEFAULT_MAX_PIXELS = 200_000_000
STRETCH_PERCENTILES = (2.0, 98.0)
# Percentiles from at most this many samples per band: exact enough for display, and fast on
# images of hundreds of megapixels.
STRETCH_SAMPLES = 1_000_000
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF
CHANNELS = (1, 3, 4)  # grey, RGB, RGBA (alpha dropped)

ImageSource = str | Path | Image.Image | np.ndarray | bytes


class ImageError(ValueError):
    """An image that cannot be used: corrupt, unsupported, too large or of a wrong shape."""


@dataclass
class LoadedImage:
    """An image ready for the model, with what is needed to map answers back to it.

    Attributes:
        image: RGB, 8-bit, full resolution.
        width: Original width in pixels (the grammar's frame).
        height: Original height in pixels.
        georef: The georeference of a georeferenced raster, else None.
        source: The path, or a description of where the image came from.
    """

    image: Image.Image
    width: int
    height: int
    georef: Georef | None = None
    source: str | None = None


def load_image(
    source: ImageSource | LoadedImage,
    bands: Sequence[int] = DEFAULT_BANDS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Reads an image from a file, encoded bytes, a PIL image or an array.

    Args:
        source: A path; the bytes of an encoded file (PNG, JPEG, TIFF, ...); a PIL image; an
            array `[H, W]`, `[H, W, C]` or `[C, H, W]` with C in 1, 3, 4; or a `LoadedImage`,
            returned unchanged.
        bands: 1-based bands of a raster read with rasterio: three for RGB or one for grey.
            Only the first band is read from a raster with fewer than three bands when the
            default is asked.
        max_pixels: Refuse images with more pixels (decompression bombs, rasters too big for
            memory).

    Returns:
        The RGB image, its original size, its georeference if any and its source.

    Raises:
        FileNotFoundError: For a path that does not exist.
        ImageError: For a corrupt or unsupported file, too many pixels, an unsupported array
            shape or type, or bands the raster does not have.
    """
    if isinstance(source, LoadedImage):
        return source
    if isinstance(source, (str, Path)):
        return _from_path(Path(source), bands, max_pixels)
    if isinstance(source, bytes):
        return _from_bytes(source, bands, max_pixels, "bytes")
    if isinstance(source, Image.Image):
        try:
            return _loaded(_pil_to_rgb(source, max_pixels), None, "PIL image")
        except OSError as error:  # a lazily opened image whose data is truncated
            raise ImageError(f"corrupt PIL image ({error})") from error
    if isinstance(source, np.ndarray):
        return _loaded(_array_to_rgb(source, max_pixels), None, "array")
    raise ImageError(
        f"cannot read an image from {type(source).__name__}; give a path, bytes, "
        "a PIL image or a numpy array"
    )


def _loaded(image: Image.Image, georef: Georef | None, source: str) -> LoadedImage:
    return LoadedImage(image, image.width, image.height, georef, source)


def _from_path(path: Path, bands: Sequence[int], max_pixels: int) -> LoadedImage:
    if not path.is_file():
        raise FileNotFoundError(f"no such image: {path}")
    with path.open("rb") as handle:
        is_tiff = handle.read(len(TIFF_MAGIC[0])) in TIFF_MAGIC
    if is_tiff:
        return _raster(lambda: rasterio.open(path), bands, max_pixels, str(path))
    loaded = _pil(path, max_pixels, str(path))
    if loaded is None:
        # Not a format PIL knows (JPEG 2000 without openjpeg, ERDAS .img ...): ask GDAL.
        return _raster(lambda: rasterio.open(path), bands, max_pixels, str(path))
    return loaded


def _from_bytes(data: bytes, bands: Sequence[int], max_pixels: int, source: str) -> LoadedImage:
    if data[: len(TIFF_MAGIC[0])] in TIFF_MAGIC:
        with MemoryFile(data) as memory:
            return _raster(memory.open, bands, max_pixels, source)
    loaded = _pil(io.BytesIO(data), max_pixels, source)
    if loaded is None:
        raise ImageError(f"{source}: not an image format that can be read")
    return loaded


def _pil(file: Path | io.BytesIO, max_pixels: int, source: str) -> LoadedImage | None:
    """Opens and decodes an image with PIL; None when PIL does not know the format.

    Raises:
        ImageError: For too many pixels or a corrupt file of a format PIL knows.
    """
    try:
        with warnings.catch_warnings():
            # The size is checked against max_pixels before decoding; PIL's warning adds nothing.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                return _loaded(_pil_to_rgb(image, max_pixels), None, source)
    except ImageError:
        raise
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as error:
        raise ImageError(f"{source}: refused as a decompression bomb ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{source}: corrupt or unreadable image ({error})") from error


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{what} is empty ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise ImageError(
            f"{what} has {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (max_pixels); crop or downsample it first"
        )


def _pil_to_rgb(image: Image.Image, max_pixels: int) -> Image.Image:
    """Decodes a (lazily opened) PIL image into RGB after checking its size."""
    _check_pixels(image.width, image.height, max_pixels, "the image")
    image.load()
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # Deeper than 8 bits: PIL's convert("RGB") would clip, stretch instead.
        return _array_to_rgb(np.asarray(image), max_pixels)
    return image.convert("RGB")


def _channels_last(array: np.ndarray) -> np.ndarray:
    """`[H, W, C]` from `[H, W]`, `[H, W, C]` or `[C, H, W]` (C in 1, 3, 4)."""
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3 and array.shape[2] in CHANNELS:
        return array
    if array.ndim == 3 and array.shape[0] in CHANNELS:
        return np.moveaxis(array, 0, -1)
    raise ImageError(
        f"unsupported image array shape {array.shape}; expected [H, W], [H, W, C] or [C, H, W] "
        f"with C in {CHANNELS}"
    )


def _array_to_rgb(array: np.ndarray, max_pixels: int) -> Image.Image:
    if array.dtype.kind not in "biuf":
        raise ImageError(f"unsupported image array type {array.dtype}; expected numbers or bool")
    pixels = _channels_last(array)  # [H, W, C]
    _check_pixels(pixels.shape[1], pixels.shape[0], max_pixels, "the image array")
    bands = np.moveaxis(pixels[:, :, :3], -1, 0)  # [C, H, W], alpha dropped
    if bands.dtype == np.bool_:
        bands8 = bands.astype(np.uint8) * 255
    else:
        bands8 = _to_8bit(np.ma.masked_invalid(bands, copy=False))
    return _rgb_image(bands8)


def _rgb_image(bands8: np.ndarray) -> Image.Image:
    """An RGB image from `[C, H, W]` uint8 bands, C = 1 (grey) or 3."""
    if len(bands8) == 1:
        bands8 = np.repeat(bands8, 3, axis=0)
    return Image.fromarray(np.ascontiguousarray(np.moveaxis(bands8, 0, -1)), mode="RGB")


def _to_8bit(bands: np.ma.MaskedArray) -> np.ndarray:
    """`[C, H, W]` uint8 from masked bands: 8-bit data kept, other types stretched; masked -> 0."""
    if bands.dtype == np.uint8:
        return bands.filled(0)
    return np.stack([_stretch(band) for band in bands])


def _stretch(band: np.ma.MaskedArray) -> np.ndarray:
    """Maps the 2nd..98th percentile of a band's valid pixels to 0..255 (uint8 `[H, W]`)."""
    valid = band.compressed()
    out = np.zeros(band.shape, dtype=np.uint8)
    if valid.size == 0:
        return out
    sample = valid[:: max(1, valid.size // STRETCH_SAMPLES)].astype(np.float64)
    low, high = np.percentile(sample, STRETCH_PERCENTILES)
    if high <= low:
        return out
    scaled = (band.astype(np.float64) - low) * (255.0 / (high - low))
    return np.rint(np.clip(scaled.filled(0.0), 0.0, 255.0)).astype(np.uint8)


def _raster(
    open_dataset: Callable[[], DatasetReader], bands: Sequence[int], max_pixels: int, source: str
) -> LoadedImage:
    """Reads a raster with rasterio: bands, nodata, georeference."""
    with warnings.catch_warnings():
        # A TIFF without a georeference is expected; georef None says it.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with open_dataset() as dataset:
                return _read_raster(dataset, bands, max_pixels, source)
        except RasterioIOError as error:
            raise ImageError(f"{source}: corrupt or unsupported raster ({error})") from error


def _read_raster(
    dataset: DatasetReader, bands: Sequence[int], max_pixels: int, source: str
) -> LoadedImage:
    _check_pixels(dataset.width, dataset.height, max_pixels, source)
    chosen = _choose_bands(bands, dataset.count, source)
    pixels = dataset.read(chosen, masked=True)  # [C, H, W], nodata and internal masks masked
    georef = None
    if dataset.crs is not None:
        georef = Georef(crs=dataset.crs.to_string(), transform=tuple(dataset.transform)[:6])
    return _loaded(_rgb_image(_to_8bit(pixels)), georef, source)


def _choose_bands(bands: Sequence[int], count: int, source: str) -> list[int]:
    bands = [int(band) for band in bands]
    if tuple(bands) == DEFAULT_BANDS and count < len(DEFAULT_BANDS):
        return [1]
    if len(bands) not in (1, 3):
        raise ImageError(f"choose 3 bands (RGB) or 1 (grey), got {bands}")
    if not all(1 <= band <= count for band in bands):
        raise ImageError(f"{source} has bands 1..{count}; cannot read bands {bands}")
    return bands
