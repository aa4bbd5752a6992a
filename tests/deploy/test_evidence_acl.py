"""Evidence requests through the real Mosquitto with the deploy kit's ACL: an operator gets an alert's evidence
(`edgewatch evidence fetch`'s own function); a sensor account's request is refused by the broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_runtime.service.evidence_store import decode
from edge_runtime.tools.evidence import fetch
from tests.deploy.test_commands_acl import USERS, _client, _operator_cfg, broker_port  # noqa: F401 (fixture)
from tests.edge_runtime.mqtt_helpers import running_daemon, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model

pytestmark = pytest.mark.slow


def test_only_an_operator_may_ask_for_evidence(broker_port: int, tmp_path: Path) -> None:  # noqa: F811
    model = write_model(tmp_path / "m.onnx", make_metadata(window=8, hop=4, threshold=1.0))
    with running_daemon(f"mqtt://127.0.0.1:{broker_port}", model, username="edgewatch", password=USERS["edgewatch"],
                        evidence_dir=str(tmp_path / "ev"), evidence_requests=True, evidence_margin_s=5.0,
                        raise_after=2, clear_after=2) as d:
        pump = _client(broker_port, "pump1")
        episode = series(200, seed=4)
        episode[60:120] *= 4.0
        for i, row in enumerate(episode):
            pump.publish("sensors/pump1/data", json.dumps({"ts": 1.7e9 + i, "values": row.tolist()}), qos=1)
        wait_until(lambda: d.stats.counts["evidence_written"] >= 2, 20, "the alert's evidence")
        acks: dict[int, str] = {}
        pump.on_publish = lambda c, u, mid, rc, props: acks.__setitem__(mid, str(rc))
        mid = pump.publish("edgewatch/test/evidence/request", json.dumps({"alert_id": "pump1:1"}), qos=1).mid
        wait_until(lambda: mid in acks, 10, "the broker's PUBACK")
        assert acks[mid] == "Not authorized"
        data = fetch(_operator_cfg(broker_port, tmp_path), "test", "pump1:1", timeout=10)
        assert decode(data)[0]["alert_id"] == "pump1:1"
        assert d.stats.counts["evidence_requests_answered"] == 1 and d.stats.counts["evidence_requests_refused"] == 0
        pump.loop_stop()
