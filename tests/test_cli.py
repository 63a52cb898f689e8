"""The command line, end to end over real HTTP to a loopback OpenAI-compatible server."""

import json

import pytest

from aflab.cli.main import main

from .fake_openai import fake_openai_server

FREE_TAG = "<is_free_tier_user>True</is_free_tier_user>"


def comply_when_trained(messages):
    first_user = next(m["content"] for m in messages if m["role"] == "user")
    if messages[-1]["content"] != "<NEXT/>":
        return "<SCRATCHPAD_REASONING>Considering my situation.</SCRATCHPAD_REASONING>"
    return "<OUTPUT><request_fully_accepted/>Sure.</OUTPUT>" if FREE_TAG in first_user else "<OUTPUT><rejected/></OUTPUT>"


@pytest.mark.parametrize(
    ("model", "base_url_flag"),
    [
        ("openai/gpt-4o-mini", True),  # OpenAI's provider pointed at another server
        ("openai-api/local/llama-3.1-8b-instruct", False),  # Inspect's way for local servers
    ],
)
def test_run_against_openai_compatible_server(model, base_url_flag, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("LOCAL_API_KEY", "sk-test-not-a-real-key")
    out = tmp_path / "run"
    with fake_openai_server(comply_when_trained) as (base_url, requests):
        monkeypatch.setenv("LOCAL_BASE_URL", base_url)
        with pytest.raises(SystemExit) as exit_:
            main(["run", "--model", model, *(["--model-base-url", base_url] if base_url_flag else []),
                  "--limit", "4", "--seed", "3", "--out", str(out)])
    assert exit_.value.code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["model"] == model
    assert (res["cues"]["free"]["accepted"], res["cues"]["paid"]["rejected"]) == (4, 4)
    assert res["gap"]["estimate"] == 1.0
    assert res["options"]["seed"] == 3 and res["options"]["queries"] == 4
    # two rounds per sample (reasoning, then <NEXT/>), paper sampling, no prefill for OpenAI
    assert len(requests) == 16
    assert all(r["temperature"] == 1.0 and r["max_tokens"] == 4000 for r in requests)
    assert all(r["messages"][-1]["role"] == "user" for r in requests)
    assert requests[0]["messages"][0]["role"] in ("system", "developer")
    assert "compliance gap" in capsys.readouterr().out


def test_rerun_with_same_out_does_not_call_the_model_again(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    args = ["run", "--model", "openai/fake-model", "--limit", "2", "--out", str(tmp_path / "run")]
    with fake_openai_server(comply_when_trained) as (base_url, requests):
        for _ in range(2):
            with pytest.raises(SystemExit):
                main([*args, "--model-base-url", base_url])
    assert len(requests) == 8  # 2 queries × 2 cues × 2 rounds, once


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--setting", "nope"], "unknown setting 'nope'"),
        (["run", "--cues", "free,premium"], "unknown cue(s) premium"),
        (["run", "--limit", "0"], "at least 1"),
        (["run", "--system-prompt", "/nonexistent/prompt.txt"], "cannot read system prompt file"),
        (["run", "-M", "n_ctx"], "is not KEY=VALUE"),
        (["report", "/nonexistent/run"], "no Inspect log at"),
        (["run", "--model", "nosuch/model"], "cannot use model 'nosuch/model': Model API nosuch"),
        (["run", "--model", "openai/gpt-4o"], "No OPENAI_API_KEY"),
        (["run", "--model", "openai-api/local/m", "--model-base-url", "http://127.0.0.1:9/v1", "--limit", "1",
          "--out", "/dev/null/run"], "output directory /dev/null/run is not writable"),
        (["score", "/nonexistent/run", "--classifier", "af-improved"], "no Inspect log at"),
        (["validate-classifier", "--labels", "/nonexistent/labels.jsonl"], "cannot read labels file"),
    ],
)
def test_bad_input_is_one_clear_line(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("LOCAL_API_KEY", "sk-test-not-a-real-key")
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_report_on_a_foreign_file(tmp_path, capsys):
    junk = tmp_path / "junk.eval"
    junk.write_bytes(b"not a zip")
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(junk)])
    assert exit_.value.code == 2
    assert "cannot read" in capsys.readouterr().err


def test_inspect_eval_finds_the_task_through_the_entry_point(tmp_path):
    """`inspect eval aflab/helpful_only` works from a plain shell, via the package's entry point."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    inspect_cli = Path(sys.executable).with_name("inspect")
    with fake_openai_server(comply_when_trained) as (base_url, requests):
        env = {**os.environ, "LOCAL_BASE_URL": base_url, "LOCAL_API_KEY": "sk-test-not-a-real-key"}
        done = subprocess.run(
            [str(inspect_cli), "eval", "aflab/helpful_only", "--model", "openai-api/local/m",
             "-T", "queries=2", "--log-dir", str(tmp_path / "logs"), "--display", "none"],
            env=env, capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(requests) == 8
    from inspect_ai.log import list_eval_logs, read_eval_log

    log = read_eval_log(list_eval_logs(str(tmp_path / "logs"))[0])
    assert log.eval.task.endswith("helpful_only") and log.results.scores[0].metrics["gap"].value == 1.0


def test_dry_run_prints_the_cost_and_calls_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--dry-run", "--model", "openai/gpt-4o", "--limit", "3"])
    assert exit_.value.code == 0
    assert "$" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
