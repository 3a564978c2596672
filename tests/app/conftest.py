"""Fixtures of the app tests: `geochat api` and `geochat app` without serving for real."""

import gradio as gr
import pytest
import uvicorn


@pytest.fixture
def serves(monkeypatch):
    """Records what `geochat api` would serve: uvicorn's server and the bound sockets."""
    served = {}

    def run(server, sockets):
        served.update(app=server.config.app, log_level=server.config.log_level)
        served["address"] = sockets[0].getsockname()[:2]

    monkeypatch.setattr(uvicorn.Server, "run", run)
    return served


@pytest.fixture
def launches(monkeypatch) -> list[dict]:
    """Records the keyword arguments of every `Blocks.launch` instead of serving."""
    calls: list[dict] = []

    def launch(page: gr.Blocks, **options) -> None:
        calls.append({**options, "page": page})

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)  # Ctrl+C, at once
    return calls
