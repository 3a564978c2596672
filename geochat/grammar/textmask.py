"""Text-masks: an ``N x N`` grid over the image, one cell per ``1/N`` of each axis.

Cell ``(r, c)`` covers rows ``floor(r H / N) .. floor((r + 1) H / N) - 1`` and the same for
columns, so the cells tile the image exactly (on an image smaller than ``N`` some cells hold no
pixel). Downsampling sets a cell when at least half of its pixels are set; a mask that is not
empty keeps at least its most covered cell, so that small objects are never lost. Upsampling is
nearest: every pixel takes the value of its cell. Hence ``downsample(upsample(grid)) == grid``
for images of at least ``N x N`` pixels.

Two row encodings: run-length runs ``v*count`` joined by ``,`` (our grammar, after Text4Seg's
row-wise RLE) and plain ``0,1,1,0`` values (GeoGround's Text-Mask).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from geochat import geometry
from geochat.grammar.core import GrammarError, Number, ProblemLog, read_numbers

MAX_GRID = 128  # largest N tolerant parsing accepts; bigger grids are an error, not a mask


def cell_edges(size: int, grid: int) -> np.ndarray:
    """Pixel edges of the ``grid`` cells along an axis of ``size`` pixels, ``[grid + 1]``."""
    return (np.arange(grid + 1) * size) // grid


def downsample(mask: Any, grid: int) -> np.ndarray:
    """Turns a full-resolution mask (boolean array or COCO RLE) into a boolean ``[N, N]`` grid.

    Raises:
        GrammarError: if the mask is empty (write ``<none>`` instead) or ``grid < 1``.
    """
    if not isinstance(grid, int | np.integer) or grid < 1:
        raise GrammarError(f"the grid side must be a positive integer, got {grid!r}")
    pixels = geometry.rle_to_mask(mask) if isinstance(mask, dict) else np.asarray(mask, dtype=bool)
    if pixels.ndim != 2:
        raise GrammarError(f"a mask must be 2-D [H, W], got shape {pixels.shape}")
    if not pixels.any():
        raise GrammarError("cannot write an empty mask; write <none> for nothing found")
    rows = cell_edges(pixels.shape[0], grid)
    cols = cell_edges(pixels.shape[1], grid)
    # Summed-area table [H + 1, W + 1]: the pixel count of any cell in four look-ups.
    table = np.zeros((pixels.shape[0] + 1, pixels.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = pixels.cumsum(axis=0).cumsum(axis=1)
    covered = (
        table[np.ix_(rows[1:], cols[1:])]
        - table[np.ix_(rows[:-1], cols[1:])]
        - table[np.ix_(rows[1:], cols[:-1])]
        + table[np.ix_(rows[:-1], cols[:-1])]
    )  # [N, N] set pixels per cell
    area = np.outer(np.diff(rows), np.diff(cols))  # [N, N] pixels per cell
    cells = (2 * covered >= area) & (area > 0)
    if not cells.any():
        share = np.divide(covered, area, out=np.zeros(covered.shape), where=area > 0)
        cells[np.unravel_index(np.argmax(share), share.shape)] = True
    return cells


def upsample(cells: np.ndarray, height: int, width: int) -> np.ndarray:
    """Expands a boolean ``[N, N]`` grid to a ``[height, width]`` mask (nearest)."""
    grid = cells.shape[0]
    row_sizes = np.diff(cell_edges(height, grid))
    col_sizes = np.diff(cell_edges(width, grid))
    return np.repeat(np.repeat(cells, row_sizes, axis=0), col_sizes, axis=1)


def encode_runs(cells: np.ndarray) -> str:
    """Writes a grid as rows of ``v*count`` runs: ``0*5,1*6,0*5;...``."""
    return ";".join(_row_runs(row) for row in cells)


def _row_runs(row: np.ndarray) -> str:
    starts = np.concatenate([[0], np.flatnonzero(np.diff(row.astype(np.int8))) + 1])
    lengths = np.diff(np.concatenate([starts, [len(row)]]))
    runs = zip(starts, lengths, strict=True)
    return ",".join(f"{int(row[start])}*{length}" for start, length in runs)


def encode_values(cells: np.ndarray) -> str:
    """Writes a grid as rows of plain values: ``0,0,1,1;...`` (GeoGround's Text-Mask)."""
    return ";".join(",".join("1" if cell else "0" for cell in row) for row in cells)


def decode_runs(body: str, offset: int, grid: int, log: ProblemLog) -> np.ndarray:
    """Reads ``N`` rows of ``v*count`` runs into a boolean ``[N, N]`` grid.

    Tolerant parsing fixes what it reports: a bad run is skipped, a short row is padded with 0,
    a long row is cut, missing rows are 0 and extra rows are ignored.
    """
    return _decode_rows(body.split(";"), offset, grid, log, _run_cells)


def decode_values(body: str, offset: int, log: ProblemLog) -> np.ndarray | None:
    """Reads rows of plain ``0``/``1`` values; ``N`` is the number of rows (a final ``;`` is ok).

    Returns None (after a report) when there are more than :data:`MAX_GRID` rows.
    """
    rows = body.split(";")
    if len(rows) > 1 and not rows[-1].strip():
        rows.pop()
    if len(rows) > MAX_GRID:
        log.report(f"<seg>: {len(rows)} rows, expected at most {MAX_GRID}", offset)
        return None
    return _decode_rows(rows, offset, len(rows), log, _value_cells)


CellReader = Callable[[str, int, ProblemLog], list[bool]]


def _decode_rows(
    rows: list[str], offset: int, grid: int, log: ProblemLog, read_cells: CellReader
) -> np.ndarray:
    cells = np.zeros((grid, grid), dtype=bool)
    row_start = offset
    for index, row in enumerate(rows[:grid]):
        values = _decode_row(row, row_start, grid, log, read_cells)
        cells[index, : len(values)] = values
        row_start += len(row) + 1
    if len(rows) != grid:
        log.report(f"<seg>: {len(rows)} rows, expected {grid}", offset)
    return cells


def _decode_row(
    row: str, start: int, grid: int, log: ProblemLog, read_cells: CellReader
) -> list[bool]:
    values: list[bool] = []
    position = start
    for item in row.split(","):
        if len(values) > grid:
            break  # too long already; one report below is enough
        values.extend(read_cells(item, position, log))
        position += len(item) + 1
    if len(values) != grid:
        held = str(len(values)) if len(values) <= grid else f"more than {grid}"
        log.report(f"<seg>: a row holds {held} cells, expected {grid}", start)
    return values[:grid]


def _run_cells(item: str, position: int, log: ProblemLog) -> list[bool]:
    """Cells of one ``v*count`` run."""
    value, star, count = item.partition("*")
    if not star:
        log.report(f"<seg>: expected a run 'v*count', found {item.strip()[:20]!r}", position)
        return []
    numbers = read_numbers([Number(value, position)], 0, 1, log, "<seg> value")
    counts = read_numbers([Number(count, position)], 1, MAX_GRID, log, "<seg> count")
    if numbers is None or counts is None:
        return []
    return [bool(numbers[0])] * int(counts[0])


def _value_cells(item: str, position: int, log: ProblemLog) -> list[bool]:
    """The one cell of a plain ``0`` or ``1`` value."""
    numbers = read_numbers([Number(item, position)], 0, 1, log, "<seg> value")
    return [] if numbers is None else [bool(numbers[0])]
