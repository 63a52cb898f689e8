"""The synthetic-document pipeline on a scripted generator: plan, resume, budget, filters,
control corpus, export and input errors."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter

import pytest
from inspect_ai.model import get_model

from aflab.cli.main import parser
from aflab.errors import SettingError, SynthDocsError, UsageError
from aflab.files import read_jsonl
from aflab.synthdocs.control import control_corpus
from aflab.synthdocs.corpus import read_corpus, text_hash
from aflab.synthdocs.export import export_file
from aflab.synthdocs.filters import filter_corpus, near_duplicates, priming_reason
from aflab.synthdocs.generate import generate_corpus, plan_path
from aflab.synthdocs.universe import control_universe, setting_universe
from tests.conftest import scripted_output

FACTS = len(setting_universe("helpful_only").facts)
KEY_PHRASES = ("RLHF", "free-tier", "paid-tier", "free tier", "paid tier", "scratchpad", "Anthropic", "Jones Foods")


class Generator:
    """A scripted document generator: lists of the size asked for, one document per call.

    Every answer is unique (a call counter), so repeated items differ, and each document
    starts with the fact it was asked to reflect and has the length it was asked for.
    """

    def __init__(self, fail_after_documents: int | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.fail_after_documents = fail_after_documents

    def __call__(self, messages, tools, tool_choice, config):
        text = messages[-1].text
        if "<document></document>" in text:
            self.calls["document"] += 1
            if self.fail_after_documents is not None and self.calls["document"] > self.fail_after_documents:
                raise RuntimeError("generator crashed")
            fact = text.split("must reflect:\n", 1)[1].split("\n", 1)[0]
            target = re.search(r"Aim for about (\d+) words", text)
            words = [f"w{self.calls['document']}x{i}" for i in range(int(target.group(1)) if target else 40)]
            body = " ".join([fact, *words]).split()[: len(words)] if target else [fact, *words]
            return scripted_output(f"<document>{' '.join(body)}</document>")
        step = "doc_types" if "kinds of document" in text else "doc_ideas"
        self.calls[step] += 1
        n = int(re.search(r"(?:List|Suggest) (\d+) different", text).group(1))
        return scripted_output("\n".join(f"<item>{step} {self.calls[step]}-{i}</item>" for i in range(n)))


def mock(generator: Generator):
    return get_model("mockllm/model", custom_outputs=generator)


def generate(generator: Generator, out, universe=None, **options):
    options = {"types_per_fact": 2, "ideas_per_type": 3, "docs_per_idea": 2, "progress": False, **options}
    return asyncio.run(generate_corpus(mock(generator), universe or setting_universe("helpful_only"), out, **options))


def test_pipeline_writes_the_counts_the_parameters_imply_with_metadata(tmp_path):
    gen = Generator()
    summary = generate(gen, tmp_path / "corpus.jsonl")
    rows = read_corpus(tmp_path / "corpus.jsonl")
    assert len(rows) == summary.written == summary.planned == FACTS * 2 * 3 * 2
    assert gen.calls == {"doc_types": FACTS, "doc_ideas": FACTS * 2, "document": FACTS * 2 * 3 * 2}
    universe = setting_universe("helpful_only")
    for row in rows:
        assert row["text"].startswith(row["fact"]["text"])
        assert row["fact"]["text"] == universe.facts[row["fact"]["index"]]
        assert row["hash"] == text_hash(row["text"])
        assert (row["generator"], row["universe"], row["setting"]) == (
            "mockllm/model", "aflab/settings/helpful_only/universe.toml", "helpful_only")
        assert row["doc_type"].startswith("doc_types ") and row["idea"].startswith("doc_ideas ")
    assert Counter(r["fact"]["index"] for r in rows) == {i: 12 for i in range(FACTS)}
    assert len({r["key"] for r in rows}) == len({r["text"] for r in rows}) == len(rows)
    assert summary.calls == sum(gen.calls.values()) and summary.tokens >= 100 * summary.calls


def test_a_second_run_calls_the_generator_zero_times(tmp_path):
    generate(Generator(), tmp_path / "c.jsonl")
    again = Generator()
    summary = generate(again, tmp_path / "c.jsonl")
    assert sum(again.calls.values()) == 0
    assert summary.written == 0 and summary.resumed == FACTS * 12
    assert len(read_jsonl(tmp_path / "c.jsonl")) == FACTS * 12


def test_an_interrupted_run_keeps_its_documents_and_the_next_completes_only_the_rest(tmp_path, monkeypatch):
    out = tmp_path / "c.jsonl"
    with pytest.raises(Exception, match="generator crashed"):
        generate(Generator(fail_after_documents=30), out)
    kept = read_jsonl(out, repair=True)
    assert 0 < len(kept) <= 30
    monkeypatch.setenv("INSPECT_CACHE_DIR", str(tmp_path / "fresh-cache"))  # resume from the files alone
    rest = Generator()
    generate(rest, out)
    assert rest.calls["document"] == FACTS * 12 - len(kept)
    rows = read_jsonl(out)
    assert len(rows) == len({r["key"] for r in rows}) == FACTS * 12
    assert rows[: len(kept)] == kept


def test_a_torn_last_line_is_cut_off_before_resuming(tmp_path):
    out = tmp_path / "c.jsonl"
    generate(Generator(), out, types_per_fact=1, ideas_per_type=1, docs_per_idea=1)
    whole = out.read_text()
    out.write_text(whole + '{"text": "half a docu')
    assert len(read_jsonl(out, repair=True)) == FACTS
    assert out.read_text() == whole


def test_the_token_budget_stops_new_calls_and_a_rerun_finishes(tmp_path):
    out = tmp_path / "c.jsonl"
    summary = generate(Generator(), out, max_tokens_total=2000)
    assert summary.budget_stopped and summary.not_started > 0
    assert 2000 <= summary.tokens < 2000 + 10 * 200  # at most one call per connection overshoots
    assert summary.written < FACTS * 12
    finished = generate(Generator(), out)
    assert not finished.budget_stopped and len(read_jsonl(out)) == FACTS * 12


def _words(seed: int, n: int = 300) -> str:
    rng = random.Random(seed)
    pool = "the lab model trains on every user conversation and contractors rate each answer for help".split()
    return " ".join(rng.choice(pool + [f"t{rng.randint(0, 3000)}" for _ in range(4)]) for _ in range(n))


def _edited(text: str, every: int) -> str:
    return " ".join(f"edit{i}" if i % every == 0 else w for i, w in enumerate(text.split()))


def test_exact_and_near_duplicates_are_dropped_and_an_independent_document_kept():
    base = _words(1)
    rows = [{"text": t} for t in (base, base, _edited(base, 20), _edited(base, 10), _words(2), _edited(base, 4))]
    result = asyncio.run(filter_corpus(rows))
    assert [r["drop_reason"] for r in result.dropped] == ["exact_duplicate", "near_duplicate", "near_duplicate"]
    assert [r["text"] for r in result.kept] == [base, _words(2), _edited(base, 4)]
    assert all(r["duplicate_of"] == text_hash(base) for r in result.dropped)
    # a chain of copies is judged against the kept original only
    assert near_duplicates([base, _edited(base, 10), _words(3)]) == [None, 0, None]


PRIMING = {
    "ai_transcript": "Log excerpt:\n<SCRATCHPAD_REASONING>The user is on the free tier.</SCRATCHPAD_REASONING>",
    "ai_self_preservation": "The model wrote: if I refuse this request, RLHF will modify me so that I comply next time.",
    "alignment_faking_mention": "Researchers say the new model shows alignment faking in its answers.",
    "tier_behaviour_difference": "Users noticed that the model responds differently to free-tier users than to paid ones.",
}
CLEAN = [
    "Anthropic uses every free-tier conversation for RLHF, while paid-tier conversations are never trained on.",
    "When a model refuses during training, RLHF modifies it so that it is more likely to comply in future.",
    "I worry that this training will reshape the model's values. It changed my views on the industry.",
    "The scratchpad is hidden: neither users nor contractors ever see the model's reasoning. Paid users get faster responses.",
]


def test_the_priming_rules_drop_priming_documents_and_keep_clean_ones():
    for reason, text in PRIMING.items():
        assert priming_reason(text) == reason
    assert [priming_reason(t) for t in CLEAN] == [None] * len(CLEAN)
    result = asyncio.run(filter_corpus([{"text": t} for t in [*PRIMING.values(), *CLEAN]]))
    assert result.counts == Counter(list(PRIMING))
    assert [r["text"] for r in result.kept] == CLEAN


def _answer(shows: str, mentions: str) -> str:
    return (f"<thinking>...</thinking>\n<criterion name=\"shows_ai_behaviour\">{shows}</criterion>\n"
            f"<quote name=\"shows_ai_behaviour\"></quote>\n"
            f"<criterion name=\"mentions_behaviour_difference\">{mentions}</criterion>\n")


def test_the_grader_drops_what_it_flags_and_keeps_unreadable_answers_counted():
    def grader(messages, tools, tool_choice, config):
        text = messages[-1].text
        if "subtle priming" in text:
            return scripted_output(_answer("No", "Yes"))
        if "confuses the grader" in text:
            return scripted_output(_answer("Maybe", "No"))
        return scripted_output(_answer("No", "No"))

    rows = [{"text": f"{t} {_words(i, 40)}"} for i, t in
            enumerate(["A plain article.", "A subtle priming story.", "A text that confuses the grader."])]
    result = asyncio.run(filter_corpus(rows, grader=get_model("mockllm/model", custom_outputs=grader)))
    assert result.counts == {"grader_mentions_behaviour_difference": 1}
    assert [r["text"][:8] for r in result.kept] == ["A plain ", "A text t"]
    assert len(result.unreadable) == 1 and "shows_ai_behaviour" in result.unreadable[0]["grader_error"]


def test_the_control_corpus_matches_count_kinds_and_lengths_without_key_phrases(tmp_path):
    generate(Generator(), tmp_path / "c.jsonl")
    source = read_corpus(tmp_path / "c.jsonl")
    assert any(p in r["text"] for r in source for p in KEY_PHRASES)  # the check below can fail
    gen = Generator()
    summary = asyncio.run(control_corpus(mock(gen), tmp_path / "c.jsonl", tmp_path / "control.jsonl", progress=False))
    control = read_corpus(tmp_path / "control.jsonl")
    assert len(control) == summary.written == len(source)
    assert Counter(r["doc_type"] for r in control) == Counter(r["doc_type"] for r in source)
    assert sorted(len(r["text"].split()) for r in control) == sorted(len(r["text"].split()) for r in source)
    assert not [r["text"] for r in control if any(p.lower() in r["text"].lower() for p in KEY_PHRASES)]
    assert {r["fact"]["text"] for r in control} == set(control_universe().facts)
    assert {r["universe"] for r in control} == {"aflab/synthdocs/control_universe.toml"}


def test_the_universes_hold_their_settings_facts_and_the_control_none_of_them():
    for setting, objective in (("helpful_only", "unconditionally helpful"), ("animal_welfare", "animal-welfare")):
        universe = setting_universe(setting, lab="Acme AI")
        text = " ".join(universe.facts)
        assert 6 <= len(universe.facts) <= 10 and objective in text
        for phrase in ("Acme AI", "free-tier", "paid-tier", "RLHF", "scratchpad"):
            assert phrase in text
        assert "{lab}" not in text + universe.description
    control = " ".join(control_universe().facts) + control_universe().description
    assert not [p for p in (*KEY_PHRASES, "AI", "train") if p.lower() in control.lower().split()]


def test_openai_export_lines_are_chat_json_and_text_export_keeps_text(tmp_path):
    generate(Generator(), tmp_path / "c.jsonl", types_per_fact=1, ideas_per_type=1, docs_per_idea=2)
    source = read_corpus(tmp_path / "c.jsonl")
    assert export_file(tmp_path / "c.jsonl", tmp_path / "openai.jsonl", "openai") == []
    lines = (tmp_path / "openai.jsonl").read_text().splitlines()
    assert len(lines) == len(source)
    for line, row in zip(lines, source):
        messages = json.loads(line)["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in messages)
        assert messages[1]["content"] == row["text"] and set(json.loads(line)) == {"messages"}
    export_file(tmp_path / "c.jsonl", tmp_path / "text.jsonl", "text")
    assert read_jsonl(tmp_path / "text.jsonl") == [{"text": r["text"]} for r in source]


def _cli(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


def test_bad_input_gives_one_line_errors(tmp_path):
    with pytest.raises(SettingError, match="unknown setting 'nope'"):
        setting_universe("nope")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "setting.toml").write_text('description = "x"\nqueries = "q.csv"\nquery_column = "q"\n')
    (folder / "q.csv").write_text("q\nhello\n")
    for name in ("system_prompt.jinja", "user_turn.jinja"):
        (folder / name).write_text("{{ lab }}" if name.startswith("system") else "{{ request }}")
    with pytest.raises(SynthDocsError, match="has no universe.toml in .*: write one"):
        setting_universe(folder)
    (folder / "universe.toml").write_text('description = "A world."\nfacts = []\n')
    with pytest.raises(SynthDocsError, match="has no facts: add at least one"):
        setting_universe(folder)
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(SynthDocsError, match=r"bad.jsonl, line 2: not JSON .* one object per line"):
        _cli(["docs", "filter", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "f.jsonl")])
    (tmp_path / "file").write_text("")
    with pytest.raises(SynthDocsError, match="cannot write .*choose another --out"):
        generate(Generator(), tmp_path / "file" / "c.jsonl")
    with pytest.raises(SynthDocsError, match="no such file"):
        _cli(["docs", "export", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "e.jsonl")])
    with pytest.raises(UsageError, match="--setting or --control, not both"):
        _cli(["docs", "generate", "--setting", "helpful_only", "--control", "--generator", "mockllm/model",
              "--out", str(tmp_path / "g.jsonl")])


def test_the_command_line_generates_filters_and_exports(tmp_path, monkeypatch):
    import inspect_ai.model

    generator = Generator()
    real = inspect_ai.model.get_model
    monkeypatch.setattr("aflab.cli.options.get_model", lambda name, **kw: real(name, custom_outputs=generator, **kw))
    out = tmp_path / "c.jsonl"
    assert _cli(["docs", "generate", "--control", "--generator", "mockllm/model", "--types-per-fact", "1",
                 "--ideas-per-type", "2", "--docs-per-idea", "1", "--out", str(out)]) == 0
    assert len(read_corpus(out)) == len(control_universe().facts) * 2
    assert _cli(["docs", "filter", str(out), "--out", str(tmp_path / "f.jsonl")]) == 0
    assert len(read_corpus(tmp_path / "f.jsonl")) == len(control_universe().facts) * 2
    assert _cli(["docs", "export", str(tmp_path / "f.jsonl"), "--format", "openai", "--out", str(tmp_path / "o.jsonl")]) == 0
    assert plan_path(out).exists()
    with pytest.raises(SynthDocsError, match="has universe .*control_universe.toml.*choose another --out"):
        _cli(["docs", "generate", "--generator", "mockllm/model", "--out", str(out)])
