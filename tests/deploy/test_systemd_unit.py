"""The systemd unit in deploy/systemd: valid for systemd, hardened, reloadable by SIGHUP.

``systemd-analyze verify`` needs the ExecStart binary to exist, so the unit is copied to a
temporary folder with ExecStart pointed at a real executable; everything else is verified as
shipped, together with the GPU drop-in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD_DIR / "edgewatch.service"
GPU_DROPIN = SYSTEMD_DIR / "gpu.conf"
SHIPPED_EXEC = "/opt/edgewatch/bin/edgewatch"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed on this machine")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values in order (systemd keys may repeat, so no configparser)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def verifiable_copy(tmp_path: Path, with_dropin: bool) -> Path:
    """The unit under tmp_path with ExecStart on a real executable; the drop-in beside it if asked."""
    text = UNIT.read_text()
    assert SHIPPED_EXEC in text
    unit = tmp_path / "edgewatch.service"
    unit.write_text(text.replace(SHIPPED_EXEC, shutil.which("true") or "/bin/true"))
    if with_dropin:
        dropins = tmp_path / "edgewatch.service.d"
        dropins.mkdir()
        shutil.copy(GPU_DROPIN, dropins / "gpu.conf")
    return unit


def run_verify(unit: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def unit_problems(result: subprocess.CompletedProcess[str], unit: Path) -> list[str]:
    """Lines of verify output about our unit or drop-in (unknown keys, bad values, missing binaries)."""
    out = result.stdout + result.stderr
    return [ln for ln in out.splitlines() if "edgewatch.service" in ln or "gpu.conf" in ln or str(unit) in ln]


@needs_analyze
@pytest.mark.parametrize("with_dropin", [False, True], ids=["cpu", "cpu+gpu-dropin"])
def test_systemd_analyze_verify_accepts_unit(tmp_path: Path, with_dropin: bool) -> None:
    unit = verifiable_copy(tmp_path, with_dropin)
    result = run_verify(unit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert unit_problems(result, unit) == []


@needs_analyze
def test_verify_would_report_a_broken_unit(tmp_path: Path) -> None:
    """Guard for the test above: verify does flag unknown keys and a missing ExecStart binary here."""
    unit = verifiable_copy(tmp_path, with_dropin=False)
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nNoSuchHardening=yes\n", 1))
    assert any("NoSuchHardening" in ln for ln in unit_problems(run_verify(unit), unit))
    shipped = tmp_path / "shipped" / "edgewatch.service"
    shipped.parent.mkdir()
    shutil.copy(UNIT, shipped)
    result = run_verify(shipped)
    assert result.returncode != 0 and SHIPPED_EXEC in result.stdout + result.stderr


@needs_analyze
def test_security_exposure_is_low(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the unit at most 2.0 of 10 ("OK"); the shipped unit is ~1.2."""
    unit = verifiable_copy(tmp_path, with_dropin=False)
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    summary = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert summary is not None, result.stdout[-2000:] + result.stderr
    assert result.returncode == 0, f"exposure {summary.group(1)} above 2.0"


def test_unit_has_hardening_and_service_keys() -> None:
    svc = parse_unit(UNIT.read_text())["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    expected = {
        "User": "edgewatch",
        "Group": "edgewatch",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2 65 66 78",  # EXIT_USAGE, EXIT_DATAERR, EXIT_NOINPUT, EXIT_CONFIG
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "StateDirectory": "edgewatch",
        "LogsDirectory": "edgewatch",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }
    assert {k: one.get(k) for k in expected} == expected
    assert svc["SystemCallFilter"][0] == "@system-service"
    assert "@privileged" in svc["SystemCallFilter"][1] and svc["SystemCallFilter"][1].startswith("~")
    for key in (
        "RestartSec",
        "MemoryMax",
        "TasksMax",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "LockPersonality",
        "RestrictSUIDSGID",
    ):
        assert key in svc, key
    assert one["ExecStart"] == f"{SHIPPED_EXEC} run --config /etc/edgewatch/edgewatch.toml"


def test_restart_prevention_matches_the_cli_exit_codes() -> None:
    from edge_runtime.clierror import EXIT_CONFIG, EXIT_DATAERR, EXIT_NOINPUT, EXIT_USAGE

    prevented = {int(c) for c in parse_unit(UNIT.read_text())["Service"]["RestartPreventExitStatus"][-1].split()}
    assert prevented == {EXIT_USAGE, EXIT_CONFIG, EXIT_DATAERR, EXIT_NOINPUT}  # each needs an operator; a crash (1) restarts


@pytest.mark.parametrize("unit", sorted((ROOT / "deploy").rglob("*.service")), ids=lambda p: p.name)
def test_every_restarting_unit_in_deploy_stops_on_a_config_error(unit: Path) -> None:
    """Each shipped unit that restarts (the NATS workers' too) leaves a config or model error failed, not looping."""
    from edge_runtime.clierror import EXIT_CONFIG, EXIT_DATAERR, EXIT_NOINPUT, EXIT_USAGE

    service = parse_unit(unit.read_text())["Service"]
    if service.get("Restart", ["no"])[-1] == "no":
        return
    prevented = {int(c) for c in service.get("RestartPreventExitStatus", [""])[-1].split()}
    assert {EXIT_USAGE, EXIT_CONFIG, EXIT_DATAERR, EXIT_NOINPUT} <= prevented, unit


def test_gpu_dropin_opens_only_nvidia_devices() -> None:
    svc = parse_unit(GPU_DROPIN.read_text())["Service"]
    assert svc["PrivateDevices"] == ["no"]
    assert svc["DevicePolicy"] == ["closed"]
    assert all(v.startswith("char-nvidia-") for v in svc["DeviceAllow"])
    assert svc["MemoryDenyWriteExecute"] == ["no"]
