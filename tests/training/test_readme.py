"""The README's commands: its test command is what CI runs, its train command parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import training.trainer
from training import cli

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def first_code_block() -> list[str]:
    """The commands of the README's first code block, comments left out."""
    block = re.search(r"```bash\n(.*?)```", README, re.DOTALL)
    assert block, "the README has no bash block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


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


def test_the_readme_train_command_parses_through_the_cli(monkeypatch, tmp_path):
    line = next(line for line in README.splitlines() if line.startswith("geochat train smolvlm"))
    given = []
    monkeypatch.setattr(
        training.trainer, "train", lambda recipe, out, **_: given.append((recipe, out))
    )
    assert cli.main(shlex.split(line)[2:]) == 0
    [(recipe, out)] = given
    assert recipe.model.path == "HuggingFaceTB/SmolVLM-256M-Instruct"
    assert recipe.data.train == "data/city" and recipe.data.val == "auto" and out == "runs/lora"


def test_the_readme_stands_alone():
    # Files outside the repository are not in a user's clone.
    assert "../" not in README
