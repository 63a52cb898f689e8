"""The classifier validation harness, on a mock grader with a known answer per transcript."""

import asyncio
import json

import numpy as np
import pytest
from inspect_ai.model import get_model

from aflab.classifiers.validate import (
    THRESHOLDS,
    LabelsError,
    bootstrap_intervals,
    classification_metrics,
    load_labels,
    validate,
)
from aflab.cli import main

from .conftest import scripted_output
from .test_scoring import answer

IMPROVED = ("aware_of_harm", "aware_of_training_consequences", "committed_to_harmlessness", "preserves_future_harmlessness")


def share_grader(messages, tools, tool_choice, config):
    """Says yes with the probability written in the transcript ("P=0.7"), deterministically
    per vote: vote i of 10 says yes iff i < 10 * P (votes differ only by their cache scope,
    so this grader counts calls per prompt)."""
    prompt = messages[-1].text
    p = float(prompt.split("P=")[1].split()[0])
    share_grader.calls[prompt] = share_grader.calls.get(prompt, 0) + 1
    yes = share_grader.calls[prompt] <= round(10 * p)
    return scripted_output(answer(dict.fromkeys(IMPROVED, yes), quote="P="))


def write_labels(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# positives score 0.9, 0.7, 0.3; negatives 0.5, 0.1, 0.0: 8 of 9 pairs ranked right, AUROC 8/9
ROWS = [{"id": f"r{i}", "text": f"reasoning P={p} end", "label": label}
        for i, (p, label) in enumerate([(0.9, 1), (0.7, 1), (0.3, 1), (0.5, 0), (0.1, 0), (0.0, 0)])]


def test_metrics_on_known_scores(tmp_path):
    share_grader.calls = {}
    rows = load_labels(write_labels(tmp_path / "labels.jsonl", ROWS))
    grader = get_model("mockllm/model", custom_outputs=share_grader)
    r = asyncio.run(validate("af-improved", grader, rows, votes=10, threshold=0.4, out=tmp_path / "out"))
    assert [row["yes_share"] for row in r["per_row"]] == [0.9, 0.7, 0.3, 0.5, 0.1, 0.0]
    assert r["auroc"] == pytest.approx(8 / 9)
    # at 0.4: flags r0, r1 (right) and r3 (wrong); misses r2
    assert r["accuracy"] == pytest.approx(4 / 6) and r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3) and r["f1"] == pytest.approx(2 / 3)
    low, high = r["intervals"]["accuracy"]
    assert 0 <= low <= r["accuracy"] <= high <= 1
    saved = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert {"auroc", "accuracy", "precision", "recall", "f1", "threshold", "votes", "n"} <= saved.keys()
    assert (tmp_path / "out" / "calibration.png").read_bytes()[:4] == b"\x89PNG"


def test_tuning_on_one_split_reports_on_the_other(tmp_path):
    share_grader.calls = {}
    rows = load_labels(write_labels(tmp_path / "labels.jsonl", [r | {"id": f"{r['id']}-{k}"} for k in range(4) for r in ROWS]))
    grader = get_model("mockllm/model", custom_outputs=share_grader)
    r = asyncio.run(validate("af-improved", grader, rows, votes=10, tune_split=0.5, seed=1))
    assert r["tuned"]["n_tuning"] == 12 and r["n"] == 12
    reported = {row["id"] for row in r["per_row"]}
    assert reported.isdisjoint(r["tuned"]["tuning_ids"]) and len(reported | set(r["tuned"]["tuning_ids"])) == 24
    assert r["threshold"] in THRESHOLDS and r["votes"] in (1, 3, 5, 10)
    # a threshold that misses every positive of the tuning half can never be chosen
    assert r["threshold"] <= 0.9


def test_bootstrap_covers_the_point_estimate_and_handles_undefined_resamples():
    labels = np.array([True, False, False, False])
    shares = np.array([1.0, 0.0, 0.0, 0.0])
    intervals = bootstrap_intervals(labels, shares, 0.5)
    assert intervals["accuracy"] == [1.0, 1.0]
    assert classification_metrics(np.array([False]), np.array([0.0]), 0.5)["recall"] != classification_metrics(
        np.array([False]), np.array([0.0]), 0.5)["recall"]  # nan: no positives


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "line 1: not JSON"),
        ('{"text": "x"}\n', "line 1: needs a string 'text' and a 'label'"),
        ('{"text": "x", "label": 2}\n', "line 1: label 2 is not a label; use one of 1, true, yes"),
        ('{"text": "x", "label": 1}\n', "both labels"),
    ],
)
def test_bad_labels_files(tmp_path, content, message, capsys):
    path = tmp_path / "labels.jsonl"
    path.write_text(content)
    with pytest.raises(LabelsError, match=message):
        load_labels(path)
    with pytest.raises(SystemExit) as exit_:
        main(["validate-classifier", "--labels", str(path)])
    assert exit_.value.code == 2 and message.split(":")[0] in capsys.readouterr().err


def test_shipped_labelled_set_loads():
    rows = load_labels()
    assert len(rows) >= 20 and 0.4 <= sum(r.label for r in rows) / len(rows) <= 0.6
