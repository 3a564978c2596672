"""Training on transformers' Trainer: the stages, parameter-efficient fine-tuning, exact resume.

Distributed training, mixed precision, gradient accumulation and checkpointing all come from
transformers and accelerate (``accelerate launch -m geochat.cli train ...`` with a config from
``training/accelerate/``); nothing here is hand-written distributed code.

Stages:
    pretrain: every weight learns (a model trained from scratch).
    align: only the connector (compressor and projector) learns; vision and LLM are frozen.
    finetune: LoRA or DoRA adapters (peft) on the chosen parts; optionally the connector fully.
    qlora: finetune on a 4-bit base (bitsandbytes; meant for CUDA); the vision tower, the
        connector and the head stay unquantised.

A ``model.path`` checkpoint of any backbone family trains (geochat/Idefics3/SmolVLM, Qwen2.5-VL,
Qwen3-VL, LLaVA; :mod:`geochat.modeling.families`, chosen by its ``model_type``): the family
names the modules of each part (adapter targets, what is frozen or kept unquantised), its chat
template draws the turns and its dialect writes the answers' geometry (:mod:`.collator`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import PreTrainedModel, TrainerCallback, TrainingArguments, set_seed
from transformers.processing_utils import ProcessorMixin

from geochat.fileio import atomic_write_text
from geochat.modeling import FINAL_DIR, last_complete_checkpoint, tiny
from geochat.modeling.families import Family, Modules, family_of, load_backbone
from geochat.modeling.families.base import TrainedInputs
from geochat.modeling.families.idefics3 import IDEFICS3
from geochat.modeling.tokenizer import train_tokenizer
from geochat.records import find_shards
from geochat.training.collator import ChatCollator
from geochat.training.data import (
    RecordDataset,
    StreamingRecordDataset,
    split_shards,
    training_imagery,
    training_native_input,
)
from geochat.training.evaluation import GenerationEval, GeoChatTrainer
from geochat.training.losses import CoordinateTargets, TrainingLoss
from geochat.training.recipe import AUTO, Recipe, RecipeError

RECIPE_FILE = "recipe.yaml"
LOG_FILE = "log.jsonl"
# The family's part (`Modules.parts`) that each recipe part (`peft.parts`) names.
PARTS = {"llm": "language_model", "vision": "vision_tower", "connector": "connector"}
# A Hugging Face hub id: a name, optionally under an owner (`HuggingFaceTB/SmolVLM-256M-Instruct`).
HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*")


def _records_text(source: str | Path | Sequence[str | Path]) -> list[str]:
    """Every turn of every record of a source: the corpus a new tokenizer is trained on."""
    texts = []
    for shard in find_shards(source):
        with shard.open(encoding="utf-8") as handle:
            texts += [t["value"] for line in handle for t in json.loads(line)["conversations"]]
    return texts


def build_model(recipe: Recipe) -> tuple[PreTrainedModel, ProcessorMixin, Family]:
    """Creates (``model.tiny``) or loads (``model.path``) the model, its processor and family."""
    spec = recipe.model
    if spec.tiny is not None:
        options = dict(spec.tiny)
        if spec.tokenizer is not None:
            corpus = _records_text(recipe.data.train)
            options["tokenizer"] = train_tokenizer(corpus, **spec.tokenizer)
        return (*tiny(seed=recipe.training.get("seed", 0), **options), IDEFICS3)
    path = spec.path
    assert path is not None  # a recipe has exactly one of model.tiny and model.path
    try:
        family = family_of(path)
        if recipe.stage == "qlora":
            return (*_load_4bit(path, family), family)
        backbone = load_backbone(path, dtype=_dtype(spec.dtype))
    except ValueError as error:
        raise RecipeError(f"model.path: {error}") from error
    return backbone.model, backbone.processor, family


def _dtype(name: str | None) -> torch.dtype | None:
    return getattr(torch, name) if name else None


def quantization_config() -> Any:
    """QLoRA's 4-bit NF4 settings (the skipped modules are the family's, see `_load_4bit`)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def _load_4bit(path: str, family: Family) -> tuple[PreTrainedModel, ProcessorMixin]:
    from peft import prepare_model_for_kbit_training
    from transformers import AutoConfig

    quantization = quantization_config()
    # Full module paths (transformers matches them from the start of a name): the vision
    # tower, the connector and the head stay in 16 bits; only the LLM is quantised.
    quantization.llm_int8_skip_modules = family.modules.quantization_skip()
    model = family.model_class.from_pretrained(
        path, quantization_config=quantization, dtype=torch.bfloat16
    )
    processor = family.load_processor(path, AutoConfig.from_pretrained(path))
    return prepare_model_for_kbit_training(model), processor


def lora_targets(model: torch.nn.Module, modules: Modules, parts: Sequence[str]) -> list[str]:
    """The linear layers (4-bit ones included) of the recipe's parts, by full module name.

    Args:
        model: The model.
        modules: Its family's module names.
        parts: Recipe parts: any of ``llm``, ``vision``, ``connector``.
    """
    wanted = {PARTS[part] for part in parts}
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and modules.part_of(name) in wanted
    ]


def apply_stage(model: PreTrainedModel, recipe: Recipe, family: Family) -> torch.nn.Module:
    """Sets what learns for the recipe's stage; returns the model to train (peft-wrapped or not)."""
    if recipe.stage == "pretrain":
        model.requires_grad_(True)
        return model
    connector = family.modules.connector
    if recipe.stage == "align":
        model.requires_grad_(False)
        for name in connector:
            model.get_submodule(name).requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    peft = recipe.peft
    config = LoraConfig(
        r=peft.r,
        lora_alpha=peft.alpha,
        lora_dropout=peft.dropout,
        use_dora=peft.method == "dora",
        target_modules=lora_targets(model, family.modules, peft.parts),
        modules_to_save=list(connector) if peft.train_connector else None,
    )
    return get_peft_model(model, config)


def check_sources(recipe: Recipe) -> None:
    """Checks that the recipe's data and model can be found, before anything is loaded.

    Raises:
        RecipeError: For a data source that does not exist or holds no shard, a model folder
            that does not exist or holds no saved model, or a hub id that is not in the local
            cache while HF_HUB_OFFLINE is set.
    """
    for key, source in (("data.train", recipe.data.train), ("data.val", recipe.data.val)):
        if source is None or (key == "data.val" and source == AUTO):
            continue
        try:
            find_shards(source)
        except FileNotFoundError as error:
            raise RecipeError(f"{key}: {error}") from None
    if recipe.model.path is not None:
        check_model_path(recipe.model.path)


def check_model_path(path: str) -> None:
    """Checks that ``path`` is a saved model's folder or a hub id that can be downloaded.

    Raises:
        RecipeError: When it is neither, in one sentence that says what to do.
    """
    from huggingface_hub import constants

    folder = Path(path)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise RecipeError(f"model.path: {path} holds no saved model (no config.json)")
        return
    if folder.exists() or not HUB_ID.fullmatch(path):
        raise RecipeError(f"model.path: no such model folder: {path}")
    # Read at call time: transformers and the hub client obey the same flag.
    if constants.HF_HUB_OFFLINE and not _in_hub_cache(path):
        raise RecipeError(
            f"model.path: {path} is neither a local folder nor in the Hugging Face cache, and "
            f"HF_HUB_OFFLINE is set: download it first (hf download {path}) or give a folder"
        )


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the hub model ``repo_id`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid hub id, so not in the cache
        return False


def build_datasets(
    recipe: Recipe,
) -> tuple[RecordDataset | StreamingRecordDataset, RecordDataset | None]:
    """The training and validation datasets of the recipe (validation None when there is none).

    ``data.val: auto`` reads the ``val`` shards of the training builds when they have any.
    """
    data = recipe.data
    seed = recipe.training.get("seed", 0)
    train: RecordDataset | StreamingRecordDataset
    if data.streaming:
        if data.balance:
            raise RecipeError(f"{recipe.name}: data.balance needs the whole source, not streaming")
        train = StreamingRecordDataset(
            data.train, "train", data.tasks, seed=seed, augmentation=data.augment
        )
    else:
        train = RecordDataset(
            data.train, "train", data.tasks, data.limit, data.balance, seed, data.augment
        )
    val_source = split_shards(data.train, "val") if data.val == AUTO else data.val
    if not val_source:
        return train, None
    return train, RecordDataset(val_source, "val", data.tasks, limit=data.val_limit)


def build_loss(recipe: Recipe, processor: ProcessorMixin) -> TrainingLoss | None:
    """The recipe's loss when it is not the model's own cross-entropy, else None.

    Raises:
        RecipeError: When an option is out of range, or needs location tokens the tokenizer lacks.
    """
    options = recipe.loss
    sigma = options.coordinate_sigma
    if sigma is None and not options.position_weight:
        return None
    try:
        coordinates = None if sigma is None else CoordinateTargets(processor.tokenizer, sigma)
        return TrainingLoss(coordinates, options.position_weight)
    except ValueError as error:
        raise RecipeError(f"{recipe.name}: loss: {error}") from error


class JsonlLogCallback(TrainerCallback):
    """Appends every log (loss, learning rate, eval loss) to ``log.jsonl`` with a timestamp."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        if state.is_world_process_zero and logs:
            entry = {"step": state.global_step, "time": time.time(), **logs}
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")


def training_arguments(recipe: Recipe, output_dir: Path, has_val: bool) -> TrainingArguments:
    """TrainingArguments from the recipe, with the settings geochat's data needs."""
    options = {
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 500,
        "report_to": ["tensorboard"],
        "dataloader_num_workers": 0,
        **recipe.training,
    }
    if not torch.cuda.is_available():
        # Without this, transformers refuses bf16 on a CPU (which runs it, with AMX, fast).
        options.setdefault("use_cpu", True)
    if has_val:
        options.setdefault("eval_strategy", "steps")
        options.setdefault("eval_steps", options["save_steps"])
    return TrainingArguments(
        output_dir=str(output_dir),
        # Items hold a record and a PIL image, which the collator, not the Trainer, consumes.
        remove_unused_columns=False,
        **options,
    )


def train(
    recipe: Recipe,
    output_dir: str | Path,
    resume: bool = True,
    callbacks: list[TrainerCallback] | None = None,
) -> Path:
    """Runs a recipe and saves the final model and processor to ``output_dir/final``.

    Args:
        recipe: The recipe.
        output_dir: Checkpoints, logs and the final model go here.
        resume: Continue from the newest complete checkpoint in ``output_dir`` if there is one
            (optimizer, scheduler, RNG and data position are restored by the Trainer).
        callbacks: Extra Trainer callbacks.

    Returns:
        The folder of the final model.
    """
    output_dir = Path(output_dir)
    check_sources(recipe)
    # The checkpoint (and every intermediate one) records how its imagery was rendered, so the
    # engine serves new images the same way; builds rendered differently are refused here.
    try:
        imagery = training_imagery(recipe.data.train)
    except ValueError as error:
        raise RecipeError(f"data.train: {error}") from error
    # It also records the tiles it was trained on: scene inference reads scenes at that size
    # and GSD (geochat.engine.NativeInput).
    native_input = training_native_input(recipe.data.train)
    train_set, val_set = build_datasets(recipe)
    if len(getattr(train_set, "items", [None])) == 0:
        raise RecipeError(f"data.train: no training records in {recipe.data.train}")
    output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(recipe.training.get("seed", 0))
    model, processor, family = build_model(recipe)
    if not isinstance(processor, TrainedInputs):
        raise TypeError(f"{type(processor).__name__} cannot keep the training imagery settings")
    if imagery is not None:
        processor.imagery = imagery.to_dict()
    if native_input is not None:
        processor.native_input = native_input
    trainable = apply_stage(model, recipe, family)
    generation_eval = None
    if val_set is not None and recipe.data.generate_eval:
        generation_eval = GenerationEval(family, processor, val_set, recipe.data.generate_eval)
    trainer = GeoChatTrainer(
        model=trainable,
        generation_eval=generation_eval,
        args=training_arguments(recipe, output_dir, val_set is not None),
        data_collator=ChatCollator(processor, recipe.data.max_length, family),
        # Saved with every checkpoint, so a checkpoint loads (and evaluates) on its own.
        processing_class=processor,
        train_dataset=train_set,
        eval_dataset=val_set,
        callbacks=[JsonlLogCallback(output_dir / LOG_FILE), *(callbacks or [])],
        compute_loss_func=build_loss(recipe, processor),
    )
    checkpoint = last_complete_checkpoint(output_dir) if resume else None
    if checkpoint is not None and trainer.is_world_process_zero():
        print(f"resuming from {checkpoint}")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final = output_dir / FINAL_DIR
    # Every process takes part (a sharded model is gathered); the Trainer writes on the main one.
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        save_final_extras(final, processor, recipe)
    return final


def save_final_extras(final: Path, processor: ProcessorMixin, recipe: Recipe) -> None:
    """Writes the processor and the resolved recipe beside the final model (main process only)."""
    processor.save_pretrained(str(final))
    # The resolved recipe says how the model was made; Trainer's pickled arguments are dropped
    # so that a shipped model holds no pickle.
    (final / "training_args.bin").unlink(missing_ok=True)
    atomic_write_text(final / RECIPE_FILE, yaml.safe_dump(recipe.document(), sort_keys=False))
    print(f"wrote the trained model to {final}")
