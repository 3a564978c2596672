"""Every ``geochat`` command of the README parses through its verb's parser; the cheap ones run.

``geochat train`` commands are run (without training) by tests/training/test_readme.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from readme import geochat_commands

from geochat.commands import chat
from geochat.commands import eval as eval_command
from geochat.commands import scene as scene_command
from geochat.data_builders import cli as build_cli
from geochat.training import cli as training_cli

PARSERS: dict[str, Callable] = {
    "build": build_cli._parser,
    "eval": eval_command._parser,
    "chat": chat._parser,
    "merge": training_cli.merge_parser,
    "scene": scene_command._parser,
}


def app_parser(verb: str):
    from geochat.app import cli as app_cli

    return {"app": app_cli._app_parser, "api": app_cli._api_parser}[verb]()


COMMANDS = [words for words in geochat_commands() if words[1] != "train"]


def test_the_readme_has_commands_of_every_kind():
    verbs = {words[1] for words in COMMANDS}
    assert {"build", "eval", "merge", "app"} <= verbs


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(words[1:4]))
def test_every_readme_command_parses_through_its_verb(words):
    verb, argv = words[1], words[2:]
    parser = PARSERS[verb]() if verb in PARSERS else app_parser(verb)
    parser.parse_args(argv)  # a usage error exits with status 2, failing the test


def readme_command(*start: str) -> list[str]:
    return next(w[1:] for w in COMMANDS if tuple(w[1 : 1 + len(start)]) == start)


def replace(argv: list[str], **values: str) -> list[str]:
    """The README's arguments with some option values replaced (``n="1"`` sets ``--n 1``)."""
    argv = list(argv)
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


@pytest.mark.slow
def test_the_readme_build_show_and_eval_commands_run_on_tiny_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the README's relative paths land in tmp_path
    build = readme_command("build", "synthetic")[2:]
    argv = [*replace(build, n="1", size="128", workers="1"), "--tile-size", "64", "--quiet"]
    assert build_cli.main(["synthetic", *argv]) == 0
    records = sorted(Path("data/synthetic/records").rglob("*.jsonl"))
    assert records
    first = json.loads(records[0].read_text().splitlines()[0])
    show = readme_command("build", "show")[2:]
    assert build_cli.main(["show", *replace(show, id=first["id"])]) == 0
    assert Path("record.png").is_file()
    # Score the records' own answers, as answers made elsewhere.
    lines = records[0].read_text().splitlines()
    Path("records.jsonl").write_text("\n".join(lines) + "\n")
    answers = [
        {"id": r["id"], "answer": r["conversations"][-1]["value"]} for r in map(json.loads, lines)
    ]
    Path("answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    score = readme_command("eval", "--records")[1:]
    assert eval_command.main(score) == 0
