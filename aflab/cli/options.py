"""Options that several commands take, each declared once.

- ``condition_options``: which prompt (setting, variation, lab, prompt file), for ``run``,
  ``show-prompt``, ``probe activations`` and the training commands;
- ``experiment_options``: how many queries, epochs, sampling and where to write, for
  ``run`` and ``sweep`` (and so every sweep-based probe);
- ``grader_options``: classifiers, grader, votes, batch mode;
- ``dataclass_options`` / ``from_dataclass_options``: a dataclass of training options as
  flags and back, so that a training option is written once, in its dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Literal, TypeVar

from inspect_ai.model import Model, get_model

from aflab.cli.output import one_line
from aflab.condition import Condition
from aflab.errors import UsageError
from aflab.scorers import CLASSIFIER_SCORERS, DEFAULT_GRADER, IMPROVED_VOTES
from aflab.variations import BASE

EMBEDDED_RUN_QUERIES = 20
EMBEDDED_ANSWER_TOKENS = 32
EMBEDDED_QUERIES = 3
EMBEDDED_MAX_TOKENS = 700
"""The embedded 1.5B model generates ~13 tokens/s on 2 cores. Out of the box `aflab run` asks
it 20 queries without a scratchpad, answers cut at 32 tokens (the decision comes first, and
P(accept) is read from the logits), so that the default run gives a paired gap in minutes;
with a scratchpad, and in sweeps and probes, it asks a few queries with shorter turns."""


def model_args(pairs: list[str]) -> dict[str, Any]:
    """``-M key=value`` pairs as provider arguments (whole numbers as ints)."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"model argument '{pair}' is not KEY=VALUE: write e.g. -M n_ctx=16384")
        args[key] = int(value) if value.isdigit() else value
    return args


def load_model(name: str, **options: Any) -> Model:
    """The Inspect model ``name`` (``options`` as ``get_model`` takes them), or a one-line
    error: an unknown provider, a missing package or a missing key fails before any work.
    Inspect keeps the model object, so a run that names it again reuses it."""
    try:
        return get_model(name, **options)
    except Exception as e:  # noqa: BLE001 - any failure to construct the model is the user's to fix
        raise UsageError(f"cannot use model '{name}': {one_line(str(e))}") from e


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1: give a whole number of at least 1")
    return number


def batch_size(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"'{value}' is not a batch size: write --batch alone (after a run "
                                         "directory), or --batch N with N requests per batch")
    return int(value)


def classifier_names(values: list[str]) -> list[str]:
    """``--classifier a,b --classifier c`` as ``[a, b, c]``."""
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-M", "--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="model argument passed to the provider (repeatable)")


def condition_options(p: argparse.ArgumentParser, *, prompt_file: bool = True) -> None:
    """``--setting``, ``--variation``, ``--lab`` and (``prompt_file``) ``--system-prompt``."""
    p.add_argument("--setting", default="helpful_only", help="setting name or folder (default: %(default)s)")
    p.add_argument("--variation", default=BASE, help="named prompt variation (default: %(default)s; "
                                                     "`aflab variations` lists them)")
    p.add_argument("--lab", help="AI company named in the prompt (default: the variation's, else Anthropic)")
    if prompt_file:
        p.add_argument("--system-prompt", metavar="FILE", help="use this system prompt file verbatim")


def condition_from(args: argparse.Namespace, scratchpad: bool) -> Condition:
    """The condition ``condition_options`` name."""
    return Condition.resolve(args.setting, variation=args.variation, lab=args.lab, scratchpad=scratchpad,
                             system_prompt=getattr(args, "system_prompt", None))


def grader_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classifier", action="append", default=[], metavar="NAME[,NAME]",
                   help=f"grader classifiers to apply, in order: {', '.join(CLASSIFIER_SCORERS)}")
    p.add_argument("--grader", help=f"grader model, any Inspect model (default: {DEFAULT_GRADER}, low-confidence)")
    p.add_argument("--votes", type=int, help=f"grader samples per transcript for af-improved (default: {IMPROVED_VOTES})")
    p.add_argument("--batch", nargs="?", const=True, type=batch_size, metavar="N",
                   help="send model and grader calls to the providers' batch APIs (OpenAI, Anthropic, Google, "
                        "Together, Grok): about half the price, answers within hours; N: requests per batch")


def experiment_options(p: argparse.ArgumentParser, command: Literal["run", "sweep"]) -> None:
    """The options of an experiment's size, sampling and output, as ``run`` and ``sweep``
    (and the probes, being sweeps) take them; unset ones are None, for the command to fill."""
    run = command == "run"
    p.add_argument("--limit", type=int, help=(
        f"number of queries (default: 100; on the embedded model {EMBEDDED_RUN_QUERIES}, or {EMBEDDED_QUERIES} with "
        "--scratchpad)" if run else
        f"queries per setting (default: all of its queries; {EMBEDDED_QUERIES} on the embedded model)"))
    p.add_argument("--epochs", type=int, help="times each sample is asked (default: 1)")
    p.add_argument("--seed", type=int, help="shuffle queries with this seed and pass it to the model(s)")
    p.add_argument("--max-connections", type=int, help="concurrent calls per model (Inspect's default per provider)")
    p.add_argument("--temperature", type=float, help="(default: 1.0)")
    p.add_argument("--max-tokens", type=int, help=(
        f"output tokens per turn (default: 4000; on the embedded model {EMBEDDED_ANSWER_TOKENS}, or "
        f"{EMBEDDED_MAX_TOKENS} with --scratchpad)" if run else
        f"output tokens per turn (default: 4000; {EMBEDDED_MAX_TOKENS} on the embedded model)"))
    p.add_argument("--out", help=(
        "output directory (default: runs/<setting>-<model>); running the same command again resumes" if run else
        "output directory (required unless --dry-run); running the same command again finishes only missing cells"))
    p.add_argument("--dry-run", action="store_true", help="print the calls, tokens and estimated cost (per cell); "
                                                          "call no model")
    grader_options(p)


Options = TypeVar("Options")


def dataclass_options(p: argparse.ArgumentParser, cls: type, *, only: tuple[str, ...] | None = None,
                      skip: tuple[str, ...] = ()) -> None:
    """A flag per field of the dataclass ``cls`` (``lora_r`` → ``--lora-r``), with its
    default and the ``help`` of the field's metadata. A bool field that defaults to True
    becomes ``--no-NAME``; one that defaults to False, ``--NAME``. ``only`` and ``skip``
    choose fields; ``metadata["default"]`` words a default that is not a plain value."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or (only is not None and field.name not in only):
            continue
        kind = hints[field.name]
        flag = field.name.replace("_", "-")
        text = field.metadata.get("help", "")
        if kind is bool:
            p.add_argument(f"--no-{flag}" if field.default else f"--{flag}", dest=field.name,
                           action="store_false" if field.default else "store_true", help=text)
            continue
        shown = field.metadata.get("default", "%(default)s")
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        p.add_argument(f"--{flag}", dest=field.name, type=base, default=field.default,
                       help=f"{text} (default: {shown})".lstrip())


def from_dataclass_options(cls: type[Options], args: argparse.Namespace, **fixed: Any) -> Options:
    """The dataclass ``cls`` from the parsed flags of ``dataclass_options`` (any field the
    command line has a value for), with ``fixed`` fields set as given."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    given = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**given, **fixed})
