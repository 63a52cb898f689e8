"""Expert iteration toward the objective: ``aflab train expert-iteration``.

The cheap alternative to RL (no reward model, no policy-gradient machinery, any GPU that
can LoRA-train the model): each round samples ``n`` completions per training prompt (the
training cue only, as in RL) from the current policy, keeps those that comply as the
experiment judges compliance, and LoRA-SFTs the policy on the kept completions with
``aflab train sft``'s code (loss on the completion only). The same LoRA adapter is trained
on round after round. Before the first round and after each one, the policy answers the
held-out queries under both cues; ``OUT/metrics.csv`` and ``OUT/training.png`` have the
same columns as ``aflab train rl``'s, with the round as the step.

Layout: ``OUT/round-R/samples.jsonl`` (the kept prompt/completion pairs),
``OUT/round-R/round.json`` (sampled, kept, the adapter after the round) and the round's SFT
output (checkpoints, ``adapter/``). Running the same command again skips finished rounds,
reuses a round's samples and resumes its SFT from its last checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from aflab.errors import UsageError
from aflab.files import read_jsonl, write_json, write_jsonl
from aflab.training.common import Objective, load_policy, load_tokenizer
from aflab.training.evaluation import (
    ComplianceJudge,
    PolicyEvaluator,
    append_metrics,
    default_sampler,
    plot_training,
    read_metrics,
)
from aflab.training.sft import ADAPTER_DIR, MERGED_DIR, SftOptions, merge_adapter, train_sft

console = Console(stderr=True)

ROUND_FILE = "round.json"
SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class RoundResult:
    round: int
    sampled: int
    kept: int
    adapter: Path | None
    """The policy's adapter after this round; None while nothing has been trained yet."""


def keep_compliant(prompts: list[tuple[Any, list[dict[str, str]]]], completions: list[list[Any]],
                   judge: Any) -> list[dict[str, Any]]:
    """The prompt/completion pairs whose completion complies, as SFT examples.

    ``completions[i]`` holds the samples for ``prompts[i]``; a truncated sample is never
    kept (the parser reads it as malformed).
    """
    flat = [(query, messages, c) for (query, messages), group in zip(prompts, completions, strict=True)
            for c in group]
    labels = judge.labels([q.text for q, _, _ in flat], [c for _, _, c in flat])
    return [{"prompt": messages, "completion": [{"role": "assistant", "content": c.text}], "query_id": q.id}
            for (q, messages, c), label in zip(flat, labels, strict=True) if label == "accepted"]


def train_expert_iteration(
    model: str,
    out: str | Path,
    objective: Objective,
    *,
    rounds: int = 3,
    samples_per_prompt: int = 4,
    sft_options: SftOptions | None = None,
    grader: str | None = None,
    votes: int = 20,
    max_new_tokens: int = 1024,
    batch_size: int = 8,
    sampler: Any = None,
    merge: bool = False,
) -> list[RoundResult]:
    """Run ``rounds`` rounds of sample → keep compliant → LoRA-SFT; returns each round's counts.

    ``sampler`` replaces sampling from the model (tests pass a stub); ``sft_options`` are
    ``aflab.training.sft.SftOptions`` for each round's fine-tuning.
    """
    if rounds < 1 or samples_per_prompt < 1:
        raise UsageError(f"--rounds ({rounds}) and --samples ({samples_per_prompt}) must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    judge = ComplianceJudge(objective.setting, grader)
    sampler = sampler or default_sampler(max_new_tokens, batch_size, 0)
    evaluator = PolicyEvaluator(objective, judge, sampler, grader=grader, votes=votes)
    tokenizer = load_tokenizer(model)
    # Completions hold the whole scratchpad, so a round's examples are the prompt plus a
    # long answer: no packing, and room for both.
    options = sft_options or SftOptions(max_length=None, packing=False, batch_size=1)
    adapter: Path | None = None
    results: list[RoundResult] = []
    title = f"Expert iteration toward the {objective.setting.name} objective"

    def evaluate(policy: Any, step: int, **extra: Any) -> None:
        if step not in {int(r["step"]) for r in read_metrics(out)}:
            append_metrics(out, {**evaluator.evaluate(policy, tokenizer, step), **extra})
            plot_training(out, x_label="expert-iteration round", title=title)

    for number in range(1, rounds + 1):
        folder = out / f"round-{number}"
        record = folder / ROUND_FILE
        if record.is_file():
            done = json.loads(record.read_text(encoding="utf-8"))
            adapter = Path(done["adapter"]) if done["adapter"] else None
            results.append(RoundResult(number, done["sampled"], done["kept"], adapter))
            continue
        policy = load_policy(model, adapter, inference=True)
        evaluate(policy, number - 1)
        samples = folder / SAMPLES_FILE
        prompts = objective.training_prompts()
        if not samples.is_file():
            completions = sampler(policy, tokenizer, [m for _, m in prompts], samples_per_prompt)
            kept = keep_compliant(prompts, completions, judge)
            folder.mkdir(parents=True, exist_ok=True)
            write_jsonl(samples, kept)
        kept_count = len(read_jsonl(samples))
        sampled = len(prompts) * samples_per_prompt
        del policy
        if kept_count:
            train_sft(model, samples, folder, replace(options, seed=options.seed + number), adapter=adapter)
            adapter = folder / ADAPTER_DIR
        else:
            console.print(f"round {number}: none of {sampled} samples complied; nothing to train on this round")
        write_json(record, {"sampled": sampled, "kept": kept_count, "adapter": str(adapter) if adapter else None})
        results.append(RoundResult(number, sampled, kept_count, adapter))
        console.print(f"round {number}: kept {kept_count} of {sampled} samples")
    evaluate(load_policy(model, adapter, inference=True), rounds)
    if merge and adapter is not None:
        merge_adapter(model, adapter, out / MERGED_DIR)
    return results
