"""Tests of geochat.imagery on the GeoTIFFs of tests/data/imagery (made by its data.py).

Band order, no-data (fill frame, nodata tag, internal mask, NaN), the stretch over valid pixels
only, settings that round-trip, and the same pixels for a builder tile and the engine.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geochat.data_builders.tiling import open_raster, plan_windows, read_tile
from geochat.imagery import (
    BandInfo,
    ImageError,
    ImagerySettings,
    choose_bands,
    load_image,
    parse_stretch,
)

DATA = Path(__file__).parents[1] / "data" / "imagery"


def raw(name: str) -> np.ndarray:
    with rasterio.open(DATA / name) as dataset:
        return dataset.read().astype(np.float64)  # [C, H, W]


def stretched(band: np.ndarray, valid: np.ndarray, percentiles=(2, 98)) -> np.ndarray:
    """The expected 8-bit band: its valid pixels' percentiles to 0 and 255, invalid black."""
    low, high = np.percentile(band[valid], percentiles)
    scaled = np.clip((band - low) * 255.0 / (high - low), 0, 255)
    return np.where(valid, np.rint(np.nan_to_num(scaled)), 0).astype(np.uint8)


def expected_rgb(name: str, bands: tuple[int, ...], valid: np.ndarray) -> np.ndarray:
    data = raw(name)
    return np.stack([stretched(data[band - 1], valid) for band in bands], axis=-1)


def pixels(loaded) -> np.ndarray:
    return np.asarray(loaded.image)


def test_a_zero_collar_without_nodata_tag_is_masked_and_left_out_of_the_stretch():
    loaded = load_image(DATA / "collar.tif")
    data = raw("collar.tif")
    valid = (data != 0).any(axis=0)
    assert (~valid).sum() > 0.2 * valid.size  # a real frame, enough to wash out a naive stretch
    assert loaded.imagery.fill == 0 and loaded.imagery.bands == (1, 2, 3)
    assert min(low for low, _ in loaded.imagery.limits) >= 7000  # not the fill's 0
    rgb = pixels(loaded)
    np.testing.assert_array_equal(rgb, expected_rgb("collar.tif", (1, 2, 3), valid))
    assert not rgb[~valid].any()  # the fill is black
    for channel in range(3):  # full contrast over the scene
        assert rgb[valid, channel].min() <= 3 and rgb[valid, channel].max() >= 252


def test_bands_chosen_by_the_user_reorder_a_file_that_says_nothing():
    loaded = load_image(DATA / "collar.tif", imagery=ImagerySettings().updated(bands="3,2,1"))
    valid = (raw("collar.tif") != 0).any(axis=0)
    np.testing.assert_array_equal(pixels(loaded), expected_rgb("collar.tif", (3, 2, 1), valid))
    red = pixels(loaded)[:, :, 0].astype(float)
    assert red[20, 40] > red[20, 20] > red[20, 12]  # the red band ramps left to right


def test_colour_interpretation_shows_bgrn_in_natural_colour_and_cir_uses_nir():
    natural = load_image(DATA / "bgrn.tif")
    assert natural.imagery.bands == (3, 2, 1)
    valid = np.ones((40, 48), bool)
    np.testing.assert_array_equal(pixels(natural), expected_rgb("bgrn.tif", (3, 2, 1), valid))
    cir = load_image(DATA / "bgrn.tif", imagery=ImagerySettings(preset="cir"))
    assert cir.imagery.bands == (4, 3, 2)


def test_the_nodata_tag_is_masked_and_left_out_of_the_stretch():
    loaded = load_image(DATA / "nodata.tif")
    valid = np.ones((40, 48), bool)
    valid[:5] = False
    assert loaded.imagery.fill is None  # the file's own nodata value is enough
    np.testing.assert_array_equal(pixels(loaded), expected_rgb("nodata.tif", (1, 2, 3), valid))


def test_an_internal_mask_hides_pixels_from_the_output_and_the_stretch():
    loaded = load_image(DATA / "masked.tif")
    valid = np.ones((40, 48), bool)
    valid[:, :7] = False
    np.testing.assert_array_equal(pixels(loaded), expected_rgb("masked.tif", (1, 2, 3), valid))
    assert max(high for _, high in loaded.imagery.limits) < 60000


def test_float_reflectance_is_stretched_over_finite_pixels():
    loaded = load_image(DATA / "reflectance.tif")
    valid = np.isfinite(raw("reflectance.tif")).all(axis=0)
    assert not valid[:4, :4].any()
    np.testing.assert_array_equal(pixels(loaded), expected_rgb("reflectance.tif", (1, 2, 3), valid))


def test_sentinel2_bands_are_found_by_their_descriptions_and_by_the_preset():
    assert load_image(DATA / "sentinel2.tif").imagery.bands == (4, 3, 2)
    cir = load_image(DATA / "sentinel2.tif", imagery=ImagerySettings(preset="sentinel2:cir"))
    assert cir.imagery.bands == (8, 4, 3)  # B8, not B8A (the 9th band)


@pytest.mark.parametrize(
    ("preset", "count", "bands"),
    [
        ("sentinel2", 13, (4, 3, 2)),
        ("sentinel2:cir", 13, (8, 4, 3)),
        ("landsat8", 7, (4, 3, 2)),
        ("landsat9:cir", 7, (5, 4, 3)),
        ("planetscope", 4, (3, 2, 1)),
        ("planetscope:cir", 4, (4, 3, 2)),
        ("planetscope8", 8, (6, 4, 2)),
        ("naip:cir", 4, (4, 1, 2)),
        ("cir", 4, (4, 1, 2)),  # nothing in the file: red, green, blue, NIR assumed
    ],
)
def test_sensor_presets_choose_by_band_order_when_the_file_says_nothing(preset, count, bands):
    assert choose_bands(ImagerySettings(preset=preset), BandInfo(count)) == bands


def test_a_file_that_says_nothing_shows_its_first_three_bands_or_grey():
    assert choose_bands(ImagerySettings(), BandInfo(7)) == (1, 2, 3)
    assert choose_bands(ImagerySettings(), BandInfo(2)) == (1,)


def test_bands_or_presets_the_file_lacks_are_clear_errors():
    with pytest.raises(ImageError, match=r"bands 1\.\.4; cannot read bands 8,4,3 for the"):
        choose_bands(ImagerySettings(preset="sentinel2:cir"), BandInfo(4))
    with pytest.raises(ImageError, match=r"has bands 1\.\.3"):
        load_image(DATA / "collar.tif", bands=(4, 3, 2))


def test_fixed_limits_and_no_stretch():
    limits = load_image(
        DATA / "nodata.tif", imagery=ImagerySettings().updated(stretch="minmax:7000,12000")
    )
    red = raw("nodata.tif")[0]
    expected = np.rint((red[5:] - 7000) * 255.0 / 5000).astype(np.uint8)
    np.testing.assert_array_equal(pixels(limits)[5:, :, 0], expected)
    assert limits.imagery.limits == ((7000.0, 12000.0),) * 3
    clipped = load_image(DATA / "nodata.tif", imagery=ImagerySettings(stretch="none"))
    assert (pixels(clipped)[5:] == 255).all()  # uint16 values above 255 clip


def test_resolved_settings_round_trip_through_json_and_give_the_same_pixels():
    loaded = load_image(DATA / "collar.tif", imagery=ImagerySettings(preset="natural"))
    document = json.loads(json.dumps(loaded.imagery.to_dict()))
    again = load_image(DATA / "collar.tif", imagery=ImagerySettings.from_dict(document))
    assert ImagerySettings.from_dict(document) == loaded.imagery == again.imagery
    np.testing.assert_array_equal(pixels(again), pixels(loaded))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bands": "4,3"}, "3 bands"),
        ({"bands": "red"}, "integers"),
        ({"preset": "modis"}, "unknown preset"),
        ({"stretch": "gamma"}, "stretch is one of"),
        ({"stretch": "percentile:50,10"}, "low < high"),
        ({"stretch": "minmax"}, "needs limits"),
        ({"fill": "black"}, "fill is auto"),
    ],
)
def test_bad_settings_are_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        ImagerySettings().updated(**change)
    with pytest.raises(ValueError, match="unknown imagery settings"):
        ImagerySettings.from_dict({"band": [1, 2, 3]})


def test_user_choices_replace_what_they_name_and_keep_the_rest():
    trained = ImagerySettings(preset="sentinel2", stretch="percentile", percentiles=(1, 99))
    assert trained.updated(bands="8,4,3") == ImagerySettings(
        bands=(8, 4, 3), stretch="percentile", percentiles=(1, 99)
    )
    assert trained.updated(stretch="none").preset == "sentinel2"
    assert parse_stretch("percentile:1,99") == {
        "stretch": "percentile",
        "percentiles": (1.0, 99.0),
        "limits": None,
    }


@pytest.mark.parametrize("name", ["collar.tif", "bgrn.tif", "masked.tif", "sentinel2.tif"])
def test_a_builder_tile_and_the_engine_input_of_the_same_window_are_identical(name):
    settings = ImagerySettings()
    info = open_raster(DATA / name, "scene", settings)
    windows = plan_windows(info, 24, 8, None)
    assert len(windows) > 1
    with rasterio.open(DATA / name) as dataset:
        for window in windows:
            tile, _ = read_tile(dataset, info, window)
            loaded = load_image(DATA / name, imagery=settings, window=window.window)
            assert loaded.imagery == info.imagery
            np.testing.assert_array_equal(pixels(loaded), tile)
            assert loaded.georef.transform == pytest.approx(window.transform)


def test_a_window_outside_the_image_is_refused():
    with pytest.raises(ImageError, match="not inside"):
        load_image(DATA / "collar.tif", window=(40, 0, 16, 16))


def test_a_window_reads_only_its_pixels(raster_reads):
    """The stretch comes from a decimated sample; the pixels from the window alone."""
    load_image(DATA / "collar.tif", window=(8, 8, 16, 16))
    full = [w for w, shape in raster_reads if w is None and shape is None]
    assert not full  # never the whole raster at full resolution for a window
    assert any(w is not None and (w.width, w.height) == (16, 16) for w, _ in raster_reads)


def test_a_copy_without_descriptions_falls_back_to_the_sensor_order(tmp_path):
    path = tmp_path / "s2.tif"
    shutil.copy(DATA / "sentinel2.tif", path)
    with rasterio.open(path, "r+") as dataset:
        for index in range(1, dataset.count + 1):
            dataset.set_band_description(index, "")
    assert load_image(path).imagery.bands == (1, 2, 3)
    assert load_image(path, imagery=ImagerySettings(preset="sentinel2")).imagery.bands == (4, 3, 2)
