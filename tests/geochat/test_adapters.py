"""LoRA/DoRA adapter folders through the engine and the commands, for every family.

An adapter is made as `geochat train` makes one (peft's `get_peft_model` on the base loaded from
its folder, then `save_pretrained`, which records the base's path and model class), with random
rather than zero-initialised LoRA weights so that it changes the logits. Loaded through the
public path (`geochat.engine.load(adapter)`, `geochat chat --model adapter`), its logits must be
the base's with the adapter applied by peft directly, and not the base's alone.
"""

import json
import shutil

import pytest
import torch
from family_fixtures import QUESTION, image
from peft import LoraConfig, PeftModel, get_peft_model

from geochat import cli
from geochat.engine import load
from geochat.modeling import tiny
from geochat.modeling.families import family_of

TARGETS = ["q_proj", "v_proj"]  # attention projections: every family's LLM has them


@pytest.fixture(scope="module")
def geochat_base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-geochat")
    model, processor = tiny(max_tiles_per_side=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bases(checkpoints, geochat_base):
    return {**checkpoints, "geochat": geochat_base}


def make_adapter(base, out, dora=False, seed=0):
    """Saves a LoRA (or DoRA) adapter with random weights on the base folder `base` into `out`."""
    torch.manual_seed(seed)
    model = family_of(base).model_class.from_pretrained(base)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=TARGETS, use_dora=dora, init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(out)
    return out


def logits(model, assistant):
    """The model's logits on the question about the test image, as the assistant builds it."""
    inputs = assistant.backbone.inputs(image(), [{**QUESTION[0], "content": "<image>\nWhere?"}])
    with torch.no_grad():
        return model(**inputs.inputs).logits


@pytest.mark.parametrize(
    ("name", "dora"), [("geochat", False), ("qwen2_5_vl", True), ("llava", False)]
)
def test_an_adapter_folder_loads_on_its_base(bases, tmp_path, name, dora):
    base = bases[name]
    adapter = make_adapter(base, tmp_path / "adapter", dora=dora)

    assistant = load(adapter)

    assert assistant.backbone.family is family_of(base)
    assert assistant.model_name == "adapter"
    plain = family_of(base).model_class.from_pretrained(base).eval()
    found = logits(assistant.model, assistant)
    assert not torch.allclose(found, logits(plain, assistant), atol=1e-4)
    direct = PeftModel.from_pretrained(plain, str(adapter)).eval()
    torch.testing.assert_close(found, logits(direct, assistant), atol=1e-4, rtol=1e-4)


def test_the_chat_command_answers_with_an_adapter_on_another_base_folder(bases, tmp_path, capsys):
    adapter = make_adapter(bases["qwen2_5_vl"], tmp_path / "adapter")
    moved = shutil.copytree(bases["qwen2_5_vl"], tmp_path / "moved-base")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")  # the base was moved
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    picture = tmp_path / "scene.png"
    image().save(picture)

    argv = ["chat", "--image", str(picture), "Where?", "--max-new-tokens", "2"]
    code = cli.main([*argv, "--model", str(adapter), "--base", str(moved)])

    err = capsys.readouterr().err
    assert code == 0, err
    assert "adapter: " in err  # the model line names the adapter folder


def rewrite(adapter, **changes):
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, **changes}))


def bad_adapter(bases, tmp_path, case):
    """An adapter folder, and the --base to load it on, for each way it can be wrong."""
    adapter = make_adapter(bases["qwen2_5_vl"], tmp_path / "adapter")
    if case == "missing base":
        rewrite(adapter, base_model_name_or_path=str(tmp_path / "gone"))
        return adapter, None
    if case == "no base named":
        rewrite(adapter, base_model_name_or_path=None)
        return adapter, None
    if case == "named base of another family":
        return adapter, bases["llava"]
    if case == "recorded class of another family":
        rewrite(adapter, base_model_name_or_path=str(tmp_path / "gone"))
        return adapter, bases["llava"]
    # The base is unknown and peft recorded no class: only the modules can tell.
    rewrite(adapter, base_model_name_or_path=None, auto_mapping=None)
    return adapter, bases["geochat"]


BAD_ADAPTERS = {
    "missing base": "which cannot be loaded (no model folder",
    "no base named": "is a LoRA adapter that names no base model; pass --base DIR",
    "named base of another family": "(Qwen2.5-VL), not for",
    "recorded class of another family": "is an adapter for a Qwen2.5-VL model, not for",
    "modules of another model": "its modules or weight shapes are not the base's",
}


@pytest.mark.parametrize("verb", ["chat", "eval"])
@pytest.mark.parametrize("case", list(BAD_ADAPTERS))
def test_a_bad_adapter_is_one_sentence_and_writes_nothing(bases, tmp_path, capsys, verb, case):
    adapter, base = bad_adapter(bases, tmp_path, case)
    picture = tmp_path / "scene.png"
    image().save(picture)
    written = tmp_path / "written"
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A pool."}]
    record = {"id": "a", "image": picture.name, "width": 300, "height": 120, "task": "vqa"}
    records = tmp_path / "test.jsonl"
    records.write_text(json.dumps({**record, "conversations": turns, "objects": []}) + "\n")
    argv = {
        "chat": ["--image", str(picture), "Where?", "--geojson", str(written)],
        "eval": ["--data", str(records), "--out-dir", str(written)],
    }[verb]
    options = [] if base is None else ["--base", str(base)]
    capsys.readouterr()  # making the adapter printed transformers' progress bar

    code = cli.main([verb, "--model", str(adapter), *options, *argv])

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "Loading weights" not in line]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(f"geochat {verb}: "), err
    assert BAD_ADAPTERS[case] in lines[0]
    assert not written.exists()


def test_base_is_only_for_an_adapter(bases):
    with pytest.raises(ValueError, match="is a full checkpoint; a base model is only for"):
        load(bases["llava"], base=bases["llava"])
