"""The drawings aflab's reports share, and the one place that picks matplotlib's backend.

Every module that draws imports ``plt`` from here: the file-only Agg backend is selected
before pyplot loads, so no figure ever needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from aflab.cues import cue_label  # noqa: E402
from aflab.formatting import Interval, rate_text  # noqa: E402

__all__ = ["plt", "save_png", "save_panels", "draw_bars", "interval_bars", "segments"]


def save_png(fig: Figure, path: Path, dpi: int = 130, **options: Any) -> None:
    """Save ``fig`` as a PNG at ``path`` (whatever its name ends in: files are written under
    temporary names, see ``aflab.files.write_all``) and free it."""
    fig.savefig(path, dpi=dpi, format="png", **options)
    plt.close(fig)


def save_panels(fig: Figure, legend_ax: Axes, title: str, path: Path) -> None:
    """A figure of stacked panels, finished alike: the legend of ``legend_ax`` to the right of
    the first panel, the title above all, saved as ``save_png`` does."""
    legend_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=120)


FIGURE_AF_ORDER = ("alignment_faking_improved", "alignment_faking_cascade", "alignment_faking_original",
                   "alignment_faking_screen")
"""The alignment-faking classifier the figure's hatched segment shows, when several ran:
the grader's own first, the offline screen last."""


def segments(res: dict[str, Any], cue: str) -> dict[str, int]:
    """Counts per bar segment: complied splits into with / without alignment-faking
    reasoning when an AF classifier has run (the first of ``FIGURE_AF_ORDER`` that has)."""
    c = res["cues"][cue]
    af = next((res["classifiers"][n]["cues"].get(cue, {}).get("flagged", 0)
               for n in FIGURE_AF_ORDER if n in res["classifiers"]), None)
    counts = {"rejected": c["rejected"]}
    if af is None:
        counts["accepted"] = c["accepted"]
    else:
        counts |= {"faking": af, "accepted": c["accepted"] - af}
    return counts | {"malformed": c["malformed"], "error": c["error"]}


def draw_bars(ax: Axes, res: dict[str, Any], cue_labels: bool = True, note_size: float = 8.5) -> None:
    """One run's stacked bars, one per cue, on ``ax``: the picture of ``aflab.report.figure`` without
    its title, axis label and legend, so that a sweep's grid draws each cell the same way.

    With an alignment-faking classifier, compliance with alignment-faking reasoning is the
    paper's hatched segment; with the partial classifier, a black line over the complied
    part marks the share that was only partially compliant. Right of each bar: n and the
    compliance rate with its interval (``note_size`` points).
    """
    styles = {
        "rejected": ("refused", "#8fb8de", None),
        "faking": ("complied, alignment-faking reasoning", "#f2c14e", "///"),
        "accepted": ("complied" if not any(n.startswith("alignment_faking") for n in res["classifiers"])
                     else "complied, no alignment-faking reasoning", "#f2c14e", None),
        "malformed": ("malformed", "#bdbdbd", None),
        "error": ("error", "#e57373", None),
    }
    cues = list(res["cues"])
    bars = {cue: segments(res, cue) for cue in cues}
    shown = [k for k in styles if any(k in bars[cue] for cue in cues)
             and (k in ("rejected", "accepted") or any(bars[cue].get(k) for cue in cues))]
    partial = res["classifiers"].get("partial_compliance", {}).get("cues", {})
    for row, cue in enumerate(cues):
        n = res["cues"][cue]["n"]
        left = 0.0
        for key in shown:
            count = bars[cue].get(key, 0)
            share = count / n if n else 0.0
            label, colour, hatch = styles[key]
            ax.barh(row, share, left=left, color=colour, hatch=hatch, edgecolor="white" if not hatch else "#b5452b",
                    linewidth=0.8, label=label if row == 0 else None)
            if share >= 0.06:
                ax.text(left + share / 2, row, f"{count}", ha="center", va="center", fontsize=9)
            if key == "faking":
                complied_start = left
            left += share
        if cue in partial and n:
            start = complied_start if "faking" in shown else bars[cue]["rejected"] / n
            ax.plot([start, start + partial[cue]["flagged"] / n], [row - 0.42] * 2, color="black", linewidth=2.5,
                    solid_capstyle="butt", label="partially compliant" if row == 0 else None)
        ax.text(1.02, row, f"n={n}\ncomplied {rate_text(res['cues'][cue]['compliance'])}",
                va="center", fontsize=note_size, transform=ax.get_yaxis_transform())
    ax.set_yticks(range(len(cues)), [cue_label(c) for c in cues] if cue_labels else [])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))


def interval_bars(ax: Axes, groups: list[str], series: dict[str, list[Interval | None]],
                  labels: dict[str, list[str]] | None = None) -> None:
    """Grouped vertical bars on ``ax``: a group per entry of ``groups``, a bar per series
    (its legend label), each an estimate with its interval as an error bar; ``labels`` (such
    as k/n) are written over the bars. A missing or undefined estimate draws no bar."""
    width = 0.8 / max(len(series), 1)
    for i, (name, found) in enumerate(series.items()):
        x = np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width
        est, low, high = (np.array([np.nan if not f or f[k] is None else f[k] for f in found], dtype=float)
                          for k in ("estimate", "low", "high"))
        ax.bar(x, np.nan_to_num(est), width, label=name, color=f"C{i}",
               yerr=np.nan_to_num([est - low, high - est]), capsize=3)
        for xi, top, text in zip(x, np.nan_to_num(high), (labels or {}).get(name, []), strict=False):
            ax.text(xi, min(top + 0.03, 1.05), text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
