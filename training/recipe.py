"""Training recipes: typed YAML configs that say which model, which data, which stage and how.

A recipe (``training/recipes/*.yaml``) has the sections ``model`` (:class:`ModelSection`),
``data`` (:class:`DataSection`), ``stage`` (pretrain | align | finetune | qlora), ``peft``
(:class:`PeftSection`), ``training`` (keyword arguments of transformers' ``TrainingArguments``)
and ``loss`` (:class:`LossSection`). Recipes are named by file stem (``nano-synthetic``) or given
as a path, and any value can be overridden from the command line with ``section.key=value``
(``model.tiny.key=value`` inside ``model.tiny``; ``section={...}`` replaces a whole section).

Every key is checked against its section's declared fields, and every value against the field's
type: an unknown key or a value of the wrong type is a :class:`RecipeError` that names the key
(and lists the valid ones, or the expected type), so a misspelling fails before anything loads.
An override's text is read as YAML where the field wants a number, a list or a mapping, and kept
as it is where the field is a string (``training.run_name=nan`` names a run "nan").
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from geochat.records import TASKS
from geochat.training.augment import AUGMENTATIONS

RECIPES_DIR = Path(__file__).parent / "recipes"
STAGES = ("pretrain", "align", "finetune", "qlora")
PEFT_METHODS = ("lora", "dora")
PARTS = ("llm", "vision", "connector")
DTYPES = ("float32", "float16", "bfloat16")
# data.val's default: the validation shards of the training builds, when they have any.
AUTO = "auto"
# TrainingArguments that `geochat train` sets itself, and where they come from.
SET_BY_TRAIN = {
    "output_dir": "the --out option",
    "remove_unused_columns": "geochat's collator, which needs every column",
}


class RecipeError(ValueError):
    """A recipe that cannot be found, read or run."""


@dataclass
class ModelSection:
    """Where the weights come from: exactly one of ``tiny`` or ``path``.

    Attributes:
        path: A saved model's folder, or a Hugging Face hub id
            (``HuggingFaceTB/SmolVLM-256M-Instruct``; from the local cache when HF_HUB_OFFLINE
            is set).
        tiny: Keyword arguments of :func:`geochat.modeling.tiny` (its seed is
            ``training.seed``): a random model of geochat's architecture, trained from scratch.
        tokenizer: With ``tiny`` only: keyword arguments of
            :func:`geochat.modeling.train_tokenizer`, to train a tokenizer on the training
            records first (without it, ``tiny`` trains one on a small built-in corpus).
        dtype: The weights' dtype when loading ``path`` (float32, float16, bfloat16); None
            keeps the saved one.
    """

    path: str | None = None
    tiny: dict[str, Any] | None = None
    tokenizer: dict[str, Any] | None = None
    dtype: str | None = None


@dataclass
class DataSection:
    """What the model reads (see ``training/data.py``).

    Attributes:
        train: A JSONL file, a build folder (``geochat build``; its ``train`` shards) or a list
            of them, mixed in that order.
        val: The validation source (its ``val`` shards or records); ``auto`` takes the ``val``
            shards of the training builds when they have any and trains without validation
            when not; None trains without validation.
        max_length: Longest sequence in tokens; longer conversations are cut.
        tasks: Keep only these tasks (``geochat.records.TASKS``); None keeps all.
        balance: Tasks whose answers are balanced per question, so that the question alone
            predicts nothing (``training.data.balance_answers``).
        augment: ``dihedral``: each training image in one of its eight flips and quarter
            turns, its geometry moved along (``training/augment.py``); None: as they are.
        generate_eval: Validation records answered and scored at each evaluation; 0: none.
        streaming: Read the training shards lazily (sources too large to hold; no balance).
        limit: Keep at most this many training records (not streaming); None keeps all.
        val_limit: Keep at most this many validation records.
    """

    train: str | list[str]
    val: str | list[str] | None = AUTO
    max_length: int = 2048
    tasks: list[str] | None = None
    balance: list[str] = field(default_factory=list)
    augment: str | None = None
    generate_eval: int = 0
    streaming: bool = False
    limit: int | None = None
    val_limit: int = 256


@dataclass
class PeftSection:
    """Adapters for the finetune and qlora stages (peft).

    Attributes:
        method: ``lora`` or ``dora`` (weight-decomposed LoRA).
        r: Rank of the adapters.
        alpha: Scale of the adapters (peft's ``lora_alpha``).
        dropout: Dropout on the adapters' input.
        parts: Where adapters go: any of ``llm``, ``vision``, ``connector``.
        train_connector: Also train the whole connector (compressor and projector).
    """

    method: str = "lora"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    parts: list[str] = field(default_factory=lambda: ["llm"])
    train_connector: bool = False


@dataclass
class LossSection:
    """Loss terms for models trained from scratch (``training/losses.py``); the defaults add none.

    Attributes:
        coordinate_sigma: Scores each box and quad coordinate against a Gaussian of this width
            (grammar units) around the truth; needs location tokens. None: plain cross-entropy.
        position_weight: Weight of a term that asks the visual tokens to hold their own grid
            position; 0: none.
    """

    coordinate_sigma: float | None = None
    position_weight: float = 0.0


@dataclass
class Recipe:
    """A checked recipe; ``training`` holds keyword arguments of ``TrainingArguments``."""

    model: ModelSection
    data: DataSection
    stage: str
    training: dict[str, Any] = field(default_factory=dict)
    peft: PeftSection = field(default_factory=PeftSection)
    loss: LossSection = field(default_factory=LossSection)
    name: str = "recipe"

    def check(self) -> None:
        """Raises :class:`RecipeError` for values of the right type that are not allowed."""
        _one_of("stage", self.stage, STAGES)
        if (self.model.tiny is None) == (self.model.path is None):
            raise RecipeError("model needs exactly one of 'tiny' or 'path'")
        if self.model.tokenizer is not None and self.model.tiny is None:
            raise RecipeError("model.tokenizer trains a tokenizer for model.tiny, not model.path")
        if self.model.dtype is not None:
            _one_of("model.dtype", self.model.dtype, DTYPES)
        _one_of("peft.method", self.peft.method, PEFT_METHODS)
        for part in self.peft.parts:
            _one_of("peft.parts", part, PARTS)
        for key in ("tasks", "balance"):
            for task in getattr(self.data, key) or ():
                _one_of(f"data.{key}", task, TASKS)
        if self.data.augment is not None:
            _one_of("data.augment", self.data.augment, AUGMENTATIONS)

    def document(self) -> dict[str, Any]:
        """The recipe as a YAML-ready mapping, which :func:`load_recipe` reads back."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RecipeError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


SECTIONS: dict[str, Any] = {
    "model": ModelSection,
    "data": DataSection,
    "stage": str,
    "peft": PeftSection,
    "training": dict,
    "loss": LossSection,
}
REQUIRED_SECTIONS = ("model", "data", "stage")
# Mappings inside a section whose keys are checked too: keyword arguments of a function.
NESTED = ("model.tiny", "model.tokenizer")


@functools.cache
def section_fields(section: str) -> dict[str, Any]:
    """The keys a section (``data``) or a mapping inside one (``model.tiny``) takes, with types.

    Raises:
        RecipeError: For a name that is neither.
    """
    kind = SECTIONS.get(section)
    if dataclasses.is_dataclass(kind):
        return typing.get_type_hints(kind)
    if section == "training":
        from transformers import TrainingArguments

        hints = typing.get_type_hints(TrainingArguments)
        return {k: v for k, v in hints.items() if k not in SET_BY_TRAIN}
    from geochat.modeling import tiny, train_tokenizer

    # tiny's seed is training.seed, and its tokenizer comes from model.tokenizer.
    functions: dict[str, tuple[Callable[..., Any], set[str]]] = {
        "model.tiny": (tiny, {"seed", "tokenizer"}),
        "model.tokenizer": (train_tokenizer, {"texts"}),
    }
    if section not in functions:
        raise RecipeError(f"{section} is a value, not a section with keys")
    function, excluded = functions[section]
    hints = typing.get_type_hints(function)
    parameters = inspect.signature(function).parameters
    return {name: hints[name] for name in parameters if name not in excluded}


def _field(section: str, key: str) -> Any:
    """The declared type of ``section.key``.

    Raises:
        RecipeError: For a key the section does not take, with the keys it takes.
    """
    if section == "training" and key in SET_BY_TRAIN:
        raise RecipeError(f"training.{key} is set by {SET_BY_TRAIN[key]}, not by a recipe")
    keys = section_fields(section)
    if key not in keys:
        raise RecipeError(_unknown(key, section, list(keys)))
    return keys[key]


def _declared_type(key: str) -> Any:
    """The type a dotted key (``data.max_length``, ``model.tiny.hidden``) is declared with."""
    parts = key.split(".")
    if parts[0] not in SECTIONS:
        raise RecipeError(_unknown(parts[0], None, list(SECTIONS)))
    # A whole section is given as a mapping (`model={path: x}`), the stage as a string.
    kind = str if parts[0] == "stage" else dict
    for depth in range(1, len(parts)):
        kind = _field(".".join(parts[:depth]), parts[depth])
    return kind


def _unknown(key: str, section: str | None, valid: list[str]) -> str:
    """The message for an unknown key: what was given, a close match, the valid keys."""
    guess = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    if section is None:
        return f"unknown section {key!r}{hint}; valid sections: {', '.join(valid)}"
    return (
        f"unknown key '{section}.{key}'{hint}; valid keys of {section}: {', '.join(sorted(valid))}"
    )


_MISMATCH = object()


def _as(value: Any, kind: Any) -> Any:
    """``value`` as a ``kind`` (a type annotation), or ``_MISMATCH``.

    Widening only: an int is a valid float (kept as the int), and a string that reads as a
    number is a float (YAML 1.1 reads ``3e-3`` as a string).
    """
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        for member in args:
            converted = _as(value, member)
            if converted is not _MISMATCH:
                return converted
        return _MISMATCH
    if origin is Literal:
        exact = any(type(value) is type(a) and value == a for a in args)
        return value if exact else _MISMATCH
    if kind is type(None):
        return None if value is None else _MISMATCH
    if isinstance(value, bool) and kind in (int, float):
        return _MISMATCH
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return _MISMATCH
    if kind is float:
        return value if isinstance(value, int | float) else _MISMATCH
    if origin is list or kind is list:
        if not isinstance(value, list):
            return _MISMATCH
        items = [_as(item, args[0]) if args else item for item in value]
        return _MISMATCH if any(item is _MISMATCH for item in items) else items
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            return _MISMATCH
        entries = {k: _as(v, args[1]) if args else v for k, v in value.items()}
        return _MISMATCH if _MISMATCH in entries.values() else entries
    if isinstance(kind, type) and issubclass(kind, Enum):
        return value if value in {member.value for member in kind} else _MISMATCH
    if isinstance(kind, type):
        return value if isinstance(value, kind) else _MISMATCH
    # An annotation this module cannot check (none in the recipes' fields today): the consumer
    # (TrainingArguments, tiny) checks the value.
    return value


def _type_name(kind: Any) -> str:
    """A readable name of a type annotation: ``int``, ``str or list[str] or null``."""
    if kind is type(None):
        return "null"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(member) for member in args)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if isinstance(kind, type) and issubclass(kind, Enum):
        return f"one of {', '.join(str(member.value) for member in kind)}"
    return getattr(kind, "__name__", str(kind))


def _convert(value: Any, kind: Any, key: str) -> Any:
    converted = _as(value, kind)
    if converted is _MISMATCH:
        raise RecipeError(f"{key} must be {_type_name(kind)}, got {value!r}")
    return converted


def _admits(kind: Any, wanted: type) -> bool:
    if kind is wanted or kind is Any:
        return True
    if typing.get_origin(kind) in (Union, types.UnionType):
        return any(_admits(member, wanted) for member in typing.get_args(kind))
    return False


def parse_override_value(key: str, text: str) -> Any:
    """The value of ``key=text``, read according to the key's declared type.

    The text is read as YAML (``[a, b]``, ``{path: x}``, ``false``, ``null``, ``3e-3``); where
    that does not fit the type and the field takes a string, the text is kept as it is.

    Raises:
        RecipeError: For an unknown key or a value that does not fit the key's type.
    """
    kind = _declared_type(key)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if _as(value, kind) is _MISMATCH and _admits(kind, str):
        return text
    return _convert(value, kind, key)


def _check_mapping(values: Any, section: str) -> dict[str, Any]:
    """A section's or a nested mapping's keys and values, checked against their declared types."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"{section} must be a mapping of its keys, got {values!r}")
    checked = {}
    for key, value in values.items():
        name = f"{section}.{key}"
        checked[key] = _convert(value, _field(section, str(key)), name)
        if name in NESTED and checked[key] is not None:
            checked[key] = _check_mapping(checked[key], name)
    return checked


def _section(kind: Any, values: Any, section: str) -> Any:
    """The section dataclass of ``values``; a field without a default must be given."""
    checked = _check_mapping(values, section)
    for item in dataclasses.fields(kind):
        no_default = item.default is dataclasses.MISSING
        if no_default and item.default_factory is dataclasses.MISSING and item.name not in checked:
            raise RecipeError(f"{section}.{item.name} is required")
    return kind(**checked)


def recipe_from_document(document: Any, name: str = "recipe") -> Recipe:
    """Checks a recipe's mapping (read from YAML) and returns the :class:`Recipe`.

    Raises:
        RecipeError: For an unknown section or key, a missing one, or a value of the wrong type.
    """
    if not isinstance(document, dict):
        raise RecipeError(f"a recipe is a mapping of sections ({', '.join(SECTIONS)})")
    for key in document:
        if key not in SECTIONS:
            raise RecipeError(_unknown(str(key), None, list(SECTIONS)))
    for key in REQUIRED_SECTIONS:
        if key not in document:
            raise RecipeError(f"the recipe has no {key!r} section")
    recipe = Recipe(
        model=_section(ModelSection, document["model"], "model"),
        data=_section(DataSection, document["data"], "data"),
        stage=_convert(document["stage"], str, "stage"),
        training=_check_mapping(document.get("training"), "training"),
        peft=_section(PeftSection, document.get("peft"), "peft"),
        loss=_section(LossSection, document.get("loss"), "loss"),
        name=name,
    )
    recipe.check()
    return recipe


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``training/recipes``."""
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def _apply_override(document: dict[str, Any], override: str) -> None:
    key, separator, text = override.partition("=")
    if not separator or not key:
        raise RecipeError(f"an override is section.key=value, got {override!r}")
    value = parse_override_value(key, text)
    *parents, leaf = key.split(".")
    node = document
    for part in parents:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise RecipeError(f"cannot set {key!r}: {part!r} is not a mapping")
    node[leaf] = value


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Reads a recipe by name or path and applies ``section.key=value`` overrides.

    Raises:
        RecipeError: For an unknown name, unreadable YAML, an unknown section or key, or a
            value of the wrong type.
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
    if not isinstance(document, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections ({', '.join(SECTIONS)})")
    for override in overrides or []:
        try:
            _apply_override(document, override)
        except RecipeError as error:
            raise RecipeError(f"override {override!r}: {error}") from None
    try:
        return recipe_from_document(document, path.stem)
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from None
