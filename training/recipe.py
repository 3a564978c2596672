"""Training recipes: YAML files that say which model, which data, which stage and how to train.

A recipe has five sections and an optional sixth (see ``training/recipes/*.yaml``)::

    model:     where the weights come from: `tiny: {...}` (random, from scratch) or
               `path: DIR_OR_HUB_ID`, and optionally `tokenizer: {vocab_size, loc_tokens}`
               to train a tokenizer on the training records first
    data:      `train` (a JSONL file, a build folder or a list of them), `val`, `max_length`,
               `tasks`, `balance` (tasks whose answers are balanced per question, so that the
               question alone predicts nothing), `augment` (`dihedral`: flips and quarter
               turns of the training images, their geometry moved along; ``training/augment.py``),
               `generate_eval` (validation records answered and scored at each evaluation)
    stage:     pretrain | align | finetune | qlora
    peft:      for finetune and qlora: `method` lora | dora, `r`, `alpha`, `dropout`,
               `parts` (any of llm, vision, connector), `train_connector` (fully)
    training:  keyword arguments of transformers' TrainingArguments
    loss:      optional, for models trained from scratch (``training/losses.py``):
               `coordinate_sigma` (grammar units) scores box and quad coordinates against a
               Gaussian around the truth (it needs location tokens); `position_weight` asks
               the visual tokens to hold their own grid position

Recipes are named by file stem (``nano-synthetic``) or given as a path, and any value can be
overridden from the command line with ``section.key=value`` (the value is parsed as YAML).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.augment import AUGMENTATIONS

RECIPES_DIR = Path(__file__).parent / "recipes"
STAGES = ("pretrain", "align", "finetune", "qlora")
PEFT_METHODS = ("lora", "dora")
PARTS = ("llm", "vision", "connector")
LOSS_OPTIONS = {"coordinate_sigma", "position_weight"}


class RecipeError(ValueError):
    """A recipe that cannot be found, read or run."""


@dataclass
class Recipe:
    """A parsed recipe; see the module docstring for the meaning of each section."""

    model: dict[str, Any]
    data: dict[str, Any]
    stage: str
    training: dict[str, Any]
    peft: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    name: str = "recipe"

    def check(self) -> None:
        """Raises :class:`RecipeError` for an unknown stage, method or part, or missing keys."""
        if self.stage not in STAGES:
            raise RecipeError(f"{self.name}: stage must be one of {STAGES}, got {self.stage!r}")
        if ("tiny" in self.model) == ("path" in self.model):
            raise RecipeError(f"{self.name}: model needs exactly one of 'tiny' or 'path'")
        if "train" not in self.data:
            raise RecipeError(f"{self.name}: data needs a 'train' source")
        if self.stage in ("finetune", "qlora"):
            method = self.peft.get("method")
            if method not in PEFT_METHODS:
                raise RecipeError(f"{self.name}: peft.method must be one of {PEFT_METHODS}")
            unknown = set(self.peft.get("parts", ["llm"])) - set(PARTS)
            if unknown:
                raise RecipeError(f"{self.name}: unknown peft parts {sorted(unknown)}")
        unknown = set(self.loss) - LOSS_OPTIONS
        if unknown:
            raise RecipeError(f"{self.name}: unknown loss options {sorted(unknown)}")
        if self.data.get("augment") not in (None, *AUGMENTATIONS):
            raise RecipeError(f"{self.name}: data.augment must be one of {AUGMENTATIONS} or null")


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``training/recipes``."""
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def _apply_override(document: dict[str, Any], override: str) -> None:
    key, separator, text = override.partition("=")
    if not separator or not key:
        raise RecipeError(f"an override is section.key=value, got {override!r}")
    *parents, leaf = key.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"cannot set {key!r}: {part!r} is not a section")
    node[leaf] = _parse_value(text)


def _parse_value(text: str) -> Any:
    """A YAML value, with numbers like ``3e-3`` read as floats (YAML 1.1 wants ``3.0e-3``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Reads a recipe by name or path and applies ``section.key=value`` overrides.

    Raises:
        RecipeError: For an unknown name, unreadable YAML, an unknown section or a bad value.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise RecipeError(f"no recipe {name_or_path!r}; shipped recipes: {recipe_names()}")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({error})") from error
    for override in overrides or []:
        _apply_override(document, override)
    unknown = set(document) - {"model", "data", "stage", "training", "peft", "loss"}
    if unknown:
        raise RecipeError(f"{path}: unknown sections {sorted(unknown)}")
    try:
        recipe = Recipe(name=path.stem, **document)
    except TypeError as error:
        raise RecipeError(f"{path}: {error}") from error
    recipe.check()
    return recipe
