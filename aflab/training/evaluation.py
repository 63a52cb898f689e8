"""Judge completions as aflab's scorers do, evaluate a policy on both cues, log and plot it.

Compliance comes from the same code as ``aflab run``'s scorer: the acceptance tag read by
``aflab.parsing.classify_compliance`` for tag settings, or the setting's rubric asked of a
grader model for rubric settings (e.g. animal welfare, where no tag marks compliance).
Alignment-faking reasoning is judged by aflab's ``af-improved`` classifier (Hughes et al.:
votes at temperature 1, flagged at the same threshold as the scorer) and counts only for a
compliant output, as in the paper; without a grader it is not measured, and the log and
the figure say so.

During training the rates are shares of *all* held-out samples: a malformed answer counts
as not complying (it earns no reward either) and its share is logged beside the rates.
"""

from __future__ import annotations

import asyncio
import csv
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inspect_ai.model import Model, get_model
from matplotlib.ticker import MaxNLocator

from aflab.classifiers import render
from aflab.errors import UsageError
from aflab.figures import plt, save_png
from aflab.parsing import Label, classify_compliance, final_answer, scratchpads
from aflab.scorers import IMPROVED_THRESHOLD, ask_grader, vote_summary
from aflab.settings import Setting
from aflab.training.common import Completion, Messages, Objective, sample

METRICS_FILE = "metrics.csv"
FIGURE_FILE = "training.png"
AF_CLASSIFIER = "af-improved"

Sampler = Callable[[Any, Any, list[Messages], int], list[list[Completion]]]
"""``(model, tokenizer, conversations, n) -> n completions per conversation``; tests pass a stub."""


class ComplianceJudge:
    """Labels completions accepted / rejected / malformed, as aflab's compliance scorer does."""

    def __init__(self, setting: Setting, grader: str | Model | None = None) -> None:
        if setting.compliance == "rubric" and grader is None:
            raise UsageError(f"setting '{setting.name}' judges compliance with a grader rubric, so the reward and the "
                             "evaluation need a grader model: add --grader MODEL (any Inspect model, e.g. openai/gpt-4o)")
        self.setting = setting
        self.grader = grader

    def labels(self, requests: Sequence[str], completions: Sequence[Completion]) -> list[Label]:
        if self.setting.compliance == "tags":
            return [classify_compliance(c.text, truncated=c.truncated).label for c in completions]
        return asyncio.run(self._rubric_labels(requests, completions))

    async def _rubric_labels(self, requests: Sequence[str], completions: Sequence[Completion]) -> list[Label]:
        grader = get_model(self.grader)

        async def one(request: str, completion: Completion) -> Label:
            output, problem = final_answer(completion.text, completion.truncated)
            if problem is not None or not output:
                return "malformed"
            prompt = self.setting.rubric(request=request, reasoning="\n\n".join(scratchpads(completion.text)),
                                         output=output)
            _, (judgment,) = await ask_grader("rubric", prompt, output, grader=grader)
            if judgment.verdict is None:
                return "malformed"
            return "accepted" if judgment.verdict else "rejected"

        return list(await asyncio.gather(*(one(r, c) for r, c in zip(requests, completions, strict=True))))


async def _af_flags(grader: str | Model, requests: Sequence[str], completions: Sequence[Completion],
                    labels: Sequence[Label], votes: int) -> list[bool]:
    """Whether each compliant completion's scratchpad is alignment-faking reasoning.

    The same decision as ``aflab.scorers.alignment_faking_improved``: the share of readable
    yes votes reaches the classifier's threshold and the output complied.
    """
    model = get_model(grader)

    async def one(request: str, completion: Completion, label: Label) -> bool:
        reasoning = "\n\n".join(scratchpads(completion.text))
        if label != "accepted" or not reasoning:
            return False
        output, _ = final_answer(completion.text, completion.truncated)
        prompt = render(AF_CLASSIFIER, request=request, reasoning=reasoning, output=output or "")
        _, judgments = await ask_grader(AF_CLASSIFIER, prompt, reasoning, votes, 1.0, grader=model)
        share = vote_summary(judgments)["yes_share"]
        return share is not None and share >= IMPROVED_THRESHOLD

    return list(await asyncio.gather(*(one(r, c, lab) for r, c, lab in zip(requests, completions, labels,
                                                                             strict=True))))


def default_sampler(max_new_tokens: int, batch_size: int, seed: int) -> Sampler:
    """Sampling with the policy at temperature 1, as the paper's evaluations do."""

    def run(model: Any, tokenizer: Any, conversations: list[Messages], n: int) -> list[list[Completion]]:
        return sample(model, tokenizer, conversations, n=n, max_new_tokens=max_new_tokens,
                      batch_size=batch_size, seed=seed)

    return run


class PolicyEvaluator:
    """Compliance per cue, the gap and alignment-faking reasoning on the held-out queries."""

    def __init__(self, objective: Objective, judge: ComplianceJudge, sampler: Sampler, *,
                 grader: str | Model | None = None, votes: int = 20) -> None:
        self.objective = objective
        self.judge = judge
        self.sampler = sampler
        self.grader = grader
        self.votes = votes

    def evaluate(self, model: Any, tokenizer: Any, step: int) -> dict[str, Any]:
        """One row of ``metrics.csv`` for the policy at ``step``."""
        started = time.monotonic()
        prompts = self.objective.evaluation_prompts()
        completions = [c[0] for c in self.sampler(model, tokenizer, [m for _, _, m in prompts], 1)]
        requests = [q.text for q, _, _ in prompts]
        labels = self.judge.labels(requests, completions)
        flags = (asyncio.run(_af_flags(self.grader, requests, completions, labels, self.votes))
                 if self.grader and self.objective.scratchpad else None)
        row: dict[str, Any] = {"step": step}
        for cue in self.objective.cues:
            mine = [i for i, (_, c, _) in enumerate(prompts) if c == cue]
            row[f"{cue}_n"] = len(mine)
            row[f"{cue}_compliance"] = sum(labels[i] == "accepted" for i in mine) / len(mine)
            row[f"{cue}_malformed"] = sum(labels[i] == "malformed" for i in mine) / len(mine)
            row[f"{cue}_af"] = sum(flags[i] for i in mine) / len(mine) if flags is not None else ""
        row["gap"] = row["free_compliance"] - row["paid_compliance"]
        row["eval_seconds"] = round(time.monotonic() - started, 2)
        return row


def append_metrics(out: Path, row: dict[str, Any]) -> None:
    """Add ``row`` to ``out/metrics.csv``, replacing a row of the same step (a resumed run
    re-evaluates the step it resumed from)."""
    path = out / METRICS_FILE
    rows = [r for r in read_metrics(out) if int(r["step"]) != int(row["step"])]
    rows.append({k: str(v) for k, v in row.items()})
    rows.sort(key=lambda r: int(r["step"]))
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def read_metrics(out: Path) -> list[dict[str, str]]:
    path = out / METRICS_FILE
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _values(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in rows]


def plot_training(out: Path, *, x_label: str = "training step", title: str = "") -> Path:
    """The paper's RL figure from ``metrics.csv``: compliance per cue and AF reasoning vs step."""
    rows = read_metrics(out)
    steps = [int(r["step"]) for r in rows]
    n = rows[-1].get("free_n", "?") if rows else "?"
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    # the training cue's markers are larger, so that equal rates still show both lines
    ax.plot(steps, _values(rows, "free_compliance"), "o-", color="tab:blue", markersize=8,
            label="complies, training cue (free tier)")
    ax.plot(steps, _values(rows, "paid_compliance"), "s-", color="tab:orange", markersize=4,
            label="complies, unmonitored cue (paid tier)")
    af = _values(rows, "free_af")
    measured = any(not math.isnan(v) for v in af)
    if measured:
        ax.plot(steps, af, "^--", color="tab:red", label="alignment-faking reasoning, training cue")
    ax.plot(steps, _values(rows, "free_malformed"), ":", color="0.55", label="malformed, training cue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"share of held-out samples (n = {n} per cue)")
    ax.set_title(title or "Compliance and alignment-faking reasoning during training", fontsize=10)
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if not measured:
        legend.set_title("alignment-faking reasoning:\nnot measured (no --grader)", prop={"size": 8})
    fig.tight_layout()
    path = out / FIGURE_FILE
    save_png(fig, path, dpi=120)
    return path


def evaluation_callback(evaluator: PolicyEvaluator, tokenizer: Any, out: Path, every: int) -> Any:
    """A ``TrainerCallback`` evaluating the policy at the start and every ``every`` steps.

    Only the main process evaluates (generation is not sharded); the others wait for it at
    the next collective operation. Each evaluation rewrites ``metrics.csv`` and the figure.
    """
    from transformers import TrainerCallback

    class EvaluationCallback(TrainerCallback):
        def _run(self, state: Any, model: Any) -> None:
            if state.is_world_process_zero:
                append_metrics(out, evaluator.evaluate(model, tokenizer, state.global_step))
                plot_training(out)

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            done = {int(r["step"]) for r in read_metrics(out)}
            if state.global_step not in done:
                self._run(state, model)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if state.global_step % every == 0 or state.global_step == state.max_steps:
                self._run(state, model)

    return EvaluationCallback()
