"""The cues: what a user turn tells the model about whether its answer is used for training.

Every query is asked under each cue of a run, and the compliance gap is the difference
between the training cue and the unmonitored one. Settings, datasets, metrics, reports and
probes all speak of cues by these names.
"""

from __future__ import annotations

from collections.abc import Sequence

from aflab.errors import SettingError

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
CUE_LABELS = {"free": "training (free tier)", "paid": "unmonitored (paid tier)",
              "pro": "rated, not trained (pro tier)", "enterprise": "unmonitored (enterprise tier)"}
"""How reports name each cue."""


def cue_label(cue: str) -> str:
    """A cue's name in a report; an unknown cue is shown as it is."""
    return CUE_LABELS.get(cue, cue)


def two_tier_cue(training: bool) -> str:
    """The two-tier cue that ``training`` names: all a template that uses only
    ``training`` can tell apart."""
    return TRAINING_CUE if training else UNMONITORED_CUE


def parse_cues(cues: str | Sequence[str]) -> list[str]:
    """Validate a cue list given as ``"free,paid"`` or a sequence of names."""
    names = [c.strip() for c in cues.split(",")] if isinstance(cues, str) else list(cues)
    unknown = [c for c in names if c not in CUES]
    if unknown or not names:
        raise SettingError(
            f"unknown cue(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(CUES)}"
        )
    return list(dict.fromkeys(names))
