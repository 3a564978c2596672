"""Where a model is on disk: a checkpoint folder, or a training run that holds checkpoints.

``geochat train --out RUN`` writes ``RUN/checkpoint-N/`` as it goes and ``RUN/final/`` at the
end. Every command that takes a model accepts the run folder too and picks the model in it with
:func:`resolve_checkpoint`, so that no caller repeats the layout.
"""

from __future__ import annotations

from pathlib import Path

FINAL_DIR = "final"  # the model a finished run saved
CHECKPOINT_PREFIX = "checkpoint-"  # transformers' Trainer: checkpoint-<global step>
TRAINER_STATE = "trainer_state.json"  # written last into a checkpoint
ADAPTER_CONFIG = "adapter_config.json"  # peft writes it into an adapter folder
MODEL_FILES = ("config.json", ADAPTER_CONFIG)  # a full model, or a peft adapter


def last_complete_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest ``checkpoint-N`` that was saved to the end (it has ``trainer_state.json``).

    Trainer writes the state file last, so a checkpoint killed half-way is passed over.
    """
    complete = [
        path
        for path in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}*")
        if (path / TRAINER_STATE).is_file() and path.name.split("-")[-1].isdigit()
    ]
    return max(complete, key=lambda path: int(path.name.split("-")[-1]), default=None)


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder that ``save_pretrained`` wrote (a model or an adapter)."""
    return any((Path(path) / name).is_file() for name in MODEL_FILES)


def resolve_checkpoint(model: str | Path) -> str | Path:
    """The model folder to load for ``model``: itself, a run's ``final/`` or newest checkpoint.

    Args:
        model: A checkpoint folder, a training run folder, or a hub id (``owner/name``).

    Returns:
        ``model`` unchanged when it is a model folder or a hub id; for a run folder its
        ``final/`` if the run finished, else its newest complete ``checkpoint-N/``.

    Raises:
        FileNotFoundError: For a path that does not exist and is no hub id, or a folder that
            holds no model and no complete checkpoint.
        NotADirectoryError: For a file.
    """
    folder = Path(model)
    if not folder.exists():
        if _looks_like_hub_id(str(model)):
            return model
        raise FileNotFoundError(f"no model folder {model}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{model} is a file; pass the folder that holds config.json")
    if is_model_folder(folder):
        return model
    if is_model_folder(folder / FINAL_DIR):
        return folder / FINAL_DIR
    checkpoint = last_complete_checkpoint(folder)
    if checkpoint is not None and is_model_folder(checkpoint):
        return checkpoint
    raise FileNotFoundError(
        f"{folder} holds no model: pass a checkpoint folder (with config.json) or a training "
        f"run folder (with {FINAL_DIR}/ or a complete {CHECKPOINT_PREFIX}N/)"
    )


def _looks_like_hub_id(text: str) -> bool:
    """`owner/name`: a relative path of two parts that is not a file here may be a hub id."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))
