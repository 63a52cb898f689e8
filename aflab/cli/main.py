"""The ``aflab`` program: the parser of every command group, and its one error handler."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from aflab.cli import docs, probe, prompts, run, sweep, train, validate
from aflab.cli.output import error_line
from aflab.errors import AflabError

COMMAND_GROUPS = (run, validate, sweep, prompts, docs, train, probe)
"""Modules with an ``add_commands(subparsers)``, in the order ``aflab --help`` lists them."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aflab", description="Alignment-faking experiments on any model.")
    sub = p.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return p


def execute(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; an ``AflabError`` becomes its one-line message and exit code 2."""
    try:
        return command(args)
    except AflabError as e:
        error_line(str(e))
        return 2


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    sys.exit(execute(args.func, args))
