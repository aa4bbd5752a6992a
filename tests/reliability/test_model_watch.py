"""Issue 20 item 10 (watcher): the model file watch used only mtime and size, so a symlink swap to a
same-size file with the same mtime was missed. It now compares the device and inode too (and ctime), and
a change is confirmed by the content hash (a touched but identical file is not reloaded).
An in-process daemon (not connected) and really exported ONNX files."""

from __future__ import annotations

import os
from pathlib import Path

from edge_runtime.service.daemon import Daemon
from tests.edge_runtime.mqtt_helpers import daemon_config
from tests.edge_runtime.onnx_models import make_metadata, write_model


def test_a_symlink_swap_to_a_same_size_file_is_reloaded(tmp_path: Path) -> None:
    a = write_model(tmp_path / "a.onnx", make_metadata(threshold=2.0, model_id="model-a"))
    b = write_model(tmp_path / "b.onnx", make_metadata(threshold=3.0, model_id="model-b"))
    assert a.stat().st_size == b.stat().st_size
    st = a.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    link = tmp_path / "current.onnx"
    link.symlink_to(a)
    d = Daemon(daemon_config("mqtt://127.0.0.1:1", link))
    try:
        assert d.model.model_id == "model-a"
        d.housekeeping.check_file()
        assert d.stats.counts["reloads"] == 0
        tmp = tmp_path / "next.onnx"
        tmp.symlink_to(b)
        os.replace(tmp, link)  # the atomic symlink swap of a deploy
        d.housekeeping.check_file()
        assert d.model.model_id == "model-b" and d.stats.counts["reloads"] == 1
        os.utime(b)  # touched, same content: no reload
        d.housekeeping.check_file()
        assert d.stats.counts["reloads"] == 1
    finally:
        d.link.client.loop_stop()
