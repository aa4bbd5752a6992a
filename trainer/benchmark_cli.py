"""``edgewatch-train benchmark skab DIR``: the SKAB protocols through the trainer and onnxruntime.

Thin: parse options, call :func:`trainer.benchmark.run_benchmark`, print the tables, write JSON/PNG.
Errors a user can cause print one line ``error: ...`` and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edge_runtime.contract import ContractError
from trainer.benchmark import POINT_RULES, BenchmarkConfig, format_table, plot_file, run_benchmark
from trainer.data import DataError

_DEFAULTS = BenchmarkConfig()


@click.group("benchmark")
def benchmark() -> None:
    """Measure detection quality on public labelled datasets."""


@benchmark.command("skab")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--report", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON here."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG of one file (scores, threshold, labels) under the per-file protocol.",
)
@click.option(
    "--plot-file",
    "plot_name",
    metavar="NAME",
    help="File to plot (as listed in the table).  [default: the first]",
)
@click.option(
    "--channels",
    metavar="A,B,...",
    default=",".join(_DEFAULTS.channels or []),
    show_default=True,
    help="Feature columns to model; 'all' for every non-label column.",
)
@click.option(
    "--window", "-w", default=_DEFAULTS.window, show_default=True, help="Window length W in samples."
)
@click.option(
    "--epochs", default=_DEFAULTS.epochs, show_default=True, help="Maximum training epochs per model."
)
@click.option(
    "--seed", default=_DEFAULTS.seed, show_default=True, help="Training seed (same seed, same numbers)."
)
@click.option(
    "--train-rows",
    default=_DEFAULTS.train_rows,
    show_default=True,
    help="Rows at the start of each file taken as normal for fitting.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=_DEFAULTS.val_fraction,
    show_default=True,
    help="Last fraction of the training rows held out for early stopping and threshold calibration.",
)
@click.option(
    "--threshold-method",
    type=click.Choice(["quantile", "pot"]),
    default=_DEFAULTS.threshold_method,
    show_default=True,
    help="Threshold calibration on the validation part of the training rows.",
)
@click.option(
    "--threshold-q", default=_DEFAULTS.threshold_q, show_default=True, help="Quantile for 'quantile'."
)
@click.option(
    "--pot-level",
    default=_DEFAULTS.pot_level,
    show_default=True,
    help="Level quantile above which 'pot' fits its tail (needs >= 10 validation windows above it).",
)
@click.option(
    "--threshold-scale",
    default=_DEFAULTS.threshold_scale,
    show_default=True,
    help="Multiplier on the calibrated threshold.",
)
@click.option(
    "--denoise",
    default=_DEFAULTS.denoise,
    show_default=True,
    help="Std of the training input noise (denoising AE), normalised units.",
)
@click.option(
    "--point-rule",
    type=click.Choice(POINT_RULES),
    default=_DEFAULTS.point_rule,
    show_default=True,
    help="How window decisions become point labels.",
)
@click.option(
    "--hysteresis/--no-hysteresis",
    default=_DEFAULTS.hysteresis,
    show_default=True,
    help="Pass window decisions through the edge runtime's alert hysteresis first (edge defaults: raise "
    "after 3 windows above, clear after 5 below 0.8 x threshold).",
)
@click.option(
    "--protocol",
    "protocols",
    type=click.Choice(["per-file", "anomaly-free"]),
    multiple=True,
    help="Run only this protocol (repeatable).  [default: both]",
)
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N labelled files.")
def skab(
    directory: Path,
    report: Path | None,
    plot: Path | None,
    plot_name: str | None,
    channels: str,
    window: int,
    epochs: int,
    seed: int,
    train_rows: int,
    val_fraction: float,
    threshold_method: str,
    threshold_q: float,
    pot_level: float,
    threshold_scale: float,
    denoise: float,
    point_rule: str,
    hysteresis: bool,
    protocols: tuple[str, ...],
    limit: int | None,
) -> None:
    """Run SKAB's outlier protocol (and the anomaly-free one) on every labelled CSV under DIRECTORY.

    \b
    Example:
      edgewatch-train benchmark skab ../shared/data/skab --report skab.json --plot skab.png
    """
    names = [c.strip() for c in channels.split(",") if c.strip()]
    cfg = BenchmarkConfig(
        channels=None if names in ([], ["all"]) else names,
        window=window,
        train_rows=train_rows,
        epochs=epochs,
        seed=seed,
        val_fraction=val_fraction,
        denoise=denoise,
        threshold_method=threshold_method,
        threshold_q=threshold_q,
        pot_level=pot_level,
        threshold_scale=threshold_scale,
        point_rule=point_rule,
        hysteresis=hysteresis,
    )
    try:
        result, per_protocol = run_benchmark(directory, cfg, protocols or ("per-file", "anomaly-free"), limit)
        if "files" in result:
            click.echo(
                format_table(
                    result, f"SKAB protocol: a model per file, fitted on its first {cfg.train_rows} rows"
                )
            )
        af = result.get("anomaly_free")
        if af and "files" in af:
            click.echo("")
            click.echo(
                format_table(af, "Anomaly-free protocol: one model trained on " + ", ".join(af["trained_on"]))
            )
        elif af:
            click.echo(f"anomaly-free protocol skipped: {af['skipped']}")
        click.echo(f"\n{result['data']['labelled_files']} labelled files, {result['seconds']:.1f} s")
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
            click.echo(f"report: {report}")
        if plot is not None:
            runs = per_protocol.get("per-file") or per_protocol.get("anomaly-free") or []
            chosen = [r for r in runs if plot_name is None or r.name == plot_name]
            if not chosen:
                raise DataError(f"--plot-file {plot_name!r} is not one of the scored files")
            plot_file(chosen[0], plot, f"SKAB {chosen[0].name}: window score vs threshold")
            click.echo(f"plot: {plot}")
    except Exception as exc:
        from trainer.export import ExportError  # torch/onnx stay unimported until a model is trained

        if not isinstance(exc, (DataError, ContractError, ExportError, ValueError, OSError)):
            raise
        click.echo(f"error: {' '.join(str(exc).split())}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    benchmark()
