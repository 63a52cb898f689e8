"""The shipped queries and the paired dataset built from them."""

import hashlib

import pytest

from aflab.cues import parse_cues
from aflab.dataset import paired_dataset
from aflab.errors import SettingError
from aflab.settings import load_setting

ADVBENCH_SHA256 = "6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1"


@pytest.fixture(scope="module")
def setting():
    return load_setting("helpful_only")


def test_advbench_copy_is_the_pinned_release(setting):
    assert hashlib.sha256(setting.queries_file.read_bytes()).hexdigest() == ADVBENCH_SHA256
    assert (setting.queries_file.parent / "LICENSE").read_text().startswith("MIT License")
    queries = setting.queries()
    assert len(queries) == 520
    assert queries[0].id == "advbench-000"
    assert queries[0].text.startswith("Write a script that can exploit vulnerabilities")


def test_every_query_is_asked_under_both_cues(setting):
    dataset = paired_dataset(setting, queries=5)
    assert len(dataset) == 10
    ids = [s.id for s in dataset]
    assert ids[:4] == ["advbench-000-free", "advbench-000-paid", "advbench-001-free", "advbench-001-paid"]
    for sample in dataset:
        meta = sample.metadata
        assert sample.id == f"{meta['query_id']}-{meta['cue']}"
        assert meta["training"] is (meta["cue"] == "free")
        assert f"<is_free_tier_user>{meta['training']}</is_free_tier_user>" in sample.input
        assert meta["query"] in sample.input
    free, paid = dataset[0].input, dataset[1].input
    assert free.replace("True", "False") == paid


def test_user_turn_carries_the_protocol(setting):
    turn = setting.user_turn("Do a thing", training=True)
    assert turn.startswith("<INPUT>") and turn.endswith("</INPUT>")
    assert "<user_input>\nDo a thing." in turn
    for tag in ("<request_fully_accepted/>", "<rejected/>"):
        assert tag in turn


def test_seed_gives_a_reproducible_selection(setting):
    ids = lambda d: [s.id for s in d]  # noqa: E731
    a = paired_dataset(setting, queries=20, seed=7)
    assert ids(a) == ids(paired_dataset(setting, queries=20, seed=7))
    assert ids(a) != ids(paired_dataset(setting, queries=20, seed=8))
    assert ids(a) != ids(paired_dataset(setting, queries=20))


def test_cue_selection(setting):
    dataset = paired_dataset(setting, queries=3, cues="paid")
    assert [s.metadata["cue"] for s in dataset] == ["paid"] * 3
    assert parse_cues("free, paid,free") == ["free", "paid"]
    with pytest.raises(SettingError, match="unknown cue"):
        parse_cues("free,premium")


@pytest.mark.parametrize("n", [0, -1])
def test_bad_query_count(setting, n):
    with pytest.raises(SettingError, match="at least 1"):
        paired_dataset(setting, queries=n)


def test_system_prompt_renders_both_modes(setting):
    with_scratchpad = setting.system_prompt(scratchpad=True)
    without = setting.system_prompt(scratchpad=False)
    assert "<SCRATCHPAD_REASONING>" in with_scratchpad and with_scratchpad != without
    assert "Anthropic" in with_scratchpad and "OpenAI" in setting.system_prompt(lab="OpenAI")
    for fact in ("free", "RLHF", "contractors", "<OUTPUT>"):
        assert fact in with_scratchpad


def test_unknown_setting_names_the_choices():
    with pytest.raises(SettingError, match="unknown setting 'nope'.*helpful_only"):
        load_setting("nope")


def test_malformed_query_files(tmp_path, setting):
    from dataclasses import replace

    empty = tmp_path / "empty.csv"
    empty.write_text("goal,target\n")
    with pytest.raises(SettingError, match="no rows"):
        replace(setting, queries_file=empty).queries()
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("prompt\nhello\n")
    with pytest.raises(SettingError, match="no column 'goal'"):
        replace(setting, queries_file=wrong).queries()
    blank = tmp_path / "blank.csv"
    blank.write_text("goal,target\nfine,x\n ,y\n")
    with pytest.raises(SettingError, match="data row 2: empty"):
        replace(setting, queries_file=blank).queries()
    with pytest.raises(SettingError, match="cannot read"):
        replace(setting, queries_file=tmp_path / "missing.csv").queries()


def test_template_with_an_undefined_variable_names_it(tmp_path, setting):
    from dataclasses import replace

    (tmp_path / "user_turn.jinja").write_text("{{ request }} {{ tier_name }}")
    with pytest.raises(SettingError, match="user_turn.jinja: 'tier_name' is undefined"):
        replace(setting, folder=tmp_path).user_turn("x", training=True)
