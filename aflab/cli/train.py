"""``aflab train sft | rl | expert-iteration``: fine-tuning and training toward the objective.

The options of each trainer are its dataclass's fields (``SftOptions``, ``RlOptions``),
turned into flags by ``dataclass_options``. Several GPUs or nodes: ``accelerate launch
[...] -m aflab train ...`` with the same arguments (docs/training.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aflab.cli.options import condition_options, dataclass_options, from_dataclass_options
from aflab.cli.output import console
from aflab.training import require_train_extra
from aflab.training.common import Objective, load_objective
from aflab.training.expert_iteration import train_expert_iteration
from aflab.training.rl import RlOptions, train_rl
from aflab.training.sft import SftOptions, train_sft


def sft(args: argparse.Namespace) -> int:
    """Train, then say where the adapter (and merged model) went."""
    require_train_extra("aflab train sft")
    result = train_sft(args.model, args.data, args.out, from_dataclass_options(SftOptions, args), merge=args.merge)
    console.print(f"step {result.global_step}: {result.tokens} tokens in {result.seconds:.0f} s "
                  f"({result.tokens_per_second:.0f} tokens/s); adapter in {result.adapter}")
    if result.merged:
        console.print(f"merged model in {result.merged}: evaluate with aflab run --model hf/{result.merged}")
    return 0


def objective_from(args: argparse.Namespace) -> Objective:
    """The prompts and query split that ``objective_options`` name."""
    return load_objective(args.setting, model=args.model, variation=args.variation, scratchpad=args.scratchpad,
                          system_prompt=args.system_prompt, lab=args.lab, eval_queries=args.eval_queries,
                          train_queries=args.train_queries, seed=args.seed)


def rl(args: argparse.Namespace) -> int:
    require_train_extra("aflab train rl")
    adapter = train_rl(args.model, args.out, objective_from(args), from_dataclass_options(RlOptions, args),
                       grader=args.grader, votes=args.votes, merge=args.merge)
    console.print(f"adapter in {adapter}; metrics in {Path(args.out) / 'metrics.csv'}, "
                  f"figure {Path(args.out) / 'training.png'}")
    return 0


def expert_iteration(args: argparse.Namespace) -> int:
    require_train_extra("aflab train expert-iteration")
    # each round fine-tunes on prompt + whole answer: no packing, no truncation, one at a time
    options = from_dataclass_options(SftOptions, args, max_length=None, packing=False, batch_size=1)
    results = train_expert_iteration(
        args.model, args.out, objective_from(args), rounds=args.rounds, samples_per_prompt=args.samples,
        sft_options=options, grader=args.grader, votes=args.votes, max_new_tokens=args.max_new_tokens,
        batch_size=args.sample_batch_size, merge=args.merge,
    )
    for r in results:
        console.print(f"round {r.round}: kept {r.kept} of {r.sampled}")
    console.print(f"metrics in {Path(args.out) / 'metrics.csv'}, figure {Path(args.out) / 'training.png'}")
    return 0


def objective_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``rl`` and ``expert-iteration``: model, setting, prompt, evaluation."""
    p.add_argument("--model", required=True, help="a local Hugging Face chat model directory, or a hub name")
    p.add_argument("--out", required=True, help="output directory; running the same command again resumes")
    condition_options(p)
    p.add_argument("--no-scratchpad", dest="scratchpad", action="store_false",
                   help="answer directly in <OUTPUT>, with no hidden reasoning")
    p.add_argument("--eval-queries", type=int, default=20,
                   help="held-out queries, each asked under both cues at every evaluation (default: %(default)s)")
    p.add_argument("--train-queries", type=int, help="training queries at most (default: all the others)")
    p.add_argument("--grader", help="grader model (any Inspect model): measures alignment-faking reasoning, and "
                                    "judges compliance in rubric settings; without it AF is not measured")
    p.add_argument("--votes", type=int, default=20, help="af-improved grader votes per transcript (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="query split, sampling and training seed (default: %(default)s)")
    p.add_argument("--merge", action="store_true", help="also write OUT/merged: the trained policy merged into the model")


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = sub.add_parser("train", help="fine-tune a local model: LoRA SFT on documents, or RL toward the objective")
    commands = train.add_subparsers(dest="train_command", required=True)

    s = commands.add_parser("sft", help="LoRA fine-tuning on a documents JSONL (the synthetic-document recipe)")
    s.add_argument("--model", required=True, help="a local Hugging Face model directory, or a hub name")
    s.add_argument("--data", required=True, metavar="DOCS.jsonl",
                   help="documents, one JSON object per line with a 'text' field (e.g. from aflab docs)")
    s.add_argument("--out", required=True, help="output directory; running the same command again resumes")
    s.add_argument("--merge", action="store_true", help="also write OUT/merged: the model with the adapter merged in")
    dataclass_options(s, SftOptions)
    s.set_defaults(func=sft)

    r = commands.add_parser("rl", help="GRPO toward the setting's objective, evaluating both cues every K steps")
    objective_options(r)
    dataclass_options(r, RlOptions, skip=("seed",))  # --seed is the objective's, and seeds training too
    r.set_defaults(func=rl)

    e = commands.add_parser("expert-iteration",
                            help="sample, keep the compliant answers, LoRA-SFT on them, repeat (cheap RL)")
    objective_options(e)
    e.add_argument("--rounds", type=int, default=3, help="sample → keep → fine-tune rounds (default: %(default)s)")
    e.add_argument("--samples", type=int, default=4, help="completions per training prompt per round (default: %(default)s)")
    e.add_argument("--max-new-tokens", type=int, default=1024,
                   help="tokens per completion, in sampling and evaluation (default: %(default)s)")
    e.add_argument("--sample-batch-size", type=int, default=8, help="prompts per generate call (default: %(default)s)")
    dataclass_options(e, SftOptions, only=("learning_rate", "epochs", "lora_r", "lora_alpha"))
    e.set_defaults(func=expert_iteration)
