"""``geochat convert``: turns a released checkpoint of another code base into one geochat loads.

Usage::

    geochat convert geochat-7b --src DIR --out DIR [--image-size 504] [--vision-tower NAME]

``geochat-7b`` reads the LLaVA-1.5 layout that GeoChat-7B (and GeoGround) were released in and
writes a transformers ``LlavaForConditionalGeneration`` folder with its processor and chat
template (:mod:`geochat.modeling.llava15`); ``geochat chat --model OUT``, ``geochat serve --model
OUT`` and vLLM load it, and its answers are read in GeoChat's coordinate dialect.
"""

from __future__ import annotations

import argparse
import sys

from geochat.modeling.llava15 import GEOCHAT_IMAGE_SIZE, convert_llava15

FORMATS = ("geochat-7b",)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geochat convert",
        description="Convert a released checkpoint into a folder geochat and vLLM load.",
    )
    parser.add_argument("format", choices=FORMATS, help="the layout of --src")
    parser.add_argument("--src", required=True, help="the released checkpoint folder")
    parser.add_argument("--out", required=True, help="the folder to write (must not exist)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=GEOCHAT_IMAGE_SIZE,
        help="the vision tower's input side in pixels (GeoChat-7B: 504)",
    )
    parser.add_argument(
        "--vision-tower",
        help="CLIP vision checkpoint (folder or hub id) instead of config.json's mm_vision_tower",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``geochat convert``: converts a released checkpoint (GeoChat-7B) for geochat and vLLM.

    Returns 0 on success, 2 for a source it cannot convert.
    """
    args = _parser().parse_args(argv)
    try:
        out = convert_llava15(args.src, args.out, args.image_size, args.vision_tower)
    except (OSError, ValueError) as error:  # ConversionError is a ValueError
        print(f"geochat convert: {error}", file=sys.stderr)
        return 2
    print(f"geochat convert: wrote {out}")
    return 0
