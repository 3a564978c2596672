"""Backbone families by the checkpoint's `model_type` (DESIGN.md, "Model families").

::

    from geochat.modeling.families import load_backbone

    backbone = load_backbone("path/to/checkpoint")     # family chosen by config.json's model_type
    backbone.family.name, backbone.dialect             # "Qwen2.5-VL", "qwen25vl"
    inputs = backbone.family.build_inputs(backbone.processor, image, messages)

Everything above this registry speaks geochat's canonical grammar and pixel geometry; a
family's dialect is translated at this edge (:func:`dialect_for`, :func:`to_dialect`).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub.constants import is_offline_mode
from PIL import Image
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.processing_utils import ProcessorMixin

from geochat.grammar import (
    DIALECTS,
    CanonicalDialect,
    Dialect,
    GroundedObject,
    Qwen25VLDialect,
    get_dialect,
    parse,
)
from geochat.modeling.checkpoints import ADAPTER_CONFIG, resolve_checkpoint
from geochat.modeling.families.base import (
    Family,
    ModelInputs,
    Modules,
    content_parts,
    image_token,
)
from geochat.modeling.families.idefics3 import IDEFICS3
from geochat.modeling.families.llava import LLAVA
from geochat.modeling.families.qwen import QWEN2_5_VL, QWEN3_VL

FAMILIES: dict[str, Family] = {
    model_type: family
    for family in (IDEFICS3, QWEN2_5_VL, QWEN3_VL, LLAVA)
    for model_type in family.model_types
}
# A canonical phrase tag and its phrase: `<ref>the pool</ref>`.
PHRASE_TAG = re.compile("{}.*?{}".format(*map(re.escape, CanonicalDialect.SYNTAX.phrase)), re.S)
FRAME_DIALECTS = frozenset({Qwen25VLDialect.name})  # dialects in pixels of the resized image
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # what peft saves
PROCESSOR_MARK = "tokenizer_config.json"  # a folder a processor was saved into


@dataclass
class Backbone:
    """A loaded checkpoint and what geochat knows about it.

    Attributes:
        family: Its family.
        model: The model, in eval mode.
        processor: Its processor.
        dialect: The coordinate dialect it is read and prompted in: the family's, or an override.
    """

    family: Family
    model: PreTrainedModel
    processor: ProcessorMixin
    dialect: str

    def inputs(self, image: Image.Image | None, messages: list[dict[str, str]]) -> ModelInputs:
        """Model inputs for a conversation whose geometry is in geochat's canonical grammar.

        Region geometry in the messages is rewritten in the backbone's dialect first.

        Args:
            image: The image, or None.
            messages: `[{"role", "content": str}]`, `<image>` at the head of the first user
                turn when there is an image.

        Returns:
            The inputs and the frame the model sees the image in (for pixel dialects).
        """
        frame = None if image is None else self.family.input_frame(self.processor, image)
        if image is not None and self.dialect != "canonical":
            dialect = dialect_for(self.dialect, frame)
            messages = [
                {**m, "content": to_dialect(m["content"], image.width, image.height, dialect)}
                for m in messages
            ]
        return ModelInputs(self.family.build_inputs(self.processor, image, messages), frame)


def supported() -> str:
    """The supported `model_type` values, for error messages."""
    return ", ".join(f"{name} ({family.name})" for name, family in FAMILIES.items())


def model_type_of(source: str | Path) -> str:
    """The `model_type` in a checkpoint's `config.json` (a folder, or a hub id where reachable).

    Raises:
        FileNotFoundError: When the folder or its `config.json` is missing, or a hub id cannot
            be fetched (offline and not cached).
        ValueError: When `config.json` is not JSON or names no `model_type`, or the folder is
            a peft adapter (the message names its base and how to merge it).
    """
    folder = Path(source)
    if not folder.is_dir():
        if folder.exists() or not looks_like_hub_id(str(source)):
            raise FileNotFoundError(f"no model folder {source}")
        return _hub_model_type(str(source))
    path = folder / "config.json"
    if not path.is_file():
        if (folder / ADAPTER_CONFIG).is_file():
            raise ValueError(_adapter_message(folder))
        raise FileNotFoundError(f"{folder} has no config.json: it is not a saved checkpoint")
    try:
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{path} is not a JSON object: {error}") from error
    if not isinstance(model_type, str):
        raise ValueError(f"{path} names no model_type; supported: {supported()}")
    return model_type


def _hub_model_type(hub_id: str) -> str:
    """The `model_type` of a hub model (from the local cache when offline)."""
    try:
        return AutoConfig.from_pretrained(hub_id).model_type
    except OSError as error:
        # transformers' own message spans lines and points at its docs; one sentence says it.
        reason = (
            "is not in the local cache and HF_HUB_OFFLINE is set"
            if is_offline_mode()
            else f"could not be fetched ({str(error).splitlines()[0]})"
        )
        raise FileNotFoundError(f"no model folder {hub_id}, and as a hub id it {reason}") from error


def adapter_base(folder: str | Path) -> str | None:
    """The base model a peft adapter folder names (`base_model_name_or_path`), if any."""
    try:
        config = json.loads((Path(folder) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder}: {ADAPTER_CONFIG} is not readable JSON: {error}") from error
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    return base if isinstance(base, str) and base else None


def check_adapter_base(adapter: str | Path, base: str | Path) -> None:
    """An adapter goes only on a base of the family it was trained on (when that is known here).

    Args:
        adapter: A peft adapter folder.
        base: The model it is to be merged into or served on.

    Raises:
        ValueError: When the base the adapter names is readable here and of another family than
            `base`.
    """
    named = adapter_base(adapter)
    if not named or named == str(base):
        return
    try:
        trained, family = family_of(named), family_of(base)
    except (OSError, ValueError):
        return  # a base that is not here: nothing to compare with
    if trained is not family:
        raise ValueError(
            f"{adapter} is an adapter for {named} ({trained.name}), not for {base} "
            f"({family.name}); use it with a {trained.name} model"
        )


def _adapter_message(folder: Path) -> str:
    """Why an adapter folder does not load as a model, and what to do instead."""
    base = adapter_base(folder)
    of = f"of {base}" if base else "that names no base model"
    return (
        f"{folder} is a LoRA adapter {of}, not a full checkpoint: merge it into its base "
        f"first (geochat merge {folder} --out DIR) and load the merged folder"
    )


def looks_like_hub_id(text: str) -> bool:
    """`owner/name`: a relative path of two parts that is not a file here may be a hub id."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def family_of(folder: str | Path) -> Family:
    """The family of a checkpoint folder, from its `config.json`'s `model_type`.

    Raises:
        FileNotFoundError: When the folder or its `config.json` is missing.
        ValueError: For a `model_type` no family supports.
    """
    model_type = model_type_of(folder)
    if model_type not in FAMILIES:
        raise ValueError(
            f"{folder}: model_type {model_type!r} is not supported; supported: {supported()}"
        )
    return FAMILIES[model_type]


def dialect_for(name: str, frame: tuple[int, int] | None = None) -> Dialect:
    """The dialect to read and write a backbone's geometry with.

    Args:
        name: A name in `geochat.grammar.DIALECTS`.
        frame: `(width, height)` of the image the model saw, for `qwen25vl`.

    Raises:
        geochat.grammar.GrammarError: For an unknown name.
    """
    if name in FRAME_DIALECTS:
        return Qwen25VLDialect(input_size=frame)
    return get_dialect(name)


def to_dialect(
    text: str, width: int, height: int, dialect: Dialect, source: str | Dialect = "canonical"
) -> str:
    """Rewrites the geometry in a message (e.g. a region, a training target) in another dialect.

    Text outside geometry tags is kept; phrases (`<ref>`) are left as written.

    Args:
        text: A message whose geometry is in `source`.
        width: Width of the image in pixels.
        height: Height of the image in pixels.
        dialect: The dialect to write.
        source: The dialect the message is written in.
    """
    objects = parse(text, width, height, source).objects
    return rewrite_geometry(text, objects, width, height, dialect, phrases=False)


def to_answer(text: str, width: int, height: int, dialect: Dialect) -> str:
    """An answer in the canonical grammar (a training target), written as `dialect` answers.

    Tag dialects: as :func:`to_dialect`. Dialects that write an object's phrase inside its
    geometry (Qwen's JSON `label`): one list of every object, each labelled with its phrase,
    as Qwen2.5-VL and Qwen3-VL answer grounding questions
    (`[{"bbox_2d": [...], "label": "the pool"}]`); the answer's prose, where it has more than
    geometry and phrases, comes first with its phrases as plain words; "nothing found" is the
    empty list.

    Args:
        text: An answer whose geometry is in the canonical grammar.
        width: Width of the image in pixels.
        height: Height of the image in pixels.
        dialect: The dialect to write.
    """
    if not dialect.labels_in_geometry:
        return to_dialect(text, width, height, dialect)
    parsed = parse(text, width, height)
    if not parsed.objects:
        return text
    listing = dialect.format(parsed.objects, width, height)
    spans = sorted({item.span for item in parsed.objects})
    starts, ends = [0, *(end for _, end in spans)], [*(start for start, _ in spans), len(text)]
    rest = PHRASE_TAG.sub("", "".join(text[a:b] for a, b in zip(starts, ends, strict=True)))
    if not any(character.isalnum() for character in rest):
        return listing
    return f"{parsed.text.strip()}\n{listing}"


def to_canonical(text: str, objects: list[GroundedObject], width: int, height: int) -> str:
    """A model's answer with its geometry rewritten in the canonical grammar.

    `objects` were parsed from `text` in the model's dialect; their phrases (e.g. Qwen's JSON
    labels) are written as `<ref>`. This is the form `geochat eval` scores.
    """
    return rewrite_geometry(text, objects, width, height, get_dialect("canonical"), phrases=True)


def rewrite_geometry(
    text: str,
    objects: list[GroundedObject],
    width: int,
    height: int,
    dialect: Dialect,
    phrases: bool,
) -> str:
    """Replaces each geometry span of `text` by its objects written in `dialect`.

    Args:
        text: The text the objects were parsed from.
        objects: `parse(text, ...).objects`, in pixels of a `width x height` image.
        width: Width of the image in pixels.
        height: Height of the image in pixels.
        dialect: The dialect to write.
        phrases: Write the objects' phrases too (False when the text keeps them as written).
    """
    spans: dict[tuple[int, int], list] = {}
    for item in objects:
        if item.kind != "none":
            spans.setdefault(item.span, []).append(item)
    pieces, position = [], 0
    for (start, end), found in sorted(spans.items()):
        plain = [
            {"kind": o.kind, "hbb": o.hbb, "quad": o.quad, "mask": o.mask}
            | ({"phrase": o.phrase} if phrases and o.phrase else {})
            for o in found
        ]
        pieces += [text[position:start], dialect.format(plain, width, height)]
        position = end
    return "".join([*pieces, text[position:]])


def load_backbone(
    folder: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    dialect: str | None = None,
    base: str | Path | None = None,
) -> Backbone:
    """Loads a checkpoint folder, or a peft adapter folder on its base, with its family's classes.

    An adapter folder (``adapter_config.json``, as ``geochat train`` writes) loads its base
    (``base_model_name_or_path``, or ``base``) like any model, then the LoRA/DoRA adapter with
    peft, folded into the base weights; the processor is the one saved beside the adapter
    (with its imagery settings), else the base's.

    Args:
        folder: Written by `save_pretrained` of a model and its processor (or tokenizer, image
            processor and chat template), or of a peft adapter.
        dtype: The weights' dtype; None keeps the saved one.
        device: Where to put the model.
        dialect: A dialect name that replaces the family's (a checkpoint fine-tuned to write
            another format); None keeps the family's.
        base: For an adapter folder, the base model to put it on (a folder, training run folder
            or hub id) instead of the one it names.

    Raises:
        FileNotFoundError: When the folder or its `config.json` is missing, or an adapter's
            base is not here.
        ValueError: For an unsupported `model_type`, an unknown dialect, a processor that
            cannot serve the model (no image token, a different image token count), `base`
            for a full checkpoint, or an adapter that does not fit its base.
    """
    adapter = is_adapter_folder(folder)
    if base is not None and not adapter:
        raise ValueError(f"{folder} is a full checkpoint; a base model is only for an adapter")
    model_folder = adapter_base_folder(folder, base) if adapter else folder
    family = family_of(model_folder)
    if adapter:
        check_adapter(folder, model_folder, family)  # before the base's weights load
    chosen = dialect or family.dialect
    if chosen not in DIALECTS:
        raise ValueError(f"unknown dialect {chosen!r}; known: {sorted(DIALECTS)}")
    config = AutoConfig.from_pretrained(model_folder)
    processor = family.load_processor(processor_folder(folder, model_folder), config)
    _check_image_token(folder, family, config, processor)
    model = family.model_class.from_pretrained(model_folder, dtype=dtype)
    if adapter:
        model = apply_adapter(model, folder, model_folder, family)
    # transformers' wrapper of `to` types its argument as the model itself.
    model = model.to(device).eval()  # type: ignore[arg-type]
    return Backbone(family, model, processor, chosen)


def is_adapter_folder(path: str | Path) -> bool:
    """Whether `path` is a peft adapter folder (`adapter_config.json` and no `config.json`)."""
    folder = Path(path)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def adapter_base_folder(adapter: str | Path, base: str | Path | None = None) -> str | Path:
    """The base model to load an adapter on, resolved like any model (`resolve_checkpoint`).

    Args:
        adapter: A peft adapter folder.
        base: Replaces the base the adapter names (`base_model_name_or_path`).

    Raises:
        FileNotFoundError: When the base is not here (nor, for a hub id, reachable).
        ValueError: When the adapter names no base and none is given, or the base is no
            model geochat loads.
    """
    chosen = base or adapter_base(adapter)
    if not chosen:
        raise ValueError(f"{adapter} is a LoRA adapter that names no base model; pass --base DIR")
    try:
        folder = resolve_checkpoint(chosen)
        family_of(folder)
    except OSError as error:
        raise FileNotFoundError(
            f"{adapter} is a LoRA adapter of {chosen}, which cannot be loaded ({error}); "
            "pass its base with --base DIR"
        ) from error
    except ValueError as error:
        raise ValueError(
            f"{adapter} is a LoRA adapter of {chosen}, which is not usable: {error}"
        ) from error
    return folder


def processor_folder(adapter: str | Path, base: str | Path) -> str | Path:
    """Where an adapter's processor is: beside it (training saves it there), else in the base."""
    return adapter if (Path(adapter) / PROCESSOR_MARK).is_file() else base


def check_adapter(adapter: str | Path, base: str | Path, family: Family) -> None:
    """An adapter must have weights and be trained on a base of `family`, where that is known.

    Raises:
        ValueError: When the adapter has no weights, or was trained on another family (by the
            base it names, or the model class peft recorded when it saved the adapter).
    """
    if not any((Path(adapter) / name).is_file() for name in ADAPTER_WEIGHTS):
        raise ValueError(f"{adapter} holds no adapter weights ({ADAPTER_WEIGHTS[0]})")
    check_adapter_base(adapter, base)
    recorded = _recorded_family(adapter)
    if recorded is not None and recorded is not family:
        raise ValueError(
            f"{adapter} is an adapter for a {recorded.name} model, not for {base} "
            f"({family.name}); use it with a {recorded.name} model"
        )


def apply_adapter(
    model: PreTrainedModel, adapter: str | Path, base: str | Path, family: Family
) -> PreTrainedModel:
    """Loads a LoRA/DoRA adapter on its base with peft and folds it into the weights.

    Raises:
        ValueError: When the adapter's modules or weight shapes are not the base's.
    """
    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft's warnings are errors here (strict check)
            loaded = PeftModel.from_pretrained(model, str(adapter), strict_adapter_check="error")
    except (ValueError, RuntimeError, KeyError) as error:
        # peft's messages list every module or tensor; the sentence says what went wrong.
        raise ValueError(
            f"{adapter} does not fit {base} ({family.name}): its modules or weight shapes are "
            "not the base's (an adapter trained on another model)"
        ) from error
    return loaded.merge_and_unload()


def _recorded_family(adapter: str | Path) -> Family | None:
    """The family of the model class peft recorded when it saved the adapter, if it did."""
    config = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    mapping = config.get("auto_mapping") if isinstance(config, dict) else None
    recorded = mapping.get("base_model_class") if isinstance(mapping, dict) else None
    for family in FAMILIES.values():
        if family.model_class.__name__ == recorded:
            return family
    return None


def _check_image_token(
    folder: str | Path, family: Family, config: PretrainedConfig, processor: ProcessorMixin
) -> None:
    """The tokenizer must hold the image token, with the id the model's config expects."""
    token = image_token(processor)
    found = processor.tokenizer.get_vocab().get(token)
    if found is None:
        raise ValueError(
            f"{folder}: the tokenizer has no {token!r} token, which {family.name} uses to place "
            "the image; save the model's own tokenizer in the folder"
        )
    expected = family.image_token_id(config)
    if found != expected:
        raise ValueError(
            f"{folder}: the tokenizer's {token!r} is id {found} but the model expects {expected}"
        )


__all__ = [
    "FAMILIES",
    "FRAME_DIALECTS",
    "Backbone",
    "Family",
    "ModelInputs",
    "Modules",
    "adapter_base_folder",
    "apply_adapter",
    "check_adapter",
    "content_parts",
    "dialect_for",
    "family_of",
    "is_adapter_folder",
    "load_backbone",
    "looks_like_hub_id",
    "model_type_of",
    "processor_folder",
    "rewrite_geometry",
    "supported",
    "to_answer",
    "to_canonical",
    "to_dialect",
]
