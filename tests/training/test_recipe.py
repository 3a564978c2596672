"""Typed recipes: every shipped recipe loads, and a misspelled key or a wrong type is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geochat.training import cli
from geochat.training.data import RecordDataset
from geochat.training.recipe import Recipe, RecipeError, load_recipe, recipe_names
from geochat.training.trainer import build_datasets

ROOT = Path(__file__).parents[2]
NANO_RECIPE = ROOT / "geochat" / "assets" / "geochat-nano" / "recipe.yaml"


@pytest.mark.parametrize("recipe", [*recipe_names(), str(NANO_RECIPE)])
def test_every_recipe_loads_through_the_cli(recipe, no_training, tmp_path):
    assert cli.main([recipe, "--out", str(tmp_path)]) == 0
    assert len(no_training) == 1 and isinstance(no_training[0][0], Recipe)


@pytest.mark.parametrize(
    ("recipe", "override", "valid"),
    [
        ("smolvlm-lora", "peft.rank=8", "alpha, dropout, method, parts, r, train_connector"),
        ("smolvlm-lora", "data.max_lenght=64", "did you mean 'max_length'?"),
        ("smolvlm-dora", "training.learnig_rate=1e-4", "did you mean 'learning_rate'?"),
        ("nano-synthetic", "model.tiny.hiden=64", "valid keys of model.tiny: compressor, factor"),
        ("nano-synthetic", "optimizer.lr=1", "section 'optimizer'; valid sections: model, data"),
    ],
)
def test_a_misspelled_key_fails_before_anything_loads(
    recipe, override, valid, no_training, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([recipe, override, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"override {override!r}: unknown" in error and valid in error
    assert "Traceback" not in error
    assert no_training == []


def test_overrides_are_read_by_the_fields_type():
    recipe = load_recipe(
        "smolvlm-lora",
        [
            "training.run_name=nan",  # a string field keeps the text
            "training.learning_rate=3e-3",  # YAML 1.1 reads this as a string
            "training.bf16=false",
            "training.report_to=[]",
            "data.train=[data/a, data/b]",
            "data.val=null",
            "model.dtype=float32",
        ],
    )
    assert recipe.training["run_name"] == "nan"
    assert recipe.training["learning_rate"] == 0.003
    assert recipe.training["bf16"] is False and recipe.training["report_to"] == []
    assert recipe.data.train == ["data/a", "data/b"] and recipe.data.val is None
    assert recipe.model.dtype == "float32"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.max_steps=ten", "training.max_steps must be int, got 'ten'"),
        ("training.bf16=maybe", "training.bf16 must be bool, got 'maybe'"),
        ("data.max_length=1.5", "data.max_length must be int, got 1.5"),
        ("peft.parts=llm", "peft.parts must be list[str], got 'llm'"),
        ("peft.r=true", "peft.r must be int, got True"),
        ("loss.position_weight=[1]", "loss.position_weight must be float, got [1]"),
        ("model=just-a-path", "model must be dict, got 'just-a-path'"),
        ("stage.name=x", "stage is a value, not a section with keys"),
        ("training.output_dir=x", "training.output_dir is set by the --out option"),
        ("peft.method=qlora", "peft.method must be one of lora, dora; got 'qlora'"),
        ("data.tasks=[vqa, cout]", "data.tasks must be one of caption"),
        ("model.tokenizer.vocab_size=300", "model.tokenizer trains a tokenizer for model.tiny"),
    ],
)
def test_a_wrong_value_names_the_key_and_what_it_takes(override, message):
    with pytest.raises(RecipeError, match="^.*" + message.replace("[", r"\[").replace("?", r"\?")):
        load_recipe("smolvlm-lora", [override])


def test_a_recipe_file_is_checked_like_the_overrides(tmp_path):
    document = yaml.safe_load((ROOT / "training" / "recipes" / "smolvlm-lora.yaml").read_text())
    document["peft"]["rank"] = 8
    misspelled = tmp_path / "misspelled.yaml"
    misspelled.write_text(yaml.safe_dump(document))
    with pytest.raises(RecipeError, match=r"misspelled.yaml: unknown key 'peft.rank'; valid keys"):
        load_recipe(misspelled)
    del document["peft"]["rank"]
    document["training"]["max_steps"] = "many"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(document))
    with pytest.raises(RecipeError, match=r"training\.max_steps must be int, got 'many'"):
        load_recipe(wrong)
    del document["data"]["train"]
    wrong.write_text(yaml.safe_dump(document))
    with pytest.raises(RecipeError, match=r"data\.train is required"):
        load_recipe(wrong)


@pytest.mark.parametrize("name", recipe_names())
def test_a_saved_recipe_reads_back_the_same(name, tmp_path):
    recipe = load_recipe(name, ["training.run_name=nan", "data.val=null"])
    saved = tmp_path / "recipe.yaml"
    saved.write_text(yaml.safe_dump(recipe.document(), sort_keys=False))
    again = load_recipe(saved)
    assert again.document() == recipe.document()


def test_validation_defaults_to_the_builds_own_val_split(squares, tmp_path):
    recipe = load_recipe("smolvlm-lora", [f"data.train={squares}"])
    assert recipe.data.val == "auto"
    train, val = build_datasets(recipe)
    assert len(train) == 64 and len(val) == len(RecordDataset(squares, "val")) == 16
    assert {record["split"] for record in val.records} == {"val"}
    # A build without val shards, and a bare JSONL file, train without validation: their
    # training records are never read as validation ones.
    only_train = tmp_path / "only-train"
    only_train.mkdir()
    (only_train / "train-00000.jsonl").write_text((squares / "train-00000.jsonl").read_text())
    (only_train / "images").symlink_to(squares / "images")
    for source in (only_train, only_train / "train-00000.jsonl"):
        _, val = build_datasets(load_recipe("smolvlm-lora", [f"data.train={source}"]))
        assert val is None
