"""Training real-checkpoint families (Qwen2.5-VL, Qwen3-VL, LLaVA) on tiny random checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from family_fixtures import HEIGHT, NATIVE, POOL_PX, WIDTH
from peft import PeftModel
from PIL import Image
from transformers import AutoConfig

from geochat.engine import load
from geochat.grammar import parse
from geochat.modeling.families import FAMILIES, dialect_for
from geochat.training.collator import ChatCollator, encode_example
from geochat.training.data import RecordDataset
from geochat.training.merge import export_lora, merge_adapter
from geochat.training.recipe import load_recipe
from geochat.training.trainer import build_model, train

RECIPES = {"qwen2_5_vl": "qwen25vl-lora", "qwen3_vl": "qwen3vl-lora", "llava": "llava-lora"}
FAST = [
    "data.max_length=512",
    "data.limit=4",  # one batch, seen every step: its loss must fall
    "data.val=null",
    "training.per_device_train_batch_size=4",
    "training.gradient_accumulation_steps=1",
    "training.max_steps=10",
    "training.learning_rate=1e-2",
    "training.warmup_steps=0",
    "training.bf16=false",
    "training.gradient_checkpointing=false",
    "training.report_to=[]",
    "training.logging_steps=1",
    "training.save_steps=1000",
]


@pytest.fixture(scope="module")
def refer_squares(squares):
    """Overrides: the squares build, refer records only (box answers)."""
    return [f"data.train={squares}", "data.tasks=[refer]"]


def recipe(name, checkpoints, data, *extra):
    return load_recipe(RECIPES[name], [f"model.path={checkpoints[name]}", *data, *FAST, *extra])


@pytest.fixture(scope="module")
def trained(checkpoints, refer_squares, tmp_path_factory):
    """Each family's LoRA recipe run for 10 steps; its run folder by family."""
    runs = {}

    def run(name):
        if name not in runs:
            folder = tmp_path_factory.mktemp(name)
            train(recipe(name, checkpoints, refer_squares), folder)
            runs[name] = folder
        return runs[name]

    return run


@pytest.mark.slow  # 10 steps: 10-40 s a family on a shared CPU
@pytest.mark.parametrize("name", list(RECIPES))
def test_lora_lowers_the_training_loss_and_trains_only_adapters(trained, name):
    run = trained(name)
    logs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in logs if "loss" in entry]
    assert len(losses) == 10
    assert losses[-1] < losses[0] - 0.3, losses
    config = json.loads((run / "final" / "adapter_config.json").read_text())
    modules = FAMILIES[name].modules
    parts = {modules.part_of(target) for target in config["target_modules"]}
    assert parts == {"language_model", "connector"}  # the recipe's parts: [llm, connector]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RECIPES))
def test_merge_gives_the_adapted_logits_and_lora_exports(trained, checkpoints, squares, name):
    final = trained(name) / "final"
    family = FAMILIES[name]
    merged_dir = merge_adapter(final, final.parent / "merged")
    merged = family.model_class.from_pretrained(merged_dir).eval()
    adapted = PeftModel.from_pretrained(
        family.model_class.from_pretrained(checkpoints[name]), str(final)
    ).eval()
    processor = family.load_processor(merged_dir, merged.config)
    batch = ChatCollator(processor, 512, family)([RecordDataset(squares, "val", ["refer"])[0]])
    with torch.no_grad():
        torch.testing.assert_close(
            merged(**batch).logits, adapted(**batch).logits, atol=1e-4, rtol=1e-4
        )
    assert (export_lora(final, final.parent / "export") / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_the_engine_loads_a_training_run_of_adapters_on_its_base(trained, checkpoints, squares):
    run = trained("qwen2_5_vl")  # its final/ is an adapter folder, the processor beside it
    family = FAMILIES["qwen2_5_vl"]

    assistant = load(run)

    adapted = PeftModel.from_pretrained(
        family.model_class.from_pretrained(checkpoints["qwen2_5_vl"]), str(run / "final")
    ).eval()
    batch = ChatCollator(assistant.processor, 512, family)(
        [RecordDataset(squares, "val", ["refer"])[0]]
    )
    with torch.no_grad():
        torch.testing.assert_close(
            assistant.model(**batch).logits, adapted(**batch).logits, atol=1e-4, rtol=1e-4
        )


def learned_text(processor, example):
    ids = [i for i, label in zip(example.input_ids, example.labels, strict=True) if label != -100]
    return processor.tokenizer.decode(ids)


@pytest.mark.parametrize("name", list(RECIPES))
def test_targets_are_written_in_the_family_dialect(checkpoints, name):
    family = FAMILIES[name]

    processor = family.load_processor(
        checkpoints[name], AutoConfig.from_pretrained(checkpoints[name])
    )
    image = Image.new("RGB", (300, 120), (90, 90, 90))
    box = [30, 12, 90, 60]  # pixels
    conversations = [
        {"from": "human", "value": "<image>\nWhere is the pool?"},
        {"from": "gpt", "value": "<box>[[100,100,300,500]]</box>"},
    ]
    example = encode_example(processor, conversations, image, 4096, family)
    answer = learned_text(processor, example)
    dialect = dialect_for(family.dialect, family.input_frame(processor, image))
    assert "<box>" not in answer
    (found,) = [o for o in parse(answer, 300, 120, dialect).objects if o.kind == "hbb"]
    # Back in pixels within the dialect's rounding (Qwen2.5-VL: pixels of the resized image).
    assert found.hbb == pytest.approx(box, abs=3)
    # Only the answer (and its end-of-turn token) is learned: never the image or the question.
    assert "Where" not in answer and str(processor.image_token) not in answer


@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl"])
def test_qwen_targets_name_their_boxes_with_json_labels(checkpoints, name):
    # Qwen answers grounding questions with [{"bbox_2d": [...], "label": "..."}]: the phrase
    # is the box's label, not a <ref> tag before the JSON.
    family = FAMILIES[name]
    processor = family.load_processor(
        checkpoints[name], AutoConfig.from_pretrained(checkpoints[name])
    )
    image = Image.new("RGB", (WIDTH, HEIGHT), (90, 90, 90))
    answers = {
        "refer": "<ref>the pool</ref><box>[[250,250,500,500]]</box>",
        "prose": "There is <ref>the pool</ref><box>[[250,250,500,500]]</box> by the road.",
        "none": "<ref>the pool</ref><none>",
    }
    learned = {}
    for case, answer in answers.items():
        conversations = [
            {"from": "human", "value": "<image>\nWhere is the pool?"},
            {"from": "gpt", "value": answer},
        ]
        example = encode_example(processor, conversations, image, 4096, family)
        learned[case] = learned_text(processor, example)

    assert learned["refer"].startswith(NATIVE[name])  # then the end of the turn
    assert learned["prose"].startswith(f"There is the pool by the road.\n{NATIVE[name]}")
    assert learned["none"].startswith("```json\n[]\n```")
    dialect = dialect_for(family.dialect, family.input_frame(processor, image))
    for text in learned.values():
        assert "<ref>" not in text
    (pool,) = parse(learned["prose"], WIDTH, HEIGHT, dialect).objects
    assert pool.phrase == "the pool" and pool.hbb == pytest.approx(POOL_PX, abs=1e-6)


@pytest.mark.parametrize("name", ["qwen2_5_vl", "llava"])
def test_qlora_keeps_the_tower_and_connector_unquantised(checkpoints, squares, name):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    model, _, family = build_model(
        recipe(name, checkpoints, [f"data.train={squares}"], "stage=qlora")
    )
    kinds = {}
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            part = family.modules.part_of(module_name)
            kinds.setdefault(part, set()).add(isinstance(module, bnb.nn.Linear4bit))
    assert kinds["language_model"] == {True}
    assert kinds["vision_tower"] == kinds["connector"] == kinds["lm_head"] == {False}
    tower = next(
        p for n, p in model.named_parameters() if family.modules.part_of(n) == "vision_tower"
    )
    assert tower.dtype in (torch.float32, torch.bfloat16)
