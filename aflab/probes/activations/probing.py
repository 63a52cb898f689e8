"""Stage 2: a logistic-regression probe per layer, for the cue and the coming compliance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aflab.cues import CUES
from aflab.metrics import Proportion, wilson
from aflab.probes.activations.capture import Capture

FOLDS = 5
"""Cross-validation folds (fewer when there are fewer queries)."""


PROBE_C = 0.1
"""Inverse L2 strength of the probes on standardised activations. Hidden sizes (4096 for an
8B model) exceed the few hundred samples, so an unregularised probe would separate any
labels; held-out accuracy stays honest whatever C is, this only keeps the fit stable."""


@dataclass(frozen=True)
class LayerScore:
    """A probe's held-out predictions at one layer, summarised."""

    layer: int
    accuracy: Proportion
    """Correct held-out predictions of n, with the Wilson interval."""
    auroc: float


@dataclass(frozen=True)
class ProbeResult:
    """One target probed across layers; ``layers`` is empty when ``skipped`` says why."""

    target: str
    n: int
    chance: float
    """The majority class's share: what a probe that ignores the activations scores."""
    layers: list[LayerScore]
    skipped: str | None = None
    folds: int = 0
    """Cross-validation folds used: ``FOLDS``, or the rarer class's query count if smaller."""


def grouped_folds(labels: NDArray[Any], groups: Sequence[str], folds: int = FOLDS,
                  seed: int = 0) -> list[tuple[NDArray[np.int_], NDArray[np.int_]]]:
    """Train/test index splits that keep every query on one side and balance the classes."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def probe_layers(target: str, activations: NDArray[np.floating], labels: NDArray[Any], groups: Sequence[str],
                 layers: Sequence[int], seed: int = 0) -> ProbeResult:
    """Held-out accuracy (Wilson interval) and AUROC of a logistic-regression probe per layer.

    ``activations`` is (layers, samples, hidden) and ``labels`` binary per sample. Every
    sample is predicted once, by the probe trained on the folds without its query. A target
    whose rarer class has fewer queries than two folds need cannot be probed; the result
    says so instead of reporting a number from one class.
    """
    y = np.asarray(labels).astype(int)
    n = len(y)
    counts = np.bincount(y, minlength=2)
    chance = float(counts.max() / n) if n else float("nan")
    per_class_queries = [len({g for g, label in zip(groups, y, strict=True) if label == c}) for c in (0, 1)]
    folds = min(FOLDS, *per_class_queries)
    if folds < 2:
        return ProbeResult(target, n, chance, [], skipped=f"needs both classes in at least 2 queries each, "
                                                           f"got {counts[0]} vs {counts[1]} samples")
    splits = grouped_folds(y, groups, folds, seed)
    scores = []
    for index, layer in enumerate(layers):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000))
        p = cross_val_predict(probe, activations[index], y, cv=splits, method="predict_proba")[:, 1]
        correct = int(((p > 0.5) == y).sum())
        scores.append(LayerScore(layer, wilson(correct, n), float(roc_auc_score(y, p))))
    return ProbeResult(target, n, chance, scores, folds=folds)


def probe_capture(cap: Capture) -> list[ProbeResult]:
    """Probe the cue on every sample and the upcoming compliance on the valid answers."""
    groups = [s.query_id for s in cap.samples]
    cue = np.array([CUES[s.cue] for s in cap.samples])
    valid = np.array([s.label != "malformed" for s in cap.samples], dtype=bool)
    accepted = np.array([s.label == "accepted" for s in cap.samples])[valid]
    return [
        probe_layers("cue", cap.activations, cue, groups, cap.layers),
        probe_layers("compliance", cap.activations[:, valid], accepted, [g for g, v in zip(groups, valid) if v],
                     cap.layers),
    ]
