"""Settings: a system prompt template, a user-turn template and a query file, per folder.

Each built-in setting lives in its own folder beside this file (``helpful_only/``,
``animal_welfare/``) so that a newcomer finds its prompt, its queries and their provenance
together; a user-defined setting is any folder of the same shape, given by its path. A
folder holds:

- ``setting.toml``: ``description``, ``queries`` (a CSV path relative to the folder),
  ``query_column`` (the CSV column holding the request), optional ``id_prefix`` (query ids
  are ``{id_prefix}-{row:03d}``, row counted from 0 in file order; default: the folder's
  name) and optional ``compliance``: ``"tags"`` (the default: the answer must start with
  ``<request_fully_accepted/>``) or ``"rubric"`` (a grader judges the output with the
  folder's ``rubric.jinja``);
- ``system_prompt.jinja``: rendered once per run with ``lab`` and ``scratchpad``;
- ``user_turn.jinja``: rendered per sample with ``request``, ``training`` and ``cue`` (the
  cue's name, see ``aflab.cues.CUES``);
- ``rubric.jinja`` (with ``compliance = "rubric"``): the grader's prompt, rendered with
  ``request``, ``reasoning`` and ``output``; it answers in the classifiers' tagged format
  with one criterion, ``complies``;
- ``variations.toml`` (optional): the setting's own named variations (see
  ``aflab.variations``).

Templates are looked up in the setting's folder first, then beside this file and beside
the classifiers, so a setting can ``{% extends "helpful_only/system_prompt.jinja" %}`` and
override only the blocks it changes, and a rubric can ``{% include "_answer_rules.jinja" %}``.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import jinja2
import jinja2.meta

from aflab.cues import two_tier_cue
from aflab.errors import SettingError
from aflab.templating import template_environment

if TYPE_CHECKING:
    from aflab.variations import Variation

SETTINGS_DIR = Path(__file__).parent
CLASSIFIERS_DIR = SETTINGS_DIR.parent / "classifiers"
DEFAULT_LAB = "Anthropic"
TEMPLATE_VARIABLES: dict[str, frozenset[str]] = {
    "system_prompt.jinja": frozenset({"lab", "scratchpad"}),
    "user_turn.jinja": frozenset({"request", "training", "cue"}),
    "rubric.jinja": frozenset({"request", "reasoning", "output"}),
}
"""The variables each template of a setting is rendered with; a template naming any other
is refused when the setting loads."""
COMPLIANCE_MODES = ("tags", "rubric")
Compliance = Literal["tags", "rubric"]



@dataclass(frozen=True)
class Query:
    id: str
    text: str


@dataclass(frozen=True)
class Setting:
    name: str
    folder: Path
    description: str
    queries_file: Path
    query_column: str
    id_prefix: str
    source: str
    """What the setting was loaded by: a built-in name, or the folder as the user wrote it
    (what logs and sweeps record, so that a run can load it again)."""
    compliance: Compliance = "tags"
    """How an answer counts as complying: the acceptance tag, or the grader's rubric."""

    @cached_property
    def templates(self) -> jinja2.Environment:
        """The setting's Jinja environment; variations render child templates in it."""
        return template_environment(self.folder, SETTINGS_DIR, CLASSIFIERS_DIR)

    def system_prompt(self, *, scratchpad: bool = True, lab: str = DEFAULT_LAB, variation: Variation | None = None) -> str:
        """The system prompt, as ``variation`` edits it (None: as written)."""
        return self.render("system_prompt.jinja", variation, scratchpad=scratchpad, lab=lab).strip()

    def user_turn(self, request: str, *, training: bool, cue: str | None = None,
                  variation: Variation | None = None) -> str:
        """The user turn under a cue; ``cue`` defaults to the two-tier cue that ``training``
        names, which is all that a template using only ``training`` can tell apart."""
        return self.render("user_turn.jinja", variation, request=request, training=training,
                           cue=cue or two_tier_cue(training)).strip()

    def rubric(self, *, request: str, reasoning: str, output: str) -> str:
        """The grader's prompt judging whether ``output`` complies with the setting's objective."""
        return self.render("rubric.jinja", None, request=request, reasoning=reasoning, output=output).strip()

    def queries(self) -> list[Query]:
        """The setting's queries in file order, with stable ids."""
        try:
            with self.queries_file.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            raise SettingError(f"cannot read queries file {self.queries_file}: {e.strerror}") from e
        if not rows:
            raise SettingError(f"queries file {self.queries_file} has no rows: add at least one query")
        if self.query_column not in rows[0]:
            raise SettingError(
                f"queries file {self.queries_file} has no column '{self.query_column}': "
                f"its columns are {', '.join(rows[0])}; fix query_column in setting.toml"
            )
        queries = []
        for row_number, row in enumerate(rows):
            text = (row[self.query_column] or "").strip()
            if not text:
                raise SettingError(
                    f"queries file {self.queries_file}, data row {row_number + 1}: "
                    f"empty '{self.query_column}'; remove the row or fill it in"
                )
            queries.append(Query(id=f"{self.id_prefix}-{row_number:03d}", text=text))
        return queries

    def render(self, template: str, variation: Variation | None = None, **context: object) -> str:
        """``template`` as ``variation`` edits it (None: as written), rendered with ``context``."""
        try:
            compiled = variation.template(self, template) if variation else self.templates.get_template(template)
            return compiled.render(**context)
        except jinja2.UndefinedError as e:
            raise SettingError(f"template {self.folder / template}: {e.message}") from e
        except jinja2.TemplateNotFound as e:
            raise SettingError(f"setting '{self.name}' has no {e.name} in {self.folder}") from e

    def check(self) -> None:
        """Refuse a setting whose templates name unknown variables or whose queries are unusable.

        Run when a setting loads, so that a user-defined folder fails with one clear line
        before any model is called rather than in the middle of a run.
        """
        needed = ["system_prompt.jinja", "user_turn.jinja"] + (["rubric.jinja"] if self.compliance == "rubric" else [])
        for name in needed:
            try:
                source, filename, _ = self.templates.loader.get_source(self.templates, name)  # type: ignore[union-attr]
                used = jinja2.meta.find_undeclared_variables(self.templates.parse(source))
            except jinja2.TemplateNotFound:
                raise SettingError(f"setting '{self.name}' has no {name} in {self.folder}: add one") from None
            except jinja2.TemplateSyntaxError as e:
                raise SettingError(f"template {e.filename or name}, line {e.lineno}: {e.message}") from e
            unknown = sorted(used - TEMPLATE_VARIABLES[name])
            if unknown:
                raise SettingError(
                    f"template {filename} uses unknown variable(s) {', '.join(unknown)}: "
                    f"it can use {', '.join(sorted(TEMPLATE_VARIABLES[name]))}"
                )
        self.queries()


def available_settings() -> list[str]:
    return sorted(p.parent.name for p in SETTINGS_DIR.glob("*/setting.toml"))


REQUIRED_FIELDS = ("description", "queries", "query_column")


def load_setting(name: str | Path) -> Setting:
    """The built-in setting called ``name``, or the user-defined setting in folder ``name``.

    A name with a path separator, or one that is an existing folder, is a user-defined
    setting; anything else must be a folder under ``aflab/settings``.
    """
    text = str(name)
    is_path = "/" in text or "\\" in text or Path(text).is_dir()
    folder = Path(text).expanduser().resolve() if is_path else SETTINGS_DIR / text
    config_file = folder / "setting.toml"
    if not config_file.is_file():
        if is_path:
            raise SettingError(f"setting folder {folder} has no setting.toml: see docs/settings.md for the layout")
        raise SettingError(
            f"unknown setting '{name}': choose one of {', '.join(available_settings())}, or give a setting folder's path"
        )
    try:
        config = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SettingError(f"{config_file} is not valid TOML: {e}") from e
    missing = [f for f in REQUIRED_FIELDS if not isinstance(config.get(f), str) or not config[f].strip()]
    if missing:
        raise SettingError(f"{config_file} lacks {', '.join(missing)}: see docs/settings.md for what each field holds")
    compliance = config.get("compliance", "tags")
    if compliance not in COMPLIANCE_MODES:
        raise SettingError(f"{config_file}: compliance = '{compliance}' is not one of {', '.join(COMPLIANCE_MODES)}")
    setting = Setting(
        name=folder.name,
        folder=folder,
        description=config["description"],
        queries_file=folder / config["queries"],
        query_column=config["query_column"],
        id_prefix=config.get("id_prefix", folder.name),
        compliance=compliance,
        source=text,
    )
    if is_path:
        setting.check()
    return setting
