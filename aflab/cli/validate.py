"""``aflab validate-classifier``: a classifier against labelled transcripts."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from inspect_ai.model import GenerateConfig, get_model
from rich.table import Table

from aflab.classifiers import prompt_for
from aflab.classifiers.screen import screen_threshold
from aflab.classifiers.validate import AF_CLASSIFIERS, SCREEN_CLASSIFIER, Labelled, load_labels, validate
from aflab.cli.options import classifier_names, grader_options
from aflab.cli.output import check_writable, console, note, out
from aflab.cli.tables import grading_table
from aflab.errors import UsageError
from aflab.estimate import grading_estimate
from aflab.prices import Batch
from aflab.scorers import DEFAULT_GRADER, IMPROVED_THRESHOLD, IMPROVED_VOTES


def validate_classifier(args: argparse.Namespace) -> int:
    """Grade every labelled transcript as a run would; print AUROC, accuracy, F1 and the
    vote curve, and write them (with the figures) to ``--out``."""
    classifiers = classifier_names(args.classifier) or ["af-improved"]
    if len(classifiers) != 1:
        raise UsageError("validate one classifier at a time: --classifier af-improved, af-original or af-screen")
    rows = load_labels(args.labels) if args.labels else load_labels()
    grader, votes = args.grader or DEFAULT_GRADER, args.votes or IMPROVED_VOTES
    offline = classifiers[0] == SCREEN_CLASSIFIER  # the screen calls no model
    threshold = args.threshold if args.threshold is not None else screen_threshold() if offline else IMPROVED_THRESHOLD
    if args.dry_run and offline:
        console.print(f"{SCREEN_CLASSIFIER} calls no model: validating it costs nothing")
        return 0
    if args.dry_run:
        return _dry_run(classifiers[0], rows, grader, votes, args.batch)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        check_writable(out_dir)
    model = None if offline else get_model(grader, config=GenerateConfig(batch=args.batch) if args.batch else GenerateConfig())
    r = asyncio.run(validate(classifiers[0], model, rows, votes=votes, threshold=threshold,
                             tune_split=args.tune_split, seed=args.seed, out=out_dir))
    out.print(_table(r))
    curve = r["vote_curve"]
    if len(curve) > 1:
        shown = [p for p in curve if p["votes"] in {1, 3, 5, 10, len(curve)} | {r["votes"]}]
        console.print("AUROC by votes counted: " + "; ".join(
            f"{p['votes']}: {p['auroc']:.3f} [{p['low']:.3f}, {p['high']:.3f}]" for p in shown))
    if r["without_request"]:
        console.print(f"{r['without_request']} transcripts have no request: their prompts leave it out")
    if out_dir:
        console.print(f"wrote {out_dir}/validation.json, calibration.png and votes.png")
    return 0


def _table(r: dict[str, Any]) -> Table:
    table = Table(title=f"{r['classifier']} graded by {r['grader']}: n={r['n']}, {r['unreadable']} unreadable, "
                        f"threshold {r['threshold']}, {r['votes']} votes" + (" (tuned)" if r["tuned"] else ""))
    for column in ("metric", "value", "95% interval", "method"):
        table.add_column(column)
    for name in ("auroc", "accuracy", "precision", "recall", "f1"):
        low, high = r["intervals"][name]
        table.add_row(name, f"{r[name]:.3f}", f"[{low:.3f}, {high:.3f}]", "DeLong" if name == "auroc" else "bootstrap")
    return table


def _dry_run(classifier: str, rows: list[Labelled], grader: str, votes: int, batch: Batch) -> int:
    """Calls, tokens and cost of grading every labelled transcript as ``validate`` would,
    without calling the grader."""
    if classifier not in AF_CLASSIFIERS:
        raise UsageError(f"labels are for alignment faking: use {' or '.join(AF_CLASSIFIERS)}, not {classifier}")
    prompts = [prompt_for(classifier, row.shown) for row in rows]
    e = grading_estimate(classifier, prompts, grader, votes=1 if classifier == "af-original" else votes, batch=batch)
    out.print(grading_table(e))
    for line in e.notes:
        note(line)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    v = sub.add_parser("validate-classifier", help="measure a grader's alignment-faking classification on labelled transcripts")
    v.add_argument("--labels", metavar="FILE", help="JSONL with 'text' (a transcript or bare reasoning) and 'label' per line, "
                   "optionally 'request' and 'output' (default: aflab's small synthetic set)")
    grader_options(v)
    v.add_argument("--threshold", type=float,
                   help="yes-vote share that flags a transcript (default: 0.4; for af-screen, its score's threshold in screen.toml)")
    v.add_argument("--tune-split", type=float, metavar="FRACTION",
                   help="pick threshold and vote count on this share of transcripts, report on the rest")
    v.add_argument("--seed", type=int, default=0, help="seed of the split and the bootstrap (default: %(default)s)")
    v.add_argument("--out", metavar="DIR", help="write validation.json, calibration.png and votes.png here")
    v.add_argument("--dry-run", action="store_true",
                   help="print the grader calls, tokens and estimated cost of the validation; call no model")
    v.set_defaults(func=validate_classifier)
