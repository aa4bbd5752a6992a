"""Tables of the benchmark reports: fixed-width for the terminal, markdown for docs/EVALUATION.md. Pure."""

from __future__ import annotations

from typing import Any

from trainer.benchmark import DEFAULTS_LABEL, DETECTORS, EDGEWATCH, kind_key
from trainer.benchmark_synthetic import GROUPS


def _f(v: float | None, pct: bool = False, width: int = 6, digits: int = 3) -> str:
    if v is None:
        return "n/a".rjust(width)
    return f"{100 * v:{width}.1f}" if pct else f"{v:{width}.{digits}f}"


#: Table columns: (short name for the terminal, width, markdown name).
COLUMNS = (
    ("files", 5, "files"), ("F1", 6, "F1"), ("allF1", 6, "flag-all F1"), ("FAR%", 6, "FAR %"),
    ("MAR%", 6, "MAR %"), ("events", 7, "events detected"), ("alerts", 9, "alerts true"),
    ("dly50s", 6, "delay median s"), ("dly90s", 6, "delay p90 s"), ("FA/day", 7, "false alarms / day"),
    ("ROC", 6, "ROC-AUC"), ("PR", 6, "PR-AUC"), ("VUSPR", 6, "VUS-PR"), ("wROC", 6, "window ROC-AUC"),
    ("worst", 6, "worst window ROC-AUC"),
)
TABLE_HEAD = f"{'':<22} " + " ".join(f"{c:>{w}}" for c, w, _ in COLUMNS)
TABLE_NOTE = (
    "allF1: F1 of flagging every point; events: detected/labelled; alerts: true/raised; dly: detection delay "
    "median/p90 (s); FA/day: false alerts per day of normal operation; ROC, PR, VUSPR: point scores, mean "
    "over files; wROC: window ROC-AUC, mean and worst file"
)


def row_cells(m: dict[str, Any]) -> list[str]:
    """The cells of one pooled block, in :data:`COLUMNS` order."""

    def v(x: float | None, pct: bool = False, digits: int = 3) -> str:
        return _f(x, pct, 1, digits).strip()

    return [
        str(m["files"]), v(m["f1"]), v(m["flag_all_f1"]), v(m["far"], True), v(m["mar"], True),
        f"{m['detected']}/{m['events']}", f"{m['true_alerts']}/{m['alerts']}", v(m["delay_median_s"], digits=0),
        v(m["delay_p90_s"], digits=0), v(m["false_alarms_per_day"], digits=1), v(m["roc_auc_mean"]),
        v(m["pr_auc_mean"]), v(m["vus_pr_mean"]), v(m["window_roc_auc_mean"]), v(m["window_roc_auc_worst"]),
    ]


def table_row(label: str, m: dict[str, Any]) -> str:
    """One terminal line of a pooled block (see :data:`TABLE_HEAD`)."""
    cells = row_cells(m) if m.get("files") else ["0"]
    return f"{label[:22]:<22} " + " ".join(f"{c:>{w}}" for c, (_, w, _) in zip(cells, COLUMNS, strict=False))


def format_suite(detectors: dict[str, Any], title: str) -> str:
    """Per detector: a row per kind and the overall row."""
    lines = [title, TABLE_NOTE, TABLE_HEAD]
    for det, block in detectors.items():
        lines.append(f"-- {det}")
        for k, m in block["kinds"].items():
            lines.append(table_row(k, m))
        lines.append(table_row("OVERALL", block["overall"]))
        if det == EDGEWATCH:
            la = block["overall"]["centred_lookahead"]
            lines.append(f"{'  look-ahead (centred)':<22} {'':5} {_f(la['f1'])} {'':6} {_f(la['far'], True)} {_f(la['mar'], True)}"
                         "   (not causal: needs W-1 future samples)")
    return "\n".join(lines)


def format_loko(lk: dict[str, Any]) -> str:
    lines = [f"leave-one-kind-out over {lk['grid']} (objective {lk['objective']})",
             f"{'left-out kind':<22} {'chosen':<18} {'F1':>6} {'FAR%':>6} {'MAR%':>6} {'events':>7}"]
    width = max([18] + [len(str(m["chosen"]["fit"])) + 18 for m in lk["per_kind_left_out"].values()])
    for k, m in lk["per_kind_left_out"].items():
        ch = m["chosen"]
        ch = ("" if ch["fit"] == DEFAULTS_LABEL else ch["fit"] + " ") + f"x{ch['threshold_scale']} raise {ch['raise_after']}"
        lines.append(f"{k[:22]:<22} {ch:<{width}} {_f(m['f1'])} {_f(m['far'], True)} {_f(m['mar'], True)} "
                     f"{m['detected']:>3}/{m['events']:<3}")
    e = lk["left_out_estimate"]
    lines.append(f"{'LEFT-OUT ESTIMATE':<22} {'':<{width}} {_f(e['f1'])} {_f(e['far'], True)} {_f(e['mar'], True)} "
                 f"{e['detected']:>3}/{e['events']:<3}")
    for label, m in lk["in_sample"].items():
        lines.append(f"{'in-sample ' + label:<{23 + width}} {_f(m['f1'])} {_f(m['far'], True)} {_f(m['mar'], True)}")
    return "\n".join(lines)


def format_normal(normal: dict[str, Any]) -> str:
    lines = []
    for det, files in normal.items():
        for name, a in files.items():
            per_day = "n/a" if a["alerts_per_day"] is None else f"{a['alerts_per_day']:.2f}"
            budget = a.get("budget_per_1000")
            above = "n/a" if a["windows_above_per_1000"] is None else f"{a['windows_above_per_1000']:.1f}"
            lines.append(
                f"{det[:34]:<34} {name}: {a['alerts']} alerts over {a['scored_points']} points ({per_day} per day), "
                f"raised {_f(a['raised_fraction'], True).strip()} % of the time, {above} windows above per 1,000"
                + ("" if budget is None else f" (budget {budget:g})")
            )
    return "\n".join(lines)



MD_HEAD = "| | " + " | ".join(md for _, _, md in COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS)


def md_row(label: str, m: dict[str, Any]) -> str:
    """One markdown row of a pooled block."""
    cells = row_cells(m) if m.get("files") else ["0"] + [""] * (len(COLUMNS) - 1)
    return f"| {label} | " + " | ".join(cells) + " |"


def markdown(kinds_by_detector: dict[str, dict[str, Any]], overall: dict[str, Any], order: bool = True) -> str:
    """Markdown tables: per detector, a row per kind (SKAB's order when ``order``) and the overall row."""
    out = []
    for det, kinds in kinds_by_detector.items():
        out += [f"**{det}**", "", MD_HEAD]
        out += [md_row(k, kinds[k]) for k in (sorted(kinds, key=kind_key) if order else kinds)]
        out += [md_row("**all**", overall[det]), ""]
    return "\n".join(out)


def skab_markdown(rep: dict[str, Any]) -> str:
    """The SKAB report's tables as markdown."""
    d = rep["detectors"]
    return markdown({k: d[k]["kinds"] for k in DETECTORS if k in d}, {k: d[k]["overall"] for k in DETECTORS if k in d})


def synthetic_markdown(rep: dict[str, Any]) -> str:
    """The synthetic report's tables as markdown: by kind, by plant, by magnitude."""
    out = []
    for g in GROUPS:
        by = rep["by"][g]
        out += [f"By {g}:", "", markdown({k: by[k] for k in DETECTORS if k in by}, rep["overall"], order=False)]
    return "\n".join(out)


def format_synthetic(rep: dict[str, Any]) -> str:
    lines = [f"Synthetic suite: magnitudes {rep['magnitudes']} x the generator's; decisions as the daemon makes them",
             TABLE_NOTE, TABLE_HEAD]
    for g in GROUPS:
        for det, values in rep["by"][g].items():
            lines.append(f"-- {det}, by {g}")
            lines += [table_row(v, m) for v, m in values.items()]
            if g == GROUPS[-1]:
                lines.append(table_row("OVERALL", rep["overall"][det]))
    lines.append("\nnormal test rows of each plant (no anomaly):")
    lines.append(format_normal(rep["normal_recordings"]))
    return "\n".join(lines)
