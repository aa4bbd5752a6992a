"""edge_runtime.pipeline.documents: one builder per published document; the schemas are the oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.pipeline.documents import Outbound, offline_doc, online_doc, score_doc, state_doc
from tests.edge_runtime.schema_check import errors, load

STATE = load("state.schema.json")


@pytest.mark.parametrize("raised, alert_id, since, reason", [
    (True, "a1", 10.0, ""), (False, "a1", 10.0, "expired"), (False, "", 0.0, ""),
])
def test_state_doc_satisfies_the_schema(raised: bool, alert_id: str, since: float, reason: str) -> None:
    doc = state_doc("pump-1", raised, alert_id, 3, since, "gw1", reason)
    assert errors(json.loads(json.dumps(doc)), STATE) == []
    assert doc["state"] == ("raised" if raised else "cleared")
    assert doc["raised_alert_id"] == (alert_id or None) and doc["since"] == (since or None)
    assert ("reason" in doc) == bool(reason)


def test_state_doc_schema_check_is_not_vacuous() -> None:
    doc = state_doc("pump-1", True, "a1", 3, 1.0, "gw1")
    del doc["instance"]
    assert errors(doc, STATE)


def test_status_documents() -> None:
    on = online_doc("gw1", "0.1.0", "m1", "CPUExecutionProvider", "CPU requested", ("a", "b"), 64, 1.5, 12.0)
    assert on == {"state": "online", "instance": "gw1", "version": "0.1.0", "model_id": "m1",
                  "provider": "CPUExecutionProvider", "provider_reason": "CPU requested", "channels": ["a", "b"],
                  "window": 64, "threshold": 1.5, "time": 12.0}
    assert offline_doc("gw1", "stopped", 13.0) == {"state": "offline", "instance": "gw1", "reason": "stopped",
                                                   "time": 13.0}
    assert offline_doc("gw1", "connection lost") == {"state": "offline", "instance": "gw1",
                                                     "reason": "connection lost"}  # the Last Will: no time


def test_score_doc_lists_each_window() -> None:
    t = np.array([1.0, 2.0])
    doc = score_doc("d", "m1", 0.5, t, t + 9, np.array([0.25, 0.75], np.float32))
    assert json.loads(json.dumps(doc)) == {"device": "d", "model_id": "m1", "threshold": 0.5,
                                           "window_start": [1.0, 2.0], "window_end": [10.0, 11.0],
                                           "score": [0.25, 0.75]}


def test_outbound_defaults_to_qos1_not_retained() -> None:
    assert Outbound("t", "{}") == Outbound("t", "{}", qos=1, retain=False)
