// edgewatch dashboard: one EventSource, a small state, tables re-rendered from it. No dependencies.
"use strict";

const S = { devices: new Map(), gateways: new Map(), open: [], log: [], broker: null, offset: 0,
  historyS: 300, skipped: 0, scoresSeen: 0, lastEvent: 0, serverUp: false };
const LOG_KEEP = 500;
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v;  // CSSOM: allowed by the page's CSP, a style attribute is not
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}
const svgEl = (tag, attrs) => {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};
const now = () => Date.now() / 1000 + S.offset;  // the server's clock
const num = (v) => (typeof v === "number" ? (Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.01) ? v.toExponential(2) : v.toPrecision(3)) : "-");
function utc(t, withDate) {
  if (typeof t !== "number") return "-";
  const s = new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
  return withDate ? s : s.slice(11);
}
function age(t) {
  if (typeof t !== "number") return "never";
  const a = Math.max(0, now() - t);
  return a < 60 ? `${a.toFixed(0)} s ago` : a < 3600 ? `${(a / 60).toFixed(0)} min ago` : `${(a / 3600).toFixed(1)} h ago`;
}
function shareBar(share) {
  share = typeof share === "number" ? share : 0;
  return el("span", {}, el("span", { class: "bar", style: `width:${Math.round(share * 40)}px` }), `${(share * 100).toFixed(0)}%`);
}
function tops(list) {
  if (!Array.isArray(list) || !list.length) return "-";
  const span = el("span");
  for (const t of list) {
    if (!t || typeof t !== "object") continue;
    const share = typeof t.share === "number" ? t.share : 0;
    span.append(el("span", { class: "bar", style: `width:${Math.round(share * 40)}px` }),
      `${t.name} ${(share * 100).toFixed(0)}%  `);
  }
  return span;
}
const badge = (text, cls) => el("span", { class: `badge ${cls || text}`, text });
// sensor health: "ok", or the raised faults (else the channels not ok) with their kind; "-" without a document
function healthCell(h) {
  if (!h) return el("span", { class: "muted", text: "-" });
  const bad = h.faults.length ? h.faults.map((f) => `${f.channel ?? "device"} ${f.kind}`)
    : h.channels.filter((c) => c.state !== "ok").map((c) => `${c.name} ${c.state}`);
  return el("span", {}, badge(h.state), bad.length ? ` ${bad.join(", ")}` : null);
}
const devLink = (name) => el("a", { href: `#/device/${encodeURIComponent(name)}`, text: name });

// ---- state updates ----
function apply(d) {
  if (d.full) { S.devices.clear(); S.gateways.clear(); S.log = []; S.open = []; }
  S.offset = d.now - Date.now() / 1000;
  S.historyS = d.history_s; S.skipped = d.skipped; S.scoresSeen = d.scores_seen; S.lastEvent = d.now;
  for (const dev of d.devices) {
    const old = S.devices.get(dev.name);
    const pts = old ? old.points : [];
    for (const p of dev.points) {
      const last = pts[pts.length - 1];
      if (last && p[0] === last[0]) pts[pts.length - 1] = p; else if (!last || p[0] > last[0]) pts.push(p);
    }
    const cut = (dev.last_window_end || 0) - S.historyS;
    while (pts.length && pts[0][0] < cut) pts.shift();
    S.devices.set(dev.name, { ...dev, points: pts });
  }
  for (const g of d.gateways) S.gateways.set(g.instance, g);
  if (d.open_alerts) S.open = d.open_alerts;
  if (d.log.length) S.log = S.log.concat(d.log).slice(-LOG_KEEP);
  if (d.broker) S.broker = d.broker;
  render();
}

// ---- drawing ----
function sparkline(dev, w, h, axes) {
  const pts = dev.points, thr = dev.threshold;
  const svg = svgEl("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  if (!pts.length) { svg.append(Object.assign(svgEl("text", { x: 4, y: h / 2 + 4, class: "axis" }), { textContent: "no scores" })); return svg; }
  const t1 = pts[pts.length - 1][0], t0 = Math.min(pts[0][0], t1 - 1);
  const ymax = Math.max(thr || 0, ...pts.map((p) => p[1])) * 1.1 || 1;
  const pad = axes ? 30 : 1;
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (w - pad - 2), y = (v) => h - (axes ? 14 : 1) - (v / ymax) * (h - (axes ? 20 : 3));
  svg.append(svgEl("polyline", { class: "score", points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") }));
  if (typeof thr === "number") svg.append(svgEl("line", { class: "thr", x1: pad, x2: w, y1: y(thr), y2: y(thr) }));
  for (const p of pts) if (typeof thr === "number" && p[1] > thr) svg.append(svgEl("circle", { class: "above", cx: x(p[0]), cy: y(p[1]), r: axes ? 3 : 2 }));
  if (axes) {
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      svg.append(Object.assign(svgEl("text", { x: Math.min(x(t) - 20, w - 48), y: h - 2, class: "axis" }), { textContent: utc(t) }));
    }
    for (const v of [0, ymax / 1.1]) svg.append(Object.assign(svgEl("text", { x: 0, y: y(v) + 3, class: "axis" }), { textContent: num(v) }));
    if (typeof thr === "number") svg.append(Object.assign(svgEl("text", { x: pad + 2, y: y(thr) - 3, class: "axis" }), { textContent: `threshold ${num(thr)}` }));
  }
  return svg;
}

function fill(tbody, rows) { tbody.replaceChildren(...rows); }

function renderFleet() {
  fill($("#open-alerts tbody"), S.open.map((a) => el("tr", { class: "raised", "data-device": a.device },
    el("td", {}, devLink(a.device)),
    el("td", { text: a.from_state ? `before start (state since ${utc(a.time, true)})` : utc(a.window_end, true) }),
    el("td", { class: "num", text: a.from_state ? "-" : `${num(a.score)} / ${num(a.threshold)}` }),
    el("td", {}, a.from_state ? "alert payload not seen (raised before this page's server started)"
      : el("span", {}, a.summary ? el("div", { class: "summary", text: a.summary }) : null, tops(a.top_channels))),
    el("td", { text: a.instance || "-" }))));
  $("#open-empty").hidden = S.open.length > 0;
  const devs = [...S.devices.values()].sort((a, b) => (b.state === "raised") - (a.state === "raised") || a.name.localeCompare(b.name));
  fill($("#devices tbody"), devs.map((d) => el("tr", { class: d.state === "raised" ? "raised" : "", "data-device": d.name },
    el("td", {}, devLink(d.name)), el("td", {}, badge(d.state)), el("td", { class: "health" }, healthCell(d.health)),
    el("td", { class: "num", text: num(d.score) }),
    el("td", { class: "num", text: num(d.threshold) }), el("td", {}, sparkline(d, 240, 30, false)),
    el("td", { text: age(d.last_seen) }))));
  $("#scores-note").textContent = S.scoresSeen ? "" :
    "No score documents seen: the daemon publishes them with alerts.publish_scores = true (EDGEWATCH_ALERTS_PUBLISH_SCORES=true); until then devices are known from their alerts and states only.";
  fill($("#gateways tbody"), [...S.gateways.values()].map((g) => {
    const st = g.status || {}, sx = g.stats || {};
    const byReason = (o) => o && Object.entries(o).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ");
    const drops = byReason(sx.drops), lost = byReason(sx.publish_lost);
    const stale = sx.received && now() - sx.received > 60;
    return el("tr", { "data-instance": g.instance }, el("td", { text: g.instance }),
      el("td", {}, badge(st.state || "unknown"), st.reason ? ` ${st.reason}` : null),
      el("td", { text: st.model_id || sx.model_id || "-" }), el("td", { text: st.provider || sx.provider || "-" }),
      el("td", { class: "num", text: sx.devices_active ?? "-" }), el("td", { class: "num", text: sx.windows_scored ?? "-" }),
      el("td", { class: "num", text: sx.dropped_total ?? "-", title: drops || "none" }),
      el("td", { class: "num", text: sx.publish_lost_total ?? "-", title: lost || "none" }),
      el("td", {}, stale ? badge(age(sx.received), "stale") : age(sx.received)));
  }));
  fill($("#log tbody"), S.log.slice(-100).reverse().map(logRow(true)));
}

const logRow = (withDevice) => (a) => el("tr", { class: a.state, "data-device": a.device },
  el("td", { text: utc(a.received, true) }), el("td", { text: utc(a.window_end, true) }),
  withDevice ? el("td", {}, devLink(a.device)) : null, el("td", {}, badge(a.state)),
  el("td", { class: "num", text: num(a.score) }), el("td", { class: "num", text: num(a.threshold) }),
  el("td", {}, tops(a.top_channels)));

function renderDevice(name) {
  const d = S.devices.get(name) || { name, points: [], state: "unknown" };
  $("#dev-name").textContent = name;
  const b = $("#dev-state"); b.textContent = d.state; b.className = `badge ${d.state}`;
  $("#dev-facts").textContent = `gateway ${d.instance || "-"}, model ${d.model_id || "-"}, last window ends ${utc(d.last_window_end, true)} (stream time), last seen ${age(d.last_seen)}`;
  $("#dev-chart").replaceChildren(d.points.length ? sparkline(d, Math.max(300, $("#dev-chart").clientWidth - 12), 220, true)
    : el("p", { class: "muted", text: "No score documents for this device (the daemon publishes them with alerts.publish_scores = true)." }));
  const mine = S.log.filter((a) => a.device === name);
  // the current alert's channels (its latest raise or update), else the last alert's
  const open = S.open.find((a) => a.device === name && Array.isArray(a.top_channels));
  const last = open || [...mine].reverse().find((a) => Array.isArray(a.top_channels));
  const chans = last ? last.top_channels : [];
  const carried = chans.some((c) => c && ("measured" in c || "value" in c || "expected" in c));
  const which = open ? "current alert" : "last alert";
  $("#dev-channels-note").textContent = !last
    ? "No alert from this device seen yet, so no channel breakdown: score documents carry one score per window, no channels."
    : carried ? `Top channels of the ${which} (window ending ${utc(last.window_end, true)}${last.severity ? `, ${last.severity}` : ""}): measured against the value the model expected, window means in raw units.${last.summary ? ` ${last.summary}` : ""}`
      : `The daemon's payloads carry no channel values or expected values: shown are the top channels of the ${which} (window ending ${utc(last.window_end, true)}, ${last.state}) with their share of the reconstruction error.`;
  const withUnit = (v, c) => (typeof v === "number" ? `${num(v)}${c.unit ? ` ${c.unit}` : ""}` : "-");
  fill($("#dev-channels tbody"), chans.filter((c) => c && typeof c === "object").map((c) => el("tr", { "data-channel": c.name },
    el("td", { text: c.name }), el("td", {}, shareBar(typeof c.excess_share === "number" ? c.excess_share : c.share)),
    el("td", { class: "num measured", text: withUnit(c.measured ?? c.value, c) }),
    el("td", { class: "num expected", text: withUnit(c.expected, c) }),
    el("td", { class: "direction", text: c.direction || "-" }))));
  fill($("#dev-log tbody"), mine.slice(-50).reverse().map(logRow(false)));
  renderHealth(d);
}

function renderHealth(d) {
  const h = d.health;
  $("#dev-health-note").textContent = !h ? "No health document from this device (the daemon publishes one, retained, with health.sensor_checks on)."
    : `Sensor health ${h.state}${h.degraded ? " (degraded: not scored)" : ""}${h.stale ? " (stale: sends nothing)" : ""}, as of ${utc(h.time, true)}.`;
  const faults = new Map((h ? h.faults : []).map((f) => [f.channel, f]));
  const excluded = new Set(h ? h.excluded : []);
  fill($("#dev-health tbody"), (h ? h.channels : []).map((c) => {
    const f = faults.get(c.name);
    return el("tr", { "data-channel": c.name, class: c.state === "ok" ? "" : "raised" }, el("td", { text: c.name }),
      el("td", {}, badge(c.state, c.state === "ok" ? "ok" : "fault")),
      el("td", { text: f ? `${f.kind} since ${utc(f.since, true)}` : "-" }),
      el("td", { class: "num", text: f ? num(f.last_good_value) : "-" }), el("td", { text: excluded.has(c.name) ? "yes" : "-" }));
  }));
  fill($("#dev-sensor-log tbody"), (d.sensor_alerts || []).slice().reverse().map((a) => el("tr", { class: a.state },
    el("td", { text: utc(a.received, true) }), el("td", { text: utc(a.at, true) }), el("td", { text: a.channel ?? "device" }),
    el("td", { text: a.kind }), el("td", {}, badge(a.state)), el("td", { class: "num", text: num(a.value) }),
    el("td", { class: "num", text: num(a.last_good_value) }))));
}

function renderHeader() {
  const c = $("#conn");
  if (!S.serverUp) { c.dataset.state = "server-lost"; c.textContent = "dashboard server unreachable: retrying"; c.className = "badge offline"; }
  else if (S.broker && S.broker.connected) { c.dataset.state = "up"; c.textContent = `broker ${S.broker.where} connected`; c.className = "badge"; }
  else if (S.broker) { c.dataset.state = "down"; c.textContent = `broker ${S.broker.where} lost since ${utc(S.broker.since)}: reconnecting`; c.className = "badge"; }
  $("#updated").textContent = S.lastEvent ? `updated ${utc(S.lastEvent)} UTC` : "";
  $("#skipped").textContent = S.skipped ? `${S.skipped} malformed message(s) skipped.` : "";
}

function route() { const m = location.hash.match(/^#\/device\/(.+)$/); return m ? decodeURIComponent(m[1]) : null; }
function render() {
  renderHeader();
  const dev = route();
  $("#fleet").hidden = dev !== null; $("#device").hidden = dev === null;
  if (dev === null) renderFleet(); else renderDevice(dev);
}

// ---- wiring ----
const es = new EventSource("/events");
es.addEventListener("snapshot", (e) => { S.serverUp = true; apply(JSON.parse(e.data)); });
es.addEventListener("delta", (e) => { S.serverUp = true; apply(JSON.parse(e.data)); });
es.onerror = () => { S.serverUp = false; renderHeader(); };  // EventSource retries on its own
addEventListener("hashchange", render);
setInterval(render, 2000);  // ages move even when nothing is published
