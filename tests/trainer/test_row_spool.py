"""RowSpool: a recording read row by row, kept as float32 in memory or mapped from a nameless temporary file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from trainer import row_spool
from trainer.data import ReadOptions, read_csv
from trainer.row_spool import RowSpool


def _fill(spool: RowSpool, rows: np.ndarray) -> np.ndarray:
    for r in rows:
        spool.extend(r.tolist())
    return spool.finish()


@pytest.mark.parametrize("n", [0, 1, 6, 7, 8, 50])  # around the block size (7 rows) and its multiples
def test_memory_and_disk_hold_the_same_values(n: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rows = np.random.default_rng(n).normal(size=(n, 3)) * 1e3
    mem = RowSpool(3, in_memory_bytes=1 << 30, block_rows=7)
    disk = RowSpool(3, in_memory_bytes=20, block_rows=7)  # past 20 bytes: on disk
    a, b = _fill(mem, rows), _fill(disk, rows)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (n, 3)
    np.testing.assert_array_equal(a, rows.astype(np.float32))
    np.testing.assert_array_equal(b, a)
    assert not mem.on_disk and disk.on_disk == (n * 12 > 20)
    assert isinstance(b, np.memmap) == disk.on_disk
    assert list(tmp_path.iterdir()) == []  # the temporary file never has a name
    if n:
        b[:, 0] = 0.0  # writable, as a fill needs it
        assert float(b[:, 0].sum()) == 0.0


def test_a_large_csv_is_mapped_and_read_as_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the in-memory limit the read is the same, --fill included, from the mapped file."""
    f = tmp_path / "big.csv"
    x = np.random.default_rng(0).normal(size=(3000, 4)).round(4)
    text = ["a,b,c,d"] + [",".join("" if (i % 97 == 5 and j == 2) else f"{v:.4f}" for j, v in enumerate(r))
                          for i, r in enumerate(x)]
    f.write_text("\n".join(text) + "\n")
    small = read_csv(f, opts=ReadOptions(fill="ffill"))
    monkeypatch.setattr(row_spool, "IN_MEMORY_BYTES", 10_000)
    monkeypatch.setattr(row_spool, "BLOCK_ROWS", 256)
    big = read_csv(f, opts=ReadOptions(fill="ffill"))
    assert isinstance(big.values, np.memmap) and not isinstance(small.values, np.memmap)
    np.testing.assert_array_equal(big.values, small.values)
    assert not np.isnan(big.values).any() and big.values[5, 2] == big.values[4, 2]  # the gap filled forward


def test_fit_from_a_mapped_recording_makes_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole fit (screening, normalisation, training, calibration, health limits) reads the mapped values as it
    reads memory: the same seed gives the same model, content hash included."""
    from click.testing import CliRunner

    from edge_runtime.tools import synthetic as syn
    from trainer.cli import main
    from trainer.model_file import read_metadata

    f = tmp_path / "n.csv"
    syn.write_csv(f, syn.normal_series(1500, 3, seed=1), syn.channel_names(3))
    fast = ["--window", "16", "--epochs", "2", "--width", "4", "--latent", "4", "-q", "--seed", "3"]

    def model_id(name: str) -> str:
        out = tmp_path / name
        r = CliRunner().invoke(main, ["fit", str(f), "-o", str(out), *fast])
        assert r.exit_code == 0, r.output
        return read_metadata(out).model_id

    in_memory = model_id("a.onnx")
    monkeypatch.setattr(row_spool, "IN_MEMORY_BYTES", 4096)
    assert model_id("b.onnx") == in_memory


def test_a_npy_file_is_read_in_blocks_and_a_bad_value_named_by_its_row(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer.data import DataError, read_numpy

    x = np.random.default_rng(2).normal(size=(1000, 2))
    f = tmp_path / "x.npy"
    np.save(f, x)
    monkeypatch.setattr(row_spool, "BLOCK_ROWS", 64)
    monkeypatch.setattr(row_spool, "IN_MEMORY_BYTES", 1000)
    got = read_numpy(f)
    assert isinstance(got.values, np.memmap)
    np.testing.assert_array_equal(got.values, x.astype(np.float32))
    x[777, 1] = np.inf  # in the 13th block
    np.save(f, x)
    with pytest.raises(DataError, match="row 777, column 1: missing or non-finite value"):
        read_numpy(f)
