import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def wide_image() -> Image.Image:
    """A seeded random 200 x 100 RGB image (wider than tall)."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(100, 200, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def question() -> list[dict[str, str]]:
    return [{"role": "user", "content": "<image>\nWhere is the largest ship?"}]
