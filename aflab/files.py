"""The files aflab reads and writes: JSONL read strictly, and every output written atomically.

A report, a corpus or a checkpoint is written to a temporary name beside its target and
renamed over it, so a crash or a kill leaves either the old file or the new one, never half
of one. JSONL is read line by line, and a line that is not a JSON object is refused with
its number. A generator that appends as it goes (``append_jsonl``) flushes every line, and
``read_jsonl(repair=True)`` cuts off a last line that a crash tore.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from aflab.errors import AflabError, DataFileError


def numbered_jsonl(path: str | Path, *, what: str = "file", missing: str = "give an existing JSONL file",
                   repair: bool = False, error: type[AflabError] = DataFileError) -> list[tuple[int, dict[str, Any]]]:
    """Every object in a JSONL file with its line number, refusing anything else with the
    line that is wrong (blank lines are skipped).

    With ``repair``, a last line without its newline that does not parse (a write cut off
    by a crash) is removed from the file instead of refused, and a missing file reads as
    empty. Problems are raised as ``error`` (the caller's own kind), naming the file as
    ``what``; ``missing`` says what to do about a file that is not there.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if repair:
            return []
        raise error(f"cannot read {what} {path}: no such file; {missing}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from e
    lines = raw.split(b"\n")
    if repair and lines[-1].strip():
        try:
            json.loads(lines[-1])
        except ValueError:
            with path.open("r+b") as f:
                f.truncate(len(raw) - len(lines[-1]))
            lines[-1] = b""
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise error(f"{path}, line {number}: not JSON ({getattr(e, 'msg', e)}); a JSONL file holds one object "
                        "per line") from e
        if not isinstance(row, dict):
            raise error(f"{path}, line {number}: not a JSON object; a JSONL file holds one object per line")
        rows.append((number, row))
    return rows


def read_jsonl(path: str | Path, **options: Any) -> list[dict[str, Any]]:
    """Every object in a JSONL file (``numbered_jsonl``'s options), without line numbers."""
    return [row for _, row in numbered_jsonl(path, **options)]


def append_jsonl(handle: IO[str], row: dict[str, Any]) -> None:
    """Write one object as one line and flush it, so that a crash after this call keeps it."""
    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    handle.flush()


Content = str | bytes | Callable[[Path], None]
"""What a file holds: text, bytes, or a function that writes the path it is given (a
figure's ``savefig``)."""


def write_all(folder: str | Path, files: dict[str, Content]) -> None:
    """Write several files of ``folder`` together: each under a temporary name first, and
    only once all are written are they renamed into place, so a crash while writing (the
    slow part: a figure, a large JSON) leaves the old files as they were and never a
    half-written one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staged = {}
    for name, content in files.items():
        temporary = folder / f".{name}.partial"
        if callable(content):
            content(temporary)
        elif isinstance(content, bytes):
            temporary.write_bytes(content)
        else:
            temporary.write_text(content, encoding="utf-8")
        staged[name] = temporary
    for name, temporary in staged.items():
        os.replace(temporary, folder / name)


def write_atomic(path: str | Path, content: Content) -> None:
    """Write one file through a temporary file beside it (see ``write_all``)."""
    path = Path(path)
    write_all(path.parent, {path.name: content})


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], *, error: type[AflabError] = DataFileError) -> None:
    """A whole JSONL file at once, atomically; a folder that cannot be written is ``error``."""
    try:
        write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    except OSError as e:
        raise error(f"cannot write {path}: {e.strerror}; choose another --out") from e


def strict_json(value: Any) -> Any:
    """``value`` with every nan (an undefined rate) as None: JSON has no NaN, and a strict
    reader refuses the ``NaN`` that Python's ``json`` would write."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def json_text(value: Any) -> str:
    """``value`` as indented, strict JSON (see ``strict_json``), ending in a newline."""
    return json.dumps(strict_json(value), indent=2) + "\n"


def write_json(path: str | Path, value: Any) -> None:
    """``value`` as ``json_text``, atomically."""
    write_atomic(path, json_text(value))
