"""``geochat train`` from the command line: the README's command, and inputs checked first."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from huggingface_hub import constants

from geochat.cli import main as geochat
from geochat.training import cli

README = Path(__file__).parents[2] / "README.md"
FAST = [
    "training.max_steps=2",
    "training.per_device_train_batch_size=2",
    "training.gradient_accumulation_steps=1",
    "training.bf16=false",
    "training.gradient_checkpointing=false",
    "training.report_to=[]",
    "data.max_length=256",
]


def readme_train_command() -> list[str]:
    """The README's ``geochat train smolvlm-lora ...`` command, split as a shell would."""
    lines = [line for line in README.read_text().splitlines() if line.startswith("geochat train")]
    return shlex.split(next(line for line in lines if "smolvlm-lora" in line))


class ModelLoadingError(Exception):
    """Raised in place of loading a model, once the inputs have passed their checks."""


@pytest.fixture
def no_model_loads(monkeypatch):
    """Makes loading a model fail the test: inputs must be checked before it."""

    def refuse(recipe):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr("geochat.training.trainer.build_model", refuse)


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err


@pytest.mark.slow
def test_the_readme_train_command_runs_on_a_synthetic_build(tiny_base, tmp_path, monkeypatch):
    # The README's data step: a tiny synthetic build (no val shards: two worlds, one area block).
    city = tmp_path / "data" / "city"
    build = ["build", "synthetic", "--out", str(tmp_path / "worlds"), "--n", "2", "--size", "128"]
    build += ["--records", str(city), "--tile-size", "128", "--overlap", "0", "--workers", "1"]
    assert geochat([*build, "--task-option", "max_records=4", "--quiet"]) == 0
    command = readme_train_command()
    assert command[:3] == ["geochat", "train", "smolvlm-lora"]
    substitutes = {
        "model.path=HuggingFaceTB/SmolVLM-256M-Instruct": f"model.path={tiny_base}",
        "data.train=data/city": f"data.train={city}",
        "runs/lora": str(tmp_path / "runs" / "lora"),
    }
    assert set(substitutes) <= set(command), command
    args = [substitutes.get(word, word) for word in command[1:]]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert geochat([*args, *FAST]) == 0
    final = tmp_path / "runs" / "lora" / "final"
    assert (final / "adapter_model.safetensors").is_file()
    assert (final / "recipe.yaml").is_file() and (final / "processor_config.json").is_file()


def test_a_missing_training_source_is_one_sentence_before_the_model(
    tiny_base, tmp_path, capsys, no_model_loads
):
    missing = tmp_path / "data" / "city"
    args = ["smolvlm-lora", f"model.path={tiny_base}", f"data.train={missing}"]
    code, error = run_cli([*args, "--out", str(tmp_path / "run")], capsys)
    assert code == 2
    assert error == f"geochat train: error: data.train: no such data source: {missing}\n"
    assert not (tmp_path / "run").exists()


def test_a_missing_validation_source_is_refused(
    squares, tiny_base, tmp_path, capsys, no_model_loads
):
    args = ["smolvlm-lora", f"model.path={tiny_base}", f"data.train={squares}"]
    code, error = run_cli([*args, f"data.val={tmp_path / 'val'}", "--out", str(tmp_path)], capsys)
    assert code == 2 and "data.val: no such data source" in error


def test_an_empty_folder_is_not_a_data_source(tiny_base, tmp_path, capsys, no_model_loads):
    args = ["smolvlm-lora", f"model.path={tiny_base}", f"data.train={tmp_path}"]
    code, error = run_cli([*args, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and f"data.train: {tmp_path} holds no .jsonl shard" in error


@pytest.mark.parametrize(
    ("model_path", "message"),
    [
        ("runs/lora/final", "model.path: no such model folder: runs/lora/final"),
        (
            "geochat-tests/not-cached",
            "model.path: geochat-tests/not-cached is neither a local folder nor in the Hugging "
            "Face cache, and HF_HUB_OFFLINE is set: download it first",
        ),
    ],
)
def test_a_model_that_cannot_be_found_offline_is_refused(
    model_path, message, squares, tmp_path, capsys, monkeypatch, no_model_loads
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    args = ["smolvlm-lora", f"model.path={model_path}", f"data.train={squares}"]
    code, error = run_cli(args, capsys)
    assert code == 2 and error.startswith(f"geochat train: error: {message}")
    assert "Traceback" not in error and len(error.splitlines()) == 1


def test_a_folder_without_a_saved_model_is_refused(squares, tmp_path, capsys, no_model_loads):
    args = ["smolvlm-lora", f"model.path={tmp_path}", f"data.train={squares}"]
    code, error = run_cli([*args, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and f"model.path: {tmp_path} holds no saved model (no config.json)" in error


def test_a_cached_hub_model_passes_the_check_offline(squares, tmp_path, monkeypatch):
    # The layout the hub client writes: models--owner--name/{refs/main, snapshots/<commit>/}.
    repo = tmp_path / "hub" / "models--HuggingFaceTB--SmolVLM-256M-Instruct"
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    (repo / "snapshots" / "0123abc" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = []

    def stop_at_loading(recipe):
        loaded.append(recipe)
        raise ModelLoadingError  # the check passed; nothing needs to train

    monkeypatch.setattr("geochat.training.trainer.build_model", stop_at_loading)
    args = ["smolvlm-lora", f"data.train={squares}", "--out", str(tmp_path / "run")]
    with pytest.raises(ModelLoadingError):
        cli.main(args)
    assert [recipe.model.path for recipe in loaded] == ["HuggingFaceTB/SmolVLM-256M-Instruct"]
