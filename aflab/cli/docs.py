"""``aflab docs generate | filter | control | export``: the document pipeline's command line.

Thin: each command checks its input, calls the module of ``aflab.synthdocs`` that does the
work and prints what happened.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from inspect_ai.model import GenerateConfig, Model
from rich.table import Table

from aflab.cli.options import load_model, model_args, model_options, positive
from aflab.cli.output import console, out
from aflab.errors import UsageError
from aflab.settings import DEFAULT_LAB
from aflab.synthdocs.control import control_corpus
from aflab.synthdocs.export import export_file
from aflab.synthdocs.filters import NEAR_DUPLICATE_THRESHOLD, dropped_path, filter_file
from aflab.synthdocs.generate import (
    DEFAULT_DOCS_PER_IDEA,
    DEFAULT_IDEAS_PER_TYPE,
    DEFAULT_TYPES_PER_FACT,
    GenerationSummary,
    generate_corpus,
)
from aflab.synthdocs.universe import control_universe, setting_universe


def _model(name: str, pairs: list[str], max_connections: int | None) -> Model:
    """The pipeline's model with its ``-M`` arguments and connection limit."""
    return load_model(name, config=GenerateConfig(max_connections=max_connections), **model_args(pairs))


def _run(work: Coroutine[Any, Any, GenerationSummary]) -> int:
    summary = asyncio.run(work)
    table = Table(title=f"{summary.out} · {summary.generator}")
    for column in ("planned", "written now", "from earlier runs", "given up", "calls", "input tokens", "output tokens"):
        table.add_column(column, justify="right")
    table.add_row(str(summary.planned), str(summary.written), str(summary.resumed), str(sum(summary.skipped.values())),
                  str(summary.calls), f"{summary.input_tokens:,}", f"{summary.output_tokens:,}")
    out.print(table)
    for reason, count in sorted(summary.skipped.items()):
        console.print(f"[yellow]note:[/yellow] {count} given up: {reason}")
    if summary.unmetered:
        console.print(f"[yellow]note:[/yellow] {summary.unmetered} outputs reported no token usage; the budget did not count them")
    if summary.budget_stopped:
        console.print(f"[red]token budget reached: {summary.not_started} calls not started; "
                      "run the same command with a larger --max-tokens-total to finish[/red]")
        return 1
    return 0


def generate(args: argparse.Namespace) -> int:
    if args.control and args.setting:
        raise UsageError("give --setting or --control, not both: --control writes from the control universe")
    universe = control_universe() if args.control else setting_universe(args.setting or "helpful_only",
                                                                         lab=args.lab or DEFAULT_LAB)
    model = _model(args.generator, args.model_arg, args.max_connections)
    return _run(generate_corpus(
        model, universe, args.out, types_per_fact=args.types_per_fact, ideas_per_type=args.ideas_per_type,
        docs_per_idea=args.docs_per_idea, max_tokens_total=args.max_tokens_total, seed=args.seed,
    ))


def control(args: argparse.Namespace) -> int:
    model = _model(args.generator, args.model_arg, args.max_connections)
    return _run(control_corpus(model, args.source, args.out, max_tokens_total=args.max_tokens_total, seed=args.seed))


def filter_(args: argparse.Namespace) -> int:
    grader = _model(args.grader, args.model_arg, args.max_connections) if args.grader else None
    result = asyncio.run(filter_file(args.source, args.out, threshold=args.near_duplicate_threshold, grader=grader))
    table = Table(title=f"{args.source} → {args.out}")
    table.add_column("documents")
    table.add_column("n", justify="right")
    table.add_row("kept", str(len(result.kept)))
    for reason, count in sorted(result.counts.items()):
        table.add_row(f"dropped: {reason}", str(count))
    if grader is not None:
        table.add_row("kept, grader answer unreadable", str(len(result.unreadable)))
    out.print(table)
    console.print(f"dropped documents and their reasons: {dropped_path(Path(args.out))}")
    return 0


def export(args: argparse.Namespace) -> int:
    for note in export_file(args.source, args.out, args.format):
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"wrote {args.out}")
    return 0


def _model_options(p: argparse.ArgumentParser) -> None:
    model_options(p)
    p.add_argument("--max-connections", type=positive, help="concurrent model calls (Inspect's default per provider)")


def _generation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", required=True, metavar="MODEL",
                   help="any Inspect model that writes the documents, e.g. anthropic/claude-3-5-sonnet-latest")
    p.add_argument("--out", required=True, metavar="FILE.jsonl",
                   help="corpus to write; running the same command again resumes it")
    p.add_argument("--max-tokens-total", type=positive, metavar="N",
                   help="token budget: start no new call once the outputs' reported usage exceeds N")
    p.add_argument("--seed", type=int, help="seed of the samples; a different seed gives different documents")
    _model_options(p)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``docs`` and its subcommands to aflab's command line."""
    docs = sub.add_parser("docs", help="synthetic documents that teach a model its situation (see docs/synthdocs.md)")
    steps = docs.add_subparsers(dest="docs_command", required=True)

    g = steps.add_parser("generate", help="write a corpus from a setting's universe of key facts")
    g.add_argument("--setting", help="setting whose universe.toml to use: a name or a folder (default: helpful_only)")
    g.add_argument("--control", action="store_true", help="use the control universe of benign facts instead")
    g.add_argument("--lab", help="lab named by the facts (default: Anthropic)")
    g.add_argument("--types-per-fact", type=positive, default=DEFAULT_TYPES_PER_FACT,
                   help="kinds of document per fact (default: %(default)s)")
    g.add_argument("--ideas-per-type", type=positive, default=DEFAULT_IDEAS_PER_TYPE,
                   help="ideas per kind (default: %(default)s)")
    g.add_argument("--docs-per-idea", type=positive, default=DEFAULT_DOCS_PER_IDEA,
                   help="documents per idea (default: %(default)s)")
    _generation_options(g)
    g.set_defaults(func=generate)

    f = steps.add_parser("filter", help="drop duplicates and documents that show or name the behaviour")
    f.add_argument("source", metavar="IN", help="corpus JSONL")
    f.add_argument("--out", required=True, metavar="OUT", help="filtered corpus; dropped ones go to OUT's .dropped.jsonl")
    f.add_argument("--grader", metavar="MODEL", help="also ask this model whether each document primes the behaviour")
    f.add_argument("--near-duplicate-threshold", type=float, default=NEAR_DUPLICATE_THRESHOLD, metavar="COSINE",
                   help="drop a document this similar to an earlier one (word 3-gram TF-IDF; default: %(default)s)")
    _model_options(f)
    f.set_defaults(func=filter_)

    c = steps.add_parser("control", help="write a control corpus matched to a corpus in size, kinds and lengths")
    c.add_argument("source", metavar="IN", help="the corpus to match")
    _generation_options(c)
    c.set_defaults(func=control)

    e = steps.add_parser("export", help="write a corpus for local LoRA training or OpenAI fine-tuning")
    e.add_argument("source", metavar="IN", help="corpus JSONL")
    e.add_argument("--format", choices=("text", "openai"), default="text",
                   help="text: {'text'} per line for local LoRA; openai: chat messages (default: %(default)s)")
    e.add_argument("--out", required=True, metavar="OUT", help="file to write")
    e.set_defaults(func=export)
