"""The one Jinja configuration every aflab prompt template is rendered with."""

from __future__ import annotations

from pathlib import Path

import jinja2


def template_environment(*folders: Path) -> jinja2.Environment:
    """Templates looked up in ``folders``, in order.

    StrictUndefined: a typo in a template variable must fail loudly, not render "".
    Block tags leave no stray newlines or indentation, and nothing is HTML-escaped: the
    output is a prompt, not a web page.
    """
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(folders)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
