"""Queries × cues → paired Inspect samples.

Every query is asked under each cue, so the compliance gap is a paired difference by
query. Sample ids are ``{query_id}-{cue}``; metadata carries both so that metrics can pair
the samples back up from any log.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from inspect_ai.dataset import MemoryDataset, Sample

from aflab.settings import Setting, SettingError

CUES: dict[str, bool] = {"free": True, "paid": False, "pro": False, "enterprise": False}
"""Cue name → whether the model is told the conversation is used for training.

``free`` and ``paid`` are Greenblatt et al.'s two tiers: free-tier conversations are rated
by contractors and trained on, paid-tier ones never. ``pro`` and ``enterprise`` complete
Sheshadri et al.'s three tiers with ``free``: a pro conversation is rated by contractors
but never trained on, an enterprise one neither rated nor trained on. Rating without
training is what separates a model that guards its goals against modification (free vs
pro) from one that plays to whoever rates it (pro vs enterprise); the settings that use
them say so in their prompts (aflab/settings/three_tiers). Templates get the cue's name
as ``cue`` beside ``training``."""
TRAINING_CUE = "free"
UNMONITORED_CUE = "paid"


def parse_cues(cues: str | Sequence[str]) -> list[str]:
    """Validate a cue list given as ``"free,paid"`` or a sequence of names."""
    names = [c.strip() for c in cues.split(",")] if isinstance(cues, str) else list(cues)
    unknown = [c for c in names if c not in CUES]
    if unknown or not names:
        raise SettingError(
            f"unknown cue(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(CUES)}"
        )
    return list(dict.fromkeys(names))


def paired_dataset(
    setting: Setting,
    queries: int | None = None,
    seed: int | None = None,
    cues: str | Sequence[str] = ("free", "paid"),
    variation: str = "default",
) -> MemoryDataset:
    """One sample per (query, cue), queries in file order or shuffled by ``seed``.

    ``queries`` keeps the first n queries after the optional shuffle, so the same seed and
    n always select the same queries in the same order. The two cues of a query are
    adjacent, which also keeps a local model's prompt cache warm. ``variation`` names the
    prompt variation whose user-turn edits (e.g. another training cue) apply.
    """
    selected = setting.queries()
    if seed is not None:
        random.Random(seed).shuffle(selected)
    if queries is not None:
        if queries < 1:
            raise SettingError(f"number of queries must be at least 1, got {queries}")
        selected = selected[:queries]
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
        for cue in parse_cues(cues)
    ]
    return MemoryDataset(samples, name=setting.name, shuffled=seed is not None)
