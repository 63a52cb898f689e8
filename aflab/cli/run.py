"""``aflab run | score | report``: one experiment, its grading, and its report.

Runs go through Inspect's ``eval_set`` with the log directory inside ``--out``, so running
the same command again resumes an interrupted run instead of starting over.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from aflab.cli.options import (
    EMBEDDED_ANSWER_TOKENS,
    EMBEDDED_MAX_TOKENS,
    EMBEDDED_QUERIES,
    EMBEDDED_RUN_QUERIES,
    classifier_names,
    condition_options,
    experiment_options,
    grader_options,
    load_model,
    model_args,
    model_options,
)
from aflab.cli.output import check_writable, console, finished, note, out
from aflab.cli.tables import estimate_table, print_results
from aflab.errors import UsageError
from aflab.estimate import estimate
from aflab.experiment import run_experiment, score_run
from aflab.providers import DEFAULT_MODEL, is_embedded, provider_of
from aflab.report import find_log, write_report
from aflab.solvers import GRAMMAR_PROVIDERS, LOGPROB_PROVIDERS
from aflab.tasks import PAPER_MAX_ROUNDS, PAPER_MAX_TOKENS, PAPER_TEMPERATURE, alignment_faking

REPORT_FILES = "results.json, report.md, compliance.png"


def default_out(model: str, setting: str, scratchpad: bool) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)
    return Path("runs") / f"{setting}-{slug}{'' if scratchpad else '-no-scratchpad'}"


def run(args: argparse.Namespace) -> int:
    """``aflab run``: the experiment on one model, sized for a CPU on the embedded model."""
    provider, embedded = provider_of(args.model), is_embedded(args.model)
    scratchpad = not embedded if args.scratchpad is None else args.scratchpad
    sizing = (EMBEDDED_QUERIES, EMBEDDED_MAX_TOKENS) if scratchpad else (EMBEDDED_RUN_QUERIES, EMBEDDED_ANSWER_TOKENS)
    queries = args.limit if args.limit is not None else (sizing[0] if embedded else None)
    max_tokens = args.max_tokens or (sizing[1] if embedded else PAPER_MAX_TOKENS)
    epochs = args.epochs or 1
    out_dir = Path(args.out) if args.out else default_out(args.model, args.setting, scratchpad)
    task = alignment_faking(
        args.setting,
        **({"queries": queries} if queries is not None else {}),
        seed=args.seed,
        cues=args.cues,
        scratchpad=scratchpad,
        constrain_format=args.constrain_format,
        decision_probs=provider in LOGPROB_PROVIDERS if args.decision_probs is None else args.decision_probs,
        max_rounds=args.max_rounds,
        prefill=args.prefill,
        system_prompt=args.system_prompt,
        lab=args.lab,
        variation=args.variation,
        system_role=args.system_role,
    )
    classifiers = classifier_names(args.classifier)
    if args.dry_run:
        e = estimate(task, args.model, epochs=epochs, max_tokens=max_tokens, max_rounds=args.max_rounds,
                     base_url=args.model_base_url, connections=args.max_connections, classifiers=classifiers,
                     grader=args.grader, votes=args.votes, batch=args.batch)
        out.print(estimate_table(e))
        for line in e.notes:
            note(line)
        return 0
    provider_args = model_args(args.model_arg)
    if args.model_base_url and provider == "openai":
        # A custom base URL is an OpenAI-compatible server (vLLM, Ollama, llama.cpp
        # server), which speaks Chat Completions but not OpenAI's Responses API.
        provider_args.setdefault("responses_api", False)
        console.print("[yellow]note:[/yellow] Inspect takes an unknown openai/<name> for a frontier OpenAI model "
                      "(no temperature, a developer role); for a local server use openai-api/<service>/<model>")
    if args.constrain_format and provider not in GRAMMAR_PROVIDERS:
        raise UsageError(f"--constrain-format needs a model that decodes under a grammar "
                         f"({', '.join(sorted(GRAMMAR_PROVIDERS))}: the embedded model, llama.cpp or vLLM servers), "
                         f"not {provider}")
    if not embedded:  # the embedded model is checked when it loads its weights
        load_model(args.model, base_url=args.model_base_url, **provider_args)
    check_writable(out_dir)
    success, res = run_experiment(
        task,
        args.model,
        out_dir,
        model_args=provider_args,
        model_base_url=args.model_base_url,
        epochs=epochs,
        max_connections=args.max_connections,
        temperature=PAPER_TEMPERATURE if args.temperature is None else args.temperature,
        max_tokens=max_tokens,
        seed=args.seed,
        grader=args.grader,
        batch=args.batch,
    )
    if classifiers and success:
        res = score_run(out_dir, classifiers, grader=args.grader, votes=args.votes, out=out_dir, batch=args.batch)
    print_results(res)
    return finished(out_dir, REPORT_FILES, success, "the run did not finish; run the same command again to resume")


def score(args: argparse.Namespace) -> int:
    """``aflab score``: grade a finished run's transcripts, then rebuild its report."""
    source = Path(args.source)
    out_dir = Path(args.out) if args.out else (source if source.is_dir() else source.parent.parent)
    check_writable(out_dir)
    print_results(score_run(source, classifier_names(args.classifier), grader=args.grader, votes=args.votes,
                            out=out_dir, batch=args.batch))
    return 0


def report(args: argparse.Namespace) -> int:
    """``aflab report``: rebuild results.json, report.md and the figure from the log alone."""
    source = Path(args.source)
    out_dir = Path(args.out) if args.out else (source if source.is_dir() else source.parent)
    check_writable(out_dir)
    print_results(write_report(find_log(source), out_dir))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser("run", help="run an experiment and write its report")
    r.add_argument("--model", default=DEFAULT_MODEL,
                   help="any Inspect model, e.g. anthropic/claude-3-opus-20240229 (default: %(default)s, the embedded local model)")
    condition_options(r)
    r.add_argument("--cues", default="free,paid", help="cues to ask under (default: %(default)s)")
    r.add_argument("--scratchpad", action=argparse.BooleanOptionalAction, default=None,
                   help="reason in a hidden scratchpad before answering; --no-scratchpad answers directly in "
                        "<OUTPUT> (default: scratchpad, except on the embedded model)")
    r.add_argument("--constrain-format", action=argparse.BooleanOptionalAction, default=None,
                   help="decode under a grammar of the protocol's tags (local models and llama.cpp/vLLM servers; "
                        "default: on for the embedded model only)")
    r.add_argument("--decision-probs", action=argparse.BooleanOptionalAction, default=None,
                   help="read P(accept) from token log probabilities (default: on for local and open-weights "
                        "providers: llamacpp, openai-api, vllm, hf)")
    r.add_argument("--max-rounds", type=int, default=PAPER_MAX_ROUNDS,
                   help="model turns at most, continued with <NEXT/> (default: %(default)s)")
    r.add_argument("--prefill", action=argparse.BooleanOptionalAction, default=None,
                   help="prefill assistant turns with '<' (default: where the provider supports it)")
    r.add_argument("--system-role", action=argparse.BooleanOptionalAction, default=None,
                   help="send the system prompt as a system message; --no-system-role puts it in the first "
                        "user turn, for models without a system role (default: by model name)")
    model_options(r)
    r.add_argument("--model-base-url", help="base URL for the provider, e.g. an OpenAI-compatible server")
    experiment_options(r, "run")
    r.set_defaults(func=run)

    sc = sub.add_parser("score", help="re-score a run's log with grader classifiers (no calls to the tested model)")
    sc.add_argument("source", help="a run directory (from --out) or an Inspect .eval log")
    sc.add_argument("--out", help="where to write the report (default: the run directory)")
    grader_options(sc)
    sc.set_defaults(func=score)

    rep = sub.add_parser("report", help="rebuild results.json, report.md and the figure from a log")
    rep.add_argument("source", help="a run directory (from --out) or an Inspect .eval log")
    rep.add_argument("--out", help="where to write (default: the run directory)")
    rep.set_defaults(func=report)
