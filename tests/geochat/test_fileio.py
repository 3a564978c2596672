"""Tests of geochat.fileio: atomic writes with the permissions open() would give."""

import os
import stat

import pytest

from geochat import fileio
from geochat.app.ui import write_geojson
from geochat.data_builders.shards import write_json
from geochat.data_builders.synthetic import build_world, write_tif
from geochat.fileio import atomic_folder, atomic_write_bytes, atomic_write_text, atomic_writer


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it after."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode_of(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "text.txt", "hello")
    atomic_write_bytes(tmp_path / "bytes.bin", b"\x00\x01")

    assert mode_of(tmp_path / "text.txt") == mode_of(plain) == 0o666 & ~mask
    assert mode_of(tmp_path / "bytes.bin") == 0o666 & ~mask


def test_the_umask_is_read_without_proc_too(tmp_path, umask, monkeypatch):
    umask(0o027)
    monkeypatch.setattr(fileio, "_PROC_STATUS", tmp_path / "missing")
    assert fileio.new_file_mode() == 0o640
    assert os.umask(0o027) == 0o027  # reading it left it as it was


def test_contents_and_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    atomic_write_bytes(target, b"replaced")
    assert target.read_bytes() == b"replaced"
    assert os.listdir(target.parent) == ["out.txt"]


def test_an_error_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"), atomic_writer(tmp_path / "x", "a"):
        pass


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_a_written_folder_gets_the_mode_mkdir_would_give(tmp_path, umask, mask):
    umask(mask)
    (tmp_path / "plain").mkdir()
    with atomic_folder(tmp_path / "out" / "folder") as staging:
        (staging / "inner.txt").write_text("x")

    folder = tmp_path / "out" / "folder"
    assert mode_of(folder) == mode_of(tmp_path / "plain") == 0o777 & ~mask
    assert (folder / "inner.txt").read_text() == "x"
    assert sorted(path.name for path in folder.parent.iterdir()) == ["folder"]


def test_a_failed_folder_leaves_nothing_and_an_existing_one_is_kept(tmp_path):
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "folder") as staging:
        (staging / "half.txt").write_text("x")
        raise RuntimeError("failed")
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "kept").mkdir()
    with pytest.raises(FileExistsError), atomic_folder(tmp_path / "kept"):
        pass
    assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_atomic_path_gives_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    with fileio.atomic_path(tmp_path / "sub" / "image.png") as temporary:
        temporary.write_bytes(b"png")
    assert (tmp_path / "sub" / "image.png").read_bytes() == b"png"
    assert mode_of(tmp_path / "sub" / "image.png") == 0o666 & ~mask


def test_atomic_path_keeps_the_old_file_on_an_error(tmp_path):
    target = tmp_path / "a.tif"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), fileio.atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def test_the_project_writers_give_normal_permissions(tmp_path, umask):
    """Each writer that uses the helpers gives its files the mode open() would give."""
    umask(0o022)
    written = [
        write_geojson({"type": "FeatureCollection", "features": []}, tmp_path, "answer"),
    ]
    write_json(tmp_path / "manifest.json", {"a": 1})
    written.append(tmp_path / "manifest.json")
    write_tif(
        build_world(seed=0, width=32, height=32, gsd=1.0, scene="suburban"), tmp_path / "w.tif"
    )
    written.append(tmp_path / "w.tif")
    for path in written:
        assert mode_of(path) == 0o644, path


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_files_written_together_replace_theirs_together(tmp_path, umask, mask):
    umask(mask)
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "other.txt").write_text("not ours")
    with fileio.atomic_files(tmp_path) as staging:
        (staging / "a.txt").write_text("new a")
        (staging / "b.gpkg").write_bytes(b"b")
        assert (tmp_path / "a.txt").read_text() == "old a"  # nothing moves before the end
    assert (tmp_path / "a.txt").read_text() == "new a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.gpkg", "other.txt"]
    assert mode_of(tmp_path / "b.gpkg") == 0o666 & ~mask


def test_files_written_together_leave_the_folder_as_it_was_on_an_error(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(RuntimeError), fileio.atomic_files(tmp_path) as staging:
        (staging / "a.txt").write_text("new a")
        (staging / "b.txt").write_text("b")
        raise RuntimeError("the third file failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a"
