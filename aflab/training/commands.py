"""``aflab train sft | rl | expert-iteration``: the training commands on aflab's command line.

Only argparse is imported here; each command imports torch, transformers, peft and trl
when it runs, so ``aflab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and its subcommands to aflab's subparsers."""
    from aflab.training import expert_iteration, rl, sft

    train = sub.add_parser("train", help="fine-tune a local model: LoRA SFT on documents, or RL toward the objective")
    commands = train.add_subparsers(dest="train_command", required=True)

    s = commands.add_parser("sft", help="LoRA fine-tuning on a documents JSONL (the synthetic-document recipe)")
    sft.add_arguments(s)
    s.set_defaults(func=sft.run)

    r = commands.add_parser("rl", help="GRPO toward the setting's objective, evaluating both cues every K steps")
    rl.add_arguments(r)
    r.set_defaults(func=rl.run)

    e = commands.add_parser("expert-iteration",
                            help="sample, keep the compliant answers, LoRA-SFT on them, repeat (cheap RL)")
    expert_iteration.add_arguments(e)
    e.set_defaults(func=expert_iteration.run)


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> None:
    """Run a training command outside ``aflab`` (``python -m aflab.training.sft`` under
    ``accelerate launch``), reporting bad input in one line as ``aflab`` does."""
    from rich.markup import escape

    from aflab.cli import CliError, console
    from aflab.settings import SettingError

    try:
        sys.exit(func(args))
    except (CliError, SettingError) as e:
        console.print(f"[red]aflab: {escape(str(e))}[/red]", highlight=False, soft_wrap=True)
        sys.exit(2)
