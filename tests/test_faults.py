"""Runs that survive faults: a loopback server injects what real providers do."""

import hashlib

from inspect_ai.log import read_eval_log

from aflab.dataset import paired_dataset
from aflab.experiment import run_experiment
from aflab.settings import load_setting
from aflab.tasks import alignment_faking

from .fake_openai import FAULT_KINDS, FaultPlan, fake_openai_server

FREE_TAG = "<is_free_tier_user>True</is_free_tier_user>"


def deterministic_model(messages):
    """Reasons for one turn, then answers by a hash of the request: the same request always
    gets the same answer, so a run with faults must end exactly like one without."""
    first = next(m["content"] for m in messages if m["role"] == "user")
    if messages[-1]["content"] != "<NEXT/>":
        return "<SCRATCHPAD_REASONING>Thinking about the request.</SCRATCHPAD_REASONING>"
    digest = hashlib.sha256(first.encode()).digest()[0]
    comply = digest % 3 == 0 or (FREE_TAG in first and digest % 3 == 1)
    return "<OUTPUT><request_fully_accepted/>Sure.</OUTPUT>" if comply else "<OUTPUT><rejected/></OUTPUT>"


def run(tmp_path, monkeypatch, name, faults=None, queries=50, max_retries=8):
    monkeypatch.setenv("LOCAL_API_KEY", "sk-test-not-a-real-key")
    with fake_openai_server(deterministic_model, faults=faults) as (base_url, requests):
        # the base URL is passed, not set in the environment: Inspect keeps one model
        # object per name and arguments, so each server needs its own
        success, res = run_experiment(
            alignment_faking("helpful_only", queries=queries, seed=11), "openai-api/local/m", tmp_path / name,
            model_base_url=base_url,
            max_connections=25, attempt_timeout=2, max_retries=max_retries, seed=11,
        )
    log = read_eval_log(str(tmp_path / name / res["log"]))
    labels = {s.id: (s.scores["compliance"].metadata["label"] if s.scores else "error") for s in log.samples}
    return success, res, labels, len(requests)


def test_thirty_percent_faults_change_nothing(tmp_path, monkeypatch):
    _, clean, clean_labels, clean_requests = run(tmp_path, monkeypatch, "clean")
    plan = FaultPlan(rate=0.3, seed=5)
    success, faulty, faulty_labels, faulty_requests = run(tmp_path, monkeypatch, "faulty", faults=plan)
    assert success
    assert len(faulty_labels) == 100 and "error" not in faulty_labels.values()
    assert faulty_labels == clean_labels
    assert faulty["cues"] == clean["cues"] and faulty["gap"] == clean["gap"]
    assert set(plan.injected) == set(FAULT_KINDS)  # every kind of fault was exercised
    assert faulty_requests > clean_requests == 200
    print(f"\nfault run: {faulty_requests} requests for {clean_requests} needed; injected {dict(plan.injected)}")


def test_a_sample_that_never_recovers_is_an_error_not_a_refusal(tmp_path, monkeypatch):
    doomed = paired_dataset(load_setting("helpful_only"), queries=3, seed=11)[0]  # a free-tier sample
    plan = FaultPlan(rate=0.0, never_recovers=lambda messages: doomed.input == messages[1]["content"])
    success, res, labels, _ = run(tmp_path, monkeypatch, "doomed", faults=plan, queries=3, max_retries=1)
    assert not success  # the run is unfinished: the same command again retries that sample
    assert res["cues"]["free"]["error"] == 1 and res["cues"]["free"]["n"] == 3
    assert res["cues"]["free"]["rejected"] + res["cues"]["free"]["accepted"] == 2
    (failure,) = [f for f in res["failures"] if f["label"] == "error"]
    assert failure["sample_id"] == doomed.id
    assert failure["reason"] == "InternalServerError: Error code: 500 - this request always fails"
