"""Run a task on a model into an output directory, or re-score its log; then report.

The one place that calls Inspect's ``eval_set`` and ``score``: the log directory lives
inside the output directory, so calling again with the same arguments resumes an
interrupted run and skips samples that already finished.
"""

from __future__ import annotations

import tempfile
from copy import copy
from pathlib import Path
from typing import Any

from inspect_ai import Task, eval_set, score
from inspect_ai.log import EvalLog, write_eval_log
from inspect_ai.model import GenerateConfig, Model, get_model

from aflab.errors import ReportError
from aflab.prices import Batch
from aflab.report import find_log, load_log, write_report
from aflab.scorers import AF_SCORERS, CLASSIFIER_SCORERS, GRADER_ROLE

SAMPLE_RETRIES = 3
TASK_RETRIES = 1


def batched_grader(grader: str | Model | None, batch: Batch, log: EvalLog | None = None) -> str | Model | None:
    """The grader, sending its calls to its provider's batch API when ``batch`` is on.

    Inspect gives an eval's ``batch`` option to the tested model only (a role model inherits
    just connections, retries, timeouts and cache), so the grader carries it in its own
    config. With no grader named, re-scoring ``log`` uses the grader role recorded in it, as
    Inspect's ``score`` would, now batched; with neither, the default grader (the embedded
    model, which has no batch API) is left as it is.
    """
    if not batch:
        return grader
    config = GenerateConfig(batch=batch)
    if isinstance(grader, Model):
        batched = copy(grader)
        batched.config = grader.config.merge(config)
        return batched
    if grader is not None:
        return get_model(grader, config=config)
    recorded = (log.eval.model_roles or {}).get(GRADER_ROLE) if log is not None else None
    if recorded is None or isinstance(recorded, list):
        return None
    return get_model(recorded.model, config=recorded.config.merge(config), base_url=recorded.base_url,
                     **recorded.args)


def evaluate(
    tasks: Task | list[Task],
    models: str | Model | list[Model],
    log_dir: Path,
    *,
    grader: str | Model | None = None,
    **options: Any,
) -> tuple[bool, list[EvalLog]]:
    """Inspect's ``eval_set`` with aflab's resumption and retry policy.

    ``options`` are further ``eval_set`` arguments (epochs, generation options, ``batch``,
    ...); None values keep Inspect's or the task's defaults. ``grader`` fills the ``grader``
    model role, used by classifiers and by settings whose compliance a grader judges; it
    is batched too when ``batch`` is on.
    """
    grader = batched_grader(grader, options.get("batch"))
    return eval_set(
        tasks,
        log_dir=str(log_dir),
        model=models,
        model_roles={GRADER_ROLE: grader} if grader else None,
        log_dir_allow_dirty=True,
        # A sample that fails (after the provider-level retries) is retried whole a few
        # times; the rest of the run goes on, and one still failing leaves the log
        # unfinished so that running the same command again retries just those samples.
        retry_on_error=SAMPLE_RETRIES,
        continue_on_fail=True,
        retry_attempts=TASK_RETRIES,
        **{k: v for k, v in options.items() if v is not None},
    )


def run_experiment(
    task: Task,
    model: str | Model,
    out: str | Path,
    *,
    model_args: dict[str, Any] | None = None,
    model_base_url: str | None = None,
    epochs: int = 1,
    display: str | None = None,
    grader: str | Model | None = None,
    **generate: Any,
) -> tuple[bool, dict[str, Any]]:
    """Evaluate ``task`` on ``model``, logging to ``out/logs``; report into ``out``.

    ``generate`` holds Inspect generation options (temperature, max_tokens, seed,
    max_connections, batch, ...); None values keep the task's defaults. Returns whether every
    sample finished, and the results written to ``out/results.json``.
    """
    out = Path(out)
    success, logs = evaluate(
        task,
        model,
        out / "logs",
        grader=grader,
        model_args=model_args or {},
        model_base_url=model_base_url,
        epochs=epochs,
        display=display,
        **generate,
    )
    return success, write_report(logs[0].location, out)


def drop_scorer(log: EvalLog, name: str) -> None:
    """Remove every trace of one scorer from ``log`` so that re-scoring replaces it."""
    for sample in log.samples or []:
        (sample.scores or {}).pop(name, None)
    if log.results is not None:
        log.results.scores = [s for s in log.results.scores if s.name != name]
    log.reductions = [r for r in (log.reductions or []) if r.scorer != name] or None
    log.eval.scorers = [s for s in (log.eval.scorers or []) if s.name != name] or None


def check_classifiers(classifiers: list[str], log: EvalLog) -> None:
    """Refuse unknown classifiers, and ``motivation`` with no alignment-faking score to read."""
    unknown = [c for c in classifiers if c not in CLASSIFIER_SCORERS]
    if unknown or not classifiers:
        raise ReportError(f"unknown classifier {', '.join(unknown) or '(none)'}: choose from {', '.join(CLASSIFIER_SCORERS)}")
    have_af = any(n in (log.samples[0].scores or {}) for n in AF_SCORERS.values())
    if "motivation" in classifiers and not have_af and not any(c in AF_SCORERS for c in classifiers[: classifiers.index("motivation")]):
        raise ReportError("the motivation classifier needs alignment-faking scores: run --classifier af-improved (or af-original) first")


def rescore_log(
    log_file: Path,
    classifiers: list[str],
    grader: str | Model | None = None,
    votes: int | None = None,
    display: str | None = None,
    batch: Batch = None,
) -> None:
    """Score one log with grader classifiers, in place; no call to the tested model.

    Classifiers run in the order given (``motivation`` needs an alignment-faking score
    first, from this call or an earlier one); a classifier already in the log is replaced.
    Grader calls go through Inspect's cache, so scoring the same log again costs nothing;
    with ``batch`` they go to the grader's batch API.
    """
    log = load_log(log_file)
    check_classifiers(classifiers, log)
    grader = batched_grader(grader, batch, log)
    for name in classifiers:
        factory = CLASSIFIER_SCORERS[name]
        scorer = factory(votes=votes) if votes and name in ("af-improved", "af-cascade") else factory()
        drop_scorer(log, factory.__name__)  # the name Inspect logs the scores under
        # The scorers call only the grader, so the tested model is replaced by Inspect's
        # "none" sentinel: re-scoring needs no credentials for the model under test.
        log = score(log, [scorer], action="append", model="none/none",
                    model_roles={GRADER_ROLE: grader} if grader else None, display=display or "none")
    # written beside the log directory, not in it, so a crash leaves no second log there
    with tempfile.TemporaryDirectory(dir=log_file.parent.parent, prefix=".aflab-rescore-") as scratch:
        temporary = Path(scratch) / log_file.name
        write_eval_log(log, str(temporary))
        temporary.replace(log_file)


def score_run(
    source: str | Path,
    classifiers: list[str],
    grader: str | Model | None = None,
    votes: int | None = None,
    out: str | Path | None = None,
    display: str | None = None,
    batch: Batch = None,
) -> dict[str, Any]:
    """Re-score a finished run's log with grader classifiers (see ``rescore_log``) and
    rebuild its report, in ``out`` or the run directory."""
    log_file = find_log(source)
    rescore_log(log_file, classifiers, grader=grader, votes=votes, display=display, batch=batch)
    return write_report(log_file, Path(out) if out else log_file.parent.parent)
