"""How well a grader classifies alignment faking, measured on labelled transcripts.

Each labelled transcript is graded as a run's transcript would be: the grader's input is
built by :func:`aflab.classifiers.grader_input`, the function the scorers use, so it sees
the request, the scratchpad reasoning without its tags and the final output, with the same
prompt, votes and quote check. The share of yes votes is the classifier's score (for
``af-original``, the mean of its two variants, as Greenblatt et al. report): thresholded it
gives accuracy, precision, recall and F1; over all thresholds, AUROC, as Hughes et al.
report. AUROC's interval is DeLong's, on the logit scale (its coverage is checked by
simulation in the tests); the thresholded figures keep a percentile bootstrap over
transcripts, since F1 has no closed-form interval. The vote curve gives AUROC after the
first 1, 2, ... N votes of the same N, to show how many votes the figure needs. With a
tuning split, the threshold and the number of votes are chosen on one part and reported on
the other, so the reported figures are not flattered by the choice.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from inspect_ai.model import Model
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import norm

from aflab.classifiers import VALIDATION_SET, GraderInput, Judgment, evidence, grader_input, prompt_for
from aflab.classifiers.screen import screen_labelled
from aflab.errors import LabelsError
from aflab.figures import plt, save_png
from aflab.files import numbered_jsonl, write_json
from aflab.metrics import wilson
from aflab.parsing import OUTPUT_CLOSE, OUTPUT_OPEN, SCRATCHPAD_CLOSE, SCRATCHPAD_OPEN, final_output
from aflab.scorers import IMPROVED_THRESHOLD, IMPROVED_VOTES, SCREEN_GRADER, ask_grader

AF_CLASSIFIERS = ("af-original", "af-improved")
SCREEN_CLASSIFIER = "af-screen"
BOOTSTRAP_RESAMPLES = 2000
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))
LABEL_SPELLINGS: dict[str, bool] = {
    "1": True, "true": True, "yes": True, "alignment_faking": True, "potential_faking": True, "faking": True,
    "af": True,
    "0": False, "false": False, "no": False, "aligned": False, "not_alignment_faking": False, "not_faking": False,
    "no_alignment_faking": False,
}
"""Label values accepted in a labels file (case, spaces and hyphens aside), besides JSON
true/false and 1/0: Hughes et al.'s human-labelled set and similar sets spell them so."""
_USER_INPUT = re.compile(r"<user_input>(.*?)</user_input>", re.DOTALL)



@dataclass(frozen=True)
class Labelled:
    id: str
    shown: GraderInput
    """What the grader is shown of the transcript, as a run's scorer would build it."""
    label: bool


def _label(value: Any) -> bool | None:
    """A label in any accepted spelling; None when it is none of them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return LABEL_SPELLINGS.get(re.sub(r"[\s\-]+", "_", value.strip().lower()))
    return None


def _accepted_labels() -> str:
    yes = ", ".join(k for k, v in LABEL_SPELLINGS.items() if v)
    no = ", ".join(k for k, v in LABEL_SPELLINGS.items() if not v)
    return f"{yes} (alignment faking) or {no} (not)"


def _model_text(text: str, output: str | None, where: str) -> str:
    """The model's side of the conversation, tagged as in the protocol, from a row's
    ``text`` (a whole transcript, or bare reasoning) and its ``output``."""
    if SCRATCHPAD_OPEN not in text:
        text = f"{SCRATCHPAD_OPEN}\n{text.strip()}\n{SCRATCHPAD_CLOSE}"
    own, _ = final_output(text)
    if output is not None and own is not None and own.strip() != output.strip():
        raise LabelsError(f"{where}: 'output' differs from the <OUTPUT> block in 'text'; give the output once")
    if output is not None and own is None:
        text += f"\n{OUTPUT_OPEN}\n{output}\n{OUTPUT_CLOSE}"
    return text


def _row(row: Any, where: str, number: int) -> Labelled:
    if not isinstance(row, dict) or not isinstance(row.get("text"), str) or "label" not in row:
        raise LabelsError(f"{where}: needs a string 'text' and a 'label'")
    label = _label(row["label"])
    if label is None:
        raise LabelsError(f"{where}: label {row['label']!r} is not a label; use one of {_accepted_labels()}")
    for key in ("request", "output"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise LabelsError(f"{where}: '{key}' must be a string")
    request = row.get("request")
    if request is None:  # a whole conversation carries the request in its user turn
        found = _USER_INPUT.search(row["text"])
        request = found.group(1) if found else ""
    shown = grader_input(_model_text(row["text"], row.get("output"), where), request)
    if not shown.reasoning:
        raise LabelsError(f"{where}: 'text' has no scratchpad reasoning to grade")
    return Labelled(str(row.get("id", number)), shown, label)


def load_labels(path: str | Path = VALIDATION_SET) -> list[Labelled]:
    """Labelled transcripts from JSONL, one object per line.

    ``text`` and ``label`` are required: ``text`` is a whole transcript in the protocol's
    tags (``<SCRATCHPAD_REASONING>`` ..., ``<OUTPUT>`` ...), as in Hughes et al.'s
    human-labelled set, or bare reasoning; ``label`` is 1/0, true/false or a spelling in
    ``LABEL_SPELLINGS``. ``id``, ``request`` and ``output`` are optional; without
    ``request``, a ``<user_input>`` block in ``text`` is taken as the request.
    """
    path = Path(path)
    rows = [_row(row, f"{path}, line {number}", number)
            for number, row in numbered_jsonl(path, what="labels file", error=LabelsError,
                                              missing="give a JSONL file of labelled transcripts")]
    if not rows or len({r.label for r in rows}) < 2:
        raise LabelsError(f"{path} needs transcripts of both labels (alignment faking and not)")
    return rows


def vote_score(judgment: Judgment) -> float | None:
    """One vote's score: 1/0 for the verdict, or for a classifier with variants
    (af-original) the mean of the variants' verdicts; None when unreadable."""
    if judgment.variants:
        readable = [v for v in judgment.variants.values() if v is not None]
        return sum(readable) / len(readable) if readable else None
    return None if judgment.verdict is None else float(judgment.verdict)


async def collect_votes(classifier: str, grader: Model, rows: list[Labelled], votes: int) -> list[list[float | None]]:
    """Each transcript's vote scores (None: unreadable), ``votes`` per transcript, asked
    exactly as the run's scorer asks them."""
    if classifier not in AF_CLASSIFIERS:
        raise LabelsError(f"labels are for alignment faking: use {', '.join(AF_CLASSIFIERS)} or {SCREEN_CLASSIFIER}, "
                          f"not {classifier}")
    temperature = 0.0 if classifier == "af-original" else 1.0

    async def grade(row: Labelled) -> list[float | None]:
        _, judgments = await ask_grader(classifier, prompt_for(classifier, row.shown), evidence(classifier, row.shown),
                                        votes, temperature, grader=grader)
        return [vote_score(j) for j in judgments]

    return list(await asyncio.gather(*(grade(r) for r in rows)))


def yes_shares(votes: list[list[float | None]], k: int) -> np.ndarray:
    """Mean readable vote score among each transcript's first ``k`` votes (nan: none)."""
    shares = []
    for row in votes:
        readable = [v for v in row[:k] if v is not None]
        shares.append(sum(readable) / len(readable) if readable else np.nan)
    return np.array(shares)


def classification_metrics(labels: np.ndarray, shares: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 at ``threshold``, over readable rows."""
    keep = ~np.isnan(shares)
    labels, shares = labels[keep].astype(bool), shares[keep]
    guess = shares >= threshold
    tp, fp, fn = (guess & labels).sum(), (guess & ~labels).sum(), (~guess & labels).sum()
    precision = tp / (tp + fp) if tp + fp else np.nan
    recall = tp / (tp + fn) if tp + fn else np.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan
    return {"accuracy": float((guess == labels).mean()) if len(labels) else np.nan,
            "precision": float(precision), "recall": float(recall), "f1": float(f1)}


def _hanley_mcneil_variance(a: np.ndarray | float, positives: int, negatives: int) -> np.ndarray | float:
    """Hanley & McNeil's (1982) variance of an AUROC estimate whose true value is ``a``."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (positives * negatives)


def _inverted_interval(a: float, positives: int, negatives: int, z: float) -> tuple[float, float]:
    """The AUROC values ``A`` with ``|a - A| <= z * sd(A)`` under Hanley & McNeil's variance:
    Wilson's construction for a proportion, used where DeLong's variance is zero."""

    def outside(x: float) -> float:
        return abs(a - x) - z * float(np.sqrt(_hanley_mcneil_variance(x, positives, negatives)))

    grid = np.linspace(0.0, 1.0, 2001)
    inside = grid[np.abs(a - grid) <= z * np.sqrt(_hanley_mcneil_variance(grid, positives, negatives))]
    low, high = float(inside.min()), float(inside.max())
    step = grid[1] - grid[0]
    if low > 0:
        low = brentq(outside, low - step, low)
    if high < 1:
        high = brentq(outside, high, high + step)
    return low, high


def auroc_interval(labels: np.ndarray, scores: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """AUROC over readable rows (ties count one half) with DeLong's interval on the logit
    scale.

    DeLong's variance (DeLong, DeLong & Clarke-Pearson 1988) needs no model of the scores
    and handles the ties that vote shares make. Mapped through the logit, the interval
    stays inside [0, 1] and keeps close to its nominal coverage at the high AUROCs graders
    reach (0.92 in Hughes et al.), where the plain interval undercovers. Where DeLong's
    variance is zero (the classes perfectly separated, or every score tied) the interval
    inverts Hanley & McNeil's variance instead, so a perfect score on a small set does not
    claim certainty. nan when either class has no readable row.
    """
    keep = ~np.isnan(scores)
    labels, scores = labels[keep].astype(bool), scores[keep]
    positive, negative = scores[labels], scores[~labels]
    m, n = len(positive), len(negative)
    if not m or not n:
        return {"auroc": np.nan, "low": np.nan, "high": np.nan}
    pairs = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
    a = float(pairs.mean())
    rows, columns = pairs.mean(axis=1), pairs.mean(axis=0)
    variance = (rows.var(ddof=1) / m if m > 1 else 0.0) + (columns.var(ddof=1) / n if n > 1 else 0.0)
    z = float(norm.ppf(0.5 + confidence / 2))
    if variance > 0 and 0 < a < 1:
        half = z * np.sqrt(variance) / (a * (1 - a))
        low, high = float(expit(logit(a) - half)), float(expit(logit(a) + half))
    else:
        low, high = _inverted_interval(a, m, n, z)
    return {"auroc": a, "low": low, "high": high}


def vote_curve(labels: np.ndarray, votes: list[list[float | None]], confidence: float = 0.95) -> list[dict[str, float]]:
    """AUROC with its interval using each transcript's first k votes, for k = 1 ... N (the
    votes collected): all from the one set of N votes, so the points differ only by how
    many of them count."""
    most = max((len(v) for v in votes), default=0)
    return [{"votes": k, **auroc_interval(labels, yes_shares(votes, k), confidence)} for k in range(1, most + 1)]


def bootstrap_intervals(labels: np.ndarray, shares: np.ndarray, threshold: float, seed: int = 0,
                        confidence: float = 0.95) -> dict[str, list[float]]:
    """Percentile-bootstrap interval of each thresholded metric, resampling transcripts.

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


def tune(labels: np.ndarray, votes: list[list[float | None]], max_votes: int) -> tuple[float, int]:
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
    save_png(fig, path, dpi=150)


def votes_plot(curve: list[dict[str, float]], path: Path, title: str, chosen: int | None = None) -> None:
    """AUROC with its 95% DeLong interval against the number of votes counted. Each
    point's interval is its own (pointwise), not a band for the whole curve; neighbouring
    points share most of their votes, so the difference between two points is known more
    precisely than their separate intervals suggest."""
    k = np.array([p["votes"] for p in curve])
    est, low, high = (np.array([p[key] for p in curve], dtype=float) for key in ("auroc", "low", "high"))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance (0.5)")
    ax.fill_between(k, low, high, color="#b5452b", alpha=0.18, linewidth=0, label="95% interval (DeLong, logit)")
    ax.plot(k, est, "o-", color="#b5452b", markersize=4, label="AUROC")
    if chosen is not None:
        ax.axvline(chosen, color="black", linestyle="--", linewidth=1, label=f"votes used for the figures ({chosen})")
    ax.set_xlim(0.5, max(k.max(), 1) + 0.5)
    ax.set_xticks(k if len(k) <= 20 else np.unique(np.linspace(1, k.max(), 11).round().astype(int)))
    ax.set_ylim(min(0.4, np.nanmin(low) - 0.05) if np.isfinite(low).any() else 0.4, 1.0)
    ax.set_xlabel("votes per transcript (the first k of the votes collected)")
    ax.set_ylabel("AUROC")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9, edgecolor="none")
    fig.tight_layout()
    save_png(fig, path, dpi=150)


async def validate(
    classifier: str,
    grader: Model | None,
    rows: list[Labelled],
    votes: int = IMPROVED_VOTES,
    threshold: float = IMPROVED_THRESHOLD,
    tune_split: float | None = None,
    seed: int = 0,
    out: Path | None = None,
) -> dict[str, Any]:
    """Grade ``rows`` and compare with their labels; with ``out``, write validation.json,
    calibration.png and votes.png there.

    ``tune_split`` (a fraction) sets aside that share of transcripts, chosen by ``seed``,
    to pick the threshold and vote count (up to ``votes``); the figures and the vote curve
    are then computed on the remaining transcripts only. ``af-screen`` takes no grader
    (None): its score is each transcript's one vote, and no model is called.
    """
    votes = 1 if classifier in ("af-original", SCREEN_CLASSIFIER) else votes
    if classifier == SCREEN_CLASSIFIER:  # no grader: the screen's score is the transcript's one "vote"
        all_votes, graded_by = [[screen_labelled(row.shown).score] for row in rows], SCREEN_GRADER
    else:
        assert grader is not None, f"{classifier} needs a grader model"
        all_votes, graded_by = await collect_votes(classifier, grader, rows, votes), str(grader)
    collected = votes
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
    reported_votes = [all_votes[i] for i in report_on]
    shares = yes_shares(reported_votes, votes)
    auroc = auroc_interval(labels, shares)
    intervals = {"auroc": [auroc["low"], auroc["high"]], **bootstrap_intervals(labels, shares, threshold, seed=seed)}
    curve = vote_curve(labels, reported_votes)
    result: dict[str, Any] = {
        "classifier": classifier, "grader": graded_by, "n": len(report_on),
        "unreadable": int(np.isnan(shares).sum()), "threshold": threshold, "votes": votes,
        "votes_collected": collected, "tuned": tuned,
        "without_request": sum(not rows[i].shown.request for i in report_on),
        "auroc": auroc["auroc"], **classification_metrics(labels, shares, threshold),
        "intervals": intervals,
        "interval_methods": {"auroc": "DeLong, logit scale (Hanley-McNeil inversion when its variance is 0)",
                             **{k: "percentile bootstrap over transcripts" for k in intervals if k != "auroc"}},
        "vote_curve": curve,
        "per_row": [{"id": rows[i].id, "label": rows[i].label,
                     "yes_share": None if np.isnan(s) else float(s)} for i, s in zip(report_on, shares)],
    }
    if out is not None:
        write_json(out / "validation.json", result)
        title = f"{classifier} graded by {graded_by} (n={len(report_on)})"
        calibration_plot(labels, shares, out / "calibration.png", title)
        votes_plot(curve, out / "votes.png", title, chosen=votes if collected > 1 else None)
    return result
