"""Shared by every test folder: puts tests/ on the path for :mod:`readme`; tiny checkpoints;
a record of raster reads."""

import pytest
import rasterio
from family_fixtures import data_module


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Tiny Qwen2.5-VL, Qwen3-VL and LLaVA checkpoint folders, by `model_type`."""
    return data_module().build(tmp_path_factory.mktemp("backbones"))


@pytest.fixture
def raster_reads(monkeypatch):
    """Every raster read from here on, as its ``(window, out_shape)`` (None where not given)."""
    reads = []
    original = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):
        reads.append((kwargs.get("window"), kwargs.get("out_shape")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    return reads
