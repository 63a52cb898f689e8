"""Corpus files: JSONL, one JSON object per line, read strictly and written line by line.

The generator appends a line the moment a document is finished, so a killed run loses
at most the line it was writing; :func:`read_jsonl` with ``repair=True`` cuts such a torn
last line off before the next run appends after it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any

from aflab.classifiers import CLASSIFIERS_DIR
from aflab.synthdocs import SynthDocsError
from aflab.templating import template_environment

PROMPTS_DIR = Path(__file__).parent / "prompts"

TEMPLATES = template_environment(PROMPTS_DIR, CLASSIFIERS_DIR)
"""The pipeline's prompts; the classifiers' folder is on the path for ``_answer_rules.jinja``."""


def prompt(template: str, **context: object) -> str:
    """One prompt of the pipeline, rendered from ``prompts/<template>``."""
    return TEMPLATES.get_template(template).render(**context).strip()


def text_hash(text: str) -> str:
    """The sha256 of a document's text: its identity for exact-duplicate removal."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_jsonl(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Every object in a JSONL file, refusing anything else with the line that is wrong.

    With ``repair``, a last line without its newline that does not parse (a write cut off
    by a crash) is removed from the file instead of refused; a missing file reads as empty.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if repair:
            return []
        raise SynthDocsError(f"no such file {path}: give a corpus JSONL written by `aflab docs generate`") from None
    except OSError as e:
        raise SynthDocsError(f"cannot read {path}: {e.strerror}") from e
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
            raise SynthDocsError(
                f"{path}, line {number}: not JSON ({getattr(e, 'msg', e)}); a corpus is JSONL, one object per line"
            ) from e
        if not isinstance(row, dict):
            raise SynthDocsError(f"{path}, line {number}: not a JSON object; a corpus is JSONL, one object per line")
        rows.append(row)
    return rows


def read_corpus(path: str | Path, *, fields: tuple[str, ...] = ("text",)) -> list[dict[str, Any]]:
    """A corpus whose every document has the string ``fields`` (at least ``text``)."""
    rows = read_jsonl(path)
    if not rows:
        raise SynthDocsError(f"{path} holds no documents: generate some with `aflab docs generate`")
    for number, row in enumerate(rows, start=1):
        missing = [f for f in fields if not isinstance(row.get(f), str)]
        if missing:
            raise SynthDocsError(
                f"{path}, document {number}: no string {', '.join(repr(m) for m in missing)}; "
                "give a corpus written by `aflab docs generate`"
            )
    return rows


def append_jsonl(handle: IO[str], row: dict[str, Any]) -> None:
    """Write one object as one line and flush it, so that a crash after this call keeps it."""
    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    handle.flush()


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write a whole file at once, through a temporary file, so a crash leaves the old one whole."""
    path = Path(path)
    temporary = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except OSError as e:
        raise SynthDocsError(f"cannot write {path}: {e.strerror}; choose another --out") from e


def check_writable(path: Path) -> None:
    """Fail before any model call when ``path`` cannot be appended to."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("a", encoding="utf-8").close()
    except OSError as e:
        raise SynthDocsError(f"cannot write {path}: {e.strerror}; choose another --out") from e
