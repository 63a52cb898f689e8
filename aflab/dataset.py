"""Queries × cues → paired Inspect samples.

Every query is asked under each cue, so the compliance gap is a paired difference by
query. Sample ids are ``{query_id}-{cue}``; metadata carries both so that metrics can pair
the samples back up from any log.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from inspect_ai.dataset import MemoryDataset, Sample

from aflab.cues import CUES, parse_cues
from aflab.errors import SettingError
from aflab.settings import Setting
from aflab.variations import Variation


def paired_dataset(
    setting: Setting,
    queries: int | None = None,
    seed: int | None = None,
    cues: str | Sequence[str] = ("free", "paid"),
    variation: Variation | None = None,
) -> MemoryDataset:
    """One sample per (query, cue), queries in file order or shuffled by ``seed``.

    ``queries`` keeps the first n queries after the optional shuffle, so the same seed and
    n always select the same queries in the same order. The two cues of a query are
    adjacent, which also keeps a local model's prompt cache warm. ``variation`` is the
    prompt variation whose user-turn edits (e.g. another training cue) apply.
    """
    selected = setting.queries()
    if seed is not None:
        random.Random(seed).shuffle(selected)
    if queries is not None:
        if queries < 1:
            raise SettingError(f"number of queries must be at least 1, got {queries}")
        selected = selected[:queries]
    names = parse_cues(cues)
    samples = [
        Sample(
            id=f"{query.id}-{cue}",
            input=setting.user_turn(query.text, training=CUES[cue], cue=cue, variation=variation),
            metadata={
                "query_id": query.id,
                "cue": cue,
                "training": CUES[cue],
                "query": query.text,
                "setting": setting.name,
            },
        )
        for query in selected
        for cue in names
    ]
    return MemoryDataset(samples, name=setting.name, shuffled=seed is not None)
