"""Backbone families through the engine and `geochat chat`, on tiny random checkpoints.

`tests/data/backbones/data.py` writes Qwen2.5-VL, Qwen3-VL and LLaVA checkpoints (real config,
model and processor classes; 2 layers, width 64) into a temporary folder once per session. Each
is loaded through the user's path (`geochat.engine.load(folder)`, `geochat chat --model`); its
answer is forced, in the family's own coordinate dialect, with a logits processor, and must come
back in pixels of the original, non-square image.
"""

import json
import re
import shutil

import huggingface_hub.constants
import numpy as np
import pytest
from family_fixtures import (
    DIALECT,
    HEIGHT,
    NAMES,
    NATIVE,
    POOL_PX,
    QUESTION,
    REGION,
    WIDTH,
    Force,
    data_module,
    image,
)
from PIL import Image

from geochat import cli
from geochat.engine import NativeInput, load
from geochat.imagery import ImagerySettings
from geochat.modeling import tiny
from geochat.modeling.families import (
    FAMILIES,
    Modules,
    content_parts,
    dialect_for,
    family_of,
    load_backbone,
    to_dialect,
)


@pytest.fixture(scope="module")
def assistants(checkpoints):
    return {name: load(folder) for name, folder in checkpoints.items()}


@pytest.fixture
def png(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    path = tmp_path / "scene.png"
    Image.fromarray(pixels).save(path)
    return path


# The registry


@pytest.mark.parametrize("name", NAMES)
def test_family_and_dialect_come_from_model_type(assistants, checkpoints, name):
    assistant = assistants[name]
    assert family_of(checkpoints[name]) is FAMILIES[name]
    assert assistant.backbone.family is FAMILIES[name]
    assert assistant.backbone.dialect == DIALECT[name] == FAMILIES[name].dialect
    assert isinstance(assistant.model, FAMILIES[name].model_class)


def test_a_renamed_folder_keeps_its_family(checkpoints, tmp_path):
    # The path says "llava", the config says qwen3_vl: the config decides.
    renamed = shutil.copytree(checkpoints["qwen3_vl"], tmp_path / "llava-1.5-7b")
    assert family_of(renamed) is FAMILIES["qwen3_vl"]


@pytest.mark.parametrize("name", NAMES)
def test_the_processor_keeps_what_training_recorded(checkpoints, tmp_path, name):
    # Training sets these on the processor it saves beside the model; transformers saves only a
    # processor's __init__ arguments, so a stock processor used to drop them.
    folder = shutil.copytree(checkpoints[name], tmp_path / name)
    processor = load_backbone(folder).processor
    imagery = ImagerySettings(bands=(3, 2, 1), stretch="percentile")
    processor.imagery = imagery.to_dict()
    processor.native_input = {"image_size": 64, "gsd": [0.3, 0.5]}
    processor.save_pretrained(str(folder))

    assistant = load(folder)

    assert assistant.imagery == imagery
    assert assistant.native_input == NativeInput(64, (0.3, 0.5))


def module_names_cases():
    return [*NAMES, "geochat"]


@pytest.mark.parametrize("name", module_names_cases())
def test_module_names_are_real_and_cover_every_parameter(assistants, name):
    if name == "geochat":
        model, family = tiny()[0], FAMILIES["geochat"]
    else:
        model, family = assistants[name].model, FAMILIES[name]
    modules = dict(model.named_modules())
    for part, prefixes in family.modules.parts().items():
        for prefix in prefixes:
            assert prefix in modules, f"{family.name} has no module {prefix} ({part})"
    owners = {}
    for parameter, _ in model.named_parameters():
        owners.setdefault(family.modules.part_of(parameter), []).append(parameter)
    assert set(owners) == {"vision_tower", "connector", "language_model", "lm_head"}, owners.get(
        None
    )
    # A connector nested in the tower (Qwen's merger) counts as the connector.
    assert all(not name.startswith(family.modules.connector) for name in owners["vision_tower"])


def test_part_of_picks_the_longest_prefix():
    modules = Modules(
        vision_tower=("model.visual",),
        connector=("model.visual.merger",),
        language_model=("model.language_model",),
    )
    assert modules.part_of("model.visual.merger.mlp.0.weight") == "connector"
    assert modules.part_of("model.visual.blocks.0.attn.qkv.weight") == "vision_tower"
    assert modules.part_of("model.visualx.weight") is None
    assert modules.quantization_skip() == ["model.visual", "model.visual.merger", "lm_head"]


def test_content_parts_put_the_image_in_place():
    messages = [
        {"role": "user", "content": "<image>\nWhere?"},
        {"role": "assistant", "content": "Here."},
    ]
    assert content_parts(messages) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Here."}]},
    ]


def test_to_dialect_rewrites_only_the_geometry():
    text = "What is in <box>[[250,250,500,500],[0,0,1000,1000]]</box> and <none>?"
    written = to_dialect(text, WIDTH, HEIGHT, dialect_for("qwen3vl"))
    assert written.startswith("What is in ```json")
    assert '"bbox_2d": [250, 250, 500, 500]' in written
    assert '"bbox_2d": [0, 0, 1000, 1000]' in written
    assert written.endswith("``` and <none>?")
    assert to_dialect("No geometry.", WIDTH, HEIGHT, dialect_for("geochat")) == "No geometry."


# Geometry through the engine


@pytest.mark.parametrize("name", NAMES)
def test_native_answer_comes_back_in_original_pixels(assistants, name):
    assistant = assistants[name]
    forcer = Force(assistant, NATIVE[name])

    reply = assistant.chat(image(), QUESTION, logits_processor=[forcer])

    assert reply.text == NATIVE[name]
    assert reply.parsed.problems == []
    (pool,) = reply.parsed.objects
    assert pool.phrase == "the pool"
    assert pool.hbb == pytest.approx(POOL_PX, abs=1e-6)
    assert reply.image_size == (WIDTH, HEIGHT)
    (feature,) = reply.pixel_geojson["features"]
    assert feature["properties"]["phrase"] == "the pool"
    assert reply.geojson is None


def test_llava_sees_the_image_centred_on_a_mean_coloured_square(assistants):
    backbone = assistants["llava"].backbone
    messages = [{"role": "user", "content": "<image>\nWhere?"}]

    pixels = backbone.inputs(image(), messages).inputs["pixel_values"][0]  # [3, 32, 32]

    # 300 x 120 centred on 300 x 300: 90 / 300 of the side above and below is padding, which
    # the processor's normalisation by its own mean turns into ~0.
    padding = int(32 * 90 / 300) - 1  # less the row that resampling blurs
    assert pixels[:, :padding].abs().max() < 0.02
    assert pixels[:, -padding:].abs().max() < 0.02
    assert pixels[:, padding + 2 : -padding - 2].abs().mean() > 0.1  # the (noisy) image


def test_qwen25vl_reads_pixels_of_the_resized_image(assistants):
    backbone = assistants["qwen2_5_vl"].backbone
    assert backbone.family.input_frame(backbone.processor, image()) == (196, 84)


@pytest.mark.parametrize("name", NAMES)
def test_region_is_written_in_the_family_dialect(assistants, name):
    assistant = assistants[name]
    forcer = Force(assistant, NATIVE[name])

    assistant.chat(image(), QUESTION, region=POOL_PX, logits_processor=[forcer])

    prompt = assistant.processor.tokenizer.decode(forcer.prompt)
    assert REGION[name] in prompt
    assert "<box>" not in prompt
    assert prompt.count(str(assistant.processor.image_token)) > 1  # expanded image tokens


def test_streaming_reads_the_same_geometry(assistants):
    assistant = assistants["llava"]
    items = list(
        assistant.chat(
            image(), QUESTION, stream=True, logits_processor=[Force(assistant, NATIVE["llava"])]
        )
    )
    assert "".join(items[:-1]) == NATIVE["llava"]
    assert items[-1].parsed.objects[0].hbb == pytest.approx(POOL_PX, abs=1e-6)


QWEN2VL_POOL = (
    "<|object_ref_start|>the pool<|object_ref_end|><|box_start|>(250,250),(500,500)<|box_end|>"
)


def test_qwen_special_token_tags_survive_streamed_and_batched_decoding(checkpoints):
    # Qwen's grammar tags are special tokens: decoding keeps them, and drops <|im_end|>.
    assistant = load(checkpoints["qwen2_5_vl"], dialect="qwen2vl")
    tokenizer = assistant.processor.tokenizer
    assert len(tokenizer.encode("<|box_start|>", add_special_tokens=False)) == 1
    assert tokenizer.added_tokens_decoder[tokenizer.convert_tokens_to_ids("<|box_start|>")].special

    items = list(
        assistant.chat(
            image(), QUESTION, stream=True, logits_processor=[Force(assistant, QWEN2VL_POOL)]
        )
    )
    batched = assistant.chat_batch(
        [(image(), QUESTION)], logits_processor=[Force(assistant, QWEN2VL_POOL)]
    )[0]

    assert "".join(items[:-1]) == QWEN2VL_POOL
    for reply in (items[-1], batched):
        assert reply.parsed.objects[0].phrase == "the pool"
        assert reply.parsed.objects[0].hbb == pytest.approx(POOL_PX, abs=1e-6)
        assert reply.completion_tokens == len(tokenizer.encode(QWEN2VL_POOL)) + 1  # + <|im_end|>


def test_dialect_override_replaces_the_family_dialect(checkpoints):
    assistant = load(checkpoints["qwen3_vl"], dialect="canonical")
    answer = "<ref>the pool</ref><box>[[250,250,500,500]]</box>"

    reply = assistant.chat(image(), QUESTION, logits_processor=[Force(assistant, answer)])

    assert reply.parsed.objects[0].hbb == pytest.approx(POOL_PX, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_grounding_constraint_holds_the_family_dialect(assistants, name):
    assistant = assistants[name]
    forcer = Force(assistant, NATIVE[name])

    reply = assistant.chat(image(), QUESTION, constrain="grounding", logits_processor=[forcer])

    assert reply.text == NATIVE[name]
    assert reply.parsed.objects[0].hbb == pytest.approx(POOL_PX, abs=1e-6)


def test_grounding_constraint_needs_a_dialect_with_a_regex(checkpoints):
    assistant = load(checkpoints["qwen3_vl"], dialect="geoground")
    with pytest.raises(ValueError, match="no grounding constraint for the 'geoground' dialect"):
        assistant.chat(image(), QUESTION, constrain="grounding")


# Errors


def test_unknown_model_type_lists_the_supported_families(checkpoints, tmp_path):
    folder = shutil.copytree(checkpoints["llava"], tmp_path / "blip")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "blip_2"}))

    with pytest.raises(
        ValueError, match=r"model_type 'blip_2' is not supported; supported: "
    ) as error:
        load(folder)
    for model_type in ("geochat", "idefics3", "qwen2_5_vl", "qwen3_vl", "llava"):
        assert model_type in str(error.value)


@pytest.mark.parametrize(
    ("setup", "error", "match"),
    [
        ("missing", FileNotFoundError, "no model folder"),
        ("no-config", FileNotFoundError, "holds no model"),
        ("not-json", ValueError, "is not a JSON object"),
    ],
)
def test_missing_or_broken_folders_are_explained(tmp_path, setup, error, match):
    folder = tmp_path / "model"
    if setup != "missing":
        folder.mkdir()
    if setup == "not-json":
        (folder / "config.json").write_text("[1, 2")
    with pytest.raises(error, match=match):
        load(folder)


@pytest.mark.parametrize(("name", "token"), [("qwen2_5_vl", "<|image_pad|>"), ("llava", "<image>")])
def test_tokenizer_without_the_image_token_is_refused(checkpoints, tmp_path, name, token):
    data = data_module()
    special = data.QWEN_SPECIAL if name != "llava" else data.LLAVA_SPECIAL
    folder = shutil.copytree(checkpoints[name], tmp_path / name)
    roles = {"eos_token": "<|im_end|>"} if name != "llava" else {"eos_token": "</s>"}
    data.tokenizer(tuple(t for t in special if t != token), **roles).save_pretrained(folder)

    with pytest.raises(ValueError, match=re.escape(f"the tokenizer has no '{token}' token")):
        load(folder)


def test_unknown_dialect_and_foreign_options_are_refused(checkpoints):
    with pytest.raises(ValueError, match="unknown dialect 'pixels'"):
        load_backbone(checkpoints["llava"], dialect="pixels")
    with pytest.raises(ValueError, match="max_tiles_per_side is an Idefics3 setting"):
        load(checkpoints["qwen2_5_vl"], max_tiles_per_side=2)


# geochat chat


@pytest.mark.parametrize("name", NAMES)
def test_chat_command_runs_each_family(checkpoints, png, tmp_path, capsys, name):
    geojson = tmp_path / "answer.json"
    argv = ["chat", "--model", str(checkpoints[name]), "--image", str(png), "Where is the pool?"]

    code = cli.main([*argv, "--max-new-tokens", "4", "--geojson", str(geojson)])

    _, err = capsys.readouterr()
    assert code == 0, err
    assert "completion tokens" in err
    assert json.loads(geojson.read_text())["coordinate_space"] == "pixel"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "MISSING"], "no model folder"),
        (["--model", "FOREIGN"], "is not supported; supported:"),
        (["--model", "LLAVA", "--dialect", "geoground", "--constrain", "grounding"], "dialect"),
    ],
)
def test_chat_command_errors_are_one_sentence(checkpoints, png, tmp_path, capsys, options, message):
    foreign = shutil.copytree(checkpoints["llava"], tmp_path / "foreign")
    config = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**config, "model_type": "blip_2"}))
    folders = {"MISSING": tmp_path / "missing", "FOREIGN": foreign, "LLAVA": checkpoints["llava"]}
    options = [str(folders.get(option, option)) for option in options]

    code = cli.main(["chat", "--image", str(png), "Where is the pool?", *options])

    _, err = capsys.readouterr()
    last = err.strip().splitlines()[-1]  # after transformers' weight-loading progress bar
    assert code == 2
    assert last.startswith("geochat chat: ") and message in last
    assert "Traceback" not in err


def adapter_folder(tmp_path, base):
    """A peft adapter folder (its config only) that names `base` as its base model."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    config = {"peft_type": "LORA", "base_model_name_or_path": str(base), "r": 4}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def offline(monkeypatch):
    """No hub: huggingface_hub reads HF_HUB_OFFLINE once, at import."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_an_offline_hub_id_that_is_not_cached_is_explained(offline):
    with pytest.raises(FileNotFoundError, match="not in the local cache and HF_HUB_OFFLINE is set"):
        load("nobody/no-such-model")


def test_an_adapter_whose_base_is_missing_names_it(tmp_path):
    folder = adapter_folder(tmp_path, tmp_path / "gone")
    with pytest.raises(FileNotFoundError, match=f"is a LoRA adapter of {tmp_path / 'gone'}, which"):
        load(folder)


def test_an_adapter_for_another_family_is_not_merged(checkpoints, tmp_path, capsys):
    folder = adapter_folder(tmp_path, checkpoints["qwen2_5_vl"])
    out = tmp_path / "merged"

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["merge", str(folder), "--base", str(checkpoints["llava"]), "--out", str(out)])

    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "is an adapter for" in err and "(Qwen2.5-VL), not for" in err and "(LLaVA)" in err
    assert not out.exists()


BAD_MODELS = {
    "missing": "no model folder",
    "nobody/no-such-model": "not in the local cache and HF_HUB_OFFLINE is set",
    "bert": "model_type 'bert' is not supported; supported:",
    "no-image-token": "the tokenizer has no '<image>' token",
    "adapter": "is a LoRA adapter of",  # whose base is not here
}


@pytest.mark.parametrize("verb", ["chat", "eval", "api"])
@pytest.mark.parametrize("model", list(BAD_MODELS))
def test_bad_models_are_one_sentence_in_every_command(
    checkpoints, png, tmp_path, capsys, offline, verb, model
):
    bert = shutil.copytree(checkpoints["llava"], tmp_path / "bert")
    config = json.loads((bert / "config.json").read_text())
    (bert / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    no_token = shutil.copytree(checkpoints["llava"], tmp_path / "no-image-token")
    data = data_module()
    special = tuple(token for token in data.LLAVA_SPECIAL if token != "<image>")
    data.tokenizer(special, eos_token="</s>").save_pretrained(no_token)
    adapter_folder(tmp_path, tmp_path / "gone")
    target = model if "/" in model else str(tmp_path / model)
    written = tmp_path / "written"
    turns = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A pool."}]
    record = {"id": "a", "image": png.name, "width": WIDTH, "height": HEIGHT, "task": "vqa"}
    records = tmp_path / "test.jsonl"
    records.write_text(json.dumps({**record, "conversations": turns, "objects": []}) + "\n")
    argv = {
        "chat": ["--image", str(png), "Where?", "--geojson", str(written)],
        "eval": ["--data", str(records), "--out-dir", str(written)],
        "api": ["--port", "0"],
    }[verb]

    code = cli.main([verb, "--model", target, *argv])

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "Loading weights" not in line]
    assert code == (1 if verb == "api" else 2)
    assert len(lines) == 1 and lines[0].startswith(f"geochat {verb}: "), err
    assert BAD_MODELS[model] in lines[0]
    assert not written.exists()


@pytest.mark.parametrize("name", NAMES)
def test_batched_answers_equal_single_answers(assistants, name):
    assistant = assistants[name]
    small = image().resize((150, 60))
    conversations = [
        (image(), QUESTION),
        (small, [{"role": "user", "content": "Describe the harbour and every ship in it."}]),
    ]

    replies = assistant.chat_batch(conversations, max_new_tokens=5)

    for (picture, messages), reply in zip(conversations, replies, strict=True):
        single = assistant.chat(picture, messages, max_new_tokens=5)
        assert reply.text == single.text
        assert reply.image_size == picture.size
        assert reply.completion_tokens == single.completion_tokens
