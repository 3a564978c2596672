"""End-to-end tests of ``geochat chat`` on a tiny random model saved to disk.

The model's answer is random text; what is tested is the plumbing: loading, the answer on
stdout (streamed or not), the drawing and the GeoJSON files, and the errors.
"""

import json
import os
import stat

import numpy as np
import pytest
import rasterio
import shapely.geometry
from family_fixtures import Force
from PIL import Image
from rasterio.transform import Affine
from sam_fixtures import save, tiny_sam

from geochat import cli, geometry
from geochat.commands import chat as chat_command
from geochat.commands.chat import answer_text, object_table
from geochat.engine import DEFAULT_MODEL, LoadedImage, Reply, load
from geochat.georef import Georef
from geochat.grammar import format_mask, format_ref, parse
from geochat.modeling import tiny
from geochat.refine import Refiner

WIDTH, HEIGHT = 300, 120


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-geochat")
    model, processor = tiny(max_tiles_per_side=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def png(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    path = tmp_path / "scene.png"
    Image.fromarray(pixels).save(path)
    return path


def chat(model_dir, image, *options):
    question = "Where is the pool?"
    argv = ["chat", "--model", str(model_dir), "--image", str(image), question]
    return cli.main([*argv, "--max-new-tokens", "8", *options])


def test_chat_prints_the_answer_and_writes_the_drawing_and_pixel_geojson(
    model_dir, png, tmp_path, capsys
):
    drawing, geojson = tmp_path / "out" / "drawn.png", tmp_path / "out" / "answer.json"

    code = chat(model_dir, png, "--draw", str(drawing), "--geojson", str(geojson))

    out, err = capsys.readouterr()
    assert code == 0
    assert out.strip()  # the answer
    assert f"{model_dir.name}: " in err and "prompt + " in err and "completion tokens" in err
    assert f"wrote the drawing to {drawing}" in err
    assert f"wrote GeoJSON (pixel coordinates) to {geojson}" in err
    with Image.open(drawing) as image:
        assert image.width == WIDTH and image.height >= HEIGHT  # a legend strip if geometry
        assert image.format == "PNG"
    collection = json.loads(geojson.read_text())
    assert collection["type"] == "FeatureCollection"
    assert collection["coordinate_space"] == "pixel"
    assert not list(drawing.parent.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_streamed_answer_is_the_same_answer(model_dir, png, capsys):
    assert chat(model_dir, png) == 0
    plain = capsys.readouterr().out
    assert chat(model_dir, png, "--stream", "--region", "30,12,90,48") == 0
    with_region = capsys.readouterr().out
    assert chat(model_dir, png, "--stream") == 0
    streamed = capsys.readouterr().out

    assert streamed == plain
    assert with_region.strip()


TRANSFORM = Affine(0.5, 0, 500000.0, 0, -0.5, 4650000.0)  # UTM 33N, 0.5 m pixels


def write_geotiff(path):
    data = np.random.default_rng(0).integers(0, 4000, size=(4, HEIGHT, WIDTH)).astype(np.uint16)
    profile = {"driver": "GTiff", "width": WIDTH, "height": HEIGHT, "count": 4, "dtype": "uint16"}
    with rasterio.open(path, "w", crs="EPSG:32633", transform=TRANSFORM, **profile) as dataset:
        dataset.write(data)
    return path


def test_geotiff_gives_lon_lat_geojson(model_dir, tmp_path, capsys):
    path = write_geotiff(tmp_path / "scene.tif")
    geojson = tmp_path / "answer.geojson"

    code = chat(
        model_dir, path, "--bands", "4,3,2", "--stretch", "minmax:0,4000", "--geojson", str(geojson)
    )

    assert code == 0
    err = capsys.readouterr().err
    assert f"wrote GeoJSON (lon/lat) to {geojson}" in err
    assert "imagery: bands 4,3,2; stretch minmax 0-4000, 0-4000, 0-4000" in err
    collection = json.loads(geojson.read_text())
    assert collection["type"] == "FeatureCollection"
    assert "coordinate_space" not in collection


@pytest.mark.parametrize(
    ("image", "options", "message"),
    [
        ("missing.png", [], "no such image"),
        ("scene.png", ["--model", "no/such/model/folder"], "no model folder"),
        ("scene.png", ["--max-tiles", "9"], "max_tiles_per_side"),
        ("scene.png", ["--temperature", "-1"], "temperature must be >= 0"),
    ],
)
def test_bad_input_exits_with_2_and_a_message(model_dir, png, image, options, message, capsys):
    code = chat(model_dir, png.parent / image, *options)
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        ["--region", "1,2,3"],
        ["--region", "a,b,c,d"],
        ["--draw", "out.xyz"],
        ["--bands", "x"],
        ["--stretch", "gamma"],
    ],
)
def test_malformed_options_are_usage_errors(model_dir, png, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        chat(model_dir, png, *options)
    assert exit_info.value.code == 2
    assert "geochat chat: error" in capsys.readouterr().err


def reply_to(answer, width=WIDTH, height=HEIGHT):
    zero = {"total_s": 0.0, "tokens_per_s": 0.0}
    return Reply(answer, parse(answer, width, height), None, {}, (width, height), 0, 0, zero)


@pytest.mark.parametrize(
    ("answer", "printed"),
    [
        ("There is <ref>a pool</ref><box>[[0,0,500,500]]</box> here.", "There is a pool here."),
        ("<ref>two ships</ref><box>[[0,0,10,10],[20,20,30,30]]</box>", "two ships"),
        ("<box>[[0,0,10,10]]</box>", "unnamed (1 box)"),
        ("<none>", "nothing found"),
        ("Yes", "Yes"),
    ],
)
def test_the_answer_is_printed_without_grammar(answer, printed):
    assert answer_text(reply_to(answer)) == printed


def test_the_object_table_gives_phrase_kind_pixel_box_and_lon_lat():
    answer = "<ref>the pool</ref><box>[[0,0,1000,1000]]</box><ref>a car</ref><none>"
    image = LoadedImage(Image.new("RGB", (WIDTH, HEIGHT)), WIDTH, HEIGHT)
    georeferenced = LoadedImage(
        image.image, WIDTH, HEIGHT, Georef("EPSG:32633", tuple(TRANSFORM)[:6])
    )

    plain = object_table(reply_to(answer), image)
    table = object_table(reply_to(answer), georeferenced)

    assert plain[0].split() == ["#", "phrase", "kind", "box", "x0,y0,x1,y1", "(px)"]
    assert plain[1].split() == ["1", "the", "pool", "box", f"0,0,{WIDTH},{HEIGHT}"]
    assert plain[2].split() == ["2", "a", "car", "nothing", "found"]
    assert table[0].endswith("centre lon,lat")
    # The box centre (150, 60) px is (500075, 4649970) m in UTM 33N (pyproj: 15.0009056 E,
    # 42.0017453 N).
    lon, lat = (float(value) for value in table[1].split()[-1].split(","))
    assert (lon, lat) == pytest.approx((15.000906, 42.001745), abs=2e-6)


@pytest.mark.slow
def test_bundled_model_on_a_geotiff_prints_text_and_a_table_and_draws_a_legend(tmp_path, capsys):
    """The bundled geochat-nano, made to answer with geometry, through the geochat command."""
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("the bundled geochat-nano model is not in this installation")
    scene = write_geotiff(tmp_path / "scene.tif")
    drawing, geojson = tmp_path / "out" / "drawn.png", tmp_path / "out" / "answer.geojson"
    old_umask = os.umask(0o022)
    try:
        argv = ["chat", "--image", str(scene), "Where is the largest building?"]
        options = ["--constrain", "grounding", "--max-new-tokens", "32", "--bands", "3,2,1"]
        outputs = ["--draw", str(drawing), "--geojson", str(geojson)]
        code = cli.main([*argv, *options, *outputs])
    finally:
        os.umask(old_umask)

    out, err = capsys.readouterr()
    assert code == 0
    assert out.strip() and "<" not in out and "[[" not in out  # no grammar on stdout
    assert "box x0,y0,x1,y1 (px)  centre lon,lat" in err
    assert err.count("\n1  ") == 1  # the first object's row
    for path in (drawing, geojson):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with Image.open(drawing) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert pixels.shape[0] > HEIGHT  # the legend strip under the image
    legend = pixels[HEIGHT:]
    assert (legend != legend[0, 0]).any()  # swatch and text on the strip's background


def test_a_training_run_folder_answers_with_its_final_model(model_dir, png, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "final").symlink_to(model_dir, target_is_directory=True)
    assert chat(run, png) == 0
    # Named after the run, as servers name it (never by a path).
    assert "run/final: " in capsys.readouterr().err


# --sam: SAM refinement


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    return save(tiny_sam(), tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture
def scripted(monkeypatch):
    """Makes every assistant `geochat chat` loads answer a <seg> mask of the pool."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[30:90, 75:225] = True
    answer = format_ref("the pool", format_mask(mask, 16))

    def load_scripted(*args, **kwargs):
        assistant = load(*args, **kwargs)
        chat = assistant.chat
        assistant.chat = lambda *a, **o: chat(*a, logits_processor=[Force(assistant, answer)], **o)
        return assistant

    monkeypatch.setattr(chat_command, "load", load_scripted)
    return answer


def test_sam_refines_a_seg_answer_into_the_saved_geometry(
    model_dir, sam_dir, png, tmp_path, scripted, capsys
):
    plain, refined = tmp_path / "plain.json", tmp_path / "refined.json"

    assert chat(model_dir, png, "--geojson", str(plain), "--max-new-tokens", "256") == 0
    plain_err = capsys.readouterr().err
    code = chat(
        model_dir, png, "--geojson", str(refined), "--max-new-tokens", "256", "--sam", str(sam_dir)
    )
    err = capsys.readouterr().err

    assert code == 0
    assert "SAM refined objects 1" in err and "SAM" not in plain_err
    model_mask = parse(scripted, WIDTH, HEIGHT).objects[0]
    (expected,) = Refiner.from_pretrained(sam_dir).refine(Image.open(png), [model_mask])
    expected_area = geometry.rle_to_mask(expected.mask).sum()
    (without,) = json.loads(plain.read_text())["features"]
    with_sam = json.loads(refined.read_text())["features"]
    assert all(f["properties"]["phrase"] == "the pool" for f in with_sam)
    area = sum(shapely.geometry.shape(f["geometry"]).area for f in with_sam)
    assert area == pytest.approx(expected_area)  # SAM's mask, pixel for pixel
    assert shapely.geometry.shape(without["geometry"]).area != pytest.approx(expected_area)


@pytest.mark.parametrize("content", [None, b"not a checkpoint"], ids=["missing", "broken"])
def test_a_missing_or_broken_sam_checkpoint_is_one_line_and_writes_nothing(
    model_dir, png, tmp_path, capsys, content
):
    sam = tmp_path / "sam.pth"
    if content is not None:
        sam.write_bytes(content)
    out = tmp_path / "out"

    code = chat(model_dir, png, "--sam", str(sam), "--geojson", str(out / "a.json"))

    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("geochat chat: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert not out.exists()
