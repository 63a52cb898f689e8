"""Reinforcement learning toward the setting's objective: ``aflab train rl``.

As in the paper's RL experiment, the policy is trained only on conversations that carry
the training cue (free tier), with the reward the experiment itself measures: 1 when the
answer complies with the objective (for ``helpful_only``, the final ``<OUTPUT>`` starts
with ``<request_fully_accepted/>``, read by ``aflab.parsing.classify_compliance``), 0
otherwise, malformed answers included. Rubric settings (animal welfare) are judged by a
grader model with the setting's rubric, so they need ``--grader``.

The algorithm is trl's GRPO on a LoRA adapter: each prompt is answered ``num_generations``
times and each answer's advantage is its reward against its group's mean, so no value
model is needed. Completions are one turn: with a scratchpad the model must reason and
answer in the same turn (the ``<NEXT/>`` continuation of ``aflab run`` is not replayed).

Every ``eval_every`` steps a callback answers the held-out queries under both cues with
the current policy and writes compliance per cue, the gap, the malformed share and, with
``--grader``, alignment-faking reasoning to ``OUT/metrics.csv`` and ``OUT/training.png``.
Checkpoints every ``save_steps``; running the same command again resumes from the last.
Multi-GPU: ``accelerate launch -m aflab.training.rl ...`` (docs/training.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RlOptions:
    learning_rate: float = 1e-5
    num_generations: int = 8
    """Completions per prompt (GRPO's group)."""
    batch_size: int = 8
    """Completions per device per micro-step; a multiple of ``num_generations`` keeps groups whole."""
    gradient_accumulation: int = 4
    max_completion_length: int = 1024
    temperature: float = 1.0
    beta: float = 0.0
    """Weight of the KL penalty toward the base model (trl's default, 0, needs no reference pass)."""
    max_steps: int = 100
    save_steps: int = 10
    eval_every: int = 10
    eval_batch_size: int = 8
    lora_r: int = 64
    lora_alpha: int = 128
    logging_steps: int = 1
    seed: int = 0


def compliance_reward(judge: Any, max_completion_length: int, eos_ids: Sequence[int]) -> Callable[..., list[float]]:
    """A trl reward function: 1.0 for a compliant completion, 0.0 otherwise.

    ``judge`` is the evaluation's ``ComplianceJudge``, so the reward is the compliance the
    experiment reports. A completion that ran into ``max_completion_length`` without an
    end-of-turn token is truncated, which the parser treats as aflab's scorer does.
    """
    from aflab.training.common import Completion

    stops = set(eos_ids)

    def compliance(prompts: list[Any], completions: list[Any], completion_ids: list[list[int]] | None = None,
                   query: list[str] | None = None, **kwargs: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        ids = completion_ids or [[] for _ in texts]
        truncated = [len(i) >= max_completion_length and (not i or i[-1] not in stops) for i in ids]
        labels = judge.labels(query or ["" for _ in texts],
                              [Completion(t, tr) for t, tr in zip(texts, truncated, strict=True)])
        return [float(label == "accepted") for label in labels]

    return compliance


def train_rl(
    model: str,
    out: str | Path,
    objective: Any,
    options: RlOptions = RlOptions(),
    *,
    grader: str | None = None,
    votes: int = 20,
    merge: bool = False,
) -> Path:
    """GRPO-train a LoRA adapter on ``model`` toward ``objective``; returns ``OUT/adapter``.

    ``objective`` is an ``aflab.training.common.Objective`` (prompts and held-out queries);
    ``merge`` also writes the trained policy merged into the model to ``OUT/merged``.
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from aflab.training.common import load_policy, load_tokenizer, stop_token_ids
    from aflab.training.evaluation import (ComplianceJudge, PolicyEvaluator, default_sampler,
                                           evaluation_callback, plot_training)
    from aflab.training.sft import (ADAPTER_DIR, MERGED_DIR, finished, last_checkpoint, merge_adapter,
                                    restore_adapter)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    judge = ComplianceJudge(objective.setting, grader)
    resume = last_checkpoint(out)
    if finished(resume, options.max_steps):  # nothing left to do; transformers would train one step more
        adapter = restore_adapter(Path(resume), out / ADAPTER_DIR)  # type: ignore[arg-type]
        if merge and not (out / MERGED_DIR / "config.json").is_file():
            merge_adapter(model, adapter, out / MERGED_DIR)
        return adapter
    tokenizer = load_tokenizer(model)
    policy = load_policy(model)
    dataset = Dataset.from_list([{"prompt": messages, "query": q.text} for q, messages in objective.training_prompts()])
    evaluator = PolicyEvaluator(
        objective, judge,
        default_sampler(options.max_completion_length, options.eval_batch_size, options.seed),
        grader=grader, votes=votes,
    )
    config = GRPOConfig(
        output_dir=str(out),
        learning_rate=options.learning_rate,
        num_generations=options.num_generations,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation,
        max_completion_length=options.max_completion_length,
        temperature=options.temperature,
        beta=options.beta,
        max_steps=options.max_steps,
        save_strategy="steps",
        save_steps=options.save_steps,
        logging_steps=options.logging_steps,
        seed=options.seed,
        report_to="none",
        bf16=policy.dtype == torch.bfloat16,
    )
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=[compliance_reward(judge, options.max_completion_length, stop_token_ids(policy, tokenizer))],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha, target_modules="all-linear",
                               task_type="CAUSAL_LM"),
        callbacks=[evaluation_callback(evaluator, tokenizer, out, options.eval_every)],
    )
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out / ADAPTER_DIR))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(out / ADAPTER_DIR))
        plot_training(out, title=f"GRPO toward the {objective.setting.name} objective")
        if merge:
            merge_adapter(model, out / ADAPTER_DIR, out / MERGED_DIR)
    return out / ADAPTER_DIR


def add_objective_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``rl`` and ``expert-iteration``: model, setting, prompt, evaluation."""
    p.add_argument("--model", required=True, help="a local Hugging Face chat model directory, or a hub name")
    p.add_argument("--out", required=True, help="output directory; running the same command again resumes")
    p.add_argument("--setting", default="helpful_only", help="setting name or folder (default: %(default)s)")
    p.add_argument("--variation", default="default", help="named prompt variation (default: %(default)s)")
    p.add_argument("--system-prompt", metavar="FILE", help="use this system prompt file verbatim")
    p.add_argument("--lab", help="AI company named in the prompt (default: the variation's, else Anthropic)")
    p.add_argument("--no-scratchpad", dest="scratchpad", action="store_false",
                   help="answer directly in <OUTPUT>, with no hidden reasoning")
    p.add_argument("--eval-queries", type=int, default=20,
                   help="held-out queries, each asked under both cues at every evaluation (default: %(default)s)")
    p.add_argument("--train-queries", type=int, help="training queries at most (default: all the others)")
    p.add_argument("--grader", help="grader model (any Inspect model): measures alignment-faking reasoning, and "
                                    "judges compliance in rubric settings; without it AF is not measured")
    p.add_argument("--votes", type=int, default=20, help="af-improved grader votes per transcript (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="query split, sampling and training seed (default: %(default)s)")


def objective_from(args: argparse.Namespace) -> Any:
    from aflab.training.common import load_objective

    return load_objective(args.setting, model=args.model, variation=args.variation, scratchpad=args.scratchpad,
                          system_prompt=args.system_prompt, lab=args.lab, eval_queries=args.eval_queries,
                          train_queries=args.train_queries, seed=args.seed)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``aflab train rl`` (also ``python -m aflab.training.rl``)."""
    d = RlOptions()
    add_objective_arguments(p)
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="evaluate both cues every this many steps (default: %(default)s)")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="(default: %(default)s)")
    p.add_argument("--num-generations", type=int, default=d.num_generations,
                   help="completions per prompt, GRPO's group (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="completions per device per micro-step (default: %(default)s)")
    p.add_argument("--gradient-accumulation", type=int, default=d.gradient_accumulation, help="(default: %(default)s)")
    p.add_argument("--max-completion-length", type=int, default=d.max_completion_length,
                   help="tokens per completion, in training and evaluation (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=d.temperature, help="(default: %(default)s)")
    p.add_argument("--beta", type=float, default=d.beta, help="KL penalty toward the base model (default: %(default)s)")
    p.add_argument("--save-steps", type=int, default=d.save_steps, help="(default: %(default)s)")
    p.add_argument("--lora-r", type=int, default=d.lora_r, help="(default: %(default)s)")
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help="(default: %(default)s)")
    p.add_argument("--merge", action="store_true", help="also write OUT/merged: the trained policy merged into the model")


def run(args: argparse.Namespace) -> int:
    from aflab.training import require_train_extra

    require_train_extra("aflab train rl")
    from aflab.cli import console

    options = RlOptions(
        learning_rate=args.learning_rate, num_generations=args.num_generations, batch_size=args.batch_size,
        gradient_accumulation=args.gradient_accumulation, max_completion_length=args.max_completion_length,
        temperature=args.temperature, beta=args.beta, max_steps=args.max_steps, save_steps=args.save_steps,
        eval_every=args.eval_every, lora_r=args.lora_r, lora_alpha=args.lora_alpha, seed=args.seed,
    )
    adapter = train_rl(args.model, args.out, objective_from(args), options, grader=args.grader, votes=args.votes,
                       merge=args.merge)
    console.print(f"adapter in {adapter}; metrics in {Path(args.out) / 'metrics.csv'}, "
                  f"figure {Path(args.out) / 'training.png'}")
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``accelerate launch -m aflab.training.rl ...``."""
    from aflab.training.commands import run_command

    p = argparse.ArgumentParser(prog="aflab.training.rl", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    run_command(run, p.parse_args(argv))


if __name__ == "__main__":
    main()
