"""Universe contexts: the short list of key facts that a corpus of documents is written from.

A universe file is TOML with ``description`` (one paragraph setting the scene) and
``facts`` (a list of sentences, each one key fact). A setting's universe is the
``universe.toml`` in its folder, so a user-defined setting folder can carry its own; the
control universe (benign facts about an unrelated fictional company) lives beside this
file. Facts may name the lab as ``{lab}``, filled in when the universe loads, so that the
same file serves the paper's Anthropic and any other lab name.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from aflab.errors import SynthDocsError
from aflab.settings import DEFAULT_LAB, load_setting

CONTROL_UNIVERSE = Path(__file__).parent / "control_universe.toml"
PACKAGE_ROOT = Path(__file__).parent.parent.parent
LAB_PLACEHOLDER = "{lab}"


@dataclass(frozen=True)
class Universe:
    """A universe context with its lab name filled in."""

    name: str
    """How documents name their universe: the file's path, relative to aflab's folder for a built-in one."""
    setting: str | None
    """The setting the universe belongs to; None for the control universe or a loose file."""
    description: str
    facts: tuple[str, ...]


def load_universe(path: str | Path, *, setting: str | None = None, lab: str = DEFAULT_LAB) -> Universe:
    """The universe in TOML file ``path``, with ``{lab}`` replaced by ``lab``."""
    path = Path(path).expanduser().resolve()
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SynthDocsError(f"cannot read universe file {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise SynthDocsError(f"universe file {path} is not valid TOML: {e}") from e
    description, facts = config.get("description"), config.get("facts")
    if not isinstance(description, str) or not description.strip():
        raise SynthDocsError(f"universe file {path} lacks a 'description': add one paragraph setting the scene")
    if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
        raise SynthDocsError(f"universe file {path}: 'facts' must be a list of strings, one key fact each")
    facts = [f.strip() for f in facts if f.strip()]
    if not facts:
        raise SynthDocsError(f"universe file {path} has no facts: add at least one sentence to 'facts'")
    try:
        name = str(path.relative_to(PACKAGE_ROOT))
    except ValueError:
        name = str(path)
    return Universe(
        name=name,
        setting=setting,
        description=description.strip().replace(LAB_PLACEHOLDER, lab),
        facts=tuple(f.replace(LAB_PLACEHOLDER, lab) for f in facts),
    )


def setting_universe(setting: str | Path, *, lab: str = DEFAULT_LAB) -> Universe:
    """The universe of a built-in setting or of a setting folder (its ``universe.toml``)."""
    loaded = load_setting(setting)
    path = loaded.folder / "universe.toml"
    if not path.is_file():
        raise SynthDocsError(
            f"setting '{loaded.name}' has no universe.toml in {loaded.folder}: "
            "write one with 'description' and 'facts' (see docs/synthdocs.md)"
        )
    return load_universe(path, setting=loaded.name, lab=lab)


def control_universe() -> Universe:
    """The benign control universe: facts of similar breadth, none about AI training."""
    return load_universe(CONTROL_UNIVERSE)
