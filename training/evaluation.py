"""Periodic evaluation with geochat's metrics, beside the validation loss.

The model answers validation records through the engine's batched path (the one ``geochat
eval`` and users run, :func:`geochat.predict.predict_records`), and their scores (Acc@0.5,
gIoU, counting and VQA accuracy...) are logged at each evaluation like the loss is (JSONL log,
tensorboard).
"""

from __future__ import annotations

from typing import Any

import torch
from peft import PeftModel
from transformers import PreTrainedModel, Trainer
from transformers.processing_utils import ProcessorMixin
from transformers.trainer_utils import EvalLoopOutput

from geochat.engine import TransformersAssistant
from geochat.metrics import score
from geochat.modeling.families import Backbone, Family
from geochat.predict import predict_records
from geochat.training.data import RecordDataset


class GenerationEval:
    """Answers a fixed set of validation records and scores them per task.

    Args:
        family: The model's backbone family (its prompt and dialect).
        processor: The model's processor.
        dataset: Validation records; the first ``limit`` are used, the same ones every time.
        limit: How many records to answer.
        max_new_tokens: Longest answer.
        batch_size: Records answered together.
    """

    def __init__(
        self,
        family: Family,
        processor: ProcessorMixin,
        dataset: RecordDataset,
        limit: int = 64,
        max_new_tokens: int = 96,
        batch_size: int = 16,
    ):
        self.family = family
        self.processor = processor
        self.records = [record for record, _ in dataset.items[:limit]]
        self.paths = [path for _, path in dataset.items[:limit]]
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        """``{"<task>/<family>/<metric>": value}`` for every numeric metric."""
        was_training = model.training
        model.eval()
        backbone = Backbone(
            self.family, transformers_model(model), self.processor, self.family.dialect
        )
        assistant = TransformersAssistant(backbone, "training")
        predictions = predict_records(
            assistant, self.records, self.paths, self.batch_size, self.max_new_tokens
        )
        model.train(was_training)
        report = score(self.records, predictions)
        return {
            f"{task}/{family}/{name}": float(value)
            for task, families in report["tasks"].items()
            for family, metrics in families.items()
            for name, value in metrics.items()
            if isinstance(value, float)
        }


def transformers_model(model: torch.nn.Module) -> PreTrainedModel:
    """The transformers model in training: the model itself, or a peft model's base.

    peft puts its adapters inside the base model's layers, so the base answers as the adapted
    model does.

    Raises:
        TypeError: For a model that is neither.
    """
    if isinstance(model, PeftModel):
        model = model.get_base_model()
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"generation needs a transformers model, not {type(model).__name__}")
    return model


class GeoChatTrainer(Trainer):
    """Trainer whose evaluation also scores generated answers (see :class:`GenerationEval`)."""

    def __init__(self, *args: Any, generation_eval: GenerationEval | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.generation_eval = generation_eval

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> EvalLoopOutput:  # noqa: D102
        output = super().evaluation_loop(*args, **kwargs)
        if self.generation_eval is not None:
            prefix = kwargs.get("metric_key_prefix", "eval")
            assert self.model is not None  # given to __init__ (no model_init)
            scores = self.generation_eval(self.model)
            assert output.metrics is not None  # Trainer's evaluation loop always reports some
            output.metrics.update({f"{prefix}_{name}": value for name, value in scores.items()})
        return output
