"""Training on tiny models: every recipe runs, adapters learn, merge and resume are exact."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from geochat.engine import load_transformers
from geochat.engine.assistant import NativeInput
from geochat.modeling import GeoChatForConditionalGeneration, load_pretrained
from geochat.records import write_jsonl
from geochat.training.collator import ChatCollator
from geochat.training.data import RecordDataset
from geochat.training.merge import MergeError, export_lora, merge_adapter
from geochat.training.recipe import LossSection, RecipeError, load_recipe, recipe_names
from geochat.training.trainer import train

FAST = [
    "data.max_length=256",
    "training.per_device_train_batch_size=4",
    "training.bf16=false",
    "training.gradient_checkpointing=false",
    "training.report_to=[]",
    "training.logging_steps=1",
]
TINY_SCRATCH = [
    "model.tiny.image_size=32",
    "model.tiny.patch_size=8",
    "model.tiny.vision_layers=1",
    "model.tiny.text_layers=1",
    "model.tiny.hidden=64",
    "model.tokenizer.vocab_size=300",
]


def overrides(squares: Path, tiny_base: Path, name: str, *extra: str) -> list[str]:
    """Points a recipe at the tiny data and, for a real-checkpoint recipe, the tiny base model."""
    source = [f"data.train={squares}", f"data.val={squares}", *FAST, *extra]
    if load_recipe(name).model.tiny is not None:
        return source + TINY_SCRATCH
    return [*source, f"model.path={tiny_base}"]


@pytest.mark.slow
@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_runs_a_few_steps(squares, tiny_base, tmp_path, name):
    recipe = load_recipe(
        name,
        overrides(
            squares,
            tiny_base,
            name,
            "training.max_steps=2",
            "training.save_steps=2",
            "data.generate_eval=4",
        ),
    )
    final = train(recipe, tmp_path)
    saved = {path.name for path in final.iterdir()}
    assert "processor_config.json" in saved
    assert saved & {"model.safetensors", "adapter_model.safetensors"}
    # The final folder says how it was made, and holds no pickle.
    assert load_recipe(final / "recipe.yaml").training["max_steps"] == 2
    assert not list(final.glob("*.bin"))
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert any("loss" in entry for entry in logs)
    # The evaluation scored generated answers with geochat's metrics, beside the loss.
    evaluation = next(entry for entry in logs if "eval_loss" in entry)
    assert "eval_vqa/exact/accuracy" in evaluation and "eval_refer/boxes/acc@0.5" in evaluation


RANK_WRITES = textwrap.dedent(
    """
    import atexit, os, sys
    from pathlib import Path

    out, logs = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    written = set()

    def audit(event, args):
        # Every file this process opens for writing under the run's folder.
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2]
            write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT
            writing = any(c in mode for c in "wax+") if mode else bool(flags & write_flags)
            path = Path(os.fsdecode(args[0]))
            if writing and path.is_absolute() and out in path.parents:
                written.add(str(path.relative_to(out)))

    sys.addaudithook(audit)
    rank_log = logs / f"writes-{os.environ['RANK']}.txt"
    atexit.register(lambda: rank_log.write_text("\\n".join(sorted(written))))
    from geochat.cli import main

    sys.exit(main(["train", *sys.argv[3:], "--out", str(out)]))
    """
)


@pytest.mark.slow
def test_under_torchrun_only_the_main_process_writes(squares, tiny_base, tmp_path):
    script = tmp_path / "rank_writes.py"
    script.write_text(RANK_WRITES)
    logs = tmp_path / "logs"
    logs.mkdir()
    extra = ["training.max_steps=2", "training.per_device_train_batch_size=2", "data.limit=8"]
    args = overrides(squares, tiny_base, "smolvlm-lora", *extra, "training.save_steps=1000")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(script), str(tmp_path / "run"), str(logs)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "HF_HUB_OFFLINE": "1"}
    subprocess.run([*command, "smolvlm-lora", *args], env=env, check=True, timeout=300)
    # Atomic writes open a temporary sibling first (.recipe.yaml.<random>.tmp): name the target.
    temporary = re.compile(r"(^|/)\.([^/]+)\.[^./]+\.tmp$")
    main_writes = {
        temporary.sub(r"\1\2", path) for path in (logs / "writes-0.txt").read_text().splitlines()
    }
    assert {"final/recipe.yaml", "final/processor_config.json"} <= main_writes
    assert (logs / "writes-1.txt").read_text() == ""


def validation_loss(model, processor, squares: Path) -> float:
    dataset = RecordDataset(squares, "val")
    batch = ChatCollator(processor, 256)([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        return float(model.eval()(**batch).loss)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "dora"])
def test_adapters_lower_validation_loss_and_merge_exactly(squares, tiny_base, tmp_path, method):
    from peft import PeftModel

    from geochat.modeling import load_pretrained

    name = f"smolvlm-{method}"
    extra = ["training.max_steps=16", "training.learning_rate=5e-3", "training.save_steps=1000"]
    final = train(load_recipe(name, overrides(squares, tiny_base, name, *extra)), tmp_path / "run")
    base, processor = load_pretrained(tiny_base)
    before = validation_loss(base, processor, squares)
    adapted = PeftModel.from_pretrained(load_pretrained(tiny_base)[0], str(final))
    after = validation_loss(adapted, processor, squares)
    print(f"{method}: validation loss {before:.3f} -> {after:.3f}")
    assert after < before - 0.5, (before, after)

    merged_dir = merge_adapter(final, tmp_path / "merged")
    merged = GeoChatForConditionalGeneration.from_pretrained(merged_dir)
    batch = ChatCollator(processor, 256)([RecordDataset(squares, "val")[0]])
    with torch.no_grad():
        torch.testing.assert_close(
            merged.eval()(**batch).logits, adapted.eval()(**batch).logits, atol=1e-4, rtol=1e-4
        )
    if method == "dora":
        with pytest.raises(MergeError, match="DoRA"):
            export_lora(final, tmp_path / "export")
    else:
        exported = export_lora(final, tmp_path / "export")
        assert (exported / "adapter_model.safetensors").is_file()


KILLING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from geochat.training.recipe import load_recipe
    from geochat.training.trainer import train

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)

    recipe = load_recipe("nano-synthetic", sys.argv[2:])
    train(recipe, sys.argv[1], callbacks=[KillAfterSave()])
    """
)


@pytest.mark.slow
def test_resume_after_a_kill_reaches_the_same_weights(squares, tiny_base, tmp_path):
    extra = ["training.max_steps=6", "training.save_steps=2", "training.learning_rate=3e-3"]
    # With augmentation on: its transforms must not depend on the data loader's read-ahead.
    args = overrides(squares, tiny_base, "nano-synthetic", *extra, "data.augment=dihedral")
    script = tmp_path / "killing_run.py"
    script.write_text(KILLING_RUN.replace("{kill_at}", "4"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    killed = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "resumed"), *args], env=env, check=False
    )
    assert killed.returncode == -9
    assert not (tmp_path / "resumed" / "final").exists()

    resumed = train(load_recipe("nano-synthetic", args), tmp_path / "resumed")
    straight = train(load_recipe("nano-synthetic", args), tmp_path / "straight")
    resumed_weights = load_file(resumed / "model.safetensors")
    straight_weights = load_file(straight / "model.safetensors")
    assert resumed_weights.keys() == straight_weights.keys()
    for name, tensor in straight_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, atol=0, rtol=0, msg=name)
    # A checkpoint carries its processor: it loads (and evaluates) on its own.
    model, processor = load_pretrained(tmp_path / "straight" / "checkpoint-6")
    assert len(processor.tokenizer) <= model.config.text_config.vocab_size


@pytest.mark.slow
def test_the_loss_options_train_and_lower_the_training_loss(squares, tiny_base, tmp_path):
    extra = [
        "training.max_steps=12",
        "training.learning_rate=3e-3",
        "training.save_steps=1000",
        "loss.coordinate_sigma=12",
        "loss.position_weight=0.5",
    ]
    recipe = load_recipe("nano-synthetic", overrides(squares, tiny_base, "nano-synthetic", *extra))
    final = train(recipe, tmp_path)
    assert load_recipe(final / "recipe.yaml").loss == LossSection(
        coordinate_sigma=12, position_weight=0.5
    )
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in logs if "loss" in entry]
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3])
    assert torch.isfinite(torch.tensor(next(e["eval_loss"] for e in logs if "eval_loss" in e)))


def test_recipe_errors_are_clear(tmp_path):
    with pytest.raises(RecipeError, match="no recipe"):
        load_recipe("no-such-recipe")
    with pytest.raises(RecipeError, match="stage"):
        load_recipe("nano-synthetic", ["stage=sideways"])
    with pytest.raises(RecipeError, match="override"):
        load_recipe("nano-synthetic", ["training.max_steps"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="YAML"):
        load_recipe(broken)


@pytest.mark.slow
def test_a_checkpoint_records_the_tiles_it_was_trained_on(squares, tiny_base, tmp_path):
    build = Path(shutil.copytree(squares, tmp_path / "build"))
    shard = build / "train-00000.jsonl"
    records = [json.loads(line) for line in shard.read_text().splitlines()]
    for index, row in enumerate(records):
        row["gsd"] = [0.3, 0.5][index % 2]  # tiles of worlds at two GSDs
    write_jsonl(shard, records)
    manifest = {"format": 1, "arguments": {"options": {"tile_size": 64}}}
    (build / "manifest.json").write_text(json.dumps(manifest))
    extra = ["training.max_steps=1", "training.save_steps=1000", "data.val=null"]
    recipe = load_recipe("nano-synthetic", overrides(build, tiny_base, "nano-synthetic", *extra))
    final = train(recipe, tmp_path / "run")
    saved = json.loads((final / "processor_config.json").read_text())
    assert saved["native_input"] == {"image_size": 64, "gsd": [0.3, 0.5]}
    assert load_transformers(final).native_input == NativeInput(64, (0.3, 0.5))
