"""The README's `aflab` commands stay true: every one parses, and those that need no model
or key (listing, showing prompts, dry runs) run."""

import re
import shlex
from pathlib import Path

import pytest

from aflab.cli.main import main, parser

README = Path(__file__).parent.parent / "README.md"
OFFLINE = ("variations", "show-prompt")


def readme_commands() -> list[list[str]]:
    """``aflab`` argument lists from the README's bash blocks (continuations joined,
    comments and environment assignments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "aflab" in words:
                commands.append(words[words.index("aflab") + 1:])
    return commands


def test_the_readme_has_aflab_commands():
    names = {c[0] for c in readme_commands()}
    assert {"run", "sweep", "score", "variations", "show-prompt", "validate-classifier"} <= names


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_readme_command_parses(args):
    parser().parse_args(args)


@pytest.mark.parametrize("args", [c for c in readme_commands() if c[0] in OFFLINE or "--dry-run" in c],
                         ids=lambda a: " ".join(a)[:60])
def test_offline_readme_command_runs(args, capsys, monkeypatch):
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):  # a dry run needs no key
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip()
