"""Static checks on deploy/container: the images run as a non-root user, install the edge package
with exactly one onnxruntime flavour (``.[cpu]`` / ``.[gpu]``) and never torch or the trainer, and the
build context (.dockerignore) admits only pyproject.toml, README.md, LICENSE and edge_runtime/.

The checks are pure functions over the file texts (no docker needed); each is also run on a broken
variant to prove it can fail.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy" / "container"
DOCKERFILES = {"cpu": CONTAINER / "Dockerfile.cpu", "gpu": CONTAINER / "Dockerfile.cuda"}
CONTEXT_ALLOWED = {"pyproject.toml", "README.md", "LICENSE", "edge_runtime/"}
HEAVY = re.compile(r"torch|train|onnxscript|\bonnx\b(?!runtime)|onnx_ir", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile text -> [(INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # comments, also inside a continued instruction
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def final_stage(instrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions from the last FROM on (the image that ships)."""
    last = max(i for i, (word, _) in enumerate(instrs) if word == "FROM")
    return instrs[last:]


def pip_installs(instrs: list[tuple[str, str]]) -> list[list[str]]:
    """The argument lists of every ``pip install`` in RUN instructions (``&&``-chained commands split)."""
    found = []
    for word, args in instrs:
        if word != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", args):
            tokens = shlex.split(cmd)
            for i in range(len(tokens) - 1):
                if tokens[i].endswith("pip") and tokens[i + 1] == "install":
                    found.append(tokens[i + 2:])
    return found


def dockerfile_problems(text: str, extra: str) -> list[str]:
    """Why a Dockerfile breaks the rules (empty: it does not). ``extra``: ``cpu`` or ``gpu``."""
    instrs = instructions(text)
    problems = []
    users = [args for word, args in final_stage(instrs) if word == "USER"]
    if not users:
        problems.append("the final stage sets no USER (runs as root)")
    elif users[-1].split(":")[0] in {"root", "0"}:
        problems.append(f"the final stage runs as root (USER {users[-1]})")
    installs = pip_installs(instrs)
    if installs != [[f".[{extra}]"]]:
        problems.append(f"expected exactly one `pip install .[{extra}]`, got {installs}")
    for args in installs:
        heavy = [a for a in args if HEAVY.search(a)]
        if heavy:
            problems.append(f"installs {heavy}")
    for word, args in instrs:
        if word in ("COPY", "ADD") and "--from=" not in args:
            sources = [a for a in shlex.split(args)[:-1] if not a.startswith("--")]
            outside = [s for s in sources if s.rstrip("/") not in {c.rstrip("/") for c in CONTEXT_ALLOWED}]
            if outside:
                problems.append(f"{word} {outside}: not part of the edge package")
    return problems


def dockerignore_problems(text: str) -> list[str]:
    """Why a .dockerignore admits more than :data:`CONTEXT_ALLOWED` (empty: it does not)."""
    patterns = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    problems = []
    if not patterns or patterns[0] != "*":
        problems.append("the first pattern must be `*` (exclude everything, then admit)")
    admitted = {p[1:] for p in patterns if p.startswith("!")}
    if admitted != CONTEXT_ALLOWED:
        problems.append(f"admits {sorted(admitted)}, expected {sorted(CONTEXT_ALLOWED)}")
    return problems


@pytest.mark.parametrize("extra", sorted(DOCKERFILES))
def test_dockerfile_runs_as_non_root_and_installs_only_the_edge_package(extra: str) -> None:
    assert dockerfile_problems(DOCKERFILES[extra].read_text(), extra) == []


def test_dockerignore_admits_only_the_edge_package() -> None:
    assert dockerignore_problems((ROOT / ".dockerignore").read_text()) == []


def test_the_installed_extras_pull_no_trainer_dependencies() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in DOCKERFILES:
        assert extras[extra] and not [d for d in extras[extra] if HEAVY.search(d)], extras[extra]
    assert any("torch" in d for d in extras["train"])  # the pattern does find the trainer's


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.replace("USER 10001:10001", "USER root"), "runs as root"),
        (lambda t: t.replace("USER 10001:10001\n", ""), "no USER"),
        (lambda t: t.replace('pip install ".[cpu]"', 'pip install ".[cpu,train]"'), "pip install"),
        (lambda t: t.replace('pip install ".[cpu]"', 'pip install ".[cpu]" \\\n && /opt/edgewatch/bin/pip install torch'),
         "torch"),
        (lambda t: t.replace("COPY edge_runtime ./edge_runtime", "COPY edge_runtime trainer ./"), "trainer"),
    ],
)
def test_dockerfile_check_catches_a_broken_file(change, problem: str) -> None:
    text = DOCKERFILES["cpu"].read_text()
    broken = change(text)
    assert broken != text
    assert any(problem in p for p in dockerfile_problems(broken, "cpu")), dockerfile_problems(broken, "cpu")


@pytest.mark.parametrize("text", ["!pyproject.toml\n!README.md\n!edge_runtime/\n",
                                  "*\n!pyproject.toml\n!README.md\n!edge_runtime/\n!trainer/\n",
                                  "*\n!pyproject.toml\n!README.md\n"])
def test_dockerignore_check_catches_a_broken_file(text: str) -> None:
    assert dockerignore_problems(text)


# -- the run examples: a broker the daemon can reach, and no restart loop on a config error ---------------------

COMPOSE = CONTAINER / "compose.yaml"
RUN_EXAMPLES = [ROOT / "docs" / "DEPLOY.md", ROOT / "docs" / "readme" / "50-deploy.md", ROOT / "README.md",
                *DOCKERFILES.values()]
MAX_RESTARTS = 10


def restart_problems(policy: str, where: str) -> list[str]:
    """Why a docker restart policy restarts a configuration error (exit 78) for ever (empty: it does not).
    Docker has no RestartPreventExitStatus: only ``no`` or ``on-failure:N`` with a small N stop."""
    name, _, count = policy.partition(":")
    if name == "no" or (name == "on-failure" and count.isdigit() and 1 <= int(count) <= MAX_RESTARTS):
        return []
    return [f"{where}: restart {policy!r} restarts a config error (exit 78) for ever: on-failure:N, N <= {MAX_RESTARTS}"]


def compose_problems(doc: dict) -> list[str]:
    """Why compose.yaml's daemon cannot reach its broker or loops on a config error (empty: neither)."""
    services = doc.get("services") or {}
    ew = services.get("edgewatch")
    if not isinstance(ew, dict):
        return ["no edgewatch service"]
    problems = restart_problems(str(ew.get("restart", "no")), "edgewatch service")
    env = ew.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.partition("=")[::2] for e in env)
    broker = env.get("EDGEWATCH_MQTT_BROKER") or "mqtt://127.0.0.1:1883"  # the daemon's default
    host = urlsplit(broker).hostname
    if ew.get("network_mode") == "host":
        return problems
    if host not in services:
        problems.append(f"the daemon's broker {broker!r} is no service of the file, and no network_mode: host "
                        "(127.0.0.1 in a container is the container itself)")
    elif host not in (ew.get("depends_on") or []):
        problems.append(f"the edgewatch service does not depend on its broker service {host!r}")
    return problems


def docker_runs(text: str) -> list[list[str]]:
    """The ``docker run`` commands of a text (Markdown or a Dockerfile's comments), continuation lines joined."""
    lines = [ln.lstrip("# ").rstrip() for ln in text.splitlines()]
    joined, buf = [], ""
    for ln in lines:
        buf += ln
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        joined.append(buf)
        buf = ""
    return [shlex.split(ln[ln.index("docker run"):].split("#")[0]) for ln in joined if "docker run" in ln]


def docker_run_problems(argv: list[str], where: str) -> list[str]:
    """Why a detached daemon ``docker run`` loops on a config error or cannot reach a broker on the gateway."""
    if "-d" not in argv:  # a one-off command (check-model, ...): no restart, no broker
        return []
    opts = {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else ""))
            for i, a in enumerate(argv) if a.startswith("--")}
    problems = restart_problems(opts.get("--restart", "no"), where)
    if opts.get("--network") != "host" and not any(a.startswith("EDGEWATCH_MQTT_BROKER=") for a in argv):
        problems.append(f"{where}: no --network host and no EDGEWATCH_MQTT_BROKER: the default broker 127.0.0.1 "
                        "is the container itself")
    return problems


def test_compose_runs_the_daemon_beside_its_broker_without_a_restart_loop() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert compose_problems(doc) == []
    assert doc["services"]["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    ew = doc["services"]["edgewatch"]
    assert ew["build"]["dockerfile"] == "deploy/container/Dockerfile.cpu" and ew["read_only"] is True
    assert "EDGEWATCH_MQTT_PASSWORD" in ew["environment"]  # passed on, never written in the file
    # the broker keeps retained states and sessions (queued samples) across its own restarts, on a volume
    conf = (CONTAINER / "mosquitto.conf").read_text()
    assert re.search(r"^persistence true$", conf, re.M)
    location = re.search(r"^persistence_location (\S+)$", conf, re.M)
    assert location and any(str(v).endswith(":" + location.group(1).rstrip("/"))
                            for v in doc["services"]["mosquitto"]["volumes"])
    assert "mosquitto-data" in doc["volumes"]


@pytest.mark.parametrize("path", RUN_EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docker_run_examples_reach_the_broker_and_stop_on_a_config_error(path: Path) -> None:
    runs = docker_runs(path.read_text())
    assert [r for r in runs if "-d" in r], f"{path}: no daemon `docker run -d` example"
    assert [p for r in runs for p in docker_run_problems(r, str(path.relative_to(ROOT)))] == []


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d["services"]["edgewatch"].update(restart="on-failure"), "for ever"),
    (lambda d: d["services"]["edgewatch"].update(restart="unless-stopped"), "for ever"),
    (lambda d: d["services"]["edgewatch"].update(restart="on-failure:100"), "for ever"),
    (lambda d: d["services"].pop("mosquitto"), "no service of the file"),
    (lambda d: d["services"]["edgewatch"].pop("environment"), "no service of the file"),
    (lambda d: d["services"]["edgewatch"].pop("depends_on"), "does not depend on"),
])
def test_compose_check_catches_a_broken_file(change, problem: str) -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    change(doc)
    assert any(problem in p for p in compose_problems(doc)), compose_problems(doc)


def test_compose_check_accepts_a_broker_on_the_gateway_over_the_host_network() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    doc["services"].pop("mosquitto")
    doc["services"]["edgewatch"].pop("depends_on")
    doc["services"]["edgewatch"].update(network_mode="host", environment=["EDGEWATCH_MQTT_BROKER=mqtt://127.0.0.1:1883"])
    assert compose_problems(doc) == []


@pytest.mark.parametrize(("line", "problem"), [
    ("docker run -d --network host --restart on-failure --read-only edgewatch:cpu", "for ever"),
    ("docker run -d --network host --restart always edgewatch:cpu", "for ever"),
    ("docker run -d --restart on-failure:5 -v /etc/edgewatch:/etc/edgewatch:ro edgewatch:cpu", "no --network host"),
])
def test_docker_run_check_catches_a_broken_example(line: str, problem: str) -> None:
    assert any(problem in p for p in docker_run_problems(docker_runs(line)[0], "x"))
    assert docker_run_problems(docker_runs("docker run --rm edgewatch:cpu check-model m.onnx")[0], "x") == []


def test_the_compose_mosquitto_config_runs_on_a_real_mosquitto(tmp_path: Path) -> None:
    """deploy/container/mosquitto.conf as shipped, its listener moved to a free loopback port: it starts and
    passes a message (a typo in it would stop the compose broker)."""
    import subprocess
    import time

    from edge_runtime.tools.localbroker import free_port
    from tests.edge_runtime.mqtt_helpers import Collector, Publisher, wait_until

    port = free_port()
    text = (CONTAINER / "mosquitto.conf").read_text()
    assert re.search(r"^listener 1883$", text, re.M)
    conf = tmp_path / "mosquitto.conf"
    text = re.sub(r"^persistence_location .*$", f"persistence_location {tmp_path}/", text, flags=re.M)
    conf.write_text(re.sub(r"^listener 1883$", f"listener {port} 127.0.0.1", text, flags=re.M))
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        col = None
        while col is None:
            try:
                col = Collector(port, ["sensors/#"])
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"mosquitto did not start with the compose config: {out[-1000:]}")
                time.sleep(0.1)
        pub = Publisher(port)
        pub.send("sensors/d1/data", '{"ts": 1, "values": [1]}')
        pub.flush()
        wait_until(lambda: len(col.messages) >= 1, 10, "the message through the compose broker")
        pub.close()
        col.close()
    finally:
        proc.terminate()
        proc.wait(10)
