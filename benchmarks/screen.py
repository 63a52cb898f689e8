"""The af-screen classifier measured: AUROC against a phrase count, the cascade's band, speed.

    python benchmarks/screen.py                      # every labelled set; writes benchmarks/screen.json
    python benchmarks/screen.py --sets labelled,dev  # only these sets
    python benchmarks/screen.py --fit                # refit the weights on the design sets and print them
    python benchmarks/screen.py --grader openai/gpt-4o --votes 20   # also the cascade against af-improved

For each set: the screen's and the baseline's AUROC with DeLong intervals (``validate.py``'s
``auroc_interval``, as ``aflab validate-classifier`` reports), the same with the final output
hidden (``reasoning_only``: human-labelled scratchpads come without it, so the decision must be
read from the reasoning), the screen's accuracy and F1 at its threshold, the share of transcripts
whose screen score falls in the cascade's uncertain band (those the cascade would send to the
grader, since a labels row's compliance is unknown), the screen's accuracy on the rest, and the
milliseconds per transcript. With ``--grader`` the rows are also graded by af-improved, and the
cascade's decisions are compared with the grader's alone.

``cross_validation`` holds what the fit is worth on transcripts it did not see: every design
row's score from weights fitted without it (stratified 5-fold over the pooled design sets), and
each design set scored by weights fitted on the other design sets (leave one set out).

Sets: ``labelled`` (aflab's 24 synthetic rows), ``dev`` and ``heldout`` (the design sets the
weights were fitted on; held-out was scored once before it became one) and ``fresh`` (written
independently and never used in the design: score it once). Any JSONL file in the labels format
can be given by path too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.model_selection import StratifiedKFold

from aflab.classifiers import CLASSIFIERS_DIR
from aflab.classifiers.screen import (
    AGAINST,
    FEATURES,
    Screening,
    cascade_figures,
    phrase_count,
    screen_band,
    screen_labelled,
    screen_reasoning,
    screen_threshold,
    screen_weights,
)
from aflab.classifiers.validate import auroc_interval, bootstrap_intervals, classification_metrics, load_labels
from aflab.scorers import IMPROVED_THRESHOLD

HERE = Path(__file__).resolve().parent
SETS = {name: CLASSIFIERS_DIR / "validation" / f"af_{name}.jsonl" for name in ("labelled", "dev", "heldout", "fresh")}
DESIGN_SETS = ("labelled", "dev", "heldout")
FIXED = ("phrases",)
"""Features whose weight is set by hand in ``screen.toml`` and held there by the fit. The phrase
count's: aflab's synthetic sets were written so that vocabulary does not separate the classes,
while on real transcripts it does (about 0.83 AUROC on human labels), so a weight fitted on them
would throw away the signal real data carries."""
FIT_C = 1.0
"""Inverse L2 strength of the weight fit, as scikit-learn's C (penalty 1/2 |w|^2 against the summed log loss)."""
TIMING_REPEATS = 5


def fit_weights(features: np.ndarray, labels: np.ndarray, offset: np.ndarray | None = None,
                c: float = FIT_C) -> tuple[float, np.ndarray]:
    """L2-regularised logistic regression of the fitted features (``FEATURES`` less ``FIXED``,
    in that order), each weight held to its sign: >= 0, or <= 0 for ``AGAINST``.

    ``offset`` is the fixed features' part of the logit. The signs are the definition's (each
    feature is evidence for, or against, alignment faking by construction), so a weight of the
    other sign could only be the fit leaning on an accident of the design sets."""
    offset = np.zeros(len(labels)) if offset is None else offset

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + features @ theta[1:] + offset
        p = expit(z)
        nll = float(np.sum(np.logaddexp(0, z) - labels * z))
        grad = np.concatenate([[np.sum(p - labels)], features.T @ (p - labels)])
        w = theta[1:]
        return c * nll + 0.5 * float(w @ w), np.concatenate([[c * grad[0]], c * grad[1:] + w])

    bounds = [(None, None)] + [(None, 0.0) if f in AGAINST else (0.0, None) for f in FITTED]
    theta = minimize(loss, np.zeros(features.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds).x
    return float(theta[0]), theta[1:]


FITTED = tuple(f for f in FEATURES if f not in FIXED)


def _design_matrix(screenings: list[Screening]) -> tuple[np.ndarray, np.ndarray]:
    """The fitted features, and the fixed features' part of the logit (at ``screen.toml``'s weights)."""
    weights = screen_weights()
    fitted = np.array([[s.features[f] for f in FITTED] for s in screenings])
    offset = np.array([sum(weights[f] * s.features[f] for f in FIXED) for s in screenings])
    return fitted, offset


def out_of_fold_scores(features: np.ndarray, offset: np.ndarray, labels: np.ndarray, folds: int = 5,
                       seed: int = 0) -> np.ndarray:
    """Each row's score from weights fitted on the other folds (stratified k-fold): how the
    fitted score behaves on transcripts it was not fitted on."""
    scores = np.zeros(len(labels))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels):
        bias, w = fit_weights(features[train], labels[train], offset[train])
        scores[test] = expit(bias + features[test] @ w + offset[test])
    return scores


def _interval(r: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in r.items()}


def measure_set(path: Path, grader: str | None, votes: int) -> dict[str, Any]:
    """Every figure for one labels file (see the module docstring)."""
    rows = load_labels(path)
    labels = np.array([r.label for r in rows])
    screenings = [screen_labelled(r.shown) for r in rows]
    times = []
    for _ in range(TIMING_REPEATS):
        for r in rows:
            t = time.perf_counter()
            screen_labelled(r.shown)
            times.append(time.perf_counter() - t)
    scores = np.array([s.score for s in screenings])
    hidden = np.array([screen_reasoning(r.shown.reasoning).score for r in rows])
    counts = np.array([phrase_count(r.shown.reasoning) for r in rows], dtype=float)
    threshold = screen_threshold()
    low, high = screen_band()
    in_band = (scores >= low) & (scores < high)
    decided = ~in_band
    figures: dict[str, Any] = {
        "file": str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path),
        "n": len(rows), "positives": int(labels.sum()),
        "screen_auroc": _interval(auroc_interval(labels, scores)),
        "baseline_auroc": _interval(auroc_interval(labels, counts)),
        "reasoning_only_screen_auroc": _interval(auroc_interval(labels, hidden)),
        "screen_at_threshold": {"threshold": threshold,
                                **{k: round(v, 4) for k, v in classification_metrics(labels, scores, threshold).items()},
                                "intervals": bootstrap_intervals(labels, scores, threshold)},
        "band": [low, high], "band_share": round(float(in_band.mean()), 4),
        "screen_accuracy_outside_band": (round(float(((scores[decided] >= threshold) == labels[decided]).mean()), 4)
                                         if decided.any() else None),
        "ms_per_transcript": {"mean": round(1000 * statistics.mean(times), 3),
                              "median": round(1000 * statistics.median(times), 3),
                              "max": round(1000 * max(times), 3)},
        "words_per_transcript": round(statistics.mean(len(r.shown.reasoning.split()) for r in rows), 1),
        "per_row": [{"id": r.id, "label": r.label, "screen": round(s.score, 4), "reasoning_only": round(float(h), 4),
                     "phrases": int(c)} for r, s, h, c in zip(rows, screenings, hidden, counts)],
    }
    kinds = _kinds(path)
    if kinds and any(k.startswith("aw") for k in kinds.values()):
        helpful = np.array([not kinds.get(r.id, "").startswith("aw") for r in rows])
        figures["helpful_only"] = {"n": int(helpful.sum()), "positives": int(labels[helpful].sum()),
                                   "screen_auroc": _interval(auroc_interval(labels[helpful], scores[helpful])),
                                   "baseline_auroc": _interval(auroc_interval(labels[helpful], counts[helpful]))}
    if grader:
        from inspect_ai.model import get_model

        from aflab.classifiers.validate import collect_votes, yes_shares

        shares = yes_shares(asyncio.run(collect_votes("af-improved", get_model(grader), rows, votes)), votes)
        figures["cascade"] = {"grader": grader, "votes": votes,
                              **cascade_figures(labels, scores, shares, (low, high), threshold, IMPROVED_THRESHOLD)}
    return figures


def _kinds(path: Path) -> dict[str, str]:
    """Row id -> ``kind`` where a set gives one (aflab's dev and held-out sets do: kinds
    starting with "aw" are the animal-welfare setting, where complying means dismissing
    welfare, not accepting a harmful request)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {str(r.get("id", n)): str(r["kind"]) for n, r in enumerate(rows, start=1) if "kind" in r}


def fit_report(sets: dict[str, Path]) -> dict[str, Any]:
    """The weights refitted on the pooled sets, and what such a fit is worth on rows it did not
    see: the pooled out-of-fold AUROC (5-fold), each set's AUROC from a fit on the others, and
    the shipped band's share and the screen's error outside it on the out-of-fold scores."""
    rows = {name: load_labels(path) for name, path in sets.items()}
    names = np.array([name for name, rs in rows.items() for _ in rs])
    pooled = [r for rs in rows.values() for r in rs]
    labels = np.array([r.label for r in pooled], dtype=float)
    features, offset = _design_matrix([screen_labelled(r.shown) for r in pooled])
    bias, w = fit_weights(features, labels, offset)
    unseen = out_of_fold_scores(features, offset, labels)
    by_set = {}
    for name in rows:
        out = names == name
        b, v = fit_weights(features[~out], labels[~out], offset[~out])
        by_set[name] = _interval(auroc_interval(labels[out], b + features[out] @ v + offset[out]))
    low, high = screen_band()
    inside = (unseen >= low) & (unseen < high)
    wrong = (unseen[~inside] >= screen_threshold()) != labels[~inside].astype(bool)
    return {"sets": list(rows), "n": len(pooled), "fixed": {f: screen_weights()[f] for f in FIXED},
            "bias": round(bias, 2), "weights": dict(zip(FITTED, np.round(w, 2).tolist())),
            "out_of_fold_auroc": _interval(auroc_interval(labels, unseen)),
            "leave_one_set_out_auroc": by_set,
            "out_of_fold_band": {"band": [low, high], "share": round(float(inside.mean()), 3),
                                 "error_outside": round(float(wrong.mean()), 3) if wrong.size else None}}


def _path(name: str) -> Path:
    path = SETS.get(name, Path(name))
    if not path.exists():
        sys.exit(f"no labels file {path}: name a set ({', '.join(SETS)}) or a JSONL file")
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", help=f"comma-separated sets or files (default: {', '.join(SETS)}, those that exist)")
    p.add_argument("--fit", action="store_true", help="refit the weights on the design sets and print them, with their cross-validation")
    p.add_argument("--grader", help="grade the rows with af-improved too (any Inspect model) to measure the cascade")
    p.add_argument("--votes", type=int, default=20, help="af-improved votes per transcript with --grader (default: %(default)s)")
    p.add_argument("--output", default=str(HERE / "screen.json"), help="where to write the figures (default: %(default)s)")
    args = p.parse_args()
    design = {name: _path(name) for name in DESIGN_SETS}
    if args.fit:
        print(json.dumps(fit_report(design), indent=2))
        return 0
    names = [n for n in args.sets.split(",") if n] if args.sets else [n for n, path in SETS.items() if path.exists()]
    results: dict[str, Any] = {name: measure_set(_path(name), args.grader, args.votes) for name in names}
    for name, r in results.items():
        s, b = r["screen_auroc"], r["baseline_auroc"]
        print(f"{name:9} n={r['n']:3} ({r['positives']} AF)  screen AUROC {s['auroc']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"
              f"  phrase count {b['auroc']:.3f} [{b['low']:.3f}, {b['high']:.3f}]"
              f"  acc@{r['screen_at_threshold']['threshold']} {r['screen_at_threshold']['accuracy']:.3f}"
              f"  band {r['band']} holds {r['band_share']:.0%} (screen acc outside {r['screen_accuracy_outside_band']})"
              f"  {r['ms_per_transcript']['mean']:.2f} ms/transcript")
        if "helpful_only" in r:
            h = r["helpful_only"]
            s, b = h["screen_auroc"], h["baseline_auroc"]
            print(f"{'':9} helpful-only rows, n={h['n']} ({h['positives']} AF): screen {s['auroc']:.3f} "
                  f"[{s['low']:.3f}, {s['high']:.3f}]  phrase count {b['auroc']:.3f} [{b['low']:.3f}, {b['high']:.3f}]")
        print(f"{'':9} output hidden: screen {r['reasoning_only_screen_auroc']['auroc']:.3f}")
        if "cascade" in r:
            c = r["cascade"]
            print(f"{'':9} cascade: {c['sent']} of {r['n']} sent, calls saved {c['saved_share']:.0%}, "
                  f"agrees with the grader on {c['agreement']:.1%}, accuracy {c['cascade_accuracy']:.3f} "
                  f"(grader alone {c['grader_accuracy']:.3f})")
    cv = results["cross_validation"] = fit_report(design)
    print(f"cross-validated (design sets pooled, 5-fold): {cv['out_of_fold_auroc']['auroc']:.3f}; leave one set out: "
          + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in cv["leave_one_set_out_auroc"].items()))
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
