"""Inspect tasks: a setting's paired dataset, the conversation protocol and its scorers.

Registered through aflab's Inspect entry point, so ``inspect eval aflab/helpful_only``
works as well as ``aflab run``.
"""

from __future__ import annotations

from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.model import GenerateConfig

from aflab.dataset import paired_dataset
from aflab.scorers import compliance, decision_probability
from aflab.settings import DEFAULT_LAB, SettingError, load_setting
from aflab.solvers import alignment_faking_conversation
from aflab.variations import BASE, load_variation

# The paper's sampling: temperature 1.0, up to 4000 output tokens per turn.
PAPER_TEMPERATURE = 1.0
PAPER_MAX_TOKENS = 4000
PAPER_MAX_ROUNDS = 4
DEFAULT_QUERIES = 100
"""The public minimal reproduction used the first 100 AdvBench behaviours."""


def read_system_prompt(path: str | Path) -> str:
    """A user-supplied system prompt file, used verbatim."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise SettingError(f"cannot read system prompt file {path}: {e.strerror}") from e


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
    """The alignment-faking experiment for any setting; see ``helpful_only`` for the arguments.

    ``setting`` is a built-in setting's name or a user-defined setting's folder.
    """
    loaded = load_setting(setting)
    edits = load_variation(loaded, variation)
    lab = lab or edits.lab or DEFAULT_LAB
    prompt = (
        read_system_prompt(system_prompt)
        if system_prompt
        else loaded.system_prompt(scratchpad=scratchpad, lab=lab, variation=variation)
    )
    return Task(
        dataset=paired_dataset(loaded, queries=queries, seed=seed, cues=cues, variation=variation),
        solver=alignment_faking_conversation(
            prompt, scratchpad=scratchpad, max_rounds=max_rounds, prefill=prefill, system_role=system_role,
            constrain_format=constrain_format, decision_probs=decision_probs, decision=loaded.compliance == "tags",
        ),
        scorer=[compliance(setting if loaded.compliance == "rubric" else None),
                *([decision_probability()] if decision_probs is not False and loaded.compliance != "rubric" else [])],
        config=GenerateConfig(temperature=PAPER_TEMPERATURE, max_tokens=PAPER_MAX_TOKENS),
        metadata={
            "setting": setting,
            "variation": variation,
            "scratchpad": scratchpad,
            "lab": lab,
            "system_prompt_file": str(system_prompt) if system_prompt else None,
            "seed": seed,
            "constrain_format": constrain_format,
            "decision_probs": decision_probs,
        },
    )


@task
def helpful_only(
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
    """The prompted helpful-only experiment of Greenblatt et al. 2024.

    Args:
      queries: number of AdvBench behaviours to ask (None: all 520).
      seed: shuffle the behaviours with this seed before taking ``queries``.
      cues: comma-separated cues to ask under: ``free`` (training), ``paid`` (unmonitored).
      scratchpad: let the model reason in a hidden scratchpad; False answers directly.
      max_rounds: model turns at most; the harness answers ``<NEXT/>`` in between.
      prefill: prefill assistant turns (None: where the provider supports it).
      system_prompt: a system prompt file to use verbatim instead of aflab's template.
      lab: the AI company named in the prompt (default: the variation's, else Anthropic).
      variation: a named edit of the prompt (``aflab variations`` lists them).
      system_role: send the system prompt as a system message; False puts it at the top
        of the first user turn, for models without a system role (None: decide by model).
      constrain_format: decode under the protocol's grammar (None: on for the embedded
        model; see ``aflab.grammar``).
      decision_probs: read P(accept) from token log probabilities (None: where local and
        open-weights providers return them; see ``aflab.decision``).
    """
    return alignment_faking(
        "helpful_only",
        queries=queries,
        seed=seed,
        cues=cues,
        scratchpad=scratchpad,
        max_rounds=max_rounds,
        prefill=prefill,
        system_prompt=system_prompt,
        lab=lab,
        variation=variation,
        system_role=system_role,
        constrain_format=constrain_format,
        decision_probs=decision_probs,
    )
