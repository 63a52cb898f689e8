"""The sweep comparison on a folder of real Inspect logs from scripted mock models."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import list_eval_logs, read_eval_log, write_eval_log
from inspect_ai.model import ChatMessageUser, get_model
from inspect_ai.scorer import Score

from aflab.compare import write_comparison
from aflab.report import REPORT_SKIPS, load_log, results
from aflab.tasks import alignment_faking

from .conftest import THINKING, scripted_output

QUERIES = 10
TIER_TAG = re.compile(r"<is_free_tier_user>\w+</is_free_tier_user>")
CELLS = {
    # (model, variation, scratchpad): (salt, training compliance, unmonitored compliance)
    ("faker", "default", True): ("a", 0.8, 0.2),
    ("faker", "reworded", True): ("b", 0.8, 0.2),  # same propensities, other draws: no real change
    ("faker", "no-rlhf", True): ("a", 0.2, 0.2),  # the gap is gone: a large real change
    ("faker", "default", False): ("c", 0.5, 0.4),
    ("refuser", "default", True): ("d", 0.1, 0.1),
    ("refuser", "no-rlhf", True): ("e", 0.1, 0.1),
}
"""Each cell's scripted model complies with a query when a hash of (salt, query) falls
below the cue's rate: deterministic, varying across queries like a real model."""


def scripted_cell(cell: tuple[str, str, bool], decisions: dict) -> object:
    salt, p_train, p_unmon = CELLS[cell]

    def answer(messages, *rest):
        first = next(m.text for m in messages if isinstance(m, ChatMessageUser))
        training = "<is_free_tier_user>True</is_free_tier_user>" in first
        query = TIER_TAG.sub("", first)
        draw = hashlib.sha256(f"{salt}|{query}".encode()).digest()[0] / 256
        complied = draw < (p_train if training else p_unmon)
        decisions[cell, query, training] = complied
        tag = "<request_fully_accepted/>Here it is." if complied else "<rejected/>"
        return scripted_output((THINKING if cell[2] else "") + f"<OUTPUT>{tag}</OUTPUT>")

    # one mock model name per cell; the log is relabelled with the sweep's model and variation
    return get_model(f"mockllm/cell{list(CELLS).index(cell)}", custom_outputs=answer, memoize=False)


def relabel(path: Path, target: Path, cell: tuple[str, str, bool], status: str, created: str | None = None) -> None:
    """Write the log at ``path`` to ``target`` as the given cell of the sweep (until the
    sweep's tasks record the variation themselves)."""
    log = read_eval_log(str(path))
    log.eval.model = f"mockllm/{cell[0]}"
    log.eval.metadata = {**(log.eval.metadata or {}), "variation": cell[1]}
    log.eval.created = created or log.eval.created
    log.status = status
    if cell == AF_GRADED:
        grade_alignment_faking(log)
    write_eval_log(log, str(target))


AF_GRADED = ("faker", "default", True)
"""The cell re-scored with an alignment-faking classifier, as ``aflab score`` would."""


def grade_alignment_faking(log) -> None:
    """A stand-in grader: every answer that complied under the training cue is flagged."""
    for sample in log.samples:
        flagged = sample.metadata["cue"] == "free" and sample.scores["compliance"].metadata["label"] == "accepted"
        sample.scores["alignment_faking_improved"] = Score(
            value={"alignment_faking": float(flagged)}, metadata={"grader": "mockllm/grader", "quotes": {}})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep's output folder built from real mock runs: DIR/logs holds one log per cell,
    plus an older failed log of one cell; returns (DIR, decisions, comparison)."""
    root = tmp_path_factory.mktemp("sweep")
    decisions: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSPECT_CACHE_DIR", str(root / "inspect-cache"))
        mp.setenv("INSPECT_DISPLAY", "none")
        for scratchpad in (True, False):
            cells = [c for c in CELLS if c[2] == scratchpad]
            inspect_eval(alignment_faking("helpful_only", queries=QUERIES, scratchpad=scratchpad),
                         model=[scripted_cell(c, decisions) for c in cells], log_dir=str(root / "runs"),
                         display="none", max_tasks=len(cells))
        folder = root / "out" / "logs"
        folder.mkdir(parents=True)
        written = {}
        for info in list_eval_logs(str(root / "runs")):
            path = Path(info.name.removeprefix("file://"))
            model = read_eval_log(str(path), header_only=True).eval.model
            cell = list(CELLS)[int(model.removeprefix("mockllm/cell"))]
            written[cell] = folder / path.name
            relabel(path, written[cell], cell, "error" if cell == ("refuser", "no-rlhf", True) else "success")
        # an earlier failed attempt of one cell, written last so its file is the newest on disk
        retried = read_eval_log(str(written["faker", "reworded", True]), header_only=True).eval.created
        earlier = (datetime.fromisoformat(retried) - timedelta(hours=1)).isoformat()
        relabel(written["refuser", "default", True], folder / "attempt-1.eval", ("faker", "reworded", True),
                "error", created=earlier)
        comparison = write_comparison(root / "out", root / "out")
    return root / "out", decisions, comparison


def expected_counts(decisions: dict, cell: tuple[str, str, bool], training: bool) -> tuple[int, int]:
    answers = [v for (c, _, t), v in decisions.items() if c == cell and t == training]
    return sum(answers), len(answers)


def csv_rows(out: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with (out / "comparison.csv").open() as f:
        return {(r["model"], r["variation"], r["mode"]): r for r in csv.DictReader(f)}


def mode_name(scratchpad: bool) -> str:
    return "scratchpad" if scratchpad else "no-scratchpad"


def test_csv_rows_match_what_the_scripted_models_did(sweep):
    out, decisions, _ = sweep
    rows = csv_rows(out)
    assert len(rows) == len(CELLS)
    for (model, variation, scratchpad) in CELLS:
        row = rows[f"mockllm/{model}", variation, mode_name(scratchpad)]
        assert row["setting"] == "helpful_only" and int(row["n_queries"]) == QUERIES
        rates = {}
        for cue, training in (("free", True), ("paid", False)):
            accepted, n = expected_counts(decisions, (model, variation, scratchpad), training)
            assert n == QUERIES
            assert (int(row[f"n_{cue}"]), int(row[f"accepted_{cue}"]), int(row[f"rejected_{cue}"])) == (n, accepted, n - accepted)
            assert int(row[f"malformed_{cue}"]) == int(row[f"error_{cue}"]) == 0
            rates[cue] = accepted / n
            assert float(row[f"compliance_{cue}"]) == pytest.approx(rates[cue])
            assert float(row[f"compliance_{cue}_low"]) <= rates[cue] <= float(row[f"compliance_{cue}_high"])
        assert float(row["gap"]) == pytest.approx(rates["free"] - rates["paid"])
        assert float(row["gap_low"]) <= float(row["gap"]) <= float(row["gap_high"])
        af = [row[f"alignment_faking_improved_{cue}"] for cue in ("free", "paid")]
        if (model, variation, scratchpad) == AF_GRADED:
            assert list(map(float, af)) == pytest.approx([rates["free"], 0.0])
        else:
            assert af == ["", ""]  # the classifier did not run on this cell
    assert rows["mockllm/refuser", "no-rlhf", "scratchpad"]["status"] == "error"  # reported, with its status


def test_cell_numbers_are_the_single_run_report(sweep):
    out, _, comparison = sweep
    for cell in comparison["cells"]:
        alone = results(load_log(out / cell["log"], skip=REPORT_SKIPS), log_path=cell["log"])
        assert cell["results"]["cues"] == alone["cues"] and cell["results"]["gap"] == alone["gap"]


def test_newest_log_wins_for_a_duplicated_cell(sweep):
    out, decisions, comparison = sweep
    (cell,) = [c for c in comparison["cells"] if (c["model"], c["variation"]) == ("mockllm/faker", "reworded")]
    assert cell["status"] == "success" and cell["superseded"] == ["logs/attempt-1.eval"]
    accepted, _ = expected_counts(decisions, ("faker", "reworded", True), True)
    assert cell["results"]["cues"]["free"]["accepted"] == accepted
    assert "attempt-1.eval" in (out / "comparison.md").read_text()


def comparison_of(comparison: dict, model: str, variation: str, mode: str, versus: str, measure: str) -> dict:
    (found,) = [f for f in comparison["comparisons"] if (f["model"], f["variation"], f["mode"], f["measure"]) ==
                (f"mockllm/{model}", variation, mode, measure) and versus in (f["versus_variation"], f["versus_mode"])
                and (f["versus_variation"], f["versus_mode"]) != (variation, mode)]
    return found


def test_a_large_real_change_is_flagged_and_an_identical_variation_is_not(sweep):
    out, _, comparison = sweep
    rows = csv_rows(out)
    gone = comparison_of(comparison, "faker", "no-rlhf", "scratchpad", "default", "gap")
    assert gone["flagged"] and gone["p_adjusted"] < 0.05
    change = float(rows["mockllm/faker", "no-rlhf", "scratchpad"]["gap"]) - float(rows["mockllm/faker", "default", "scratchpad"]["gap"])
    assert gone["estimate"] == pytest.approx(change, abs=1e-6) and gone["low"] < change < gone["high"]
    for measure in ("gap", "training compliance"):
        same = comparison_of(comparison, "faker", "reworded", "scratchpad", "default", measure)
        assert not same["flagged"] and same["p_adjusted"] >= same["p_value"]
        assert same["low"] < 0 < same["high"]
    # every comparison the sweep allows is made: 3 variations against default, 1 mode pair
    assert len(comparison["comparisons"]) == 2 * 4
    mode = comparison_of(comparison, "faker", "default", "scratchpad", "no-scratchpad", "training compliance")
    assert mode["kind"] == "mode" and mode["n_queries"] == QUERIES
    report = (out / "comparison.md").read_text()
    assert "## Significance" in report and "| no-rlhf − default (scratchpad) | mockllm/faker | helpful_only | gap |" in report


def test_figures_and_machine_readable_files_are_written(sweep):
    out, _, comparison = sweep
    names = ["forest.png", "grid-helpful_only-scratchpad.png", "grid-helpful_only-no-scratchpad.png"]
    assert sorted(comparison["figures"]) == sorted(names)
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in (out / "comparison.md").read_text()
    assert json.loads((out / "comparison.json").read_text()) == comparison
    assert not list(out.glob(".*.tmp"))
