"""Atomic file writes: a reader sees the old file or the new one, never half of one.

A file is written to a temporary file in the same folder (so the rename stays on one file
system), flushed to disk, given the permissions ``open()`` would give a new file (``0o666``
less the umask), and renamed over the target. ``tempfile.mkstemp`` creates its file ``0o600``;
without the ``chmod`` every output would be readable by its owner only. A folder is written
the same way: filled under a temporary name beside it, then renamed (``tempfile.mkdtemp`` makes
it ``0o700``, so it too gets the mode ``mkdir`` would give).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

NEW_FILE_MODE = 0o666  # what open() asks for; the umask takes away from it
NEW_FOLDER_MODE = 0o777  # what mkdir asks for
_PROC_STATUS = Path("/proc/self/status")


def new_file_mode() -> int:
    """The permissions ``open()`` gives a new file now: ``0o666`` less the process umask."""
    return NEW_FILE_MODE & ~_umask()


def new_folder_mode() -> int:
    """The permissions ``mkdir`` gives a new folder now: ``0o777`` less the process umask."""
    return NEW_FOLDER_MODE & ~_umask()


def _umask() -> int:
    # Linux reports the umask without changing it; os.umask must set it to read it, which
    # briefly changes it for every thread of the process.
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_writer(path: str | Path, mode: str = "w", encoding: str | None = None) -> Iterator[IO]:
    """Opens a temporary file that replaces ``path`` when the ``with`` block ends without error.

    The folder of ``path`` is created if needed. On an error the temporary file is removed and
    ``path`` is left as it was.

    Args:
        path: The file to write.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: Text encoding; None means UTF-8 in text mode.

    Yields:
        The open temporary file.

    Raises:
        ValueError: For a mode other than ``"w"`` or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer writes whole files: mode 'w' or 'wb', got {mode!r}")
    options: dict[str, Any] = {} if mode == "wb" else {"encoding": encoding or "utf-8"}
    with atomic_path(path) as temporary, open(temporary, mode, **options) as handle:
        yield handle


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Writes ``text`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, "w", encoding=encoding) as handle:
        handle.write(text)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yields an empty temporary folder that becomes ``path`` when the ``with`` block ends.

    The files written into it are flushed to disk before the rename. On an error the temporary
    folder is removed and nothing is left at ``path``.

    Args:
        path: The folder to write; must not exist yet. Its parent is created if needed.

    Yields:
        The temporary folder, beside ``path``.

    Raises:
        FileExistsError: If ``path`` exists.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists already")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield staging
        for file in sorted(staging.rglob("*")):
            if file.is_file():
                with file.open("rb") as handle:
                    os.fsync(handle.fileno())
        os.chmod(staging, new_folder_mode())
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def atomic_files(folder: str | Path) -> Iterator[Path]:
    """Yields a temporary folder whose files replace their namesakes in ``folder`` at the end.

    For files that belong together: none of them replaces anything until the ``with`` block
    ends without error; then each is flushed to disk, given :func:`new_file_mode` and renamed
    into ``folder``. The files keep their names (a writer may pick its format from the suffix).
    The temporary folder lies inside ``folder`` (created if needed), so the renames stay on one
    file system, and is removed at the end; on an error ``folder`` is left as it was.

    Args:
        folder: Where the files go; other files in it are left alone.

    Yields:
        The temporary folder; only the files at its top are moved.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".files.", suffix=".tmp"))
    try:
        yield staging
        files = sorted(path for path in staging.iterdir() if path.is_file())
        for file in files:
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(file, new_file_mode())
        for file in files:
            os.replace(file, folder / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path that replaces ``path`` when the ``with`` block ends without error.

    For writers that open a file by name (rasterio, PIL, osmium): the block writes the
    temporary file, then it is flushed to disk, given :func:`new_file_mode` and renamed over
    ``path``. The temporary file lies in the folder of ``path`` (created if needed) and is
    named ``.<name>.<random>.tmp``, so a writer that picks its format from the suffix must be
    told the format. On an error it is removed and ``path`` is left as it was.

    Args:
        path: The file to write.

    Yields:
        The temporary path (an empty file exists there).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    os.close(descriptor)
    try:
        yield Path(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, new_file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
