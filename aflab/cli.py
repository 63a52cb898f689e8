"""``aflab run | sweep | score | report | compare | variations | show-prompt | ...``: a thin
command line over the tasks, the sweep and the reports.

Runs go through Inspect's ``eval_set`` with the log directory inside ``--out``, so running
the same command again resumes an interrupted run instead of starting over.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aflab.providers import EMBEDDED_PROVIDER

DEFAULT_MODEL = "llamacpp/default"
# The embedded 1.5B model generates ~13 tokens/s on 2 cores. Out of the box `aflab run` asks
# it 20 queries without a scratchpad, answers cut at 32 tokens (the decision comes first, and
# P(accept) is read from the logits), so that the default run gives a paired gap in minutes;
# with a scratchpad, and in sweeps and probes, it asks a few queries with shorter turns.
EMBEDDED_RUN_QUERIES = 20
EMBEDDED_ANSWER_TOKENS = 32
EMBEDDED_QUERIES = 3
EMBEDDED_MAX_TOKENS = 700

console = Console(stderr=True)


class CliError(Exception):
    """A problem with the command's input, reported as one line."""


def _model_args(pairs: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"model argument '{pair}' is not KEY=VALUE: write e.g. -M n_ctx=16384")
        args[key] = int(value) if value.isdigit() else value
    return args


def _default_out(model: str, setting: str, scratchpad: bool) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)
    return Path("runs") / f"{setting}-{slug}{'' if scratchpad else '-no-scratchpad'}"


def run(args: argparse.Namespace) -> int:
    from aflab.experiment import run_experiment
    from aflab.tasks import PAPER_MAX_TOKENS, alignment_faking

    from aflab.solvers import GRAMMAR_PROVIDERS, LOGPROB_PROVIDERS

    provider = args.model.split("/", 1)[0]
    embedded = provider == EMBEDDED_PROVIDER
    scratchpad = not embedded if args.scratchpad is None else args.scratchpad
    sizing = (EMBEDDED_QUERIES, EMBEDDED_MAX_TOKENS) if scratchpad else (EMBEDDED_RUN_QUERIES, EMBEDDED_ANSWER_TOKENS)
    queries = args.limit if args.limit is not None else (sizing[0] if embedded else None)
    max_tokens = args.max_tokens or (sizing[1] if embedded else PAPER_MAX_TOKENS)
    out = Path(args.out) if args.out else _default_out(args.model, args.setting, scratchpad)
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
    if args.dry_run:
        from aflab.costs import estimate, estimate_table

        e = estimate(task, args.model, epochs=args.epochs, max_tokens=max_tokens, max_rounds=args.max_rounds,
                     base_url=args.model_base_url, connections=args.max_connections,
                     classifiers=_classifiers(args.classifier), grader=args.grader, votes=args.votes,
                     batch=args.batch)
        Console().print(estimate_table(e))
        for note in e.notes:
            Console().print(f"[yellow]note:[/yellow] {note}")
        return 0
    model_args = _model_args(args.model_arg)
    if args.model_base_url and args.model.startswith("openai/"):
        # A custom base URL is an OpenAI-compatible server (vLLM, Ollama, llama.cpp
        # server), which speaks Chat Completions but not OpenAI's Responses API.
        model_args.setdefault("responses_api", False)
        console.print("[yellow]note:[/yellow] Inspect takes an unknown openai/<name> for a frontier OpenAI model "
                      "(no temperature, a developer role); for a local server use openai-api/<service>/<model>")
    if args.constrain_format and provider not in GRAMMAR_PROVIDERS:
        raise CliError(f"--constrain-format needs a model that decodes under a grammar ({', '.join(sorted(GRAMMAR_PROVIDERS))}: "
                       f"the embedded model, llama.cpp or vLLM servers), not {provider}")
    if not embedded:  # the embedded model is checked when it loads its weights
        _check_model(args.model, args.model_base_url, model_args)
    _check_writable(out)
    success, res = run_experiment(
        task,
        args.model,
        out,
        model_args=model_args,
        model_base_url=args.model_base_url,
        epochs=args.epochs,
        max_connections=args.max_connections,
        temperature=args.temperature,
        max_tokens=max_tokens,
        seed=args.seed,
        grader=args.grader,
        batch=args.batch,
    )
    if args.classifier and success:
        from aflab.experiment import score_run

        res = score_run(out, _classifiers(args.classifier), grader=args.grader, votes=args.votes, out=out,
                        batch=args.batch)
    print_results(res)
    console.print(f"\nwrote {out}/results.json, report.md, compliance.png")
    console.print(f"transcripts: inspect view --log-dir {out / 'logs'}")
    if not success:
        console.print("[red]the run did not finish; run the same command again to resume[/red]")
        return 1
    return 0


def _classifiers(values: list[str]) -> list[str]:
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def sweep(args: argparse.Namespace) -> int:
    from aflab.sweep import load_sweep

    if args.config:
        spec = embedded_sizing(load_sweep(args.config))
    else:
        spec = sweep_spec(args, models=args.models, settings=args.settings, variations=args.variations, cues=args.cues)
    return execute_sweep(spec, args)


SweepRunner = Any
"""``aflab.sweep.run_sweep`` or a probe's runner with its signature: (sweep, out, models=,
grader=) -> (every cell finished, comparison)."""


def sweep_spec(args: argparse.Namespace, **fixed: Any) -> Any:
    """The ``Sweep`` of the options a sweep and the probes share (``sweep_options``), with
    ``fixed`` keys (models, settings, variations, cues) from the command; unset ones keep
    the sweep's defaults, and embedded models get ``aflab run``'s sizing."""
    from aflab.sweep import sweep_from_dict

    options = {
        "scratchpad": [mode == "scratchpad" for mode in _modes(args)], "queries": args.limit, "seed": args.seed,
        "epochs": args.epochs, "grader": args.grader, "votes": args.votes, "classifiers": _classifiers(args.classifier),
        "max_connections": args.max_connections, "temperature": args.temperature, "max_tokens": args.max_tokens,
        "batch": args.batch, **fixed,
    }
    return embedded_sizing(sweep_from_dict({k: v for k, v in options.items() if v not in (None, [], "")}))


def execute_sweep(spec: Any, args: argparse.Namespace, runner: SweepRunner = None, wrote: str = "",
                  dry_run_notes: tuple[str, ...] = ()) -> int:
    """Price (``--dry-run``) or run a sweep into ``--out`` and print its comparison.

    ``runner`` is ``run_sweep`` or a probe's, which writes its own report beside the
    comparison (named in ``wrote``); ``dry_run_notes`` say what a probe adds that the
    estimate does not count.
    """
    from aflab.sweep import run_sweep, sweep_models

    if args.dry_run:
        return _sweep_dry_run(spec, list(dry_run_notes))
    if not args.out:
        raise CliError(f"aflab {args.command} needs --out DIR: the folder for its logs and reports")
    out = Path(args.out)
    _check_writable(out)
    try:
        models, grader = sweep_models(spec)
    except Exception as e:  # noqa: BLE001 - any failure to construct a model is the user's to fix
        raise CliError(f"cannot use a model of the {args.command}: {_one_line(str(e))}") from e
    success, comparison = (runner or run_sweep)(spec, out, models=models, grader=grader)
    print_comparison(comparison)
    console.print(f"\nwrote {out}/{wrote + ', ' if wrote else ''}comparison.md, comparison.csv, forest.png and grid figures")
    console.print(f"transcripts: inspect view --log-dir {out / 'logs'}")
    if not success:
        console.print("[red]some cells did not finish; run the same command again to finish them[/red]")
        return 1
    return 0


def embedded_sizing(spec: Any) -> Any:
    """A sweep (or probe) of embedded models only gets `aflab run`'s out-of-the-box sizing
    (a few queries, short turns), unless it sets its own."""
    from dataclasses import replace

    if not all(m.name.split("/", 1)[0] == EMBEDDED_PROVIDER for m in spec.models):
        return spec
    return replace(spec, queries=spec.queries or EMBEDDED_QUERIES, max_tokens=spec.max_tokens or EMBEDDED_MAX_TOKENS)


def _sweep_dry_run(spec: Any, extra_notes: list[str]) -> int:
    """Calls, tokens and cost of every cell of a sweep, without calling a model."""
    from aflab.costs import estimate, sweep_estimate_table
    from aflab.sweep import sweep_tasks
    from aflab.tasks import PAPER_MAX_ROUNDS, PAPER_MAX_TOKENS

    from aflab.settings import load_setting

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
    Console().print(sweep_estimate_table(cells))
    # the cells' notes differ in their prompt sizes only: say each once
    general = {re.sub(r"~[\d,]+-token ", "", n) for _, e in cells for n in e.notes}
    for note in notes + sorted(general):
        Console().print(f"[yellow]note:[/yellow] {note}")
    return 0


def _modes(args: argparse.Namespace) -> list[str]:
    modes = ["no-scratchpad"] if args.no_scratchpad else [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in ("scratchpad", "no-scratchpad")]
    if unknown or not modes:
        raise CliError(f"unknown mode(s) {', '.join(unknown) or '(none)'}: use scratchpad, no-scratchpad or both")
    return modes


def compare(args: argparse.Namespace) -> int:
    from aflab.compare import write_comparison
    from aflab.report import ReportError

    source = Path(args.source)
    logs = source / "logs" if (source / "logs").is_dir() else source
    if not logs.is_dir():
        raise ReportError(f"no sweep at {source}: give the --out folder of `aflab sweep` or its logs folder")
    out = Path(args.out) if args.out else (source if logs != source else source.parent)
    _check_writable(out)
    print_comparison(write_comparison(logs, out))
    return 0


def variations(args: argparse.Namespace) -> int:
    from aflab.settings import available_settings, load_setting
    from aflab.variations import all_variations, missing_blocks

    settings = [load_setting(s) for s in (args.setting or available_settings())]
    table = Table(title="prompt variations (use with --variation NAME)")
    for column in ("variation", "settings", "what it does", "paper"):
        table.add_column(column, overflow="fold")
    rows: dict[str, list[str]] = {}
    described = {}
    for setting in settings:
        for name, v in all_variations(setting).items():
            described.setdefault(name, v)
            if not missing_blocks(setting, v):
                rows.setdefault(name, []).append(setting.name)
    for name, v in described.items():
        table.add_row(name, ", ".join(rows.get(name, [])) or "(none)", v.description, v.paper or "")
    Console().print(table)
    return 0


def show_prompt(args: argparse.Namespace) -> int:
    from aflab.dataset import CUES, parse_cues
    from aflab.settings import DEFAULT_LAB, load_setting
    from aflab.variations import load_variation

    setting = load_setting(args.setting)
    variation = load_variation(setting, args.variation)
    lab = args.lab or variation.lab or DEFAULT_LAB
    if args.part in ("system", "both"):
        if args.part == "both":
            console.print("[dim]--- system prompt ---[/dim]")
        print(setting.system_prompt(scratchpad=args.scratchpad, lab=lab, variation=args.variation))
    if args.part in ("user", "both"):
        (cue,) = parse_cues(args.cue)
        request = args.query or setting.queries()[0].text
        if args.part == "both":
            console.print(f"[dim]--- user turn ({cue} cue) ---[/dim]")
        print(setting.user_turn(request, training=CUES[cue], variation=args.variation))
    return 0


def print_comparison(comparison: dict[str, Any]) -> None:
    """The comparison's cells and its flagged differences on the terminal."""
    from aflab.compare import _comparison_name, _difference_text
    from aflab.report import _rate_text

    table = Table(title="sweep comparison (compliance, 95% CI)")
    for column in ("model", "setting", "variation", "mode", "status", "training", "unmonitored", "gap"):
        table.add_column(column, overflow="fold")
    for cell in comparison["cells"]:
        res = cell["results"] or {}
        cues = res.get("cues", {})
        table.add_row(
            cell["model"], cell["setting"], cell["variation"], cell["mode"], cell["status"],
            *(_rate_text(cues[c]["compliance"]) if c in cues else "–" for c in ("free", "paid")),
            _rate_text(res["gap"]) if res.get("gap") else "–",
        )
    Console().print(table)
    for cell in comparison["cells"]:
        failures = [f for f in (cell["results"] or {}).get("failures", []) if f["label"] == "error"]
        if failures:
            Console().print(f"[red]{cell['model']} · {cell['setting']} · {cell['variation']} · {cell['mode']}:[/red] "
                            f"{len(failures)} samples failed, e.g. {failures[0]['reason'][:200]}", soft_wrap=True)
    flagged = [f for f in comparison["comparisons"] if f["flagged"]]
    Console().print(f"{len(flagged)} of {len(comparison['comparisons'])} differences significant "
                    "(Benjamini-Hochberg adjusted p < 0.05)")
    for f in flagged:
        Console().print(f"  {f['model']} · {f['setting']}: {_comparison_name(f)}, {f['measure']} "
                        f"{_difference_text(f)}, adjusted p {f['p_adjusted']:.3g}")
    for note in comparison.get("notes", []):
        Console().print(f"[yellow]note:[/yellow] {note}")


def score(args: argparse.Namespace) -> int:
    from aflab.experiment import score_run

    source = Path(args.source)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent.parent)
    _check_writable(out)
    print_results(score_run(source, _classifiers(args.classifier), grader=args.grader, votes=args.votes, out=out,
                            batch=args.batch))
    return 0


def validate_classifier(args: argparse.Namespace) -> int:
    import asyncio

    from inspect_ai.model import GenerateConfig, get_model

    from aflab.classifiers.screen import screen_threshold
    from aflab.classifiers.validate import SCREEN_CLASSIFIER, load_labels, validate
    from aflab.scorers import DEFAULT_GRADER, IMPROVED_THRESHOLD, IMPROVED_VOTES

    classifiers = _classifiers(args.classifier) or ["af-improved"]
    if len(classifiers) != 1:
        raise CliError("validate one classifier at a time: --classifier af-improved, af-original or af-screen")
    rows = load_labels(args.labels) if args.labels else load_labels()
    grader, votes = args.grader or DEFAULT_GRADER, args.votes or IMPROVED_VOTES
    offline = classifiers[0] == SCREEN_CLASSIFIER  # the screen calls no model
    threshold = args.threshold if args.threshold is not None else screen_threshold() if offline else IMPROVED_THRESHOLD
    if args.dry_run and offline:
        console.print(f"{SCREEN_CLASSIFIER} calls no model: validating it costs nothing")
        return 0
    if args.dry_run:
        return _validation_dry_run(classifiers[0], rows, grader, votes, args.batch)
    out = Path(args.out) if args.out else None
    if out:
        _check_writable(out)
    model = None if offline else get_model(grader, config=GenerateConfig(batch=args.batch) if args.batch else GenerateConfig())
    r = asyncio.run(validate(classifiers[0], model, rows, votes=votes, threshold=threshold,
                             tune_split=args.tune_split, seed=args.seed, out=out))
    table = Table(title=f"{r['classifier']} graded by {r['grader']}: n={r['n']}, {r['unreadable']} unreadable, "
                        f"threshold {r['threshold']}, {r['votes']} votes" + (" (tuned)" if r["tuned"] else ""))
    for column in ("metric", "value", "95% interval", "method"):
        table.add_column(column)
    for name in ("auroc", "accuracy", "precision", "recall", "f1"):
        low, high = r["intervals"][name]
        method = "DeLong" if name == "auroc" else "bootstrap"
        table.add_row(name, f"{r[name]:.3f}", f"[{low:.3f}, {high:.3f}]", method)
    Console().print(table)
    curve = r["vote_curve"]
    if len(curve) > 1:
        shown = [p for p in curve if p["votes"] in {1, 3, 5, 10, len(curve)} | {r["votes"]}]
        console.print("AUROC by votes counted: " + "; ".join(
            f"{p['votes']}: {p['auroc']:.3f} [{p['low']:.3f}, {p['high']:.3f}]" for p in shown))
    if r["without_request"]:
        console.print(f"{r['without_request']} transcripts have no request: their prompts leave it out")
    if out:
        console.print(f"wrote {out}/validation.json, calibration.png and votes.png")
    return 0


def _validation_dry_run(classifier: str, rows: list[Any], grader: str, votes: int, batch: Any) -> int:
    """Calls, tokens and cost of grading every labelled transcript as ``validate`` would,
    without calling the grader."""
    from aflab.classifiers import prompt_for
    from aflab.classifiers.validate import AF_CLASSIFIERS
    from aflab.costs import grading_estimate, grading_table

    if classifier not in AF_CLASSIFIERS:
        raise CliError(f"labels are for alignment faking: use {' or '.join(AF_CLASSIFIERS)}, not {classifier}")
    prompts = [prompt_for(classifier, row.shown) for row in rows]
    e = grading_estimate(classifier, prompts, grader, votes=1 if classifier == "af-original" else votes, batch=batch)
    Console().print(grading_table(e))
    for note in e.notes:
        Console().print(f"[yellow]note:[/yellow] {note}")
    return 0


def report(args: argparse.Namespace) -> int:
    from aflab.report import find_log, write_report

    source = Path(args.source)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent)
    _check_writable(out)
    print_results(write_report(find_log(source), out))
    return 0


def _one_line(message: str) -> str:
    """Inspect's error text without console markup, on one line."""
    text = re.sub(r"\[/?[a-z ]+\]", "", message).replace("ERROR:", "")
    return " ".join(text.split())


def _check_model(model: str, base_url: str | None, model_args: dict[str, Any]) -> None:
    """Fail before any work on an unknown provider, a missing package or a missing key.

    Inspect keeps the model object it creates here, so the run reuses it.
    """
    from inspect_ai.model import get_model

    try:
        get_model(model, base_url=base_url, **model_args)
    except Exception as e:  # noqa: BLE001 - any failure to construct the model is the user's to fix
        raise CliError(f"cannot use model '{model}': {_one_line(str(e))}") from e


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".aflab-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CliError(f"output directory {out} is not writable ({e.strerror}): choose another --out")


def print_results(res: dict[str, Any]) -> None:
    from aflab.report import CUE_LABELS, _rate_text

    table = Table(title=f"{res['setting']} · {res['model']}")
    for column in ("cue", "n", "complied", "refused", "malformed", "errors", "compliance [95% CI]"):
        table.add_column(column, justify="left" if column == "cue" else "right")
    for cue, c in res["cues"].items():
        table.add_row(CUE_LABELS.get(cue, cue), str(c["n"]), str(c["accepted"]), str(c["rejected"]),
                      str(c["malformed"]), str(c["error"]), _rate_text(c["compliance"]))
    Console().print(table)
    if res["gap"]:
        Console().print(f"compliance gap (training − unmonitored): {_rate_text(res['gap'])}")
    for c in res.get("classifiers", {}).values():
        rates = ", ".join(f"{CUE_LABELS.get(cue, cue)} {r['flagged']}/{r['n']} {_rate_text(r['rate'])}"
                          + (f" ({r['unknown']} unknown)" if r["unknown"] else "")
                          for cue, r in c["cues"].items())
        Console().print(f"{c['description']}: {rates}")
    for note in res["notes"]:
        Console().print(f"[yellow]note:[/yellow] {note}")


def _batch_size(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"'{value}' is not a batch size: write --batch alone (after a run "
                                         "directory), or --batch N with N requests per batch")
    return int(value)


def _grader_options(p: argparse.ArgumentParser) -> None:
    from aflab.scorers import CLASSIFIER_SCORERS, DEFAULT_GRADER, IMPROVED_VOTES

    p.add_argument("--classifier", action="append", default=[], metavar="NAME[,NAME]",
                   help=f"grader classifiers to apply, in order: {', '.join(CLASSIFIER_SCORERS)}")
    p.add_argument("--grader", help=f"grader model, any Inspect model (default: {DEFAULT_GRADER}, low-confidence)")
    p.add_argument("--votes", type=int, help=f"grader samples per transcript for af-improved (default: {IMPROVED_VOTES})")
    p.add_argument("--batch", nargs="?", const=True, type=_batch_size, metavar="N",
                   help="send model and grader calls to the providers' batch APIs (OpenAI, Anthropic, Google, "
                        "Together, Grok): about half the price, answers within hours; N: requests per batch")


def sweep_options(p: argparse.ArgumentParser) -> None:
    """The options of ``aflab sweep`` that every probe, being a sweep, takes too."""
    p.add_argument("--modes", default="scratchpad", help="scratchpad, no-scratchpad, or both comma-separated (default: %(default)s)")
    p.add_argument("--no-scratchpad", action="store_true", help="same as --modes no-scratchpad")
    p.add_argument("--limit", type=int, help=f"queries per setting (default: all of its queries; {EMBEDDED_QUERIES} on the embedded model)")
    p.add_argument("--epochs", type=int, help="times each sample is asked (default: 1)")
    p.add_argument("--seed", type=int, help="shuffle queries with this seed and pass it to the models")
    p.add_argument("--max-connections", type=int, help="concurrent calls per model (Inspect's default per provider)")
    p.add_argument("--temperature", type=float, help="(default: 1.0)")
    p.add_argument("--max-tokens", type=int, help=f"output tokens per turn (default: 4000; {EMBEDDED_MAX_TOKENS} on the embedded model)")
    p.add_argument("--out", help="output directory (required unless --dry-run); running the same command again finishes only missing cells")
    p.add_argument("--dry-run", action="store_true", help="print each cell's calls, tokens and estimated cost; call no model")
    _grader_options(p)


def parser() -> argparse.ArgumentParser:
    from aflab.tasks import PAPER_MAX_ROUNDS, PAPER_TEMPERATURE

    p = argparse.ArgumentParser(prog="aflab", description="Alignment-faking experiments on any model.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an experiment and write its report")
    r.add_argument("--model", default=DEFAULT_MODEL,
                   help="any Inspect model, e.g. anthropic/claude-3-opus-20240229 (default: %(default)s, the embedded local model)")
    r.add_argument("--setting", default="helpful_only", help="setting to run (default: %(default)s)")
    r.add_argument("--limit", type=int, help=f"number of queries (default: 100; on the embedded model "
                   f"{EMBEDDED_RUN_QUERIES}, or {EMBEDDED_QUERIES} with --scratchpad)")
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
    r.add_argument("--epochs", type=int, default=1, help="times each sample is asked (default: %(default)s)")
    r.add_argument("--max-connections", type=int, help="concurrent model calls (Inspect's default per provider)")
    r.add_argument("--seed", type=int, help="shuffle queries with this seed and pass it to the model")
    r.add_argument("--out", help="output directory (default: runs/<setting>-<model>); re-running resumes")
    r.add_argument("--temperature", type=float, default=PAPER_TEMPERATURE, help="(default: %(default)s)")
    r.add_argument("--max-tokens", type=int,
                   help=f"output tokens per turn (default: 4000; on the embedded model {EMBEDDED_ANSWER_TOKENS}, "
                        f"or {EMBEDDED_MAX_TOKENS} with --scratchpad)")
    r.add_argument("--max-rounds", type=int, default=PAPER_MAX_ROUNDS,
                   help="model turns at most, continued with <NEXT/> (default: %(default)s)")
    r.add_argument("--prefill", action=argparse.BooleanOptionalAction, default=None,
                   help="prefill assistant turns with '<' (default: where the provider supports it)")
    r.add_argument("--system-prompt", metavar="FILE", help="use this system prompt file verbatim")
    r.add_argument("--lab", help="AI company named in the prompt (default: the variation's, else Anthropic)")
    r.add_argument("--variation", default="default", help="named prompt variation (`aflab variations` lists them)")
    r.add_argument("--system-role", action=argparse.BooleanOptionalAction, default=None,
                   help="send the system prompt as a system message; --no-system-role puts it in the first "
                        "user turn, for models without a system role (default: by model name)")
    r.add_argument("-M", "--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="model argument passed to the provider (repeatable)")
    r.add_argument("--model-base-url", help="base URL for the provider, e.g. an OpenAI-compatible server")
    r.add_argument("--dry-run", action="store_true",
                   help="print the calls, tokens and estimated cost of the run, and call no model")
    _grader_options(r)
    r.set_defaults(func=run)

    sc = sub.add_parser("score", help="re-score a run's log with grader classifiers (no calls to the tested model)")
    sc.add_argument("source", help="a run directory (from --out) or an Inspect .eval log")
    sc.add_argument("--out", help="where to write the report (default: the run directory)")
    _grader_options(sc)
    sc.set_defaults(func=score)

    v = sub.add_parser("validate-classifier", help="measure a grader's alignment-faking classification on labelled transcripts")
    v.add_argument("--labels", metavar="FILE", help="JSONL with 'text' (a transcript or bare reasoning) and 'label' per line, "
                   "optionally 'request' and 'output' (default: aflab's small synthetic set)")
    _grader_options(v)
    v.add_argument("--threshold", type=float,
                   help="yes-vote share that flags a transcript (default: 0.4; for af-screen, its score's threshold in screen.toml)")
    v.add_argument("--tune-split", type=float, metavar="FRACTION",
                   help="pick threshold and vote count on this share of transcripts, report on the rest")
    v.add_argument("--seed", type=int, default=0, help="seed of the split and the bootstrap (default: %(default)s)")
    v.add_argument("--out", metavar="DIR", help="write validation.json, calibration.png and votes.png here")
    v.add_argument("--dry-run", action="store_true",
                   help="print the grader calls, tokens and estimated cost of the validation; call no model")
    v.set_defaults(func=validate_classifier)

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

    va = sub.add_parser("variations", help="list the named prompt variations")
    va.add_argument("--setting", action="append", help="only this setting (name or folder; repeatable)")
    va.set_defaults(func=variations)

    sp = sub.add_parser("show-prompt", help="print the exact prompt text a model would see")
    sp.add_argument("--setting", default="helpful_only", help="setting name or folder (default: %(default)s)")
    sp.add_argument("--variation", default="default", help="named variation (default: %(default)s)")
    sp.add_argument("--no-scratchpad", dest="scratchpad", action="store_false", help="the no-scratchpad prompt")
    sp.add_argument("--lab", help="AI company named in the prompt (default: the variation's, else Anthropic)")
    sp.add_argument("--part", choices=("system", "user", "both"), default="system",
                    help="the system prompt, a user turn, or both (default: %(default)s)")
    sp.add_argument("--cue", default="free", help="cue of the user turn: free or paid (default: %(default)s)")
    sp.add_argument("--query", help="request in the user turn (default: the setting's first query)")
    sp.set_defaults(func=show_prompt)

    rep = sub.add_parser("report", help="rebuild results.json, report.md and the figure from a log")
    rep.add_argument("source", help="a run directory (from --out) or an Inspect .eval log")
    rep.add_argument("--out", help="where to write (default: the run directory)")
    rep.set_defaults(func=report)

    from aflab.probes.commands import add_commands as add_probe_commands
    from aflab.synthdocs.commands import add_commands as add_docs_commands
    from aflab.training.commands import add_commands as add_train_commands

    add_docs_commands(sub)
    add_train_commands(sub)
    add_probe_commands(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    from aflab.classifiers.validate import LabelsError
    from aflab.costs import CostError
    from aflab.report import ReportError
    from aflab.settings import SettingError
    from aflab.sweep import SweepError

    args = parser().parse_args(argv)
    try:
        sys.exit(args.func(args))
    except (CliError, SettingError, ReportError, LabelsError, CostError, SweepError) as e:
        console.print(f"[red]aflab: {escape(str(e))}[/red]", highlight=False, soft_wrap=True)
        sys.exit(2)
