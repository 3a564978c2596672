"""Options generated from dataclasses and signatures: each kind of field, help, defaults."""

from __future__ import annotations

import argparse
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from geochat import cliargs
from geochat.cliargs import Flag


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclass(frozen=True)
class Options:
    """Options of a tiny builder.

    Attributes:
        size: Tile side in pixels.
        ratio: Share of ``val`` tiles, in %.
        name: Name of the run, which may be long and
            continue on a second line.
        folder: Output folder; None for none.
        fast: Skip the slow part.
        masks: Write masks.
        box: Geometry in the answers.
        colour: Colour of the overlay.
        tasks: Tasks to write.
        sizes: Tile sizes.
        geometry_kinds: Answers per row.
        grid: Side of the text-mask grid.
    """

    size: int = 512
    ratio: float = 0.05
    name: str = "run"
    folder: Path | None = None
    fast: bool = False
    masks: bool = True
    box: Literal["quad", "hbb"] = "quad"
    colour: Colour = Colour.RED
    tasks: tuple[Literal["ground", "refer"], ...] = ("ground", "refer")
    sizes: list[int] = field(default_factory=lambda: [256])
    geometry_kinds: tuple[str, ...] = field(
        default=("hbb",), metadata={"flag": Flag("--geometry", choices=("hbb", "quad"))}
    )
    grid: Annotated[int, Flag(choices=(16, 32))] = 16


def parser_of(source: Any, **keywords: Any) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test")
    cliargs.add_arguments(parser, source, **keywords)
    return parser


def test_defaults_round_trip():
    assert cliargs.from_arguments(Options, parser_of(Options).parse_args([])) == Options()
    # An instance's values replace the declared defaults.
    other = Options(size=256, tasks=("refer",), fast=True)
    parsed = parser_of(Options, defaults=other).parse_args([])
    assert cliargs.from_arguments(Options, parsed) == other


def test_every_field_kind_reads_its_values():
    argv = [
        "--size", "128", "--ratio", "0.5", "--name", "x", "--folder", "out", "--fast",
        "--no-masks", "--box", "hbb", "--colour", "green", "--tasks", "refer",
        "--sizes", "1,2", "3", "--geometry", "quad,hbb", "--grid", "32",
    ]  # fmt: skip
    options = cliargs.from_arguments(Options, parser_of(Options).parse_args(argv))
    assert options == Options(
        size=128, ratio=0.5, name="x", folder=Path("out"), fast=True, masks=False, box="hbb",
        colour=Colour.GREEN, tasks=("refer",), sizes=[1, 2, 3], geometry_kinds=("quad", "hbb"),
        grid=32,
    )  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["--size", "big"],
        ["--box", "circle"],
        ["--colour", "blue"],
        ["--tasks", "ground,caption"],
        ["--tasks", ","],
        ["--geometry", "mask"],
        ["--grid", "8"],
    ],
)
def test_bad_values_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        parser_of(Options).parse_args(argv)
    assert stopped.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_help_lists_every_option_with_its_documentation_and_default():
    text = " ".join(parser_of(Options).format_help().split())
    for option in (
        "--size SIZE Tile side in pixels (default: 512)",
        "--ratio RATIO Share of val tiles, in % (default: 0.05)",
        "Name of the run, which may be long and continue on a second line (default: run)",
        "--folder FOLDER Output folder; None for none",
        "--fast, --no-fast Skip the slow part (default: --no-fast)",
        "--masks, --no-masks Write masks (default: --masks)",
        "--box {quad,hbb} Geometry in the answers (default: quad)",
        "--colour {RED,GREEN} Colour of the overlay (default: RED)",
        "--tasks {ground,refer} [{ground,refer} ...] Tasks to write (default: ground,refer)",
        "--geometry {hbb,quad} [{hbb,quad} ...] Answers per row (default: hbb)",
        "--grid {16,32} Side of the text-mask grid (default: 16)",
    ):
        assert option in text


def convert(
    src: Path,
    out: Annotated[str | Path, Flag("--out-dir", type=Path)],
    split: str | None = None,
    *,
    limit: int | None = None,
    **extra: Any,
) -> None:
    """Converts something.

    Args:
        src: Source folder.
        out: Output folder.
        split: The split to convert.
        limit: Items at most; None for all.
        extra: Not an option.

    Returns:
        Nothing: the Returns section is not an option's help.
    """


def test_a_function_signature_gives_options_and_keyword_arguments():
    parser = parser_of(convert, skip=("split",))
    args = parser.parse_args(["--src", "a", "--out-dir", "b", "--limit", "3"])
    assert cliargs.from_arguments(convert, args, split="x") == {
        "src": Path("a"),
        "out": Path("b"),
        "limit": 3,
        "split": "x",
    }
    # Parameters without a default are required options.
    with pytest.raises(SystemExit):
        parser.parse_args(["--src", "a"])
    assert "Returns" not in parser.format_help()


def test_per_parser_names_and_prefixed_destinations_keep_two_sources_apart():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1)  # another source's option
    cliargs.add_arguments(parser, Options, flags={"size": "--tile-size"}, prefix="opt.")
    args = parser.parse_args(["--size", "2", "--tile-size", "3"])
    assert args.size == 2 and cliargs.from_arguments(Options, args, prefix="opt.").size == 3


def test_undocumented_or_formless_fields_are_refused_when_the_parser_is_built():
    @dataclass
    class Undocumented:
        """No attributes section."""

        size: int = 1

    @dataclass
    class Weighted:
        """A mapping field.

        Attributes:
            weights: Task weights.
        """

        weights: dict[str, float] = field(default_factory=dict)

    with pytest.raises(TypeError, match="size has no documentation"):
        parser_of(Undocumented)
    with pytest.raises(TypeError, match=r"weights: .* no command-line form"):
        parser_of(Weighted)
    assert cliargs.from_arguments(Weighted, parser_of(Weighted, skip=("weights",)).parse_args([]))


def test_docstring_items_stop_at_the_next_section():
    items = cliargs.docstring_items(convert.__doc__)
    assert items["limit"] == "Items at most; None for all"
    assert set(items) == {"src", "out", "split", "limit", "extra"}
