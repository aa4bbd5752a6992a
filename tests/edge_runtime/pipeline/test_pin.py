"""The model pin: which models fit a gateway's job (pure)."""

from __future__ import annotations

import pytest

from edge_runtime.pipeline.pin import Pin, model_family, pin_mismatch

A = ("Accelerometer1RMS", "Pressure", "Temperature", "Volume Flow RateRMS")


@pytest.mark.parametrize(("pin", "channels", "window", "family"), [
    (Pin(), ["x"], 8, ""),
    (Pin(A), list(A), 16, "conv1d_autoencoder"),
    (Pin(A, 16), list(A), 16, ""),
    (Pin(A, 16, "conv1d_autoencoder"), list(A), 16, "conv1d_autoencoder"),
    (Pin(window=64), ["x"], 64, ""),
])
def test_fitting_models_pass(pin: Pin, channels: list[str], window: int, family: str) -> None:
    assert pin_mismatch(pin, channels, window, family) == ""


@pytest.mark.parametrize(("channels", "window", "family", "says"), [
    (["a", "b", "c", "d"], 16, "", "lacks 'Accelerometer1RMS'"),
    ([*A, "Current"], 16, "", "adds 'Current'"),
    (list(A[:3]), 16, "", "lacks 'Volume Flow RateRMS'"),
    (list(reversed(A)), 16, "", "another order"),
    (list(A), 32, "", "window W=32 differs from the pin (model.window = 16)"),
    (list(A), 16, "lstm", "model family 'lstm' differs"),
])
def test_a_model_breaking_the_pin_gets_one_line(channels: list[str], window: int, family: str, says: str) -> None:
    why = pin_mismatch(Pin(A, 16, "conv1d_autoencoder" if family else ""), channels, window, family)
    assert says in why and "\n" not in why


def test_the_issue_case_11_channel_pump_pin_refuses_the_4_channel_demo() -> None:
    pump = tuple(f"ch{i}" for i in range(11))
    why = pin_mismatch(Pin(pump), list(A), 64, "")
    assert why.startswith("channels differ from the pin (model.channels, 11 channels): the model has 4")


def test_family_is_the_architecture_type() -> None:
    assert model_family({"type": "conv1d_autoencoder", "depth": 2}) == "conv1d_autoencoder"
    assert model_family({}) == "" and model_family({"type": 3}) == ""
    assert Pin().empty and not Pin(window=3).empty
