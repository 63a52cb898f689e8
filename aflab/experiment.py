"""Run a task on a model into an output directory, then write its report.

The one place that calls Inspect's ``eval_set``: its log directory lives inside the output
directory, so calling again with the same arguments resumes an interrupted run and skips
samples that already finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspect_ai import Task, eval_set
from inspect_ai.model import Model

from aflab.report import write_report


def run_experiment(
    task: Task,
    model: str | Model,
    out: str | Path,
    *,
    model_args: dict[str, Any] | None = None,
    model_base_url: str | None = None,
    epochs: int = 1,
    display: str | None = None,
    **generate: Any,
) -> tuple[bool, dict[str, Any]]:
    """Evaluate ``task`` on ``model``, logging to ``out/logs``; report into ``out``.

    ``generate`` holds Inspect generation options (temperature, max_tokens, seed,
    max_connections, ...); None values keep the task's defaults. Returns whether every
    sample finished, and the results written to ``out/results.json``.
    """
    out = Path(out)
    success, logs = eval_set(
        task,
        log_dir=str(out / "logs"),
        model=model,
        model_args=model_args or {},
        model_base_url=model_base_url,
        epochs=epochs,
        display=display,  # type: ignore[arg-type]
        log_dir_allow_dirty=True,
        **{k: v for k, v in generate.items() if v is not None},
    )
    return success, write_report(logs[0].location, out)
