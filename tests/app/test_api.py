"""The REST API (app.api) as clients use it: a fake engine that follows the engine contract, a
tiny random model through the real engine, and a real uvicorn on 127.0.0.1 where sockets matter.
"""

import base64
import io
import json
import logging
import socket
import struct
import threading
import time
import zlib

import httpx
import numpy as np
import pytest
from fastapi.openapi.models import OpenAPI
from fastapi.testclient import TestClient
from PIL import Image
from pycocotools import mask as coco_mask
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from sam_fixtures import tiny_sam

from geochat.app.api import ApiSettings, create_app
from geochat.app.api_runtime import serve_in_background
from geochat.app.cli import api_main
from geochat.engine import GROUNDING_REGEX, BackendError, Reply, load_image
from geochat.georef import Georef, to_geojson, to_pixel_geojson
from geochat.grammar import Parsed, format_mask, parse
from geochat.imagery import ImagerySettings
from geochat.refine import Refiner
from geochat.sam_checkpoints import sam_processor_for

WIDTH, HEIGHT = 200, 100
SHIP = "<ref>the ship</ref><box>[[100,200,300,400]]</box>"  # pixels [20, 20, 60, 40]
SHIP_PX = [20.0, 20.0, 60.0, 40.0]
KEY = "s3cret-key"
UTM_33N = "EPSG:32633"
TIFF_ORIGIN = (500_000.0, 4_650_000.0)  # UTM 33N, about 15 E 42 N
TIFF_GSD = 10.0
TIFF_TRANSFORM = Affine(TIFF_GSD, 0.0, TIFF_ORIGIN[0], 0.0, -TIFF_GSD, TIFF_ORIGIN[1])


class FakeAssistant:
    """Follows the engine contract (geochat/engine): decodes with load_image, answers a script.

    Attributes:
        answer: The answer text, in grammar v1.
        error: Raised by every call when set.
        hold: When set, each call waits until this event is set (a slow model).
        delay_s: Seconds per streamed piece (a slow generation).
        calls: The arguments of each call.
        produced: Pieces generated, over all calls (a closed stream stops producing).
    """

    model_name = "fake-geochat"
    backend = "fake"
    imagery = ImagerySettings()
    family = None  # no backbone family: asked in geochat's wording

    def __init__(self, answer=SHIP, error=None, hold=None, delay_s=0.0):
        self.answer = answer
        self.error = error
        self.hold = hold
        self.delay_s = delay_s
        self.calls = []
        self.produced = 0

    def chat(
        self,
        image,
        messages,
        *,
        region=None,
        max_new_tokens=256,
        temperature=0.0,
        constrain=None,
        stream=False,
    ):
        loaded = None if image is None else load_image(image)
        self.calls.append(
            {
                "image": loaded,
                "messages": messages,
                "region": region,
                "max_new_tokens": max_new_tokens,
                "temperature": temperature,
                "constrain": constrain,
            }
        )
        if self.hold is not None:
            self.hold.wait(timeout=10)
        if self.error is not None:
            raise self.error
        reply = self._reply(loaded, messages)
        return self._stream(reply) if stream else reply

    def _reply(self, image, messages):
        if image is None:
            parsed, geojson = Parsed(text=self.answer), None
        else:
            parsed = parse(self.answer, image.width, image.height)
            geojson = None if image.georef is None else to_geojson(parsed.objects, image.georef)
        return Reply(
            text=self.answer,
            parsed=parsed,
            geojson=geojson,
            pixel_geojson=to_pixel_geojson(parsed.objects),
            image_size=None if image is None else (image.width, image.height),
            prompt_tokens=sum(len(message["content"].split()) for message in messages),
            completion_tokens=len(self.pieces()),
            timings={"total_s": 0.01},
        )

    def pieces(self):
        return [self.answer[start : start + 5] for start in range(0, len(self.answer), 5)]

    def _stream(self, reply):
        for piece in self.pieces():
            time.sleep(self.delay_s)
            self.produced += 1
            yield piece
        yield reply


def png_bytes(width=WIDTH, height=HEIGHT):
    pixels = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def geotiff_bytes(width=WIDTH, height=HEIGHT):
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, height, width), dtype=np.uint8)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": UTM_33N,
        "transform": TIFF_TRANSFORM,
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(pixels)
        return memory.read()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def bomb_png():
    """A valid 10000 x 10000 grey PNG (100 megapixels) of about 100 KB: a decompression bomb."""
    side = 10_000
    row = bytes(side + 1)  # filter byte 0, then black pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def data_url(data, media="image/png"):
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def image_file(data=None, name="scene.png", media="image/png"):
    return {"image": (name, png_bytes() if data is None else data, media)}


@pytest.fixture
def fake():
    return FakeAssistant()


def client_for(assistant, refiner=None, **settings):
    return TestClient(
        create_app(assistant, ApiSettings(**settings), refiner), raise_server_exceptions=False
    )


@pytest.fixture
def client(fake):
    with client_for(fake) as client:
        yield client


def error_of(response):
    error = response.json()["error"]
    assert error["code"] == response.status_code
    assert error["request_id"] == response.headers["x-request-id"]
    return error


# ---- happy paths ---------------------------------------------------------------------------


def test_healthz_answers_without_the_key(fake):
    with client_for(fake, api_key=KEY) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "model": "fake-geochat",
        "backend": "fake",
        "refiner": False,
        "running": 0,
        "queued": 0,
    }


def test_ground_returns_pixel_boxes_of_an_uploaded_png(client, fake):
    response = client.post("/v1/ground", files=image_file(), data={"expression": "the ship"})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == response.headers["x-request-id"]
    assert body["objects"] == [
        {
            "phrase": "the ship",
            "kind": "hbb",
            "hbb": SHIP_PX,
            "quad": [[20.0, 20.0], [60.0, 20.0], [60.0, 40.0], [20.0, 40.0]],
            "mask": None,
            "score": None,
            "refined": False,
        }
    ]
    imagery = body["image"].pop("imagery")
    assert body["image"] == {"width": WIDTH, "height": HEIGHT, "crs": None, "gsd_m": None}
    assert imagery["bands"] == [1, 2, 3] and imagery["stretch"] == "none"  # 8-bit kept
    assert body["geojson"] is None
    assert body["pixel_geojson"]["coordinate_space"] == "pixel"
    assert len(body["pixel_geojson"]["features"]) == 1
    assert body["text"] == SHIP and body["answer"] == "the ship"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + len(fake.pieces())
    (call,) = fake.calls
    assert call["messages"] == [{"role": "user", "content": "Locate the ship."}]
    assert call["constrain"] == "grounding"
    assert (call["image"].width, call["image"].height) == (WIDTH, HEIGHT)


def test_ground_accepts_json_with_a_data_url(client):
    body = {"image": data_url(png_bytes()), "expression": "the ship"}
    response = client.post("/v1/ground", json=body)
    assert response.status_code == 200
    assert response.json()["objects"][0]["hbb"] == SHIP_PX


def test_ground_asks_for_quads_and_returns_corners():
    fake = FakeAssistant("<ref>the pier</ref><quad>[[500,100,620,140,590,260,470,220]]</quad>")
    with client_for(fake) as client:
        response = client.post(
            "/v1/ground", files=image_file(), data={"expression": "the pier.", "kind": "quad"}
        )
    assert response.status_code == 200
    (obj,) = response.json()["objects"]
    assert obj["kind"] == "quad"
    assert obj["quad"] == [[100.0, 10.0], [124.0, 14.0], [118.0, 26.0], [94.0, 22.0]]
    prompt = fake.calls[0]["messages"][0]["content"]
    assert prompt == "Locate the pier with an oriented bounding box."


def test_ground_of_nothing_found_returns_no_objects():
    with client_for(FakeAssistant("<none>")) as client:
        response = client.post("/v1/ground", files=image_file(), data={"expression": "a plane"})
    assert response.status_code == 200
    assert response.json()["objects"] == []


def test_ground_on_a_geotiff_returns_lonlat_geojson(client):
    files = image_file(geotiff_bytes(), "scene.tif", "image/tiff")
    response = client.post("/v1/ground", files=files, data={"expression": "the ship"})
    assert response.status_code == 200
    body = response.json()
    assert body["image"]["crs"] == UTM_33N
    assert body["image"]["gsd_m"] == pytest.approx(TIFF_GSD, rel=0.01)
    (feature,) = body["geojson"]["features"]
    ring = np.array(feature["geometry"]["coordinates"][0])  # [5, 2] lon, lat
    georef = Georef(UTM_33N, tuple(TIFF_TRANSFORM)[:6])
    x0, y0, x1, y1 = SHIP_PX
    corners = georef.pixel_to_lonlat([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    assert 14.9 < ring[:, 0].min() < ring[:, 0].max() < 15.1
    assert 41.9 < ring[:, 1].min() < ring[:, 1].max() < 42.1
    np.testing.assert_allclose(np.sort(ring[:4], axis=0), np.sort(corners, axis=0), atol=1e-9)


def test_geotiff_bands_choose_the_rgb_of_the_image(client, fake):
    files = image_file(geotiff_bytes(), "scene.tif", "image/tiff")
    data = {"expression": "the ship", "bands": "3,2,1", "stretch": "minmax:0,4000"}
    response = client.post("/v1/ground", files=files, data=data)
    assert response.status_code == 200
    pixels = np.asarray(fake.calls[0]["image"].image)
    settings = ImagerySettings(bands=(3, 2, 1), stretch="minmax", limits=((0, 4000),))
    expected = np.asarray(load_image(geotiff_bytes(), imagery=settings).image)
    np.testing.assert_array_equal(pixels, expected)
    applied = response.json()["image"]["imagery"]
    assert applied["bands"] == [3, 2, 1] and applied["limits"] == [[0, 4000]] * 3


def test_the_model_imagery_settings_apply_unless_the_request_overrides_them(client, fake):
    fake.imagery = ImagerySettings(bands=(2, 2, 2))
    files = image_file(geotiff_bytes(), "scene.tif", "image/tiff")
    response = client.post("/v1/ground", files=files, data={"expression": "the ship"})
    assert response.json()["image"]["imagery"]["bands"] == [2, 2, 2]
    data = {"expression": "the ship", "preset": "auto"}
    response = client.post("/v1/ground", files=files, data=data)
    assert response.json()["image"]["imagery"]["bands"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("field", "value"), [("stretch", "gamma"), ("preset", "modis"), ("bands", "1,2")]
)
def test_bad_imagery_parameters_are_422(client, field, value):
    files = image_file(geotiff_bytes(), "scene.tif", "image/tiff")
    response = client.post("/v1/ground", files=files, data={"expression": "x", field: value})
    assert response.status_code == 422


def left_half_mask():
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[:, : WIDTH // 2] = True
    return mask


def test_segment_returns_full_resolution_masks_of_the_models_text_mask():
    fake = FakeAssistant(f"<ref>the water</ref>{format_mask(left_half_mask())}")
    with client_for(fake) as client:
        response = client.post("/v1/segment", files=image_file(), data={"query": "the water"})
    assert response.status_code == 200
    (obj,) = response.json()["objects"]
    assert obj["kind"] == "mask" and obj["refined"] is False and obj["score"] is None
    mask = coco_mask.decode({"size": obj["mask"]["size"], "counts": obj["mask"]["counts"]})
    np.testing.assert_array_equal(mask.astype(bool), left_half_mask())
    (feature,) = response.json()["pixel_geojson"]["features"]
    assert feature["geometry"]["type"] == "Polygon"
    assert fake.calls[0]["messages"][0]["content"] == "Segment the water."


def test_segment_fills_a_box_answer_into_a_mask(client):
    response = client.post("/v1/segment", files=image_file(), data={"query": "the ship"})
    assert response.status_code == 200
    (obj,) = response.json()["objects"]
    mask = coco_mask.decode({"size": obj["mask"]["size"], "counts": obj["mask"]["counts"]})
    assert mask.shape == (HEIGHT, WIDTH)
    assert mask.sum() == 40 * 20
    assert obj["kind"] == "hbb" and obj["hbb"] == SHIP_PX


def test_reasoning_segmentation_asks_the_question_for_a_mask(client, fake):
    data = {"query": "Where could a boat be launched?", "mode": "reasoning"}
    response = client.post("/v1/segment", files=image_file(), data=data)
    assert response.status_code == 200
    prompt = fake.calls[0]["messages"][0]["content"]
    assert prompt == "Where could a boat be launched? Answer with a segmentation mask."


def test_segment_on_a_geotiff_returns_lonlat_polygons(client):
    files = image_file(geotiff_bytes(), "scene.tif", "image/tiff")
    response = client.post("/v1/segment", files=files, data={"query": "the ship"})
    (feature,) = response.json()["geojson"]["features"]
    lon, lat = np.array(feature["geometry"]["coordinates"][0]).T
    assert 14.9 < lon.min() < lon.max() < 15.1 and 41.9 < lat.min() < lat.max() < 42.1


@pytest.fixture(scope="module")
def tiny_refiner():
    """The seeded tiny random SAM of the SAM tests."""
    sam = tiny_sam()
    return Refiner(sam, sam_processor_for(sam.config))


def test_segment_refines_masks_with_sam_when_the_server_has_it(fake, tiny_refiner):
    with client_for(fake, refiner=tiny_refiner) as client:
        assert client.get("/healthz").json()["refiner"] is True
        refined = client.post("/v1/segment", files=image_file(), data={"query": "the ship"})
        plain = client.post(
            "/v1/segment", files=image_file(), data={"query": "the ship", "refine": "false"}
        )
    (obj,) = refined.json()["objects"]
    assert obj["refined"] is True and isinstance(obj["score"], float)
    assert obj["mask"]["size"] == [HEIGHT, WIDTH]
    expected = tiny_refiner.refine(load_image(png_bytes()).image, [SHIP_PX])[0].mask
    assert obj["mask"]["counts"] == expected["counts"]
    assert plain.json()["objects"][0]["refined"] is False


def test_chat_completion_in_openai_format(client, fake):
    body = {
        "model": "fake-geochat",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_url(png_bytes())}},
                    {"type": "text", "text": "Where is the ship?"},
                ],
            }
        ],
        "max_tokens": 64,
        "region": [10, 10, 90, 60],
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "fake-geochat"
    (choice,) = completion["choices"]
    assert choice["message"] == {"role": "assistant", "content": SHIP}
    assert choice["finish_reason"] == "stop"
    assert completion["geochat"]["objects"][0]["hbb"] == SHIP_PX
    (call,) = fake.calls
    assert call["messages"] == [{"role": "user", "content": "Where is the ship?"}]
    assert call["region"] == [10.0, 10.0, 90.0, 60.0]
    assert call["max_new_tokens"] == 64
    assert call["image"].width == WIDTH


@pytest.mark.parametrize(
    "fields",
    [{"constrain": "grounding"}, {"structured_outputs": {"regex": GROUNDING_REGEX}}],
    ids=["geochat", "vllm"],
)
def test_chat_reads_both_spellings_of_the_grounding_constraint(client, fake, fields):
    response = client.post("/v1/chat/completions", json=chat_body(stream=False, **fields))
    assert response.status_code == 200, response.text
    assert fake.calls[-1]["constrain"] == "grounding"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"structured_outputs": {"regex": "[a-z]+"}}, "other constraints are not supported"),
        ({"structured_outputs": {"json": {"type": "object"}}}, "other constraints"),
        ({"constrain": "json"}, "constrain must be 'grounding' or null"),
    ],
    ids=["other-regex", "json", "unknown-name"],
)
def test_a_constraint_the_server_cannot_honour_is_a_400(client, fake, fields, words):
    response = client.post("/v1/chat/completions", json=chat_body(stream=False, **fields))
    assert response.status_code == 400
    assert words in error_of(response)["message"]
    assert fake.calls == []


def test_chat_without_an_image_and_with_history(client, fake):
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "What can you do?"},
    ]
    response = client.post("/v1/chat/completions", json={"messages": messages})
    assert response.status_code == 200
    assert response.json()["geochat"]["image"] is None
    assert fake.calls[0]["image"] is None
    assert fake.calls[0]["messages"] == messages


def sse_events(lines):
    """The ``data:`` payloads of a server-sent event stream, checking the framing."""
    lines = [line for line in lines if line]
    assert all(line.startswith("data: ") for line in lines), lines
    payloads = [line.removeprefix("data: ") for line in lines]
    assert payloads[-1] == "[DONE]"
    return [json.loads(payload) for payload in payloads[:-1]]


def chat_body(stream=True, **extra):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Where is the ship?"},
                {"type": "image_url", "image_url": {"url": data_url(png_bytes())}},
            ],
        }
    ]
    return {"messages": messages, "stream": stream, **extra}


def check_stream(chunks, answer):
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [
        chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"]
    ]
    assert "".join(deltas) == answer
    finish = [
        chunk for chunk in chunks if chunk["choices"] and "finish_reason" in chunk["choices"][0]
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in finish] == ["stop"]
    assert finish[0]["geochat"]["objects"][0]["hbb"] == SHIP_PX


def test_chat_streams_openai_chunks_then_done(client, fake):
    body = chat_body(stream_options={"include_usage": True})
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = sse_events(response.iter_lines())
    check_stream(chunks, SHIP)
    assert len(chunks) == 1 + len(fake.pieces()) + 2  # role, deltas, finish, usage
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == len(fake.pieces())


def test_chat_streams_over_a_real_socket(fake):
    app = create_app(fake, ApiSettings(api_key=KEY))
    with serve_in_background(app) as url:
        headers = {"Authorization": f"Bearer {KEY}"}
        with (
            httpx.Client(base_url=url, headers=headers, timeout=30) as http,
            http.stream("POST", "/v1/chat/completions", json=chat_body()) as response,
        ):
            assert response.status_code == 200
            chunks = sse_events(response.iter_lines())
    check_stream(chunks, SHIP)


def test_a_stream_that_fails_before_its_first_token_gets_an_http_error(client):
    body = chat_body()
    body["messages"][0]["content"][1]["image_url"]["url"] = data_url(b"\x89PNG\r\n\x1a\nnot")
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_image"


def test_the_openapi_schema_is_valid_and_lists_the_endpoints(client):
    schema = client.get("/openapi.json").json()
    OpenAPI.model_validate(schema)
    assert {"/healthz", "/v1/ground", "/v1/segment", "/v1/chat/completions"} <= set(schema["paths"])
    ground = schema["paths"]["/v1/ground"]["post"]
    content = ground["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert content["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert {"image", "expression"} <= set(content["multipart/form-data"]["schema"]["required"])
    assert {"200", "400", "401", "413", "415", "422", "500", "503", "504"} <= set(
        ground["responses"]
    )
    refs = set()

    def collect(node):
        if isinstance(node, dict):
            refs.update(value for key, value in node.items() if key == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    names = {f"#/components/schemas/{name}" for name in schema["components"]["schemas"]}
    assert refs and refs <= names


# ---- bad input -----------------------------------------------------------------------------


def test_a_corrupt_image_is_a_400(client):
    corrupt = png_bytes()[:200]
    response = client.post("/v1/ground", files=image_file(corrupt), data={"expression": "x"})
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_image"


def test_a_100_megapixel_png_is_refused_before_decoding(client, fake, bomb_png):
    start = time.perf_counter()
    response = client.post("/v1/ground", files=image_file(bomb_png), data={"expression": "x"})
    assert time.perf_counter() - start < 2.0
    assert response.status_code == 400
    assert "100,000,000 pixels" in error_of(response)["message"]  # the size, not decoded
    assert fake.calls == []


def test_a_body_over_the_limit_is_a_413(fake):
    with client_for(fake, max_body_bytes=20_000) as client:
        response = client.post(
            "/v1/ground", files=image_file(bytes(30_000)), data={"expression": "x"}
        )
    assert response.status_code == 413
    assert error_of(response)["type"] == "request_too_large"


def test_a_chunked_body_over_the_limit_is_a_413(fake):
    def chunks():
        for _ in range(10):
            yield b"x" * 10_000

    with client_for(fake, max_body_bytes=20_000) as client:
        response = client.post(
            "/v1/ground",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"content": b"the ship", "headers": {"content-type": "text/plain"}}, 415),
        (
            {"files": image_file(b"hello", "notes.txt", "text/plain"), "data": {"expression": "x"}},
            415,
        ),
        ({"json": {"image": data_url(b"hello", "text/plain"), "expression": "x"}}, 415),
        ({"json": {"image": "https://example.com/a.png", "expression": "x"}}, 400),
        ({"json": {"image": "data:image/png;base64,!!!!", "expression": "x"}}, 400),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"files": image_file(), "data": {"expression": "x", "kind": "circle"}}, 422),
        ({"files": image_file(), "data": {"expression": "x", "expresion": "y"}}, 422),
        ({"files": image_file(), "data": {"expression": "<image> x"}}, 400),
        ({"files": image_file(), "data": {"expression": "x", "max_new_tokens": "5000"}}, 400),
    ],
    ids=[
        "text-body",
        "text-upload",
        "text-data-url",
        "remote-url",
        "bad-base64",
        "bad-json",
        "unknown-kind",
        "unknown-field",
        "grammar-tags",
        "too-many-tokens",
    ],
)
def test_bad_ground_requests_get_clear_4xx(client, fake, request_kwargs, status):
    response = client.post("/v1/ground", **request_kwargs)
    assert response.status_code == status, response.text
    assert error_of(response)["message"]
    assert fake.calls == []


def test_missing_fields_are_named_in_a_422(client):
    no_expression = client.post("/v1/ground", files=image_file())
    assert no_expression.status_code == 422
    assert "form.expression" in error_of(no_expression)["message"]
    no_image = client.post("/v1/ground", json={"expression": "the ship"})
    assert no_image.status_code == 422
    assert "body.image" in error_of(no_image)["message"]
    misnamed = client.post("/v1/ground", files={"file": ("a.png", png_bytes(), "image/png")})
    assert misnamed.status_code == 422
    message = error_of(misnamed)["message"]
    assert "form.image" in message and "form.expression" in message and "form.file" in message
    no_messages = client.post("/v1/chat/completions", json={"model": "fake-geochat"})
    assert no_messages.status_code == 422
    assert "messages" in error_of(no_messages)["message"]


def test_a_huge_prompt_is_a_400(client, fake):
    huge = "the ship " * 20_000
    response = client.post("/v1/ground", files=image_file(), data={"expression": huge})
    assert response.status_code == 400
    assert "the limit is 8000" in error_of(response)["message"]
    chat = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": huge}]}
    )
    assert chat.status_code == 400
    assert fake.calls == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"messages": [{"role": "system", "content": "Be brief."}]}, 400, "end with a user"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": data_url(png_bytes())}}
                        ],
                    },
                ]
            },
            400,
            "first user message",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": data_url(png_bytes())}},
                            {"type": "image_url", "image_url": {"url": data_url(png_bytes())}},
                        ],
                    }
                ]
            },
            400,
            "one image",
        ),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "a"}]}, 404, "fake-geochat"),
        ({"messages": [{"role": "user", "content": "a"}], "n": 2}, 422, "n"),
        ({"messages": [{"role": "user", "content": "a"}], "region": [0, 0, 1, 1]}, 400, "image"),
        (chat_body(stream=False, region=[5, 5, 1, 1]), 400, "region"),
        (chat_body(stream=False, region=[[0, 0], [1, 1]]), 400, "region"),
        ({"messages": [{"role": "user", "content": "a"}], "max_tokens": 99_999}, 400, "limit"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 422, "messages"),
    ],
    ids=[
        "no-user",
        "late-image",
        "two-images",
        "other-model",
        "n",
        "region-without-image",
        "bad-region",
        "bad-quad",
        "max-tokens",
        "bad-part",
    ],
)
def test_bad_chat_requests_get_clear_4xx(client, fake, body, status, words):
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    assert words in error_of(response)["message"]
    assert fake.calls == []


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}]
)
def test_a_missing_or_wrong_api_key_is_a_401(fake, headers):
    with client_for(fake, api_key=KEY) as client:
        response = client.post(
            "/v1/ground", files=image_file(), data={"expression": "x"}, headers=headers
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert error_of(response)["type"] == "authentication_error"
    assert fake.calls == []


JSON_ENDPOINTS = ["/v1/ground", "/v1/segment", "/v1/chat/completions"]
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    ("content", "message"),
    [(b'{"messages": [', "not valid JSON"), (b'["a list"]', "must be an object")],
    ids=["invalid", "not-an-object"],
)
def test_bad_json_is_the_same_400_on_every_endpoint(client, fake, path, content, message):
    response = client.post(path, content=content, headers=JSON)
    assert response.status_code == 400
    assert error_of(response) == {
        "message": f"the {'body is' if 'valid' in message else 'JSON body'} {message}",
        "type": "invalid_request_error",
        "code": 400,
        "request_id": response.headers["x-request-id"],
    }
    assert fake.calls == []


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "content", [b"{not json", b"{}", b'{"messages": "wrong"}'], ids=["invalid", "empty", "bad"]
)
def test_the_api_key_is_checked_before_the_body_is_read(fake, path, content):
    with client_for(fake, api_key=KEY) as client:
        response = client.post(path, content=content, headers=JSON)
    assert response.status_code == 401
    assert error_of(response)["type"] == "authentication_error"


def test_chat_wants_json(client):
    response = client.post(
        "/v1/chat/completions", content=b"hi", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert "send application/json, not text/plain" in error_of(response)["message"]


def test_the_right_api_key_is_let_in(fake):
    with client_for(fake, api_key=KEY) as client:
        response = client.post(
            "/v1/ground",
            files=image_file(),
            data={"expression": "x"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert response.status_code == 200


def test_an_internal_error_is_a_generic_500_and_logged_with_its_request_id(caplog):
    fake = FakeAssistant(error=RuntimeError("CUDA out of memory at /secret/path"))
    with client_for(fake) as client, caplog.at_level(logging.ERROR, logger="geochat.api"):
        response = client.post("/v1/ground", files=image_file(), data={"expression": "x"})
    assert response.status_code == 500
    assert "secret" not in response.text and "CUDA" not in response.text
    request_id = error_of(response)["request_id"]
    (record,) = [record for record in caplog.records if request_id in record.getMessage()]
    assert "/secret/path" in str(record.exc_info[1])


def test_a_failing_model_server_is_a_502_without_its_address():
    fake = FakeAssistant(error=BackendError("cannot reach http://10.1.2.3:8000/v1"))
    with client_for(fake) as client:
        response = client.post("/v1/chat/completions", json=chat_body(stream=False))
    assert response.status_code == 502
    assert "10.1.2.3" not in response.text
    assert error_of(response)["type"] == "bad_gateway"


def test_the_model_list_names_the_served_model(client):
    response = client.get("/v1/models")
    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == ["fake-geochat"]


def test_a_client_request_id_is_kept(client):
    response = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"


# ---- concurrency and deadlines -------------------------------------------------------------


def test_slow_inference_is_a_504():
    hold = threading.Event()
    fake = FakeAssistant(hold=hold)
    try:
        with client_for(fake, inference_timeout_s=0.2) as client:
            response = client.post("/v1/ground", files=image_file(), data={"expression": "x"})
            assert response.status_code == 504
            assert error_of(response)["type"] == "timeout"
            assert client.get("/healthz").json()["running"] == 1  # the slot is still held
            hold.set()
    finally:
        hold.set()


def test_a_timed_out_generation_stops_at_the_next_token():
    fake = FakeAssistant(SHIP * 20, delay_s=0.02)  # 160 pieces: about 3 s
    with client_for(fake, inference_timeout_s=0.2) as client:
        response = client.post("/v1/ground", files=image_file(), data={"expression": "x"})
        assert response.status_code == 504
        wait_for(lambda: client.get("/healthz").json()["running"] == 0, timeout_s=1.0)
    assert fake.produced < len(fake.pieces()) // 2


def test_a_client_leaving_a_stream_stops_the_generation():
    fake = FakeAssistant(SHIP * 20, delay_s=0.02)
    app = create_app(fake, ApiSettings())
    with serve_in_background(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json=chat_body()) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
        wait_for(lambda: http.get("/healthz").json()["running"] == 0, timeout_s=2.0)
    assert fake.produced < len(fake.pieces()) // 2


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_requests_beyond_the_slots_queue_and_beyond_the_queue_get_503():
    hold = threading.Event()
    fake = FakeAssistant(hold=hold)
    app = create_app(fake, ApiSettings(max_concurrency=1, max_queue=1, queue_timeout_s=10))
    results = {}

    def ground(name, http):
        response = http.post("/v1/ground", files=image_file(), data={"expression": "x"})
        results[name] = response

    try:
        with serve_in_background(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            first = threading.Thread(target=ground, args=("first", http))
            first.start()
            wait_for(lambda: http.get("/healthz").json()["running"] == 1)
            queued = threading.Thread(target=ground, args=("queued", http))
            queued.start()
            wait_for(lambda: http.get("/healthz").json()["queued"] == 1)
            refused = http.post("/v1/ground", files=image_file(), data={"expression": "x"})
            hold.set()
            first.join()
            queued.join()
    finally:
        hold.set()
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "server_busy"
    assert results["first"].status_code == 200
    assert results["queued"].status_code == 200
    assert len(fake.calls) == 2


def _ground_at_once(url, count):
    """Sends `count` grounding requests at once; returns (response, sent, answered) of each."""
    start = threading.Barrier(count)
    results = [None] * count

    def ground(index):
        with httpx.Client(base_url=url, timeout=60) as http:
            start.wait()
            sent = time.monotonic()
            response = http.post("/v1/ground", files=image_file(), data={"expression": "x"})
            results[index] = (response, sent, time.monotonic())

    threads = [threading.Thread(target=ground, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_small_teams_burst_is_queued_not_refused_with_the_defaults():
    fake = FakeAssistant(delay_s=0.002)
    with serve_in_background(create_app(fake, ApiSettings())) as url:
        results = _ground_at_once(url, 32)
    assert [response.status_code for response, *_ in results] == [200] * 32
    assert len(fake.calls) == 32


def test_retry_after_is_the_time_the_queue_takes_to_drain():
    fake = FakeAssistant(delay_s=0.04)  # 10 pieces: about 0.4 s a call
    settings = ApiSettings(max_concurrency=1, max_queue=3, queue_timeout_s=30)
    with serve_in_background(create_app(fake, settings)) as url:
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(2):  # the server measures how long a call takes
                http.post("/v1/ground", files=image_file(), data={"expression": "x"})
        results = _ground_at_once(url, 12)
    accepted = [answered for response, _, answered in results if response.status_code == 200]
    refused = [(response, sent) for response, sent, _ in results if response.status_code == 503]
    assert len(accepted) == 4 and len(refused) == 8  # one running, three queued
    drained = max(accepted)
    for response, sent in refused:
        retry_after = int(response.headers["retry-after"])
        assert drained - sent - 1 <= retry_after <= drained - sent + 1
        assert f"retry in about {retry_after} s" in response.json()["error"]["message"]


def test_a_wait_longer_than_the_queue_timeout_is_a_503():
    hold = threading.Event()
    fake = FakeAssistant(hold=hold)
    app = create_app(fake, ApiSettings(max_concurrency=1, queue_timeout_s=0.2))
    try:
        with serve_in_background(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            first = threading.Thread(
                target=http.post,
                args=("/v1/ground",),
                kwargs={"files": image_file(), "data": {"expression": "x"}},
            )
            first.start()
            wait_for(lambda: http.get("/healthz").json()["running"] == 1)
            response = http.post("/v1/ground", files=image_file(), data={"expression": "x"})
            hold.set()
            first.join()
    finally:
        hold.set()
    assert response.status_code == 503
    assert "0.2 s" in response.json()["error"]["message"]


# ---- the command ---------------------------------------------------------------------------


def test_the_vllm_backend_needs_a_url(capsys):
    with pytest.raises(SystemExit) as exit_info:
        api_main(["--backend", "vllm"])
    assert exit_info.value.code == 2
    assert "--vllm-url" in capsys.readouterr().err


def test_a_missing_model_is_reported_not_raised(tmp_path, capsys):
    assert api_main(["--model", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err


# ---- a real (tiny random) model through the engine ------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from geochat.modeling import tiny

    model, processor = tiny()
    folder = tmp_path_factory.mktemp("tiny-geochat")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_assistant(tiny_folder):
    from geochat.engine import load

    return load(tiny_folder)


def test_the_command_serves_a_checkpoint_with_its_flags(tiny_folder, serves, monkeypatch, capsys):
    monkeypatch.setenv("GEOCHAT_API_KEY", KEY)
    argv = ["--model", str(tiny_folder), "--port", "0", "--max-megapixels", "0.001"]
    assert api_main(argv) == 0
    host, port = serves["address"]
    assert host == "127.0.0.1" and port > 0  # bound before serving
    assert f"on http://127.0.0.1:{port} " in capsys.readouterr().out
    with TestClient(serves["app"]) as client:
        request = {"files": image_file(), "data": {"expression": "x"}}
        assert client.post("/v1/ground", **request).status_code == 401
        headers = {"Authorization": f"Bearer {KEY}"}
        too_big = client.post("/v1/ground", headers=headers, **request)
    assert too_big.status_code == 400  # 200 x 100 pixels > 0.001 megapixels
    assert "pixels" in error_of(too_big)["message"]


def test_answers_name_the_model_never_its_server_path(tiny_folder, serves):
    assert api_main(["--model", str(tiny_folder), "--port", "0"]) == 0
    with TestClient(serves["app"]) as client:
        health = client.get("/healthz")
        models = client.get("/v1/models")
        other = client.post("/v1/chat/completions", json=chat_body(model="gpt-4o"))
    assert health.json()["model"] == tiny_folder.name
    assert [card["id"] for card in models.json()["data"]] == [tiny_folder.name]
    assert other.status_code == 404
    assert repr(tiny_folder.name) in error_of(other)["message"]
    for response in (health, models, other):
        assert str(tiny_folder.parent) not in response.text


def test_a_relative_model_folder_is_named_by_its_own_name(tiny_folder, monkeypatch):
    from geochat.engine import load

    monkeypatch.chdir(tiny_folder)
    assert load(".").model_name == tiny_folder.name


def test_a_taken_port_is_reported_before_the_model_loads(tmp_path, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = api_main(["--model", str(tmp_path / "not-loaded"), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port" in err
    assert "not-loaded" not in err  # the port was checked first


def test_a_tiny_model_grounds_and_streams(tiny_assistant):
    with client_for(tiny_assistant) as client:
        files = image_file(geotiff_bytes(), "scene.tif", "image/tiff")
        data = {"expression": "the ship", "max_new_tokens": "8"}
        ground = client.post("/v1/ground", files=files, data=data)
        complete = client.post("/v1/chat/completions", json=chat_body(stream=False, max_tokens=8))
        body = chat_body(max_tokens=8, stream_options={"include_usage": True})
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            chunks = sse_events(response.iter_lines())
    assert ground.status_code == 200, ground.text
    result = ground.json()
    assert result["model"] == tiny_assistant.model_name
    assert result["image"]["crs"] == UTM_33N
    assert 0 < result["usage"]["completion_tokens"] <= 8
    assert all(obj["kind"] in {"hbb", "quad", "mask"} for obj in result["objects"])
    # Greedy decoding: the stream spells out the same answer as the one-piece completion.
    (choice,) = complete.json()["choices"]
    streamed = [chunk["choices"][0] for chunk in chunks if chunk["choices"]]
    assert (
        "".join(item["delta"].get("content", "") for item in streamed)
        == choice["message"]["content"]
    )
    assert streamed[-1]["finish_reason"] == choice["finish_reason"]
    assert chunks[-1]["usage"] == complete.json()["usage"]
