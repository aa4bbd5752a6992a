"""``edgewatch-train keygen | publish | promote | rollback`` against a real Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edge_runtime.pipeline.manifest import parse_manifest, signed_bytes
from edge_runtime.service.signing import load_public_key, verify
from tests.edge_runtime import schema_check
from tests.edge_runtime.mqtt_helpers import Collector, wait_until
from tests.edge_runtime.onnx_models import make_metadata, write_model
from trainer.cli import main


def test_keygen_publish_and_commands(mosquitto, tmp_path: Path) -> None:
    r = CliRunner()
    out = r.invoke(main, ["keygen", str(tmp_path / "ws")])
    assert out.exit_code == 0 and "key id" in out.output
    model = write_model(tmp_path / "m.onnx", make_metadata(model_id="v7"))
    col = Collector(mosquitto.port, ["fleet/#"])
    out = r.invoke(main, ["publish", str(model), "--broker", mosquitto.url, "--target", "site1/*",
                          "--key", str(tmp_path / "ws.key"), "--chunk-size", "512", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert schema_check.errors(doc, schema_check.load("manifest.schema.json")) == []
    assert verify(load_public_key(tmp_path / "ws.pub"), signed_bytes(doc), doc["signature"])
    m = parse_manifest(doc)
    wait_until(lambda: any(t == "fleet/models/v7/manifest" for t, _, _ in col.messages), 10, "manifest")
    chunks = sorted((t, p) for t, p, _ in col.messages if "/chunks/" in t)
    assert len(chunks) == m.chunks and b"".join(p for _, p in sorted(chunks, key=lambda c: int(c[0].rsplit("/", 1)[1]))) \
        == model.read_bytes()
    out = r.invoke(main, ["promote", "v7", "--broker", mosquitto.url, "--target", "site1/*",
                          "--key", str(tmp_path / "ws.key")])
    assert out.exit_code == 0, out.output
    wait_until(lambda: any(t == "fleet/commands" for t, _, _ in col.messages), 10, "command")
    cmd = json.loads(next(p for t, p, _ in col.messages if t == "fleet/commands"))
    assert schema_check.errors(cmd, schema_check.load("rollout_command.schema.json")) == []
    assert cmd["action"] == "promote" and cmd["model_id"] == "v7"
    col.close()


def test_user_errors_are_one_line() -> None:
    r = CliRunner()
    out = r.invoke(main, ["promote", "--broker", "mqtt://127.0.0.1:9", "--target", "x"])
    assert out.exit_code == 2 and "MODEL_ID" in out.output
    out = r.invoke(main, ["rollback", "--broker", "mqtt://127.0.0.1:9", "--target", "x"])
    assert out.exit_code == 69 and out.output.count("\n") == 1 and "edgewatch-train rollback: error: cannot connect" in out.output


def test_keygen_makes_a_missing_folder_private_and_never_overwrites(tmp_path: Path) -> None:
    """As `fit -o` makes its folder; the folder of a private key is 0700, the key 0600."""
    r = CliRunner()
    out = r.invoke(main, ["keygen", str(tmp_path / "keys" / "site1" / "ws")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "keys" / "site1" / "ws.pub").is_file()
    assert (tmp_path / "keys" / "site1").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "keys" / "site1" / "ws.key").stat().st_mode & 0o777 == 0o600
    again = r.invoke(main, ["keygen", str(tmp_path / "keys" / "site1" / "ws")])
    assert again.exit_code != 0 and "exists: not overwritten" in again.output
