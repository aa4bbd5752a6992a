"""run_fit's checks that happen right after the split, before any training, and checkpoint loading errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import trainer.pipeline as pipeline
from trainer.data import DataError, Series
from trainer.pipeline import FitOptions, load_checkpoint, run_fit
from trainer.threshold import ThresholdError


class Trained(Exception):
    """Raised by the stand-in for training: proves the run got that far."""


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_fit(*args, **kwargs):
        raise Trained

    monkeypatch.setattr(pipeline, "fit", fake_fit)


def series(rows: int) -> list[Series]:
    x = np.random.default_rng(0).normal(size=(rows, 2)).astype(np.float32)
    return [Series(name="s", values=x, channels=["a", "b"])]


@pytest.mark.usefixtures("no_training")
def test_pot_with_too_few_validation_windows_fails_before_training(tmp_path: Path) -> None:
    opts = FitOptions(window=16, hop=4, threshold_method="pot", threshold_params={"risk": 1e-3, "level": 0.98})
    with pytest.raises(ThresholdError, match="POT needs at least 10") as err:
        run_fit(series(2000), tmp_path / "m.onnx", opts)  # 400 val rows -> 385 hop-1 windows -> at most 7 peaks
    assert "\n" not in str(err.value)


@pytest.mark.usefixtures("no_training")
def test_pot_with_enough_validation_windows_goes_on_to_train(tmp_path: Path) -> None:
    opts = FitOptions(window=16, hop=1, threshold_method="pot", threshold_params={"risk": 1e-3, "level": 0.98})
    with pytest.raises(Trained):
        run_fit(series(4000), tmp_path / "m.onnx", opts)  # 785 val windows -> 15 peaks


@pytest.mark.usefixtures("no_training")
def test_few_validation_windows_for_q_warn_before_training(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    opts = FitOptions(window=16, hop=4, threshold_method="quantile", threshold_params={"q": 0.999})
    with caplog.at_level(logging.WARNING, logger="trainer.pipeline"), pytest.raises(Trained):
        run_fit(series(2000), tmp_path / "m.onnx", opts)
    (rec,) = [r for r in caplog.records if "validation windows" in r.getMessage()]
    assert "only 385 validation windows" in rec.getMessage() and "1000 windows are needed" in rec.getMessage()


@pytest.mark.usefixtures("no_training")
def test_enough_validation_windows_for_q_do_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    opts = FitOptions(window=16, hop=4, threshold_method="quantile", threshold_params={"q": 0.9})
    with caplog.at_level(logging.WARNING, logger="trainer.pipeline"), pytest.raises(Trained):
        run_fit(series(2000), tmp_path / "m.onnx", opts)
    assert not [r for r in caplog.records if "validation windows" in r.getMessage()]


def test_non_checkpoint_error_is_one_short_line(tmp_path: Path) -> None:
    f = tmp_path / "model.onnx"
    f.write_bytes(b"PK\x03\x04 not a torch zip" * 100)
    with pytest.raises(DataError) as err:
        load_checkpoint(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: not a readable edgewatch checkpoint (") and msg.endswith(")")
    assert "\n" not in msg and len(msg) < 200 + len(str(f))


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(("option", "value"), [("score_power", 0.1), ("score_power", float("nan")),
                                               ("level_shrinkage", 1.5)])
def test_score_options_out_of_range_are_refused_before_training(tmp_path: Path, option: str, value: float) -> None:
    with pytest.raises(DataError, match=option):
        run_fit(series(2000), tmp_path / "m.onnx", FitOptions(window=16, hop=4, **{option: value}))
