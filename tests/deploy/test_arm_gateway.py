"""An ARM gateway, under emulation (opt-in: ``pytest -m emulation``; root, several minutes).

A wheelhouse for linux aarch64 / CPython 3.11 is made with ``deploy/offline/make-wheelhouse.sh``
(``pip download --platform ... --only-binary=:all:``), then an arm64 Debian bookworm root (debootstrap,
cached under /var/cache/edgewatch-test) runs, under qemu-user-static with binfmt_misc and with no network
at all (a fresh network namespace: only a down loopback), ``deploy/offline/install.sh`` (pip --no-index),
``edgewatch check-model models/demo.onnx`` and a batch-1 timing. Numbers are printed (``-s``); they are
emulated-ARM timings on this x86 host, not a Raspberry Pi's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.buildah import need_root_tools, run

pytestmark = [pytest.mark.emulation, pytest.mark.timeout(3600)]
ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGEWATCH_BASE_CACHE", "/var/cache/edgewatch-test"))
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def arm64_root() -> Path:
    """The cached arm64 bookworm root with python3 + python3-venv (made on first use)."""
    need_root_tools({"debootstrap": "debootstrap", "qemu-aarch64-static": "qemu-user-static",
                     "update-binfmts": "binfmt-support"})
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    if not (BINFMT / "qemu-aarch64").exists():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    assert (BINFMT / "qemu-aarch64").read_text().startswith("enabled"), "binfmt_misc has no qemu-aarch64"
    rootfs = CACHE / "rootfs-bookworm-arm64"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        partial = Path(f"{rootfs}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        run(["debootstrap", "--arch=arm64", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(partial), os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")], timeout=3000)
        partial.rename(rootfs)
    return rootfs


def wheelhouse() -> Path:
    out = CACHE / "wheelhouse-arm64"
    shutil.rmtree(out, ignore_errors=True)
    run([str(ROOT / "deploy" / "offline" / "make-wheelhouse.sh"), str(out), "3.11", "cpu,metrics"],
        timeout=900)
    return out


# Runs inside the arm64 root, offline; prints one JSON line per step.
INSIDE = r"""
set -e
echo "{\"machine\": \"$(uname -m)\", \"interfaces\": \"$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')\"}"
/work/deploy/offline/install.sh /wheelhouse /opt/edgewatch >/tmp/install.log 2>&1 || { cat /tmp/install.log; exit 3; }
/opt/edgewatch/bin/edgewatch check-model /work/models/demo.onnx --json --batch 64 --repeats 20
/opt/edgewatch/bin/edgewatch check-model /work/models/demo.onnx --json --batch 1 --repeats 50
/opt/edgewatch/bin/python -c 'import json, sys, pathlib; d = pathlib.Path(sys.prefix);
print(json.dumps({"venv_mb": round(sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) / 1e6, 1)}))'
/opt/edgewatch/bin/python -c 'import onnxruntime as o, numpy as n; print(o.__version__, n.__version__)' >&2
"""


def test_offline_install_and_inference_in_an_arm64_root(tmp_path: Path) -> None:
    rootfs = arm64_root()
    wh = wheelhouse()
    root = tmp_path / "root"
    run(["cp", "-a", str(rootfs), str(root)])
    (root / "work").mkdir()
    shutil.copytree(ROOT / "deploy" / "offline", root / "work" / "deploy" / "offline")
    shutil.copytree(ROOT / "models", root / "work" / "models")
    shutil.copytree(wh, root / "wheelhouse")
    (root / "inside.sh").write_text(INSIDE)
    # A private mount and network namespace: /proc and /dev for the root, no network interfaces but a down lo.
    script = f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && chroot {root} /bin/sh /inside.sh"
    proc = subprocess.run(["unshare", "--mount", "--net", "sh", "-c", script], capture_output=True, text=True,
                          timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    docs = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert docs[0] == {"machine": "aarch64", "interfaces": "lo"}  # emulated ARM, no network but loopback
    batch64, batch1, size = docs[1], docs[2], docs[3]
    assert batch64["provider"] == "CPUExecutionProvider" and batch64["window"] == 64 and batch64["channels"]
    assert batch64["windows_per_s"] > 0 and batch1["latency_ms_median"] > 0
    print(f"\narm64 (qemu-user emulation on this x86 host), {proc.stderr.strip().splitlines()[-1]} "
          f"(onnxruntime, numpy): wheelhouse {sum(f.stat().st_size for f in wh.iterdir()) / 1e6:.1f} MB, "
          f"installed venv {size['venv_mb']} MB; check-model batch 64: median {batch64['latency_ms_median']} ms "
          f"({batch64['windows_per_s']:.0f} windows/s); batch 1: median {batch1['latency_ms_median']} ms")
