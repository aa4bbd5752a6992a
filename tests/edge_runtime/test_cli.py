"""The `edgewatch` CLI: check-model, alerts, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as paho
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.cli import LAZY_COMMANDS, main
from edge_runtime.watch import HEADER, format_row
from tests.edge_runtime.onnx_models import write_foreign_model, write_model

ALERT = {"schema_version": 1, "alert_id": "a1", "raised_alert_id": "a1", "device": "pump-1", "state": "raised",
         "seq": 1, "score": 1.2345, "threshold": 0.5, "clear_level": 0.4, "window_start": 1.7e9,
         "window_end": 1.7e9 + 15, "top_channels": [{"name": "Pressure", "share": 0.8}], "model_id": "m",
         "instance": "gw", "time": 1.7e9 + 16}


def test_check_model_reports_provider_metadata_latency(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", threshold=0.5)
    res = CliRunner().invoke(main, ["check-model", str(model), "--batch", "8", "--repeats", "3"])
    assert res.exit_code == 0, res.output
    assert "provider   CPUExecutionProvider" in res.output and "W=16 hop=4 C=4" in res.output
    assert "threshold  0.5 (quantile)" in res.output and "batch 8: median" in res.output
    doc = json.loads(CliRunner().invoke(main, ["check-model", str(model), "--json", "--repeats", "2"]).output)
    assert doc["model_id"] == "test-model-1" and doc["windows_per_s"] > 0 and doc["channels"][1] == "Pressure"


def test_check_model_on_foreign_file_is_one_line_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["check-model", str(write_foreign_model(tmp_path / "f.onnx"))])
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "not an edgewatch model" in res.output


def test_run_errors_name_the_problem(tmp_path: Path) -> None:
    r = CliRunner()
    res = r.invoke(main, ["run"])
    assert res.exit_code == 2 and "model.path" in res.output
    bad = tmp_path / "c.toml"
    bad.write_text("[mqtt]\nkeepalive_s = -1\n")
    res = r.invoke(main, ["run", "--config", str(bad), "--model", "x.onnx"])
    assert res.exit_code == 2 and "mqtt.keepalive_s: must be >= 5" in res.output
    res = r.invoke(main, ["run", "--model", str(tmp_path / "missing.onnx")])
    assert res.exit_code == 2 and "cannot read model file" in res.output
    res = r.invoke(main, ["run", "--model", "m.onnx", "--topic", "bad/topic"])
    assert res.exit_code == 2 and "input.topics" in res.output


def test_help_lists_registered_commands_and_hides_no_password_flag() -> None:
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for name in ["run", "alerts", "check-model", *LAZY_COMMANDS]:
        assert name in res.output
    run_help = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--broker" in run_help and "--password " not in run_help and "--password-file" in run_help


def test_format_row_is_a_readable_table_line() -> None:
    row = format_row(ALERT)
    assert row.startswith("2023-11-14 22:13:35") and "pump-1" in row and "raised" in row
    assert "1.234" in row and "Pressure 80%" in row
    assert len(HEADER.split()) >= 6


def test_alerts_command_prints_json_lines_when_piped(mosquitto) -> None:
    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    pub.publish("alerts/pump-1", json.dumps(ALERT), qos=1, retain=True).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    res = CliRunner().invoke(main, ["alerts", "--broker", mosquitto.url, "--count", "1", "--timeout", "10"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.strip().splitlines()[0])
    assert doc["topic"] == "alerts/pump-1" and doc["alert_id"] == "a1"
