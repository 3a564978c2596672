"""Tests of geochat.modeling.resolve_checkpoint: which model a folder given as --model means."""

import pytest

from geochat.modeling import last_complete_checkpoint, resolve_checkpoint


def model_folder(path, name="config.json"):
    path.mkdir(parents=True)
    (path / name).write_text("{}")
    return path


def checkpoint(run, step, complete=True):
    folder = model_folder(run / f"checkpoint-{step}")
    if complete:
        (folder / "trainer_state.json").write_text("{}")
    return folder


def test_a_model_folder_is_itself(tmp_path):
    folder = model_folder(tmp_path / "model")
    assert resolve_checkpoint(folder) == folder
    adapter = model_folder(tmp_path / "adapter", "adapter_config.json")
    assert resolve_checkpoint(str(adapter)) == str(adapter)


def test_a_finished_run_gives_its_final_model(tmp_path):
    checkpoint(tmp_path, 500)
    final = model_folder(tmp_path / "final")
    assert resolve_checkpoint(tmp_path) == final


def test_an_unfinished_run_gives_its_newest_complete_checkpoint(tmp_path):
    checkpoint(tmp_path, 9)
    newest = checkpoint(tmp_path, 10)  # newer than 9 as a number, older as text
    checkpoint(tmp_path, 11, complete=False)  # killed while saving
    (tmp_path / "final").mkdir()  # interrupted before the final model was written
    assert last_complete_checkpoint(tmp_path) == newest
    assert resolve_checkpoint(tmp_path) == newest


def test_hub_ids_pass_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("HuggingFaceTB/SmolVLM-256M-Instruct") == (
        "HuggingFaceTB/SmolVLM-256M-Instruct"
    )


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        (lambda path: path / "no" / "such" / "run", FileNotFoundError, "no model folder"),
        (lambda path: path, FileNotFoundError, "holds no model: pass a checkpoint folder"),
        (
            lambda path: checkpoint(path, 3, complete=False).parent,
            FileNotFoundError,
            "or a complete checkpoint-N/",
        ),
        (lambda path: model_folder(path / "m") / "config.json", NotADirectoryError, "is a file"),
    ],
)
def test_what_holds_no_model_is_said_in_one_sentence(tmp_path, setup, error, message):
    with pytest.raises(error, match=message):
        resolve_checkpoint(setup(tmp_path))
