"""`geochat app` and `geochat api` on a tiny checkpoint of each backbone family.

Each command builds its page or its server on the checkpoint (neither serves for real), the
model's answer is forced in the family's own coordinate dialect (`family_fixtures.Force`), and
the grounded answer must come back in pixels of the original, non-square image.
"""

import json
from pathlib import Path

import pytest
from family_fixtures import HEIGHT, NAMES, NATIVE, POOL_PX, WIDTH, Force, image
from fastapi.testclient import TestClient

import geochat.engine
from geochat import prompts
from geochat.app.cli import api_main, app_main
from geochat.app.ui import REGION_QUESTION
from geochat.grammar import format_region
from geochat.modeling import tiny


@pytest.fixture
def forced(monkeypatch):
    """Makes each assistant that `geochat.engine.load` returns write its family's answer."""
    real = geochat.engine.load

    def load(model=None, **options):
        assistant = real(model, **options)
        chat, answer = assistant.chat, NATIVE[assistant.model.config.model_type]

        def forced_chat(*args, **kwargs):
            return chat(*args, logits_processor=[Force(assistant, answer)], **kwargs)

        assistant.chat = forced_chat
        return assistant

    monkeypatch.setattr(geochat.engine, "load", load)


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "scene.png"
    image().save(path)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_api_grounds_in_original_pixels(checkpoints, serves, forced, png, name):
    assert api_main(["--model", str(checkpoints[name]), "--port", "0"]) == 0

    with TestClient(serves["app"]) as client:
        files = {"image": ("scene.png", png.read_bytes(), "image/png")}
        response = client.post("/v1/ground", files=files, data={"expression": "the pool"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == NATIVE[name]
    (pool,) = body["objects"]
    assert pool["phrase"] == "the pool"
    assert pool["hbb"] == pytest.approx(POOL_PX, abs=1e-6)
    assert (body["image"]["width"], body["image"]["height"]) == (WIDTH, HEIGHT)
    assert body["model"] == checkpoints[name].name


def _handler(page, api_name):
    (function,) = [fn.fn for fn in page.fns.values() if fn.api_name == api_name]
    return function


@pytest.mark.parametrize("name", NAMES)
def test_app_grounds_in_original_pixels(checkpoints, launches, forced, png, name):
    assert app_main(["--model", str(checkpoints[name]), "--port", "0"]) == 0
    page = launches[0]["page"]

    session, *_ = _handler(page, "open_image")(str(png))
    *_, (chat, _, history, overlay, download) = _handler(page, "ask")(
        "Where is the pool?", None, 64, 0.0, session, [], []
    )

    assert history[-1]["content"] == NATIVE[name]
    assert "the pool" in chat[-1]["content"]
    assert overlay is not None
    (feature,) = json.loads(Path(download.value["path"]).read_text())["features"]
    assert feature["properties"]["phrase"] == "the pool"
    xs, ys = zip(*feature["geometry"]["coordinates"][0], strict=True)
    assert [min(xs), min(ys), max(xs), max(ys)] == pytest.approx(POOL_PX, abs=1e-6)


@pytest.fixture
def asked(monkeypatch):
    """The messages each assistant that `geochat.engine.load` returns was asked, in order."""
    real, questions = geochat.engine.load, []

    def load(model=None, **options):
        assistant = real(model, **options)
        chat = assistant.chat

        def recording_chat(image, messages, **kwargs):
            questions.append(messages[-1]["content"])
            return chat(image, messages, **{**kwargs, "max_new_tokens": 2})  # any answer will do

        assistant.chat = recording_chat
        return assistant

    monkeypatch.setattr(geochat.engine, "load", load)
    return questions


@pytest.fixture(scope="module")
def nano(tmp_path_factory):
    """A tiny geochat (Idefics3 family) checkpoint, as geochat-nano is."""
    folder = tmp_path_factory.mktemp("tiny-geochat")
    model, processor = tiny()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


REFER = {  # the question /v1/ground asks for "the pool", by family
    "llava": "[refer] give me the location of <p>the pool</p>",
    "qwen2_5_vl": "Locate the pool in the image and output its bbox coordinates in JSON format.",
    "geochat": "Locate the pool.",  # geochat's own wording, which its training data holds
}


@pytest.mark.parametrize("name", list(REFER))
def test_api_grounding_asks_in_the_family_task_prompt(checkpoints, nano, serves, asked, png, name):
    folder = nano if name == "geochat" else checkpoints[name]
    assert api_main(["--model", str(folder), "--port", "0"]) == 0

    with TestClient(serves["app"]) as client:
        files = {"image": ("scene.png", png.read_bytes(), "image/png")}
        response = client.post("/v1/ground", files=files, data={"expression": "the pool"})

    assert response.status_code == 200, response.text
    (question,) = asked
    assert question.endswith(REFER[name])
    assert question.count("[refer]") == (name == "llava")  # once, in one place


@pytest.mark.parametrize("name", ["llava", "geochat"])
def test_the_region_button_asks_the_identify_task(checkpoints, nano, launches, asked, png, name):
    folder = nano if name == "geochat" else checkpoints[name]
    assert app_main(["--model", str(folder), "--port", "0"]) == 0
    page = launches[0]["page"]
    session, *_ = _handler(page, "open_image")(str(png))
    region = {"image": str(png), "boxes": [{"xmin": 75, "ymin": 30, "xmax": 150, "ymax": 60}]}

    *_, (_, _, history, _, _) = _handler(page, "ask")(
        REGION_QUESTION, region, 2, 0.0, session, [], []
    )

    place = format_region(POOL_PX, WIDTH, HEIGHT)
    expected = {
        "llava": f"[identify] what is this {place}",
        "geochat": prompts.IDENTIFY_QUESTIONS[0].format(region=place),  # as training writes it
    }[name]
    assert asked[-1].endswith(expected)
    assert history[-2]["content"].endswith(expected)  # what the next turn sees
