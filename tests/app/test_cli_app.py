"""`geochat app`: arguments, errors, and how the page is served (launch itself is stubbed)."""

import json
import socket

import gradio as gr
import pytest
from ui_fakes import ScriptedAssistant

import geochat.engine
from geochat.app.cli import app_main


@pytest.fixture
def loads(monkeypatch) -> list[dict]:
    """Records the arguments of `geochat.engine.load`, which returns a scripted assistant."""
    calls: list[dict] = []

    def load(model=None, **options):
        calls.append({"model": model, **options})
        return ScriptedAssistant()

    monkeypatch.setattr(geochat.engine, "load", load)
    return calls


def test_serves_the_default_model_on_loopback_and_never_shares(launches, loads, capsys):
    assert app_main([]) == 0
    assert loads == [
        {
            "model": None,
            "backend": "transformers",
            "device": "cpu",
            "vllm_url": None,
            "base": None,
            "sam": None,
        }
    ]
    [options] = launches
    assert (options["server_name"], options["server_port"]) == ("127.0.0.1", 7860)
    assert options["share"] is False
    assert "on http://127.0.0.1:7860" in capsys.readouterr().out


def test_passes_the_vllm_backend_and_port_through(launches, loads):
    argv = ["--model", "geochat-lora", "--backend", "vllm", "--vllm-url", "http://h:8001/v1"]
    assert app_main([*argv, "--port", "7999"]) == 0
    assert loads[0]["model"] == "geochat-lora"
    assert loads[0]["vllm_url"] == "http://h:8001/v1"
    assert launches[0]["server_port"] == 7999


def test_passes_the_sam_checkpoint_to_the_engine(launches, loads):
    assert app_main(["--sam", "sam_vit_b.pth"]) == 0
    assert loads[0]["sam"] == "sam_vit_b.pth"


def test_a_missing_sam_checkpoint_is_a_clear_error(tmp_path, launches, capsys):
    assert app_main(["--sam", str(tmp_path / "sam.pth")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("geochat app: no SAM checkpoint") and err.count("\n") == 1
    assert launches == []


def test_warns_when_listening_beyond_this_machine(launches, loads, capsys):
    assert app_main(["--host", "0.0.0.0"]) == 0
    assert "anyone who reaches it can use the model" in capsys.readouterr().err
    assert launches[0]["share"] is False


def test_the_vllm_backend_needs_its_url(capsys):
    with pytest.raises(SystemExit) as stop:
        app_main(["--backend", "vllm"])
    assert stop.value.code == 2
    assert "--backend vllm needs --vllm-url" in capsys.readouterr().err


def test_a_missing_model_is_a_clear_error(tmp_path, launches, capsys):
    assert app_main(["--model", str(tmp_path / "nowhere")]) == 1
    assert f"no model folder {tmp_path / 'nowhere'}" in capsys.readouterr().err
    assert launches == []


def test_a_taken_port_is_reported_in_one_line_before_the_model_loads(launches, loads, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert app_main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"geochat app: port {port} on 127.0.0.1 is already in use (another server?); "
        "stop it or choose another port with --port\n"
    )
    assert loads == [] and launches == []


def test_a_port_taken_while_the_model_loads_names_the_flag_not_launch(monkeypatch, loads, capsys):
    def launch(page: gr.Blocks, **options) -> None:  # what Gradio raises for a taken port
        raise OSError("Cannot find empty port in range: 7860-7860. ... `launch()`.")

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    assert app_main([]) == 1
    err = capsys.readouterr().err
    assert err == "geochat app: cannot listen on 127.0.0.1:7860; choose another --port or --host\n"


def test_the_page_names_the_model_never_its_server_path(launches, tmp_path):
    from geochat.modeling import tiny

    model, processor = tiny()
    folder = tmp_path / "my-checkpoint"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert app_main(["--model", str(folder), "--port", "0"]) == 0
    config = json.dumps(launches[0]["page"].get_config_file(), default=str)
    assert "my-checkpoint" in config
    assert str(tmp_path) not in config
