"""edge_runtime.contract: the model metadata both sides agree on (round trip, validation, the ONNX entry)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from edge_runtime.contract import (
    FORMAT_VERSION,
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAMES,
    READABLE_FORMAT_VERSIONS,
    ContractError,
    ModelMetadata,
    metadata_from_props,
)
from tests.edge_runtime.onnx_models import make_metadata


def test_json_round_trip_keeps_every_field() -> None:
    meta = make_metadata(window=32, hop=8, threshold=1.5, sample_period_s=0.1)
    back = ModelMetadata.from_json(meta.to_json())
    assert asdict(back) == asdict(meta)
    assert back.format_version == FORMAT_VERSION and back.n_channels == 4


@pytest.mark.parametrize("version", READABLE_FORMAT_VERSIONS)
def test_every_readable_format_version_loads(version: int) -> None:
    doc = json.loads(make_metadata().to_json())
    doc["format_version"] = version
    assert ModelMetadata.from_dict(doc).format_version == version


@pytest.mark.parametrize("version", READABLE_FORMAT_VERSIONS)
def test_a_model_file_of_every_readable_format_loads_and_scores_at_the_edge(tmp_path, version: int) -> None:
    """Not only the metadata: an ONNX file written with each readable format version runs in the edge's loader."""
    import numpy as np

    from edge_runtime.service.model import load_model
    from tests.edge_runtime.onnx_models import reference_scores, write_model

    meta = make_metadata()
    meta.format_version = version
    model = load_model(write_model(tmp_path / f"v{version}.onnx", meta), provider="cpu")
    assert model.metadata.format_version == version
    windows = np.random.default_rng(version).normal(0, 1, (5, meta.window, len(meta.channels))).astype(np.float32)
    score, ce = model.run(windows)
    want_score, want_ce = reference_scores(windows, meta)
    np.testing.assert_allclose(score, want_score, rtol=1e-5)
    np.testing.assert_allclose(ce, want_ce, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("change", "field"), [
    ({"format_version": 99}, "format_version"),
    ({"channels": []}, "channels"),
    ({"channels": ["a", "a", "b", "c"]}, "channels"),
    ({"window": 1}, "window"),
    ({"hop": 0}, "hop"),
    ({"hop": 17}, "hop"),
    ({"threshold": {"value": -1.0}}, "threshold.value"),
    ({"threshold": {"value": 1.0, "method": "magic"}}, "threshold.method"),
    ({"normalisation": {"mean": [0.0], "std": [1.0]}}, "normalisation"),
    ({"normalisation": {"mean": [0.0] * 4, "std": [1.0, 0.0, 1.0, 1.0]}}, "normalisation.std"),
    ({"sample_period_s": 0}, "sample_period_s"),
    ({"window": "sixteen"}, "malformed"),
    ({"health": [1]}, "health"),
    ({"health": {"fill": {"method": "interpolate"}}}, "health.fill.method"),
    ({"health": {"channels": {"nope": {"min": 0.0}}}}, "health.channels"),
    ({"scoring": {"power": 0}}, "scoring.power"),
    ({"scoring": {"power": "three"}}, "scoring.power"),
])
def test_validation_names_the_first_bad_field(change: dict, field: str) -> None:
    doc = {**json.loads(make_metadata().to_json()), **change}
    with pytest.raises(ContractError, match=field):
        ModelMetadata.from_dict(doc)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "{" * 100_000, '{"format_version": 2}'])
def test_bad_documents_are_contract_errors(text: str) -> None:
    with pytest.raises(ContractError):
        ModelMetadata.from_json(text)


def test_props_need_the_edgewatch_entry() -> None:
    with pytest.raises(ContractError, match=f"no '{METADATA_KEY}' entry"):
        metadata_from_props({"producer": "other"})
    meta = make_metadata(model_id="m-7")
    assert metadata_from_props({METADATA_KEY: meta.to_json()}).model_id == "m-7"


def test_an_exported_model_carries_the_contract(demo_model_path) -> None:
    """The trainer's real export and the edge agree on the document in the file."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(demo_model_path), providers=["CPUExecutionProvider"])
    meta = metadata_from_props(sess.get_modelmeta().custom_metadata_map)
    assert sess.get_inputs()[0].name == INPUT_NAME
    assert sess.get_inputs()[0].shape[1:] == [meta.window, meta.n_channels]  # (batch, W, C)
    assert [o.name for o in sess.get_outputs()] == list(OUTPUT_NAMES)
    assert meta.n_channels == len(meta.normalisation.mean) and meta.threshold.value > 0


def test_health_is_optional_and_kept_on_a_round_trip() -> None:
    doc = json.loads(make_metadata().to_json())
    del doc["health"]  # a model exported before sensor health
    assert ModelMetadata.from_dict(doc).health == {}
    assert ModelMetadata.from_dict({**doc, "health": None}).health == {}
    health = {"fill": {"method": "ffill", "limit_samples": 3}, "stale_after_s": 5.0,
              "channels": {doc["channels"][0]: {"min": 0.0, "max": 1.0, "margin": 0.1, "flat_tol": 0.0,
                                                "max_flat_samples": 12}}}
    meta = ModelMetadata.from_dict({**doc, "health": health})
    assert ModelMetadata.from_json(meta.to_json()).health == health


def test_an_exported_model_carries_learned_health_limits(demo_model_path) -> None:
    """fit learns every channel's range and stuck limit and the edge fill, and stores them in the file."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(demo_model_path), providers=["CPUExecutionProvider"])
    meta = metadata_from_props(sess.get_modelmeta().custom_metadata_map)
    assert set(meta.health["channels"]) == set(meta.channels)
    assert meta.health["fill"]["method"] == "ffill" and meta.health["stale_after_s"] > 0
    for lim in meta.health["channels"].values():
        assert lim["min"] < lim["max"] and lim["margin"] > 0 and lim["max_flat_samples"] >= 10
