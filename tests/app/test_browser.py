"""The web app in a real browser: Playwright driving Debian's chromium (headless).

Needs `pip install playwright` and `apt-get install chromium` (`playwright install` is not
needed: the system browser is used; set GEOCHAT_CHROMIUM to use another one). Skipped when
either is missing. The page runs on a scripted assistant, so the overlay is known.
"""

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import rasterio
from rasterio.transform import Affine
from ui_fakes import ScriptedAssistant, served

from geochat.app.ui import EXAMPLES, EXAMPLES_DIR, build_ui
from geochat.engine.assistant import NativeInput
from geochat.grammar import parse

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path(os.environ.get("GEOCHAT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
SCREENSHOT_COPY = Path(tempfile.gettempdir()) / "geochat_ui_screenshot.png"
TIMEOUT_MS = 30_000
ZOOM = 8  # the large test image is the 256-pixel port example enlarged this many times
SCENE_TILE = NativeInput(128, (1.0, 1.0))  # the 256-pixel, 1 m port scene: 3 x 3 tiles
SECONDS_PER_TILE = 0.4  # the scripted model's time per tile: the progress bar shows a while

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def assistant() -> ScriptedAssistant:
    return ScriptedAssistant()


@pytest.fixture(scope="module")
def url(assistant):
    with served(build_ui(assistant)) as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, url):
    tab = browser.new_page(viewport={"width": 1400, "height": 1100})
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(url)
    tab.wait_for_selector("#question textarea")
    yield tab
    tab.close()


@pytest.fixture(scope="module")
def large_geotiff(tmp_path_factory) -> Path:
    """The port example enlarged ZOOM times: a 2048 x 2048 GeoTIFF of the same place."""
    with rasterio.open(EXAMPLES_DIR / "port.tif") as source:
        pixels = source.read()  # [3, 256, 256]
        profile = source.profile
    pixels = pixels.repeat(ZOOM, axis=1).repeat(ZOOM, axis=2)  # [3, 2048, 2048]
    profile.update(
        width=pixels.shape[2],
        height=pixels.shape[1],
        transform=profile["transform"] * Affine.scale(1 / ZOOM),
    )
    path = tmp_path_factory.mktemp("images") / "large_port.tif"
    with rasterio.open(path, "w", **profile) as target:
        target.write(pixels)
    return path


def _drag(page, x0: float, y0: float, x1: float, y1: float) -> None:
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()


def test_upload_draw_a_region_ask_and_see_the_overlay(page, assistant, large_geotiff, tmp_path):
    page.locator("#upload input[type=file]").set_input_files(large_geotiff)
    page.get_by_text("shown at 1024 × 1024, analysed at full resolution").wait_for()
    page.get_by_text("georeferenced (EPSG:32633").wait_for()
    # The canvas shows the 1024-pixel copy scaled to fit, centred: from the centre, a drag of
    # (60, 40) CSS pixels covers (60, 40) / scale display pixels, twice as many original ones.
    box = page.locator("#region canvas").bounding_box()
    scale = min(box["width"], box["height"]) / 1024  # CSS pixels per display pixel
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    _drag(page, centre_x, centre_y, centre_x + 60, centre_y + 40)
    original_per_css = ZOOM * 256 / 1024 / scale
    expected = [1024, 1024, 1024 + 60 * original_per_css, 1024 + 40 * original_per_css]

    page.locator("#question textarea").fill("What is in the region?")
    page.locator("#send").click()
    legend = page.locator("#overlay .legend-item")
    legend.nth(1).wait_for()
    assert legend.all_inner_texts() == ["two ships", "the pier"]
    page.locator("#chat").get_by_text("There are two ships beside the pier.").wait_for()
    # The identify task's wording: the region goes inside the question, in original pixels.
    image = assistant.calls[-1].image
    assert image.width == ZOOM * 256  # analysed at full resolution
    asked = parse(assistant.calls[-1].messages[-1]["content"], image.width, image.height)
    (region,) = asked.objects
    assert region.hbb == pytest.approx(expected, abs=2 * original_per_css)
    assert page.locator("#download").inner_text() == "Download GeoJSON (lon/lat)"
    # The masks are drawn once their images load.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#overlay img')].every(i => i.complete)"
    )

    screenshot = tmp_path / "geochat_ui.png"
    page.screenshot(path=screenshot, full_page=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    print(f"screenshot: {screenshot} (copy: {SCREENSHOT_COPY})")


def test_a_bad_file_shows_its_error_in_the_page(page, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    page.locator("#upload input[type=file]").set_input_files(broken)
    page.get_by_text("Cannot open broken.png: corrupt or unsupported").wait_for()


def test_an_example_opens_its_image_and_asks_its_questions_in_order(page, assistant):
    name, questions = next(example for example in EXAMPLES if example[0] == "suburb.jpg")
    page.get_by_text(name, exact=True).click()
    page.get_by_text(f"{name}: 320 × 320 px").wait_for()
    chat = page.locator("#chat")
    playwright_api.expect(chat.get_by_text("Found: two ships")).to_have_count(2)
    for question in questions:
        assert chat.get_by_text(question, exact=True).count() == 1
    assert page.locator("#overlay .legend-item").all_inner_texts() == ["two ships", "the pier"]
    assert assistant.calls[-1].messages[-1]["content"] == questions[1]
    assert assistant.calls[-1].messages[-2]["role"] == "assistant"  # the first answer, before
    assert page.locator("#question textarea").input_value() == ""


def test_band_and_stretch_controls_change_the_image_before_asking(page, tmp_path):
    bgrn = Path(__file__).parents[1] / "data" / "imagery" / "bgrn.tif"
    assert page.locator("#bands").get_by_text("Bands (a preset, or type band numbers").is_visible()
    assert page.locator("#stretch").get_by_text("Stretch (or type minmax:LOW,HIGH)").is_visible()
    page.locator("#upload input[type=file]").set_input_files(bgrn)
    page.get_by_text("Imagery: bands 3,2,1; stretch minmax").wait_for()  # colour interpretation
    page.locator("#bands input").click()
    page.get_by_role("option", name="Colour-infrared (NIR, red, green)").click()
    page.get_by_text("Imagery: bands 4,3,2; stretch minmax").wait_for()
    stretch = page.locator("#stretch input")
    stretch.fill("minmax:0,9000")
    stretch.press("Enter")
    page.get_by_text("Imagery: bands 4,3,2; stretch minmax 0-9000, 0-9000, 0-9000").wait_for()
    screenshot = tmp_path / "geochat_ui_imagery.png"
    page.screenshot(path=screenshot, full_page=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY.with_name("geochat_ui_imagery_screenshot.png"))
    print(f"screenshot: {screenshot}")


@pytest.fixture(scope="module")
def scene_url():
    slow = ScriptedAssistant(native_input=SCENE_TILE, delay=SECONDS_PER_TILE)
    with served(build_ui(slow)) as address:
        yield address


def test_a_whole_scene_shows_tiles_on_a_progress_bar_then_the_overview_and_downloads(
    browser, scene_url, tmp_path
):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(scene_url)
    page.get_by_role("tab", name="Whole scene").click()
    page.locator("#scene-upload input[type=file]").set_input_files(EXAMPLES_DIR / "port.tif")
    page.locator("#scene-question textarea").fill("Where are the ships?")
    page.locator("#scene-run").click()
    # Gradio's progress bar over the outputs, with the tiles done of the tiles in all.
    bar = page.locator("#scene-overview [role=progressbar]")
    bar.wait_for()
    assert re.fullmatch(r"Tiles: [0-8] / 9 tiles", bar.get_attribute("aria-valuetext"))
    tracker = page.locator("#scene-overview .progress-text").inner_text()
    assert re.search(r"\b[0-8]/9 tiles", tracker)
    page.locator("#scene-overview img").wait_for()
    page.locator("#scene-answer").get_by_text("in the scene").wait_for()
    assert "9 of 9 tiles answered" in page.locator("#scene-answer").inner_text()
    assert page.locator("#scene-geojson").inner_text() == "Download scene.geojson (lon/lat)"
    assert page.locator("#scene-gpkg").inner_text() == "Download scene.gpkg (scene CRS)"
    table = page.locator("#scene-objects")
    assert table.get_by_text("lon", exact=True).count() >= 1
    assert table.get_by_text("two ships").count() >= 1
    with page.expect_download() as download:
        page.locator("#scene-gpkg").click()
    assert download.value.suggested_filename == "scene.gpkg"
    page.wait_for_function(
        "() => [...document.querySelectorAll('#scene-overview img')].every(i => i.complete)"
    )
    screenshot = tmp_path / "geochat_ui_scene.png"
    page.screenshot(path=screenshot, full_page=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY.with_name("geochat_ui_scene_screenshot.png"))
    print(f"screenshot: {screenshot}")
    page.close()
