"""`edgewatch-lab bench faults` at a small size: the plant's stops never raise a process alert through the daemon,
its sensor faults are alerted as sensor faults within 2x their limit and raise no process alert either, and the
judging counts what it is given (a real fit, Mosquitto and daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.bench import faults


@pytest.mark.slow
def test_stops_and_sensor_faults_raise_no_process_alert_through_the_daemon(tmp_path: Path) -> None:
    meta = faults.fit_model(tmp_path / "plant.onnx", seed=0, epochs=3, rows=8000)
    states = meta.state_model()
    assert states is not None and set(states.stop_channels) >= {"pressure", "current"}
    run = faults.stream(tmp_path / "plant.onnx", 1, True, tmp_path)  # stops, process and sensor faults
    res = faults.judge(run, meta)
    assert res["stops_seen"] == 2  # both stops recognised without the status column
    assert res["false_process_alerts"]["stop"] == 0
    assert res["false_process_alerts"]["freeze"] == res["false_process_alerts"]["dropout"] == 0
    rows = [s for s in res["sensor_faults"] if s["kind"] != "dead"]  # (stale needs wall-clock silence)
    assert len(rows) == 5 and all(s["alerted"] and s["within_2x"] for s in rows), rows
    assert run["stats"]["samples_stopped"] > 700 and run["stats"]["samples_settling"] > 0
    # the judge attributes a raise during a stop's run-up to the stop
    stop = next(g for g in run["truth"] if g["kind"] == "stop")
    fake = dict(run, messages=[*run["messages"], ("alerts/sim-0", {
        "device": "sim-0", "state": "raised", "event": "raise", "window_start": stop["start_ts"],
        "window_end": stop["end_ts"] + 5.0})])
    assert faults.judge(fake, meta)["false_process_alerts"]["stop"] == res["false_process_alerts"]["stop"] + 1
