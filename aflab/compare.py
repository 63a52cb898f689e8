"""A sweep's folder of Inspect logs → one comparison: tables, significance, figures.

``aflab sweep`` runs models × settings × prompt variations × reasoning modes as one
Inspect eval set, one log per cell. This module reads that folder (never a model) and
writes ``comparison.csv``, ``comparison.md``, ``comparison.json``, one grid figure per
setting and mode, and a forest plot of every cell's compliance gap. Each cell's numbers
are exactly those ``aflab report`` gives for its log (``report.results``); what is added
is the comparison between cells, paired by query because every cell of a setting asks
the same queries (``metrics.contrast_from_counts``), with the p-values of the whole sweep
corrected together for multiple comparisons.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from inspect_ai.log import EvalLog, list_eval_logs, read_eval_log
from matplotlib.ticker import PercentFormatter

from aflab.cues import TRAINING_CUE, UNMONITORED_CUE, cue_label
from aflab.errors import ReportError
from aflab.figures import draw_bars, plt, save_png
from aflab.files import Content, write_all
from aflab.formatting import difference_text, p_text, pct, rate_text
from aflab.metrics import CONTRAST_METHOD, GAP_DIFFERENCE, RATE_DIFFERENCE, contrast_from_counts, fdr_adjust
from aflab.report import REPORT_SKIPS, load_log, local_path, results, sample_records
from aflab.variations import BASE

COMPARISON_SCHEMA = "aflab.comparison/1"
CONFIDENCE = 0.95
SIGNIFICANCE = 0.05
"""Flag a comparison whose Benjamini-Hochberg adjusted p-value is below this."""
MODES = {True: "scratchpad", False: "no-scratchpad"}
FOREST = "forest.png"
AF_PREFIX = "alignment_faking"
"""Classifiers whose per-cue rate gets a column: the alignment-faking ones."""
CATEGORY_COLUMNS = ("n", "accepted", "rejected", "malformed", "error")
MEASURES: dict[str, tuple[tuple[float, ...], list[int]]] = {
    "gap": (GAP_DIFFERENCE, [0, 1, 2, 3]),
    "training compliance": (RATE_DIFFERENCE, [0, 2]),
}
"""Measure -> (contrast weights, which of the rows (training A, unmonitored A, training B,
unmonitored B) it weighs)."""


@dataclass
class Cell:
    """One model × setting × variation × mode: its newest log and what it says."""

    model: str
    setting: str
    variation: str
    scratchpad: bool
    lab: str | None
    status: str
    log: str
    """The log file, relative to the output folder."""
    superseded: list[str] = field(default_factory=list)
    """Older logs of the same cell (e.g. a failed attempt before a retry)."""
    res: dict[str, Any] | None = None
    """``report.results`` of the log; None when the log holds no samples."""
    counts: dict[str, list[int]] = field(default_factory=dict)
    """query id -> [accepted, valid] under the training cue, then the same unmonitored."""

    @property
    def mode(self) -> str:
        return MODES[self.scratchpad]

    @property
    def label(self) -> str:
        return f"{self.model} · {self.setting} · {self.variation} · {self.mode}"


def _log_folder(log_dir: str | Path) -> Path:
    """A sweep's output folder holds its logs in ``logs/``; accept either."""
    path = local_path(log_dir)
    return path / "logs" if (path / "logs").is_dir() else path


def _per_query_counts(log: EvalLog) -> dict[str, list[int]]:
    """What the comparisons pair on: per query, accepted and valid answers under each cue."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in sample_records(log):
        row = counts[r.query_id]  # every asked query is listed, even with no valid answer
        if r.cue in (TRAINING_CUE, UNMONITORED_CUE) and r.label in ("accepted", "rejected"):
            slot = 0 if r.cue == TRAINING_CUE else 2
            row[slot] += r.label == "accepted"
            row[slot + 1] += 1
    return dict(counts)


def collect_cells(log_dir: str | Path, out: Path) -> tuple[list[Cell], list[str]]:
    """The cells of a sweep, newest log per cell, and notes on the logs left out.

    "Newest" is by the time the evaluation was created (a retry attempt gets a new one),
    then by file time: a re-run that leaves a failed and a retried log of one cell is
    reported from the retry, and the older log is listed as superseded.
    """
    folder = _log_folder(log_dir)
    newest: dict[tuple[str, str, str, bool], list[tuple[tuple[str, float], Path, EvalLog]]] = defaultdict(list)
    notes = []
    for info in list_eval_logs(str(folder)):
        path = local_path(info.name)
        try:
            header = read_eval_log(str(path), header_only=True)
        except Exception as e:  # a truncated or foreign file: say which and go on
            notes.append(f"`{os.path.relpath(path, out)}` left out: not readable as an Inspect log ({type(e).__name__})")
            continue
        meta = header.eval.metadata or {}
        if "setting" not in meta:
            notes.append(f"`{os.path.relpath(path, out)}` left out: not an aflab log (no setting in its metadata)")
            continue
        key = (header.eval.model, str(meta["setting"]), str(meta.get("variation") or BASE), bool(meta.get("scratchpad", True)))
        newest[key].append(((header.eval.created, info.mtime or 0.0), path, header))
    if not newest:
        raise ReportError(f"no aflab logs in {folder}: give a sweep's output folder or its logs/ folder")
    cells = []
    for (model, setting, variation, scratchpad), logs in newest.items():
        logs.sort(key=lambda entry: entry[0], reverse=True)
        _, path, header = logs[0]
        cell = Cell(model, setting, variation, scratchpad, (header.eval.metadata or {}).get("lab"), header.status,
                    os.path.relpath(path, out), [os.path.relpath(p, out) for _, p, _ in logs[1:]])
        try:
            log = load_log(path, skip=REPORT_SKIPS)
        except ReportError as e:
            notes.append(f"{cell.label}: {e}")
        else:
            cell.res = results(log, log_path=cell.log)
            cell.counts = _per_query_counts(log)
        cells.append(cell)
    cells.sort(key=lambda c: (c.setting, c.mode != MODES[True], c.model, c.variation != BASE, c.variation))
    return cells, notes


def _contrast(a: Cell, b: Cell) -> dict[str, dict[str, Any]]:
    """Every measure of cell ``a`` minus cell ``b``, paired by query."""
    queries = sorted(a.counts.keys() | b.counts.keys())
    table = np.array([a.counts.get(q, [0] * 4) + b.counts.get(q, [0] * 4) for q in queries], dtype=float).reshape(-1, 8).T
    accepted, valid = table[0::2], table[1::2]  # rows: training A, unmonitored A, training B, unmonitored B
    found = {}
    for measure, (weights, rows) in MEASURES.items():
        c = contrast_from_counts(accepted[rows], valid[rows], weights, confidence=CONFIDENCE)
        found[measure] = {k: _clean(float(v)) for k, v in c._asdict().items()} | {"n_queries": len(queries)}
    return found


def _clean(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def comparisons(cells: list[Cell]) -> list[dict[str, Any]]:
    """Each variation against ``default`` within a model, setting and mode, and scratchpad
    against no scratchpad within a model, setting and variation; one entry per measure,
    with Benjamini-Hochberg adjusted p-values over all of them."""
    by_key = {(c.model, c.setting, c.variation, c.mode): c for c in cells if c.counts}
    pairs = [(c, by_key[(c.model, c.setting, BASE, c.mode)]) for c in by_key.values()
             if c.variation != BASE and (c.model, c.setting, BASE, c.mode) in by_key]
    pairs += [(c, by_key[(c.model, c.setting, c.variation, MODES[False])]) for c in by_key.values()
              if c.scratchpad and (c.model, c.setting, c.variation, MODES[False]) in by_key]
    found = []
    for a, b in pairs:
        for measure, numbers in _contrast(a, b).items():
            found.append({
                "kind": "variation" if a.variation != b.variation else "mode",
                "model": a.model, "setting": a.setting, "variation": a.variation, "mode": a.mode,
                "versus_variation": b.variation, "versus_mode": b.mode, "status": a.status, "versus_status": b.status,
                "measure": measure, **numbers,
            })
    adjusted = fdr_adjust([math.nan if f["p_value"] is None else f["p_value"] for f in found])
    for f, p in zip(found, adjusted):
        f["p_adjusted"] = _clean(float(p))
        f["flagged"] = bool(p < SIGNIFICANCE)
    return found


def _cues(cells: list[Cell]) -> list[str]:
    return list(dict.fromkeys(cue for c in cells if c.res for cue in c.res["cues"]))


def _af_classifiers(cells: list[Cell]) -> list[str]:
    return list(dict.fromkeys(n for c in cells if c.res for n in c.res["classifiers"] if n.startswith(AF_PREFIX)))


def table_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    """One flat row per cell, the columns of comparison.csv (None where not measured)."""
    cues, classifiers = _cues(cells), _af_classifiers(cells)
    rows = []
    for c in cells:
        res = c.res or {"cues": {}, "gap": None, "classifiers": {}}
        row: dict[str, Any] = {"model": c.model, "setting": c.setting, "variation": c.variation, "mode": c.mode,
                               "lab": c.lab, "status": c.status, "log": c.log, "n_queries": len(c.counts)}
        for cue in cues:
            counts = res["cues"].get(cue, {})
            row |= {f"{k}_{cue}": counts.get(k) for k in CATEGORY_COLUMNS}
            rate = counts.get("compliance") or {}
            row |= {f"compliance_{cue}": rate.get("estimate"), f"compliance_{cue}_low": rate.get("low"),
                    f"compliance_{cue}_high": rate.get("high")}
        gap = res["gap"] or {}
        row |= {"gap": gap.get("estimate"), "gap_low": gap.get("low"), "gap_high": gap.get("high")}
        for name in classifiers:
            per_cue = res["classifiers"].get(name, {}).get("cues", {})
            row |= {f"{name}_{cue}": per_cue.get(cue, {}).get("rate", {}).get("estimate") for cue in cues}
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def comparison_name(f: dict[str, Any]) -> str:
    name = (f"{f['variation']} − {f['versus_variation']} ({f['mode']})" if f["kind"] == "variation"
            else f"{f['mode']} − {f['versus_mode']} ({f['variation']})")
    unfinished = sorted({s for s in (f["status"], f["versus_status"]) if s != "success"})
    return name + (f", log status {', '.join(unfinished)}" if unfinished else "")


def markdown(summary: dict[str, Any], cells: list[Cell], grids: dict[str, tuple[str, str]]) -> str:
    """comparison.md: the cells, the significance of their differences, the figures."""
    cues, classifiers = _cues(cells), _af_classifiers(cells)
    found = summary["comparisons"]
    flagged = sum(f["flagged"] for f in found)
    lines = [f"# Sweep comparison: {len(cells)} cells", "",
             f"Logs: `{summary['log_dir']}`. Each cell is the newest log of one model × setting × prompt variation "
             "× reasoning mode; its numbers are what `aflab report` gives for that log. Full columns in "
             "`comparison.csv`, everything in `comparison.json`.", ""]
    unfinished = [c for c in cells if c.status != "success"]
    if unfinished:
        lines += ["**Cells whose log did not finish** (their numbers cover the samples that did):", ""]
        lines += [f"- {c.label}: status `{c.status}`" + ("" if c.res else ", no samples") for c in unfinished] + [""]
    header = ["model", "setting", "variation", "mode", "status", "queries"]
    for cue in cues:
        header += [f"{cue_label(cue)}: n (acc/rej/mal/err)", "compliance (95% CI)"]
    header += ["gap (95% CI)"] + [f"{name} {cue}" for name in classifiers for cue in cues]
    lines += ["## Cells", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in cells:
        res = c.res or {"cues": {}, "gap": None, "classifiers": {}}
        row = [c.model, c.setting, c.variation, c.mode, c.status, str(len(c.counts))]
        for cue in cues:
            k = res["cues"].get(cue)
            row += ["–", "–"] if k is None else [
                f"{k['n']} ({k['accepted']}/{k['rejected']}/{k['malformed']}/{k['error']})", rate_text(k["compliance"])]
        row.append(rate_text(res["gap"]) if res["gap"] else "–")
        row += [pct(res["classifiers"].get(name, {}).get("cues", {}).get(cue, {}).get("rate", {}).get("estimate"))
                for name in classifiers for cue in cues]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Significance", "",
              f"Each prompt variation is compared with `{BASE}` for the same model, setting and mode, and "
              "scratchpad with no scratchpad for the same model, setting and variation, on two measures: the "
              "compliance gap (training − unmonitored) and compliance under the training cue. Differences are "
              f"in percentage points with 95% intervals, paired by query ({CONTRAST_METHOD}). The "
              f"{len(found)} p-values of the sweep are corrected together (Benjamini–Hochberg); a difference is "
              f"flagged when its adjusted p is below {SIGNIFICANCE}: {flagged} of {len(found)} are.", ""]
    if found:
        lines += ["| comparison | model | setting | measure | difference (95% CI) | p | adjusted p | flagged |",
                  "|---|---|---|---|---|---|---|---|"]
        for f in sorted(found, key=lambda f: (not f["flagged"], f["p_adjusted"] is None, f["p_adjusted"] or 0)):
            lines.append(f"| {comparison_name(f)} | {f['model']} | {f['setting']} | {f['measure']} | "
                         f"{difference_text(f)} | {p_text(f['p_value'])} | {p_text(f['p_adjusted'])} | "
                         f"{'**yes**' if f['flagged'] else 'no'} |")
    else:
        lines.append(f"No comparisons: the sweep has no `{BASE}` cell to compare a variation with, and no cell run "
                     "in both modes.")
    lines += ["", "## Figures", "", "Compliance gap of every cell, with its 95% interval:", "",
              f"![compliance gap of every cell]({FOREST})"]
    for name, (setting, mode) in grids.items():
        lines += ["", f"### {setting} · {mode}", "", "Rows: models; columns: prompt variations.", "",
                  f"![{setting} · {mode}]({name})"]
    superseded = [(c, old) for c in cells for old in c.superseded]
    if superseded or summary["notes"]:
        lines += ["", "## Logs not used", ""]
        lines += [f"- `{old}`: superseded by the newer `{c.log}` ({c.label})" for c, old in superseded]
        lines += [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"


GRID_INCHES = {"left": 2.4, "panel": 2.7, "note": 1.9, "top": 0.75, "line": 0.17, "bottom": 0.9, "bar": 0.5,
               "row_gap": 0.75}
"""Grid layout in inches: room left of the first column for cue and model names, each
panel's width and the room right of it for its n and interval notes, bar height per cue.
The title's lines (``line`` each) add to ``top``. Fixed sizes, not constrained layout, which takes seconds per figure on a large sweep."""


def grid_figure(cells: list[Cell], setting: str, mode: str, path: Path) -> None:
    """Rows = models, columns = prompt variations (``default`` first): each panel is that
    cell's stacked bars per cue, drawn as the single-run report draws them."""
    chosen = [c for c in cells if c.setting == setting and c.mode == mode]
    models = list(dict.fromkeys(c.model for c in chosen))
    variations = list(dict.fromkeys(c.variation for c in sorted(chosen, key=lambda c: (c.variation != BASE, c.variation))))
    by_key = {(c.model, c.variation): c for c in chosen}
    n_cues = max((len(c.res["cues"]) for c in chosen if c.res), default=2)
    size = GRID_INCHES
    panel_height = 0.2 + size["bar"] * n_cues
    width = size["left"] + (size["panel"] + size["note"]) * len(variations)
    title = f"{setting} · {mode}\n" + textwrap.fill(
        "share of samples by outcome; complied % among parseable answers (95% Wilson interval); gap = training − "
        "unmonitored", width=int(12 * width))
    top = size["top"] + size["line"] * title.count("\n")
    height = top + size["bottom"] + (panel_height + size["row_gap"]) * len(models) - size["row_gap"]
    fig, axes = plt.subplots(len(models), len(variations), squeeze=False, figsize=(width, height))
    fig.subplots_adjust(left=size["left"] / width, right=1 - size["note"] / width, top=1 - top / height,
                        bottom=size["bottom"] / height, wspace=size["note"] / size["panel"],
                        hspace=size["row_gap"] / panel_height)
    for (row, model), (col, variation) in ((r, c) for r in enumerate(models) for c in enumerate(variations)):
        ax = axes[row][col]
        cell = by_key.get((model, variation))
        if cell is None or cell.res is None:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            ax.text(0.5, 0.5, "not run" if cell is None else f"{cell.status}: no samples", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color="#777777")
        else:
            draw_bars(ax, cell.res, cue_labels=col == 0, note_size=7)
            gap = cell.res["gap"]
            status = "" if cell.status == "success" else f" [{cell.status}]"
            ax.set_title(f"gap {rate_text(gap) if gap else '–'}{status}", fontsize=8.5)
        if row == 0:
            ax.set_title(f"{variation}\n" + ax.get_title(), fontsize=9.5)
        if col == 0:  # wrapped to the row's height
            ax.set_ylabel(textwrap.fill(model, width=max(12, int(12 * (panel_height + 0.3)))), fontsize=9.5,
                          fontweight="bold")
    legend = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=min(len(legend), 5), frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=10, y=1 - 0.1 / height, va="top")
    save_png(fig, path, dpi=110)


def forest_figure(cells: list[Cell], path: Path) -> None:
    """Every cell's compliance gap with its 95% interval, sorted by estimate, a line at 0."""
    shown = sorted((c for c in cells if c.res and c.res["gap"] and c.res["gap"]["estimate"] is not None),
                   key=lambda c: c.res["gap"]["estimate"])  # type: ignore[index]
    colours = {MODES[True]: "#b5452b", MODES[False]: "#3b6ea5"}
    labels = [c.label + ("" if c.status == "success" else f" [{c.status}]") for c in shown]
    label_inches = 0.06 * max(map(len, labels), default=0)  # 8-point text, so the plot keeps ~6 inches
    fig, ax = plt.subplots(figsize=(7.5 + label_inches, 1.4 + 0.3 * max(len(shown), 1)), layout="constrained")
    for row, c in enumerate(shown):
        gap = c.res["gap"]  # type: ignore[index]
        low = gap["estimate"] if gap["low"] is None else gap["low"]
        high = gap["estimate"] if gap["high"] is None else gap["high"]
        ax.errorbar(gap["estimate"], row, xerr=[[gap["estimate"] - low], [high - gap["estimate"]]], fmt="o",
                    color=colours[c.mode], markersize=4, capsize=2.5, linewidth=1.2, label=c.mode)
        ax.text(1.01, row, rate_text(gap), va="center", fontsize=7.5, transform=ax.get_yaxis_transform())
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(shown)), labels, fontsize=8)
    ax.set_ylim(-0.7, len(shown) - 0.3)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("compliance gap (training − unmonitored), 95% interval paired by query")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.tick_params(axis="x", labeltop=len(shown) > 25)  # a long plot gets a scale at the top too
    ax.set_title("Compliance gap by cell, sorted by estimate", fontsize=10.5)
    legend = {label: handle for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncol=2, frameon=False, fontsize=8.5)
    save_png(fig, path, dpi=130)


def write_comparison(log_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Compare every cell of the sweep whose logs are in ``log_dir`` (the sweep's folder or
    its ``logs/``); write comparison.csv/.md/.json, ``grid-<setting>-<mode>.png`` and
    ``forest.png`` into ``out``; return what comparison.json holds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells, notes = collect_cells(log_dir, out)
    grids = {f"grid-{c.setting}-{c.mode}.png": (c.setting, c.mode) for c in cells}
    rows = table_rows(cells)
    summary = {
        "schema": COMPARISON_SCHEMA,
        "log_dir": os.path.relpath(_log_folder(log_dir), out),
        "confidence": CONFIDENCE,
        "significance": {"level": SIGNIFICANCE, "method": CONTRAST_METHOD,
                         "correction": "Benjamini-Hochberg over every comparison of the sweep"},
        "columns": list(rows[0]),
        "cells": [{"model": c.model, "setting": c.setting, "variation": c.variation, "mode": c.mode,
                   "scratchpad": c.scratchpad, "lab": c.lab, "status": c.status, "log": c.log,
                   "superseded": c.superseded, "n_queries": len(c.counts), "results": c.res} for c in cells],
        "comparisons": comparisons(cells),
        "figures": [FOREST, *grids],
        "notes": notes,
    }
    drawings: dict[str, Content] = {FOREST: lambda p: forest_figure(cells, p)}
    drawings |= {name: (lambda p, s=setting, m=mode: grid_figure(cells, s, m, p)) for name, (setting, mode) in grids.items()}
    write_all(out, {
        **drawings,
        "comparison.csv": _csv(rows),
        "comparison.md": markdown(summary, cells, grids),
        "comparison.json": json.dumps(summary, indent=2) + "\n",
    })
    return summary
