"""A recording's values as they are read, row by row, kept as float32 in bounded memory.

Rows are gathered in blocks of ``BLOCK_ROWS`` (8 bytes a value while a block fills) and stored as float32. Up to
``in_memory_bytes`` the blocks stay in memory and become one array at the end; beyond it they go to an unlinked
temporary file (``tempfile``: ``TMPDIR``) that is mapped back read-write (``np.memmap``), so a recording larger
than the machine's memory can be fitted: the operating system pages it in and out, and nothing of it stays on disk
once the array is gone (the file has no name; a killed process leaves nothing behind either).
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Iterable
from typing import IO

import numpy as np

BLOCK_ROWS = 65_536
IN_MEMORY_BYTES = 64 * 2**20  # a recording of more float32 bytes than this is mapped from a temporary file


class RowSpool:
    """Append rows of ``width`` values (:meth:`extend` one row at a time), then :meth:`finish` -> (rows, width)."""

    def __init__(self, width: int, in_memory_bytes: int | None = None, block_rows: int | None = None) -> None:
        if width < 1:
            raise ValueError("a row needs at least one value")
        self.width = width
        self.block_rows = BLOCK_ROWS if block_rows is None else block_rows
        self.in_memory_bytes = IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
        self._block = array("d")
        self._blocks: list[np.ndarray] = []
        self._file: IO[bytes] | None = None
        self.rows = 0  # rows stored (not counting the block being filled)
        self.on_disk = False

    def extend(self, row: Iterable[float]) -> None:
        """Append one row (``width`` values; the caller checks the count)."""
        self._block.extend(row)
        if len(self._block) >= self.block_rows * self.width:
            self._flush()

    def extend_rows(self, rows: np.ndarray) -> None:
        """Append a block of rows ``(n, width)`` at once (a numpy array read in blocks)."""
        self._flush()
        self._store(np.array(rows, dtype=np.float32, order="C").reshape(-1))  # a copy: never a view of the source

    def _flush(self) -> None:
        if self._block:
            block = np.frombuffer(self._block, dtype=np.float64).astype(np.float32)
            self._block = array("d")
            self._store(block)

    def _store(self, block: np.ndarray) -> None:
        """Keep ``block`` (flat float32, whole rows) in memory or in the file."""
        if not block.size:
            return
        self.rows += len(block) // self.width
        if self._file is None and self.rows * self.width * 4 > self.in_memory_bytes:
            self._file = tempfile.TemporaryFile(prefix="edgewatch-rows-")  # noqa: SIM115 (nameless: gone when closed)
            for b in self._blocks:
                b.tofile(self._file)
            self._blocks = []
            self.on_disk = True
        if self._file is not None:
            block.tofile(self._file)
        else:
            self._blocks.append(block)

    def finish(self) -> np.ndarray:
        """The values, (rows, width) float32 and writable: in memory, or mapped from the temporary file."""
        self._flush()
        if self._file is None:
            blocks, self._blocks = self._blocks, []
            if not blocks:
                return np.empty((0, self.width), dtype=np.float32)
            return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)).reshape(-1, self.width)
        self._file.flush()
        try:
            return np.memmap(self._file, dtype=np.float32, mode="r+", shape=(self.rows, self.width))
        finally:
            self._file.close()  # the mapping keeps the file's pages; its descriptor is not needed
            self._file = None
