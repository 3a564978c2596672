"""``geochat build``: make record datasets.

Subcommands:

- ``osm``: georeferenced imagery + OpenStreetMap -> tiles -> records (the OSM pipeline).
- ``synthetic``: write synthetic worlds (GeoTIFF + OSM + truth); with ``--records`` also run
  them through the same OSM pipeline, so one command gives a training set.
- ``convert``: convert a public dataset (DOTA, DIOR-RSVG, ...) to records.
- ``show``: draw one record's truth over its image, to a PNG.

Examples::

    geochat build osm --imagery a.tif b.tif --osm city.osm.pbf --out data/city --workers 8
    geochat build synthetic --out data/synthetic --n 8 --records --workers 2
    geochat build convert dota --src DOTA/train --out data/dota --split train
    geochat build show data/city --id a_000_001:refer:0 --out record.png

A build that stops (killed, or an error) keeps its finished shards: the same command resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from geochat import cliargs, imagery
from geochat.data_builders import build_summary, pipeline, synthetic
from geochat.data_builders.converters import CONVERTERS
from geochat.data_builders.show import show
from geochat.data_builders.tasks.options import TaskOptions

PROG = "geochat build"
# ``synthetic --records`` without a folder: a marker replaced by OUT/records.
SYNTHETIC_RECORDS = Path("<OUT>/records")
# Synthetic records default to the nano model's image size (256 px tiles).
SYNTHETIC_DEFAULTS = pipeline.BuildOptions(tile_size=256, overlap=32)
# Destinations of the BuildOptions fields, apart from the synthetic worlds' options of same name.
BUILD = "build."


def main(argv: list[str] | None = None) -> int:
    """``geochat build``: makes record datasets (OSM, synthetic world, public datasets).

    Runs ``geochat build <subcommand> ...`` and returns the exit status.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, LookupError) as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    """The parser of ``geochat build`` and its subcommands (parsing runs nothing)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{osm,synthetic,convert,show}"
    )
    osm = commands.add_parser("osm", help="imagery + OpenStreetMap -> records")
    osm.add_argument(
        "--imagery", nargs="+", required=True, metavar="RASTER", help="georeferenced rasters"
    )
    osm.add_argument("--osm", required=True, help=".osm.pbf, .osm or .geojson covering the rasters")
    osm.add_argument("--out", required=True, type=Path, help="build folder")
    osm.add_argument("--workers", type=int, help="parallel jobs (default: every CPU)")
    _add_build_options(osm, pipeline.BuildOptions())
    osm.set_defaults(run=_run_osm)
    _add_synthetic_parser(commands)
    _add_convert_parser(commands)
    viewer = commands.add_parser("show", help="draw a record's truth over its image")
    viewer.add_argument(
        "location", type=Path, help="build folder, folder of JSONL files, or a JSONL file"
    )
    viewer.add_argument("--id", required=True, dest="record_id", help="the record's id")
    viewer.add_argument("--out", type=Path, help="PNG to write (default: <folder>/show/<id>.png)")
    viewer.set_defaults(run=_run_show)
    return parser


def _add_synthetic_parser(commands: argparse._SubParsersAction) -> None:
    """``synthetic``: the world generator's own options, plus the pipeline's with ``--records``."""
    synth = commands.add_parser(
        "synthetic", help="synthetic worlds (GeoTIFF + OSM + truth), and records with --records"
    )
    synthetic.add_synthetic_arguments(synth)  # --out --n --seed --size --gsd --workers ...
    synth.add_argument(
        "--records",
        nargs="?",
        const=SYNTHETIC_RECORDS,
        type=Path,
        metavar="DIR",
        help="also run the OSM pipeline on the worlds, into DIR (default: OUT/records)",
    )
    # The worlds' --seed seeds the records too; their --gsd is not the tiles'.
    _add_build_options(synth, SYNTHETIC_DEFAULTS, skip=("seed",), flags={"gsd": "--tile-gsd"})
    synth.set_defaults(run=_run_synthetic)


def _add_convert_parser(commands: argparse._SubParsersAction) -> None:
    """``convert <dataset>``: one sub-parser per registered converter, with its own options."""
    convert = commands.add_parser("convert", help="public dataset -> records")
    datasets = convert.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, converter in CONVERTERS.items():
        dataset = datasets.add_parser(name, help=converter.description)
        dataset.add_argument("--src", type=Path, required=True, help="the dataset's folder")
        dataset.add_argument("--out", type=Path, required=True, help="output folder")
        dataset.add_argument("--split", help="the dataset's split to convert")
        converter.add_arguments(dataset)
        dataset.set_defaults(run=_run_convert, converter=converter)


def _add_build_options(
    parser: argparse.ArgumentParser,
    defaults: pipeline.BuildOptions,
    skip: tuple[str, ...] = (),
    flags: dict[str, str] | None = None,
) -> None:
    """The OSM pipeline's options: :class:`pipeline.BuildOptions`, the imagery, the running."""
    cliargs.add_arguments(
        parser.add_argument_group("build (tiling, splits, shards)"),
        pipeline.BuildOptions,
        skip=("imagery", "task_options", *skip),  # from imagery's options and --task-option
        defaults=defaults,
        flags=flags,
        prefix=BUILD,
    )
    imagery.add_arguments(parser)
    records = parser.add_argument_group("records")
    records.add_argument(
        "--generate",
        default=pipeline.DEFAULT_GENERATOR,
        metavar="MODULE:FUNCTION",
        help="record generator generate(tile, rng, options) -> records "
        "(default: the task generators)",
    )
    task_options = ", ".join(option.name for option in dataclasses.fields(TaskOptions))
    records.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of the task generators (VALUE read as JSON when it parses), "
        f"e.g. max_records=8 or 'tasks={{\"refer\": 1}}'; keys: {task_options}",
    )
    running = parser.add_argument_group("running")
    running.add_argument(
        "--engine",
        choices=pipeline.ENGINES,
        default="process",
        help="process pool (default) or Ray Data",
    )
    running.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    running.add_argument("--overwrite", action="store_true", help="replace a build in the folder")
    running.add_argument("--quiet", action="store_true", help="no progress bar")


def build_options(args: argparse.Namespace, **given: Any) -> pipeline.BuildOptions:
    """Makes :class:`pipeline.BuildOptions` from parsed ``_add_build_options`` arguments.

    Args:
        args: The parsed arguments.
        given: Options the subcommand sets from its own arguments (``seed`` of ``synthetic``).
    """
    return cliargs.from_arguments(
        pipeline.BuildOptions,
        args,
        prefix=BUILD,
        imagery=imagery.from_arguments(args),
        task_options=_task_options(args.task_option),
        **given,
    )


def _task_options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--task-option needs KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def run_build(
    sources: list[pipeline.Source], out: Path, args: argparse.Namespace, **given: Any
) -> int:
    """Runs the OSM pipeline with the parsed options (and ``given`` ones); reports what it wrote."""
    generate = pipeline.load_generator(args.generate)
    try:
        summary = pipeline.build(
            sources,
            out,
            build_options(args, **given),
            generate=generate,
            workers=args.workers,
            engine=args.engine,
            overwrite=args.overwrite,
            progress=not args.quiet,
            ray_address=args.ray_address,
        )
    except (ValueError, LookupError):
        raise  # bad arguments or inputs: main() prints the message
    except Exception:
        print(
            f"{PROG}: the build stopped; finished shards are kept in {out}: run the same "
            "command again to resume",
            file=sys.stderr,
        )
        raise
    print(build_summary.format_summary(summary))
    records = summary.get("records", {}).get("total", 0)
    tiles = summary.get("tiles", {}).get("written", 0)
    print(f"wrote {records} records and {tiles} tile images to {out} (manifest.json, summary.json)")
    if summary["errors"]:
        print(
            f"{len(summary['errors'])} input(s) failed: see above and {out / 'summary.json'}",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_osm(args: argparse.Namespace) -> int:
    return run_build([pipeline.Source(tuple(args.imagery), args.osm)], args.out, args)


def _run_synthetic(args: argparse.Namespace) -> int:
    status = synthetic.synthetic_main(args)
    if status or args.records is None:
        return status
    listing = json.loads((args.out_dir / "worlds.json").read_text(encoding="utf-8"))
    sources = [
        pipeline.Source(
            (str(Path(world["out_dir"]) / "world.tif"),),
            str(Path(world["out_dir"]) / "world.osm.pbf"),
        )
        for world in listing["worlds"]
    ]
    out = args.out_dir / "records" if args.records == SYNTHETIC_RECORDS else args.records
    return run_build(sources, out, args, seed=args.seed)


def _run_convert(args: argparse.Namespace) -> int:
    summary = args.converter.run(args)
    print(json.dumps(summary, indent=2))
    print(f"wrote {summary.get('records', '?')} records to {summary.get('jsonl', args.out)}")
    return 0


def _run_show(args: argparse.Namespace) -> int:
    written = show(args.location, args.record_id, args.out)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
