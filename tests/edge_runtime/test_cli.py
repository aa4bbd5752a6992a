"""The `edgewatch` CLI: check-model, alerts, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from edge_runtime.cli import LAZY_COMMANDS, main
from edge_runtime.service.mqtt import BrokerAddress, ClientOptions, connect
from edge_runtime.tools.localbroker import free_port
from edge_runtime.tools.watch import HEADER, format_row
from tests.edge_runtime.onnx_models import write_foreign_model, write_model

ALERT = {"schema_version": 1, "alert_id": "a1", "raised_alert_id": "a1", "device": "pump-1", "state": "raised",
         "seq": 1, "score": 1.2345, "threshold": 0.5, "clear_level": 0.4, "window_start": 1.7e9,
         "window_end": 1.7e9 + 15, "top_channels": [{"name": "Pressure", "share": 0.8}], "model_id": "m",
         "instance": "gw", "time": 1.7e9 + 16}


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    """Poll ``cond`` every 50 ms until it holds or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_check_model_reports_provider_metadata_latency(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", threshold=0.5)
    res = CliRunner().invoke(main, ["check-model", str(model), "--batch", "8", "--repeats", "3"])
    assert res.exit_code == 0, res.output
    assert "provider   CPUExecutionProvider" in res.output and "W=16 hop=4 C=4" in res.output
    assert "threshold  0.5 (quantile)" in res.output and "batch 8: median" in res.output
    doc = json.loads(CliRunner().invoke(main, ["check-model", str(model), "--json", "--repeats", "2"]).output)
    assert doc["model_id"] == "test-model-1" and doc["windows_per_s"] > 0 and doc["channels"][1] == "Pressure"


def test_check_model_on_foreign_file_is_one_line_exit_65(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["check-model", str(write_foreign_model(tmp_path / "f.onnx"))])
    assert res.exit_code == 65  # EX_DATAERR
    assert res.output.strip().count("\n") == 0 and "not an edgewatch model" in res.output


def test_run_errors_name_the_problem(tmp_path: Path) -> None:
    r = CliRunner(env={"EDGEWATCH_CONFIG": ""})  # 78 EX_CONFIG for configuration, 65 EX_DATAERR for the model
    res = r.invoke(main, ["run"])
    assert res.exit_code == 78 and "model.path" in res.output
    bad = tmp_path / "c.toml"
    bad.write_text("[mqtt]\nkeepalive_s = -1\n")
    res = r.invoke(main, ["run", "--config", str(bad), "--model", "x.onnx"])
    assert res.exit_code == 78 and "mqtt.keepalive_s: must be >= 5" in res.output
    res = r.invoke(main, ["run", "--model", str(tmp_path / "missing.onnx")])
    assert res.exit_code == 66 and "cannot read model file" in res.output  # EX_NOINPUT
    res = r.invoke(main, ["run", "--model", "m.onnx", "--topic", "bad/topic"])
    assert res.exit_code == 78 and "input.topics" in res.output
    res = r.invoke(main, ["run", "--bogus-flag"])
    assert res.exit_code == 2 and "--bogus-flag" in res.output


def test_a_config_path_that_is_no_file_is_a_config_error_for_every_command(tmp_path: Path) -> None:
    r = CliRunner(env={"EDGEWATCH_CONFIG": ""})
    for cmd in (["run"], ["alerts"], ["dashboard"], ["evidence", "list"], ["feedback", "--false-alarm", "a1"],
                ["fleet", "status"], ["record", "--device", "d", "--out", str(tmp_path / "r.csv")]):
        for config, why in ((tmp_path, "Is a directory"), (tmp_path / "missing.toml", "No such file")):
            res = r.invoke(main, [*cmd, "--config", str(config)])
            assert res.exit_code == 78, (cmd, res.output)
            assert res.output.strip() == f"edgewatch: error: --config: cannot read {config}: {why}" + (
                "" if why == "Is a directory" else " or directory"), (cmd, res.output)


def test_record_refuses_a_wildcard_device_and_says_what_it_cannot_write(tmp_path: Path, mosquitto) -> None:
    r = CliRunner(env={"EDGEWATCH_CONFIG": ""})
    base = ["record", "--channels", "a,b", "--broker", mosquitto.url, "--duration", "1s"]
    res = r.invoke(main, [*base, "--device", "line/+", "--out", str(tmp_path / "r.csv")])
    assert (res.exit_code, res.output.strip()) == (2, "edgewatch record: error: --device 'line/+': a device id is "
                                                      "one topic level: not empty, without / + # or NUL")
    out = tmp_path / "missing" / "r.csv"
    res = r.invoke(main, [*base, "--device", "d", "--out", str(out)])
    assert res.exit_code == 74  # EX_IOERR
    assert res.output.strip().splitlines()[-1] == (f"edgewatch record: error: --out: cannot write {out}: "
                                                   "No such file or directory")


def test_a_model_file_that_is_not_onnx_is_named_with_exit_65(tmp_path: Path) -> None:
    for content in (b"", b"hello, I am not a model\n"):
        model = tmp_path / "notonnx.onnx"
        model.write_bytes(content)
        for cmd in (["run", "--model", str(model)], ["check-model", str(model)]):
            res = CliRunner(env={"EDGEWATCH_CONFIG": ""}).invoke(main, cmd)
            assert res.exit_code == 65, res.output
            assert res.output.strip().startswith(f"edgewatch: error: {model}: not a loadable ONNX model"), res.output
    rec = ["record", "--device", "d", "--out", str(tmp_path / "r.csv"), "--model"]
    res = CliRunner(env={"EDGEWATCH_CONFIG": ""}).invoke(main, [*rec, str(tmp_path / "missing.onnx")])
    assert res.exit_code == 66 and "cannot read model file" in res.output, res.output  # EX_NOINPUT
    for cmd in (["run", "--model", str(tmp_path)], ["check-model", str(tmp_path)]):  # a folder, as run says it
        res = CliRunner(env={"EDGEWATCH_CONFIG": ""}).invoke(main, cmd)
        assert (res.exit_code, res.output.strip()) == (66, f"edgewatch: error: cannot read model file {tmp_path}: "
                                                           "Is a directory"), res.output


def test_help_lists_registered_commands_and_hides_no_password_flag() -> None:
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for name in ["run", "alerts", "check-model", *LAZY_COMMANDS]:
        assert name in res.output
    run_help = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--broker" in run_help and "--password " not in run_help and "--password-file" in run_help


def test_format_row_is_a_readable_table_line() -> None:
    row = format_row(ALERT, "alert", 1.7e9)
    assert row.startswith("alert      2023-11-14 22:13:35") and "pump-1" in row and "raised" in row
    assert "1.234" in row and "Pressure 80%" in row
    assert len(HEADER.split()) >= 6
    # two gateways on one broker: their rows told apart by the daemon feedback needs (--instance)
    assert row[HEADER.index("gateway"):].startswith("gw ") and "gateway" in HEADER
    assert format_row({**ALERT, "instance": None}, "alert", 1.7e9)[HEADER.index("gateway"):].startswith("- ")
    long = "gw-berlin-hall-7-line-2"  # a hostname: kept whole, it is what --instance needs
    assert f" {long} " in format_row({**ALERT, "instance": long}, "alert", 1.7e9)


def _publish_alert(port: int, doc: dict = ALERT) -> None:
    """A retained alert, published with the project's client factory."""
    pub = connect(BrokerAddress("127.0.0.1", port, False), ClientOptions(buffered=False))
    pub.publish(f"alerts/{doc['device']}", json.dumps(doc), qos=1, retain=True).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()


def test_alerts_command_prints_json_lines_when_piped(mosquitto) -> None:
    _publish_alert(mosquitto.port)
    res = CliRunner().invoke(main, ["alerts", "--broker", mosquitto.url, "--count", "1", "--timeout", "10"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.strip().splitlines()[0])
    assert doc["topic"] == "alerts/pump-1" and doc["alert_id"] == "a1"


def test_alerts_broker_flag_overrides_the_config_file(mosquitto, tmp_path: Path) -> None:
    _publish_alert(mosquitto.port)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[mqtt]\nbroker = "mqtt://127.0.0.1:{free_port()}"\n')  # nothing listens there
    res = CliRunner().invoke(main, ["alerts", "--config", str(cfg), "--broker", mosquitto.url, "--count", "1",
                                    "--timeout", "10"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[0])["alert_id"] == "a1"


def test_alerts_on_a_dead_port_is_one_line_exit_69() -> None:
    port = free_port()
    res = CliRunner().invoke(main, ["alerts", "--broker", f"mqtt://127.0.0.1:{port}", "--timeout", "20"])
    assert res.exit_code == 69, res.output  # EX_UNAVAILABLE: retry later
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot connect to broker 127.0.0.1:{port}" in lines[0], res.stderr
    assert "Traceback" not in res.output


def test_alerts_with_a_refused_login_is_one_line_exit_78(mosquitto_factory) -> None:
    port = free_port()
    broker = mosquitto_factory(port=port, listener_config=f"listener {port} 127.0.0.1\nallow_anonymous false\n")
    broker.start()
    res = CliRunner().invoke(main, ["alerts", "--broker", broker.url, "--timeout", "20"])
    assert res.exit_code == 78, res.output  # EX_CONFIG: the account is wrong, a retry will not help
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"broker 127.0.0.1:{port} refused the connection" in lines[0], res.stderr


def test_alerts_reports_a_lost_connection_and_reconnects(mosquitto) -> None:
    from edge_runtime.config import build_config
    from edge_runtime.tools.watch import watch_alerts

    cfg = build_config(None, {"broker": mosquitto.url, "reconnect_min_s": 1, "reconnect_max_s": 1})
    notes: list[str] = []
    got: list[dict] = []
    done = threading.Event()

    def watch() -> None:
        try:
            watch_alerts(cfg, lambda t, d, *_: got.append(d), include_state=False, count=1, timeout=30,
                         notify=notes.append)
        finally:
            done.set()

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    assert wait_for(lambda: "edgewatch-alerts" in mosquitto.log_text(), 10)
    mosquitto.restart(down_s=0.5)
    assert wait_for(lambda: any("reconnected" in n for n in notes), 15), notes
    assert any("lost the connection" in n for n in notes), notes
    _publish_alert(mosquitto.port)
    assert done.wait(15) and [d["alert_id"] for d in got] == ["a1"]


def test_bench_moved_to_the_lab_is_one_line_exit_2() -> None:
    """The edge package holds no benchmark code: `edgewatch bench ...` says where it went."""
    for args in (["bench"], ["bench", "ingest", "--devices", "3"], ["bench", "--help"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "edgewatch-lab bench" in lines[0]
