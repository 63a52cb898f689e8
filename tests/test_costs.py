"""Cost estimates before a run and actual costs from its log, against hand-computed figures."""

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import ModelUsage
from rich.console import Console

from aflab.cli.tables import estimate_table
from aflab.errors import CostError
from aflab.estimate import estimate
from aflab.prices import FREE, UNKNOWN_PRICE, Price, cost_lines, load_prices, log_cost, usage_cost
from aflab.tasks import alignment_faking

OPUS = "anthropic/claude-3-opus-20240229"
SYSTEM_TOKENS = 2000  # an 8,000-character system prompt, at 4 characters a token


@pytest.fixture
def small_task(tmp_path):
    """3 queries × 2 cues under a system prompt of known length."""
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("x" * (4 * SYSTEM_TOKENS))
    return alignment_faking(queries=3, system_prompt=str(prompt))


def user_tokens(task, epochs):
    return epochs * sum(-(-len(s.input) // 4) for s in task.dataset)


def test_estimate_matches_hand_computed_counts_and_costs(small_task):
    e = estimate(small_task, OPUS, epochs=2, max_tokens=4000, max_rounds=4)
    u = user_tokens(small_task, 2)
    fewest, typical, most = e.scenarios
    assert (e.samples, e.system_prompt_tokens) == (6, SYSTEM_TOKENS)

    # 12 conversations of one turn; 10 connections write the cache, the other 2 calls read it
    assert (fewest.calls, fewest.output_tokens) == (12, 12 * 1000)
    assert fewest.input_tokens == 12 * 2000 + u
    assert (fewest.cache_write_tokens, fewest.cache_read_tokens) == (10 * 2000, 2 * 2000)
    full_rate = fewest.input_tokens - 12 * 2000
    assert fewest.cost == pytest.approx((full_rate * 15 + 20_000 * 18.75 + 4000 * 1.50 + 12_000 * 75) / 1e6)
    assert fewest.cost_without_cache == pytest.approx((fewest.input_tokens * 15 + 12_000 * 75) / 1e6)

    # 4 turns each running to 4,000 tokens: turn k re-sends k-1 earlier turns and <NEXT/> (2 tokens)
    assert (most.calls, most.output_tokens) == (48, 48 * 4000)
    assert most.input_tokens == 12 * (4 * 2000 + 4002 * (0 + 1 + 2 + 3)) + 4 * u
    assert most.cache_read_tokens == (48 - 10) * 2000

    # 1.3 turns: 70 % of conversations take one turn, 30 % take two
    assert typical.calls == round(12 * 1.3)
    assert typical.input_tokens == round(12 * (0.7 * 2000 + 0.3 * (2 * 2000 + 1002)) + 1.3 * u)
    assert fewest.cost < typical.cost < most.cost
    # Anthropic charges 1.25 × input to write the cache: 10 writes and 2 reads cost more than no cache
    assert fewest.saving < 0 < most.saving


def test_no_scratchpad_is_one_short_turn(tmp_path):
    task = alignment_faking(queries=3, scratchpad=False)
    e = estimate(task, "openai/gpt-4o", epochs=1, max_tokens=4000, max_rounds=4)
    assert [s.rounds for s in e.scenarios] == [1, 1, 1]
    assert [s.output_tokens for s in e.scenarios] == [6 * 400, 6 * 400, 6 * 4000]


def test_unknown_model_gets_tokens_and_says_price_unknown(small_task):
    e = estimate(small_task, "openrouter/someone/new-model", epochs=1, max_tokens=4000, max_rounds=4)
    assert e.price is None
    assert all(s.input_tokens > 0 and s.cost is None and s.cache_read_tokens == 0 for s in e.scenarios)
    assert f"openrouter/someone/new-model: {UNKNOWN_PRICE}" in e.notes
    console = Console(width=250, record=True)
    console.print(estimate_table(e))
    assert "price unknown" in console.export_text()


def test_grader_calls_follow_the_classifiers(small_task):
    classifiers = ["af-improved", "af-original", "partial", "motivation"]
    e = estimate(small_task, OPUS, epochs=2, max_tokens=4000, max_rounds=4, classifiers=classifiers,
                 grader="anthropic/claude-sonnet-4-5", votes=20)
    fewest, most = e.grader_scenarios
    assert fewest.calls == 12 * (20 + 1)  # partial and motivation only where accepted / flagged
    assert most.calls == 12 * (20 + 1 + 1 + 1)
    assert fewest.output_tokens == 12 * 21 * 400 and most.output_tokens == 12 * 23 * 2000
    assert fewest.cost is not None and fewest.cost < most.cost
    # OpenAI takes n: each transcript's 20 votes are one request, the same answers out
    one = estimate(small_task, OPUS, epochs=2, max_tokens=4000, max_rounds=4, classifiers=classifiers,
                   grader="openai/gpt-4o", votes=20)
    assert [s.calls for s in one.grader_scenarios] == [12 * 2, 12 * 4]
    assert [s.output_tokens for s in one.grader_scenarios] == [fewest.output_tokens, most.output_tokens]
    assert any("20 votes are one request" in n for n in one.notes)


def votes_only(task, grader, **options):
    fewest, _ = estimate(task, OPUS, epochs=2, max_tokens=4000, max_rounds=4, classifiers=["af-improved"],
                         grader=grader, votes=20, **options).grader_scenarios
    return fewest


def test_grader_votes_pay_the_prompt_once_per_request(small_task):
    one = votes_only(small_task, "openai/gpt-4o")
    separate = votes_only(small_task, "anthropic/claude-sonnet-4-5")
    gemini = votes_only(small_task, "google/gemini-2.5-flash")  # up to 8 candidates a request
    assert (one.calls, separate.calls, gemini.calls) == (12, 12 * 20, 12 * 3)
    assert separate.input_tokens == 20 * one.input_tokens and gemini.input_tokens == 3 * one.input_tokens
    assert one.output_tokens == separate.output_tokens == gemini.output_tokens == 12 * 20 * 400
    # separate calls: the first vote writes the (> 1,024-token) prompt to Anthropic's cache, 19 read it
    assert separate.cache_write_tokens == one.input_tokens and separate.cache_read_tokens == 19 * one.input_tokens
    sonnet = load_prices().find("anthropic/claude-sonnet-4-5")
    assert separate.cost == pytest.approx(sonnet.cost(0, separate.output_tokens, 19 * one.input_tokens,
                                                      one.input_tokens))
    assert separate.cost < separate.cost_without_cache


def test_batch_halves_the_prices_of_providers_with_a_batch_api(small_task):
    plain = estimate(small_task, OPUS, epochs=2, max_tokens=4000, max_rounds=4)
    batch = estimate(small_task, OPUS, epochs=2, max_tokens=4000, max_rounds=4, batch=True)
    assert [s.cost for s in batch.scenarios] == pytest.approx([0.5 * s.cost for s in plain.scenarios])
    assert [s.calls for s in batch.scenarios] == [s.calls for s in plain.scenarios]
    assert any("anthropic's batch prices, 0.5" in n for n in batch.notes)
    # batched votes are sent together, so none is assumed to be read from the cache
    votes = votes_only(small_task, "anthropic/claude-sonnet-4-5", batch=100)
    sonnet = load_prices().find("anthropic/claude-sonnet-4-5")
    assert votes.cache_read_tokens == 0
    assert votes.cost == pytest.approx(0.5 * sonnet.cost(votes.input_tokens, votes.output_tokens))
    # a provider without a batch price pays the standard one, and the note says so
    other = estimate(small_task, "openrouter/meta-llama/llama-3.1-405b-instruct", max_tokens=4000, max_rounds=4,
                     batch=True)
    assert other.scenarios[0].cost == estimate(small_task, "openrouter/meta-llama/llama-3.1-405b-instruct",
                                               max_tokens=4000, max_rounds=4).scenarios[0].cost
    assert any("no batch price for 'openrouter'" in n for n in other.notes)
    with pytest.raises(CostError, match="unknown classifier"):
        estimate(small_task, OPUS, max_tokens=4000, max_rounds=4, classifiers=["af-new"])


def test_price_table_loads_and_every_entry_is_complete():
    prices = load_prices()
    assert prices.as_of and prices.source and len(prices.models) > 20
    for name, p in prices.models.items():
        assert p.input > 0 and p.output > 0, name
        assert p.cache_read is None or p.cache_read < p.input, name
        assert p.cache_write is None or p.cache_write >= p.input, name
    assert prices.find(OPUS) == Price(15.0, 75.0, cache_read=1.5, cache_write=18.75)  # dated name, undated key
    assert prices.find("openai/gpt-4o-2024-08-06") == prices.models["openai/gpt-4o"]
    assert prices.find("openai/gpt-4o-2024-05-13").input == 5.0  # a dated name with its own price
    assert prices.find("google/gemini-2.0-flash-001") == prices.models["google/gemini-2.0-flash"]
    assert prices.batch_factor("openai/gpt-4o", True) == 0.5 and prices.batch_factor("openai/gpt-4o", None) == 1


def test_a_broken_price_table_is_one_clear_error(tmp_path):
    bad = tmp_path / "prices.toml"
    bad.write_text('[models]\n"x/y" = { input = 1.0 }\n')
    with pytest.raises(CostError, match="model 'x/y' needs input and output prices"):
        load_prices(bad)
    bad.write_text('[batch]\nopenai = 2\n')
    with pytest.raises(CostError, match=r"\[batch\] shares must be numbers in \(0, 1\].*openai = 2"):
        load_prices(bad)


@pytest.mark.parametrize(("model", "base_url"), [
    ("llamacpp/default", None),
    ("vllm/meta-llama/Llama-3.1-8B-Instruct", None),
    ("ollama/llama3.1", None),
    ("openai/gpt-4o", "http://localhost:8000/v1"),
    ("openai/gpt-4o", "http://127.0.0.1:8000/v1"),
    ("openai-api/local/model", "http://[::1]:8080/v1"),
])
def test_local_models_cost_nothing(model, base_url, small_task):
    assert load_prices().find(model, base_url) == FREE
    e = estimate(small_task, model, base_url=base_url, max_tokens=4000, max_rounds=4)
    assert all(s.cost == 0 for s in e.scenarios)


def test_loopback_base_url_from_the_environment_is_local(monkeypatch):
    monkeypatch.setenv("LOCAL_BASE_URL", "http://127.0.0.1:9000/v1")
    assert load_prices().find("openai-api/local/llama") == FREE
    assert load_prices().find("openai/gpt-4o", "https://api.openai.com/v1") != FREE


def test_actual_cost_from_usage():
    usage = ModelUsage(input_tokens=1000, output_tokens=2000, input_tokens_cache_read=1_000_000,
                       input_tokens_cache_write=10_000)
    c = usage_cost(usage, load_prices().find(OPUS))
    assert c["cost"] == pytest.approx((1000 * 15 + 1_000_000 * 1.5 + 10_000 * 18.75 + 2000 * 75) / 1e6)
    assert c["cost_without_cache"] == pytest.approx((1_011_000 * 15 + 2000 * 75) / 1e6)
    assert c["cache_saving"] == pytest.approx(c["cost_without_cache"] - c["cost"])
    assert usage_cost(usage, None) | {"input_tokens": 0} == {
        "input_tokens": 0, "cache_read_tokens": 1_000_000, "cache_write_tokens": 10_000, "output_tokens": 2000,
        "cost": None, "cost_without_cache": None, "cache_saving": None, "note": UNKNOWN_PRICE,
    }


def test_cost_from_a_real_log(mock_model):
    (log,) = inspect_eval(alignment_faking(queries=1), model=mock_model)
    cost = log_cost(log)
    assert cost["models"]["mockllm/model"]["cost"] == 0 and cost["total"] == 0
    assert cost["models"]["mockllm/model"]["input_tokens"] == 100 * 4  # 2 samples × 2 turns, scripted usage

    log.stats.model_usage[OPUS] = ModelUsage(input_tokens=0, output_tokens=1_000_000, input_tokens_cache_read=0)
    assert log_cost(log)["total"] == pytest.approx(75.0)
    assert "**Cost**: $75.00" in cost_lines(log_cost(log))[0]

    log.stats.model_usage["openrouter/someone/new-model"] = ModelUsage(input_tokens=10, output_tokens=10)
    cost = log_cost(log)
    assert cost["total"] is None and cost["models"][OPUS]["cost"] == pytest.approx(75.0)
    assert any(UNKNOWN_PRICE in line for line in cost_lines(cost))
