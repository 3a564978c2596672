"""Converters of public remote-sensing datasets into geochat records.

Each converter module has ``convert(src, out, split=None, **options) -> summary``; its typed,
documented keyword arguments are its command-line options (:mod:`geochat.cliargs`).
:data:`CONVERTERS` names them for ``geochat build convert <name> --src DIR --out DIR``::

    parser = argparse.ArgumentParser()
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default=None)
    CONVERTERS["dota"].add_arguments(parser)
    summary = CONVERTERS["dota"].run(parser.parse_args(argv))

Every converter writes ``out/<name>[_<split>].jsonl`` atomically and copies the images it uses
into ``out/images/<name>/`` (see :mod:`data_builders.converters.common`); malformed input raises
:class:`ConversionError` naming the file and line or key.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geochat import cliargs
from geochat.data_builders.converters import (
    dior_rsvg,
    dota,
    earthreason,
    geochat_bench,
    geochat_instruct,
    refgeo,
    rrsisd,
)
from geochat.data_builders.converters.common import ConversionError

_POSITIONAL = ("src", "out", "split")


@dataclass(frozen=True)
class Converter:
    """One dataset converter.

    Attributes:
        name: Name on the command line.
        description: One line for ``--help``: the dataset, its layout and the records made.
        convert: ``convert(src, out, split=None, **options) -> summary dict``, whose typed
            keyword arguments (documented in its ``Args:``) are the command-line options.
    """

    name: str
    description: str
    convert: Callable[..., dict[str, Any]]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Adds one option per keyword argument of :attr:`convert` but ``src, out, split``."""
        cliargs.add_arguments(parser, self.convert, skip=_POSITIONAL)

    def options(self, args: argparse.Namespace) -> dict[str, Any]:
        """The keyword arguments of :attr:`convert` found in parsed arguments."""
        found = cliargs.from_arguments(self.convert, args)
        return {key: value for key, value in found.items() if key not in _POSITIONAL}

    def run(self, args: argparse.Namespace) -> dict[str, Any]:
        """Converts with parsed arguments: ``src``, ``out``, optional ``split``, the options."""
        return self.convert(
            Path(args.src), Path(args.out), getattr(args, "split", None), **self.options(args)
        )


CONVERTERS: dict[str, Converter] = {
    converter.name: converter
    for converter in (
        Converter(
            "dota",
            "DOTA v1.0/1.5/2.0 (images/ + labelTxt/ quads) -> grounded_caption and "
            "per-category ground (find-all) records with quads, boxes, rasterised masks and gsd",
            dota.convert,
        ),
        Converter(
            "dior_rsvg",
            "DIOR-RSVG (Annotations/ VOC XML with descriptions, JPEGImages/, object-index split "
            "files) -> refer records with boxes",
            dior_rsvg.convert,
        ),
        Converter(
            "rrsisd",
            "RRSIS-D (rrsisd/instances.json + refs(unc).p or .json, images/rrsisd/JPEGImages/) "
            "-> segment records with text-masks and RLE truth",
            rrsisd.convert,
        ),
        Converter(
            "geochat_instruct",
            "GeoChat_Instruct (LLaVA JSON with GeoChat boxes) -> records in grammar v1 "
            "(grounded_caption, refer, identify, vqa, caption, classify, multi_turn)",
            geochat_instruct.convert,
        ),
        Converter(
            "refgeo",
            "refGeo of GeoGround (metadata/ or metainfo/ *.jsonl, images/<subset>/) -> refer "
            "records with boxes and quads",
            refgeo.convert,
        ),
        Converter(
            "earthreason",
            "EarthReason of SegEarth-R1 (<split>/images, labels PNG, QAs JSON) -> "
            "reason_segment records, <none> for samples without target",
            earthreason.convert,
        ),
        Converter(
            "geochat_bench",
            "GeoChat-Bench (referring, region_captioning, lrben/hrben with RSVQA answers, aid, "
            "UCmerced *.jsonl) -> refer, identify, vqa and classify records scored by its rules",
            geochat_bench.convert,
        ),
    )
}

__all__ = ["CONVERTERS", "ConversionError", "Converter"]
