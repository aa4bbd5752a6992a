"""Out-of-fold estimate, fold choices and ablation for SKAB valve1: the selection in docs/EVALUATION.md.

Every model goes through the edge path: ``trainer.benchmark.run_per_file`` trains, calibrates and
exports one ONNX model per file (first 400 rows) and scores it with onnxruntime. Each (model
configuration, seed) is trained ONCE with threshold scale 1; its hop-1 window scores and calibrated
thresholds are cached as ``.npz`` under ``--cache``. The post-processing grid (threshold scale,
point rule, hysteresis) is applied to the cached scores with ``trainer.benchmark.decide``, which gives a
count table (seeds, configs, files, 4). ``trainer.benchmark.repeated_two_fold`` then runs the
repeated leave-half-the-files-out selection with the objective ``F1 - 2 * max(0, FAR - 0.08)``.

Usage (from the repository root; SKAB is read in place from ``../shared/data/skab`` or ``$SKAB_DIR``)::

    .venv/bin/python lab/skab_selection.py --out benchmarks/skab_selection.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.pipeline.alerts import AlertPolicy
from trainer.benchmark import (
    POINT_RULES,
    BenchmarkConfig,
    Counts,
    find_csvs,
    load,
    rates_of,
    repeated_two_fold,
    run_per_file,
    selection_objective,
)
from trainer.export import ExportError

log = logging.getLogger("skab_selection")
ROOT = Path(__file__).resolve().parent.parent

FLOW = "Volume Flow RateRMS"
CHANNEL_SETS: dict[str, list[str] | None] = {
    "flow": [FLOW],
    "pressure+flow": ["Pressure", FLOW],
    "no-temp": ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Voltage", FLOW],
    "all": None,
}
DEFAULT = {"window": 60, "channels": "flow", "rule": "majority", "scale": 2.0, "hysteresis": False}
#: Two-lever rows reported beside the one-lever ablation (when they are in the grid).
EXTRA_ROWS = {
    "hysteresis + causal rule": {**DEFAULT, "rule": "causal", "hysteresis": True},
    "hysteresis + scale 2.5": {**DEFAULT, "scale": 2.5, "hysteresis": True},
    "causal rule, W 45": {**DEFAULT, "rule": "causal", "window": 45},
}


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def _names(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def score_model(
    data: Path,
    window: int,
    channels: str,
    seed: int,
    epochs: int,
    val_fraction: float,
    denoise: float,
    cache: Path,
) -> Path:
    """Train + export + ONNX-score one model per labelled file; cache the window scores. Returns the .npz."""
    key = f"W{window}-{channels}-s{seed}-e{epochs}-v{val_fraction:g}" + (f"-n{denoise:g}" if denoise else "")
    key += ".npz"
    path = cache / key
    if path.is_file():
        return path
    cfg = BenchmarkConfig(
        channels=CHANNEL_SETS[channels],
        window=window,
        epochs=epochs,
        seed=seed,
        val_fraction=val_fraction,
        denoise=denoise,
        threshold_scale=1.0,
    )
    cfg.validate()
    labelled, _ = find_csvs(data, cfg.label_column)
    series = [load(p, cfg) for p in labelled]
    names = [p.relative_to(data).as_posix() for p in labelled]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgewatch-skabsel-") as tmp:
        results = run_per_file(series, names, cfg, Path(tmp))
    arrays: dict[str, Any] = {
        "names": np.array(names),
        "thresholds": np.array([r.threshold for r in results]),
        "config": np.array(json.dumps(asdict(cfg))),
    }
    for i, r in enumerate(results):
        arrays[f"scores_{i}"] = r.scores
        arrays[f"labels_{i}"] = r.labels
    tmp_path = path.with_suffix(".part.npz")
    np.savez(tmp_path, **arrays)
    tmp_path.replace(path)
    log.info("%s: %d files, %.1f s", key, len(results), time.perf_counter() - t0)
    return path


def post_grid(scales: list[float], rules: list[str], hysteresis: list[bool]) -> list[dict[str, Any]]:
    """Threshold scale x point rule x hysteresis, in a fixed order (ties in the selection go to the first)."""
    return [{"rule": r, "scale": s, "hysteresis": h} for r in rules for s in scales for h in hysteresis]


def count_table(npz: Path, post: list[dict[str, Any]], window: int, train_rows: int = 400) -> np.ndarray:
    """Counts (P, F, 4) of every post-processing setting on every file of one cached model set."""
    from trainer.benchmark import decide

    z = np.load(npz)
    n_files = len(z["names"])
    out = np.zeros((len(post), n_files, 4), dtype=np.int64)
    policy = AlertPolicy()
    for f in range(n_files):
        scores, labels, base = z[f"scores_{f}"], z[f"labels_{f}"], float(z["thresholds"][f])
        for p, pp in enumerate(post):
            flags = decide(
                scores,
                base * pp["scale"],
                len(labels),
                window,
                pp["rule"],
                policy if pp["hysteresis"] else None,
            )
            c = Counts.of(flags[train_rows:], labels[train_rows:])
            out[p, f] = (c.tp, c.fp, c.fn, c.tn)
    return out


def _rates(c: np.ndarray) -> dict[str, float]:
    f1, far, mar = rates_of(c)
    return {"f1": round(float(f1), 4), "far": round(float(far), 4), "mar": round(float(mar), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("SKAB_DIR", ROOT.parent / "shared/data/skab"))
    )
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgewatch-skab-scores")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "skab_selection.json")
    ap.add_argument("--subdir", default="valve1", help="labelled files are taken from DATA/SUBDIR")
    ap.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    ap.add_argument("--splits", type=int, default=50, help="random 8+8 splits (each gives 2 folds)")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--windows", type=_ints, default=[20, 30, 45, 60])
    ap.add_argument("--channel-sets", type=_names, default=list(CHANNEL_SETS))
    ap.add_argument("--scales", type=_floats, default=[1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 8.0])
    ap.add_argument("--rules", type=_names, default=list(POINT_RULES))
    ap.add_argument("--hysteresis", type=_names, default=["off", "on"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--denoise", type=float, default=0.0, help="training input noise std (denoising AE)")
    ap.add_argument("--jobs", type=int, default=1, help="models trained in parallel (each uses 1 thread)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = args.data / args.subdir
    if not data.is_dir():
        print(f"error: {data}: not a directory (set SKAB_DIR or --data)", file=sys.stderr)
        return 2
    bad = [c for c in args.channel_sets if c not in CHANNEL_SETS] + [
        r for r in args.rules if r not in POINT_RULES
    ]
    if bad:
        print(f"error: unknown channel set or rule: {', '.join(bad)}", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    models = [(w, ch) for ch in args.channel_sets for w in args.windows]
    jobs = [(m, s) for m in models for s in args.seeds]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        futs = {
            (m, s): ex.submit(
                score_model, data, m[0], m[1], s, args.epochs, args.val_fraction, args.denoise, args.cache
            )
            for m, s in jobs
        }
        npz, failed = {}, {}
        for (m, sd), f in futs.items():
            try:
                npz[(m, sd)] = f.result()
            except ExportError as exc:  # the export's ONNX-vs-torch parity gate refused a model
                msg = re.sub(r"\S*/(per-file-\d+\.onnx)", r"\1", " ".join(str(exc).split()))
                failed[f"W{m[0]}-{m[1]}-s{sd}"] = msg  # per-file-<i>.onnx: the i-th file of "files"
                log.warning("dropping model W%d-%s from the grid: %s", m[0], m[1], exc)
    # a model set that cannot be exported for every seed leaves the grid (for all seeds)
    models = [m for m in models if all((m, sd) in npz for sd in args.seeds)]
    train_s = time.perf_counter() - t0
    post = post_grid(args.scales, args.rules, [h == "on" for h in args.hysteresis])
    configs = [{"window": w, "channels": ch, **pp} for w, ch in models for pp in post]
    tables = [np.stack([count_table(npz[(m, s)], post, m[0]) for m in models]) for s in args.seeds]
    counts = np.stack(tables).reshape(len(args.seeds), len(configs), -1, 4)  # (S, J, F, 4)
    names = [str(n) for n in np.load(npz[(models[0], args.seeds[0])])["names"]]

    sel = repeated_two_fold(counts, n_splits=args.splits, seed=args.split_seed)
    chosen = Counter(int(j) for j in sel.choices.ravel())
    pooled = counts.sum(axis=0).sum(axis=1)  # (J, 4): over seeds and files
    obj = selection_objective(pooled)
    best = int(np.argmax(obj))

    def row(j: int) -> dict[str, Any]:
        per_seed = [_rates(counts[s, j].sum(axis=0)) for s in range(len(args.seeds))]
        return {**configs[j], **_rates(pooled[j]), "objective": round(float(obj[j]), 4), "per_seed": per_seed}

    default_j = next((j for j, c in enumerate(configs) if c == DEFAULT), None)
    ablation = []
    if default_j is not None:
        ablation.append({"change": "defaults", **row(default_j)})
        for j, c in enumerate(configs):
            diff = [k for k in DEFAULT if c[k] != DEFAULT[k]]
            if len(diff) == 1:
                ablation.append({"change": f"{diff[0]}={c[diff[0]]}", **row(j)})
    extra = {name: row(configs.index(c)) for name, c in EXTRA_ROWS.items() if c in configs}
    best_per_channels = {}
    for ch in args.channel_sets:
        js = [j for j, c in enumerate(configs) if c["channels"] == ch]
        best_per_channels[ch] = row(max(js, key=lambda j: obj[j]))
    report = {
        "command": "lab/skab_selection.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": str(data),
        "files": names,
        "seeds": args.seeds,
        "grid": {
            "windows": args.windows,
            "channel_sets": {k: CHANNEL_SETS[k] for k in args.channel_sets},
            "scales": args.scales,
            "rules": args.rules,
            "hysteresis": args.hysteresis,
            "epochs": args.epochs,
            "val_fraction": args.val_fraction,
            "denoise": args.denoise,
            "threshold": "quantile q0.999 of the validation window scores x scale",
            "configs": len(configs),
        },
        "dropped_models": failed,
        "objective": "pooled F1 - 2 * max(0, FAR - 0.08)",
        "scheme": f"{args.splits} random {len(names) // 2}+{len(names) - len(names) // 2} splits x 2 folds; "
        f"choice on counts pooled over seeds {args.seeds}; out-of-fold rates per (split, seed)",
        "out_of_fold": sel.rates(),
        "fold_choices": [
            {"folds": n, **configs[j]} for j, n in sorted(chosen.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "folds": int(sel.choices.size),
        "chosen_on_all_files": row(best),
        "ablation_pooled_over_seeds": ablation,
        "two_lever_rows": extra,
        "best_per_channel_set": best_per_channels,
        "seconds": {"training_and_scoring": round(train_s, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    o = report["out_of_fold"]
    print(
        f"out-of-fold ({args.splits} splits x {len(args.seeds)} seeds): "
        f"F1 {o['f1']['mean']:.3f} ± {o['f1']['std']:.3f}, FAR {100 * o['far']['mean']:.1f} ± "
        f"{100 * o['far']['std']:.1f} %, MAR {100 * o['mar']['mean']:.1f} ± {100 * o['mar']['std']:.1f} %"
    )
    for fc in report["fold_choices"][:6]:
        print(f"  {fc['folds']:3d} folds: {fc}")
    print(f"chosen on all files: {report['chosen_on_all_files']}")
    print(f"report: {args.out} ({report['seconds']['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
