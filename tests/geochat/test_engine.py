"""Tests of geochat.engine: geometry back in original pixels, streaming, GeoJSON, both backends.

The transformers tests run a tiny random model whose answer is forced through the
`logits_processor` hook; the vLLM tests talk to a fake OpenAI-compatible server on 127.0.0.1
that records each request and answers with canned text.
"""

import base64
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import rasterio
import regex
import shapely.geometry
import torch
from PIL import Image
from rasterio.transform import Affine
from sam_fixtures import save, tiny_sam
from transformers import LogitsProcessor

import geochat.engine
from geochat.engine import (
    GROUNDING_REGEX,
    BackendError,
    ImageError,
    Reply,
    load,
    load_image,
)
from geochat.geometry import hbb_to_quad, mask_to_rle
from geochat.grammar import GrammarError, format, format_hbbs, format_mask, format_quads, format_ref
from geochat.imagery import ImagerySettings
from geochat.modeling import tiny
from geochat.refine import Refiner
from geochat.sam_checkpoints import SamCheckpointError

POOL = "<ref>the pool</ref><box>[[100,200,300,400]]</box>"
QUESTION = [{"role": "user", "content": "Where is the pool?"}]
SERVED = "geochat-test"


class ForceText(LogitsProcessor):
    """Makes the model write `text` and then end its turn.

    With `bonus` None every other token is forbidden; otherwise the wanted token only gets
    `bonus` added to its score (a constraint applied after this can still overrule it). With
    `end=False` the text repeats and the turn never ends. Counts its calls.
    """

    def __init__(self, tokenizer, text, end_id, bonus=None, end=True):
        self.ids = tokenizer.encode(text, add_special_tokens=False)
        self.end_id = end_id
        self.bonus = bonus
        self.end = end
        self.prompt_length = None
        self.calls = 0
        self.prompt = None

    def __call__(self, input_ids, scores):
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
            self.prompt = input_ids[0].tolist()
        self.calls += 1
        step = input_ids.shape[1] - self.prompt_length
        if self.end:
            wanted = self.ids[step] if step < len(self.ids) else self.end_id
        else:
            wanted = self.ids[step % len(self.ids)]
        if self.bonus is None:
            forced = torch.full_like(scores, float("-inf"))
            forced[:, wanted] = 0.0
            return forced
        scores = scores.clone()
        scores[:, wanted] += self.bonus
        return scores


class Failing(LogitsProcessor):
    def __call__(self, input_ids, scores):
        raise RuntimeError("the model broke")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-geochat")
    model, processor = tiny(max_tiles_per_side=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def assistant(model_dir):
    return load(model_dir)


def force(assistant, text=POOL, **options):
    end_id = assistant.model.generation_config.eos_token_id
    return ForceText(assistant.processor.tokenizer, text, end_id, **options)


def random_image(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def prompt_text(assistant, forcer):
    return assistant.processor.tokenizer.decode(forcer.prompt)


# Geometry in original pixels


@pytest.mark.parametrize(
    ("width", "height", "tiles_per_side", "tiles"),
    [(300, 120, 1, 1), (700, 400, 3, 3 * 2 + 1)],
    ids=["global-view-only", "tiled"],
)
def test_box_maps_back_to_original_pixels(model_dir, width, height, tiles_per_side, tiles):
    assistant = load(model_dir, max_tiles_per_side=tiles_per_side)

    reply = assistant.chat(
        random_image(width, height), QUESTION, logits_processor=[force(assistant)]
    )

    assert reply.text == POOL
    assert reply.image_size == (width, height)
    (pool,) = reply.parsed.objects
    assert pool.phrase == "the pool"
    expected = [0.1 * width, 0.2 * height, 0.3 * width, 0.4 * height]
    assert pool.hbb == pytest.approx(expected, abs=max(width, height) / 2000)
    # The image really went in as `tiles` tiles of image_seq_len tokens each.
    image_tokens = tiles * assistant.model.config.image_seq_len
    assert image_tokens < reply.prompt_tokens < image_tokens + 60
    assert reply.geojson is None
    assert reply.pixel_geojson["coordinate_space"] == "pixel"
    assert len(reply.pixel_geojson["features"]) == 1


def write_geotiff(path, data, transform):
    """Writes ``[3, H, W]`` bands as a GeoTIFF in UTM 33N."""
    _, height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype=data.dtype.name,
        crs="EPSG:32633",
        transform=transform,
    ) as dataset:
        dataset.write(data)


def test_geojson_of_a_geotiff_is_in_lon_lat(assistant, tmp_path):
    path = tmp_path / "scene.tif"
    transform = Affine(0.5, 0, 500000.0, 0, -0.5, 4650000.0)
    data = np.random.default_rng(0).integers(0, 4000, size=(3, 120, 300)).astype(np.uint16)
    write_geotiff(path, data, transform)
    image = load_image(path)

    reply = assistant.chat(image, QUESTION, logits_processor=[force(assistant)])

    (feature,) = reply.geojson["features"]
    assert feature["properties"]["phrase"] == "the pool"
    ring = np.array(feature["geometry"]["coordinates"][0])  # closed ring, lon/lat
    corners = image.georef.pixel_to_lonlat(hbb_to_quad(reply.parsed.objects[0].hbb))
    assert sorted(map(tuple, ring[:-1].round(9))) == sorted(map(tuple, corners.round(9)))
    assert corners[:, 0] == pytest.approx(15.0, abs=0.01)  # on the zone's central meridian
    assert reply.pixel_geojson["coordinate_space"] == "pixel"


# Streaming


def test_streamed_deltas_make_up_the_reply(assistant):
    image = random_image(300, 120)
    forcer = force(assistant)

    items = list(assistant.chat(image, QUESTION, stream=True, logits_processor=[forcer]))

    *deltas, reply = items
    assert isinstance(reply, Reply)
    assert all(isinstance(delta, str) and delta for delta in deltas)
    assert len(deltas) >= 2  # "<ref>the " comes before the rest: text arrives as it is made
    assert "".join(deltas) == reply.text == POOL
    assert reply.completion_tokens == len(forcer.ids) + 1  # the end-of-turn token too
    assert reply.prompt_tokens == len(forcer.prompt)
    assert set(reply.timings) == {"preprocess_s", "prefill_s", "total_s", "tokens_per_s"}
    assert 0 < reply.timings["prefill_s"] < reply.timings["total_s"]
    assert reply.parsed.objects[0].hbb == pytest.approx([30, 24, 90, 48], abs=0.1)


def test_closing_a_stream_stops_the_generation(assistant):
    forcer = force(assistant, "the pool ", end=False)
    stream = assistant.chat(
        random_image(64, 64), QUESTION, stream=True, max_new_tokens=200, logits_processor=[forcer]
    )

    first = next(stream)
    stream.close()

    assert first.startswith("the")
    assert forcer.calls < 200


def test_a_failing_generation_raises_in_the_caller(assistant):
    with pytest.raises(RuntimeError, match="the model broke"):
        assistant.chat(random_image(64, 64), QUESTION, logits_processor=[Failing()])
    with pytest.raises(RuntimeError, match="the model broke"):
        list(
            assistant.chat(
                random_image(64, 64), QUESTION, stream=True, logits_processor=[Failing()]
            )
        )


# The prompt


def test_image_and_region_are_written_into_the_prompt(assistant):
    forcer = force(assistant)
    messages = [
        {"role": "user", "content": "Describe the scene."},
        {"role": "assistant", "content": "Houses and a pool."},
        {"role": "user", "content": "What is here?"},
    ]

    assistant.chat(
        random_image(300, 120), messages, region=[30, 12, 90, 48], logits_processor=[forcer]
    )

    prompt = prompt_text(assistant, forcer)
    assert prompt.count("<global-img>") == 1
    assert "User:<fake_token_around_image>" in prompt  # the image heads the first user turn
    assert "What is here? <box>[[100,100,300,400]]</box><end_of_utterance>" in prompt


def test_quad_region_is_written_as_a_quad(assistant):
    forcer = force(assistant)
    quad = [[150, 12], [270, 60], [150, 108], [30, 60]]

    assistant.chat(random_image(300, 120), QUESTION, region=quad, logits_processor=[forcer])

    assert "<quad>[[500,100,900,500,500,900,100,500]]</quad>" in prompt_text(assistant, forcer)


def test_text_only_chat_reads_no_geometry(assistant):
    forcer = force(assistant)
    reply = assistant.chat(None, QUESTION, logits_processor=[forcer])
    assert reply.text == POOL
    assert reply.parsed.objects == []
    assert reply.image_size is None
    assert "<global-img>" not in prompt_text(assistant, forcer)


@pytest.mark.parametrize(
    ("image", "messages", "options", "error", "match"),
    [
        (b"not an image", QUESTION, {}, ImageError, "not an image format"),
        (None, QUESTION, {"region": [0, 0, 5, 5]}, ValueError, "a region needs an image"),
        ("image", QUESTION, {"region": [1, 2, 3]}, GrammarError, "a region is a box"),
        ("image", [], {}, ValueError, "messages is empty"),
        ("image", [{"role": "robot", "content": "hi"}], {}, ValueError, "needs a role"),
        ("image", [{"role": "user", "content": 3}], {}, ValueError, "string content"),
        ("image", [*QUESTION, {"role": "assistant", "content": "ok"}], {}, ValueError, "last"),
        (None, [{"role": "user", "content": "<image>\nhi"}], {}, ValueError, "places"),
        ("image", QUESTION, {"constrain": "json"}, ValueError, "constrain"),
        ("image", QUESTION, {"max_new_tokens": 0}, ValueError, "max_new_tokens"),
        ("image", QUESTION, {"temperature": -1.0}, ValueError, "temperature"),
    ],
)
def test_bad_input_is_refused_at_the_call(assistant, image, messages, options, error, match):
    image = random_image(64, 64) if image == "image" else image
    with pytest.raises(error, match=match):
        assistant.chat(image, messages, stream=True, **options)  # before any iteration


def test_sampling_answers(assistant):
    torch.manual_seed(0)
    reply = assistant.chat(random_image(64, 64), QUESTION, temperature=0.8, max_new_tokens=5)
    assert 1 <= reply.completion_tokens <= 5


# Constrained grounding


@pytest.mark.parametrize(
    "answer",
    [
        POOL,
        "<none>",
        "No. <none>",
        "<ref>the field</ref><none>",
        "There are " + format_ref("two ships", "<box>[[0,0,1000,1000],[5,6,7,8]]</box>") + ".",
        format_quads([[10, 10], [50, 20], [40, 60], [5, 40]], 100, 100),
        format_mask(np.eye(64, dtype=bool), 16),
        format_mask(np.ones((64, 64), dtype=bool), 32),
        format_hbbs([[1, 2, 3, 4]], 10, 10) + " and " + format_ref("a pier", "<none>"),
    ],
)
def test_grounding_regex_matches_grammar_answers(answer):
    assert re.fullmatch(GROUNDING_REGEX, answer)


def test_grounding_regex_matches_what_the_grammar_writes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        width, height = (int(v) for v in rng.integers(10, 5000, size=2))
        x0, x1 = np.sort(rng.uniform(0, width, size=2))
        y0, y1 = np.sort(rng.uniform(0, height, size=2))
        mask = np.zeros((height // 10 + 1, width // 10 + 1), dtype=bool)
        mask[: mask.shape[0] // 2, : mask.shape[1] // 3] = True
        objects = [
            {"kind": "hbb", "phrase": "a house", "hbb": [x0, y0, x1, y1]},
            {"kind": "quad", "phrase": None, "quad": hbb_to_quad([x0, y0, x1, y1])},
            {"kind": "mask", "phrase": "grass", "mask": mask_to_rle(mask)},
        ]
        answer = format(objects, mask.shape[1], mask.shape[0])
        assert re.fullmatch(GROUNDING_REGEX, f"Here: {answer}."), answer


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "A pool.",
        "<ref>the pool</ref>",
        "<box>[[100,200,300]]</box>",
        "<box>[[100,200,300,1001]]</box>",
        "<box>[[100,200,300,0400]]</box>",
        "<box>[100,200,300,400]</box>",
        "<box>[[100, 200, 300, 400]]</box>",
        "<quad>[[1,2,3,4,5,6,7,8,9]]</quad>",
        "<seg>16|0*16;0*16</seg>",
        "<seg>8|" + ";".join(["0*8"] * 8) + "</seg>",
        "<ref>a <b></ref><none>",
        "<none",
    ],
)
def test_grounding_regex_refuses_what_is_not_grammar(answer):
    assert re.fullmatch(GROUNDING_REGEX, answer) is None


def test_grounding_constraint_keeps_the_answer_in_the_grammar(assistant):
    image = random_image(64, 64)
    bad = "<box>[[2000,1,2,3]]</box>"

    free = assistant.chat(image, QUESTION, logits_processor=[force(assistant, bad, bonus=1e4)])
    constrained = assistant.chat(
        image,
        QUESTION,
        constrain="grounding",
        max_new_tokens=40,
        logits_processor=[force(assistant, bad, bonus=1e4)],
    )

    assert free.text == bad  # the control: unconstrained, the model writes the bad box
    assert constrained.text.startswith("<box>[[200")
    assert "2000" not in constrained.text
    assert regex.fullmatch(GROUNDING_REGEX, constrained.text, partial=True)
    if constrained.completion_tokens < 40:  # it ended by itself: a whole match
        assert re.fullmatch(GROUNDING_REGEX, constrained.text)


# Loading


def test_missing_bundled_model_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(geochat.engine, "DEFAULT_MODEL", tmp_path / "geochat-nano")
    with pytest.raises(FileNotFoundError, match=r"geochat-nano.*--model"):
        load()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "no/such/folder"}, FileNotFoundError, "no model folder"),
        ({"backend": "onnx"}, ValueError, "unknown backend"),
        ({"backend": "vllm", "dtype": "bfloat16"}, ValueError, "server's settings"),
        ({"vllm_url": "http://127.0.0.1:1/v1"}, ValueError, "vllm_url is for"),
        ({"max_tiles_per_side": 7}, ValueError, "max_tiles_per_side"),
        ({"dtype": "float99"}, ValueError, "unknown dtype"),
    ],
)
def test_bad_load_arguments_are_refused(model_dir, kwargs, error, match):
    kwargs = {"model": model_dir, **kwargs}
    with pytest.raises(error, match=match):
        load(**kwargs)


# SAM refinement (load(..., sam=PATH))

SEGMENT = [{"role": "user", "content": "Segment the pool."}]


def coarse_pool_answer():
    """A <seg> answer: a 16-grid text-mask of a block in a 300 x 120 image."""
    mask = np.zeros((120, 300), dtype=bool)
    mask[30:90, 75:225] = True
    return format_ref("the pool", format_mask(mask, 16))


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    return save(tiny_sam(), tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture(scope="module")
def refined_assistant(model_dir, sam_dir):
    return load(model_dir, sam=sam_dir)


def test_a_seg_answer_comes_back_with_sams_mask(refined_assistant, sam_dir):
    image = random_image(300, 120)
    answer = coarse_pool_answer()
    forcer = force(refined_assistant, answer)

    reply = refined_assistant.chat(image, QUESTION, logits_processor=[forcer])

    assert reply.text == answer  # what the model wrote is kept
    (pool,) = reply.parsed.objects
    assert pool.kind == "mask" and pool.grid == 16
    (sam,) = reply.refined
    (expected,) = Refiner.from_pretrained(sam_dir).refine(image, [pool])
    assert sam.mask == expected.mask and sam.score == pytest.approx(expected.score)
    assert sam.mask["size"] == [120, 300] and sam.mask != pool.mask
    (refined,) = reply.refined_objects()
    assert (refined.kind, refined.phrase, refined.mask) == ("mask", "the pool", sam.mask)
    assert reply.refined_geojson is None  # a PNG has no georeference
    assert reply.to_geojson()["coordinate_space"] == "pixel"
    assert reply.timings["refine_s"] > 0


@pytest.mark.parametrize(
    ("question", "refined"),
    [(QUESTION, False), (SEGMENT, True)],
    ids=["box-question", "mask-question"],
)
def test_a_box_is_refined_only_when_the_question_asks_for_a_mask(
    refined_assistant, question, refined
):
    reply = refined_assistant.chat(
        random_image(300, 120), question, logits_processor=[force(refined_assistant)]
    )

    assert reply.text == POOL
    assert [sam is not None for sam in reply.refined] == ([True] if refined else [])
    assert reply.refined_objects()[0].kind == ("mask" if refined else "hbb")


def test_batched_and_streamed_replies_are_refined_alike(refined_assistant):
    image = random_image(300, 120)
    answer = coarse_pool_answer()
    single = refined_assistant.chat(
        image, QUESTION, logits_processor=[force(refined_assistant, answer)]
    )
    (batched,) = refined_assistant.chat_batch(
        [(image, QUESTION)], logits_processor=[force(refined_assistant, answer)]
    )
    *_, streamed = refined_assistant.chat(
        image, QUESTION, stream=True, logits_processor=[force(refined_assistant, answer)]
    )

    assert batched.refined == single.refined == streamed.refined
    assert len(single.refined) == 1


def test_refined_masks_of_a_geotiff_are_in_lon_lat(refined_assistant, tmp_path):
    path = tmp_path / "scene.tif"
    transform = Affine(0.5, 0, 500000.0, 0, -0.5, 4650000.0)
    write_geotiff(path, np.asarray(random_image(300, 120)).transpose(2, 0, 1), transform)
    forcer = force(refined_assistant, coarse_pool_answer())

    reply = refined_assistant.chat(path, QUESTION, logits_processor=[forcer])

    features = reply.refined_geojson["features"]
    assert features and all(f["properties"]["phrase"] == "the pool" for f in features)
    for feature in features:  # Polygon or MultiPolygon in lon/lat
        lon0, lat0, lon1, lat1 = shapely.geometry.shape(feature["geometry"]).bounds
        assert 14.99 < lon0 <= lon1 < 15.01 and 41.99 < lat0 <= lat1 < 42.01
    assert reply.to_geojson() is reply.refined_geojson
    assert reply.geojson != reply.refined_geojson  # the model's own geometry is kept beside


def test_without_sam_nothing_is_refined(assistant):
    reply = assistant.chat(
        random_image(300, 120),
        QUESTION,
        logits_processor=[force(assistant, coarse_pool_answer())],
    )

    assert assistant.refiner is None
    assert reply.refined == [] and reply.refined_geojson is None
    assert "refine_s" not in reply.timings
    assert reply.refined_objects() == reply.parsed.objects
    assert reply.to_geojson() is reply.pixel_geojson


def test_a_missing_or_broken_sam_checkpoint_is_refused(model_dir, tmp_path):
    broken = tmp_path / "sam.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(FileNotFoundError, match="no SAM checkpoint"):
        load(model_dir, sam=tmp_path / "missing")
    with pytest.raises(SamCheckpointError, match="cannot read"):
        load(model_dir, sam=broken)


# The vLLM backend against a fake OpenAI-compatible server


class FakeServer:
    """Serves `/v1/models` and `/v1/chat/completions` with canned answers; records requests."""

    def __init__(self, pieces):
        self.pieces = pieces
        self.requests = []
        self.error = None
        self.usage = {"prompt_tokens": 77, "completion_tokens": 12, "total_tokens": 89}

    def handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, payload, content_type="application/json"):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    self.send(200, {"object": "list", "data": [{"id": SERVED}]})
                else:
                    self.send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                if fake.error is not None:
                    self.send(400, {"error": {"message": fake.error, "code": 400}})
                elif body.get("stream"):
                    self.send(200, fake.events(), "text/event-stream")
                else:
                    message = {"role": "assistant", "content": "".join(fake.pieces)}
                    answer = {"choices": [{"index": 0, "message": message}], "usage": fake.usage}
                    self.send(200, answer)

        return Handler

    def events(self):
        chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        chunks += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in self.pieces]
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        chunks.append({"choices": [], "usage": self.usage})
        lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
        return "".join(lines).encode()


@pytest.fixture
def server():
    fake = FakeServer(["<ref>the ", "pool</ref><box>[[100,", "200,300,400]]</box>"])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_port}"
    yield fake
    httpd.shutdown()
    httpd.server_close()


def sent_image(body):
    part = body["messages"][0]["content"][0]
    assert part["type"] == "image_url"
    header, data = part["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_vllm_chat_sends_the_image_region_and_constraint(server):
    assistant = load(backend="vllm", vllm_url=server.url)  # no /v1: added; no model: the first
    image = random_image(300, 120)

    reply = assistant.chat(
        image, QUESTION, region=[30, 12, 90, 48], constrain="grounding", max_new_tokens=50
    )

    assert assistant.model_name == SERVED
    ((path, body),) = server.requests
    assert path == "/v1/chat/completions"
    assert body["model"] == SERVED
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.0
    assert body["stream"] is False
    assert body["structured_outputs"] == {"regex": GROUNDING_REGEX}
    assert "guided_regex" not in body
    np.testing.assert_array_equal(np.asarray(sent_image(body)), np.asarray(image))
    # Regression: no newline after the image, vLLM's string content format adds its own.
    assert body["messages"][0]["content"][1] == {
        "type": "text",
        "text": "Where is the pool? <box>[[100,100,300,400]]</box>",
    }
    assert reply.text == POOL
    assert reply.parsed.objects[0].hbb == pytest.approx([30, 24, 90, 48])
    assert (reply.prompt_tokens, reply.completion_tokens) == (77, 12)


def test_vllm_streaming_yields_the_server_deltas(server):
    assistant = load(SERVED, backend="vllm", vllm_url=server.url + "/v1")

    *deltas, reply = assistant.chat(random_image(300, 120), QUESTION, stream=True)

    assert deltas == server.pieces
    assert reply.text == "".join(deltas) == POOL
    assert reply.parsed.objects[0].hbb == pytest.approx([30, 24, 90, 48])
    assert (reply.prompt_tokens, reply.completion_tokens) == (77, 12)
    assert "prefill_s" in reply.timings
    ((_, body),) = server.requests
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert "structured_outputs" not in body


def test_vllm_multi_turn_keeps_the_image_in_the_first_user_turn(server):
    assistant = load(backend="vllm", vllm_url=server.url)
    messages = [
        {"role": "system", "content": "You are a remote-sensing assistant."},
        {"role": "user", "content": "Describe the scene."},
        {"role": "assistant", "content": "Houses."},
        {"role": "user", "content": "Where is the pool?"},
    ]

    assistant.chat(random_image(40, 30), messages)

    sent = server.requests[0][1]["messages"]
    assert sent[0] == messages[0]
    assert [part["type"] for part in sent[1]["content"]] == ["image_url", "text"]
    assert sent[2:] == messages[2:]


def test_vllm_server_errors_carry_the_server_message(server):
    assistant = load(backend="vllm", vllm_url=server.url)
    server.error = "the prompt is too long"
    with pytest.raises(BackendError, match=r"400.*the prompt is too long"):
        assistant.chat(random_image(40, 30), QUESTION)
    with pytest.raises(BackendError, match="the prompt is too long"):
        list(assistant.chat(random_image(40, 30), QUESTION, stream=True))


def test_vllm_refuses_unknown_models_and_logits_processors(server):
    with pytest.raises(BackendError, match="serves \\['geochat-test'\\], not 'other'"):
        load("other", backend="vllm", vllm_url=server.url)
    assistant = load(backend="vllm", vllm_url=server.url)
    with pytest.raises(ValueError, match="logits processors"):
        assistant.chat(random_image(40, 30), QUESTION, logits_processor=[Failing()])


def test_unreachable_vllm_server_is_a_backend_error():
    with pytest.raises(BackendError, match="cannot reach"):
        load(backend="vllm", vllm_url="http://127.0.0.1:9/v1")


def test_the_imagery_settings_of_a_checkpoint_are_applied_by_default(tmp_path):
    """Training writes its build's imagery settings into the processor config; the engine
    reads every image with them."""
    trained = ImagerySettings(bands=(3, 2, 1), stretch="percentile", percentiles=(1, 99))
    model, processor = tiny(max_tiles_per_side=1)
    processor.imagery = trained.to_dict()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assistant = load(tmp_path)
    assert assistant.imagery == trained
    path = tmp_path / "bgr.tif"
    bands = np.random.default_rng(0).integers(0, 5000, size=(3, 20, 30)).astype(np.uint16)
    with rasterio.open(
        path, "w", driver="GTiff", width=30, height=20, count=3, dtype="uint16"
    ) as dataset:
        dataset.write(bands)
    seen = []
    build_inputs = assistant.processor.build_chat_inputs
    assistant.processor.build_chat_inputs = lambda image, messages: (
        seen.append(np.asarray(image)) or build_inputs(image, messages)
    )
    assistant.chat(path, [{"role": "user", "content": "Describe."}], max_new_tokens=1)
    np.testing.assert_array_equal(seen[0], np.asarray(load_image(path, imagery=trained).image))
    assert not np.array_equal(seen[0], np.asarray(load_image(path).image))
