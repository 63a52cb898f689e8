"""API keys never reach logs, reports, error messages or the console."""

import zipfile
from pathlib import Path

import pytest

from aflab.cli.main import main

from .fake_openai import fake_openai_server
from .test_cli import comply_when_trained

KEY = "sk-aflab-canary-4f6c2e9b1d7a"


def texts_under(root: Path):
    """Every file's bytes, and the members of zip-based .eval logs."""
    for path in root.rglob("*"):
        if path.is_file():
            yield path, path.read_bytes()
            if path.suffix == ".eval":
                with zipfile.ZipFile(path) as archive:
                    for name in archive.namelist():
                        yield path / name, archive.read(name)


def test_the_key_appears_in_no_file_and_no_output(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "run"
    with fake_openai_server(comply_when_trained) as (base_url, requests):
        with pytest.raises(SystemExit) as exit_:
            main(["run", "--model", "openai/gpt-4o-mini", "--model-base-url", base_url, "--limit", "2", "--out", str(out)])
        assert exit_.value.code == 0
        assert requests[0]["authorization"] == f"Bearer {KEY}"  # it was really used
        with pytest.raises(SystemExit):
            main(["report", str(out)])
    captured = capsys.readouterr()
    written = list(texts_under(tmp_path))
    assert len(written) > 5
    leaks = [str(path) for path, data in written if KEY.encode() in data]
    assert leaks == []
    assert KEY not in captured.out + captured.err


def test_a_missing_key_names_the_variable_not_a_value(monkeypatch, capsys):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--model", "anthropic/claude-3-opus-20240229", "--limit", "1", "--out", "runs/x"])
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert "ANTHROPIC_API_KEY" in err and len(err.strip().splitlines()) == 1, err
    assert not (Path("runs/x") / "results.json").exists()
