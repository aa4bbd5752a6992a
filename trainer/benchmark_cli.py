"""``edgewatch-train benchmark skab DIR`` and ``benchmark synthetic``: quality suites with ``fit``'s defaults.

Thin: parse options, call :mod:`trainer.benchmark`, print the tables, write JSON.
Errors a user can cause print one line ``edgewatch-train benchmark: error: ...`` and exit with their code
(edge_runtime/clierror.py: 2 usage, 65 bad data, 66 no such folder).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edge_runtime import clierror
from edge_runtime.contract import ContractError
from trainer.data import DataError


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            from trainer.export import ExportError  # torch/onnx stay unimported until a model is trained

            if not isinstance(exc, (DataError, ContractError, ExportError, ValueError, OSError)):
                raise
            clierror.fail_on(exc, clierror.command_path("edgewatch-train benchmark"))

    return wrapper


def _fit_options(pairs: tuple[str, ...], flag: str = "--fit-option") -> dict[str, Any]:
    """KEY=VALUE pairs (VALUE read as JSON, else text), each checked against fit's options before any work (a
    ValueError: exit 2, one line). ``seed`` is the benchmark's own --seed."""
    from trainer.api import check_option

    out: dict[str, Any] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag} {p!r}: use KEY=VALUE")
        if key == "seed":
            raise ValueError(f"{flag} seed=...: use the benchmark's --seed")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        try:
            check_option(key, parsed)
        except ValueError as exc:
            raise ValueError(f"{flag} {p!r}: {exc}") from None
        out[key] = parsed
    return out


def _loko_grid(pairs: tuple[str, ...]) -> dict[str, list[Any]]:
    """--loko-fit KEY=V1,V2,...: each value checked as a --fit-option."""
    grid: dict[str, list[Any]] = {}
    for p in pairs:
        key, sep, values = p.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--loko-fit {p!r}: use KEY=VALUE,VALUE,...")
        grid[key.strip()] = [_fit_options((f"{key.strip()}={v}",), "--loko-fit")[key.strip()] for v in values.split(",")]
    return grid


def _write(report: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        click.echo(f"report: {path}")


def _write_markdown(text: str, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        click.echo(f"markdown: {path}")


_common = [
    click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON here."),
    click.option(
        "--markdown", type=click.Path(dir_okay=False, path_type=Path), help="Write the tables as markdown here."
    ),
    click.option("--seed", default=0, show_default=True, help="Training seed (same seed, same numbers)."),
    click.option(
        "--hop",
        type=click.IntRange(min=1),
        help="The daemon's scoring hop for decisions (its input.hop).  [default: each model's own]",
    ),
    click.option(
        "--fit-option",
        "fit_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one of fit's defaults (trainer.api.train_and_export keyword; repeatable). "
        "The reported numbers are the defaults' only without it.",
    ),
    click.option("--quiet", "-q", is_flag=True, help="No per-file progress lines."),
]


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


@click.group("benchmark")
def benchmark() -> None:
    """Measure detection quality with fit's defaults, the ONNX model and the daemon's decisions."""


@benchmark.command("skab")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--train-rows", default=400, show_default=True, help="Rows at the start of each file fitted on (taken as normal)."
)
@click.option("--label-column", default="anomaly", show_default=True, help="The 0/1 ground-truth column.")
@click.option(
    "--loko",
    is_flag=True,
    help="Also select threshold multiplier and raise_after leaving one fault kind out, and report the left-out estimate.",
)
@click.option(
    "--loko-fit",
    "loko_fit",
    multiple=True,
    metavar="KEY=V1,V2",
    help="With --loko: also fit every labelled file with these values of a fit option (repeatable; the "
    "combinations are candidates beside the defaults; each refits all files).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N labelled files.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="PNG of one file's scores and decisions.")
@click.option("--plot-file", "plot_name", metavar="NAME", help="File to plot (as in the report).  [default: the first]")
@common_options
@_user_errors
def skab(
    directory: Path,
    train_rows: int,
    label_column: str,
    loko: bool,
    loko_fit: tuple[str, ...],
    limit: int | None,
    plot: Path | None,
    plot_name: str | None,
    report: Path | None,
    markdown: Path | None,
    seed: int,
    hop: int | None,
    fit_option: tuple[str, ...],
    quiet: bool,
) -> None:
    """SKAB's per-file protocol on every CSV under DIRECTORY, with PCA T2+Q beside edgewatch.

    \b
    Example (the 27 shared files: about 1 minute on 2 cores, 2.5 with --loko-fit score_power=1,2,4):
      edgewatch-train benchmark skab ../shared/data/skab --loko --report skab.json
    """
    from trainer import benchmark as bm
    from trainer import benchmark_report as tables

    protocol = bm.Protocol(
        train_rows=train_rows, label_column=label_column, seed=seed, hop=hop, fit_options=_fit_options(fit_option)
    )
    progress = None if quiet else (lambda line: click.echo(line, err=True))
    grid = _loko_grid(loko_fit)
    if grid and not loko:
        raise ValueError("--loko-fit needs --loko")
    rep, runs = bm.run_skab(directory, protocol, limit, loko, progress=progress, fit_grid=grid)
    if rep["detectors"]:
        click.echo(tables.format_suite(rep["detectors"], f"SKAB per-file protocol: fit defaults on the first {train_rows} rows, "
                                   "decisions as the daemon makes them"))
    if rep["normal_recordings"][bm.EDGEWATCH]:
        click.echo("\nnormal recordings, fitted on their first rows and scored on the rest:")
        click.echo(tables.format_normal(rep["normal_recordings"]))
    if "leave_one_kind_out" in rep:
        click.echo("")
        click.echo(tables.format_loko(rep["leave_one_kind_out"]))
    for name, why in rep["not_scored"].items():
        click.echo(f"not scored: {name}: {why}")
    click.echo(f"\n{rep['data']['labelled_files']} labelled files, fit {rep['fit_seconds']:.0f} s, total {rep['seconds']:.0f} s")
    _write(rep, report)
    _write_markdown(tables.skab_markdown(rep), markdown)
    if plot is not None:
        chosen = [r for r in runs if plot_name is None or r.name == plot_name]
        if not chosen:
            raise ValueError(f"--plot-file {plot_name!r} is not one of the scored files")
        bm.plot_run(chosen[0], protocol, plot, f"SKAB {chosen[0].name} ({chosen[0].kind}), fit defaults")
        click.echo(f"plot: {plot}")


@benchmark.command("synthetic")
@click.option(
    "--magnitudes",
    default="0.5,1,2",
    show_default=True,
    metavar="A,B,...",
    help="Anomaly magnitudes relative to the generator's (the signal-to-noise ratios).",
)
@click.option("--quick", is_flag=True, help="Only the base plant and the 50-channel plant, magnitude 1 (a smoke run).")
@common_options
@_user_errors
def synthetic(
    magnitudes: str,
    quick: bool,
    report: Path | None,
    markdown: Path | None,
    seed: int,
    hop: int | None,
    fit_option: tuple[str, ...],
    quiet: bool,
) -> None:
    """Generated plants (base, drifting normal, stuck channel, 50 channels, a 52-channel process plant) x six
    anomaly kinds x magnitudes."""
    from trainer import benchmark as bm
    from trainer import benchmark_report as tables
    from trainer import benchmark_synthetic as syn

    try:
        mags = [float(v) for v in magnitudes.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--magnitudes {magnitudes!r}: give numbers separated by commas") from None
    plants = [syn.PLANTS[0], syn.PLANTS[3]] if quick else list(syn.PLANTS)
    protocol = bm.Protocol(seed=seed, hop=hop, fit_options=_fit_options(fit_option))
    progress = None if quiet else (lambda line: click.echo(line, err=True))
    rep = syn.run_synthetic(plants, [1.0] if quick else mags, protocol, progress=progress)
    click.echo(tables.format_synthetic(rep))
    for name, why in rep["not_scored"].items():
        click.echo(f"not scored: {name}: {why}")
    click.echo(f"\n{len(plants)} plants, {rep['seconds']:.0f} s")
    _write(rep, report)
    _write_markdown(tables.synthetic_markdown(rep), markdown)


@benchmark.command("feedback")
@click.option("--fault-sd", "fault_sd", default="8,6,4,3", show_default=True, metavar="A,B,...",
              help="Real-fault magnitudes (a level shift, in std); the benign episode is 2 std on one channel.")
@click.option("--fault-on", "fault_on", type=click.Choice(["other", "same", "both"]), default="both",
              show_default=True, help="The fault on two other channels than the episode's, on the episode's "
              "channel the same way, or each in turn.")
@click.option("--episode", "episode_kind", type=click.Choice(["level", "noise"]), default="level",
              show_default=True, help="The benign episode on channel 0: a level shift, or more noise.")
@click.option("--episode-sd", "episode_sd", default=2.0, show_default=True,
              help="The episode's size: a level shift of this many std, or (noise) the spread x (1 + this).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON here.")
@click.option("--seed", default=0, show_default=True, help="Machine profile and training seed.")
@_user_errors
def feedback(fault_sd: str, fault_on: str, episode_kind: str, episode_sd: float, report: Path | None,
             seed: int) -> None:
    """One false-alarm verdict, then the same stream again: does the episode raise, is the fault later?"""
    from trainer import benchmark_site as site

    where = [site.OTHER, site.SAME] if fault_on == "both" else [fault_on]
    cases = [site.FeedbackCase(episode_sd, float(v), on, episode_kind)
             for on in where for v in fault_sd.split(",") if v.strip()]
    rep = site.run_feedback_suite(cases, seed)
    for c in rep["cases"]:
        first, again, v = c["first_run"], c.get("replay") or {}, c.get("verdict") or {}
        sensors = ""
        if first.get("sensor_alert_delay_s") is not None or again.get("sensor_alert_delay_s") is not None:
            sensors = (f", sensor alert {first.get('sensor_alert_delay_s')} s -> "
                       f"{again.get('sensor_alert_delay_s')} s")
        click.echo(f"fault {c['case']['fault_sd']:g} std on {c['case']['fault_on']} channel(s): episode alerts "
                   f"{first['episode_alerts']} -> {again.get('episode_alerts')}, fault delay {first['fault_delay_s']} s "
                   f"-> {again.get('fault_delay_s')} s (x{c.get('delay_ratio')}){sensors}; threshold "
                   f"{_g(v.get('threshold_before'))} -> {_g(v.get('threshold'))} for {v.get('applies_to')}: "
                   f"{'met' if c.get('met') else 'MISSED'}")
    _write(rep, report)


@benchmark.command("transfer")
@click.option("--skab", "skab_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also SKAB: a model of anomaly-free.csv, a warm-up on the first 400 rows of each other file.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON here.")
@click.option("--seed", default=0, show_default=True, help="Machine profile and training seed.")
@_user_errors
def transfer(skab_dir: Path | None, report: Path | None, seed: int) -> None:
    """Site transfer: a model of one profile on devices of others, without and with input.warmup."""
    import tempfile

    from trainer import benchmark_site as site

    shifts = [site.SiteShift(), site.SiteShift(1.0, 1.0), site.SiteShift(1.0, 1.5)]
    rep: dict[str, Any] = {"synthetic": []}
    with tempfile.TemporaryDirectory() as tmp:
        model = site.profile_model(Path(tmp), seed)
        for sh in shifts:
            r = site.run_transfer(Path(tmp), seed=seed, shift=sh, model=model)
            rep["synthetic"].append(r)
            click.echo(f"profiles seed+1..4, offset {sh.offset_sd:g} std, spread x{sh.spread:g}: normal windows above "
                       f"the threshold {r['exceedance_without']:.4f} without warm-up ({r['without_over_budget']:g} x the "
                       f"budget {r['budget']:g}), {r['exceedance_with']:.4f} with ({r['with_over_budget']:g} x); "
                       f"faults detected after warm-up {r['faults_detected_with']}/{len(r['devices'])}: "
                       f"{'met' if r['met'] else 'MISSED'}")
        if skab_dir is not None:
            sk = site.run_skab_transfer(skab_dir, Path(tmp), progress=lambda line: click.echo(line, err=True))
            rep["skab"] = sk
            click.echo(f"SKAB, {len(sk['files'])} files, model of {sk['model_file']}: without warm-up {sk['without']}, "
                       f"with a warm-up on the first {sk['warm_rows']} rows {sk['with']} ({sk['refused']} refused)")
            ex = sk["normal_windows_above"]
            click.echo(f"SKAB, normal windows (every row labelled normal) above the device's threshold after the "
                       f"warm-up rows, of {sk['normal_windows']:,}: {ex['without']} without warm-up "
                       f"({sk['without_over_budget']} x the budget {sk['budget']:g}), {ex['with']} with "
                       f"({sk['with_over_budget']} x): {'met' if sk['met'] else 'missed'} (within 2x the budget)")
    _write(rep, report)


@benchmark.command("memory")
@click.option("--rows", default="1000000,2000000", show_default=True, metavar="A,B,...",
              help="Recording sizes (rows of one CSV); the smallest is the baseline.")
@click.option("--channels", type=click.IntRange(1, 256), default=12, show_default=True)
@click.option("--epochs", type=click.IntRange(1), help="Epoch cap of each fit.  [default: fit's]")
@click.option("--limit-mb", type=click.IntRange(64), metavar="MB",
              help="Run each fit in a fresh memory cgroup of this hard limit (Linux, root): the kernel reclaims a "
                   "mapped recording's pages at the limit and kills a fit whose own memory does not fit.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON here.")
@_user_errors
def memory(rows: str, channels: int, epochs: int | None, limit_mb: int | None, report: Path | None) -> None:
    """Peak memory of fit (a child process each) as the recording grows: bounded memory, measured."""
    import tempfile

    from trainer.benchmark_memory import CgroupError, MemoryCgroup, run_memory

    try:
        sizes = [int(v) for v in rows.split(",") if v.strip()]
    except ValueError:
        raise click.UsageError(f"--rows: comma-separated integers, got {rows!r}") from None
    if not sizes or min(sizes) < 1000:
        raise click.UsageError("--rows: at least one size, each of 1000 rows or more")
    if limit_mb:
        try:
            with MemoryCgroup(limit_mb):
                pass  # made and removed: the limit can be applied here
        except CgroupError as exc:
            raise click.UsageError(f"--limit-mb: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="edgewatch-memory-") as tmp:
        rep = run_memory(sizes, channels, Path(tmp), epochs, limit_mb)
    for r in rep["sizes"]:
        if r["rc"]:
            click.echo(f"{r['rows']:,} rows: fit exited {r['rc']}: {r['error']}")
            continue
        vs = (f"; x{r['peak_vs_smallest']:.2f} the smallest's peak for x{r['csv_vs_smallest']:.2f} the data, "
              f"{r['bytes_per_added_row']:.0f} bytes per added row (the recording itself: "
              f"{rep['kept_bytes_per_row']})") if "peak_vs_smallest" in r else " (baseline)"
        if "anon_bytes_per_added_row" in r:
            vs += f", {r['anon_bytes_per_added_row']:.0f} of them anonymous"
        anon = "" if r["peak_anon_mb"] is None else f" ({r['peak_anon_mb']:.0f} MB anonymous)"
        if r.get("limit_mb") and r.get("cgroup_peak_mb") is not None:
            anon += f", under a {r['limit_mb']} MB limit (charged at most {r['cgroup_peak_mb']:.0f} MB)"
        click.echo(f"{r['rows']:,} rows x {r['channels']} ({r['csv_mb']:.0f} MB CSV): peak {r['peak_mb']:.0f} MB"
                   f"{anon}, {r['wall_s']:.1f} s{vs}")
    _write(rep, report)


if __name__ == "__main__":
    benchmark()


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"
