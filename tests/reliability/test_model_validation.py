"""Model files are validated before use: size, contract metadata, input/output names and shapes,
a test run. Corrupt or foreign files get one clear error; on hot reload the old model keeps
serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_runtime.config import build_config
from edge_runtime.contract import METADATA_KEY
from edge_runtime.service.model import ModelError, load_model
from tests.edge_runtime.onnx_models import build_model, make_metadata, write_foreign_model, write_model
from tests.reliability.harness import ROOT


def _save(path: Path, model: onnx.ModelProto) -> Path:
    onnx.save(model, path)
    return path


def _meta_props(model: onnx.ModelProto, doc: dict | str) -> onnx.ModelProto:
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, doc if isinstance(doc, str) else json.dumps(doc)
    return model


def _free_window(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make the graph's W dimension symbolic, so any metadata window passes the shape check."""
    for vi in (model.graph.input[0], *(o for o in model.graph.output if o.name == "reconstruction")):
        vi.type.tensor_type.shape.dim[1].dim_param = "W"
    return model


def good_doc() -> dict:
    return json.loads(make_metadata(window=16, hop=4).to_json())


def variant(name: str, tmp: Path) -> Path:
    """Write one bad model file; return its path."""
    p = tmp / f"{name}.onnx"
    good = write_model(tmp / "good.onnx", make_metadata(window=16, hop=4))
    data = good.read_bytes()
    m = build_model(make_metadata(window=16, hop=4))
    if name == "empty":
        p.write_bytes(b"")
    elif name == "random_bytes":
        p.write_bytes(np.random.default_rng(0).bytes(4096))
    elif name == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif name == "text_file":
        p.write_text("edgewatch model, honest\n")
    elif name == "foreign_onnx":
        write_foreign_model(p)
    elif name == "metadata_not_json":
        _save(p, _meta_props(m, "{not json"))
    elif name == "metadata_future_version":
        _save(p, _meta_props(m, {**good_doc(), "format_version": 99}))
    elif name == "metadata_nan_threshold":
        doc = good_doc()
        doc["threshold"]["value"] = "NaN"
        _save(p, _meta_props(m, doc))
    elif name == "metadata_missing_channels":
        doc = good_doc()
        del doc["channels"]
        _save(p, _meta_props(m, doc))
    elif name == "metadata_window_mismatch":  # the graph takes W=16, the metadata says 32
        _save(p, _meta_props(m, {**good_doc(), "window": 32, "hop": 8}))
    elif name == "metadata_channels_mismatch":
        doc = good_doc()
        doc["channels"] = doc["channels"][:3]
        doc["normalisation"] = {"mean": [0.0] * 3, "std": [1.0] * 3}
        _save(p, _meta_props(m, doc))
    elif name == "metadata_window_infinity":  # json.loads gives inf; int(inf) raises OverflowError
        _save(p, _meta_props(m, json.dumps({**good_doc(), "window": float("inf")})))
    elif name == "metadata_mean_400_digits":  # float(10**400) raises OverflowError
        doc = good_doc()
        doc["normalisation"]["mean"][0] = 10**400
        _save(p, _meta_props(m, doc))
    elif name == "metadata_window_huge_free_w":  # the probe (2, W, C) would be a MemoryError
        _save(p, _meta_props(_free_window(m), {**good_doc(), "window": 10**12}))
    elif name == "probe_too_big_free_w":  # within the contract, but a 100000 x 64 window is too big to probe
        meta64 = make_metadata(window=16, hop=4, channels=[f"c{i}" for i in range(64)])
        doc = {**json.loads(meta64.to_json()), "window": 100_000}
        _save(p, _meta_props(_free_window(build_model(meta64)), doc))
    elif name == "nonfinite_outputs":  # the graph divides by a zero std: NaN scores at the training mean
        _save(p, _meta_props(build_model(make_metadata(window=16, hop=4, std=[0.0] * 4)), good_doc()))
    elif name == "wrong_input_name":
        m.graph.input[0].name = "x"
        for node in m.graph.node:
            node.input[:] = ["x" if i == "window" else i for i in node.input]
        _save(p, m)
    elif name == "missing_score_output":
        keep = [o for o in m.graph.output if o.name != "score"]
        del m.graph.output[:]
        m.graph.output.extend(keep)
        _save(p, m)
    elif name == "int_input":
        m.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
        _save(p, m)
    else:
        raise KeyError(name)
    return p


BAD = {
    "empty": "not a loadable ONNX model",
    "random_bytes": "not a loadable ONNX model",
    "truncated": "not a loadable ONNX model",
    "text_file": "not a loadable ONNX model",
    "foreign_onnx": "not an edgewatch model",
    "metadata_not_json": "metadata is not valid JSON",
    "metadata_future_version": "format_version",
    "metadata_nan_threshold": "threshold",
    "metadata_missing_channels": "channels",
    "metadata_window_mismatch": "does not fit",
    "metadata_window_infinity": "malformed field",
    "metadata_mean_400_digits": "malformed field",
    "metadata_window_huge_free_w": "window: must be in 2..",
    "probe_too_big_free_w": "values per window",
    "nonfinite_outputs": "non-finite",
    "metadata_channels_mismatch": "does not fit",
    "wrong_input_name": "one input named 'window'",
    "missing_score_output": "'score'",
    "int_input": "",  # refused by onnxruntime itself (type mismatch) or by our check; either way one line
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_model_refused_with_clear_error(name: str, tmp_path: Path) -> None:
    path = variant(name, tmp_path)
    with pytest.raises(ModelError) as exc:
        load_model(path, "cpu")
    msg = str(exc.value)
    assert BAD[name] in msg
    assert "\n" not in msg and len(msg) < 600


def test_size_limit_checked_before_reading(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m.onnx", make_metadata())
    with pytest.raises(ModelError, match="max_model_bytes"):
        load_model(path, "cpu", max_bytes=path.stat().st_size - 1)
    sparse = tmp_path / "huge.onnx"
    with open(sparse, "wb") as fh:  # 8 GiB sparse file: must be refused by size, never read
        fh.truncate(8 << 30)
    with pytest.raises(ModelError, match="max_model_bytes"):
        load_model(sparse, "cpu")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read model file"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelError):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["truncated", "foreign_onnx", "metadata_window_mismatch",
                                  "metadata_window_infinity", "metadata_mean_400_digits",
                                  "metadata_window_huge_free_w", "nonfinite_outputs"])
def test_cli_refuses_bad_model_in_one_line(name: str, tmp_path: Path) -> None:
    path = variant(name, tmp_path)
    for cmd in (["run", "--model", str(path), "--broker", "mqtt://127.0.0.1:1"], ["check-model", str(path)]):
        r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", *cmd], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 65, r.stderr
        assert "Traceback" not in r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("edgewatch: error:"), r.stderr


def test_hot_reload_of_every_bad_file_keeps_old_model(tmp_path: Path, caplog) -> None:
    from edge_runtime.service.daemon import Daemon

    path = write_model(tmp_path / "live.onnx", make_metadata(window=16, hop=4, model_id="good-v1"))
    cfg = build_config(None, {"path": str(path), "instance": "reload", "stats_interval_s": 0.0,
                              "watch_interval_s": 0.0, "provider": "cpu"})
    d = Daemon(cfg)
    x = np.random.default_rng(0).standard_normal((3, 16, 4)).astype(np.float32)
    before, _ = d.model.run(x)
    published: list[str] = []
    d.link.publish = lambda topic, payload, qos=1, retain=False: published.append(payload) or True  # no broker here
    for i, name in enumerate(sorted(BAD)):
        variant(name, tmp_path).replace(path)
        assert d.reload(f"test {name}") is False
        assert d.model.model_id == "good-v1"
        assert d.stats.counts["reloads_refused"] == i + 1
        after, _ = d.model.run(x)
        np.testing.assert_array_equal(after, before)
    # each refusal is reported in the retained status (last_refused), which still names the old model
    docs = [json.loads(p) for p in published]
    assert len(docs) == len(BAD) and all(doc["model_id"] == "good-v1" and doc["last_refused"] for doc in docs)
    assert caplog.text.count("refused, keeping good-v1") == len(BAD)
    write_model(path, make_metadata(window=16, hop=4, model_id="good-v2"))
    assert d.reload("fixed") is True and d.model.model_id == "good-v2"



def test_read_is_bounded_when_the_file_grows_after_the_size_check(tmp_path: Path, monkeypatch) -> None:
    import edge_runtime.service.model as model_mod

    path = write_model(tmp_path / "m.onnx", make_metadata())
    size = path.stat().st_size
    real_of = model_mod.FileSignature.of
    # the stat saw a small file; by the time of the read it has grown past the limit
    monkeypatch.setattr(model_mod.FileSignature, "of", classmethod(lambda cls, p: real_of(p).__class__(0, 10)))
    with pytest.raises(ModelError, match="max_model_bytes"):
        load_model(path, "cpu", max_bytes=size - 1)
    assert load_model(path, "cpu", max_bytes=size).metadata.window == 16


def test_unexpected_reload_error_is_a_refusal_not_a_dead_thread(tmp_path: Path, monkeypatch, caplog) -> None:
    import edge_runtime.service.daemon as daemon_mod
    import edge_runtime.service.housekeeping as housekeeping_mod

    path = write_model(tmp_path / "live.onnx", make_metadata(window=16, hop=4, model_id="good-v1"))
    cfg = build_config(None, {"path": str(path), "instance": "reload-x", "stats_interval_s": 0.0,
                              "watch_interval_s": 0.0, "provider": "cpu"})
    d = daemon_mod.Daemon(cfg)

    def explode(*_a, **_k):
        raise MemoryError("Unable to allocate 32.0 TiB for an array\nsecond line")

    monkeypatch.setattr(housekeeping_mod, "load_model", explode)
    assert d.reload("test unexpected") is False
    assert d.model.model_id == "good-v1"
    assert d.stats.counts["reloads_refused"] == 1
    refusals = [r.getMessage() for r in caplog.records if "refused, keeping good-v1" in r.getMessage()]
    assert len(refusals) == 1 and "MemoryError" in refusals[0] and "\n" not in refusals[0]
