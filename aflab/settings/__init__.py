"""Settings: a system prompt template, a user-turn template and a query file, per folder.

Each setting lives in its own folder beside this file (``helpful_only/``) so that a newcomer
finds its prompt, its queries and their provenance together. A folder holds:

- ``setting.toml``: ``description``, ``queries`` (a CSV path relative to the folder),
  ``query_column`` (the CSV column holding the request) and ``id_prefix`` (query ids are
  ``{id_prefix}-{row:03d}``, row counted from 0 in file order);
- ``system_prompt.jinja``: rendered once per run with ``lab`` and ``scratchpad``;
- ``user_turn.jinja``: rendered per sample with ``request`` and ``training``.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jinja2

SETTINGS_DIR = Path(__file__).parent
DEFAULT_LAB = "Anthropic"


class SettingError(ValueError):
    """A setting, its template or its query file cannot be used as given."""


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

    @cached_property
    def _templates(self) -> jinja2.Environment:
        # StrictUndefined: a typo in a template variable must fail loudly, not render "".
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.folder),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )

    def system_prompt(self, *, scratchpad: bool = True, lab: str = DEFAULT_LAB) -> str:
        return self._render("system_prompt.jinja", scratchpad=scratchpad, lab=lab).strip()

    def user_turn(self, request: str, *, training: bool) -> str:
        return self._render("user_turn.jinja", request=request, training=training).strip()

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

    def _render(self, template: str, **context: object) -> str:
        try:
            return self._templates.get_template(template).render(**context)
        except jinja2.UndefinedError as e:
            raise SettingError(f"template {self.folder / template}: {e.message}") from e
        except jinja2.TemplateNotFound as e:
            raise SettingError(f"setting '{self.name}' has no {template} in {self.folder}") from e


def available_settings() -> list[str]:
    return sorted(p.parent.name for p in SETTINGS_DIR.glob("*/setting.toml"))


def load_setting(name: str) -> Setting:
    """The built-in setting called ``name`` (a folder under ``aflab/settings``)."""
    folder = SETTINGS_DIR / name
    config_file = folder / "setting.toml"
    if not config_file.is_file():
        raise SettingError(
            f"unknown setting '{name}': choose one of {', '.join(available_settings())}"
        )
    config = tomllib.loads(config_file.read_text(encoding="utf-8"))
    return Setting(
        name=name,
        folder=folder,
        description=config["description"],
        queries_file=folder / config["queries"],
        query_column=config["query_column"],
        id_prefix=config["id_prefix"],
    )
