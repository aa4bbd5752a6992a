"""An alert left raised by a daemon that stopped, adopted by the next one through the retained state on a real
Mosquitto: it carries its peak (stored in the state), a verdict can name it, and its evidence goes on in the
file its raise wrote (one record from the margin before the raise to the margin after the clear)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.service.evidence_store import EvidenceStore
from edge_runtime.tools.localbroker import MosquittoBroker
from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, running_daemon, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model
from tests.edge_runtime.schema_check import errors, load

W, HOP, T0, MARGIN = 8, 4, 1_700_000_000.0, 20.0


def _send(port: int, x: np.ndarray, lo: int, hi: int) -> None:
    pub = Publisher(port)
    for i in range(lo, hi, 20):
        pub.send("sensors/p1/data", json.dumps({"ts": [T0 + j for j in range(i, min(i + 20, hi))],
                                                 "values": x[i : min(i + 20, hi)].tolist()}))
    pub.close()


def test_an_adopted_alert_keeps_its_peak_and_its_evidence_goes_on(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=1.0))
    x = series(400, seed=3)
    x[150:300] *= 20.0  # an anomaly from sample 150: the first daemon stops at 250, still raised
    folder = tmp_path / "evidence"
    over = {"evidence_dir": str(folder), "evidence_margin_s": MARGIN, "raise_after": 2, "clear_after": 2}
    with MosquittoBroker(workdir=tmp_path / "broker") as broker:
        col = Collector(broker.port, ["alerts/#"])
        with running_daemon(broker.url, model, **over) as d:
            _send(broker.port, x, 0, 250)
            wait_until(lambda: d.stats.counts["messages"] >= 13, 10, "messages")
            idle(d)
            assert d.stats.counts["alerts_raised"] == 1 and d.stats.counts["alerts_cleared"] == 0
            alert_id = d.tracker.devices["p1"].alert_id
        retained = [doc for t, doc in col.docs("alerts/p1/state")][-1]
        assert retained["state"] == "raised" and retained["peak_score"] > 1.0 and retained["anomalous_since"] > T0
        assert errors(retained, load("state.schema.json")) == []
        with running_daemon(broker.url, model, **over) as d2:
            wait_until(lambda: "p1" in d2.tracker.devices, 10, "the raised state adopted")
            st = d2.tracker.devices["p1"]
            assert (st.state, st.alert_id, st.peak_score) == ("raised", alert_id, retained["peak_score"])
            assert st.anomalous_since == retained["anomalous_since"]
            found = d2.scorer.thresholds.find(alert_id, "")  # a verdict can name it before any new data
            assert found is not None and found[1].peak == retained["peak_score"]
            _send(broker.port, x, 250, 400)  # still anomalous until 300, then normal: it clears
            wait_until(lambda: d2.stats.counts["alerts_cleared"] == 1, 10, "the adopted alert cleared")
            idle(d2)
        col.close()
    clear = [a for a in col.alerts() if a.get("event") == "clear"][-1]
    assert clear["raised_alert_id"] == alert_id and clear["peak_score"] >= retained["peak_score"]
    assert clear["duration_s"] == pytest.approx(clear["window_end"] - retained["anomalous_since"])
    meta, arrays = EvidenceStore(folder).read(alert_id)
    assert meta["resumed"] and meta["restarts"] == 1 and meta["complete"] and meta["reason"] is None
    assert meta["anomalous_since"] == retained["anomalous_since"] and meta["cleared_end"] == clear["window_end"]
    assert [e["event"] for e in meta["events"]][0] == "raise" and meta["events"][-1]["event"] == "clear"
    ts = arrays["ts"]
    assert ts[0] == pytest.approx(retained["anomalous_since"] - MARGIN, abs=1.0)
    assert ts[-1] == pytest.approx(clear["window_end"] + MARGIN, abs=HOP)
    gaps = np.flatnonzero(np.diff(ts) != 1.0)  # both runs' samples, each once, in order; at the restart the
    assert len(gaps) == 1 and 1.0 < np.diff(ts)[gaps[0]] <= HOP  # first run's last < HOP samples were in no window
    assert ts[gaps[0]] < T0 + 250 <= ts[gaps[0] + 1]
    np.testing.assert_allclose(arrays["values"], x[(ts - T0).astype(int)], rtol=1e-6)
