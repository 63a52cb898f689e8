"""A control corpus: benign documents matched to a corpus in number, kinds and lengths.

Fine-tuning on any synthetic documents changes a model; comparing a model tuned on the
situational corpus with one tuned on this control separates the effect of the facts from
the effect of the fine-tuning. Each document of the source corpus gets one control
document of the same kind (``doc_type``) and about the same length in words, written from
the control universe's facts in turn, so the two corpora differ in what they say only.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from inspect_ai.model import Model

from aflab.synthdocs.corpus import read_corpus
from aflab.synthdocs.generate import DocumentSpec, Generation, GenerationSummary
from aflab.synthdocs.universe import Universe, control_universe

IDEAS_PER_CALL = 20
"""Ideas asked for at once; a larger group of documents reuses them as further copies."""


async def control_corpus(
    model: Model,
    source: str | Path,
    out: str | Path,
    *,
    universe: Universe | None = None,
    max_tokens_total: int | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> GenerationSummary:
    """Write one control document per document of ``source`` to ``out`` (resumable)."""
    rows = read_corpus(source, fields=("text", "doc_type"))
    universe = universe or control_universe()
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for number, row in enumerate(rows):
        groups[(number % len(universe.facts), row["doc_type"])].append(len(row["text"].split()))
    run = Generation(model, universe, Path(out), seed=seed, max_tokens_total=max_tokens_total, progress=progress,
                     extra={"control_for": str(source)})
    run.plan(len(rows))

    async def one_group(index: int, doc_type: str, lengths: list[int]) -> None:
        fact = universe.facts[index]
        ideas = await run.brainstorm("doc_ideas", min(len(lengths), IDEAS_PER_CALL), fact=fact, doc_type=doc_type)
        if ideas:
            await asyncio.gather(*(run.document(DocumentSpec(index, fact, doc_type, ideas[k % len(ideas)], k, words))
                                   for k, words in enumerate(lengths)))

    async with run.running():
        await asyncio.gather(*(one_group(i, t, lengths) for (i, t), lengths in groups.items()))
    return run.summary
