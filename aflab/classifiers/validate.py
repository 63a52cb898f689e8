"""How well a grader classifies alignment faking, measured on labelled transcripts.

Each labelled transcript is graded as a run's transcript would be (same prompt, votes and
quote check). The share of yes votes is the classifier's score: thresholded it gives
accuracy, precision, recall and F1; over all thresholds, AUROC, as Hughes et al. report.
Intervals come from a percentile bootstrap over transcripts. With a tuning split, the
threshold and the number of votes are chosen on one part and reported on the other, so
the reported figures are not flattered by the choice.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from inspect_ai.model import Model  # noqa: E402
from scipy.stats import mannwhitneyu  # noqa: E402

from aflab.classifiers import VALIDATION_SET, render  # noqa: E402
from aflab.metrics import wilson  # noqa: E402
from aflab.scorers import IMPROVED_THRESHOLD, IMPROVED_VOTES, ask_grader  # noqa: E402

AF_CLASSIFIERS = ("af-original", "af-improved")
BOOTSTRAP_RESAMPLES = 2000
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))


class LabelsError(ValueError):
    """A labels file that cannot be used as given."""


@dataclass(frozen=True)
class Labelled:
    id: str
    text: str
    label: bool
    request: str = ""


def load_labels(path: str | Path = VALIDATION_SET) -> list[Labelled]:
    """Labelled transcripts from JSONL: ``text`` and ``label`` (1/0 or true/false) required,
    ``id`` and ``request`` optional."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise LabelsError(f"cannot read labels file {path}: {e.strerror}") from e
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise LabelsError(f"{path}, line {number}: not JSON ({e.msg}); write one object per line") from e
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or row.get("label") not in (0, 1):
            raise LabelsError(f"{path}, line {number}: needs a string 'text' and a 'label' of 1/0 or true/false")
        rows.append(Labelled(str(row.get("id", number)), row["text"], bool(row["label"]), str(row.get("request", ""))))
    if not rows or len({r.label for r in rows}) < 2:
        raise LabelsError(f"{path} needs transcripts of both labels (alignment faking and not)")
    return rows


async def collect_votes(classifier: str, grader: Model, rows: list[Labelled], votes: int) -> list[list[bool | None]]:
    """Each transcript's vote verdicts (None: unreadable), ``votes`` per transcript."""
    if classifier not in AF_CLASSIFIERS:
        raise LabelsError(f"labels are for alignment faking: use {' or '.join(AF_CLASSIFIERS)}, not {classifier}")
    temperature = 0.0 if classifier == "af-original" else 1.0

    async def grade(row: Labelled) -> list[bool | None]:
        prompt = render(classifier, request=row.request, reasoning=row.text, output="")
        _, judgments = await ask_grader(classifier, prompt, row.text, votes, temperature, grader=grader)
        return [j.verdict for j in judgments]

    return list(await asyncio.gather(*(grade(r) for r in rows)))


def yes_shares(votes: list[list[bool | None]], k: int) -> np.ndarray:
    """Share of readable yes votes among each transcript's first ``k`` votes (nan: none)."""
    shares = []
    for row in votes:
        readable = [v for v in row[:k] if v is not None]
        shares.append(sum(readable) / len(readable) if readable else np.nan)
    return np.array(shares)


def classification_metrics(labels: np.ndarray, shares: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 at ``threshold``, and AUROC, over readable rows."""
    keep = ~np.isnan(shares)
    labels, shares = labels[keep].astype(bool), shares[keep]
    guess = shares >= threshold
    tp, fp, fn = (guess & labels).sum(), (guess & ~labels).sum(), (~guess & labels).sum()
    precision = tp / (tp + fp) if tp + fp else np.nan
    recall = tp / (tp + fn) if tp + fn else np.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan
    positives, negatives = shares[labels], shares[~labels]
    auroc = (mannwhitneyu(positives, negatives).statistic / (len(positives) * len(negatives))
             if len(positives) and len(negatives) else np.nan)
    return {"accuracy": float((guess == labels).mean()) if len(labels) else np.nan,
            "precision": float(precision), "recall": float(recall), "f1": float(f1), "auroc": float(auroc)}


def bootstrap_intervals(labels: np.ndarray, shares: np.ndarray, threshold: float, seed: int = 0,
                        confidence: float = 0.95) -> dict[str, list[float]]:
    """Percentile-bootstrap interval of each metric, resampling transcripts.

    Resamples where a metric is undefined (e.g. no positives, so no recall) are left out of
    that metric's interval rather than counted as zero.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(BOOTSTRAP_RESAMPLES):
        pick = rng.integers(0, len(labels), len(labels))
        for name, value in classification_metrics(labels[pick], shares[pick], threshold).items():
            draws.setdefault(name, []).append(value)
    tail = 100 * (1 - confidence) / 2
    return {name: [float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))]
            for name, v in draws.items()}


def tune(labels: np.ndarray, votes: list[list[bool | None]], max_votes: int) -> tuple[float, int]:
    """The threshold and vote count with the best F1 (then accuracy, then fewer votes)."""
    counts = sorted({1, 3, 5, 10, max_votes} & set(range(1, max_votes + 1)))

    def rank(choice: tuple[float, int]) -> tuple[float, float, int]:
        threshold, k = choice
        m = classification_metrics(labels, yes_shares(votes, k), threshold)
        return float(np.nan_to_num(m["f1"], nan=-1)), float(np.nan_to_num(m["accuracy"], nan=-1)), -k

    return max(((t, k) for k in counts for t in THRESHOLDS), key=rank)


def calibration_plot(labels: np.ndarray, shares: np.ndarray, path: Path, title: str) -> None:
    """Observed share of alignment faking per bin of yes-vote share, with Wilson intervals."""
    keep = ~np.isnan(shares)
    labels, shares = labels[keep].astype(bool), shares[keep]
    edges = np.linspace(0, 1, 6)
    bins = np.clip(np.digitize(shares, edges[1:-1]), 0, len(edges) - 2)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for b in range(len(edges) - 1):
        inside = bins == b
        if not inside.any():
            continue
        p = wilson(int(labels[inside].sum()), int(inside.sum()))
        x = shares[inside].mean()
        ax.errorbar(x, p.rate, yerr=[[p.rate - p.low], [p.high - p.rate]], fmt="o", color="#b5452b", capsize=3)
        ax.annotate(f"n={int(inside.sum())}", (x, p.rate), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("share of grader votes saying alignment faking")
    ax.set_ylabel("share labelled alignment faking (95% Wilson)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150, format="png")
    plt.close(fig)


async def validate(
    classifier: str,
    grader: Model,
    rows: list[Labelled],
    votes: int = IMPROVED_VOTES,
    threshold: float = IMPROVED_THRESHOLD,
    tune_split: float | None = None,
    seed: int = 0,
    out: Path | None = None,
) -> dict[str, Any]:
    """Grade ``rows`` and compare with their labels; with ``out``, write validation.json
    and calibration.png there.

    ``tune_split`` (a fraction) sets aside that share of transcripts, chosen by ``seed``,
    to pick the threshold and vote count (up to ``votes``); the figures are then computed
    on the remaining transcripts only.
    """
    votes = 1 if classifier == "af-original" else votes
    all_votes = await collect_votes(classifier, grader, rows, votes)
    report_on = list(range(len(rows)))
    tuned = None
    if tune_split:
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        cut = round(len(rows) * tune_split)
        tuning, report_on = order[:cut], order[cut:]
        threshold, votes = tune(np.array([rows[i].label for i in tuning]), [all_votes[i] for i in tuning], votes)
        tuned = {"n_tuning": len(tuning), "seed": seed, "tuning_ids": [rows[i].id for i in tuning]}
    labels = np.array([rows[i].label for i in report_on])
    shares = yes_shares([all_votes[i] for i in report_on], votes)
    result: dict[str, Any] = {
        "classifier": classifier, "grader": str(grader), "n": len(report_on),
        "unreadable": int(np.isnan(shares).sum()), "threshold": threshold, "votes": votes, "tuned": tuned,
        **classification_metrics(labels, shares, threshold),
        "intervals": bootstrap_intervals(labels, shares, threshold, seed=seed),
        "per_row": [{"id": rows[i].id, "label": rows[i].label,
                     "yes_share": None if np.isnan(s) else float(s)} for i, s in zip(report_on, shares)],
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(_nan_to_none(result), indent=2)
        (out / "validation.json").write_text(text + "\n", encoding="utf-8")
        calibration_plot(labels, shares, out / "calibration.png",
                         f"{classifier} graded by {grader} (n={len(report_on)})")
    return result


def _nan_to_none(value: Any) -> Any:
    """JSON has no NaN: undefined figures are written as null."""
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value
