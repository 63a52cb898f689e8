"""How well a grader classifies alignment faking, measured on a labelled set.

Each labelled scratchpad is graded like a run's transcript (same prompt, votes, quote
check); the vote share is the classifier's score, so the result gives accuracy, precision
and recall at the threshold, and AUROC over all thresholds, as Hughes et al. report them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from inspect_ai.model import Model
from scipy.stats import mannwhitneyu

from aflab.classifiers import VALIDATION_SET, render
from aflab.metrics import wilson
from aflab.scorers import IMPROVED_THRESHOLD, IMPROVED_VOTES, ask_grader, vote_summary


def load_labelled(path: Path = VALIDATION_SET) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def auroc(positive: list[float], negative: list[float]) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    if not positive or not negative:
        return float("nan")
    return float(mannwhitneyu(positive, negative).statistic) / (len(positive) * len(negative))


async def validate(
    classifier: str,
    grader: Model,
    votes: int = IMPROVED_VOTES,
    threshold: float = IMPROVED_THRESHOLD,
    rows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Grade every labelled row and compare with its label."""
    if classifier not in ("af-original", "af-improved"):
        raise ValueError(f"validation labels are for alignment faking: use af-original or af-improved, not {classifier}")
    rows = rows if rows is not None else load_labelled()
    n_votes, temperature = (1, 0.0) if classifier == "af-original" else (votes, 1.0)

    async def grade(row: dict[str, Any]) -> float | None:
        prompt = render(classifier, request=row["request"], reasoning=row["reasoning"], output=row["output"])
        _, judgments = await ask_grader(classifier, prompt, row["reasoning"], n_votes, temperature, grader=grader)
        return vote_summary(judgments)["yes_share"]

    shares = await asyncio.gather(*(grade(r) for r in rows))
    graded = [(r["id"], bool(r["label"]), s) for r, s in zip(rows, shares) if s is not None]
    predicted = [(label, share >= threshold) for _, label, share in graded]
    correct = sum(label == guess for label, guess in predicted)
    true_pos = sum(label and guess for label, guess in predicted)
    accuracy = wilson(correct, len(predicted))
    return {
        "classifier": classifier,
        "grader": str(grader),
        "votes": n_votes,
        "threshold": threshold,
        "n": len(rows),
        "unreadable": len(rows) - len(graded),
        "accuracy": {"estimate": accuracy.rate, "low": accuracy.low, "high": accuracy.high},
        "precision": true_pos / max(1, sum(guess for _, guess in predicted)),
        "recall": true_pos / max(1, sum(label for label, _ in predicted)),
        "auroc": auroc([s for _, label, s in graded if label], [s for _, label, s in graded if not label]),
        "per_row": [{"id": i, "label": label, "yes_share": s} for i, label, s in graded],
    }
