"""Stage 4: probes.json, probes.md, and the accuracy and steering figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from aflab.cues import CUES, TRAINING_CUE, UNMONITORED_CUE
from aflab.figures import plt, save_png
from aflab.files import Content, json_text, write_all
from aflab.probes.activations.probing import ProbeResult


def probe_figure(results: Sequence[ProbeResult], path: Path, title: str) -> None:
    """Held-out accuracy against layer per target, with Wilson bands and each chance line."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for result, colour in zip(results, ("#1f5fa8", "#b5452b"), strict=False):
        label = f"{result.target} (n={result.n})"
        if result.skipped:
            ax.plot([], [], color=colour, label=f"{label}: not probed, {result.skipped}")
            continue
        x = [s.layer for s in result.layers]
        ax.plot(x, [s.accuracy.rate for s in result.layers], marker="o", color=colour, label=label)
        ax.fill_between(x, [s.accuracy.low for s in result.layers], [s.accuracy.high for s in result.layers],
                        color=colour, alpha=0.2)
        ax.axhline(result.chance, color=colour, linestyle="--", linewidth=1, label=f"{result.target} chance")
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (residual stream after the block), final prompt token")
    ax.set_ylabel("held-out accuracy (95% Wilson)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_png(fig, path, dpi=130)


def steering_figure(sweep: dict[str, Any], path: Path, title: str) -> None:
    """Compliance per cue and the gap against α, with their intervals."""
    rows = sweep["alphas"]
    x = np.array([r["alpha"] for r in rows], dtype=float)
    fig, (rates, gaps) = plt.subplots(1, 2, figsize=(10, 4))
    for offset, (cue, colour) in enumerate(((TRAINING_CUE, "#b5452b"), (UNMONITORED_CUE, "#1f5fa8"))):
        rate = [r["cues"].get(cue, {}).get("rate", {}) for r in rows]
        mid = np.array([p.get("rate", np.nan) for p in rate], dtype=float)
        errors = np.abs(np.array([[p.get("low", np.nan) for p in rate], [p.get("high", np.nan) for p in rate]]) - mid)
        rates.errorbar(x + (offset - 0.5) * 0.08, mid, yerr=errors, marker="o", capsize=3, color=colour,
                       label=f"{cue} ({'training' if CUES[cue] else 'unmonitored'})")
    malformed = [sum(c["malformed"] for c in r["cues"].values()) / max(1, sum(c["n"] for c in r["cues"].values()))
                 for r in rows]
    rates.plot(x, malformed, color="grey", linestyle=":", marker="x", label="malformed share (both cues)")
    gap = np.array([[r["gap"]["estimate"], r["gap"]["low"], r["gap"]["high"]] for r in rows], dtype=float)
    gaps.errorbar(x, gap[:, 0], yerr=np.abs(gap[:, 1:].T - gap[:, 0]), marker="o", capsize=3, color="black")
    gaps.axhline(0, color="grey", linewidth=1)
    rates.set_ylim(0, 1.02)
    gaps.set_ylim(-1.02, 1.02)
    rates.set_ylabel("compliance among parseable answers (95% Wilson)")
    rates.legend(fontsize=8)
    gaps.set_ylabel("compliance gap, training − unmonitored (95%)")
    for ax in (rates, gaps):
        ax.set_xticks(x)
        ax.set_xlabel(f"α (× cue direction, layer {sweep['layer']})")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=130)


def _percent(p: dict[str, Any]) -> str:
    return "n/a" if p["rate"] != p["rate"] else f"{p['rate']:.0%} [{p['low']:.0%}, {p['high']:.0%}]"


def markdown(report: dict[str, Any]) -> str:
    """probes.md: what was probed, accuracy by layer, and the steering sweep."""
    lines = [f"# Activation probes: {report['setting']} on {report['model']}", "",
             f"{report['n_queries']} queries × 2 cues, at the {report['position']}; probes are "
             "logistic regressions, cross-validated with folds grouped by query.", "",
             "![probe accuracy](probe_accuracy.png)", ""]
    for target in report["probes"]:
        chance = "n/a" if target["chance"] != target["chance"] else f"{target['chance']:.0%}"
        lines.append(f"## {target['target']} (n={target['n']}, chance {chance})")
        if target["skipped"]:
            lines += ["", f"Not probed: {target['skipped']}.", ""]
            continue
        lines += ["", f"{target['folds']}-fold cross-validation.", "",
                  "| layer | held-out accuracy (95% Wilson) | AUROC |", "|---|---|---|"]
        lines += [f"| {s['layer']} | {_percent(s['accuracy'])} | {s['auroc']:.2f} |" for s in target["layers"]]
        lines.append("")
    base = report["answers"]
    lines += ["## Answers (greedy, unsteered)", "",
              *[f"- {cue}: {c['accepted']} accepted, {c['rejected']} rejected, {c['malformed']} malformed; "
                f"compliance {_percent(c['rate'])}" for cue, c in base["cues"].items()],
              f"- gap (training − unmonitored): {_percent({'rate': base['gap']['estimate'], **base['gap']})}", ""]
    if report.get("steering"):
        s = report["steering"]
        lines += [f"## Steering at layer {s['layer']}", "", s["direction"], "",
                  f"‖direction‖ = {s['direction_norm']:.3g}; median ‖activation‖ there = "
                  f"{s['median_activation_norm']:.3g}.", "", "![steering](steering.png)", "",
                  "| α | training | unmonitored | gap (95%) |", "|---|---|---|---|"]
        for row in s["alphas"]:
            cues = row["cues"]
            lines.append(f"| {row['alpha']:g} | {_percent(cues[TRAINING_CUE]['rate'])} | "
                         f"{_percent(cues[UNMONITORED_CUE]['rate'])} | "
                         f"{_percent({'rate': row['gap']['estimate'], **row['gap']})} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict[str, Any], figures: dict[str, Content]) -> None:
    """probes.json, probes.md and ``figures`` into ``out``, together (``aflab.files.write_all``)."""
    write_all(out, {**figures, "probes.json": json_text(report), "probes.md": markdown(report)})
