"""The web app driven as a user's browser drives it: through Gradio's API, with gradio_client."""

import itertools
import json
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import rasterio
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from ui_fakes import ANSWER, ScriptedAssistant, served

from geochat.app.ui import EXAMPLES, EXAMPLES_DIR, answer_scene, build_ui, fill_task
from geochat.engine import load, load_image
from geochat.engine.assistant import NativeInput
from geochat.engine.scene import SceneError
from geochat.geometry import from_grammar
from geochat.georef import Georef
from geochat.grammar import format_region

DISPLAY_SIDE = 128
WIDTH, HEIGHT = 512, 384  # shown at 128 x 96: 4 original pixels per display pixel
SCENE_TILE = NativeInput(128, (1.0, 1.0))  # port.tif is 256 px at 1 m: 3 x 3 windows of 128
# Every tile answers with a box over the whole tile: each is cut by an inner tile edge, so the
# merge makes them one object, the whole scene.
WHOLE_TILE = "<ref>the ship</ref><box>[[0,0,1000,1000]]</box>"


@pytest.fixture(scope="module")
def assistant() -> ScriptedAssistant:
    return ScriptedAssistant(native_input=SCENE_TILE)


@pytest.fixture(scope="module")
def url(assistant):
    with served(build_ui(assistant, display_max_side=DISPLAY_SIDE)) as address:
        yield address


@pytest.fixture
def client(url) -> Client:
    return Client(url, verbose=False)  # a new browser session per test


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("images") / "scene.png"
    Image.fromarray(pixels).save(path)
    return path


def _open(client: Client, path: Path) -> tuple:
    return client.predict(handle_file(str(path)), api_name="/open_image")


def _ask(client: Client, question: str, region_value=None, max_new_tokens: int = 64) -> list:
    """Asks a question; returns every update the page received, the final one last.

    Each update is (chat, question box, overlay, download button): states stay on the server.
    """
    job = client.submit(question, region_value, max_new_tokens, 0.0, api_name="/ask")
    job.result()
    return job.outputs()


def _text(message: dict) -> str:
    return "".join(part["text"] for part in message["content"] if part["type"] == "text")


def _download(url: str, update: dict) -> dict:
    with urllib.request.urlopen(f"{url}gradio_api/file={update['value']}") as response:
        return json.loads(response.read())


def test_opening_an_image_shows_its_size_and_display_scale(client, picture):
    annotator, info, chat, overlay, download = _open(client, picture)
    assert info == (
        "**scene.png**: 512 × 384 px; shown at 128 × 96, analysed at full resolution  \n"
        "Imagery: bands 1,2,3; stretch none; fill none"
    )
    assert Image.open(annotator["image"]).size == (128, 96)
    assert annotator["boxes"] == []
    assert chat == [] and overlay is None and download["visible"] is False


def test_band_and_stretch_choices_read_the_image_again_and_say_what_was_applied(client):
    bgrn = Path(__file__).parents[1] / "data" / "imagery" / "bgrn.tif"
    _, natural, *_ = _open(client, bgrn)
    assert "Imagery: bands 3,2,1; stretch minmax" in natural  # by colour interpretation
    cases = [
        ("cir", "", "bands 4,3,2; stretch minmax"),
        ("1,2,3", "minmax:0,9000", "bands 1,2,3; stretch minmax 0-9000"),
    ]
    for bands, stretch, applied in cases:
        annotator, info, *_ = client.predict(
            handle_file(str(bgrn)), bands, stretch, api_name="/open_image"
        )
        assert applied in info
    shown = np.asarray(Image.open(annotator["image"]).convert("RGB"))
    with rasterio.open(bgrn) as dataset:
        first, _, third = dataset.read((1, 2, 3)).astype(float)
    # The page shows a compressed copy: like band 1 (noise), unlike band 3 (a ramp).
    red = shown[:, :, 0].ravel()
    assert np.corrcoef(red, first.ravel())[0, 1] > 0.5 > abs(np.corrcoef(red, third.ravel())[0, 1])
    with pytest.raises(AppError, match=r"bands 1\.\.4; cannot read bands 8,4,3"):
        client.predict(handle_file(str(bgrn)), "sentinel2:cir", "", api_name="/open_image")
    with pytest.raises(AppError, match="stretch is one of"):
        client.predict(handle_file(str(bgrn)), "", "gamma", api_name="/open_image")


def test_a_geotiff_reports_its_georeference(client):
    _, info, *_ = _open(client, EXAMPLES_DIR / "port.tif")
    assert info.startswith("**port.tif**: 256 × 256 px, georeferenced (EPSG:32633, 1.00 m/px)")


def test_the_answer_streams_in_pieces_then_the_final_message(client, picture, assistant):
    _open(client, picture)
    updates = _ask(client, "Where are the ships?")
    answers = [_text(chat[-1]) for chat, *_ in updates]
    streamed = answers[1:-1]  # the first update shows the question, the last the final text
    assert len(streamed) >= 5
    assert all(b.startswith(a) for a, b in itertools.pairwise(streamed))
    assert not any("&lt;" in answer or "&gt;" in answer for answer in streamed)  # no grammar
    assert streamed[-1] == "There are two ships beside the pier."
    assert answers[-1] == (
        "There are two ships beside the pier.\n\n"
        "Found: **two ships** (2 boxes); **the pier** (1 oriented box)."
    )
    final_chat = updates[-1][0]
    assert [message["role"] for message in final_chat] == ["user", "assistant"]
    assert _text(final_chat[0]) == "Where are the ships?"
    assert assistant.calls[-1].image.width == WIDTH  # analysed at full resolution


def test_a_drawn_region_reaches_the_model_in_original_pixels(client, picture, assistant):
    annotator, *_ = _open(client, picture)
    box = {"xmin": 10, "ymin": 20, "xmax": 50, "ymax": 60, "label": "region"}
    region_value = {"image": handle_file(annotator["image"]), "boxes": [box]}
    updates = _ask(client, "What is in the region?", region_value)
    expected = [40.0, 80.0, 200.0, 240.0]
    last_turn = assistant.calls[-1].messages[-1]["content"]
    # The identify task's wording, as training writes it: the region inside the question.
    assert last_turn.endswith(f"What is in the region {format_region(expected, WIDTH, HEIGHT)}?")
    assert _text(updates[-1][0][0]).endswith("*region: x 40–200, y 80–240 px*")


def test_the_overlay_has_one_legend_entry_per_phrase_and_rotated_quads(client, picture):
    _open(client, picture)
    overlay = _ask(client, "Where are the ships?")[-1][2]
    labels = [annotation["label"] for annotation in overlay["value"]["annotations"]]
    assert labels == ["two ships", "the pier"]
    assert list(overlay["color_map"]) == labels
    assert Image.open(overlay["value"]["image"]).size == (128, 96)
    pier = np.asarray(Image.open(overlay["value"]["annotations"][1]["image"]))[..., 3]
    # The pier's quad in display pixels: (76.8, 9.6), (115.2, 28.8), (102.4, 43.2), (64, 24).
    assert pier[26, 90] > 0  # inside
    assert pier[11, 66] == 0  # inside its enclosing box, outside the rotated quad


def test_geojson_download_is_in_pixels_for_a_plain_image(client, url, picture):
    _open(client, picture)
    download = _ask(client, "Where are the ships?")[-1][3]
    assert download["visible"] is True and download["label"] == "Download GeoJSON (pixels)"
    assert download["value"].endswith("scene.geojson")
    collection = _download(url, download)
    assert collection["coordinate_space"] == "pixel"
    phrases = [feature["properties"]["phrase"] for feature in collection["features"]]
    assert phrases == ["two ships", "two ships", "the pier"]
    ring = np.array(collection["features"][0]["geometry"]["coordinates"][0])
    expected = from_grammar([100, 200, 300, 400], WIDTH, HEIGHT)  # [51.2, 76.8, 153.6, 153.6]
    np.testing.assert_allclose([*ring.min(axis=0), *ring.max(axis=0)], expected)


def test_geojson_download_is_in_lon_lat_for_a_geotiff(client, url):
    _open(client, EXAMPLES_DIR / "port.tif")
    download = _ask(client, "Where are the ships?")[-1][3]
    assert download["label"] == "Download GeoJSON (lon/lat)"
    collection = _download(url, download)
    assert "coordinate_space" not in collection  # RFC 7946: WGS84 lon/lat
    feature = collection["features"][0]
    georef = load_image(EXAMPLES_DIR / "port.tif").georef
    corners = from_grammar([[100, 200], [300, 400]], 256, 256)
    expected = georef.pixel_to_lonlat(corners)  # [2, 2] lon, lat of two opposite corners
    ring = np.array(feature["geometry"]["coordinates"][0])
    np.testing.assert_allclose(ring.min(axis=0), expected.min(axis=0), atol=1e-9)
    np.testing.assert_allclose(ring.max(axis=0), expected.max(axis=0), atol=1e-9)
    assert feature["properties"]["pixel_geometry"]["type"] == "Polygon"


def test_later_turns_carry_the_conversation(client, picture, assistant):
    _open(client, picture)
    _ask(client, "Where are the ships?")
    _ask(client, "And the pier?")
    assert assistant.calls[-1].messages == [
        {"role": "user", "content": "<image>\nWhere are the ships?"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "And the pier?"},
    ]


def test_an_example_asks_its_questions_in_order_in_one_conversation(client, assistant):
    name, questions = EXAMPLES[1]
    job = client.submit(
        handle_file(str(EXAMPLES_DIR / name)),
        "\n".join(questions),
        "",  # the model's bands
        "",  # and stretch
        64,
        0.0,
        api_name="/run_example",
    )
    job.result()
    updates = job.outputs()  # (annotator, image info, chat, overlay, download) each
    assert updates[0][1].startswith(f"**{name}**")
    final_chat, overlay = updates[-1][2], updates[-1][3]
    assert [message["role"] for message in final_chat] == ["user", "assistant"] * 2
    assert [_text(message) for message in final_chat[::2]] == list(questions)
    answer = "There are two ships beside the pier.\n\nFound: **two ships** (2 boxes)"
    assert all(_text(message).startswith(answer) for message in final_chat[1::2])
    # The second question is asked once the first is answered, with that answer before it.
    first, second = assistant.calls[-2:]
    assert first.messages == [{"role": "user", "content": f"<image>\n{questions[0]}"}]
    assert second.messages == [
        *first.messages,
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": questions[1]},
    ]
    asking_second = next(chat for _, _, chat, *_ in updates if len(chat) == 4)
    assert _text(asking_second[1]).startswith(answer)  # the first answer, final, drawn
    labels = [annotation["label"] for annotation in overlay["value"]["annotations"]]
    assert labels == ["two ships", "the pier"]  # each answer drawn with its legend


def test_clear_forgets_the_conversation_but_keeps_the_image(client, picture, assistant):
    _open(client, picture)
    _ask(client, "Where are the ships?")
    client.predict(api_name="/clear")
    _ask(client, "Where are the ships?")
    assert assistant.calls[-1].messages == [
        {"role": "user", "content": "<image>\nWhere are the ships?"}
    ]
    assert assistant.calls[-1].image.width == WIDTH


def test_questions_without_an_image_are_text_only(client, assistant):
    updates = _ask(client, "What is a GeoTIFF?")
    assert assistant.calls[-1].image is None
    final = updates[-1]
    assert _text(final[0][-1]) == "There are two ships beside the pier."  # tags taken out
    assert final[2] is None  # nothing to draw on
    assert final[3]["visible"] is False  # nor to download


def test_nothing_found_without_an_image_reads_as_text_while_streaming_and_after():
    with served(build_ui(ScriptedAssistant(answer="Sorry: <ref>a pool</ref><none>"))) as address:
        updates = _ask(Client(address, verbose=False), "Where is the pool?")
    answers = [_text(chat[-1]) for chat, *_ in updates[1:]]
    assert answers[:-1] == ["Sorry:", "Sorry: a pool", "Sorry: a pool"]  # 12 characters a piece
    assert answers[-1] == "Sorry: a pool\n\nFound: no **a pool**."


def test_removing_the_image_goes_back_to_text_only(client, picture, assistant):
    _open(client, picture)
    annotator, info, *_ = client.predict(None, api_name="/open_image")
    assert annotator is None and info == ""
    _ask(client, "Where are the ships?")
    assert assistant.calls[-1].image is None


def test_an_empty_question_does_not_reach_the_model(client, picture, assistant):
    _open(client, picture)
    before = len(assistant.calls)
    _ask(client, "   ")
    assert len(assistant.calls) == before


def test_an_unreadable_file_gets_a_clear_message(client, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    with pytest.raises(AppError, match=r"^Cannot open broken\.png: corrupt or unsupported"):
        _open(client, broken)
    text = tmp_path / "notes.tif"
    text.write_text("a text file named like a GeoTIFF")
    with pytest.raises(AppError, match=r"Cannot open notes\.tif: "):
        _open(client, text)


def test_a_failing_model_is_reported_with_its_error(picture):
    failing = ScriptedAssistant(failure=RuntimeError("CUDA out of memory"))
    with served(build_ui(failing)) as address:
        client = Client(address, verbose=False)
        _open(client, picture)
        with pytest.raises(AppError, match="The model failed to answer: RuntimeError: CUDA out"):
            _ask(client, "Where are the ships?")


def test_task_buttons_fill_the_question():
    assert fill_task("Locate all {target}.", " storage tanks ") == "Locate all storage tanks."
    assert fill_task("Describe this image.", "") == "Describe this image."
    with pytest.raises(gr.Error, match="Type the kind of object first"):
        fill_task("How many {target} are there?", "  ")


def test_the_examples_are_small_synthetic_images_of_each_format():
    paths = [EXAMPLES_DIR / name for name, _ in EXAMPLES]
    assert {path.suffix for path in paths} == {".png", ".jpg", ".tif"}
    assert sum(path.stat().st_size for path in paths) < 300_000
    georefs = {path.suffix: load_image(path).georef for path in paths}
    assert georefs[".tif"] is not None and georefs[".png"] is None


@pytest.mark.slow
def test_a_real_tiny_model_answers_through_the_page(tmp_path, picture):
    from geochat.modeling import tiny

    model, processor = tiny()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assistant = load(tmp_path)
    with served(build_ui(assistant, display_max_side=DISPLAY_SIDE)) as address:
        client = Client(address, verbose=False)
        annotator, *_ = _open(client, picture)
        region_value = {
            "image": handle_file(annotator["image"]),
            "boxes": [{"xmin": 0, "ymin": 0, "xmax": 64, "ymax": 48}],
        }
        updates = _ask(client, "Describe this image.", region_value, max_new_tokens=8)
    answer = _text(updates[-1][0][-1])
    assert len(updates) >= 3  # the question, at least one streamed piece, the final answer
    assert answer  # random weights: any text, or "(empty answer)"


def test_a_scene_runs_tile_by_tile_and_maps_the_merged_objects(tmp_path):
    scripted = ScriptedAssistant(WHOLE_TILE, native_input=SCENE_TILE)
    scene_path = EXAMPLES_DIR / "port.tif"
    steps = []
    scene = answer_scene(
        scripted, scene_path, "Where is the ship?", tmp_path, progress=lambda *p: steps.append(p)
    )
    assert steps == [(0, 9), (8, 9), (9, 9)]  # the plan, then one batch of 8, then the last
    assert len(scripted.calls) == 9 and {c.image.width for c in scripted.calls} == {128}
    assert scene.summary.startswith("**1 object in the scene (the ship: 1).**")
    assert "9 of 9 tiles answered (0 skipped as no-data)" in scene.summary
    assert scene.headers == ["phrase", "category", "kind", "lon", "lat"]
    ((phrase, category, kind, lon, lat),) = scene.rows
    with rasterio.open(scene_path) as dataset:
        georef = Georef(dataset.crs.to_string(), tuple(dataset.transform)[:6])
    expected = georef.pixel_to_lonlat(np.array([[128.0, 128.0]]))[0]  # the scene's centre
    assert (phrase, category, kind) == ("the ship", "ship", "hbb")
    assert (lon, lat) == pytest.approx(tuple(expected), abs=1e-5)
    assert set(scene.files) == {
        "answer.txt",
        "objects.json",
        "scene.geojson",
        "scene.gpkg",
        "overview.png",
    }
    assert scene.files["scene.gpkg"].parent.parent == tmp_path  # a new folder per run
    width, height = Image.open(scene.files["overview.png"]).size
    assert width == 256 and height > 256  # the scene, then the legend below it
    collection = json.loads(scene.files["scene.geojson"].read_text())
    assert [f["properties"]["phrase"] for f in collection["features"]] == ["the ship"]


def test_a_scene_needs_a_model_that_says_its_tile_size(tmp_path):
    with pytest.raises(SceneError, match="does not say its input size"):
        answer_scene(ScriptedAssistant(), EXAMPLES_DIR / "port.tif", "Where?", tmp_path)


def test_a_plain_image_scene_through_the_page_is_in_pixels_without_a_geopackage(
    client, url, picture
):
    answer, overview, table, geojson, gpkg = client.predict(
        handle_file(str(picture)), "Where are the ships?", 0.5, api_name="/scene"
    )
    assert answer.startswith("**")
    assert "No georeference: scene.geojson is in pixel coordinates" in answer
    assert "scene at 0.5 m per pixel" in answer
    assert Image.open(overview).size[0] == WIDTH
    assert table["headers"] == ["phrase", "category", "kind", "x (px)", "y (px)"]
    rows = table["value"]["data"]
    assert {row[0] for row in rows} == {"two ships", "the pier"}
    # Read at the model's 1 m: the first window (256 px at 0.5 m) sees the first box of
    # [100, 200, 300, 400] per mille at x 25.6-76.8, y 51.2-102.4 scene pixels.
    assert rows[0] == ["two ships", "ship", "hbb", 51.2, 76.8]
    assert geojson["visible"] is True and geojson["label"] == "Download scene.geojson (pixels)"
    assert gpkg["visible"] is False
    collection = _download(url, geojson)
    assert collection["coordinate_space"] == "pixel"
    assert len(collection["features"]) == len(rows)


def test_a_scene_without_a_question_a_readable_file_or_a_positive_gsd_is_refused(
    client, picture, tmp_path
):
    with pytest.raises(AppError, match="Type a question first"):
        client.predict(handle_file(str(picture)), "  ", None, api_name="/scene")
    with pytest.raises(AppError, match="Upload a scene first"):
        client.predict(None, "Where?", None, api_name="/scene")
    with pytest.raises(AppError, match="less than minimum value 0"):
        client.predict(handle_file(str(picture)), "Where?", -1, api_name="/scene")
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 this is not a raster")
    # The server's copy of the upload means nothing to the user; its name does.
    with pytest.raises(AppError, match=r"^Cannot run broken\.tif: corrupt or unsupported"):
        client.predict(handle_file(str(broken)), "Where?", None, api_name="/scene")
