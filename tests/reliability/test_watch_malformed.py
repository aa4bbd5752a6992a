"""Issue 20 item 10 (``edgewatch alerts``): a malformed retained document (100,000 nested '[', not UTF-8,
not an object) is skipped and counted, never an exception on paho's network thread."""

from __future__ import annotations

import pytest

from edge_runtime.tools.watch import SkipLog, decode_doc


@pytest.mark.parametrize("payload", [b"[" * 100_000, b"{" * 100_000, b"\xff\xfe", b"[1, 2]", b'"raised"', b"{"])
def test_malformed_documents_are_skipped_with_a_reason(payload: bytes) -> None:
    doc, why = decode_doc(payload)
    assert doc is None and why
    notes: list[str] = []
    skips = SkipLog(notes.append)
    skips.skip("alerts/x/state", why)
    assert skips.count == 1 and "skipped a malformed message" in notes[0]


def test_a_well_formed_document_is_read() -> None:
    assert decode_doc(b'{"device": "x", "seq": 1e999}') == ({"device": "x", "seq": float("inf")}, "")
