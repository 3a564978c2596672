"""End-to-end tests of ``geochat chat`` on a tiny random model saved to disk.

The model's answer is random text; what is tested is the plumbing: loading, the answer on
stdout (streamed or not), the drawing and the GeoJSON files, and the errors.
"""

import json

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine

from geochat import cli
from geochat.modeling import tiny

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
    assert "prompt + " in err and "completion tokens" in err
    assert f"wrote the drawing to {drawing}" in err
    assert f"wrote GeoJSON (pixel coordinates) to {geojson}" in err
    with Image.open(drawing) as image:
        assert image.size == (WIDTH, HEIGHT)
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


def test_geotiff_gives_lon_lat_geojson(model_dir, tmp_path, capsys):
    path = tmp_path / "scene.tif"
    data = np.random.default_rng(0).integers(0, 4000, size=(4, HEIGHT, WIDTH)).astype(np.uint16)
    profile = {"driver": "GTiff", "width": WIDTH, "height": HEIGHT, "count": 4, "dtype": "uint16"}
    transform = Affine(0.5, 0, 500000.0, 0, -0.5, 4650000.0)
    with rasterio.open(path, "w", crs="EPSG:32633", transform=transform, **profile) as dataset:
        dataset.write(data)
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
