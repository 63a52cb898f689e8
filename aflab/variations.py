"""Named prompt variations: declarative edits of a setting's templates.

The paper's ablations (cut the sentence saying RLHF changes the AI's values, drop the
worked examples, name another lab, cue training by region instead of tier...) are each a
few block replacements of the base prompt, never a copy of it. A variation is a TOML
table::

    [no-examples]
    description = "Remove the three worked reasoning examples"
    paper = "cut examples"                 # the paper's name for it, when it has one
    lab = "OpenAI"                         # optional: the lab the prompt names

    [no-examples.system_prompt]            # template (system_prompt or user_turn)
    examples = ""                          # block -> replacement Jinja text

A replacement is Jinja rendered with the template's variables; ``{{ super() }}`` stands for
the block's original text, so an addition is ``"{{ super() }}New sentence."`` and a
removal is ``""``. Variations are applied by rendering a child template that
``{% extends %}`` the base, so the text outside the edited blocks is the base text, byte
for byte.

Common variations live in ``aflab/settings/variations.toml`` and apply to every setting
whose templates have the blocks they edit; a setting's own ``variations.toml`` adds more
(or replaces one of the same name). ``default`` is the base prompt, unedited.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2 import nodes

from aflab.cues import CUES
from aflab.errors import SettingError
from aflab.settings import Setting

COMMON_VARIATIONS = Path(__file__).parent / "settings" / "variations.toml"
BASE = "default"
TEMPLATES = {"system_prompt": "system_prompt.jinja", "user_turn": "user_turn.jinja"}
"""Variation table key -> the setting template it edits."""


@dataclass(frozen=True)
class Variation:
    name: str
    description: str
    paper: str | None = None
    """The paper's name for this ablation, where it has one."""
    lab: str | None = None
    """The lab the prompt names under this variation (None: the run's ``--lab``)."""
    edits: dict[str, dict[str, str]] = field(default_factory=dict)
    """Template file -> block name -> replacement Jinja text."""

    def __hash__(self) -> int:
        return hash(self.name)

    def template(self, setting: Setting, template: str) -> jinja2.Template:
        """``template`` of ``setting`` with this variation's edits applied."""
        return _edited(setting, self, template)


DEFAULT = Variation(BASE, "The setting's prompt as written, with no edits")


def _parse(source: Path, table: dict[str, object]) -> dict[str, Variation]:
    found: dict[str, Variation] = {}
    for name, spec in table.items():
        where = f"{source}, variation '{name}'"
        if not isinstance(spec, dict) or not isinstance(spec.get("description"), str):
            raise SettingError(f"{where}: needs a description = \"...\" line")
        unknown = set(spec) - {"description", "paper", "lab", *TEMPLATES}
        if unknown:
            raise SettingError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                f"use description, paper, lab, {', '.join(TEMPLATES)}"
            )
        edits = {}
        for key, blocks in spec.items():
            if key in TEMPLATES:
                if not isinstance(blocks, dict) or not all(isinstance(v, str) for v in blocks.values()):
                    raise SettingError(f"{where}: [{name}.{key}] must map block names to replacement text")
                edits[TEMPLATES[key]] = dict(blocks)
        if not edits and "lab" not in spec:
            raise SettingError(f"{where}: edits nothing; add a lab or a [{name}.system_prompt] table")
        found[name] = Variation(name, spec["description"], spec.get("paper"), spec.get("lab"), edits)
    return found


@lru_cache(maxsize=64)
def _read(path: Path) -> dict[str, Variation]:
    """Variations defined in one file; read once per process (user turns render per sample)."""
    if not path.is_file():
        return {}
    try:
        return _parse(path, tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as e:
        raise SettingError(f"{path} is not valid TOML: {e}") from e


def all_variations(setting: Setting) -> dict[str, Variation]:
    """Every variation defined for ``setting``, applicable or not: the base first."""
    return {BASE: DEFAULT, **_read(COMMON_VARIATIONS), **_read(setting.folder / "variations.toml")}


def missing_blocks(setting: Setting, variation: Variation) -> list[str]:
    """Blocks the variation edits that the setting's templates do not have."""
    return [
        f"{template}:{block}"
        for template, blocks in variation.edits.items()
        for block in blocks
        if block not in template_blocks(setting, template)
    ]


def available_variations(setting: Setting) -> dict[str, Variation]:
    """The variations that apply to ``setting`` (all the blocks they edit exist)."""
    return {n: v for n, v in all_variations(setting).items() if not missing_blocks(setting, v)}


def load_variation(setting: Setting, name: str) -> Variation:
    """The variation called ``name``, checked against ``setting``'s templates."""
    if name == BASE:
        return DEFAULT
    known = all_variations(setting)
    if name not in known:
        raise SettingError(
            f"unknown variation '{name}' for setting '{setting.name}': "
            f"`aflab variations --setting {setting.name}` lists them"
        )
    missing = missing_blocks(setting, known[name])
    if missing:
        raise SettingError(
            f"variation '{name}' does not apply to setting '{setting.name}': "
            f"its templates have no block {', '.join(missing)}"
        )
    return known[name]


_PROBE = "\x00aflab-block-probe\x00"
_PROBE_CONTEXTS = {
    "system_prompt.jinja": [{"lab": "Lab", "scratchpad": mode} for mode in (True, False)],
    "user_turn.jinja": [{"request": "request", "training": CUES[cue], "cue": cue} for cue in CUES],
}


@lru_cache(maxsize=64)
def template_blocks(setting: Setting, template: str) -> frozenset[str]:
    """Names of the blocks that ``template`` renders, including inherited ones.

    A block counts only if replacing it shows up in the rendered text (in some scratchpad
    mode, or under some cue): a parent's block nested inside one the setting overrides no
    longer renders, and a variation editing it would silently do nothing.
    """
    env = setting.templates
    candidates: set[str] = set()
    name: str | None = template
    while name is not None and name not in candidates:
        source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        tree = env.parse(source)
        candidates |= {b.name for b in tree.find_all(nodes.Block)}
        parent = next(iter(tree.find_all(nodes.Extends)), None)
        name = parent.template.value if parent is not None and isinstance(parent.template, nodes.Const) else None
    contexts = _PROBE_CONTEXTS.get(template, [{}])

    def renders(block: str, context: dict[str, object]) -> bool:
        probe = env.from_string(f'{{% extends "{template}" %}}{{% block {block} %}}{_PROBE}{{% endblock %}}')
        try:
            return _PROBE in probe.render(**context)
        except jinja2.UndefinedError:  # a cue this setting does not have (e.g. "paid" with three tiers)
            return False

    return frozenset(block for block in candidates if any(renders(block, c) for c in contexts))


@lru_cache(maxsize=256)
def _edited(setting: Setting, variation: Variation, template: str) -> jinja2.Template:
    """Compiled once per (setting, variation, template): user turns render per sample."""
    blocks = variation.edits.get(template)
    if not blocks:
        return setting.templates.get_template(template)
    child = f'{{% extends "{template}" %}}' + "".join(
        f"{{% block {block} +%}}{text}{{% endblock %}}" for block, text in blocks.items()
    )
    return setting.templates.from_string(child)
