"""``edgewatch-lab bench``: reproducible benchmarks with their baselines measured in the same run.

``inference | cuda | ingest | latency | footprint | scaling | scale-out`` each print a Markdown section (and write
``--json OUT``); ``all`` runs them in order (``cuda`` only where a CUDA session can be had) and writes
BENCHMARKS.md with the machine, versions and date. Nothing here imports torch, onnx or the trainer at import time (the PyTorch baseline
and the scaling models import them lazily and are skipped with a note where absent).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from edge_runtime import clierror
from edge_runtime.clierror import InputPath

PROG = "edgewatch-lab bench"


def fail(message: str, code: int = clierror.EXIT_USAGE) -> Any:
    """One line ``edgewatch-lab bench: error: ...`` and exit ``code`` (edge_runtime/clierror.py)."""
    clierror.fail(message, code, prog=PROG)

DEFAULT_MODEL = "models/demo.onnx"
CUDA_REPORT = "benchmarks/CUDA.md"  # `bench cuda --out`, beside BENCHMARKS.md, as measured on a GPU machine
CUDA_JSON = "benchmarks/cuda.json"


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None
    if not vals or min(vals) < 1:
        raise click.BadParameter("values must be integers >= 1")
    return vals


def _check_model(model: str) -> None:
    if not Path(model).is_file():
        fail(f"model file {model} not found (train one: scripts/demo.sh, or pass --model PATH)",
             clierror.EXIT_NOINPUT)


def _emit(result: dict[str, Any], md: str, json_out: str | None) -> None:
    click.echo(md)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=1, default=str) + "\n")


def _guard(fn, *args: Any, **kw: Any) -> Any:
    """Run a benchmark; a missing broker (69) or an unusable model (65, 66) is one clear line."""
    from edge_runtime.service.model import ModelError
    from lab.bench.broker import BrokerError

    try:
        return fn(*args, **kw)
    except ModelError as exc:
        fail(str(exc), exc.exit_code)
    except BrokerError as exc:
        fail(str(exc), clierror.EXIT_UNAVAILABLE)


model_opt = click.option("--model", default=DEFAULT_MODEL, show_default=True, type=click.Path(dir_okay=False),
                         help="The edgewatch ONNX model to benchmark.")
json_opt = click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the results as JSON here.")
repeats_opt = click.option("--repeats", type=click.IntRange(1), default=3, show_default=True,
                           help="Repeats per number (the median and spread are reported).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Benchmarks: inference, cuda, ingest, latency, footprint, scaling, or all (writes BENCHMARKS.md); faults."""


@command.command("shadow")
@model_opt
@click.option("--devices", type=click.IntRange(1), default=50, show_default=True)
@click.option("--per-device", type=click.IntRange(1), default=400, show_default=True, help="Messages per device.")
@click.option("--bursts", default="1,256", show_default=True, help="Score after every N messages (comma-separated).")
@click.option("--hops", default="0,1", show_default=True,
              help="Scoring hops (input.hop; 0: the model's own, 1: a window per sample).")
@repeats_opt
@json_opt
def shadow(model: str, devices: int, per_device: int, bursts: str, hops: str, repeats: int,
           json_out: str | None) -> None:
    """The cost of a staged model shadowing the live one: ingest messages/s with and without, as a ratio."""
    from lab.bench.shadow import bench_shadow, markdown

    _check_model(model)
    hop_list = tuple(int(h) for h in hops.split(",") if h.strip())
    res = _guard(bench_shadow, model, devices, per_device, _ints(bursts), repeats, hop_list)
    _emit(res, markdown(res), json_out)


@command.command("evidence")
@model_opt
@click.option("--devices", type=click.IntRange(1), default=50, show_default=True)
@click.option("--per-device", type=click.IntRange(1), default=400, show_default=True, help="Messages per device.")
@click.option("--bursts", default="1,256", show_default=True, help="Score after every N messages (comma-separated).")
@repeats_opt
@json_opt
def evidence(model: str, devices: int, per_device: int, bursts: str, repeats: int, json_out: str | None) -> None:
    """The cost of keeping evidence around every alert: ingest messages/s with alerts.evidence_dir off and on."""
    from lab.bench.evidence import bench_evidence, markdown

    _check_model(model)
    res = _guard(bench_evidence, model, devices, per_device, _ints(bursts), repeats)
    _emit(res, markdown(res), json_out)


@command.command()
@model_opt
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Threads for ORT and PyTorch alike.")
@click.option("--batches", default="1,8,64,256", show_default=True, help="Batch sizes.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True)
@click.option("--seconds", type=click.FloatRange(0.01), default=0.4, show_default=True, help="Seconds per repeat and engine.")
@click.option("--torch/--no-torch", "use_torch", default=True, help="Measure the PyTorch eager baseline (needs torch).")
@click.option("--variants/--no-variants", default=True, help="Also int8 and fp16 variants.")
@json_opt
def inference(model: str, threads: int, batches: str, repeats: int, seconds: float, use_torch: bool, variants: bool,
              json_out: str | None) -> None:
    """Windows/s: onnxruntime CPU (fp32/int8/fp16) vs PyTorch eager, same model and threads."""
    from lab.bench.inference import bench_inference
    from lab.bench.report import inference_md

    _check_model(model)
    r = _guard(bench_inference, model, _ints(batches), threads, repeats, seconds, use_torch, variants)
    _emit(r, inference_md(r), json_out)


def _command_line() -> str:
    return "edgewatch-lab bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])


@command.command("cuda")
@model_opt
@click.option("--batches", default="1,8,64,256,1024,4096", show_default=True, help="Batch sizes.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True)
@click.option("--seconds", type=click.FloatRange(0.01), default=0.4, show_default=True, help="Seconds per repeat and engine.")
@click.option("--cpu-threads", type=click.IntRange(1), default=None,
              help="Threads of the all-core CPU baseline (default: every core).")
@json_opt
@click.option("--out", type=click.Path(dir_okay=False),
              help="Also write a standalone Markdown report here (e.g. benchmarks/CUDA.md).")
def cuda_(model: str, batches: str, repeats: int, seconds: float, cpu_threads: int | None, json_out: str | None,
          out: str | None) -> None:
    """Windows/s on onnxruntime CUDA (session.run, I/O binding, device-resident) vs the CPU session."""
    from lab.bench.common import machine_info
    from lab.bench.cuda import bench_cuda
    from lab.bench.report import cuda_md, cuda_report_md

    _check_model(model)
    r = _guard(bench_cuda, model, _ints(batches), repeats, seconds, cpu_threads)
    r.update(machine=machine_info(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), command=_command_line())
    md = cuda_md(r)
    _emit(r, md, json_out)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(cuda_report_md(r, md))


@command.command()
@model_opt
@click.option("--devices", type=click.IntRange(1), default=100, show_default=True)
@click.option("--single-samples", type=click.IntRange(1), default=600, show_default=True,
              help="Samples per device, one per message.")
@click.option("--batch-samples", type=click.IntRange(1), default=5000, show_default=True,
              help="Samples per device in batched messages.")
@click.option("--batch-size", type=click.IntRange(1), default=100, show_default=True, help="Samples per batched message.")
@repeats_opt
@json_opt
def ingest(model: str, devices: int, single_samples: int, batch_samples: int, batch_size: int, repeats: int,
           json_out: str | None) -> None:
    """Daemon vs bare subscribers (paho's stock client, edgewatch's client) on a real Mosquitto."""
    from lab.bench.ingest import bench_ingest
    from lab.bench.report import ingest_md

    _check_model(model)
    r = _guard(bench_ingest, model, devices, single_samples, batch_samples, batch_size, repeats)
    _emit(r, ingest_md(r), json_out)


@command.command("scale-out")
@model_opt
@click.option("--workers", default="1,2,4", show_default=True, help="Worker counts of the NATS consumer group.")
@click.option("--devices", type=click.IntRange(1), default=100, show_default=True)
@click.option("--samples", type=click.IntRange(1), default=1000, show_default=True,
              help="Samples per device of the single-sample flood.")
@click.option("--batch-samples", type=click.IntRange(1), default=5000, show_default=True,
              help="Samples per device of the batched flood.")
@click.option("--batch-size", type=click.IntRange(2), default=50, show_default=True,
              help="Samples per message of the batched flood.")
@click.option("--kinds", default="single,batch", show_default=True, help="Flood kinds to run (single, batch).")
@click.option("--partitions", type=click.IntRange(1), default=16, show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
@click.option("--mqtt/--no-mqtt", default=True, help="Also one MQTT daemon on the same messages (needs mosquitto).")
@json_opt
def scale_out(model: str, workers: str, devices: int, samples: int, batch_samples: int, batch_size: int, kinds: str,
              partitions: int, repeats: int, mqtt: bool, json_out: str | None) -> None:
    """Messages/s and samples/s of 1, 2, 4 ... NATS consumer-group workers on one machine, and one MQTT daemon,
    for single-sample and batched floods."""
    from edge_runtime.tools.localnats import NatsServerError
    from lab.bench.scaleout import KINDS, bench_scaleout, scaleout_md

    _check_model(model)
    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
    if not chosen or set(chosen) - set(KINDS):
        raise click.BadParameter(f"kinds: any of {', '.join(KINDS)}", param_hint="--kinds")
    try:
        r = _guard(bench_scaleout, model, _ints(workers), devices, samples, batch_samples, batch_size, chosen,
                   partitions, repeats, mqtt)
    except NatsServerError as exc:
        fail(str(exc), clierror.EXIT_UNAVAILABLE)
    _emit(r, scaleout_md(r), json_out)


@command.command()
@model_opt
@click.option("--rate", type=click.FloatRange(0), default=0.0,
              help="Sustainable msg/s (0: search for it live, under the same conditions as the latency runs).")
@click.option("--hint", type=click.FloatRange(0), default=0.0,
              help="Upper guide for that search, e.g. the ingest drain rate (0: 20,000 msg/s).")
@click.option("--batching", type=click.Choice(["inline", "opportunistic", "fill"]), default="inline", show_default=True,
              help="The daemon's inference.batching for these runs.")
@click.option("--devices", type=click.IntRange(1), default=100, show_default=True)
@click.option("--seconds", type=click.FloatRange(0.5), default=10.0, show_default=True, help="Seconds per run.")
@repeats_opt
@json_opt
def latency(model: str, rate: float, hint: float, batching: str, devices: int, seconds: float, repeats: int,
            json_out: str | None) -> None:
    """Publish -> result latency p50/p99/p99.9 at 50 % and 90 % of the sustainable rate."""
    from lab.bench.ingest import bench_latency
    from lab.bench.report import latency_md

    _check_model(model)
    r = _guard(bench_latency, model, rate or None, (0.5, 0.9), devices, seconds, repeats, hint, batching=batching)
    _emit(r, latency_md(r), json_out)


@command.command()
@model_opt
@click.option("--rate", type=click.FloatRange(0), default=0.0, help="Sustainable msg/s for the 90 % load (0: measure).")
@click.option("--devices", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--minutes", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Minutes at 90 % load (the full variant: 10; 0 skips the load part).")
@click.option("--idle-s", type=click.FloatRange(0.5), default=10.0, show_default=True)
@repeats_opt
@json_opt
def footprint(model: str, rate: float, devices: int, minutes: float, idle_s: float, repeats: int,
              json_out: str | None) -> None:
    """Start-up time, RSS after start and under load, idle CPU."""
    from lab.bench.ingest import bench_footprint, bench_latency
    from lab.bench.report import footprint_md

    _check_model(model)
    if not rate and minutes > 0:
        rate = _guard(bench_latency, model, None, (), 100, 1.0, 1)["sustainable_rate"]
    r = _guard(bench_footprint, model, rate, devices, minutes, idle_s, repeats)
    _emit(r, footprint_md(r), json_out)


@command.command()
@model_opt
@click.option("--devices", "devices_list", default="1,10,100,1000,10000", show_default=True)
@click.option("--windows", "windows_list", default="32,64,128,256", show_default=True)
@click.option("--channels", "channels_list", default="1,4,16,64", show_default=True)
@click.option("--min-messages", type=click.IntRange(1), default=20_000, show_default=True)
@click.option("--plot", default="benchmarks/scaling.png", show_default=True, help="PNG to write ('' for none).")
@repeats_opt
@json_opt
def scaling(model: str, devices_list: str, windows_list: str, channels_list: str, min_messages: int, plot: str,
            repeats: int, json_out: str | None) -> None:
    """Cost against devices (1 -> 10,000), window length and channel count: table and plot."""
    from lab.bench.report import scaling_md
    from lab.bench.scaling import bench_scaling, plot_scaling

    _check_model(model)
    r = _guard(bench_scaling, model, _ints(devices_list), _ints(windows_list), _ints(channels_list), repeats,
               min_messages=min_messages)
    png = plot_scaling(r, Path(plot)) if plot else None
    _emit(r, scaling_md(r, str(png) if png else None), json_out)


@command.command("all")
@model_opt
@click.option("--out", default="BENCHMARKS.md", show_default=True, help="The Markdown report to write.")
@click.option("--quick", is_flag=True, help="Small sizes and 1-minute footprint (what the committed numbers state).")
@click.option("--minutes", type=click.FloatRange(0), default=1.0, show_default=True, help="Footprint load minutes.")
@json_opt
def all_(model: str, out: str, quick: bool, minutes: float, json_out: str | None) -> None:
    """Run every benchmark in order and write BENCHMARKS.md (CPU, versions, date, command)."""
    from lab.bench.common import machine_info
    from lab.bench.cuda import bench_cuda
    from lab.bench.inference import bench_inference
    from lab.bench.ingest import bench_footprint, bench_ingest, bench_latency
    from lab.bench.scaling import bench_scaling, plot_scaling

    _check_model(model)
    t0 = time.time()
    res: dict[str, Any] = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "command": _command_line()}
    cuda_report = Path(out).parent / CUDA_REPORT  # where `bench cuda --out` left its report on a GPU machine
    res["cuda_report"] = CUDA_REPORT if cuda_report.is_file() else None

    def stage(name: str, fn, *args: Any, **kw: Any) -> None:
        click.echo(f"{name} ...", err=True)
        try:
            res[name] = _guard(fn, *args, **kw)
        except Exception as exc:  # noqa: BLE001 - one failed benchmark is reported, the others still run
            res[name] = {"error": f"{type(exc).__name__}: {str(exc)[-400:]}"}
        if json_out:  # keep what is measured so far
            Path(json_out).write_text(json.dumps(res, indent=1, default=str) + "\n")

    stage("inference", bench_inference, model, repeats=5, seconds=0.25 if quick else 0.4)
    if cuda_session_available(model):
        stage("cuda", bench_cuda, model, repeats=5, seconds=0.25 if quick else 0.4)
    stage("ingest", bench_ingest, model, 100, 400 if quick else 600, 3000 if quick else 5000, 100, 3)
    rate = (res["ingest"].get("single") or {}).get("daemon_msg_rate", {}).get("median")
    stage("latency", bench_latency, model, None, (0.5, 0.9), 100, 6.0 if quick else 10.0, 3, rate or 0.0)
    rate = res["latency"].get("sustainable_rate") or rate  # the live sustainable rate, as the latency runs use
    stage("footprint", bench_footprint, model, rate, 1000, minutes, 10.0, 3)
    stage("scaling", bench_scaling, model, (1, 10, 100, 1000, 10_000), (32, 64, 128, 256), (1, 4, 16, 64),
          2 if quick else 3, min_messages=20_000)
    png = plot_scaling(res["scaling"], Path(out).parent / "benchmarks" / "scaling.png") if "error" not in res[
        "scaling"] else None
    res["seconds"] = round(time.time() - t0, 1)
    text = benchmarks_md(res, str(png.relative_to(Path(out).parent)) if png else None)
    Path(out).write_text(text)
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=1, default=str) + "\n")
    click.echo(text)


def cuda_session_available(model: str) -> bool:
    """Whether ``model`` really gets the CUDA provider here (``auto`` falls back to CPU quietly)."""
    from edge_runtime.service.model import CUDA, ModelError, load_model

    try:
        return load_model(model, "auto", 1).provider == CUDA
    except ModelError:
        return False


def _cuda_line(res: dict[str, Any]) -> str:
    if "cuda" in res:
        return ("CUDA: failed in this run (section 1b)." if "error" in res["cuda"]
                else "CUDA: measured in this run on the CUDA provider (section 1b).")
    if res.get("cuda_report"):
        return (f"CUDA: not measured in this run (no CUDA device here); see [{res['cuda_report']}]({res['cuda_report']}) "
                "where it was measured on a GPU machine with "
                f"`edgewatch-lab bench cuda --out {res['cuda_report']} --json {CUDA_JSON}`.")
    return "CUDA: not measured here (no GPU on this machine), so the CUDA provider's numbers are unverified."


@command.command("faults")
@click.option("--devices", type=click.IntRange(1), default=4, show_default=True, help="Simulated devices.")
@click.option("--epochs", type=click.IntRange(1), default=15, show_default=True, help="Training epochs of the plant's model.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep the model and broker files here.")
@json_opt
def faults_(devices: int, epochs: int, seed: int, workdir: str | None, json_out: str | None) -> None:
    """Sensor faults, stops and process faults on a synthetic plant, through the daemon (issue 14's numbers).

    Fits a model with operating states on a plant that stops, then streams the same devices twice through a
    private Mosquitto into the daemon: healthy sensors, and frozen, dropped-out, out-of-range channels and a dead
    device on top. Reports each number against its target (met, missed or not measured).
    """
    from lab.bench.faults import faults_md, run_faults

    res = _guard(run_faults, devices, seed, epochs, Path(workdir) if workdir else None)
    _emit({k: v for k, v in res.items() if k != "kinds"}, faults_md(res), json_out)


@command.command("ood")
@click.option("--skab", "skab_dir", default="../shared/data/skab", show_default=True,
              type=click.Path(file_okay=False), help="The SKAB data folder (anomaly-free/, valve1/).")
@click.option("--windows", type=click.IntRange(1), default=10, show_default=True, help="alerts.ood_windows for the check.")
@click.option("--factor", type=click.FloatRange(1), default=3.0, show_default=True, help="alerts.ood_factor.")
@json_opt
def ood_(skab_dir: str, windows: int, factor: float, json_out: str | None) -> None:
    """SKAB's anomaly-free recording against a model fitted on a valve1 file, through the daemon, with the
    out-of-distribution check off and on (and another valve1 file, to show its alerts are kept)."""
    from lab.bench.faults import run_skab_ood, skab_ood_md

    skab = Path(skab_dir)
    if not (skab / "anomaly-free" / "anomaly-free.csv").is_file():
        fail(f"{skab}: no anomaly-free/anomaly-free.csv (SKAB is not in the repository: pass --skab DIR)",
             clierror.EXIT_NOINPUT)
    res = _guard(run_skab_ood, skab, windows, factor)
    _emit(res, skab_ood_md(res), json_out)


STAGES = ("inference", "ingest", "latency", "footprint", "scaling")


@command.command("report")
@click.argument("results", type=InputPath(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The Markdown report to write.")
@click.option("--plot", default=None, help="The scaling plot to link, relative to --out (none by default).")
def report_(results: str, out: str, plot: str | None) -> None:
    """Write the report of a results JSON from `bench all --json` again, without measuring.

    For a run cut short (a time limit): the stages it did not reach are marked as not run.
    """
    try:
        res = json.loads(Path(results).read_text())
        res["machine"]["versions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(f"{results} is not a results file of `edgewatch-lab bench all --json`: {exc}", clierror.EXIT_DATAERR)
    for stage in STAGES:
        res.setdefault(stage, {"error": "not run (the run ended before this stage)"})
    res.setdefault("seconds", "? (cut short)")
    res["rendered_by"] = " ".join(["edgewatch-lab bench report", shlex.quote(results), "--out", shlex.quote(out),
                                   *(["--plot", shlex.quote(plot)] if plot else [])])
    text = benchmarks_md(res, plot)
    Path(out).write_text(text)
    click.echo(text)


def benchmarks_md(res: dict[str, Any], plot: str | None) -> str:
    """The whole BENCHMARKS.md from the results of ``all``."""
    from lab.bench import report

    m = res["machine"]
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    on_cuda = ["## 1b. Inference on CUDA", "", _section(report.cuda_md, res["cuda"]), ""] if "cuda" in res else []
    return "\n".join([
        "# edgewatch benchmarks", "",
        f"Generated by `{res['command']}` on {res['date']} in {res['seconds']} s. Do not edit by hand: rerun the command."
        + (f" Written from its results file by `{res['rendered_by']}`." if res.get("rendered_by") else ""), "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['os']}); Python {m['python']}; {vers}; {m['mosquitto'] or 'mosquitto ?'}.",
        _cuda_line(res), "",
        *([f"Notes: {' '.join(res['notes'])}", ""] if res.get("notes") else []),
        "Every number is the median of several repeats with ± half their range; every goal is a ratio against a "
        "baseline measured in the same run, or an absolute limit stated beside it. The machine is shared, so "
        "absolute rates move between runs; the ratios are what the goals use.", "",
        "## 1. Inference", "", _section(report.inference_md, res["inference"]), "",
        *on_cuda,
        "## 2. Ingest, end to end (Mosquitto on loopback)", "", _section(report.ingest_md, res["ingest"]), "",
        "## 3. Latency", "", _section(report.latency_md, res["latency"]), "",
        "## 4. Footprint", "", _section(report.footprint_md, res["footprint"]), "",
        "## 5. Scaling", "", _section(report.scaling_md, res["scaling"], plot), "",
    ])


def _section(render, r: dict[str, Any], *args: Any) -> str:
    return f"Failed in this run: {r['error']}" if "error" in r else render(r, *args)
