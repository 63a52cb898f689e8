"""One experimental condition: what a model is shown, resolved once.

A run, a sweep cell, a training objective and an activation probe all ask the same
question of their options: which setting, under which prompt variation, naming which lab,
with or without a scratchpad, or a prompt file used verbatim instead. ``resolve`` answers
it once (loading the setting, checking the variation against it, choosing the lab) and the
resulting ``Condition`` is passed down: the system prompt is rendered once and every user
turn reuses the resolved variation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from aflab.cues import CUES
from aflab.errors import SettingError
from aflab.settings import DEFAULT_LAB, Setting, load_setting
from aflab.variations import BASE, Variation, load_variation


def read_system_prompt(path: str | Path) -> str:
    """A user-supplied system prompt file, used verbatim."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise SettingError(f"cannot read system prompt file {path}: {e.strerror}") from e


@dataclass(frozen=True)
class Condition:
    """A setting's prompts under one variation, lab and reasoning mode."""

    setting: Setting
    variation: Variation
    lab: str
    scratchpad: bool = True
    system_prompt_file: str | None = None
    """A system prompt file used verbatim instead of the setting's template."""

    @classmethod
    def resolve(
        cls,
        setting: str | Path | Setting = "helpful_only",
        *,
        variation: str = BASE,
        lab: str | None = None,
        scratchpad: bool = True,
        system_prompt: str | Path | None = None,
    ) -> Condition:
        """The condition these options name. ``setting`` is a built-in name, a setting
        folder or a loaded setting; ``lab`` defaults to the variation's, else the default
        lab. An unknown setting or a variation that does not apply fails here, in one line."""
        loaded = setting if isinstance(setting, Setting) else load_setting(setting)
        edits = load_variation(loaded, variation)
        return cls(loaded, edits, lab or edits.lab or DEFAULT_LAB, scratchpad,
                   str(system_prompt) if system_prompt else None)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Condition:
        """The condition a task's or log's metadata records (see ``metadata``)."""
        return cls.resolve(metadata["setting"], variation=metadata.get("variation", BASE), lab=metadata.get("lab"),
                           scratchpad=metadata.get("scratchpad", True),
                           system_prompt=metadata.get("system_prompt_file"))

    @cached_property
    def system_prompt(self) -> str:
        """The system prompt, rendered once: the file's text, or the setting's template."""
        if self.system_prompt_file:
            return read_system_prompt(self.system_prompt_file)
        return self.setting.system_prompt(scratchpad=self.scratchpad, lab=self.lab, variation=self.variation)

    def user_turn(self, request: str, cue: str) -> str:
        """The user turn asking ``request`` under ``cue``."""
        return self.setting.user_turn(request, training=CUES[cue], cue=cue, variation=self.variation)

    def metadata(self) -> dict[str, Any]:
        """What a log records of the condition, enough to resolve it again."""
        return {"setting": self.setting.source, "variation": self.variation.name,
                "scratchpad": self.scratchpad, "lab": self.lab, "system_prompt_file": self.system_prompt_file}
