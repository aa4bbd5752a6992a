"""EDGEWATCH_* environment variables from the option table, the default config path, and their precedence
(flag > environment > file > default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.cli import EXIT_CONFIG, main
from edge_runtime.config import (
    CONFIG_ENV,
    PASSWORD_ENV,
    ConfigError,
    build_config,
    default_config_file,
    env_overrides,
    example_toml,
    options,
    reference_markdown,
)

ROOT = Path(__file__).resolve().parents[2]


def test_every_option_has_one_variable_named_after_section_and_key() -> None:
    names = [o.env for o in options()]
    assert len(set(names)) == len(names)
    assert "EDGEWATCH_MQTT_KEEPALIVE_S" in names and "EDGEWATCH_MODEL_PATH" in names
    assert PASSWORD_ENV in names  # the password's long-standing variable is the table's own


@pytest.mark.parametrize(
    ("name", "raw", "key", "value"),
    [
        ("EDGEWATCH_MQTT_KEEPALIVE_S", "12", "keepalive_s", 12),
        ("EDGEWATCH_ALERTS_CLEAR_RATIO", "0.5", "clear_ratio", 0.5),
        ("EDGEWATCH_MQTT_PERSISTENT_SESSION", "off", "persistent_session", False),
        ("EDGEWATCH_ALERTS_PUBLISH_SCORES", "Yes", "publish_scores", True),
        ("EDGEWATCH_INPUT_TOPICS", "a/{device}/x, b/{device}", "topics", ["a/{device}/x", "b/{device}"]),
        ("EDGEWATCH_INPUT_TOPICS", '["a,b/{device}"]', "topics", ["a,b/{device}"]),
        ("EDGEWATCH_MODEL_PATH", "/etc/edgewatch/m.onnx", "path", "/etc/edgewatch/m.onnx"),
    ],
)
def test_variables_are_parsed_by_the_option_type(name: str, raw: str, key: str, value) -> None:
    assert env_overrides({name: raw}) == {key: value}
    assert getattr(build_config(None, None, {name: raw}), key) == value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EDGEWATCH_MQTT_KEEPALIVE_S": "ten"}, "mqtt.keepalive_s: EDGEWATCH_MQTT_KEEPALIVE_S='ten' is not a valid int"),
        ({"EDGEWATCH_MQTT_PERSISTENT_SESSION": "maybe"}, "mqtt.persistent_session: EDGEWATCH_MQTT_PERSISTENT_SESSION"),
        ({"EDGEWATCH_MQTT_KEEPALIVE_S": "1"}, "mqtt.keepalive_s: must be >= 5"),
        ({"EDGEWATCH_MQTT_BROKR": "mqtt://x"}, "EDGEWATCH_MQTT_BROKR: unknown environment variable"),
        ({"EDGEWATCH_INFERENC_MAX_BATCH": "64"},
         "EDGEWATCH_INFERENC_MAX_BATCH: unknown environment variable; did you mean EDGEWATCH_INFERENCE_MAX_BATCH?"),
    ],
)
def test_bad_variables_name_the_key_or_variable(env: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(None, None, env)
    assert str(info.value).startswith(message), str(info.value)


def test_other_edgewatch_variables_and_none_environ_are_ignored() -> None:
    assert env_overrides({"EDGEWATCH_FIGURES": "1", CONFIG_ENV: "/x.toml", "HOME": "/root"}) == {}
    assert build_config(None, None, None) == build_config()


def test_precedence_flag_over_environment_over_file_over_default(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[mqtt]\nkeepalive_s = 10\nusername = \"file\"\nprotocol = \"5\"\n")
    env = {"EDGEWATCH_MQTT_KEEPALIVE_S": "20", "EDGEWATCH_MQTT_USERNAME": "env"}
    cfg = build_config(str(f), {"keepalive_s": 40}, env)
    assert (cfg.keepalive_s, cfg.username, cfg.protocol, cfg.max_outgoing) == (40, "env", "5", 10000)


def test_secret_variable_value_is_never_shown() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(None, None, {"EDGEWATCH_MQTT_PORT": "1"})
    assert "unknown environment variable" in str(info.value)
    cfg = build_config(None, None, {PASSWORD_ENV: "s3cret-73914562"})
    assert cfg.password == "s3cret-73914562" and "73914562" not in repr(cfg)


def test_default_config_file_is_the_etc_path_when_present_and_overridable(tmp_path: Path) -> None:
    etc = tmp_path / "edgewatch.toml"
    assert default_config_file({}, str(etc)) is None  # absent: defaults only
    etc.write_text("")
    assert default_config_file({}, str(etc)) == str(etc)
    assert default_config_file({CONFIG_ENV: "/other.toml"}, str(etc)) == "/other.toml"
    assert default_config_file({CONFIG_ENV: ""}, str(etc)) is None  # set empty: read no file


def test_run_reads_the_config_named_by_the_environment_and_the_flag_wins(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[mqtt]\nkeepalive_s = 1\n")
    res = CliRunner(env={CONFIG_ENV: str(f)}).invoke(main, ["run"])
    assert res.exit_code == EXIT_CONFIG and "mqtt.keepalive_s: must be >= 5" in res.output
    res = CliRunner(env={CONFIG_ENV: str(f), "EDGEWATCH_MQTT_KEEPALIVE_S": "30"}).invoke(main, ["run"])
    assert res.exit_code == EXIT_CONFIG and "model.path" in res.output  # the variable fixed keepalive_s
    res = CliRunner(env={CONFIG_ENV: str(f)}).invoke(main, ["run", "--keepalive-s", "30"])
    assert res.exit_code == EXIT_CONFIG and "model.path" in res.output


def test_the_shipped_example_config_is_generated_and_fails_naming_the_key_to_edit() -> None:
    shipped = ROOT / "deploy" / "edgewatch.toml"
    assert shipped.read_text() == example_toml(), "regenerate: see the command in its header"
    res = CliRunner(env={CONFIG_ENV: str(shipped)}).invoke(main, ["run"])
    assert res.exit_code == EXIT_CONFIG
    line = res.output.strip()
    assert line == (f"edgewatch: error: model.path: no model given: edit [model] path in {shipped} "
                    "(or set EDGEWATCH_MODEL_PATH)")
    assert "EDIT THIS" in shipped.read_text().split("path = ")[0]


def test_help_documents_the_exit_codes_and_precedence() -> None:
    for args in (["--help"], ["run", "--help"]):
        out = CliRunner().invoke(main, args).output
        assert "65 data error, 66 no input" in out and "78 config error" in out and "docs/TOOLS.md#exit-codes" in out
        assert "flag > EDGEWATCH_<SECTION>_<KEY> variable > config file > default" in out


def test_readme_configuration_reference_is_the_generated_table() -> None:
    text = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    assert reference_markdown() in text, (
        "regenerate the table in docs/CONFIGURATION.md from edge_runtime.config.reference_markdown()")
    # the table only: the page's own text around it stays (where the file is read from, the limits, the prefix)
    assert text.startswith("# Configuration reference") and "## Sensor health limits" in text
    assert "## One prefix for every topic" in text


def test_other_edgewatch_variables_far_from_any_option_are_left_alone() -> None:
    env = {"EDGEWATCH_SCREENSHOTS": "/tmp/x", "EDGEWATCH_FIGURES": "1", "EDGEWATCH_CONFIG": ""}
    assert build_config(None, None, env) == build_config(None, None, {})
