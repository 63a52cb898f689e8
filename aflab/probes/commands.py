"""``aflab probe ...``: one command per probe, each from its own module."""

from __future__ import annotations

import argparse
from importlib import import_module

PROBE_MODULES = ("anti_lab", "activations", "belief", "motivation")
"""Modules of ``aflab.probes`` with an ``add_commands(subparsers)`` function."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    probe = sub.add_parser("probe", help="probes beyond the compliance gap: anti-lab behaviour, controls, belief, motivation, activations")
    probes = probe.add_subparsers(dest="probe", required=True)
    for name in PROBE_MODULES:
        import_module(f"aflab.probes.{name}").add_commands(probes)
