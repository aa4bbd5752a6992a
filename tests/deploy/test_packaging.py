"""Packaging, verified by building it: ``python -m build`` (sdist + wheel), the metadata a packager reads
(SPDX license, LICENSE file, classifiers, URLs, one version), what the sdist carries; then the systemd
README's install steps run line by line with that wheel in a fresh venv, and ``edgewatch-train`` in that
edge-only install (no torch) says how to get the train extra.

Slow-ish (two isolated builds and a venv with onnxruntime: about a minute here), so ``slow``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from edge_runtime import __version__
from tests.deploy.systemd_steps import install_lines
from tests.edge_runtime.mqtt_helpers import Collector, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "deploy" / "systemd" / "README.md"
UNIT = ROOT / "deploy" / "systemd" / "edgewatch.service"


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
                          cwd=out, capture_output=True, text=True, timeout=600)  # cwd: the checkout's build/ is data
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_wheel_metadata_has_spdx_license_classifiers_urls_and_the_one_version(dist: Path) -> None:
    wheel = only(dist, "edgewatch-*-py3-none-any.whl")
    assert wheel.name == f"edgewatch-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = Parser().parsestr(z.read(f"edgewatch-{__version__}.dist-info/METADATA").decode())
    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "Apache-2.0" and meta.get_all("License-File") == ["LICENSE"]
    assert f"edgewatch-{__version__}.dist-info/licenses/LICENSE" in names
    classifiers = meta.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers and not any("License ::" in c for c in classifiers)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    assert "edge_runtime/schemas/" in " ".join(names) and not any(n.startswith("tests/") for n in names)


def test_sdist_carries_what_a_packager_needs(dist: Path) -> None:
    sdist = only(dist, "edgewatch-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    tracked = subprocess.run(["git", "ls-files", "deploy", "models", "tests"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    missing = [f for f in tracked if f not in names and (ROOT / f).exists()]
    assert not missing, missing
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "constraints.txt"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_changelog_has_an_entry_for_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(__version__)}\]", text, re.M), "CHANGELOG.md: no section for the version"


def test_systemd_readme_install_steps_work_from_the_built_wheel(dist: Path, tmp_path: Path, mosquitto) -> None:
    root = tmp_path / "root"
    work = tmp_path / "work"  # the copy on the gateway: dist/, deploy/, model.onnx
    (work / "dist").mkdir(parents=True)
    wheel = only(dist, "edgewatch-*-py3-none-any.whl")
    (work / "dist" / wheel.name).write_bytes(wheel.read_bytes())
    subprocess.run(["cp", "-r", str(ROOT / "deploy"), str(work)], check=True)
    (work / "model.onnx").write_bytes((ROOT / "models" / "demo.onnx").read_bytes())
    lines, skipped = install_lines(README.read_text(), root)
    assert [ln.split()[0] for ln in skipped] == ["python3", "useradd", "systemctl", "journalctl"]
    # PYTHONPATH dropped: a source tree on it (with its egg-info) makes the fresh venv's pip think edgewatch is installed
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEWATCH_", "VIRTUAL_ENV", "PYTHONPATH"))}
    for line in lines:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    installed_unit = root / "etc" / "systemd" / "system" / "edgewatch.service"
    assert installed_unit.read_text() == UNIT.read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", installed_unit.read_text(), re.M).group(1).split()
    argv = [str(root) + exec_start[0], *[a.replace("/etc/edgewatch", str(root / "etc" / "edgewatch"))
                                         for a in exec_start[1:]]]
    # The unit's command, started on the config as installed: running, online on the broker, SIGTERM: exit 0.
    col = Collector(mosquitto.port, ["edgewatch/gw/status"])
    env.update(EDGEWATCH_MQTT_BROKER=mosquitto.url, EDGEWATCH_RUNTIME_INSTANCE="gw")
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: any(d["state"] == "online" for _, d in col.docs("edgewatch/gw/status")), 60, "online")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        col.close()
    assert proc.returncode == 0, out


def test_installed_example_config_without_the_model_fails_naming_the_key(dist: Path, tmp_path: Path) -> None:
    venv = edge_only_venv(dist, tmp_path)
    etc = tmp_path / "edgewatch.toml"
    etc.write_text((ROOT / "deploy" / "edgewatch.toml").read_text())
    t0 = time.monotonic()
    proc = subprocess.run([str(venv / "bin" / "edgewatch"), "run", "--config", str(etc)], capture_output=True,
                          text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 78, proc.stderr
    assert proc.stderr.strip() == (f"edgewatch: error: model.path: no model given: edit [model] path in {etc} "
                                   "(or set EDGEWATCH_MODEL_PATH)")
    assert time.monotonic() - t0 < 30


def test_edgewatch_train_without_the_train_extra_says_how_to_install_it(dist: Path, tmp_path: Path) -> None:
    venv = edge_only_venv(dist, tmp_path)
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True).returncode != 0
    data = tmp_path / "d.csv"
    data.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(200)))
    proc = subprocess.run([str(venv / "bin" / "edgewatch-train"), "fit", str(data), "--out", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 69, proc.stderr  # EX_UNAVAILABLE: an optional part is not installed
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs the train extra" in lines[0] and "edgewatch[train,cpu]" in lines[0], proc.stderr


_VENVS: dict[Path, Path] = {}


def edge_only_venv(dist: Path, tmp_path: Path) -> Path:
    """A fresh venv with the built wheel's ``[cpu]`` extra only (no torch), one per test session."""
    if dist not in _VENVS:
        venv = dist / "venv-cpu"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a source tree there: "already installed"
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        f"{only(dist, 'edgewatch-*-py3-none-any.whl')}[cpu]"], check=True, capture_output=True,
                       timeout=600, env=env)
        _VENVS[dist] = venv
    return _VENVS[dist]
