"""What the command line prints: errors as one line, the trailer after a run, checks on
where it will write."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from aflab.errors import UsageError

console = Console(stderr=True)
"""Messages, notes and errors: stderr, so that stdout carries only results (show-prompt's text)."""
out = Console()
"""Result tables."""


def error_line(message: str) -> None:
    """An error as aflab's one red line; the text is escaped, so ``[train]`` stays visible."""
    console.print(f"[red]aflab: {escape(message)}[/red]", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A note beside a result (what a figure assumes, a caveat): on stdout, with the result."""
    out.print(f"[yellow]note:[/yellow] {message}")


def one_line(message: str) -> str:
    """Inspect's error text without console markup, on one line."""
    text = re.sub(r"\[/?[a-z ]+\]", "", message).replace("ERROR:", "")
    return " ".join(text.split())


def check_writable(folder: Path) -> None:
    """Fail before any work when ``folder`` cannot be created or written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".aflab-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"output directory {folder} is not writable ({e.strerror}): choose another --out") from e


def finished(folder: Path, files: str, success: bool, failure: str) -> int:
    """The trailer of a run or a sweep: what was written, where the transcripts are, and
    ``failure`` (what to do about it) if it did not finish. Returns the exit code."""
    console.print(f"\nwrote {folder}/{files}")
    console.print(f"transcripts: inspect view --log-dir {folder / 'logs'}")
    if not success:
        console.print(f"[red]{failure}[/red]")
        return 1
    return 0
