"""The README's commands: its test command is what CI runs, its train command parses."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from readme import README, bash_blocks, commands, geochat_commands

from geochat.training import cli

ROOT = Path(__file__).parents[2]


def first_code_block() -> list[str]:
    """The commands of the README's first code block, comments left out."""
    blocks = bash_blocks()
    assert blocks, "the README has no bash block"
    return commands(blocks[0])


def ci_commands() -> list[str]:
    """The commands of ``.ci/run``, comments and pip's --quiet left out."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [" ".join(w for w in shlex.split(line) if w != "--quiet") for line in commands]


def test_the_readme_test_command_is_what_ci_runs():
    setup, app, tests = first_code_block()
    assert setup == "python -m venv .venv && . .venv/bin/activate"
    assert app.endswith("geochat app")
    ci = ci_commands()
    assert "python3 -m venv .venv" in ci and "source .venv/bin/activate" in ci
    steps = [" ".join(shlex.split(step)) for step in tests.split("&&")]
    assert steps == ["pip install torch==2.13.0", "pip install -e .[dev]", "python -m pytest -q"]
    # In the same order in CI, between the environment and the end of the script.
    places = [ci.index(step) for step in steps]
    assert places == sorted(places) and places[0] > ci.index("source .venv/bin/activate")


def readme_train_commands() -> list[list[str]]:
    """Every ``geochat train`` command of the README, its continued lines joined."""
    return [words for words in geochat_commands() if words[1] == "train"]


@pytest.mark.parametrize("command", readme_train_commands(), ids=lambda c: " ".join(c[2:5]))
def test_every_readme_train_command_parses_through_the_cli(command, no_training):
    assert cli.main(command[2:]) == 0
    assert len(no_training) == 1


def test_the_readme_lora_command_trains_on_its_build_with_its_own_validation(no_training):
    command = next(c for c in readme_train_commands() if c[2] == "smolvlm-lora")
    assert cli.main(command[2:]) == 0
    [(recipe, out)] = no_training
    assert recipe.model.path == "HuggingFaceTB/SmolVLM-256M-Instruct"
    assert recipe.data.train == "data/city" and recipe.data.val == "auto" and out == "runs/lora"


def test_the_readme_stands_alone():
    # Files outside the repository are not in a user's clone.
    assert "../" not in README


def test_overrides_may_follow_the_out_option(no_training):
    # As in the README's geochat-nano commands: `geochat train nano-synthetic --out DIR k=v ...`.
    args = ["nano-synthetic", "data.train=data/nano", "--out", "runs/x", "training.max_steps=7"]
    assert cli.main(args) == 0
    [(recipe, out)] = no_training
    assert (recipe.data.train, recipe.training["max_steps"], out) == ("data/nano", 7, "runs/x")
