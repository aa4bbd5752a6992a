"""Sensor health in the ingest path: each device's channel checks, sensor alerts and health documents.

:class:`SensorHealth` is called by :class:`~edge_runtime.service.ingest.Ingest` under its lock (network thread;
the housekeeping thread for :meth:`SensorHealth.check_stale`). A message with arrays (a batch, or a sample with a
missing value) is checked and filled before it enters the window ring (:meth:`check_block`); the plain
single-sample path stays numpy-free per message: its rows are checked as one block every
:attr:`SensorHealth.check_every` samples (:data:`CHECK_EVERY`, fewer when a stuck limit is shorter, so a
fault is reported within its limit of becoming one; up to twice as many for a quiet device, which cannot get
stuck sooner than that limit) and whenever a window is cut (:meth:`flush`); a block of
healthy rows costs a few numpy operations (:meth:`ChannelHealth.check_plain`), a share of a microsecond a sample. A window is handed on with the channels to leave out of the score (missing or
stuck within its span; out of range too with ``health.range_excludes``: an out-of-range value is a real reading and
stays in the process score by default) or not at all while the device is ``degraded`` or ``out_of_distribution``.

Out of distribution: when more than ``health.degraded_share`` of a device's channels (those screened out of the
score too: they still say where the plant runs) are out of range at once, it is not that many sensors failing
together. Before the device has run inside the range (:data:`BACK_IN_WINDOWS` windows' worth of samples in a row
with no more than that share out) since it started (first seen by this daemon, or running again after a stop), it is
an operating point far from anything in training (another site, another product, a recording of another session):
the device is reported once as ``out_of_distribution`` (retained, on the operating topic), raises no per-channel
``out_of_range`` alerts (those raised are cleared with that reason) and is not scored, until no more than that share
is out of range for :data:`BACK_IN_WINDOWS` windows' worth of samples in a row. A device that had run in range and
then leaves it on most channels at once is a *process excursion* (a trip, a burst line, a fault that moves the whole
plant): it stays scored, so the process alert raises with its top channels (with ``health.range_excludes``
its out-of-range channels are left out as that option says, so it is ``degraded`` instead), and it raises no
per-channel ``out_of_range`` alerts either (those raised are cleared with reason ``process_excursion``; counted
``range_excursions``, a warning logged) until it is back in range as above. Messages to publish (sensor alerts,
retained health and operating documents) collect in :attr:`SensorHealth.outbox`; the ingest sends them outside
its lock.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Container, Sequence
from typing import Any

import numpy as np

from edge_runtime.config import Config, ConfigError
from edge_runtime.pipeline.calibration import parse_warmup
from edge_runtime.pipeline.documents import RAISED, Outbound, operating_doc, to_json
from edge_runtime.pipeline.health import (
    DEFAULT_MARGIN,
    OK,
    OUT_OF_RANGE,
    ChannelHealth,
    HealthError,
    HealthLimits,
    left_out,
)
from edge_runtime.pipeline.hysteresis import AlertPolicy
from edge_runtime.pipeline.sensor_alerts import SensorAlerts
from edge_runtime.pipeline.states import OUT_OF_DISTRIBUTION, RUNNING
from edge_runtime.pipeline.stats import RateLimitedLog, Stats
from edge_runtime.pipeline.topics import format_topic
from edge_runtime.pipeline.windows import RingWindow, WindowStore
from edge_runtime.service.model import EdgeModel

log = logging.getLogger(__name__)

BACK_IN_WINDOWS = 2  # out_of_distribution ends after this many windows' worth of samples mostly in range
DEGRADED, OOD = "degraded", OUT_OF_DISTRIBUTION  # why a device's windows are not scored
EXCURSION = "process_excursion"  # most channels out of range on a device that had run in range: scored
CHECK_EVERY = 16  # plain single samples checked in blocks of at most this many (or at each window)
REJECTED_AFTER = 5  # a device whose messages are dropped this many times in a row (none decodes) is ``rejected``


class DeviceHealth:
    """One device's checks and how long ago each channel was last excluded (for the window's mask)."""

    __slots__ = ("base", "checks", "clean", "last_t", "calm", "ood", "excursion", "back", "back_since", "in_range",
                 "learning", "seen_lo", "seen_hi", "seen_n", "seen_t0", "checked")

    def __init__(self, limits: HealthLimits, window: int, learning: bool = False) -> None:
        self.base = limits  # the model's limits this device was set up for (a reload replaces them)
        self.checks = ChannelHealth(limits)
        self.learning = learning  # input.warmup: the site's own range is being learnt (no range check yet)
        self.seen_lo = np.full(limits.n_channels, np.inf)  # (C,) the range seen while learning
        self.seen_hi = np.full(limits.n_channels, -np.inf)
        self.seen_n = 0
        self.seen_t0 = float("nan")
        self.clean = np.full(limits.n_channels, window, dtype=np.int64)  # (C,) samples since last excluded
        self.last_t = float("nan")  # the last sample time checked
        self.calm = False  # all ok, nothing raised, excluded, degraded or stale, its document says so
        self.ood = False  # out_of_distribution: most channels out of range at once, since the device started
        self.excursion = False  # most channels out of range at once after running in range: still scored
        # samples in a row with no more than degraded_share out of range since the device started, up to
        # BACK_IN_WINDOWS windows: then it has run in distribution, and leaving the range is a process excursion
        self.in_range = 0
        self.back = 0  # while ood: samples in a row with no more than degraded_share out of range
        self.back_since = float("nan")  # the first of them
        self.checked = 0  # samples checked, counted up to the range hold (a new device's first health document)


class SensorHealth:
    """The daemon's sensor checks for one model (rebuilt by :meth:`configure` on a reload)."""

    def __init__(self, cfg: Config, model: EdgeModel, stats: Stats, rl: RateLimitedLog, instance: str) -> None:
        self.cfg = cfg
        self.stats = stats
        self.rl = rl
        self.instance = instance
        self.outbox: list[Outbound] = []
        # devices whose last messages were all dropped: (how many in a row, the first one's time, wall clock),
        # least recently rejected first, at most input.max_devices of them
        self.rejects: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.rejected_raised: set[str] = set()  # the devices whose rejected alert is raised
        self.let_go: list[str] = []  # raised rejected devices without a window evicted from rejects: to forget
        # devices whose ``running`` (since, reason) waits for the range hold: started (or running again after a
        # stop) and not yet seen in range, so the first word may be ``out_of_distribution`` instead
        self.running_owed: dict[str, tuple[float, str]] = {}
        self.configure(model, strict=True)

    def configure(self, model: EdgeModel, strict: bool = False) -> None:
        """Limits for ``model``: its ``health`` document under the config's overrides. A config override naming
        a channel the model lacks is a :class:`ConfigError` at start (``strict``), a warning on a reload."""
        cfg, meta = self.cfg, model.metadata
        overrides = {k: v for k, v in cfg.channel_limits.items() if k in meta.channels}
        unknown = sorted(set(cfg.channel_limits) - set(overrides))
        if unknown:
            msg = f"health.channel_limits: {unknown[0][:40]!r} is not one of the model's channels ({', '.join(meta.channels)})"
            if strict:
                raise ConfigError(msg)
            log.warning("%s: ignored", msg)
        try:
            self.limits = HealthLimits.build(
                meta.health, meta.channels, meta.normalisation.mean, meta.sample_period_s, overrides,
                None if cfg.fill_limit < 0 else cfg.fill_limit, cfg.stale_after_s or None, cfg.range_hold)
        except HealthError as exc:
            raise ConfigError(str(exc)) from None
        self.warmup = parse_warmup(cfg.warmup)  # validated with the config
        self.model_id = model.model_id
        self.period_s = meta.sample_period_s
        self.check_every = max(1, min(CHECK_EVERY, self.limits.shortest_flat))
        # a quiet device (no flat run going on) cannot get stuck within shortest_flat rows of its last check, so
        # rows checked within 2 x shortest_flat - 1 still report a fault within 2x its limit
        self.quiet_every = max(1, min(CHECK_EVERY, 2 * self.limits.shortest_flat - 1))
        self.window = model.window
        self.channels = list(meta.channels)
        weight = meta.scoring.get("weight")
        self.kept = (np.asarray(weight, dtype=np.float64) > 0) if weight and len(weight) == len(self.channels) \
            else np.ones(len(self.channels), dtype=bool)
        old = getattr(self, "alerts", None)
        if old is None or old.channels != self.channels:  # a reload with the same channels keeps raised alerts
            cleared: list[str] = []
            if old is not None:  # devices rejected under the old model's channels may fit the new one
                cleared = sorted(self.rejected_raised)
                for device in cleared:
                    self._out_alerts(old.set_rejected(device, False, time.time(), self.model_id, reason="reload"))
                self.rejects.clear()
                self.rejected_raised.clear()
            self.alerts = SensorAlerts(AlertPolicy(cfg.sensor_raise_after, cfg.sensor_clear_after), self.instance,
                                       self.channels)
            for device in cleared:  # their health documents without the fault
                self._out_rejected_health(device)

    def _device(self, ring: RingWindow) -> DeviceHealth:
        dh = ring.health
        if not isinstance(dh, DeviceHealth) or dh.base is not self.limits:  # new, or made for the old model
            old = dh
            dh = ring.health = DeviceHealth(self.limits, self.window, self.warmup.on)
            if isinstance(old, DeviceHealth):  # a reload: where the device runs has not changed
                dh.in_range, dh.ood, dh.excursion, dh.back, dh.back_since = (
                    old.in_range, old.ood, old.excursion, old.back, old.back_since)
        return dh

    # -- input that does not decode ---------------------------------------------------------------------
    def rejected(self, device: str, reason: str, detail: str, windowed: Container[str]) -> None:
        """A message of ``device`` was dropped (``reason``, ``detail``: the decoder's): :data:`REJECTED_AFTER` in a
        row raise its device-wide ``rejected`` sensor alert, so a device that is never scored is seen as one.
        ``windowed``: the devices with a window (the others never decoded: let go when no longer followed)."""
        now = time.time()
        n, first = self.rejects.pop(device, (0, now))
        self.rejects[device] = (n + 1, first)
        while len(self.rejects) > self.cfg.max_devices:
            old, _ = self.rejects.popitem(last=False)
            if old in self.rejected_raised and old not in windowed:  # never decoded, and followed no more
                self.rejected_raised.discard(old)
                self.let_go.append(old)  # the daemon forgets it too (Home Assistant: unavailable)
                self._out_alerts(self.alerts.forget(old, "evicted", self.model_id))
                # its retained health document (a rejected fault) removed: nothing of it is known any more
                self.outbox.append(Outbound(format_topic(self.cfg.health_topic, device=old), "", qos=1, retain=True))
        if n + 1 >= REJECTED_AFTER and device not in self.rejected_raised \
                and len(self.alerts.devices) < 2 * self.cfg.max_devices:
            self.rejected_raised.add(device)
            self.rl.log(logging.WARNING, "device_rejected", "device %s: its last %d messages were all dropped "
                        "(%s: %s): not scored until one decodes", device, REJECTED_AFTER, reason, detail)
            self._out_alerts(self.alerts.set_rejected(device, True, first, self.model_id,
                                                      f"{reason}: {detail}"[:300]))
            self._out_rejected_health(device)

    def input_accepted(self, device: str) -> bool:
        """A message of ``device`` decoded (only called while :attr:`rejects` or :attr:`rejected_raised` is not
        empty): its run of drops ends, and a raised ``rejected`` alert clears. True when there is a message to
        send."""
        self.rejects.pop(device, None)
        if device not in self.rejected_raised:
            return False
        self.rejected_raised.discard(device)
        docs = self.alerts.set_rejected(device, False, time.time(), self.model_id)
        self._out_alerts(docs)
        if docs:
            self._out_rejected_health(device)
        return bool(docs)

    def _out_rejected_health(self, device: str) -> None:
        """The health document of a device whose ``rejected`` alert changed (it may have no window yet)."""
        doc = self.alerts.health_as_published(device, self.model_id)
        if doc is not None:
            self.outbox.append(Outbound(format_topic(self.cfg.health_topic, device=device), to_json(doc), qos=1,
                                        retain=True, bulk=True))

    # -- checks ------------------------------------------------------------------------------------------
    def check_block(self, device: str, ring: RingWindow, ts: np.ndarray, values: np.ndarray,
                    plain: bool = False) -> None:
        """Before a block enters ``ring``: check the rows waiting there, then ``values`` (n, C) (filled in place;
        ``plain``: it has no missing value)."""
        self.flush(device, ring)
        self._check(device, ring, ts, values, plain)

    def flush(self, device: str, ring: RingWindow) -> None:
        """Check the plain rows pushed into ``ring`` since the last check."""
        if ring.unchecked:
            rows, ts = ring.unchecked_rows()
            ring.unchecked = 0
            if rows.shape[0]:
                self._check(device, ring, ts, rows, plain=True)

    def _check(self, device: str, ring: RingWindow, ts: np.ndarray, values: np.ndarray, plain: bool = False) -> None:
        dh = self._device(ring)
        checks = dh.checks
        if dh.checked <= checks.limits.longest_hold:  # (past it: no more waiting, whatever the block sizes)
            dh.checked += len(values)
        got = checks.check_plain(values) if plain else checks.update(values)  # (n, C), None: all ok
        ring.check_every = self.quiet_every if checks.quiet else self.check_every
        if dh.calm and (got is None or (checks.settled and not got.any())):  # the common case: nothing to say
            dh.last_t = float(ts[-1])
            self._ran_in_range(dh, len(ts))
            if self.running_owed:
                self._pay_running(device, dh)
            return
        codes = np.zeros(values.shape, np.uint8) if got is None else got
        flat_runs, miss_runs, out_runs, inside = (None, None, None, None) if got is None else (
            checks.flat_runs, checks.miss_runs, checks.out_runs, checks.inside_before)
        if dh.learning:
            codes = self._learn_range(device, dh, ts, values, codes)
        st = self.alerts.devices.get(device)
        if st is not None and st.stale:
            self._out_alerts(self.alerts.set_stale(device, False, float(ts[0]), self.model_id))
        period = self.period_s or self._spacing(dh, ts)
        dh.last_t = float(ts[-1])
        alerting, resume = self._distribution(device, dh, ts, codes)
        if self.running_owed:
            self._pay_running(device, dh)
        exc = left_out(codes, flat_runs, checks.limits, self.cfg.range_excludes)
        if exc.any():
            n = codes.shape[0]
            last = n - 1 - np.argmax(exc[::-1], axis=0)  # the last excluded sample of each channel
            dh.clean = np.where(exc.any(axis=0), n - 1 - last, dh.clean + n)
        else:
            dh.clean += codes.shape[0]
        if resume is None:
            self._out_alerts(self.alerts.update(device, ts, alerting, values, self.model_id, flat_runs, miss_runs,
                                                period, out_runs, inside))
        else:
            self._alert_resumed(device, dh, ts, alerting, values, period, resume)
        self._out_health(device, dh)
        st = self.alerts.devices[device]
        dh.calm = not (codes[-1].any() or st.stale or st.degraded or dh.ood or dh.excursion or dh.learning or not checks.settled
                       or any(r.raised or r.above for r in st.runs) or (dh.clean < self.window).any())

    def _learn_range(self, device: str, dh: DeviceHealth, ts: np.ndarray, values: np.ndarray,
                     codes: np.ndarray) -> np.ndarray:
        """``input.warmup``: the device's own normal range is learnt over its warm-up (the samples it states, or
        its duration in device time) with the training margin rule, then added to the model's; until then its
        channels are not checked for range (the codes without ``out_of_range``)."""
        with np.errstate(invalid="ignore"):
            dh.seen_lo = np.fmin(dh.seen_lo, np.nanmin(values, axis=0))
            dh.seen_hi = np.fmax(dh.seen_hi, np.nanmax(values, axis=0))
        if dh.seen_n == 0:
            dh.seen_t0 = float(ts[0])
        dh.seen_n += len(ts)
        spec = self.warmup
        if (spec.samples and dh.seen_n >= spec.samples) or (spec.seconds and ts[-1] - dh.seen_t0 >= spec.seconds):
            dh.learning = False
            span = dh.seen_hi - dh.seen_lo
            pad = np.where(span > 0, DEFAULT_MARGIN * span, DEFAULT_MARGIN * np.maximum(np.abs(dh.seen_hi), 1.0))
            before = dh.checks.limits
            dh.checks.widen(dh.seen_lo - pad, dh.seen_hi + pad)
            wider = [c for c, a, b in zip(self.channels, dh.checks.limits.lo < before.lo,
                                          dh.checks.limits.hi > before.hi, strict=True) if a or b]
            self.stats.incr("ranges_learnt")
            self.rl.log(logging.INFO, "range_learnt", "device %s: range learnt on site over %d samples of its warm-up"
                        "%s", device, dh.seen_n, f" (wider than training: {', '.join(wider)})" if wider else "")
        masked: np.ndarray = np.where(codes == OUT_OF_RANGE, np.uint8(OK), codes)
        return masked

    def _ran_in_range(self, dh: DeviceHealth, n: int) -> None:
        """``n`` more samples with no more than ``degraded_share`` of the channels out of range."""
        if dh.in_range < BACK_IN_WINDOWS * self.window:
            dh.in_range += n

    def _distribution(self, device: str, dh: DeviceHealth, ts: np.ndarray, codes: np.ndarray
                      ) -> tuple[np.ndarray, int | None]:
        """Enter or leave ``out_of_distribution`` or a process excursion over this block (codes (n, C)): the codes
        to alert on (its ``out_of_range`` left out while the device is in either) and, when it is back in range
        within the block with a channel still out of range there, that row (else None)."""
        if not (dh.ood or dh.excursion or (codes == OUT_OF_RANGE).any()):
            self._ran_in_range(dh, len(ts))
            return codes, None
        out_now = codes == OUT_OF_RANGE  # every channel: one screened out of the score still says where the plant runs
        far = out_now.sum(axis=1) > self.cfg.degraded_share * codes.shape[1]
        if not (dh.ood or dh.excursion):
            if not far.any():
                self._ran_in_range(dh, len(ts))
                return codes, None
            i = int(np.argmax(far))
            self._ran_in_range(dh, i)
            dh.back = 0
            out = [self.channels[j] for j in np.flatnonzero(out_now[i]).tolist()]
            what = f"{len(out)} of {len(self.channels)} channels outside the range seen in training at once " \
                   f"({', '.join(out)})"
            until = (f"until no more than {self.cfg.degraded_share:g} of them are out of range for "
                     f"{BACK_IN_WINDOWS * self.window} samples in a row")
            if dh.in_range >= BACK_IN_WINDOWS * self.window:  # it ran in range: the process moved, not the site
                dh.excursion = True
                self.stats.incr("range_excursions")
                self.rl.log(logging.WARNING, "range_excursion", "device %s: %s after running in range: a process "
                            "excursion, still scored (its process alert names the channels); no out_of_range "
                            "sensor alerts %s", device, what, until)
                reason = EXCURSION
            else:
                dh.ood = True
                self.stats.incr("out_of_distribution")
                self._operating(device, OOD, float(ts[i]), f"{what}: an operating point far from training, not "
                                f"failing sensors; not scored and no out_of_range sensor alerts {until}")
                reason = OOD
            self._out_alerts(self.alerts.clear_kind(device, "out_of_range", float(ts[i]), reason, self.model_id))
            far[:i] = True  # the run back in range counts from the entry on
        if far.any():
            last = int(len(far) - 1 - np.argmax(far[::-1]))
            dh.back = len(far) - 1 - last
            if dh.back:
                dh.back_since = float(ts[last + 1])
        else:
            if not dh.back:
                dh.back_since = float(ts[0])
            dh.back += len(far)
        back_at = len(far)  # the row from which the device is back in range (its codes from there on alerted on)
        if dh.back >= BACK_IN_WINDOWS * self.window:
            back_at = len(far) - 1 - (dh.back - BACK_IN_WINDOWS * self.window)
            if dh.ood:
                self._operating(device, RUNNING, dh.back_since, f"back within the range seen in training for "
                                f"{dh.back} samples: scored again")
            else:
                self.rl.log(logging.INFO, "range_excursion_end", "device %s: back within the range seen in "
                            "training for %d samples (the process excursion is over)", device, dh.back)
            dh.ood = dh.excursion = False
            dh.in_range = BACK_IN_WINDOWS * self.window
        masked: np.ndarray = codes.copy()
        head = masked[:back_at]
        head[head == OUT_OF_RANGE] = OK
        resume = back_at if back_at < len(far) and (codes[back_at] == OUT_OF_RANGE).any() else None
        return masked, resume

    def _alert_resumed(self, device: str, dh: DeviceHealth, ts: np.ndarray, codes: np.ndarray, values: np.ndarray,
                       period: float | None, at: int) -> None:
        """The sensor alerts of a block in which the device came back in range at row ``at``, some channel still
        out of range there (``codes`` (n, C) to alert on, masked before ``at``). That channel's run was hidden
        while the device was out of distribution (or in an excursion): counted again from nought it would leave
        the device ``ok`` (its health document says so) until it raised, an ``ok`` between two faulty states. Its
        samples out of range before ``at`` count towards ``health.sensor_raise_after`` instead, so it raises at
        once. The rows before ``at`` and from ``at`` on are fed apart (the run is primed between them)."""
        checks, n = dh.checks, len(ts)
        flat, miss, out = checks.flat_runs, checks.miss_runs, checks.out_runs  # (n, C) each (miss: None or (n, C))
        inside = checks.inside_before
        if at:
            self._out_alerts(self.alerts.update(device, ts[:at], codes[:at], values[:at], self.model_id, flat[:at],
                                                None if miss is None else miss[:at], period, out[:at], inside))
            within = out[:at] == 0  # (at, C) rows inside the range: the last one before ``at`` is its last good value
            last = at - 1 - np.argmax(within[::-1], axis=0)
            inside = np.where(within.any(axis=0), values[last, np.arange(values.shape[1])], inside)
        held = np.maximum(out[at] - checks.limits.range_hold, 0)  # (C,) its rows coded out_of_range before ``at``
        self.alerts.count_towards_raise(device, np.where(codes[at] == OUT_OF_RANGE, held, 0))
        self._out_alerts(self.alerts.update(device, ts[at:n], codes[at:], values[at:], self.model_id, flat[at:],
                                            None if miss is None else miss[at:], period, out[at:], inside))

    def _operating(self, device: str, state: str, since: float, reason: str) -> None:
        self.stats.incr("state_changes")
        self.rl.log(logging.WARNING if state == OOD else logging.INFO, f"operating_{state}", "device %s: %s (%s)",
                    device, state, reason)
        doc = operating_doc(device, state, since, reason, self.instance, self.model_id, time.time())
        self.outbox.append(Outbound(format_topic(self.cfg.operating_topic, device=device), to_json(doc), qos=1,
                                    retain=True))

    def state_changed(self, device: str, state: str, since: float, reason: str, ring: RingWindow | None) -> bool:
        """The operating-state gate reported ``state`` for ``device`` from ``since`` (True: not to be published by
        the caller). A device that runs again while still out of distribution is reported so again, in place of
        the gate's ``running``. A device that starts (or runs again after a stop) has its ``running`` held until its
        samples so far are past the range hold (:meth:`_pay_running`), so that a device far out from its start
        says ``out_of_distribution`` first, not ``running``. One that stopped must run in range again before leaving
        the range is a process excursion."""
        if state != RUNNING:  # stopped or settling: when it runs again it may run at another operating point
            self.running_owed.pop(device, None)
            if ring is not None:
                self._device(ring).in_range = 0
            return False
        dh = None if ring is None else self._device(ring)
        if dh is not None and dh.ood:
            self._operating(device, OOD, since, "runs again, still out of distribution (its channels were "
                            "out of range when it stopped)")
            return True
        if dh is None or dh.in_range < BACK_IN_WINDOWS * self.window:  # not yet seen in range since it started
            self.running_owed[device] = (since, reason)
            return True
        return False

    def _pay_running(self, device: str, dh: DeviceHealth) -> None:
        """Publish the held ``running`` of ``device`` (:meth:`state_changed`) unless more than ``degraded_share`` of
        its channels are out of range, some of them still within the range hold (it may be out of distribution:
        the hold decides); dropped if it is out of distribution (said instead). A process excursion is scored:
        running."""
        owed = self.running_owed.get(device)
        if owed is None:
            return
        if not dh.ood:
            out_run, hold = dh.checks.out_run, dh.checks.limits.range_hold
            if not (dh.learning or dh.excursion) and (out_run > 0).sum() > self.cfg.degraded_share * len(out_run) \
                    and ((out_run > 0) & (out_run < hold)).any():
                return
            self._operating(device, RUNNING, *owed)
        del self.running_owed[device]

    @staticmethod
    def _spacing(dh: DeviceHealth, ts: np.ndarray) -> float | None:
        """The device's sample spacing (a model without a sample period): over this block and the one before."""
        if dh.last_t == dh.last_t and ts[-1] > dh.last_t:
            return float(ts[-1] - dh.last_t) / len(ts)
        return float(ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else None

    def window_mask(self, device: str, ring: RingWindow) -> tuple[np.ndarray | None, str | None]:
        """For windows just cut from ``ring``: (the channels to exclude (C,) bool or None, why they are not
        scored at all: :data:`DEGRADED`, :data:`OOD` or None)."""
        self.flush(device, ring)
        dh = self._device(ring)
        if dh.calm:  # checked up to the newest row: nothing excluded, not degraded nor out of distribution
            return None, None
        if dh.ood:
            return None, OOD
        excluded = dh.clean < self.window
        # a channel outside its range for fewer than range_hold samples so far is left out of this window too
        # (not counted as a fault): a run that goes on becomes out_of_range, and one that ends soon was a process
        # spike, still inside the next windows' span
        # (health.range_excludes) no range check while the range is learnt
        pending = (dh.checks.out_run > 0) & (not dh.learning) & self.cfg.range_excludes
        if not np.count_nonzero(excluded):  # not .any(): microseconds on a (C,) array
            if self._degraded(device):
                self._set_degraded(device, dh, False)
            return (pending, None) if np.count_nonzero(pending) else (None, None)
        share = float((excluded & self.kept).sum()) / max(int(self.kept.sum()), 1)
        degraded = share > self.cfg.degraded_share
        if degraded != self._degraded(device):
            self._set_degraded(device, dh, degraded)
        return excluded | pending, DEGRADED if degraded else None

    def _degraded(self, device: str) -> bool:
        st = self.alerts.devices.get(device)
        return st is not None and st.degraded

    def _set_degraded(self, device: str, dh: DeviceHealth, degraded: bool) -> None:
        self.alerts._state(device).degraded = degraded
        dh.calm = False
        if degraded:
            self.rl.log(logging.WARNING, "degraded", "device %s: more than %g of its channels faulty: not scored "
                        "until enough are healthy again", device, self.cfg.degraded_share)
        self._out_health(device, dh)

    def check_stale(self, now: float, store: WindowStore) -> list[str]:
        """Devices that sent nothing for the stale limit (``now``: monotonic, as the rings' ``last_seen``); those
        found stale now."""
        limit = self.limits.stale_after_s
        found: list[str] = []
        for device, ring in store.devices.items():
            if now - ring.last_seen > limit:
                st = self.alerts.devices.get(device)
                if st is None or not st.stale:
                    last = float(ring.last_ts) if np.isfinite(ring.last_ts) else float("nan")
                    if device in self.running_owed:  # the rows waiting for their check may tell
                        self.flush(device, ring)
                    owed = self.running_owed.pop(device, None)
                    if owed is not None:  # quiet before the range hold could tell: the gate's word stands
                        self._operating(device, RUNNING, *owed)
                    self._out_alerts(self.alerts.set_stale(device, True, last, self.model_id))
                    dh = self._device(ring)
                    dh.calm = False
                    self._out_health(device, dh)
                    found.append(device)
        return found

    def range_of(self, ring: RingWindow) -> HealthLimits | None:
        """The limits a device's values are checked against (the model's under the config's overrides, widened by a
        range learnt over its warm-up); None while that range is still being learnt (no range checked yet)."""
        dh = ring.health
        if not isinstance(dh, DeviceHealth) or dh.base is not self.limits:
            return self.limits
        return None if dh.learning else dh.checks.limits

    def out_of_distribution(self, store: WindowStore) -> set[str]:
        """The devices out of distribution by their ranges now (a gauge; the caller need not hold the lock)."""
        return {d for d, ring in list(store.devices.items())
                if isinstance(ring.health, DeviceHealth) and ring.health.ood}

    def forget(self, device: str, reason: str) -> list[Outbound]:
        """A device left: its raised sensor alerts cleared with ``reason``."""
        self.rejects.pop(device, None)
        self.rejected_raised.discard(device)
        self.running_owed.pop(device, None)
        self._out_alerts(self.alerts.forget(device, reason, self.model_id))
        out, self.outbox = self.outbox, []
        return out

    def take(self) -> list[Outbound]:
        """The messages collected since the last call."""
        out, self.outbox = self.outbox, []
        return out

    # -- output ------------------------------------------------------------------------------------------
    def _out_alerts(self, docs: Sequence[dict[str, Any]]) -> None:
        for a in docs:
            raised = a["state"] == RAISED
            self.stats.incr("sensor_alerts_raised" if raised else "sensor_alerts_cleared")
            if raised:
                self.stats.count_in(self.stats.sensor_faults, {a["kind"]: 1})
            log.info("sensor alert %s device=%s channel=%s kind=%s since=%s last_good=%s", a["state"], a["device"],
                     a["channel"], a["kind"], a["since"], a["last_good_value"])
            self.outbox.append(Outbound(format_topic(self.cfg.sensor_topic, device=a["device"]), to_json(a), qos=1))

    def _out_health(self, device: str, dh: DeviceHealth) -> None:
        """The device's retained health document, when it changed. A new device's first one waits while it has sent
        fewer samples than the range hold and a channel is out of range (until the next check): what the hold
        decides, ``out_of_distribution`` or a fault, is its first word, not an ``ok`` read as "all good". Nothing
        waits once the device is stale, rejected, degraded or out of distribution."""
        checks, st = dh.checks, self.alerts.devices[device]
        if (not st.published and dh.checked <= checks.limits.longest_hold and not checks.codes.any()
                and not (st.stale or st.degraded or dh.ood or device in self.rejected_raised)
                and ((checks.out_run > 0) & (checks.out_run < checks.limits.range_hold)).any()):
            return
        excluded = [c for c, e in zip(self.channels, dh.clean < self.window, strict=True) if e]
        doc = self.alerts.health_if_changed(device, excluded, self._degraded(device), self.model_id, dh.ood)
        if doc is not None:
            # bulk (paced, never dropped, in order): a burst of new devices' first documents must not take the
            # place of alerts in the outgoing queue; the sensor alerts themselves are critical
            self.outbox.append(Outbound(format_topic(self.cfg.health_topic, device=device), to_json(doc), qos=1,
                                        retain=True, bulk=True))
