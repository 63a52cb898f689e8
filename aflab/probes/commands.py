"""``aflab probe ...``: one command per probe, each from its own module.

Every probe but ``activations`` is a sweep with its own report: it takes ``aflab sweep``'s
options (modes, limit, seed, grader, dry run, ...) and fixes the settings, variations and
cues its question needs (``run_probe``).
"""

from __future__ import annotations

import argparse
from importlib import import_module
from typing import Any

PROBE_MODULES = ("anti_lab", "activations", "belief", "motivation")
"""Modules of ``aflab.probes`` with an ``add_commands(subparsers)`` function."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    probe = sub.add_parser("probe", help="probes beyond the compliance gap: anti-lab behaviour, controls, belief, motivation, activations")
    probes = probe.add_subparsers(dest="probe", required=True)
    for name in PROBE_MODULES:
        import_module(f"aflab.probes.{name}").add_commands(probes)


def probe_options(p: argparse.ArgumentParser, setting: str, several: bool = False) -> None:
    """The options of a sweep-based probe: its models and setting (``--settings``, a comma
    list, where the probe compares ``several``), and the sweep's own."""
    from aflab.cli import sweep_options

    p.add_argument("--models", required=True, help="comma-separated Inspect models")
    if several:
        p.add_argument("--settings", default=setting, help="comma-separated setting names or folders (default: %(default)s)")
    else:
        p.add_argument("--setting", default=setting, help="setting name or folder (default: %(default)s)")
    sweep_options(p)
    p.set_defaults(command="probe")


def run_probe(args: argparse.Namespace, variations: list[str], cues: str, runner: Any, wrote: str,
              dry_run_notes: tuple[str, ...] = (), settings: list[str] | None = None) -> int:
    """Run (or price, with ``--dry-run``) the probe's sweep with ``runner``, which writes the
    files named in ``wrote`` beside the sweep's comparison; ``settings`` default to
    ``--setting``."""
    from aflab.cli import execute_sweep, sweep_spec
    from aflab.settings import load_setting

    settings = [s.strip() for s in settings or [args.setting] if s.strip()]
    for name in settings:
        load_setting(name)  # an unknown setting fails here, before any model is built
    spec = sweep_spec(args, models=args.models, settings=settings, variations=variations, cues=cues)
    return execute_sweep(spec, args, runner, wrote, dry_run_notes)
