"""Corpus files (JSONL, read and written through ``aflab.files``) and the pipeline's prompts.

The generator appends a line the moment a document is finished, so a killed run loses
at most the line it was writing; ``read_jsonl(repair=True)`` cuts such a torn last line off
before the next run appends after it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from aflab.classifiers import CLASSIFIERS_DIR
from aflab.errors import SynthDocsError
from aflab.files import read_jsonl, write_jsonl
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


def read_corpus(path: str | Path, *, fields: tuple[str, ...] = ("text",)) -> list[dict[str, Any]]:
    """A corpus whose every document has the string ``fields`` (at least ``text``)."""
    rows = read_jsonl(path, error=SynthDocsError, missing="give a corpus JSONL written by `aflab docs generate`")
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


def write_corpus(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write a whole corpus at once, atomically, so a crash leaves the old file whole."""
    write_jsonl(path, rows, error=SynthDocsError)


def check_writable(path: Path) -> None:
    """Fail before any model call when ``path`` cannot be appended to."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("a", encoding="utf-8").close()
    except OSError as e:
        raise SynthDocsError(f"cannot write {path}: {e.strerror}; choose another --out") from e
