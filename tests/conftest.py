"""Shared by every test folder: puts tests/ on the path for :mod:`readme`; tiny checkpoints."""

import pytest
from family_fixtures import data_module


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Tiny Qwen2.5-VL, Qwen3-VL and LLaVA checkpoint folders, by `model_type`."""
    return data_module().build(tmp_path_factory.mktemp("backbones"))
