from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from geochat.modeling import tiny

CONFIGS = Path(__file__).parents[2] / "training" / "accelerate"
EXPECTED = {
    "ddp": DistributedType.MULTI_GPU,
    "fsdp": DistributedType.FSDP,
    "deepspeed-zero2": DistributedType.DEEPSPEED,
    "deepspeed-zero3": DistributedType.DEEPSPEED,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_configs_load_with_accelerate(name):
    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert config.distributed_type == EXPECTED[name]
    assert config.mixed_precision == "bf16"
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


def test_fsdp_wraps_layers_that_exist_in_the_model():
    config = load_config_from_file(str(CONFIGS / "fsdp.yaml"))
    wrapped = set(config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","))
    model, _ = tiny()
    present = {type(module).__name__ for module in model.modules()}
    assert wrapped <= present
