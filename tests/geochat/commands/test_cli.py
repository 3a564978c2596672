"""Tests of the ``geochat`` command itself: the verb list and dispatch."""

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from geochat import cli

VERBS = ("api", "app", "build", "chat", "convert", "eval", "merge", "serve", "train")


def test_help_says_what_every_verb_does(capsys):
    assert cli.main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split(maxsplit=1)[1:] for line in lines if line[:2] == "  "}
    assert set(VERBS) <= set(listed)
    for verb, summary in listed.items():
        assert summary, f"geochat {verb} has no summary (first line of its docstring)"
        assert "``" not in summary[0]  # what it does, not its usage line
    assert "Scores a model's answers against records" in " ".join(lines)


def test_no_verb_prints_the_list_and_fails(capsys):
    assert cli.main([]) == 2
    assert "chat" in capsys.readouterr().out


def test_an_unknown_verb_is_named(capsys):
    assert cli.main(["dance"]) == 2
    assert "unknown verb 'dance'" in capsys.readouterr().err


def test_help_imports_no_verb():
    # Importing a verb can take seconds (torch) or need a missing extra; help reads sources.
    code = "import sys; from geochat import cli; cli.main(['--help']); print(sorted(sys.modules))"
    modules = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "torch" not in modules and "geochat.commands.chat" not in modules


@pytest.mark.parametrize(
    ("value", "summary"),
    [
        ("geochat.commands.eval:main", "Scores a model's answers"),
        ("geochat.commands.eval:no_such_function", ""),
        ("no_such_package.cli:main", ""),
    ],
)
def test_verb_summary_reads_the_docstring_or_gives_nothing(value, summary):
    entry = EntryPoint(name="eval", value=value, group=cli.VERB_GROUP)
    assert cli.verb_summary(entry).startswith(summary)


@pytest.mark.parametrize("verb", ["chat", "eval", "train", "merge", "build"])
def test_each_verb_help_says_what_it_does(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([verb, "--help"])
    assert exit_info.value.code == 0
    usage, _, rest = capsys.readouterr().out.partition("\n\n")
    assert usage.startswith(f"usage: geochat {verb}")
    assert rest.split("\n\n")[0].strip()  # the description paragraph
