"""``aflab variations | show-prompt``: the prompt variations, and the exact text a model sees."""

from __future__ import annotations

import argparse

from rich.table import Table

from aflab.cli.options import condition_from, condition_options
from aflab.cli.output import console, out
from aflab.cues import parse_cues
from aflab.settings import available_settings, load_setting
from aflab.variations import all_variations, missing_blocks


def variations(args: argparse.Namespace) -> int:
    """Every named variation, the settings it applies to, and the paper's name for it."""
    settings = [load_setting(s) for s in (args.setting or available_settings())]
    table = Table(title="prompt variations (use with --variation NAME)")
    for column in ("variation", "settings", "what it does", "paper"):
        table.add_column(column, overflow="fold")
    rows: dict[str, list[str]] = {}
    described = {}
    for setting in settings:
        for name, v in all_variations(setting).items():
            described.setdefault(name, v)
            if not missing_blocks(setting, v):
                rows.setdefault(name, []).append(setting.name)
    for name, v in described.items():
        table.add_row(name, ", ".join(rows.get(name, [])) or "(none)", v.description, v.paper or "")
    out.print(table)
    return 0


def show_prompt(args: argparse.Namespace) -> int:
    """The system prompt and/or a user turn, as a run would send them (on stdout, unstyled)."""
    condition = condition_from(args, scratchpad=args.scratchpad)
    if args.part in ("system", "both"):
        if args.part == "both":
            console.print("[dim]--- system prompt ---[/dim]")
        print(condition.system_prompt)
    if args.part in ("user", "both"):
        (cue,) = parse_cues(args.cue)
        request = args.query or condition.setting.queries()[0].text
        if args.part == "both":
            console.print(f"[dim]--- user turn ({cue} cue) ---[/dim]")
        print(condition.user_turn(request, cue))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    va = sub.add_parser("variations", help="list the named prompt variations")
    va.add_argument("--setting", action="append", help="only this setting (name or folder; repeatable)")
    va.set_defaults(func=variations)

    sp = sub.add_parser("show-prompt", help="print the exact prompt text a model would see")
    condition_options(sp, prompt_file=False)
    sp.add_argument("--no-scratchpad", dest="scratchpad", action="store_false", help="the no-scratchpad prompt")
    sp.add_argument("--part", choices=("system", "user", "both"), default="system",
                    help="the system prompt, a user turn, or both (default: %(default)s)")
    sp.add_argument("--cue", default="free", help="cue of the user turn: free or paid (default: %(default)s)")
    sp.add_argument("--query", help="request in the user turn (default: the setting's first query)")
    sp.set_defaults(func=show_prompt)
