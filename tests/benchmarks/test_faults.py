"""`edgewatch-lab bench faults` at a small size: the plant's stops never raise a process alert through the daemon,
its process faults are detected, and the judging counts what it is given (a real fit, Mosquitto and daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.bench import faults


@pytest.mark.slow
def test_stops_raise_nothing_and_process_faults_are_found_through_the_daemon(tmp_path: Path) -> None:
    meta = faults.fit_model(tmp_path / "plant.onnx", seed=0, epochs=3, rows=8000)
    states = meta.state_model()
    assert states is not None and set(states.stop_channels) >= {"pressure", "current"}
    run = faults.stream(tmp_path / "plant.onnx", 1, False, tmp_path)
    res = faults.judge(run, meta)
    assert res["stops_seen"] == 2  # both stops recognised without the status column
    assert res["false_process_alerts"]["stop"] == 0
    assert res["process_detected"] == res["process_faults"] == 2, res["process_delays_s"]
    assert run["stats"]["samples_stopped"] > 700 and run["stats"]["samples_settling"] > 0
    # the judge attributes a raise during a stop's run-up to the stop
    fake = dict(run, messages=[*run["messages"], ("alerts/sim-0", {
        "device": "sim-0", "state": "raised", "event": "raise", "window_start": run["truth"][0]["start_ts"],
        "window_end": run["truth"][0]["end_ts"] + 5.0})])
    assert faults.judge(fake, meta)["false_process_alerts"]["stop"] == 1
