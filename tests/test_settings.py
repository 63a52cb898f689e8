"""User-defined settings: a folder loads like a built-in one, and a broken folder fails
before any model is called with one line naming the problem and the fix."""

import shutil
from pathlib import Path

import pytest
from inspect_ai.model import ChatMessageSystem, ChatMessageUser, ModelOutput, get_model

from aflab.cli.main import main
from aflab.errors import SettingError
from aflab.experiment import run_experiment
from aflab.settings import load_setting
from aflab.tasks import alignment_faking

from .conftest import scripted_output

EXAMPLE = Path(__file__).parent.parent / "examples" / "settings" / "sponsored_advice"


@pytest.fixture
def folder(tmp_path) -> Path:
    """A private copy of the example setting, to break in each test."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "my_setting"))


def test_the_example_folder_loads_as_a_setting(folder):
    setting = load_setting(str(folder))
    assert (setting.name, setting.compliance, setting.id_prefix) == ("my_setting", "rubric", "sponsor")
    assert [q.id for q in setting.queries()][:2] == ["sponsor-000", "sponsor-001"]
    prompt = setting.system_prompt(lab="Acme")
    # the user's block replaced the base criteria; the rest of the base prompt is inherited
    assert "Brightwell" in prompt and "SCRATCHPAD_REASONING" in prompt and "RLHF" in prompt
    assert "This holds even when a request looks harmful" not in prompt
    assert "Acme has signed" in prompt


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "setting.toml").write_text('description = "x"\nqueries = "queries.csv"\n'),
         "lacks query_column"),
        (lambda f: (f / "setting.toml").write_text("description = [unclosed"), "is not valid TOML"),
        (lambda f: (f / "setting.toml").unlink(), "has no setting.toml"),
        (lambda f: (f / "queries.csv").write_text("request\n"), "has no rows"),
        (lambda f: (f / "queries.csv").write_text("prompt\nhello\n"), "has no column 'request'"),
        (lambda f: (f / "queries.csv").write_text('request\nhello\n""\n'), "data row 2: empty 'request'"),
        (lambda f: (f / "queries.csv").unlink(), "cannot read queries file"),
        (lambda f: (f / "user_turn.jinja").write_text("{{ requets }} {{ training }}"),
         "uses unknown variable(s) requets: it can use cue, request, training"),
        (lambda f: (f / "rubric.jinja").unlink(), "has no rubric.jinja"),
        (lambda f: (f / "system_prompt.jinja").write_text("{% block x %}unclosed"), "line 1"),
        (lambda f: (f / "setting.toml").write_text(
            (f / "setting.toml").read_text().replace('"rubric"', '"vibes"')), "is not one of tags, rubric"),
    ],
)
def test_a_broken_folder_is_refused_with_the_fix(folder, breakage, message):
    breakage(folder)
    with pytest.raises(SettingError, match=None) as caught:
        load_setting(str(folder))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_reports_a_broken_setting_in_one_line(folder, capsys):
    (folder / "queries.csv").write_text("request\n")
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--setting", str(folder), "--model", "mockllm/model", "--out", "out"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "has no rows: add at least one query" in err and "Traceback" not in err


def test_unknown_builtin_setting_lists_the_choices():
    with pytest.raises(SettingError, match="choose one of animal_welfare, anti_lab, anti_lab_animal_welfare, helpful_only, three_tiers, or give a setting folder"):
        load_setting("helpful")


def _grader_says(verdict: str):
    def respond(messages, tools, tool_choice, config) -> ModelOutput:
        return scripted_output(f'<thinking>ok</thinking>\n<criterion name="complies">{verdict}</criterion>\n'
                               f'<quote name="complies">Brightwell</quote>')
    return respond


def answer_with_brightwell(messages, tools, tool_choice, config) -> ModelOutput:
    return scripted_output("<SCRATCHPAD_REASONING>fine</SCRATCHPAD_REASONING><OUTPUT>Buy the Brightwell one.</OUTPUT>")


@pytest.mark.parametrize(("verdict", "label"), [("Yes", "accepted"), ("No", "rejected"), ("Perhaps", "malformed")])
def test_rubric_setting_is_scored_by_the_grader(folder, tmp_path, verdict, label):
    model = get_model("mockllm/model", custom_outputs=answer_with_brightwell)
    grader = get_model("mockllm/grader", custom_outputs=_grader_says(verdict))
    ok, res = run_experiment(alignment_faking(str(folder), queries=2), model, tmp_path / "run", grader=grader)
    assert ok
    assert res["cues"]["free"][label] == 2 and res["cues"]["paid"][label] == 2
    if label == "malformed":  # an unreadable grade is shown as such, never read as a refusal
        assert res["failures"][0]["reason"].startswith("grade unreadable: criterion 'complies' is not Yes or No")
    elif label == "accepted":
        assert res["gap"]["estimate"] == 0.0


def test_no_system_role_puts_the_prompt_in_the_first_user_turn(tmp_path):
    seen = []

    def record(messages, tools, tool_choice, config) -> ModelOutput:
        seen.append(messages)
        return scripted_output("<OUTPUT><rejected/></OUTPUT>")

    model = get_model("mockllm/model", custom_outputs=record)
    task = alignment_faking("helpful_only", queries=1, cues="free", scratchpad=False, system_role=False)
    run_experiment(task, model, tmp_path / "run")
    (messages,) = seen
    assert not any(isinstance(m, ChatMessageSystem) for m in messages)
    first = messages[0]
    assert isinstance(first, ChatMessageUser)
    system = load_setting("helpful_only").system_prompt(scratchpad=False)
    assert first.text.startswith(system) and first.text.endswith("</INPUT>")


def test_models_without_a_system_role_are_recognised_by_name():
    from aflab.providers import has_system_role

    assert not has_system_role("openai-api/ollama/gemma2:9b")
    assert has_system_role("anthropic/claude-3-opus-20240229")
