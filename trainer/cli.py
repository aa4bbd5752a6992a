"""``edgewatch-train``: fit, export, inspect, evaluate, demo-data, demo, benchmark, and fleet rollout (keygen,
publish, promote, rollback). Thin: parse, call, print.

Every error a user can cause prints one line ``edgewatch-train COMMAND: error: ...`` on stderr (as click prints a
usage error) and exits with the code of
edge_runtime/clierror.py (docs/TOOLS.md#exit-codes): 2 usage, 65 bad data or model, 66 no such input, ...
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edge_runtime import __version__, clierror
from edge_runtime.clierror import InputPath, fail
from edge_runtime.contract import ContractError
from edge_runtime.pipeline.hysteresis import AlertPolicy

log = logging.getLogger(__name__)


# The errors a user can cause: (module, class); checked only once raised, so that no check imports torch or onnx.
USER_ERRORS = (("trainer.model_file", "ExportError"),)


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the known user-caused errors into one stderr line, named by the command as click names a usage error
    (``edgewatch-train fit: error: ...``), and their exit code (clierror.code_of)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ContractError, ValueError, OSError) as exc:  # DataError, ThresholdError, ... are ValueErrors
            clierror.fail_on(exc, clierror.command_path("edgewatch-train"))
        except Exception as exc:
            known = [getattr(sys.modules.get(m), name, None) for m, name in USER_ERRORS]
            if not any(isinstance(k, type) and isinstance(exc, k) for k in known):
                raise
            clierror.fail_on(exc, clierror.command_path("edgewatch-train"))

    return wrapper


def parse_units(value: str | None, channels: list[str]) -> dict[str, str]:
    """``--units 'Pressure=bar,Temperature=degC'`` as ``{channel: unit}``; a name that is not a channel, a part
    without ``=`` or a unit over 32 characters is a ValueError naming it."""
    out: dict[str, str] = {}
    for part in _csv_list(value) or []:
        name, eq, unit = part.partition("=")
        name, unit = name.strip(), unit.strip()
        if not eq or not name or not unit:
            raise ValueError(f"--units: {part!r} is not NAME=UNIT")
        if name not in channels:
            raise ValueError(f"--units: {name!r} is not a channel (channels: {', '.join(channels)})")
        if len(unit) > 32:
            raise ValueError(f"--units: the unit of {name!r} is longer than 32 characters")
        out[name] = unit
    return out


def _csv_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


_LABEL_HELP = {
    "fit": "Column with 0/1 anomaly labels; kept out of the features (labelled windows are not trained on). "
    "A name other than the default must exist in at least one file.",
    "evaluate": "Column with the 0/1 ground-truth labels the scores are measured against; kept out of the "
    "features. A name other than the default must exist in at least one file.",
}

def _data_options(command: str) -> list[Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """The data-loading options; ``evaluate``'s reading options default to how the model's files were read."""
    stored = command == "evaluate"

    def default(plain: str) -> str:
        return f"  [default: the model's, else {plain}]" if stored else f"  [default: {plain}]"

    return [
        click.option(
            "--exclude",
            multiple=True,
            metavar="NAME",
            help="Column to keep out of the features (repeatable; it must exist in at least one file). "
            "anomaly, changepoint, label and labels never are features unless named in --channels.",
        ),
        click.option(
            "--channels", metavar="A,B,...", help="Use only these columns, in this order (comma-separated)."
        ),
        click.option(
            "--fill",
            type=click.Choice(["ffill", "interpolate", "zero", "none"]),
            help="Fill missing values instead of refusing them (none: refuse)." + default("none"),
        ),
        click.option("--decimal", type=click.Choice([".", ","]),
                     help="Decimal mark of the numbers (, for 37,5; then 6.173,50 is 6173.5)." + default(".")),
        click.option(
            "--encoding", metavar="CODEC",
            help="Text encoding, e.g. cp1252 or latin-1." + default("UTF-8, or what a byte-order mark says"),
        ),
        click.option(
            "--timezone", metavar="ZONE",
            help="IANA time zone of naive timestamps, e.g. Europe/Berlin (DST as replay reads it)." + default("UTC"),
        ),
        click.option(
            "--rows", metavar="START:END",
            help="Only these data rows of each file, counted from 0 after the header, END excluded: 400 or :400 "
            "the first 400, 400: the rest (SKAB's protocol: fit --rows 400, evaluate --rows 400:).  [default: all]",
        ),
        click.option(
            "--time-column", metavar="NAME",
            help="The time column, by name (e.g. an epoch-ms column named time_ms); it must be in every file."
            + default("the first named timestamp, time, datetime, date, ts, date_time or time_stamp, else a first "
                      "column of dates"),
        ),
        click.option(
            "--time-format", metavar="FORMAT",
            help="How text timestamps are written, as strptime codes, e.g. '%d.%m.%Y %H:%M:%S' for "
            "20.10.2024 02:00:00 (replay and evaluate reuse it from the model; iso: ISO 8601 or epoch numbers)."
            + default("ISO 8601 or epoch numbers"),
        ),
    ]


def data_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The data-loading options shared by ``command`` (``fit`` or ``evaluate``), with its own label help."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for opt in reversed(_data_options(command)):
            fn = opt(fn)
        return click.option(
            "--label-column", default="anomaly", show_default=True, help=_LABEL_HELP[command]
        )(fn)

    return decorate


# Modules only the `train` extra installs; without them a command says how to get them (exit 69).
TRAIN_MODULES = frozenset({"torch", "onnx", "onnxscript", "onnx_ir", "matplotlib", "scipy"})


class _TrainGroup(clierror.OneLineErrors):
    """The command group; a command that needs the missing `train` extra prints one line and exits 69."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in TRAIN_MODULES:
                raise
            fail(f"this command needs the train extra (module '{exc.name}' is missing): "
                 "pip install 'edgewatch[train,cpu]' (in a source tree: pip install '.[train,cpu]')",
                 clierror.EXIT_UNAVAILABLE, prog="edgewatch-train")


class _UserFormatter(logging.Formatter):
    """``edgewatch-train fit: warning: MESSAGE``, as :func:`edge_runtime.clierror.error_line` writes an error (the
    command read when the record is written: ``benchmark skab`` too)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{clierror.command_path('edgewatch-train')}: {record.levelname.lower()}: {record.getMessage()}"
        return text + "\n" + self.formatException(record.exc_info) if record.exc_info else text


@click.group(cls=_TrainGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=clierror.EPILOG)
@click.version_option(__version__, prog_name="edgewatch-train")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Train edgewatch anomaly models and export them as one self-describing ONNX file.

    \b
    Typical use:
      edgewatch-train fit data/*.csv --out model.onnx
      edgewatch-train inspect model.onnx
      edgewatch-train evaluate model.onnx labelled.csv
    """
    # a warning reads as the error line does (edgewatch-train fit: warning: ...); -v adds the logger and debug lines
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose else _UserFormatter())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])
    from trainer.memory import return_large_buffers

    return_large_buffers()  # before a long recording is read


@main.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="ONNX file to write."
)
@click.option("--like", "like", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="MODEL",
              help="Take the window, channels (in order) and units of MODEL, the live model a retrained one is to "
              "replace: a fleet shadows and promotes only a model of the same window and channels. Options given "
              "win over it (the hops are chosen as usual).")
@click.option("--window", "-w", type=int, help="Window length W in samples.  [default: from the data, 8..64]")
@click.option(
    "--hop", type=int, help="Step between training windows; also the edge's default hop.  [default: from the data; edge W/4]"
)
@click.option("--epochs", default=300, show_default=True, help="Epoch cap; training stops earlier when it converges.")
@click.option(
    "--patience", default=10, show_default=True,
    help="Converged: validation loss improved by less than --min-delta in this many epochs.",
)
@click.option("--min-delta", default=0.005, show_default=True, help="Relative improvement that counts as progress.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--depth", type=int, help="Strided conv levels (each halves the time axis).  [default: 2; 1 for W < 16]")
@click.option("--width", type=int, help="Channels of the first conv (doubled per level).  [default: 16]")
@click.option("--kernel", default=5, show_default=True, help="Conv kernel size (odd).")
@click.option("--latent", type=int, help="Size of the latent code.  [default: W x C / 16, in 4..16]")
@click.option(
    "--noise", default=0.0, show_default=True, help="Denoising: gaussian input noise std (normalised units)."
)
@click.option("--mask", default=0.0, show_default=True, help="Denoising: fraction of input points masked.")
@click.option(
    "--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Validation share (last part of each file)."
)
@click.option(
    "--split",
    type=click.Choice(["time", "file"]),
    default="time",
    show_default=True,
    help="time: last fraction of each file; file: the last whole files.",
)
@click.option(
    "--false-alarms",
    "false_alarms",
    default=1.0,
    show_default=True,
    help="False-alarm budget: normal hop-1 windows above the threshold per 1,000, before --margin.",
)
@click.option(
    "--margin", "--threshold-scale", "margin", type=click.FloatRange(0, min_open=True),
    help="Multiply the calibrated threshold: headroom for normal data that departs from the calibration period.  "
    "[default: 3.75 for lognormal (chosen by leave-one-fault-kind-out), else 1]",
)
@click.option(
    "--calibrate", "calibrate_paths", multiple=True, type=click.Path(path_type=Path),
    help="Separate normal recording(s) to calibrate the threshold on instead of the validation part (repeatable).",
)
@click.option(
    "--drift-limit", default=0.6, show_default=True,
    help="Screen out a channel whose level moves more than this many training std between the training and "
    "validation parts.",
)
@click.option(
    "--score-power", "score_power", default=3.0, show_default=True, type=click.FloatRange(0.5, 16),
    help="p of the score's power mean over the kept channels' relative errors (1: their plain mean, as in "
    "model format 3; larger: one departing channel counts more against the quiet ones).",
)
@click.option("--force", is_flag=True, help="Fit even when there is too little data to calibrate honestly.")
@click.option(
    "--threshold",
    "threshold_method",
    type=click.Choice(["lognormal", "quantile", "pot"]),
    default="lognormal",
    show_default=True,
    help="Calibration method on held-out normal scores (lognormal: a tail fit to the budget).",
)
@click.option("--q", default=0.999, show_default=True, help="quantile: the validation score quantile.")
@click.option(
    "--risk", default=1e-3, show_default=True, help="pot: probability of a normal window exceeding it."
)
@click.option("--level", default=0.98, show_default=True, help="pot: quantile above which peaks are fitted.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--threads",
    default=1,
    show_default=True,
    help="CPU threads for training (small nets are fastest on 1; 0 = torch default).",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also keep a checkpoint here (for `edgewatch-train export`).",
)
@click.option(
    "--quantize", type=click.Choice(["int8"]), help="Also write <out>.int8.onnx and report its score drift."
)
@click.option("--fp16", is_flag=True, help="Also write <out>.fp16.onnx and report its score drift.")
@click.option(
    "--units", metavar="NAME=UNIT,...",
    help="Units of channels, stored in the model: the edge's alerts say 'Pressure low: 3.1 bar, expected 4.6'. "
    "A units row under the CSV header (bar, degC, [mm/s]) is read the same way; these win over it.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option(
    "--state-column", metavar="NAME",
    help="Text column of operating states (e.g. status with RUN/STOP): kept out of the features; with --running, "
    "fit trains and calibrates on running rows only and learns how the edge tells a stop without the column.",
)
@click.option(
    "--running", "running", multiple=True, metavar="VALUE",
    help="A --state-column value in which the machine runs (repeatable, case ignored), e.g. --running RUN.",
)
@click.option(
    "--running-when", metavar="CONDITION",
    help="Running rows by a condition on a channel instead of a state column, e.g. 'motor_speed_rpm>100' "
    "(> >= < <= == !=); the edge applies the same condition.",
)
@data_options("fit")
@_user_errors
def fit(
    data: tuple[Path, ...],
    out: Path,
    like: Path | None,
    window: int | None,
    hop: int | None,
    epochs: int,
    patience: int,
    min_delta: float,
    batch_size: int,
    lr: float,
    depth: int | None,
    width: int | None,
    kernel: int,
    latent: int | None,
    noise: float,
    mask: float,
    val_fraction: float,
    split: str,
    false_alarms: float,
    margin: float | None,
    calibrate_paths: tuple[Path, ...],
    drift_limit: float,
    score_power: float,
    force: bool,
    threshold_method: str,
    q: float,
    risk: float,
    level: float,
    device: str,
    seed: int,
    threads: int,
    checkpoint: Path | None,
    quantize: str | None,
    fp16: bool,
    units: str | None,
    quiet: bool,
    state_column: str | None,
    running: tuple[str, ...],
    running_when: str | None,
    label_column: str,
    exclude: tuple[str, ...],
    channels: str | None,
    fill: str | None,
    decimal: str | None,
    encoding: str | None,
    timezone: str | None,
    time_format: str | None,
    time_column: str | None,
    rows: str | None,
) -> None:
    """Train on DATA (CSV/.xlsx/.parquet/.npy/.npz files or folders), calibrate the threshold, export one ONNX model.

    With no size options, the window, hops and model size are chosen from the data; channels that
    are constant or drift in the training data are screened out of the score (each with its reason).
    When the channels move together (a few common factors leave at most 10 % of their variance) or there
    are 20 or more of them, a cross-channel term also scores what the factors leave unexplained; a drifting
    channel that follows
    them is scored by that term alone. How the files were read (fill, decimal, encoding, time zone, time format, excluded columns) is stored in the
    model; evaluate and replay reuse it. With --state-column/--running or --running-when, only the settled
    running rows are trained on, and the model carries the stopped signature and settling time for the edge.
    """
    from trainer.operating import StateSpec

    spec = StateSpec.of(state_column, running, running_when)

    # Before any data is read (without importing torch): no train extra, or CUDA asked on a machine without it.
    if importlib.util.find_spec("torch") is None:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")
    if device == "cuda":
        from trainer.train import resolve_device

        resolve_device(device)

    from dataclasses import replace

    from trainer.data import DataError, file_units, format_rows, load_paths, parse_rows, read_options

    if epochs < 1 or batch_size < 1 or patience < 1:
        raise ValueError("--epochs, --batch-size and --patience must be >= 1")
    if not 0 <= mask < 1 or noise < 0:
        raise ValueError("--mask must be in [0, 1) and --noise >= 0")
    if not 0 < false_alarms < 1000:
        raise ValueError(f"--false-alarms must be in (0, 1000) per 1,000 windows, got {false_alarms}")
    like_taken: list[str] = []
    like_units: dict[str, str] = {}
    channel_list = _csv_list(channels)
    if like is not None:
        from trainer.model_file import read_metadata

        live = read_metadata(like)
        like_taken = [what for what, mine in (("window", window), ("channels", channels)) if mine is None]
        window = live.window if window is None else window
        if channels is None:  # the live model's names as a list: a name may hold a comma
            clash = sorted({e.lower() for e in exclude} & {c.lower() for c in live.channels})
            if clash:
                raise click.UsageError(f"--exclude {clash[0]!r} is a channel of --like {like.name}: a model without it "
                                       "cannot be shadowed beside the live one (give --channels to choose others)")
            channel_list = list(live.channels)
        like_units = dict(live.units)
    reading = replace(read_options({}, fill=fill, decimal=decimal, encoding=encoding, timezone=timezone,
                                    time_format=time_format, rows=parse_rows(rows),
                                    time_column=time_column),
                      progress=not quiet, state_column=state_column, require_state=bool(state_column))
    try:
        series = load_paths(data, label_column, exclude, channel_list, opts=reading)
    except DataError as exc:
        if like is None or "channels" not in like_taken or "not found" not in str(exc):
            raise
        raise DataError(f"{exc} (a channel of --like {like.name}, which the new model must have)") from None
    for s in series if state_column else ():
        if s.states is None:
            raise ValueError(f"{s.name}: --state-column {state_column!r} not found; columns: {', '.join(s.columns)}")
    cal = load_paths(calibrate_paths, label_column, exclude, series[0].channels, opts=replace(reading, rows=None)) \
        if calibrate_paths else []  # --rows picks from the DATA files; a calibration recording is read whole
    given = parse_units(units, series[0].channels)
    from_rows = file_units(series)
    unit_map = {c: given.get(c) or from_rows.get(c) or like_units[c] for c in series[0].channels
                if c in given or c in from_rows or c in like_units}
    from trainer.pipeline import FitOptions, run_fit  # torch: imported once the data is known good
    from trainer.train import TrainConfig

    params = {"q": q} if threshold_method == "quantile" else (
        {"risk": risk, "level": level} if threshold_method == "pot" else {})
    opts = FitOptions(
        window=window,
        hop=hop,
        depth=depth,
        width=width,
        kernel=kernel,
        latent=latent,
        val_fraction=val_fraction,
        split=split,
        threshold_method=threshold_method,
        threshold_params=params,
        threshold_scale=margin,
        false_alarm_budget=false_alarms / 1000.0,
        drift_limit=drift_limit,
        score_power=score_power,
        calibrate=cal,
        force=force,
        fill=reading.fill,
        preprocessing={**reading.preprocessing(), "exclude": list(exclude), "label_column": label_column,
                       **({"rows": format_rows(reading.rows)} if reading.rows else {})},
        quantize=quantize,
        fp16=fp16,
        checkpoint=checkpoint,
        states=spec,
        units=unit_map,
        train=TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            min_delta=min_delta,
            seed=seed,
            device=device,
            noise=noise,
            mask=mask,
            threads=threads,
        ),
    )
    res = run_fit(series, out, opts, progress=not quiet)
    if like is not None:
        if any(c not in given and c not in from_rows for c in like_units):
            like_taken.append("units")
        click.echo(f"like {like.name} ({live.model_id}): {', '.join(like_taken) or 'nothing'} taken from it (window "
                   f"{live.window}, {len(live.channels)} channels)")
    click.echo(time_line(series, res.meta.sample_period_s, reading.time_format))
    click.echo(fit_report(res))
    if unit_map:
        click.echo("units: " + ", ".join(
            f"{c} {u} ({'--units' if c in given else 'units row' if c in from_rows else '--like'})"
            for c, u in unit_map.items()))


def time_line(series: list[Any], period_s: float | None, time_format: str | None) -> str:
    """``time: column 'Zeitstempel' (--time-format ...), a sample every 10 s (...)``, or what its absence means."""
    names = list(dict.fromkeys(s.time_column for s in series if s.time_column))
    if not names:
        return ("time: no time column (timestamp, time, datetime, ... or a first column of dates; --time-column names "
                "another): delays and rates are counted in samples, and the edge's stale limit is its default")
    how = f" (--time-format '{time_format}')" if time_format else ""
    every = f"a sample every {period_s:g} s (the median step; the model's sample period)" if period_s else \
        "no regular step found (the sample period is unknown)"
    return f"time: column {', '.join(repr(n) for n in names)}{how}, {every}"


def fit_report(res: Any) -> str:
    """What ``fit`` chose, screened, trained, calibrated and wrote (pure formatting of a FitResult)."""
    from edge_runtime.pipeline.health import describe as describe_health
    from trainer.screening import format_screen

    lines = ["sizes:"] + [f"  {n}" for n in (res.sizes.notes if res.sizes else [])]
    kept = sum(s.kept for s in res.screen)
    lines.append(f"channels: {kept} of {len(res.screen)} in the score")
    lines.append(format_screen(res.screen))
    if res.cross is not None:
        lines.append(res.cross.describe())
    t = res.training.summary()
    lines.append(
        f"trained {t['epochs']} epochs (best {t['best_epoch']}), best val loss {t['best_val_loss']:.5f}, "
        f"{t['seconds']:.1f} s, {t['parameters']:,} parameters, {t['windows_per_s']:.0f} windows/s on {t['device']}"
    )
    lines.append(f"  {t['stop_reason']}")
    thr = res.meta.threshold
    params = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in thr.params.items()}
    lines.append(f"threshold {thr.value:.6g} ({thr.method} {json.dumps(params)})")
    if res.meta.states:
        from trainer.operating import describe_states

        lines.append(describe_states(res.meta.states))
    fa = res.false_alarms

    def per_k(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3g}"

    budget, n_val = fa.get("budget_per_1000"), int(fa.get("validation_windows") or 0)
    resolve = "" if not budget or n_val * budget / 1000 >= 3 else (
        f"; {n_val:,} windows cannot resolve {per_k(budget)} in 1,000 (about {math.ceil(3000 / budget):,} would: "
        "more data, or --calibrate FILE with a separate normal recording)")
    same = fa.get("calibrated_on") == "the validation part"
    lines.append(
        f"false alarms per 1,000 normal hop-1 windows: budget {per_k(budget)} (the tail fit's threshold for it, then "
        f"the margin as headroom for normal data that departs from the calibration period), expected "
        f"{per_k(fa.get('expected_per_1000'))} after the margin under that tail, measured "
        f"{per_k(fa.get('validation_per_1000'))} on {n_val:,} held-out validation windows"
        f" ({'the windows it was calibrated on; ' if same else ''}{fa.get('validation_alerts')} alerts under the "
        f"daemon's hysteresis); calibrated on {fa.get('calibrated_on')}{resolve}"
    )
    lines += describe_health(res.meta.health, res.meta.channels)
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in res.export.parity_max_diff.items())
    lines.append(
        f"wrote {res.export.path} ({res.export.size_bytes} bytes, model_id {res.meta.model_id}); "
        f"parity ort vs torch max diff: {diffs}"
    )
    for v in res.export.variants.values():
        d = v["score_drift"]
        lines.append(
            f"wrote {v['path']} ({v['size_bytes']} bytes): score drift vs fp32 max rel {d['max_rel']:.3g}, "
            f"mean rel {d['mean_rel']:.3g}, decision flips {d['decision_flips']:.2%}"
        )
    return "\n".join(lines)


@main.command()
@click.argument("checkpoint", type=InputPath(dir_okay=False, path_type=Path))
@click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="ONNX file to write."
)
@click.option("--quantize", type=click.Choice(["int8"]), help="Also write <out>.int8.onnx.")
@click.option("--fp16", is_flag=True, help="Also write <out>.fp16.onnx.")
@click.option(
    "--exporter",
    type=click.Choice(["auto", "torchscript", "dynamo"]),
    default="auto",
    show_default=True,
    help="torch ONNX exporter (auto: TorchScript, falling back to dynamo).",
)
@_user_errors
def export(checkpoint: Path, out: Path, quantize: str | None, fp16: bool, exporter: str) -> None:
    """Re-export a checkpoint kept by `fit --checkpoint` (same threshold and normalisation)."""
    from trainer.export import export_model
    from trainer.pipeline import load_checkpoint, quiet_quantisation_hints

    model, meta, holdout = load_checkpoint(checkpoint)
    with quiet_quantisation_hints():
        rep = export_model(model, meta, out, holdout, quantize=quantize, fp16=fp16, exporter=exporter)
    click.echo(
        f"wrote {out} ({rep.size_bytes} bytes, model_id {rep.meta.model_id}); parity max diff "
        + ", ".join(f"{k} {v:.2g}" for k, v in rep.parity_max_diff.items())
    )
    for v in rep.variants.values():
        click.echo(f"wrote {v['path']}: score drift {json.dumps(v['score_drift'])}")


@main.command()
@click.argument("model", type=InputPath(dir_okay=False, path_type=Path))
@click.option("--full", is_flag=True, help="Print every number of the metadata (a many-channel model's matrices run "
              "to thousands of lines); without it, lists of more than 16 numbers are shown by their shape.")
@_user_errors
def inspect(model: Path, full: bool) -> None:
    """Print a model's contract: inputs, outputs, opset, size and metadata."""
    from trainer.model_file import ExportError, describe_model

    try:
        text = describe_model(model, full=full)
    except ContractError as exc:
        raise _named(exc, model) from None
    except (ExportError, OSError):
        raise
    except Exception as exc:  # onnx raises a variety of decode errors for non-ONNX files
        raise clierror.with_code(ValueError(f"{model}: not a readable ONNX file ({type(exc).__name__})"),
                                 clierror.EXIT_DATAERR) from None
    click.echo(text)


def _named(exc: ContractError, path: Path) -> ContractError:
    """``exc`` with the file named first (the contract's messages are about the document, not the file)."""
    return exc if str(exc).startswith(str(path)) else ContractError(f"{path}: {exc}")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[MODEL] [DATA]...")
@click.option(
    "--model", "-m", "model_path", type=InputPath(dir_okay=False, path_type=Path),
    help="The ONNX model (or give it first, before DATA).",
)
@click.option(
    "--data",
    "-d",
    "data",
    multiple=True,
    type=click.Path(path_type=Path),
    help="CSV/.npz file or folder (repeatable, or give them after MODEL); labelled, or normal data for its "
         "alerts per day.",
)
@click.option(
    "--hop",
    type=click.IntRange(min=1),
    help="The daemon's scoring hop (its input.hop).  [default: the model's own, as the daemon]",
)
@click.option("--raise-after", type=click.IntRange(min=1), default=AlertPolicy.raise_after, show_default=True,
              help="The daemon's alerts.raise_after: consecutive windows above the threshold to raise.")
@click.option("--clear-after", type=click.IntRange(min=1), default=AlertPolicy.clear_after, show_default=True,
              help="The daemon's alerts.clear_after: consecutive windows below clear-ratio x threshold to clear.")
@click.option("--clear-ratio", type=click.FloatRange(0, 1, min_open=True), default=0.8, show_default=True,
              help="The daemon's alerts.clear_ratio.")
@click.option(
    "--tolerance",
    type=click.IntRange(min=0),
    help="Samples after a labelled anomaly in which an alert still counts as true.  [default: window - 1]",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("evaluation.json"),
    show_default=True,
    help="JSON report to write.",
)
@click.option(
    "--plot",
    "png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("evaluation.png"),
    show_default=True,
    help="PNG plot to write.",
)
@click.option("--no-plot", is_flag=True, help="Skip the plot.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines (reading, scoring).")
@data_options("evaluate")
@_user_errors
def evaluate(
    paths: tuple[Path, ...],
    model_path: Path | None,
    data: tuple[Path, ...],
    hop: int | None,
    raise_after: int,
    clear_after: int,
    clear_ratio: float,
    tolerance: int | None,
    report: Path,
    png: Path,
    no_plot: bool,
    quiet: bool,
    label_column: str,
    exclude: tuple[str, ...],
    channels: str | None,
    fill: str | None,
    decimal: str | None,
    encoding: str | None,
    timezone: str | None,
    time_format: str | None,
    time_column: str | None,
    rows: str | None,
) -> None:
    """Score data through the edge's model loader; decide as the daemon does; report what an operator sees.

    MODEL first, then DATA (files or folders), as `evaluate model.onnx labelled.csv`; --model and --data say the
    same.

    How files are read (fill, decimal, encoding, time zone, time format) comes from the model unless given here.

    Labelled data: point-wise F1 (beside the flag-every-point F1), FAR, MAR, event recall and
    precision, detection delay, false alarms per day, ROC-AUC, PR-AUC, VUS-PR. Unlabelled data:
    alerts per day.
    """
    from trainer import evaluate as ev
    from trainer.data import load_paths, parse_rows, read_options
    from trainer.model_file import read_metadata

    model_path, data = _model_and_data(paths, model_path, data)
    try:
        meta = read_metadata(model_path)
    except ContractError as exc:
        raise _named(exc, model_path) from None
    reading = read_options(meta.preprocessing, fill=fill, decimal=decimal, encoding=encoding, timezone=timezone,
                           time_format=time_format, rows=parse_rows(rows), time_column=time_column,
                           keep_time=True, progress=not quiet)  # the alert list's times (and the plot's)
    series = load_paths(data, label_column, exclude, _csv_list(channels) or meta.channels, opts=reading)
    for note in [*unused_label_notes(series, label_column), *unused_column_notes(series, label_column, exclude,
                                                                                   meta.preprocessing)]:
        click.echo(f"edgewatch-train evaluate: note: {note}", err=True)
    policy = AlertPolicy(raise_after=raise_after, clear_after=clear_after, clear_ratio=clear_ratio)
    rep = ev.evaluate(model_path, series, hop, policy, tolerance, progress=not quiet,
                      row_offset=(reading.rows or (0, None))[0])
    ev.write_report(rep, report)
    if not no_plot:
        ev.plot(model_path, series, png, rep)
    click.echo(ev.format_report(rep))
    click.echo(f"wrote {report}" + ("" if no_plot else f" and {png}"))


def unused_column_notes(series: list[Any], label_column: str, exclude: tuple[str, ...],
                        preprocessing: dict[str, Any]) -> list[str]:
    """One line per file with columns the model does not score (not its channels, the time, label or state column,
    nor excluded here or at fit): they are read past, which the user may not expect."""
    from trainer.data import LABEL_LIKE_COLUMNS

    skip = {c.strip().lower() for c in (label_column, *exclude, *(preprocessing.get("exclude") or []),
                                        preprocessing.get("state_column") or "", *LABEL_LIKE_COLUMNS)}
    notes = []
    for s in series:
        known = skip | {c.lower() for c in s.channels} | ({s.time_column.lower()} if s.time_column else set())
        extra = [c for c in s.columns if c.strip() and c.strip().lower() not in known]
        if extra:
            shown = ", ".join(repr(c) for c in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            notes.append(f"{s.name}: column{'s' if len(extra) > 1 else ''} {shown} not among the model's channels: "
                         "not scored")
    return notes


def unused_label_notes(series: list[Any], label_column: str) -> list[str]:
    """One line per file scored as unlabelled although it has a label-like column (``label``, ``changepoint``...)
    other than ``label_column``: the user may have meant it (--label-column)."""
    from trainer.data import LABEL_LIKE_COLUMNS

    notes = []
    for s in series:
        if s.labels is not None:
            continue
        like = [c for c in s.columns if c.strip().lower() in LABEL_LIKE_COLUMNS and c != label_column]
        if like:
            notes.append(f"{s.name}: no {label_column!r} column, so it is scored as unlabelled normal data (alerts "
                         f"per day); its column {like[0]!r} is not used: "
                         f"--label-column {shlex.quote(like[0])} measures against it")
    return notes


def _model_and_data(paths: tuple[Path, ...], model: Path | None,
                    data: tuple[Path, ...]) -> tuple[Path, tuple[Path, ...]]:
    """``evaluate``'s model and data from ``MODEL DATA...`` and/or ``--model``/``--data`` (usage errors name what
    is missing)."""
    rest = list(paths)
    if model is None:
        if not rest:
            raise click.UsageError("give the model and the data: evaluate MODEL DATA... (or --model/--data)")
        model = rest.pop(0)
        if model.suffix.lower() != ".onnx" and (model.is_dir() or model.suffix.lower() in {".csv", ".npz", ".npy",
                                                                                           ".xlsx", ".parquet"}):
            raise click.UsageError(f"{model} is data, not a model: evaluate MODEL DATA... (or --model FILE)")
        if not model.is_file():
            why = "a folder, not a model file" if model.is_dir() else "no such file"
            raise clierror.with_code(FileNotFoundError(f"model {model}: {why}"), clierror.EXIT_NOINPUT)
    data = (*data, *rest)
    if not data:
        raise click.UsageError(f"no data to score with {model}: evaluate MODEL DATA... (or --data PATH)")
    return model, data


@main.command("demo-data")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--steps", default=20000, show_default=True)
@click.option("--channels", "n_channels", default=4, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--anomalies", default=0, show_default=True, help="Inject this many labelled anomalies.")
@_user_errors
def demo_data(out: Path, steps: int, n_channels: int, seed: int, anomalies: int) -> None:
    """Write synthetic sensor data (timestamp, channels[, anomaly]) as CSV."""
    from edge_runtime.tools import synthetic as syn

    if steps < 1 or n_channels < 1:
        raise ValueError("--steps and --channels must be >= 1")
    names = syn.channel_names(n_channels)
    if anomalies:
        x, labels = syn.labelled_series(
            steps, n_channels, syn.random_anomalies(steps, n_channels, anomalies, seed), seed
        )
    else:
        x, labels = syn.normal_series(steps, n_channels, seed), None
    syn.write_csv(out, x, names, labels)
    click.echo(f"wrote {out} ({steps} rows, {n_channels} channels, {anomalies} anomalies)")


from trainer.benchmark_cli import benchmark  # noqa: E402  (kept last: the group is defined above)
from trainer.demo_cli import demo_command  # noqa: E402
from trainer.fleet_cli import COMMANDS as FLEET_COMMANDS  # noqa: E402

main.add_command(benchmark)
main.add_command(demo_command)
for _cmd in FLEET_COMMANDS:
    main.add_command(_cmd)


if __name__ == "__main__":
    main()
