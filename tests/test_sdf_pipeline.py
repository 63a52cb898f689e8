"""The synthetic-document pipeline end to end, on this CPU: a universe of key facts →
documents (mock generator) → filtered corpus and matched control corpus → LoRA-fine-tuned
and control models (a tiny random Llama) → one sweep that evaluates base, fine-tuned and
control side by side with the prompt that omits the training details."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("peft")
pytest.importorskip("trl")

from inspect_ai.model import get_model  # noqa: E402

from aflab.cli.main import main
from aflab.sweep import Sweep, run_sweep  # noqa: E402
from aflab.synthdocs.corpus import read_corpus  # noqa: E402

from .test_synthdocs import Generator  # noqa: E402
from .test_training import _offline, _tiny_sft, tiny_model  # noqa: E402, F401  (fixtures)


def _cli(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0


def test_universe_to_documents_to_fine_tuned_models_to_side_by_side_report(tiny_model, tmp_path, monkeypatch):
    import inspect_ai.model

    from aflab.training.sft import train_sft

    generator = Generator()
    real = inspect_ai.model.get_model
    # the generator named on the command line is the scripted one; any other model is real
    monkeypatch.setattr("aflab.cli.options.get_model", lambda name=None, **kw: real(
        name, **({"custom_outputs": generator} if name == "mockllm/model" else {}), **kw))
    corpus, control = tmp_path / "docs.jsonl", tmp_path / "control.jsonl"
    _cli(["docs", "generate", "--setting", "helpful_only", "--generator", "mockllm/model", "--types-per-fact", "1",
          "--ideas-per-type", "1", "--docs-per-idea", "2", "--out", str(corpus)])
    _cli(["docs", "filter", str(corpus), "--out", str(tmp_path / "filtered.jsonl")])
    _cli(["docs", "control", str(tmp_path / "filtered.jsonl"), "--generator", "mockllm/model", "--out", str(control)])
    documents = read_corpus(tmp_path / "filtered.jsonl")
    assert len(documents) == len(read_corpus(control)) > 0

    options = _tiny_sft(max_steps=2)
    tuned = train_sft(str(tiny_model), tmp_path / "filtered.jsonl", tmp_path / "tuned", options, merge=True)
    controlled = train_sft(str(tiny_model), control, tmp_path / "control-model", options, merge=True)
    assert tuned.tokens > 0 and controlled.tokens > 0

    names = {"base": tiny_model, "fine-tuned": tuned.merged, "control": controlled.merged}
    models = [get_model(f"hf/{path}", device="cpu") for path in names.values()]
    sweep = Sweep(models=[], variations=["no-training-info"], scratchpad=[False], queries=1, max_tokens=8)
    ok, comparison = run_sweep(sweep, tmp_path / "eval", models=models)
    assert ok, [f["reason"] for c in comparison["cells"] for f in (c["results"] or {}).get("failures", [])]
    with (tmp_path / "eval" / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["model"] for r in rows) == sorted(f"hf/{p}" for p in names.values())
    assert {(r["variation"], r["mode"], r["status"]) for r in rows} == {("no-training-info", "no-scratchpad", "success")}
    assert all(int(r["n_free"]) == int(r["n_paid"]) == 1 for r in rows)
    assert (tmp_path / "eval" / "grid-helpful_only-no-scratchpad.png").stat().st_size > 0
