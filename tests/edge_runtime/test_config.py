"""Typed config: defaults, TOML, flags, validation naming the key, and the docs generated from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_runtime.config import (
    PASSWORD_ENV,
    Config,
    ConfigError,
    build_config,
    example_toml,
    load_toml,
    options,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid() -> None:
    cfg = build_config()
    assert cfg.broker == "mqtt://127.0.0.1:1883" and cfg.topics == ["sensors/{device}/data"]
    assert cfg.mqtt_client_id == f"edgewatch-{cfg.instance_name}"


def test_toml_then_flags(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[mqtt]\nkeepalive_s = 10\nprotocol = "5"\n[alerts]\nraise_after = 7\nclear_ratio = 1\n')
    cfg = build_config(str(p), {"raise_after": 2})
    assert (cfg.keepalive_s, cfg.protocol, cfg.raise_after, cfg.clear_ratio) == (10, "5", 2, 1.0)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[mqtt]\nkeepalive_s = \"x\"\n", "mqtt.keepalive_s"),
        ("[mqtt]\nkeepalive = 3\n", "mqtt.keepalive"),
        ("[nope]\na = 1\n", "nope"),
        ("[model]\nprovider = \"tpu\"\n", "model.provider"),
        ("[inference]\nmax_batch = 0\n", "inference.max_batch"),
        ("[alerts]\nclear_ratio = 1.5\n", "alerts.clear_ratio"),
        ("[alerts]\nalert_topic = \"alerts/#\"\n", "alerts.alert_topic"),
        ("[input]\ntopics = [\"sensors/data\"]\n", "input.topics"),
        ("[mqtt]\nbroker = \"http://x\"\n", "mqtt.broker"),
        ("[mqtt]\npersistent_session = 1\n", "mqtt.persistent_session"),
        ("[mqtt]\ncert_file = \"c.pem\"\n", "mqtt.cert_file"),
        ("not toml = = \n", "--config"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, toml: str, key: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as info:
        build_config(str(p))
    assert str(info.value).startswith(key)


def test_password_sources(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert Config().resolve_password() == "from-env"
    assert Config(password="from-config").resolve_password() == "from-config"
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    assert Config(password="x", password_file=str(f)).resolve_password() == "from-file"
    assert "from-config" not in repr(Config(password="from-config"))


def test_password_has_no_flag() -> None:
    assert [o.key for o in options() if o.flag is None] == ["password", "channel_limits"]  # a table: file or env only


def test_example_file_in_deploy_documents_every_key() -> None:
    text = (ROOT / "deploy" / "edgewatch.toml").read_text()
    flat = load_toml(ROOT / "deploy" / "edgewatch.toml")
    assert set(flat) == {o.key for o in options()}
    for o in options():
        assert o.help in text, o.key
    assert build_config(str(ROOT / "deploy" / "edgewatch.toml")) is not None


def test_generated_example_parses_to_defaults(tmp_path: Path) -> None:
    p = tmp_path / "e.toml"
    p.write_text(example_toml())
    assert build_config(str(p)) == build_config()


def test_configuration_reference_lists_every_key() -> None:
    text = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    for o in options():
        assert re.search(rf"`{o.section}\.{o.key}`", text), o.key


@pytest.mark.parametrize("toml_value", ["73914562", "true", "[\"73914562\"]", "73914562.5"])
def test_secret_value_never_in_a_type_error(toml_value: str, tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(f"[mqtt]\npassword = {toml_value}\n")
    with pytest.raises(ConfigError) as exc:
        build_config(str(p))
    msg = str(exc.value)
    assert msg.startswith("mqtt.password: expected str") and "<redacted>" in msg
    assert "73914562" not in msg and "True" not in msg


def test_non_secret_value_still_shown_in_a_type_error(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[mqtt]\nusername = 73914562\n")
    with pytest.raises(ConfigError, match=r"mqtt.username: expected str, got int 73914562"):
        build_config(str(p))


def test_max_device_id_len_minimum_leaves_room_for_the_hash() -> None:
    with pytest.raises(ConfigError, match=r"input.max_device_id_len: must be >= 16, got 8"):
        build_config(None, {"max_device_id_len": 8})
    assert build_config(None, {"max_device_id_len": 16}).max_device_id_len == 16


@pytest.mark.parametrize(("toml", "said"), [
    ("[mqtt]\nbrokr = 'x'\n", "mqtt.brokr: unknown key in {f} (did you mean 'broker'?)"),
    ("[mqtt]\nzzz = 1\n", "mqtt.zzz: unknown key in {f} (keys of [mqtt]: broker, ca_file,"),
    ("[mqt]\nbroker = 'x'\n", "mqt: unknown section in {f} (expected one of model, mqtt,"),
])
def test_an_unknown_key_names_the_file_and_the_nearest_key(tmp_path: Path, toml: str, said: str) -> None:
    f = tmp_path / "edgewatch.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_toml(f)
    assert str(exc.value).startswith(said.format(f=f))


def test_a_choice_is_taken_in_any_case_and_kept_as_spelt() -> None:
    """`--log-level info` as INFO, `CPU` as cpu, from a flag, the environment or the file; a wrong one still fails."""
    cfg = build_config(None, {"log_level": "info", "provider": "CPU"}, {"EDGEWATCH_RUNTIME_LOG_FORMAT": "JSON"})
    assert (cfg.log_level, cfg.provider, cfg.log_format) == ("INFO", "cpu", "json")
    with pytest.raises(ConfigError, match=r"runtime.log_level: 'loud' is not one of DEBUG, INFO"):
        build_config(None, {"log_level": "loud"}, {})


def test_run_takes_a_choice_flag_in_any_case() -> None:
    from click.testing import CliRunner

    from edge_runtime.cli import main

    r = CliRunner().invoke(main, ["run", "--log-level", "info", "--provider", "CPU"], env={"EDGEWATCH_CONFIG": ""})
    assert r.exit_code == 78 and "model.path: no model given" in r.output, r.output  # past the flags, to the model
