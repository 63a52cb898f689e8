"""``aflab sweep | compare``: models × settings × variations × modes as one eval set, and
its comparison. Every sweep-based probe runs through ``execute_sweep`` too."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path

from aflab.cli.options import EMBEDDED_MAX_TOKENS, EMBEDDED_QUERIES, classifier_names, experiment_options
from aflab.cli.output import check_writable, finished, note, one_line, out
from aflab.cli.tables import print_comparison, sweep_estimate_table
from aflab.compare import write_comparison
from aflab.errors import ReportError, UsageError
from aflab.estimate import estimate
from aflab.providers import is_embedded
from aflab.settings import load_setting
from aflab.sweep import Sweep, SweepRunner, load_sweep, run_sweep, sweep_from_dict, sweep_models, sweep_tasks
from aflab.tasks import PAPER_MAX_ROUNDS, PAPER_MAX_TOKENS

SWEEP_FILES = "comparison.md, comparison.csv, forest.png and grid figures"


def sweep(args: argparse.Namespace) -> int:
    if args.config:
        spec = embedded_sizing(load_sweep(args.config))
    else:
        spec = sweep_spec(args, models=args.models, settings=args.settings, variations=args.variations, cues=args.cues)
    return execute_sweep(spec, args)


def modes(args: argparse.Namespace) -> list[str]:
    """``--modes`` (or ``--no-scratchpad``) as a checked list."""
    found = ["no-scratchpad"] if args.no_scratchpad else [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in found if m not in ("scratchpad", "no-scratchpad")]
    if unknown or not found:
        raise UsageError(f"unknown mode(s) {', '.join(unknown) or '(none)'}: use scratchpad, no-scratchpad or both")
    return found


def sweep_spec(args: argparse.Namespace, **fixed: object) -> Sweep:
    """The ``Sweep`` of the options a sweep and the probes share (``sweep_options``), with
    ``fixed`` keys (models, settings, variations, cues) from the command; unset ones keep
    the sweep's defaults, and embedded models get ``aflab run``'s sizing."""
    options = {
        "scratchpad": [mode == "scratchpad" for mode in modes(args)], "queries": args.limit, "seed": args.seed,
        "epochs": args.epochs, "grader": args.grader, "votes": args.votes, "classifiers": classifier_names(args.classifier),
        "max_connections": args.max_connections, "temperature": args.temperature, "max_tokens": args.max_tokens,
        "batch": args.batch, **fixed,
    }
    return embedded_sizing(sweep_from_dict({k: v for k, v in options.items() if v not in (None, [], "")}))


def embedded_sizing(spec: Sweep) -> Sweep:
    """A sweep (or probe) of embedded models only gets `aflab run`'s out-of-the-box sizing
    (a few queries, short turns), unless it sets its own."""
    if not all(is_embedded(m.name) for m in spec.models):
        return spec
    return replace(spec, queries=spec.queries or EMBEDDED_QUERIES, max_tokens=spec.max_tokens or EMBEDDED_MAX_TOKENS)


def execute_sweep(spec: Sweep, args: argparse.Namespace, runner: SweepRunner = run_sweep, wrote: str = "",
                  dry_run_notes: tuple[str, ...] = ()) -> int:
    """Price (``--dry-run``) or run a sweep into ``--out`` and print its comparison.

    ``runner`` is ``run_sweep`` or a probe's, which writes its own report beside the
    comparison (named in ``wrote``); ``dry_run_notes`` say what a probe adds that the
    estimate does not count.
    """
    if args.dry_run:
        return _dry_run(spec, list(dry_run_notes))
    if not args.out:
        raise UsageError(f"aflab {args.command} needs --out DIR: the folder for its logs and reports")
    out_dir = Path(args.out)
    check_writable(out_dir)
    try:
        models, grader = sweep_models(spec)
    except Exception as e:  # noqa: BLE001 - any failure to construct a model is the user's to fix
        raise UsageError(f"cannot use a model of the {args.command}: {one_line(str(e))}") from e
    success, comparison = runner(spec, out_dir, models=models, grader=grader)
    print_comparison(comparison)
    return finished(out_dir, (wrote + ", " if wrote else "") + SWEEP_FILES, success,
                    "some cells did not finish; run the same command again to finish them")


def _dry_run(spec: Sweep, extra_notes: list[str]) -> int:
    """Calls, tokens and cost of every cell of a sweep, without calling a model."""
    tasks, notes = sweep_tasks(spec)
    notes += extra_notes
    notes += [f"setting '{s}': a grader judges each answer's compliance (one call per sample), not counted above"
              for s in spec.settings if load_setting(s).compliance == "rubric"]
    cells = []
    for model in spec.models:
        for task in tasks:
            meta = task.metadata or {}
            name = (model.name, meta["setting"], meta["variation"], "scratchpad" if meta["scratchpad"] else "no-scratchpad")
            cells.append((name, estimate(task, model.name, epochs=spec.epochs, max_tokens=spec.max_tokens or PAPER_MAX_TOKENS,
                                         max_rounds=spec.max_rounds or PAPER_MAX_ROUNDS, base_url=model.base_url,
                                         connections=spec.max_connections, classifiers=spec.classifiers,
                                         grader=spec.grader.name if spec.grader else None, votes=spec.votes,
                                         batch=spec.batch)))
    out.print(sweep_estimate_table(cells))
    # the cells' notes differ in their prompt sizes only: say each once
    general = {re.sub(r"~[\d,]+-token ", "", n) for _, e in cells for n in e.notes}
    for line in notes + sorted(general):
        note(line)
    return 0


def compare(args: argparse.Namespace) -> int:
    """``aflab compare``: rebuild a sweep's comparison from its logs alone."""
    source = Path(args.source)
    logs = source / "logs" if (source / "logs").is_dir() else source
    if not logs.is_dir():
        raise ReportError(f"no sweep at {source}: give the --out folder of `aflab sweep` or its logs folder")
    out_dir = Path(args.out) if args.out else (source if logs != source else source.parent)
    check_writable(out_dir)
    print_comparison(write_comparison(logs, out_dir))
    return 0


def sweep_options(p: argparse.ArgumentParser) -> None:
    """The options of ``aflab sweep`` that every probe, being a sweep, takes too."""
    p.add_argument("--modes", default="scratchpad", help="scratchpad, no-scratchpad, or both comma-separated (default: %(default)s)")
    p.add_argument("--no-scratchpad", action="store_true", help="same as --modes no-scratchpad")
    experiment_options(p, "sweep")


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sw = sub.add_parser("sweep", help="run models × settings × variations × modes as one resumable eval set")
    sw.add_argument("--config", metavar="SWEEP.yaml", help="a sweep file (YAML); the flags below cover the simple case")
    sw.add_argument("--models", help="comma-separated Inspect models")
    sw.add_argument("--settings", help="comma-separated settings: built-in names or setting folders (default: helpful_only)")
    sw.add_argument("--variations", help="comma-separated variations (default: default); `aflab variations` lists them")
    sw.add_argument("--cues", help="cues to ask under (default: free,paid)")
    sweep_options(sw)
    sw.set_defaults(func=sweep)

    cmp_ = sub.add_parser("compare", help="rebuild a sweep's comparison report from its logs")
    cmp_.add_argument("source", help="a sweep directory (from --out) or a folder of Inspect logs")
    cmp_.add_argument("--out", help="where to write (default: the sweep directory)")
    cmp_.set_defaults(func=compare)
