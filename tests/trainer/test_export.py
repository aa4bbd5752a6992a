"""Export: parity with torch, metadata round trip through a real ONNX file, contract shapes, variants."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge_runtime.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAMES,
    ModelMetadata,
    Normalisation,
    Threshold,
    metadata_from_props,
)
from edge_runtime.pipeline.windowing_offline import sliding_windows
from edge_runtime.tools.synthetic import channel_names, normal_series
from trainer import export as ex
from trainer.model import AEConfig, ConvAutoencoder


def make_meta(c: int, w: int, mean: np.ndarray, std: np.ndarray) -> ModelMetadata:
    return ModelMetadata(
        channels=channel_names(c),
        window=w,
        hop=w // 4,
        threshold=Threshold(value=0.5, method="quantile", params={"q": 0.99}, validation={"n": 10.0}),
        normalisation=Normalisation(mean=[float(v) for v in mean], std=[float(v) for v in std]),
        sample_period_s=0.5,
        architecture={"depth": 2},
        training={"rows": 1000},
        scoring={"weight": [1.0] * c, "ae_ref": [0.5] * c, "level_scale": [0.3] * c, "level_ref": [2.0] * c},
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ex.ExportReport, ConvAutoencoder, np.ndarray]:
    torch.manual_seed(0)
    w, c = 30, 3  # 30 is not a multiple of 4: the graph pads and crops
    ae = ConvAutoencoder(AEConfig(n_channels=c, window=w, width=4, latent=4)).eval()
    x = normal_series(400, c, seed=2)
    windows = sliding_windows(x, w, 5)
    meta = make_meta(c, w, x.mean(axis=0), x.std(axis=0))
    out = tmp_path_factory.mktemp("export") / "m.onnx"
    return ex.export_model(ae, meta, out, windows, quantize="int8", fp16=True), ae, windows


def test_contract_inputs_outputs_and_dynamic_batch(exported) -> None:
    rep, _, windows = exported
    sess = ort.InferenceSession(str(rep.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [INPUT_NAME]
    assert sess.get_inputs()[0].shape == ["batch", 30, 3]
    assert [o.name for o in sess.get_outputs()] == list(OUTPUT_NAMES)
    for b in (1, 7):
        score, ce, rec = sess.run(None, {INPUT_NAME: windows[:b]})
        assert score.shape == (b,) and ce.shape == (b, 3) and rec.shape == (b, 30, 3)
        np.testing.assert_allclose(score, ce.mean(axis=1), rtol=1e-5)


def test_parity_with_torch_and_raw_units(exported) -> None:
    rep, ae, windows = exported
    assert max(rep.parity_max_diff.values()) < 1e-3
    got = ex.run_onnx(rep.path, windows)
    mean = np.array(rep.meta.normalisation.mean, np.float32)
    std = np.array(rep.meta.normalisation.std, np.float32)
    z = torch.from_numpy((windows - mean) / std).transpose(1, 2)
    with torch.no_grad():
        r = ae(z)
    sc = {k: np.array(v) for k, v in rep.meta.scoring.items()}
    mse = torch.mean((r - z) ** 2, dim=2).numpy()  # (N, C)
    level = z.mean(dim=2).numpy()
    ref_ce = sc["weight"] / 2 * (mse / sc["ae_ref"] + (level / sc["level_scale"]) ** 2 / sc["level_ref"])
    np.testing.assert_allclose(got["channel_error"], ref_ce, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["score"], ref_ce.mean(axis=1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        got["reconstruction"], r.transpose(1, 2).numpy() * std + mean, rtol=1e-4, atol=1e-3
    )


def test_metadata_round_trip_through_the_file(exported) -> None:
    rep, _, _ = exported
    model = onnx.load(str(rep.path))
    props = {p.key: p.value for p in model.metadata_props}
    assert list(props) == [METADATA_KEY]
    meta = metadata_from_props(props)
    assert meta == rep.meta
    sess = ort.InferenceSession(str(rep.path), providers=["CPUExecutionProvider"])
    assert metadata_from_props(sess.get_modelmeta().custom_metadata_map) == meta
    assert meta.sample_period_s == 0.5 and meta.threshold.params == {"q": 0.99}
    assert (
        len(meta.model_id) == 16
        and meta.created
        and {"torch", "onnx", "onnxruntime", "edgewatch"} <= set(meta.versions)
    )


def test_model_id_is_a_content_hash(exported, tmp_path: Path) -> None:
    rep, ae, windows = exported
    again = ex.export_model(ae, replace(rep.meta, model_id="", created=""), tmp_path / "again.onnx", windows)
    assert again.meta.model_id == rep.meta.model_id
    other = replace(rep.meta, threshold=replace(rep.meta.threshold, value=0.7), model_id="", created="")
    assert ex.export_model(ae, other, tmp_path / "other.onnx", windows).meta.model_id != rep.meta.model_id


def test_variants_report_drift_and_keep_metadata(exported) -> None:
    rep, _, _ = exported
    assert set(rep.variants) == {"int8", "fp16"}
    for kind, v in rep.variants.items():
        meta = ex.read_metadata(Path(v["path"]))
        assert meta.precision == kind and meta.model_id != rep.meta.model_id
        d = v["score_drift"]
        assert 0 <= d["max_rel"] < 0.5 and 0 <= d["decision_flips"] <= 1


def test_parity_failure_is_loud(monkeypatch, exported, tmp_path: Path) -> None:
    rep, ae, windows = exported
    real = ex.run_onnx

    def skewed(path, w, batch=1024):
        out = real(path, w, batch)
        out["score"] = out["score"] * 1.01
        return out

    good = tmp_path / "good.onnx"
    good.write_bytes(rep.path.read_bytes())
    monkeypatch.setattr(ex, "run_onnx", skewed)
    with pytest.raises(ex.ExportError, match=r"disagrees with torch .*score max diff"):
        ex.export_model(ae, replace(rep.meta), tmp_path / "bad.onnx", windows)
    # nothing is left where a deploy script or a daemon's hot reload would take it, and a good model there stays
    assert not (tmp_path / "bad.onnx").exists()
    with pytest.raises(ex.ExportError):
        ex.export_model(ae, replace(rep.meta), good, windows, fp16=True)
    assert good.read_bytes() == rep.path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.onnx"]  # no .tmp, .partial or variant left


def test_a_variant_that_fails_leaves_the_good_model_and_its_variants_as_they_were(monkeypatch, exported,
                                                                                 tmp_path: Path) -> None:
    """Second read: variants went straight to their final paths, and a failure unlinked the good ones there."""
    rep, ae, windows = exported
    out = tmp_path / "m.onnx"
    ex.export_model(ae, replace(rep.meta, model_id="", created=""), out, windows, quantize="int8", fp16=True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["m.fp16.onnx", "m.int8.onnx", "m.onnx"]

    def broken(src: Path, dst: Path) -> None:
        raise RuntimeError("no fp16 here")

    monkeypatch.setattr(ex, "_convert_fp16", broken)  # int8 is made and checked first, then fp16 fails
    with pytest.raises(ex.ExportError, match="fp16 variant failed"):
        ex.export_model(ae, replace(rep.meta, model_id="", created="", threshold=replace(rep.meta.threshold,
                        value=rep.meta.threshold.value * 2)), out, windows, quantize="int8", fp16=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_describe_model_prints_the_contract(exported) -> None:
    rep, _, _ = exported
    text = ex.describe_model(rep.path)
    assert "window: float [batch, 30, 3]" in text
    assert "reconstruction: float [batch, 30, 3]" in text
    assert "ai.onnx 18" in text and rep.meta.model_id in text


def test_dynamo_exporter_gives_the_same_scores(exported, tmp_path: Path) -> None:
    rep, ae, windows = exported
    dyn = ex.export_model(
        ae, replace(rep.meta, model_id="", created=""), tmp_path / "d.onnx", windows, exporter="dynamo"
    )
    np.testing.assert_allclose(
        ex.run_onnx(dyn.path, windows)["score"], ex.run_onnx(rep.path, windows)["score"], rtol=1e-4
    )
    assert ort.InferenceSession(str(dyn.path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape == [
        "batch",
        30,
        3,
    ]


def test_format_1_metadata_still_loads_and_a_future_one_says_how_to_re_export(exported) -> None:
    import json

    from edge_runtime.contract import ContractError

    rep, _, _ = exported
    doc = json.loads(rep.meta.to_json())
    old = {k: v for k, v in doc.items() if k not in ("scoring", "preprocessing")} | {"format_version": 1}
    meta = ModelMetadata.from_dict(old)
    assert meta.format_version == 1 and meta.scoring == {} and meta.threshold.value == rep.meta.threshold.value
    with pytest.raises(ContractError, match="re-export it with"):
        ModelMetadata.from_dict({**doc, "format_version": 6})  # the future: 5 is the cross-channel term


def _raw_terms(ae: ConvAutoencoder, windows: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The score's raw terms of ``windows`` (N, W, C) normalised by ``x``'s mean/std: ``(mse, level)`` (N, C) each."""
    z = torch.from_numpy((windows - x.mean(axis=0)) / x.std(axis=0)).float().transpose(1, 2)
    with torch.no_grad():
        mse = torch.mean((ae(z) - z) ** 2, dim=2).numpy().astype(np.float64)
    return mse, z.mean(dim=2).numpy().astype(np.float64)


def test_format_3_level_term_is_the_mahalanobis_distance_and_channel_shares_sum_to_the_score(tmp_path: Path) -> None:
    torch.manual_seed(0)
    w, c = 16, 3
    ae = ConvAutoencoder(AEConfig(n_channels=c, window=w, width=4, latent=4)).eval()
    x = normal_series(300, c, seed=3)
    windows = sliding_windows(x, w, 3)
    p = np.array([[4.0, -3.0, 0.0], [-3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])  # channel 2 screened out
    meta = replace(make_meta(c, w, x.mean(axis=0), x.std(axis=0)), architecture=ae.cfg.to_dict(), scoring={
        "weight": [1.5, 1.5, 0.0], "ae_ref": [0.5, 0.25, 1.0], "level_precision": p.tolist(), "level_t2_ref": 2.0})
    rep = ex.export_model(ae, meta, tmp_path / "m3.onnx", windows)
    got = ex.run_onnx(rep.path, windows)
    mse, level = _raw_terms(ae, windows, x)
    t2 = np.einsum("nc,cd,nd->n", level, p, level)
    want = 0.5 * (mse[:, :2] / [0.5, 0.25]).mean(axis=1) + 0.5 * t2 / (2 * 2.0)
    np.testing.assert_allclose(got["score"], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["score"], got["channel_error"].mean(axis=1), rtol=1e-5, atol=1e-7)
    assert np.all(got["channel_error"][:, 2] == 0)
    back = ex.scoring_graph_from_onnx(rep.path)
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(windows))[0].numpy(), got["score"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("power", [3.0, 2.5])  # 3: the Mul form of the graph; 2.5: its Pow form
def test_format_4_power_mean_over_the_kept_channels_and_its_numpy_twin(tmp_path: Path, power: float) -> None:
    torch.manual_seed(0)
    w, c = 16, 3
    ae = ConvAutoencoder(AEConfig(n_channels=c, window=w, width=4, latent=4)).eval()
    x = normal_series(300, c, seed=3)
    windows = sliding_windows(x, w, 3)
    windows[5:9, :, 0] += 3 * x[:, 0].std()  # one channel departs: a power mean does not average it away
    p = np.diag([4.0, 2.0, 0.0])  # the diagonal (level_shrinkage 1): every share l_c (P l)_c >= 0
    scoring = {"weight": [1.5, 1.5, 0.0], "ae_ref": [0.5, 0.25, 1.0], "level_precision": p.tolist(),
               "level_t2_ref": 2.0, "power": power}
    meta = replace(make_meta(c, w, x.mean(axis=0), x.std(axis=0)), architecture=ae.cfg.to_dict(), scoring=scoring)
    rep = ex.export_model(ae, meta, tmp_path / "m4.onnx", windows)
    got = ex.run_onnx(rep.path, windows)
    mse, level = _raw_terms(ae, windows, x)
    e = 0.5 * mse[:, :2] / [0.5, 0.25] + 0.5 * level[:, :2] ** 2 * [4.0, 2.0] / 2.0  # (N, 2): the kept channels
    want = np.mean(e**power, axis=1) ** (1 / power)
    np.testing.assert_allclose(got["score"], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["score"], got["channel_error"].mean(axis=1) ** (1 / power), rtol=1e-4)
    np.testing.assert_allclose(got["channel_error"][:, :2], 1.5 * e**power, rtol=1e-4, atol=1e-6)
    assert np.all(got["channel_error"][:, 2] == 0)
    assert np.all(got["score"][5:9] > e[5:9].mean(axis=1))  # above the plain mean where one channel departs
    stats = ex.stats_from_metadata(rep.meta)
    assert stats.power == power
    ce_np, score_np = stats.channel_scores(mse, level)
    np.testing.assert_allclose(score_np, got["score"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ce_np, got["channel_error"], rtol=1e-4, atol=1e-6)
    back = ex.scoring_graph_from_onnx(rep.path)
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(windows))[0].numpy(), got["score"], rtol=1e-4, atol=1e-6)


def test_metadata_without_scoring_exports_with_unit_references(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ae = ConvAutoencoder(AEConfig(n_channels=2, window=16, width=4, latent=4)).eval()
    meta = replace(make_meta(2, 16, np.zeros(2), np.ones(2)), scoring={})
    windows = np.random.default_rng(0).standard_normal((8, 16, 2)).astype(np.float32)
    rep = ex.export_model(ae, meta, tmp_path / "u.onnx", windows)
    assert rep.meta.scoring == {k: [1.0, 1.0] for k in ("weight", "ae_ref", "level_scale", "level_ref")}
    got = ex.run_onnx(rep.path, windows)
    np.testing.assert_allclose(got["score"], got["channel_error"].mean(axis=1), rtol=1e-5)
