"""`edgewatch-train demo` end to end (real trainer, real Mosquitto, real daemon subprocess), and its pure parts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from trainer.demo import DemoError, _Steps, match_alerts, match_conditions


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_short_demo_runs_end_to_end(tmp_path: Path, broker: str) -> None:
    """The whole demo; `amqtt` is the embedded fallback broker used where mosquitto is not installed."""
    cmd = [sys.executable, "-m", "trainer.cli", "demo", "--devices", "2", "--duration", "24", "--speed", "4",
           "--anomalies", "1", "--broker-kind", broker, "--out-dir", str(tmp_path / "runs")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    m = re.search(r"^run folder: (\S+)", out.stdout, re.M)
    assert m, out.stdout
    run = Path(m.group(1))
    assert run.parent == tmp_path / "runs" and run.name.startswith("demo-")
    for name in ("model.onnx", "evaluation.json", "evaluation.png", "ground_truth.json", "daemon.log",
                 "alerts.jsonl", "summary.txt", "summary.json", "train.csv", "labelled.csv"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert broker in out.stdout  # says which broker it used
    truth = json.loads((run / "ground_truth.json").read_text())["anomalies"]
    summary = json.loads((run / "summary.json").read_text())
    process = [g for g in truth if g["class"] == "process"]
    assert len(process) == 2 and len(truth) == 2 + 5  # then a stop and one of each sensor fault
    assert sorted((a["device"], a["kind"], a["start_ts"]) for a in summary["anomalies"]) == sorted(
        (g["device"], g["kind"], g["start_ts"]) for g in process)
    assert sorted(o["kind"] for o in summary["sensor_faults"]) == ["dead", "dropout", "freeze", "out_of_range"]
    assert [o["kind"] for o in summary["operating_states"]] == ["stop"]
    assert summary["operating_states"][0]["detected"], summary["operating_states"]  # the stop was recognised
    text = (run / "summary.txt").read_text()
    for g in truth:
        assert re.search(rf"^{re.escape(g['device'])}\s+{g['kind']}\s", text, re.M), text
    assert "sensor faults (sensor alerts, never anomalies):" in text and "operating states" in text
    # every message the simulator sent was processed by the daemon (2 devices x 48 s x 20 Hz, less the dead span)
    assert summary["daemon_stats"]["messages"] == summary["published"] < 2 * 48 * 20
    assert all(a["detected"] for a in summary["anomalies"]), summary["anomalies"]
    alerts = [json.loads(line) for line in (run / "alerts.jsonl").read_text().splitlines()]
    states = [a["state"] for a in alerts]
    # each device back to normal after each raise, but for a raise on the injected out-of-range reading (it stays in
    # the process score), which the stop 2 s after it may leave up
    readings = summary["out_of_range_reading_alerts"]
    assert len(readings) <= 1, readings
    assert states.count("raised") - len(readings) <= states.count("cleared") <= states.count("raised")
    assert states.count("raised") >= 2
    report = json.loads((run / "evaluation.json").read_text())
    assert "window_metrics" in report
    assert "false alarms:" in out.stdout and "detected" in out.stdout


def test_failed_step_is_named_and_exits_non_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.api
    from trainer.demo_cli import demo_command

    def boom(*a, **k):
        raise ValueError("series 0: contains non-finite values")

    monkeypatch.setattr(trainer.api, "train_and_export", boom)
    res = CliRunner().invoke(demo_command, ["--out-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert "step 'training and exporting the model" in res.output
    assert "contains non-finite values" in res.output.strip().splitlines()[-1]
    assert "Traceback" not in res.output


def test_steps_wrap_errors_with_the_step_title() -> None:
    steps = _Steps(lambda *_: None)
    with pytest.raises(DemoError) as err, steps.step("starting things"):
        raise OSError("port busy\nmore detail")
    assert err.value.step == "starting things" and err.value.reason == "more detail"


def test_match_alerts_delay_misses_and_false_alarms() -> None:
    truth = [
        {"device": "a", "kind": "spike", "start_ts": 10.0, "end_ts": 12.0},
        {"device": "a", "kind": "drift", "start_ts": 30.0, "end_ts": 32.0},
        {"device": "b", "kind": "stuck", "start_ts": 10.0, "end_ts": 12.0},
    ]
    alerts = [
        {"device": "a", "state": "raised", "window_end": 10.6, "score": 1.0, "alert_id": "x"},
        {"device": "a", "state": "cleared", "window_end": 16.0, "score": 0.1},
        {"device": "b", "state": "raised", "window_end": 25.0, "score": 1.0, "alert_id": "late"},  # too late
        {"device": "a", "state": "raised", "window_end": 31.0, "score": 1.0, "alert_id": "y"},
    ]
    outcomes, false_alarms = match_alerts(truth, alerts, window_s=3.2, slack_s=0.8)
    got = {(o.device, o.kind): (o.detected, o.delay_s, o.alert_id) for o in outcomes}
    assert got[("a", "spike")] == (True, pytest.approx(0.6), "x")
    assert got[("a", "drift")] == (True, pytest.approx(1.0), "y")
    assert got[("b", "stuck")] == (False, None, None)
    assert [a["alert_id"] for a in false_alarms] == ["late"]


def test_match_conditions_a_dead_device_is_alerted_without_a_delay_to_show() -> None:
    truth = [{"device": "a", "kind": "dead", "class": "sensor", "channels": [], "start_ts": 10.0, "end_ts": 15.0},
             {"device": "b", "kind": "freeze", "class": "sensor", "channels": ["p"], "start_ts": 10.0, "end_ts": 18.0}]
    sensor = [{"device": "a", "kind": "stale", "channel": None, "state": "raised", "since": 9.95, "at": None},
              {"device": "b", "kind": "stuck", "channel": "p", "state": "raised", "since": 10.0, "at": 10.5}]
    faults, _ = match_conditions(truth, sensor, [], slack_s=0.8)
    got = {o.kind: (o.detected, o.delay_s) for o in faults}
    assert got["dead"] == (True, None)  # dated at its last sample, before the fault: no honest delay
    assert got["freeze"] == (True, pytest.approx(0.5))


def test_demo_is_a_trainer_command_not_an_edge_one() -> None:
    from edge_runtime.cli import main as edge_main
    from trainer.cli import main as train_main

    assert "demo" in train_main.list_commands(click.Context(train_main))
    assert "demo" not in edge_main.list_commands(click.Context(edge_main))
    assert not (Path(__file__).resolve().parents[1] / "edge_runtime" / "demo_cli.py").exists()


def test_edge_cli_help_does_not_import_trainer() -> None:
    code = ("import sys, edge_runtime.cli as c, edge_runtime.tools.simulate, edge_runtime.tools.replay, "
            "edge_runtime.integrations.homeassistant, edge_runtime.integrations.metrics_http; "
            "from click.testing import CliRunner; r = CliRunner().invoke(c.main, ['--help']); assert r.exit_code == 0; "
            "bad = [m for m in ('torch', 'onnx', 'onnxscript', 'trainer') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_demo_section_commands_parse() -> None:
    """Every `edgewatch ...` / `edgewatch-train ...` command in docs/readme/10-demo.md and docs/TOOLS.md parses."""
    import shlex

    from edge_runtime.cli import main as edge_main
    from trainer.cli import main as train_main

    docs = Path(__file__).resolve().parents[1] / "docs"
    text = (docs / "readme" / "10-demo.md").read_text() + (docs / "TOOLS.md").read_text()
    assert not re.search(r"edgewatch demo", text)  # the demo is `edgewatch-train demo`
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = [ln.split("#")[0].strip() for b in blocks for ln in b.splitlines()]
    cmds = [shlex.split(ln) for ln in lines if ln.startswith(("edgewatch ", "edgewatch-train "))]
    assert len(cmds) >= 7
    assert ["edgewatch-train", "demo", "--keep-running"] in cmds
    for argv in cmds:
        main = train_main if argv[0] == "edgewatch-train" else edge_main
        ctx = main.make_context(argv[0], argv[1:], resilient_parsing=False)
        sub = main.get_command(ctx, argv[1])
        assert sub is not None, argv
        sub.make_context(argv[1], argv[2:])  # raises click.UsageError on an unknown option or bad value


def test_a_raise_on_an_out_of_range_reading_is_told_apart_from_a_false_alarm() -> None:
    from trainer.demo import on_out_of_range_readings

    truth = [{"device": "d0", "kind": "out_of_range", "class": "sensor", "start_ts": 10.0, "end_ts": 13.0,
              "channels": ["pressure"]}]
    on_it = {"device": "d0", "window_end": 14.0, "top_channels": [{"name": "pressure"}], "alert_id": "a"}
    other_channel = {**on_it, "top_channels": [{"name": "flow"}], "alert_id": "b"}
    other_device = {**on_it, "device": "d1", "alert_id": "c"}
    too_late = {**on_it, "window_end": 30.0, "alert_id": "d"}
    false, readings = on_out_of_range_readings(truth, [on_it, other_channel, other_device, too_late], 3.2, 0.8)
    assert [a["alert_id"] for a in readings] == ["a"] and [a["alert_id"] for a in false] == ["b", "c", "d"]
