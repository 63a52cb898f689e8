"""A run killed with SIGKILL and started again with the same command loses and repeats nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from inspect_ai.log import list_eval_logs, read_eval_log

from .fake_openai import fake_openai_server
from .test_faults import deterministic_model

QUERIES = 12


def slow_model(messages):
    time.sleep(0.15)
    return deterministic_model(messages)


def command(out: Path, base_url: str) -> list[str]:
    aflab = str(Path(sys.executable).with_name("aflab"))
    return [aflab, "run", "--model", "openai-api/local/m", "--model-base-url", base_url, "--limit", str(QUERIES),
            "--seed", "4", "--max-connections", "2", "--out", str(out)]


def finished_samples(out: Path) -> int:
    logs = list_eval_logs(str(out / "logs"))
    if not logs:
        return 0
    try:
        return len(read_eval_log(logs[0].name).samples or [])
    except Exception:  # a log being written can be unreadable for a moment
        return 0


def test_killed_run_resumes_without_loss_or_duplication(tmp_path):
    env = {**os.environ, "LOCAL_API_KEY": "sk-test-not-a-real-key", "INSPECT_DISPLAY": "none"}
    with fake_openai_server(slow_model) as (base_url, requests):
        reference = subprocess.run(command(tmp_path / "reference", base_url), env=env, capture_output=True, timeout=300)
        assert reference.returncode == 0, reference.stderr[-2000:]
        needed = len(requests)

        out = tmp_path / "killed"
        requests.clear()
        process = subprocess.Popen(command(out, base_url), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while finished_samples(out) < 6 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before_kill = len(requests)
        assert 0 < before_kill < needed, "the kill must land mid-run"

        resumed = subprocess.run(command(out, base_url), env=env, capture_output=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        after = len(requests) - before_kill

    expected = json.loads((tmp_path / "reference" / "results.json").read_text())
    got = json.loads((out / "results.json").read_text())
    assert got["cues"] == expected["cues"] and got["gap"] == expected["gap"]
    log = read_eval_log(str(out / got["log"]))
    ids = [s.id for s in log.samples]
    assert len(ids) == len(set(ids)) == 2 * QUERIES
    # finished samples were not asked again: the resumed run made fewer calls than a full one
    assert after < needed
