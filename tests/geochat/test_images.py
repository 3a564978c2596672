"""Tests of geochat.engine.load_image: every source, GeoTIFF bands and nodata, bad input."""

import io
import struct
import zlib

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine

from geochat.engine import ImageError, LoadedImage, load_image

WIDTH, HEIGHT = 30, 20
UTM = "EPSG:32633"
TRANSFORM = Affine(0.5, 0, 500000.0, 0, -0.5, 4650000.0)


def random_rgb(seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def write_geotiff(path, data, nodata=None, crs=UTM):
    """Writes `[C, H, W]` data as a GeoTIFF (without georeference when crs is None)."""
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": str(data.dtype),
        "nodata": nodata,
    }
    if crs is not None:
        profile.update(crs=crs, transform=TRANSFORM)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
    return path


def uint16_bands(count=4, seed=0):
    """`[count, H, W]` uint16 bands, band b in 1000 * b + 0..999 so bands are told apart."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 1000, size=(count, HEIGHT, WIDTH))
    return (noise + 1000 * np.arange(1, count + 1)[:, None, None]).astype(np.uint16)


def expected_stretch(band, valid=None):
    values = band[valid] if valid is not None else band.ravel()
    low, high = np.percentile(values.astype(np.float64), (2, 98))
    scaled = np.clip((band.astype(np.float64) - low) * 255.0 / (high - low), 0, 255)
    return np.rint(np.nan_to_num(scaled)).astype(np.uint8)


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_png_file_is_read_as_is(tmp_path):
    pixels = random_rgb()
    path = tmp_path / "scene.png"
    Image.fromarray(pixels).save(path)

    loaded = load_image(path)

    assert (loaded.width, loaded.height) == (WIDTH, HEIGHT)
    assert loaded.image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(loaded.image), pixels)
    assert loaded.georef is None
    assert loaded.source == str(path)


def test_png_bytes_and_pil_images_are_read(tmp_path):
    pixels = random_rgb()
    from_bytes = load_image(png_bytes(pixels))
    from_pil = load_image(Image.fromarray(pixels).convert("RGBA"))
    np.testing.assert_array_equal(np.asarray(from_bytes.image), pixels)
    np.testing.assert_array_equal(np.asarray(from_pil.image), pixels)


def test_a_loaded_image_is_returned_unchanged():
    loaded = load_image(random_rgb())
    assert load_image(loaded) is loaded


@pytest.mark.parametrize(
    "array",
    [
        random_rgb(),  # [H, W, 3]
        np.moveaxis(random_rgb(), -1, 0),  # [3, H, W]
        np.concatenate([random_rgb(), np.full((HEIGHT, WIDTH, 1), 7, np.uint8)], axis=-1),  # RGBA
    ],
)
def test_uint8_arrays_keep_their_pixels(array):
    loaded = load_image(array)
    np.testing.assert_array_equal(np.asarray(loaded.image), random_rgb())
    assert (loaded.width, loaded.height) == (WIDTH, HEIGHT)


def test_grey_array_becomes_three_equal_channels():
    grey = random_rgb()[:, :, 0]
    rgb = np.asarray(load_image(grey).image)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], grey)


def test_bool_array_becomes_black_and_white():
    mask = random_rgb()[:, :, 0] > 128
    rgb = np.asarray(load_image(mask).image)
    np.testing.assert_array_equal(rgb[:, :, 0], np.where(mask, 255, 0))


def test_uint16_array_is_percentile_stretched_per_band():
    bands = uint16_bands(3)
    rgb = np.asarray(load_image(np.moveaxis(bands, 0, -1)).image)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], expected_stretch(bands[channel]))


def test_float_nan_pixels_become_black_and_are_left_out_of_the_stretch():
    values = uint16_bands(1)[0].astype(np.float32)
    values[:5, :5] = np.nan
    grey = np.asarray(load_image(values).image)[:, :, 0]
    assert (grey[:5, :5] == 0).all()
    valid = ~np.isnan(values)
    np.testing.assert_array_equal(grey[valid], expected_stretch(values, valid)[valid])


def test_constant_band_becomes_black():
    assert not np.asarray(load_image(np.full((HEIGHT, WIDTH), 5000, np.uint16)).image).any()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((HEIGHT, WIDTH, 2), np.uint8), "unsupported image array shape"),
        (np.zeros((2, HEIGHT, WIDTH, 3), np.uint8), "unsupported image array shape"),
        (np.zeros((5,), np.uint8), "unsupported image array shape"),
        (np.zeros((0, WIDTH, 3), np.uint8), "empty"),
        (np.zeros((HEIGHT, WIDTH, 3), np.complex64), "unsupported image array type"),
        (np.full((HEIGHT, WIDTH), "a"), "unsupported image array type"),
    ],
)
def test_unsupported_arrays_are_refused(array, message):
    with pytest.raises(ImageError, match=message):
        load_image(array)


def test_other_objects_are_refused():
    with pytest.raises(ImageError, match="cannot read an image from list"):
        load_image([[1, 2], [3, 4]])


def test_geotiff_gives_rgb_of_the_first_three_bands_stretched_and_its_georef(tmp_path):
    bands = uint16_bands(4)
    loaded = load_image(write_geotiff(tmp_path / "scene.tif", bands))

    rgb = np.asarray(loaded.image)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], expected_stretch(bands[channel]))
    assert loaded.georef.crs == UTM
    assert loaded.georef.transform == tuple(TRANSFORM)[:6]


def test_geotiff_bands_can_be_chosen(tmp_path):
    bands = uint16_bands(4)
    path = write_geotiff(tmp_path / "scene.tif", bands)

    false_colour = np.asarray(load_image(path, bands=(4, 3, 2)).image)
    single = np.asarray(load_image(path, bands=(4,)).image)

    np.testing.assert_array_equal(false_colour[:, :, 0], expected_stretch(bands[3]))
    np.testing.assert_array_equal(false_colour[:, :, 2], expected_stretch(bands[1]))
    for channel in range(3):
        np.testing.assert_array_equal(single[:, :, channel], expected_stretch(bands[3]))


def test_single_band_geotiff_is_grey(tmp_path):
    bands = uint16_bands(1)
    rgb = np.asarray(load_image(write_geotiff(tmp_path / "dem.tif", bands)).image)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], expected_stretch(bands[0]))


def test_geotiff_nodata_is_black_and_left_out_of_the_stretch(tmp_path):
    bands = uint16_bands(3)
    bands[:, :4, :] = 0
    rgb = np.asarray(load_image(write_geotiff(tmp_path / "edge.tif", bands, nodata=0)).image)

    assert not rgb[:4].any()
    valid = np.ones((HEIGHT, WIDTH), bool)
    valid[:4] = False
    np.testing.assert_array_equal(rgb[4:, :, 1], expected_stretch(bands[1], valid)[4:])


def test_uint8_geotiff_is_not_stretched(tmp_path):
    pixels = np.moveaxis(random_rgb(), -1, 0)
    rgb = np.asarray(load_image(write_geotiff(tmp_path / "ortho.tif", pixels)).image)
    np.testing.assert_array_equal(rgb, random_rgb())


def test_geotiff_bytes_keep_the_georef(tmp_path):
    path = write_geotiff(tmp_path / "scene.tif", uint16_bands(3))
    loaded = load_image(path.read_bytes())
    assert loaded.georef.crs == UTM
    assert loaded.source == "bytes"


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the writer's
def test_tiff_without_georeference_has_no_georef(tmp_path):
    loaded = load_image(write_geotiff(tmp_path / "plain.tif", uint16_bands(3), crs=None))
    assert loaded.georef is None
    assert (loaded.width, loaded.height) == (WIDTH, HEIGHT)


def test_missing_bands_are_refused(tmp_path):
    path = write_geotiff(tmp_path / "scene.tif", uint16_bands(3))
    with pytest.raises(ImageError, match=r"has bands 1\.\.3"):
        load_image(path, bands=(4, 3, 2))
    with pytest.raises(ImageError, match="3 bands"):
        load_image(path, bands=(1, 2))


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image"):
        load_image(tmp_path / "nowhere.png")


@pytest.mark.parametrize(
    "name", ["noise.png", "noise.tif", "noise.bin"], ids=["png", "tif", "unknown"]
)
def test_corrupt_files_are_image_errors(tmp_path, name):
    path = tmp_path / name
    header = b"II*\x00" if name.endswith(".tif") else b""
    path.write_bytes(header + np.random.default_rng(0).bytes(200))
    with pytest.raises(ImageError, match="noise"):
        load_image(path)


def test_truncated_png_is_an_image_error(tmp_path):
    data = png_bytes(random_rgb())
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt"):
        load_image(path)
    with pytest.raises(ImageError, match="corrupt"):
        load_image(data[: len(data) // 2])


def test_garbage_bytes_are_an_image_error():
    with pytest.raises(ImageError, match="not an image format"):
        load_image(b"hello, not an image")


def bomb_png(width, height):
    """A PNG whose header claims `width` x `height` pixels (the data would never be read)."""
    data = png_bytes(np.zeros((1, 1, 3), np.uint8))
    header = struct.pack(">II", width, height) + data[24:29]  # IHDR: size, then depth etc.
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return data[:16] + header + crc + data[33:]


@pytest.mark.parametrize(("width", "height"), [(30_000, 30_000), (12_000, 12_000)])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, width, height):
    # 900 Mpx trips PIL's own bomb check in open(); 144 Mpx passes it but not max_pixels.
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(width, height))
    with pytest.raises(ImageError, match=r"bomb|more than the limit"):
        load_image(path, max_pixels=100_000_000)


def test_pixel_limit_applies_to_every_source(tmp_path):
    pixels = random_rgb()
    path = tmp_path / "scene.png"
    Image.fromarray(pixels).save(path)
    tif = write_geotiff(tmp_path / "scene.tif", uint16_bands(3))
    for source in (path, tif, pixels, Image.fromarray(pixels), png_bytes(pixels)):
        with pytest.raises(ImageError, match="more than the limit of 100"):
            load_image(source, max_pixels=100)


def test_loaded_image_fields():
    loaded = load_image(random_rgb())
    assert isinstance(loaded, LoadedImage)
    assert loaded.source == "array"
