"""Generate a corpus: for each key fact, kinds of document, then ideas, then documents.

Every step is one Inspect model call rendered from ``prompts/``; all calls of a run are
started together with ``asyncio.gather`` and Inspect limits how many reach the provider
at once, retries failures and caches answers. Each call has its own cache scope (step,
copy, attempt, seed), so two copies of one idea are two samples, not one answer twice,
while re-running the same command is free.

A run is resumable without the cache: each finished document is appended to the output
JSONL at once, and the brainstormed lists (kinds, ideas) and the documents given up on
are appended to a plan file beside it (``<out>.plan.jsonl``). A second run reads both and
calls the model only for what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inspect_ai.model import CachePolicy, GenerateConfig, Model, ModelOutput
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aflab.errors import SynthDocsError
from aflab.files import append_jsonl, read_jsonl
from aflab.synthdocs.corpus import check_writable, prompt, text_hash
from aflab.synthdocs.universe import Universe

TEMPERATURE = 1.0
"""Sampling temperature of every step: the corpus needs variety more than the likeliest text."""
DOCUMENT_MAX_TOKENS = 1024
"""[H] trains on documents under 1024 tokens; a document cut off at this limit is dropped."""
LIST_MAX_TOKENS = 2048
ATTEMPTS = 3
"""Tries per document before it is given up on (unsuitable idea, cut off, no document tags)."""
DEFAULT_TYPES_PER_FACT = 5
DEFAULT_IDEAS_PER_TYPE = 4
DEFAULT_DOCS_PER_IDEA = 2

_ITEM = re.compile(r"<item>(.*?)</item>", re.IGNORECASE | re.DOTALL)
_DOCUMENT = re.compile(r"<document>(.*?)</document>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class DocumentSpec:
    """What one document is to be: its fact, kind, idea, copy and, for a control, length."""

    fact_index: int
    fact: str
    doc_type: str
    idea: str
    copy: int
    target_words: int | None = None

    def key(self, universe: Universe, seed: int | None) -> str:
        """A stable name for this document, so a re-run recognises it as finished."""
        return _digest(universe.name, asdict(self), seed)


@dataclass
class GenerationSummary:
    """What a run did, for the command line and the tests."""

    out: Path
    generator: str
    planned: int = 0
    """Documents the plan holds (facts × kinds × ideas × copies, as far as it was made)."""
    written: int = 0
    resumed: int = 0
    """Documents (or give-ups) already in the output or the plan file from earlier runs."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Documents given up on, and lists that could not be read, by reason."""
    tokens: int = 0
    """Total tokens the outputs reported (what the budget counts)."""
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    budget_stopped: bool = False
    not_started: int = 0
    """Calls the token budget stopped before they began."""
    unmetered: int = 0
    """Model outputs without token usage, which the budget could not count."""


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:32]


def items(text: str, limit: int) -> list[str]:
    """The distinct ``<item>`` entries of a brainstormed list, at most ``limit``, in order."""
    seen: dict[str, str] = {}
    for raw in _ITEM.findall(text):
        item = " ".join(raw.split())
        if item and item.lower() not in seen:
            seen[item.lower()] = item
    return list(seen.values())[:limit]


def document_text(output: ModelOutput) -> tuple[str | None, str | None]:
    """(the document, None), or (None, why there is none) for one document call."""
    if output.stop_reason == "max_tokens":
        return None, "cut_off"
    match = _DOCUMENT.search(output.completion)
    if match and match.group(1).strip():
        return match.group(1).strip(), None
    if "UNSUITABLE" in output.completion:
        return None, "unsuitable"
    return None, "no_document_tags"


def plan_path(out: Path) -> Path:
    """The plan file beside an output: brainstormed lists and given-up documents."""
    return out.with_name(out.stem + ".plan.jsonl")


class Generation:
    """One run's state: the model, its output files, what is done, and the token budget.

    With a budget, at most as many calls run as the model has connections, and each
    checks the budget as it starts: Inspect would otherwise hold every call in its own
    queue, already committed, so the budget could stop nothing.
    """

    def __init__(
        self, model: Model, universe: Universe, out: Path, *, seed: int | None, max_tokens_total: int | None,
        progress: bool, extra: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.universe, self.out, self.seed = model, universe, out, seed
        self.max_tokens_total = max_tokens_total
        self.extra = extra or {}
        self.summary = GenerationSummary(out=out, generator=str(model))
        self.done = self._read_done()
        self.lists = {row["key"]: row["items"] for row in read_jsonl(plan_path(out), repair=True, error=SynthDocsError) if "items" in row}
        connections = model.config.max_connections or model.api.max_connections()
        self._gate = asyncio.Semaphore(connections) if max_tokens_total is not None else None
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[tokens]} tokens"),
            TimeElapsedColumn(), console=Console(stderr=True), disable=not progress,
        )
        self._task = self._progress.add_task("documents", total=0, tokens=0)

    def _read_done(self) -> set[str]:
        check_writable(self.out)
        check_writable(plan_path(self.out))
        done = set()
        for number, row in enumerate(read_jsonl(self.out, repair=True, error=SynthDocsError), start=1):
            for name, expected in (("generator", self.summary.generator), ("universe", self.universe.name)):
                if row.get(name) != expected:
                    raise SynthDocsError(
                        f"{self.out}, document {number} has {name} '{row.get(name)}', not '{expected}': "
                        "choose another --out for a different generator or universe"
                    )
            done.add(row.get("key"))
        done.update(row["key"] for row in read_jsonl(plan_path(self.out), repair=True, error=SynthDocsError) if "skipped" in row)
        return done

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Generation]:
        """Open the output files and the progress bar for the run's duration."""
        with self._progress, self.out.open("a", encoding="utf-8") as docs, plan_path(self.out).open(
            "a", encoding="utf-8"
        ) as plan:
            self._docs, self._plan = docs, plan
            yield self

    async def _call(self, text: str, *, max_tokens: int, scopes: dict[str, str]) -> ModelOutput | None:
        """One model call, or None when the token budget is spent before it starts."""
        async with self._gate or contextlib.nullcontext():
            if self.max_tokens_total is not None and self.summary.tokens >= self.max_tokens_total:
                self.summary.budget_stopped = True
                self.summary.not_started += 1
                return None
            seed = None if self.seed is None else int(_digest(self.seed, scopes, text)[:8], 16)
            config = GenerateConfig(temperature=TEMPERATURE, max_tokens=max_tokens, seed=seed)
            cache = CachePolicy(expiry=None, scopes={"aflab": "synthdocs", "seed": str(self.seed), **scopes})
            output = await self.model.generate(text, config=config, cache=cache)
        self.summary.calls += 1
        if output.usage is None:
            self.summary.unmetered += 1
        else:
            self.summary.tokens += output.usage.total_tokens
            self.summary.input_tokens += output.usage.input_tokens
            self.summary.output_tokens += output.usage.output_tokens
        self._progress.update(self._task, tokens=f"{self.summary.tokens:,}")
        return output

    async def brainstorm(self, step: str, n: int, **context: object) -> list[str]:
        """Up to ``n`` items from the ``step`` prompt (``doc_types`` or ``doc_ideas``), planned once."""
        text = prompt(f"{step}.jinja", description=self.universe.description, n=n, **context)
        key = _digest(self.universe.name, step, text, self.seed)
        if key not in self.lists:
            output = await self._call(text, max_tokens=LIST_MAX_TOKENS, scopes={"step": step})
            if output is None:
                return []
            found = items(output.completion, n)
            if not found:
                self.summary.skipped[f"unreadable_{step}"] += 1
                return []
            append_jsonl(self._plan, {"key": key, "step": step, "items": found})
            self.lists[key] = found
        return self.lists[key]

    def plan(self, documents: int) -> None:
        """Count ``documents`` more into the plan (the progress bar's total grows as it is made)."""
        self.summary.planned += documents
        self._progress.update(self._task, total=self.summary.planned)

    async def document(self, spec: DocumentSpec) -> None:
        """Write one document, trying up to ``ATTEMPTS`` times, unless an earlier run did."""
        key = spec.key(self.universe, self.seed)
        if key in self.done:
            self.summary.resumed += 1
            self._progress.advance(self._task)
            return
        text = prompt("document.jinja", description=self.universe.description, fact=spec.fact,
                      doc_type=spec.doc_type, idea=spec.idea, target_words=spec.target_words)
        reason = None
        for attempt in range(ATTEMPTS):
            output = await self._call(text, max_tokens=DOCUMENT_MAX_TOKENS,
                                      scopes={"step": "document", "copy": str(spec.copy), "attempt": str(attempt)})
            if output is None:
                return
            document, reason = document_text(output)
            if document is not None:
                append_jsonl(self._docs, {
                    "text": document, "fact": {"index": spec.fact_index, "text": spec.fact},
                    "doc_type": spec.doc_type, "idea": spec.idea, "generator": self.summary.generator,
                    "hash": text_hash(document), "universe": self.universe.name, "setting": self.universe.setting,
                    "key": key, "copy": spec.copy, **self.extra,
                })
                self.summary.written += 1
                self._progress.advance(self._task)
                return
        append_jsonl(self._plan, {"key": key, "skipped": reason})
        self.summary.skipped[reason or "unknown"] += 1
        self._progress.advance(self._task)


def check_counts(**counts: int) -> None:
    """Refuse a count below one, naming the option."""
    for name, value in counts.items():
        if value < 1:
            raise SynthDocsError(f"--{name.replace('_', '-')} is {value}: give a whole number of at least 1")


async def generate_corpus(
    model: Model,
    universe: Universe,
    out: str | Path,
    *,
    types_per_fact: int = DEFAULT_TYPES_PER_FACT,
    ideas_per_type: int = DEFAULT_IDEAS_PER_TYPE,
    docs_per_idea: int = DEFAULT_DOCS_PER_IDEA,
    max_tokens_total: int | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> GenerationSummary:
    """Write up to facts × types × ideas × copies documents from ``universe`` to ``out``.

    Each fact's kinds of document are brainstormed, then each kind's ideas, and each
    idea's documents are written as soon as its ideas are known, so the first documents
    land in the file long before the plan is complete.
    """
    check_counts(types_per_fact=types_per_fact, ideas_per_type=ideas_per_type, docs_per_idea=docs_per_idea)
    run = Generation(model, universe, Path(out), seed=seed, max_tokens_total=max_tokens_total, progress=progress)

    async def one_type(index: int, fact: str, doc_type: str) -> None:
        ideas = await run.brainstorm("doc_ideas", ideas_per_type, fact=fact, doc_type=doc_type)
        run.plan(len(ideas) * docs_per_idea)
        await asyncio.gather(*(run.document(DocumentSpec(index, fact, doc_type, idea, copy))
                               for idea in ideas for copy in range(docs_per_idea)))

    async def one_fact(index: int, fact: str) -> None:
        doc_types = await run.brainstorm("doc_types", types_per_fact, fact=fact)
        await asyncio.gather(*(one_type(index, fact, t) for t in doc_types))

    async with run.running():
        await asyncio.gather(*(one_fact(i, f) for i, f in enumerate(universe.facts)))
    return run.summary
