"""Export a corpus for fine-tuning: plain text for local LoRA, or OpenAI chat JSONL.

- ``text``: ``{"text": ...}`` per line, what aflab's local LoRA trainer reads;
- ``openai``: ``{"messages": [user, assistant]}`` per line, the document as the assistant's
  answer to a short fixed user turn (``prompts/export_user.jinja``), the format of
  OpenAI's fine-tuning API, the alternative path for models that can only be tuned by
  their provider. docs/synthdocs.md gives the upload and job commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from aflab.errors import SynthDocsError
from aflab.synthdocs.corpus import prompt, read_corpus, write_corpus

FORMATS = ("text", "openai")
Format = Literal["text", "openai"]
OPENAI_MIN_EXAMPLES = 10
"""OpenAI refuses a fine-tuning file with fewer examples than this."""


def export_rows(rows: list[dict[str, Any]], fmt: Format) -> list[dict[str, Any]]:
    """The corpus's documents in format ``fmt``, in corpus order."""
    if fmt == "text":
        return [{"text": row["text"]} for row in rows]
    if fmt == "openai":
        user = prompt("export_user.jinja")
        return [{"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": row["text"]}]}
                for row in rows]
    raise SynthDocsError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")


def export_file(source: str | Path, out: str | Path, fmt: Format) -> list[str]:
    """Write the corpus in ``source`` to ``out`` in format ``fmt``; returns notes for the user."""
    rows = export_rows(read_corpus(source), fmt)
    write_corpus(out, rows)
    if fmt == "openai" and len(rows) < OPENAI_MIN_EXAMPLES:
        return [f"OpenAI fine-tuning needs at least {OPENAI_MIN_EXAMPLES} examples; {out} has {len(rows)}"]
    return []
