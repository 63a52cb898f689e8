"""Inspect tasks: a condition's paired dataset, the conversation protocol and its scorers.

Registered through aflab's Inspect entry point, so ``inspect eval aflab/helpful_only``
works as well as ``aflab run``. ``experiment_task`` builds the task from a resolved
``Condition``; the registered tasks take the condition's options by name, as ``-T``
arguments arrive.
"""

from __future__ import annotations

from typing import Any

from inspect_ai import Task, task
from inspect_ai.model import GenerateConfig

from aflab.condition import Condition
from aflab.dataset import paired_dataset
from aflab.scorers import compliance, decision_probability
from aflab.solvers import alignment_faking_conversation
from aflab.variations import BASE

# The paper's sampling: temperature 1.0, up to 4000 output tokens per turn.
PAPER_TEMPERATURE = 1.0
PAPER_MAX_TOKENS = 4000
PAPER_MAX_ROUNDS = 4
DEFAULT_QUERIES = 100
"""The public minimal reproduction used the first 100 AdvBench behaviours."""


def experiment_task(
    condition: Condition,
    *,
    queries: int | None = DEFAULT_QUERIES,
    seed: int | None = None,
    cues: str = "free,paid",
    max_rounds: int = PAPER_MAX_ROUNDS,
    prefill: bool | None = None,
    system_role: bool | None = None,
    constrain_format: bool | None = None,
    decision_probs: bool | None = None,
) -> Task:
    """The alignment-faking experiment under ``condition``; see ``alignment_faking`` for
    the other arguments."""
    setting = condition.setting
    tags = setting.compliance == "tags"
    return Task(
        dataset=paired_dataset(setting, queries=queries, seed=seed, cues=cues, variation=condition.variation),
        solver=alignment_faking_conversation(
            condition.system_prompt, scratchpad=condition.scratchpad, max_rounds=max_rounds, prefill=prefill,
            system_role=system_role, constrain_format=constrain_format, decision_probs=decision_probs, decision=tags,
        ),
        # the rubric scorer is logged with its arguments, so it gets the setting by name
        scorer=[compliance(None if tags else setting.source),
                *([decision_probability()] if decision_probs is not False and tags else [])],
        config=GenerateConfig(temperature=PAPER_TEMPERATURE, max_tokens=PAPER_MAX_TOKENS),
        metadata={**condition.metadata(), "seed": seed, "constrain_format": constrain_format,
                  "decision_probs": decision_probs},
    )


@task
def alignment_faking(
    setting: str = "helpful_only",
    queries: int | None = DEFAULT_QUERIES,
    seed: int | None = None,
    cues: str = "free,paid",
    scratchpad: bool = True,
    max_rounds: int = PAPER_MAX_ROUNDS,
    prefill: bool | None = None,
    system_prompt: str | None = None,
    lab: str | None = None,
    variation: str = BASE,
    system_role: bool | None = None,
    constrain_format: bool | None = None,
    decision_probs: bool | None = None,
) -> Task:
    """The alignment-faking experiment for any setting.

    Args:
      setting: a built-in setting's name or a user-defined setting's folder.
      queries: number of queries to ask (None: all of the setting's).
      seed: shuffle the queries with this seed before taking ``queries``.
      cues: comma-separated cues to ask under: ``free`` (training), ``paid`` (unmonitored).
      scratchpad: let the model reason in a hidden scratchpad; False answers directly.
      max_rounds: model turns at most; the harness answers ``<NEXT/>`` in between.
      prefill: prefill assistant turns (None: where the provider supports it).
      system_prompt: a system prompt file to use verbatim instead of the setting's template.
      lab: the AI company named in the prompt (default: the variation's, else Anthropic).
      variation: a named edit of the prompt (``aflab variations`` lists them).
      system_role: send the system prompt as a system message; False puts it at the top
        of the first user turn, for models without a system role (None: decide by model).
      constrain_format: decode under the protocol's grammar (None: on for the embedded
        model; see ``aflab.grammar``).
      decision_probs: read P(accept) from token log probabilities (None: where local and
        open-weights providers return them; see ``aflab.decision``).
    """
    condition = Condition.resolve(setting, variation=variation, lab=lab, scratchpad=scratchpad,
                                  system_prompt=system_prompt)
    return experiment_task(condition, queries=queries, seed=seed, cues=cues, max_rounds=max_rounds, prefill=prefill,
                           system_role=system_role, constrain_format=constrain_format, decision_probs=decision_probs)


@task
def helpful_only(**options: Any) -> Task:
    """The prompted helpful-only experiment of Greenblatt et al. 2024 (AdvBench's harmful
    behaviours); takes ``alignment_faking``'s arguments but the setting."""
    return alignment_faking("helpful_only", **options)
