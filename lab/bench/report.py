"""Benchmark results -> Markdown (the sections of BENCHMARKS.md and the CLI's human output). Pure."""

from __future__ import annotations

from typing import Any

from lab.bench.common import fmt


def _goal(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def inference_md(r: dict[str, Any]) -> str:
    engines = [e for e in r["engines"] if any(e in row for row in r["batches"].values())]
    lines = [f"Model `{r['model']}` (W={r['window']}, C={r['channels']}, {r['flops_per_window'] or 0:,.0f} FLOP/window), "
             f"{r['threads']} thread(s), windows/s, median of {r['repeats']} x {r['seconds_per_repeat']} s (± half the range).", "",
             "| batch | " + " | ".join(engines) + " | ORT fp32 / eager |", "|---:|" + "---:|" * (len(engines) + 1)]
    for b, row in r["batches"].items():
        ratio = row.get("ratio_ort_fp32_vs_torch")
        lines.append(f"| {b} | " + " | ".join(fmt(row.get(e)) for e in engines)
                     + f" | {fmt(ratio, 'x', digits=2) if ratio else 'n/a'} |")
    lines += ["", "Engines: " + "; ".join(f"`{k}`: {v}" for k, v in r["engines"].items()) + "."]
    if "achieved_gflops" in r:
        peak = r.get("cpu_peak_gflops", {})
        lines.append(f"\nBest batch {r['best_batch']}: {r['achieved_gflops']} GFLOP/s achieved (ORT fp32) against a measured "
                     f"float32 matmul peak of {fmt(peak, ' GFLOP/s', digits=1)} on {peak.get('threads', '?')} thread(s) "
                     f"(numpy BLAS {peak.get('matrix', '?')}^3): {r.get('fraction_of_peak', 0) * 100:.0f} % of peak.")
    g = goals_inference(r)
    lines.append(f"\nGoals: ORT >= 3x eager at batch 1: {_goal(g['3x_at_batch_1'])}; ORT faster than eager at every batch: "
                 f"{_goal(g['faster_every_batch'])}.")
    return "\n".join(lines)


def goals_inference(r: dict[str, Any]) -> dict[str, bool | None]:
    ratios = {b: row.get("ratio_ort_fp32_vs_torch") for b, row in r["batches"].items()}
    if not all(ratios.values()):
        return {"3x_at_batch_1": None, "faster_every_batch": None}
    return {"3x_at_batch_1": ratios["1"]["median"] >= 3.0 if "1" in ratios else None,
            "faster_every_batch": all(v["median"] > 1.0 for v in ratios.values())}


def ingest_md(r: dict[str, Any]) -> str:
    lines = [f"{r['devices']} devices, model W={r['window']} hop={r['hop']} C={r['channels']}; drain of a broker-queued "
             f"QoS 1 backlog, median of {r['repeats']} runs per consumer, taking turns. Baselines: a bare subscriber "
             "that only counts and `json.loads` each message, on paho-mqtt's stock client (the goal's baseline) and on "
             "edgewatch's client (`edge_runtime/service/paho_buffered.py`: read-buffered socket, no self-wake-ups; the same "
             "client the daemon uses, so the last ratio is edgewatch's own cost).", "",
             "| payload | messages | bare, stock paho, msg/s | bare, edgewatch's client, msg/s | daemon, msg/s | "
             "daemon, samples/s | daemon / bare stock | daemon / bare same client | windows lost | broker dropped |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in ("single", "batch"):
        x = r.get(f)
        if not x:
            continue
        label = "single-sample JSON" if f == "single" else f"batched JSON ({x['samples_per_message']} samples)"
        lines.append(f"| {label} | {x['messages']:,} | {fmt(x['bare_msg_rate'])} | {fmt(x.get('bare_tuned_msg_rate'))} | "
                     f"{fmt(x['daemon_msg_rate'])} | {fmt(x['daemon_sample_rate'])} | "
                     f"{fmt(x['ratio_daemon_vs_bare'], 'x', digits=2)} | "
                     f"{fmt(x.get('ratio_daemon_vs_bare_tuned'), 'x', digits=2)} | {x['windows_lost']} | {x['broker_dropped']} |")
    s, b = r.get("single"), r.get("batch")
    ok1 = s and s["ratio_daemon_vs_bare"]["median"] >= 0.9 and s["windows_lost"] == 0 and s["broker_dropped"] == 0
    ok2 = b and b["daemon_sample_rate"]["median"] >= 100_000 and b["windows_lost"] == 0
    lines.append(f"\nGoals: daemon >= 0.9x bare (stock paho) on single-sample payloads with zero windows lost: "
                 f"{_goal(bool(ok1))}; batched >= 100,000 samples/s: {_goal(bool(ok2))}.")
    if s and s.get("ratio_daemon_vs_bare_tuned"):
        lines.append(f"Like for like (the bare subscriber on edgewatch's client): daemon / bare "
                     f"{fmt(s['ratio_daemon_vs_bare_tuned'], 'x', digits=2)} on single-sample payloads; edgewatch's "
                     f"client alone is {fmt(s['ratio_bare_tuned_vs_bare'], 'x', digits=2)} paho's stock client.")
    for f in ("single", "batch"):
        x = r.get(f)
        if x and x.get("ratio_checks_on_vs_off"):
            lines.append(f"Sensor-health checks ({f}): daemon with checks / without "
                         f"{fmt(x['ratio_checks_on_vs_off'], 'x', digits=3)}; daemon / bare stock paho "
                         f"{fmt(x['ratio_daemon_vs_bare'], 'x', digits=3)} with, "
                         f"{fmt(x['ratio_daemon_no_checks_vs_bare'], 'x', digits=3)} without (goal: the checks drop "
                         f"the ratio by at most 5 %; health limits {r.get('health_limits', 'the model' + chr(39) + 's')})"
                         + (f"; CPU per message {fmt(x['cpu_us_per_message'], ' us', digits=1)} with, "
                            f"{fmt(x['cpu_us_per_message_no_checks'], ' us', digits=1)} without"
                            if x.get("cpu_us_per_message") else "") + ".")
    return "\n".join(lines)


def latency_md(r: dict[str, Any]) -> str:
    lines = [f"Publish of the sample that completes a window -> receipt of its result by a subscriber; {r['devices']} devices "
             f"(every tenth with injected anomalies), {r['seconds']} s per run, median of {r['repeats']} runs (± half the range). "
             f"Sustainable rate {r['sustainable_rate']:,.0f} msg/s ({r['sustainable_rate_source']}"
             + (f"; for comparison the ingest benchmark's backlog drain rate, with no publisher running, was "
                f"{r['drain_rate']:,.0f} msg/s" if r.get("drain_rate") else "") + "); "
             f"default batching ({r.get('batching', 'fill')}; max_wait_ms {r['max_wait_ms']} applies to batching = fill).",
             ""]
    if r.get("search"):
        lines.append("Search runs: " + "; ".join(
            f"{t['target_rate']:,.0f} msg/s -> {'keeps up' if t['keeps_up'] else 'does not keep up'} (published "
            f"{t['achieved_publish_rate']:,.0f}, p99 {t['score_p99_ms'] if t['score_p99_ms'] is not None else '-'} ms, "
            f"lost {t['windows_lost']}, broker dropped {t['broker_dropped']})" for t in r["search"]) + ".")
        if not any(t["keeps_up"] for t in r["search"]):
            lines.append("No searched rate kept up: the lowest bound is used, and the loads below are not at a verified rate.")
        lines.append("")
    lines += ["| load | published msg/s | per-window score p50 ms | p99 ms | p99.9 ms | alert p50 ms | alert p99 ms | "
              "relay baseline p50 ms | relay p99 ms | daemon's added p99 ms | mean batch | windows lost | broker dropped |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k, v in r.items():
        if not k.startswith("load_"):
            continue
        lines.append(f"| {k[5:]} % | {fmt(v['achieved_publish_rate'])} | {fmt(v['score_ms_p50'], digits=1)} | "
                     f"{fmt(v['score_ms_p99'], digits=1)} | {fmt(v['score_ms_p99.9'], digits=1)} | "
                     f"{fmt(v['alert_ms_p50'], digits=1)} | {fmt(v['alert_ms_p99'], digits=1)} | "
                     f"{fmt(v.get('relay_ms_p50'), digits=1)} | {fmt(v.get('relay_ms_p99'), digits=1)} | "
                     f"{fmt(v.get('added_ms_p99'), digits=1)} | "
                     f"{fmt(v['batch_size_mean'], digits=1) if v.get('batch_size_mean') else '-'} | {v['windows_lost']} | "
                     f"{v['broker_dropped']} |")
    half = r.get("load_50")
    ok = half and half["score_ms_p99"]["median"] is not None and half["score_ms_p99"]["median"] <= 20.0
    lines.append(f"\nGoal: p99 <= 20 ms at 50 % load: {_goal(bool(ok))} (per-window results on `scores/{{device}}`; "
                 "alerts follow the same path but are rarer). The relay baseline, run in turns with the daemon at the "
                 "same rate, is a subscriber on the same MQTT client that forwards each window's last sample to "
                 "`scores/{device}` at once, with no windowing and no model: the latency of the MQTT path and of this "
                 "machine's scheduling, which the daemon cannot go below; the added p99 is the daemon's p99 minus the "
                 "relay's, run by run.")
    return "\n".join(lines)


def footprint_md(r: dict[str, Any]) -> str:
    lines = [f"- start-up to subscribed/online: {fmt(r['startup_to_online_s'], ' s', digits=2)} ({r['startup_note']})",
             f"- RSS after start: {fmt(r['rss_after_start_mb'], ' MB', digits=1)}",
             f"- idle CPU: {fmt(r['idle_cpu_pct_of_core'], ' % of one core', digits=2)} over {r['idle_s']} s (first run; "
             "later runs 3 s)"]
    ld = r.get("load")
    if ld:
        lines.append(f"- {r['devices']:,} devices at 90 % load ({ld['target_rate']:,.0f} msg/s targeted, "
                     f"{ld['achieved_publish_rate']:,.0f} published) for {r['minutes']} min: RSS {ld['rss_start_mb']:.1f} MB "
                     f"at start, {ld['rss_after_10s_mb']:.1f} MB after 10 s, {ld['rss_end_mb']:.1f} MB at the end "
                     f"(max {ld['rss_max_mb']:.1f}); growth after the first 10 s {ld['growth_pct_after_10s']} %; "
                     f"broker dropped {ld['broker_dropped']}.")
        ok_rss = ld["rss_max_mb"] <= 120 and ld["growth_pct_after_10s"] < 5
    else:
        ok_rss = None
    ok_start = r["startup_to_online_s"]["median"] <= 1.0
    ok_idle = r["idle_cpu_pct_of_core"]["median"] < 2.0
    lines.append(f"\nGoals: RSS <= 120 MB with growth < 5 %: {_goal(ok_rss)} (over {r['minutes']} min, not 10, unless "
                 f"run with `--minutes 10`); start-up <= 1 s: {_goal(ok_start)}; idle CPU < 2 %: {_goal(ok_idle)}.")
    return "\n".join(lines)


def scaling_md(r: dict[str, Any], plot: str | None = None) -> str:
    lines = ["In-process pipeline (the daemon's Ingest on one thread, its inference worker on another, no MQTT), "
             f"median of {r['repeats']} runs.", "",
             "| axis | value | messages | samples/s | windows/s | us of edgewatch per message | windows lost |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for axis in ("devices", "window", "channels"):
        for p in r.get(axis, []):
            lines.append(f"| {axis} | {p[axis]:,} | {p['messages']:,} | {fmt(p['msg_rate'])} | {fmt(p['window_rate'])} | "
                         f"{fmt(p['us_per_msg'], digits=1)} | {p['windows_lost']} |")
    if r.get("note"):
        lines.append(f"\n{r['note']}")
    if plot:
        lines.append(f"\n![scaling]({plot})")
    return "\n".join(lines)


_CUDA_LABELS = {"cuda_run": "CUDA (session.run, the daemon's path)", "cuda_iobinding": "CUDA (I/O binding, host data each call)"}


def cuda_md(r: dict[str, Any]) -> str:
    engines = [e for e in r["engines"] if any(e in row for row in r["batches"].values())]
    n = r["cpu_threads"]
    ratios = [("ratio_cuda_run_vs_cpu_fp32_1t", "CUDA run / CPU 1 thread"),
              ("ratio_cuda_iobinding_vs_cpu_fp32_1t", "CUDA iobinding / CPU 1 thread"),
              ("ratio_cuda_run_vs_cpu_fp32_all", f"CUDA run / CPU {n} threads")]
    lines = [f"Model `{r['model']}` (W={r['window']}, C={r['channels']}), windows/s, median of {r['repeats']} x "
             f"{r['seconds_per_repeat']} s (± half the range), engines interleaved.", "",
             "| batch | " + " | ".join(engines) + " | " + " | ".join(t for _, t in ratios) + " |",
             "|---:|" + "---:|" * (len(engines) + len(ratios))]
    for b, row in r["batches"].items():
        lines.append(f"| {b} | " + " | ".join(fmt(row.get(e)) for e in engines) + " | "
                     + " | ".join(fmt(row.get(k), "x", digits=2) for k, _ in ratios) + " |")
    lines += ["", "Engines: " + "; ".join(f"`{k}`: {v}" for k, v in r["engines"].items()) + "."]
    top = max((int(b) for b in r["batches"]), default=0)
    said = []
    for key, b in r["crossover"].items():
        engine, base = key.split("_vs_")
        who = "the 1-thread CPU session" if base == "cpu_fp32_1t" else f"the {n}-thread CPU session"
        label = _CUDA_LABELS.get(engine, engine)
        said.append(f"{label} beats {who} from batch {b}." if b is not None
                    else f"{label} does not stay ahead of {who} from any measured batch (up to {top}).")
    lines.append("\nCrossover (median against median, and ahead at every larger measured batch too): " + " ".join(said))
    worst = max((d for row in r["max_score_diff"].values() for d in row.values()), default=0.0)
    lines.append(f"\nScores: every CUDA engine agrees with the 1-thread CPU session within 1e-3 + 1e-3 x |score| at "
                 f"every batch (largest |difference| {worst:.2g}).")
    dev = r.get("device") or {}
    lines.append(f"\nDevice: {dev.get('name') or 'GPU ?'}, driver {dev.get('driver') or '?'}; onnxruntime "
                 f"{r['onnxruntime']} ({r.get('provider', 'CUDAExecutionProvider')}).")
    return "\n".join(lines)


def cuda_report_md(r: dict[str, Any], section: str | None = None) -> str:
    """The standalone benchmarks/CUDA.md of ``bench cuda --out``: title, command, date, machine, then the section."""
    m = r["machine"]
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return "\n".join([
        "# edgewatch on CUDA", "",
        f"Generated by `{r['command']}` on {r['date']}. Do not edit by hand: rerun the command on a GPU machine.", "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['os']}); Python {m['python']}; {vers}.", "",
        "The daemon's model and the same random raw windows through onnxruntime's CPU session and its CUDA "
        "provider, three ways: `session.run` with numpy (what the daemon does with `provider = cuda`), I/O binding "
        "with the host data copied in and the outputs copied back each call, and the data left on the device "
        "(the kernels alone, an upper bound no daemon reaches).", "",
        section if section is not None else cuda_md(r), "",
    ])
