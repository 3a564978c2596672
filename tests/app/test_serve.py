"""`geochat serve` without vLLM: finding vLLM's Python, LoRA adapters, the command and its env.

The end-to-end tests against a real vLLM server are in test_vllm.py (marked `vllm`).
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from geochat.app.cli import serve_main
from geochat.app.vllm_launch import (
    CONSTRAIN_MIDDLEWARE,
    VLLM_PYTHON_ENV,
    Adapter,
    ServeError,
    find_vllm_python,
    lora_rank_limit,
    read_adapter,
    server_command,
    server_environment,
)
from geochat.app.vllm_middleware import ConstrainField
from geochat.engine import GROUNDING_REGEX

LLM_KEY = "base_model.model.model.text_model.layers.0.self_attn.q_proj.lora_A.weight"
TOWER_KEY = "base_model.model.model.vision_model.encoder.layers.0.mlp.fc1.lora_A.weight"


def _adapter(folder: Path, rank: int = 8, keys=(LLM_KEY,), **config) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, **config}))
    save_file({key: torch.zeros(rank, 4) for key in keys}, folder / "adapter_model.safetensors")
    return folder


def _checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "geochat"}))
    return folder


def _fake_python(folder: Path) -> Path:
    """An executable that prints its arguments and environment, standing in for vLLM's Python."""
    script = folder / "python"
    script.write_text(
        '#!/bin/sh\nif [ "$1" = "-c" ]; then echo "${FAKE_DEVICE:-cpu}"; exit 0; fi\n'
        'echo "ARGS $*"\necho "KV $VLLM_CPU_KVCACHE_SPACE OFFLINE $HF_HUB_OFFLINE"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_read_adapter_reads_rank_and_whether_it_adapts_the_tower(tmp_path):
    llm = read_adapter(f"roads={_adapter(tmp_path / 'llm', rank=16)}")
    tower = read_adapter(f"tower={_adapter(tmp_path / 'tower', keys=(LLM_KEY, TOWER_KEY))}")

    assert (llm.name, llm.rank, llm.adapts_tower) == ("roads", 16, False)
    assert tower.adapts_tower


def test_an_adapter_for_another_family_is_refused(tmp_path):
    qwen = tmp_path / "qwen"
    qwen.mkdir()
    (qwen / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    llava = tmp_path / "llava"
    llava.mkdir()
    (llava / "config.json").write_text(json.dumps({"model_type": "llava"}))
    adapter = _adapter(tmp_path / "adapter", base_model_name_or_path=str(qwen))

    assert read_adapter(f"a={adapter}", str(qwen)).name == "a"
    with pytest.raises(ServeError, match=r"\(Qwen2.5-VL\), not for .*llava \(LLaVA\)"):
        read_adapter(f"a={adapter}", str(llava))


@pytest.mark.parametrize(
    ("config", "message"),
    [({"use_dora": True}, "DoRA"), ({"modules_to_save": ["connector"]}, "modules_to_save")],
)
def test_read_adapter_refuses_what_vllm_cannot_serve(tmp_path, config, message):
    folder = _adapter(tmp_path / "a", **config)

    with pytest.raises(ServeError, match=message):
        read_adapter(f"a={folder}")


@pytest.mark.parametrize("spec", ["no-equals-sign", "=path", "name="])
def test_read_adapter_rejects_malformed_specs(spec):
    with pytest.raises(ServeError, match="NAME=PATH"):
        read_adapter(spec)


def test_read_adapter_rejects_a_corrupt_adapter(tmp_path):
    folder = _adapter(tmp_path / "a")
    (folder / "adapter_model.safetensors").write_bytes(b"not safetensors")

    with pytest.raises(ServeError, match="unreadable adapter"):
        read_adapter(f"a={folder}")


def test_read_adapter_rejects_a_config_without_a_rank(tmp_path):
    folder = _adapter(tmp_path / "a")
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))

    with pytest.raises(ServeError, match="rank"):
        read_adapter(f"a={folder}")


def test_read_adapter_rejects_a_folder_without_an_adapter(tmp_path):
    with pytest.raises(ServeError, match="not a peft adapter folder"):
        read_adapter(f"a={tmp_path}")


@pytest.mark.parametrize(("rank", "limit"), [(1, 1), (4, 8), (8, 8), (9, 16), (300, 320)])
def test_lora_rank_limit_rounds_up_to_a_value_vllm_accepts(rank, limit):
    adapters = [Adapter("a", Path("a"), rank, False), Adapter("b", Path("b"), 1, False)]

    assert lora_rank_limit(adapters) == limit


def test_lora_rank_limit_rejects_ranks_above_vllms_largest():
    with pytest.raises(ServeError, match="above"):
        lora_rank_limit([Adapter("a", Path("a"), 1024, False)])


def test_server_command_enables_lora_and_puts_vllm_options_last():
    adapters = [Adapter("roads", Path("/r"), 8, False), Adapter("tower", Path("/t"), 32, True)]

    command = server_command(
        "/py",
        "/m",
        name="nano",
        host="127.0.0.1",
        port=8001,
        adapters=adapters,
        max_model_len=4096,
        extra=["--dtype", "float32"],
    )

    text = " ".join(command)
    assert command[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    assert "--model /m --served-model-name nano --host 127.0.0.1 --port 8001" in text
    assert "--chat-template-content-format string" in text
    assert "--max-model-len 4096" in text
    assert "--enable-lora --max-lora-rank 32 --max-loras 2 --lora-modules roads=/r tower=/t" in text
    assert "--enable-tower-connector-lora" in command
    assert f"--middleware {CONSTRAIN_MIDDLEWARE}" in text
    assert command[-2:] == ["--dtype", "float32"]


def test_server_command_without_adapters_has_no_lora_flags():
    command = server_command(
        "/py", "/m", name="m", host="h", port=1, adapters=[], max_model_len=None, extra=[]
    )

    assert not any("lora" in part for part in command)
    assert "--max-model-len" not in command


def test_server_environment_keeps_user_values_and_enables_the_plugin(tmp_path):
    user = {"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_PLUGINS": "other"}

    env = server_environment(user, str(tmp_path))

    assert env["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert env["HF_HUB_OFFLINE"] == "1"  # a local folder needs no hub
    assert env["VLLM_PLUGINS"] == "other,geochat"


def test_server_environment_of_a_hub_model_leaves_the_hub_online():
    env = server_environment({}, "HuggingFaceTB/SmolVLM-256M-Instruct")

    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert "HF_HUB_OFFLINE" not in env
    assert "VLLM_PLUGINS" not in env  # unset: vLLM loads every plugin, ours included


def test_find_vllm_python_takes_the_environment_variable(tmp_path, monkeypatch):
    python = _fake_python(tmp_path)
    monkeypatch.setenv(VLLM_PYTHON_ENV, str(python))

    assert find_vllm_python() == str(python)


def test_find_vllm_python_rejects_a_missing_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv(VLLM_PYTHON_ENV, str(tmp_path / "missing"))

    with pytest.raises(ServeError, match=VLLM_PYTHON_ENV):
        find_vllm_python()


def test_serve_main_rejects_a_folder_without_a_checkpoint(tmp_path, capsys):
    assert serve_main(["--model", str(tmp_path)]) == 1
    assert "no config.json" in capsys.readouterr().err


def test_serve_main_rejects_a_bad_adapter(tmp_path, capsys):
    model = _checkpoint(tmp_path / "m")

    assert serve_main(["--model", str(model), "--lora", f"a={tmp_path}"]) == 1
    assert "not a peft adapter folder" in capsys.readouterr().err


def test_geochat_serve_starts_vllms_server_with_our_flags(tmp_path):
    model, adapter = _checkpoint(tmp_path / "nano"), _adapter(tmp_path / "roads")
    env = {**os.environ, VLLM_PYTHON_ENV: str(_fake_python(tmp_path))}
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    command = [sys.executable, "-m", "geochat.cli", "serve", "--model", str(model)]
    command += ["--lora", f"roads={adapter}", "--port", "8123", "--", "--enforce-eager"]

    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "nano, roads at http://127.0.0.1:8123/v1" in result.stdout
    args = [line for line in result.stdout.splitlines() if line.startswith("ARGS")][-1]
    assert f"-m vllm.entrypoints.openai.api_server --model {model} --served-model-name nano" in args
    assert f"--lora-modules roads={adapter}" in args
    assert args.endswith("--enforce-eager")
    assert "KV 1 OFFLINE 1" in result.stdout


@pytest.fixture
def vllm_like() -> TestClient:
    """vLLM's server as far as the middleware sees it: it echoes the body it received."""

    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"length": request.headers["content-length"], "body": body.decode()})

    routes = [Route("/v1/chat/completions", echo, methods=["POST"])]
    routes.append(Route("/v1/models", echo, methods=["POST"]))
    return TestClient(ConstrainField(Starlette(routes=routes)))


def _received(response) -> dict:
    answer = response.json()
    assert int(answer["length"]) == len(answer["body"].encode())
    return json.loads(answer["body"])


def test_served_vllm_reads_geochats_constrain_field(vllm_like):
    body = {"model": "nano", "messages": [], "constrain": "grounding", "max_tokens": 9}

    received = _received(vllm_like.post("/v1/chat/completions", json=body))

    assert received == {
        "model": "nano",
        "messages": [],
        "max_tokens": 9,
        "structured_outputs": {"regex": GROUNDING_REGEX},
    }


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [], "structured_outputs": {"regex": "[a-z]+"}},  # vLLM's own: untouched
        {"messages": [], "constrain": None},
        {"messages": []},
    ],
)
def test_served_vllm_passes_its_own_requests_through(vllm_like, body):
    received = _received(vllm_like.post("/v1/chat/completions", json=body))

    assert received == {key: value for key, value in body.items() if key != "constrain"}


def test_served_vllm_leaves_other_paths_and_bad_json_to_vllm(vllm_like):
    other = vllm_like.post("/v1/models", json={"constrain": "grounding"})
    broken = vllm_like.post("/v1/chat/completions", content=b"{not json")

    assert json.loads(other.json()["body"]) == {"constrain": "grounding"}
    assert broken.json()["body"] == "{not json"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"constrain": "json"}, "constrain must be 'grounding' or null"),
        ({"constrain": "grounding", "structured_outputs": {"regex": "x"}}, "structured_outputs"),
    ],
)
def test_served_vllm_refuses_a_constraint_it_cannot_honour(vllm_like, body, words):
    response = vllm_like.post("/v1/chat/completions", json=body)

    assert response.status_code == 400
    assert words in response.json()["error"]["message"]


def _served_args(tmp_path, *argv: str, device: str = "cpu") -> str:
    """The command line `geochat serve` gives vLLM, whose platform is `device`."""
    model = _checkpoint(tmp_path / "nano")
    env = {**os.environ, VLLM_PYTHON_ENV: str(_fake_python(tmp_path)), "FAKE_DEVICE": device}
    command = [sys.executable, "-m", "geochat.cli", "serve", "--model", str(model), *argv]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("ARGS")][-1]


@pytest.mark.parametrize(
    ("argv", "device", "dtype"),
    [
        ((), "cpu", "--dtype float32"),  # vLLM's auto is bfloat16 on CPUs
        ((), "cuda", None),  # vLLM's own choice
        (("--dtype", "bfloat16"), "cpu", "--dtype bfloat16"),
        (("--", "--dtype", "float16"), "cpu", "--dtype float32 --dtype float16"),  # last wins
    ],
    ids=["cpu", "gpu", "ours", "vllms"],
)
def test_geochat_serve_runs_float32_on_cpus_unless_told(tmp_path, argv, device, dtype):
    args = _served_args(tmp_path, *argv, device=device)

    if dtype is None:
        assert "--dtype" not in args
    else:
        assert args.endswith(dtype) or f"{dtype} " in args
