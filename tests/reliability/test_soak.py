"""Soak: churning devices and random bad messages against a real broker and an in-process daemon.

RSS stays flat after warm-up (bound: RSS_BOUND_MB), no thread dies, and the stats add up:
every message is either decoded or dropped with a reason, every sample sent is accepted, and
every window queued is scored or counted as dropped. ``-m soak`` runs the 60 s variant; the
default suite runs 8 s.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.edge_runtime.mqtt_helpers import idle, running_daemon
from tests.edge_runtime.onnx_models import make_metadata, write_model
from tests.reliability.harness import Client, rss_mb, wait_until

T0 = 1_700_000_000.0
RSS_BOUND_MB = 24.0  # growth allowed from the end of warm-up (a quarter of the run) to the end
BAD = [
    (b"{oops", "malformed_json"),
    (b'{"values": [1, 2, 3]}', "wrong_channels"),
    (b'{"values": [1, "a", 3, 4]}', "non_numeric"),
    (b'{"ts": "soon", "values": [1, 2, 3, 4]}', "bad_timestamp"),
    (b"x" * 5000, "oversize"),
    (b'{"values": 1}', "bad_structure"),
    (b"", "empty"),
    (b"\xff\xfe\xfd", "bad_encoding"),
]


class Churn(threading.Thread):
    """A sliding pool of device ids (new ones appear, old ones fall silent) plus ~10 % bad messages."""

    def __init__(self, client: Client, seconds: float, rate_hz: float = 400.0, seed: int = 0) -> None:
        super().__init__(daemon=True)
        self.client, self.seconds, self.rate = client, seconds, rate_hz
        self.rng = random.Random(seed)
        self.sent = 0
        self.good_samples = 0
        self.bad: Counter[str] = Counter()
        self.ts: dict[str, int] = {}
        self.devices: set[str] = set()

    def run(self) -> None:
        t_end = time.monotonic() + self.seconds
        t_next = time.monotonic()
        k = 0
        while time.monotonic() < t_end:
            base = k // 40  # the pool slides by one id every 40 messages
            dev = f"churn-{base + self.rng.randrange(30)}"
            if self.rng.random() < 0.1:
                payload, reason = self.rng.choice(BAD)
                if self.rng.random() < 0.3:  # arbitrary bytes after a brace: malformed or badly encoded
                    payload = b"{" + self.rng.randbytes(self.rng.randrange(1, 200))
                    reason = "random"
                self.bad[reason] += 1
            else:
                i = self.ts.get(dev, 0)
                n = self.rng.choice((1, 1, 1, 8))
                self.ts[dev] = i + n
                vals = [[self.rng.gauss(0, 0.3) for _ in range(4)] for _ in range(n)]
                if n == 1:
                    payload = json.dumps({"ts": T0 + i, "values": vals[0]}).encode()
                else:
                    payload = json.dumps({"ts": [T0 + i + j for j in range(n)], "values": vals}).encode()
                self.good_samples += n
                self.devices.add(dev)
            self.client.publish(f"sensors/{dev}/data", payload)
            self.sent += 1
            k += 1
            t_next += 1.0 / self.rate
            time.sleep(max(0.0, t_next - time.monotonic()))


def soak(seconds: float, mosquitto, tmp_path: Path, figure, name: str) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=16, hop=4, threshold=0.5))
    with running_daemon(mosquitto.url, model, max_devices=40, device_idle_s=1.0, max_payload_bytes=4096,
                        stats_interval_s=1.0, log_interval_s=5.0) as d:
        threads = [*d._threads, d.link.client._thread]
        pub = Client(mosquitto.port, "soak-pub", persistent=False)
        churn = Churn(pub, seconds)
        rss: list[tuple[float, float]] = []
        t0 = time.monotonic()
        churn.start()
        while churn.is_alive():
            rss.append((time.monotonic() - t0, rss_mb()))
            assert all(t is not None and t.is_alive() for t in threads), "a daemon thread died"
            time.sleep(0.25)
        wait_until(lambda: pub.unacked() == 0, 30, "publisher acknowledged")
        wait_until(lambda: d.stats.counts["messages"] >= churn.sent, 30, "every message received")
        idle(d, 30)
        s = d.stats_doc()
        alive = all(t.is_alive() for t in threads)
        pub.close()
    drops = s["drops"]
    msg_drops = {k: v for k, v in drops.items() if k not in ("duplicate", "out_of_order", "queue_full")}
    assert alive
    assert s["messages"] == churn.sent
    assert s["samples"] == churn.good_samples  # every good sample accepted
    assert sum(msg_drops.values()) == sum(churn.bad.values())  # every bad message counted
    for _, reason in BAD:  # and counted under its own reason
        assert drops.get(reason, 0) >= churn.bad[reason], (reason, drops, churn.bad)
    assert s["windows_queued"] == s["windows_scored"] + drops.get("queue_full", 0)
    assert "internal_error" not in drops and "inference_error" not in drops
    assert s["devices_active"] <= 40
    warm = [m for t, m in rss if t >= seconds / 4]
    growth = max(warm) - warm[0]
    assert growth < RSS_BOUND_MB, rss
    figure(name, seconds=seconds, messages=churn.sent, bad_messages=sum(churn.bad.values()),
           samples=s["samples"], windows_scored=s["windows_scored"], devices_seen=len(churn.devices),
           devices_evicted=s["devices_evicted"], devices_expired=s["devices_expired"],
           rss_start_mb=round(warm[0], 1), rss_growth_after_warmup_mb=round(growth, 1), threads_alive=alive)


def test_soak_short(mosquitto, tmp_path: Path, figure) -> None:
    soak(8.0, mosquitto, tmp_path, figure, "soak_8s")


@pytest.mark.soak
def test_soak_60s(mosquitto, tmp_path: Path, figure) -> None:
    soak(60.0, mosquitto, tmp_path, figure, "soak_60s")
