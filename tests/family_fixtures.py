"""Tiny checkpoints of each backbone family and a forced answer in its own dialect.

Shared by the engine, CLI, app and API tests of the families; the `checkpoints` fixture
(tests/conftest.py) writes the checkpoints with `tests/data/backbones/data.py`.
"""

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import LogitsProcessor

DATA = Path(__file__).resolve().parent / "data" / "backbones" / "data.py"
WIDTH, HEIGHT = 300, 120  # wider than tall: padding and per-axis scaling both matter
POOL_PX = [75.0, 30.0, 150.0, 60.0]  # the pool, in pixels of the original image
# The pool in each family's own dialect. Qwen2.5-VL: pixels of the 196 x 84 image its processor
# resizes 300 x 120 to (x * 196 / 300, y * 84 / 120); Qwen3-VL: 0-1000 per axis; LLaVA
# (GeoChat): 0-100 of the 300 x 300 square the image is centred in (90 px above and below).
NATIVE = {
    "qwen2_5_vl": '```json\n[\n\t{"bbox_2d": [49, 21, 98, 42], "label": "the pool"}\n]\n```',
    "qwen3_vl": '```json\n[\n\t{"bbox_2d": [250, 250, 500, 500], "label": "the pool"}\n]\n```',
    "llava": "<p>the pool</p> {<25><40><50><50>|<0>}",
}
NAMES = list(NATIVE)
REGION = {  # the pool as a region in each family's prompt
    "qwen2_5_vl": '"bbox_2d": [49, 21, 98, 42]',
    "qwen3_vl": '"bbox_2d": [250, 250, 500, 500]',
    "llava": "{<25><40><50><50>|<0>}",
}
DIALECT = {"qwen2_5_vl": "qwen25vl", "qwen3_vl": "qwen3vl", "llava": "geochat"}
QUESTION = [{"role": "user", "content": "Where is the pool?"}]


def data_module():
    """`tests/data/backbones/data.py`, which writes the tiny checkpoints."""
    spec = importlib.util.spec_from_file_location("backbones_data", DATA)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Force(LogitsProcessor):
    """Makes the model write `text`, then its end token; keeps the prompt's ids."""

    def __init__(self, assistant, text):
        self.ids = assistant.processor.tokenizer.encode(text, add_special_tokens=False)
        self.end = assistant.model.generation_config.eos_token_id
        self.prompt = None

    def __call__(self, input_ids, scores):
        if self.prompt is None:
            self.prompt = input_ids[0].tolist()
        step = input_ids.shape[1] - len(self.prompt)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.ids[step] if step < len(self.ids) else self.end] = 0.0
        return forced


def image():
    """A seeded random WIDTH x HEIGHT RGB image."""
    pixels = np.random.default_rng(1).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    return Image.fromarray(pixels)
