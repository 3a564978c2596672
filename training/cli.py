"""``geochat train`` and ``geochat merge``."""

from __future__ import annotations

import argparse
import sys

from geochat.training.recipe import RecipeError, load_recipe, recipe_names


def main(argv: list[str] | None = None) -> int:
    """``geochat train``: trains or fine-tunes a model with a recipe.

    ``geochat train RECIPE [--out DIR] [section.key=value ...]``.
    """
    parser = argparse.ArgumentParser(
        prog="geochat train",
        description="Train or fine-tune a geochat model with a recipe.",
        epilog=f"shipped recipes: {', '.join(recipe_names())}",
    )
    parser.add_argument("recipe", help="a shipped recipe's name or a path to a YAML recipe")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    parser.add_argument("--out", default="runs/train", help="checkpoints, logs and final model")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    # Intermixed: overrides may come after --out, as in the README's commands.
    args = parser.parse_intermixed_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except RecipeError as error:
        parser.error(str(error))
    from geochat.training.trainer import train

    try:
        train(recipe, args.out, resume=not args.no_resume)
    except RecipeError as error:
        # Data or model that cannot be found: checked before anything loads.
        print(f"geochat train: error: {error}", file=sys.stderr)
        return 2
    return 0


def merge_main(argv: list[str] | None = None) -> int:
    """``geochat merge``: folds a LoRA/DoRA adapter into its base model, or exports it for vLLM.

    ``geochat merge ADAPTER --out DIR [--base M] [--export-lora]``.
    """
    parser = merge_parser()
    args = parser.parse_args(argv)
    from geochat.training.merge import MergeError, export_lora, merge_adapter

    try:
        if args.export_lora:
            export_lora(args.adapter, args.out)
        else:
            merge_adapter(args.adapter, args.out, base=args.base)
    except MergeError as error:
        parser.error(str(error))
    return 0


def merge_parser() -> argparse.ArgumentParser:
    """The parser of ``geochat merge`` (parsing runs nothing)."""
    parser = argparse.ArgumentParser(
        prog="geochat merge",
        description="Fold a LoRA/DoRA adapter into its base model, or export a plain LoRA adapter "
        "for vLLM's --enable-lora.",
    )
    parser.add_argument("adapter", help="adapter folder written by geochat train")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--base", help="base model (default: the one the adapter names)")
    parser.add_argument("--export-lora", action="store_true", help="copy the adapter, no merge")
    return parser
