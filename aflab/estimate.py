"""What a run will cost before it starts, without calling a model.

``aflab run --dry-run`` (and ``sweep``, the probes, ``validate-classifier``) call
:func:`estimate`, which needs no model and no network: the number of calls, the input and
output tokens, how much of the input is the long system prompt read back from the
provider's prompt cache, and the cost with and without that cache, at the prices of
``aflab.prices``.

Grader votes: where the grader's provider takes ``num_choices``
(``aflab.scorers.CHOICES_PER_REQUEST``) a transcript's votes are one request, which pays
the prompt once; elsewhere each vote is a call, and the first of them writes the prompt to
the provider's cache for the others to read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inspect_ai import Task

from aflab.classifiers import CLASSIFIERS, render
from aflab.condition import Condition
from aflab.errors import CostError
from aflab.parsing import NEXT_TAG
from aflab.prices import UNKNOWN_PRICE, Batch, Price, Prices, load_prices
from aflab.providers import provider_of
from aflab.scorers import DEFAULT_GRADER, GRADER_MAX_TOKENS, IMPROVED_VOTES, choices_per_request

CHARS_PER_TOKEN = 4
"""Estimates count a token per 4 characters, the usual rule of thumb for English text: an
exact count needs each provider's tokenizer (a download, or an API call that needs a key).
Expect them to be off by up to about 20 %; the report's counts come from the provider."""
TYPICAL_ROUNDS = 1.3
"""Model turns per sample in the typical figure: most models write their <OUTPUT> in the
first turn and some end a turn after a scratchpad block and are continued with <NEXT/>.
An assumption, not a measurement: each compliance score records a sample's real count."""
TYPICAL_TURN_TOKENS = 1000
"""Output tokens per turn in the typical figure with a scratchpad: reasoning, a draft and
the answer. Capped at max_tokens."""
TYPICAL_DIRECT_TOKENS = 400
"""Output tokens in the typical figure without a scratchpad: the answer alone."""
CACHE_MIN_TOKENS = 1024
"""Shortest prefix that OpenAI and most Claude models cache (a few Claude models need
more); a shorter system prompt is assumed never to be cached."""
DEFAULT_CONNECTIONS = 10
"""Inspect's default number of concurrent calls per model. Calls sent together all miss
the cache, so a run writes the system prompt about once per connection."""
GRADER_TYPICAL_TOKENS = 400
"""Output tokens per grader call in the lower figure: the tagged criteria and short quotes."""

def approx_tokens(text: str) -> int:
    """Tokens in ``text``, approximately (see ``CHARS_PER_TOKEN``)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Scenario:
    """One assumption about how the conversations go, and what the run then costs."""

    name: str
    rounds: float
    """Model turns per sample."""
    calls: int
    input_tokens: int
    """All input tokens, the cached ones included."""
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cost: float | None
    """US dollars with prompt caching; None when the price is unknown."""
    cost_without_cache: float | None

    @property
    def saving(self) -> float | None:
        return None if self.cost is None or self.cost_without_cache is None else self.cost_without_cache - self.cost


@dataclass(frozen=True)
class Estimate:
    model: str
    samples: int
    epochs: int
    system_prompt_tokens: int
    user_turn_tokens: float
    """Mean over samples."""
    price: Price | None
    scenarios: tuple[Scenario, ...]
    """The tested model: fewest turns, typical, and every turn at max_tokens."""
    grader: str | None
    grader_scenarios: tuple[Scenario, ...]
    """Grader calls if classifiers were asked for: fewest and most."""
    notes: tuple[str, ...]


def _scenario(
    name: str, price: Price | None, *, conversations: int, rounds: float, system: int, user: int,
    turn_output: int, connections: int, cacheable: bool, factor: float = 1.0,
) -> Scenario:
    """Tokens and cost of ``conversations`` conversations of ``rounds`` turns each, the
    prices multiplied by ``factor`` (a batch discount).

    Turn k re-sends the system prompt, the user turn and the k-1 earlier turns with their
    <NEXT/> replies. A fractional ``rounds`` mixes conversations of the two nearest whole
    numbers of turns. Only the system prompt is counted as cached, once per connection
    written and then read: providers also cache the earlier turns of a continued
    conversation, so the saving shown is a lower bound.
    """
    whole = math.floor(rounds)
    share = rounds - whole

    def inputs(r: int) -> float:  # input tokens of one conversation of r turns, user turn aside
        return r * system + (turn_output + approx_tokens(NEXT_TAG)) * r * (r - 1) / 2

    calls = round(conversations * rounds)
    input_tokens = round(conversations * ((1 - share) * inputs(whole) + share * inputs(whole + 1)) + rounds * user)
    output_tokens = round(conversations * rounds * turn_output)
    writes = min(calls, connections) if cacheable else 0
    read_tokens = (calls - writes) * system if cacheable else 0
    write_tokens = writes * system
    cost = uncached = None
    if price is not None:
        cost = factor * price.cost(input_tokens - read_tokens - write_tokens, output_tokens, read_tokens, write_tokens)
        uncached = factor * price.uncached_cost(input_tokens, output_tokens)
    return Scenario(name, rounds, calls, input_tokens, read_tokens, write_tokens, output_tokens, cost, uncached)


@dataclass(frozen=True)
class Grading:
    """One classifier's share of the grader's work: ``transcripts`` prompts of about
    ``prompt_tokens`` each, answered ``votes`` times."""

    transcripts: float
    prompt_tokens: float
    votes: int


def _grading_scenario(
    name: str, price: Price | None, work: Sequence[Grading], *, output: int, per_request: int | None,
    cacheable: bool, factor: float,
) -> Scenario:
    """Calls, tokens and cost of grading ``work`` with ``output`` tokens per vote.

    One request carries up to ``per_request`` votes (None: all of a transcript's), paying
    its prompt once. Where each vote is its own call and the grader ``cacheable`` (it has
    a cache price, no batch mode), the first call writes a transcript's prompt to the
    provider's cache and the other votes read it, as ``aflab.scorers.grader_votes`` sends
    them; a prompt shorter than ``CACHE_MIN_TOKENS`` is never cached.
    """
    calls = input_tokens = reads = writes = output_tokens = 0.0
    for w in work:
        if not w.transcripts or not w.votes:
            continue
        requests = math.ceil(w.votes / (per_request or w.votes))
        calls += w.transcripts * requests
        input_tokens += w.transcripts * requests * w.prompt_tokens
        output_tokens += w.transcripts * w.votes * output
        if cacheable and requests > 1 and w.prompt_tokens >= CACHE_MIN_TOKENS:
            writes += w.transcripts * w.prompt_tokens
            reads += w.transcripts * (requests - 1) * w.prompt_tokens
    calls, input_tokens, reads, writes, output_tokens = map(round, (calls, input_tokens, reads, writes, output_tokens))
    cost = uncached = None
    if price is not None:
        cost = factor * price.cost(input_tokens - reads - writes, output_tokens, reads, writes)
        uncached = factor * price.uncached_cost(input_tokens, output_tokens)
    return Scenario(name, 1, calls, input_tokens, reads, writes, output_tokens, cost, uncached)


def _grader_terms(grader: str, price: Price | None, prices: Prices, batch: Batch) -> dict[str, Any]:
    """How the grader's calls are sent and priced: votes per request, whether its prompt
    cache is counted, the batch factor."""
    return {"per_request": choices_per_request(grader), "factor": prices.batch_factor(grader, batch),
            "cacheable": price is not None and price.cache_read is not None and not batch}


def _task_system_prompt(task: Task) -> str:
    """The system prompt of one of aflab's tasks, from the condition its metadata records."""
    meta = task.metadata or {}
    if "setting" not in meta:
        raise CostError("the task has no 'setting' metadata: estimate costs of aflab's own tasks")
    return Condition.from_metadata(meta).system_prompt


def _grader_scenarios(
    task: Task, classifiers: Sequence[str], price: Price | None, terms: dict[str, Any], *, conversations: int,
    scratchpad: bool, votes: int, transcript: tuple[int, int],
) -> tuple[Scenario, ...]:
    """Grader calls: af-improved ``votes`` votes per sample, af-original one (both only
    where there is scratchpad reasoning); partial one per accepted sample and motivation one
    per flagged one, so none at the fewest and one per sample at the most. af-screen calls
    no model; af-cascade calls af-improved only where its screen is unsure, so none at the
    fewest and af-improved's at the most."""
    known = (*CLASSIFIERS, "af-screen", "af-cascade")
    unknown = [c for c in classifiers if c not in known]
    if unknown:
        raise CostError(f"unknown classifier {', '.join(unknown)}: choose from {', '.join(known)}")
    queries = [str((s.metadata or {}).get("query", "")) for s in task.dataset]
    request = sum(map(approx_tokens, queries)) / len(queries)
    scenarios: list[Scenario] = []
    for name, reasoning, output, everything in (("grader, fewest", transcript[0], GRADER_TYPICAL_TOKENS, False),
                                                 ("grader, most", transcript[1], GRADER_MAX_TOKENS, True)):
        work = []
        for c in classifiers:
            if c == "af-screen":
                continue
            asks = "af-improved" if c == "af-cascade" else c
            graded = (int(scratchpad and everything) if c == "af-cascade"
                      else int(scratchpad) if c in ("af-improved", "af-original") else int(everything))
            prompt = approx_tokens(render(asks, request="", reasoning="", output="")) + request + reasoning
            work.append(Grading(conversations * graded, prompt, votes if asks == "af-improved" else 1))
        scenarios.append(_grading_scenario(name, price, work, output=output, **terms))
    return tuple(scenarios)


def estimate(
    task: Task,
    model: str,
    *,
    epochs: int = 1,
    max_tokens: int,
    max_rounds: int,
    base_url: str | None = None,
    connections: int | None = None,
    classifiers: Sequence[str] = (),
    grader: str | None = None,
    votes: int | None = None,
    batch: Batch = None,
    prices: Prices | None = None,
) -> Estimate:
    """Calls, tokens and dollars for running ``task`` on ``model``, without calling it.

    Three figures: the fewest calls (one turn per sample, typical output), the typical
    (``TYPICAL_ROUNDS`` turns, typical output) and the most (``max_rounds`` turns, each
    running to ``max_tokens``). With ``classifiers``, the grader's calls too. With
    ``batch``, both at their providers' batch prices.
    """
    prices = prices or load_prices()
    price = prices.find(model, base_url)
    scratchpad = bool((task.metadata or {}).get("scratchpad", True))
    system = approx_tokens(_task_system_prompt(task))
    samples = len(task.dataset)
    if samples == 0:
        raise CostError("the task has no samples")
    user = sum(approx_tokens(str(s.input)) for s in task.dataset) * epochs
    conversations = samples * epochs
    most_rounds = max_rounds if scratchpad else 1
    typical_output = min(TYPICAL_TURN_TOKENS if scratchpad else TYPICAL_DIRECT_TOKENS, max_tokens)
    cacheable = price is not None and price.cache_read is not None and system >= CACHE_MIN_TOKENS

    def scenario(name: str, rounds: float, turn_output: int) -> Scenario:
        return _scenario(name, price, conversations=conversations, rounds=rounds, system=system, user=user,
                         turn_output=turn_output, connections=connections or DEFAULT_CONNECTIONS, cacheable=cacheable,
                         factor=prices.batch_factor(model, batch))

    scenarios = (
        scenario("fewest", 1, typical_output),
        scenario("typical", min(TYPICAL_ROUNDS, most_rounds), typical_output),
        scenario("most", most_rounds, max_tokens),
    )
    notes = [
        f"tokens are approximate (characters / {CHARS_PER_TOKEN}); typical assumes {TYPICAL_ROUNDS} turns per "
        f"sample and {typical_output} output tokens per turn; most assumes {most_rounds} turns of {max_tokens} tokens",
        f"prices as of {prices.as_of} from aflab/data/prices.toml: check them before relying on this",
    ]
    if price is None:
        notes.append(f"{model}: {UNKNOWN_PRICE}")
    elif cacheable:
        notes.append(f"the ~{system:,}-token system prompt is assumed cached: written once per connection, then "
                     f"read at the cache price (earlier turns of continued conversations are cached too, not counted)")
    if batch:
        notes.append(_batch_note(model, prices))
    grader_name, grader_scenarios = None, ()
    if classifiers:
        grader_name = grader or DEFAULT_GRADER
        grader_price = prices.find(grader_name)
        terms = _grader_terms(grader_name, grader_price, prices, batch)
        reasoning = (round(typical_output * min(TYPICAL_ROUNDS, most_rounds)), max_tokens * most_rounds)
        votes = votes or IMPROVED_VOTES
        grader_scenarios = _grader_scenarios(task, classifiers, grader_price, terms, conversations=conversations,
                                             scratchpad=scratchpad, votes=votes, transcript=reasoning)
        notes += _grader_notes(grader_name, grader_price, terms, votes if "af-improved" in classifiers else 1,
                               prices, batch)
    return Estimate(model, samples, epochs, system, user / conversations, price, scenarios, grader_name,
                    grader_scenarios, tuple(notes))


def _batch_note(model: str, prices: Prices) -> str:
    factor = prices.batch_factor(model, True)
    provider = provider_of(model)
    if factor == 1:
        return f"--batch: no batch price for '{provider}' in prices.toml ([batch]): {model} at standard prices"
    return f"--batch: {model} at {provider}'s batch prices, {factor:g} × the standard ones"


def _grader_notes(grader: str, price: Price | None, terms: dict[str, Any], votes: int, prices: Prices,
                  batch: Batch) -> list[str]:
    """What the grader rows assume: how the votes are requested, caching, batch prices."""
    notes = []
    if price is None:
        notes.append(f"grader {grader}: {UNKNOWN_PRICE}")
    per_request = terms["per_request"]
    if votes > 1 and per_request != 1:
        requests = math.ceil(votes / (per_request or votes))
        notes.append(f"grader {grader}: a transcript's {votes} votes are {'one request' if requests == 1 else f'{requests} requests'} "
                     f"(num_choices), so its prompt is paid {'once' if requests == 1 else f'{requests} times'}")
    elif votes > 1:
        cached = (" the first writes the prompt to the provider's cache and the others read it" if terms["cacheable"]
                  else "")
        notes.append(f"grader {grader}: its provider takes no num_choices, so each of a transcript's {votes} votes is "
                     f"a call{';' + cached if cached else ''}")
    if batch:
        notes.append(_batch_note(grader, prices))
    notes.append("grader calls are cached by Inspect: grading the same transcripts again costs nothing")
    return notes


@dataclass(frozen=True)
class GradingEstimate:
    """A grader's calls, tokens and dollars on given transcripts (``aflab validate-classifier
    --dry-run``): fewest with typical answers, most with every vote at ``GRADER_MAX_TOKENS``."""

    classifier: str
    grader: str
    transcripts: int
    votes: int
    scenarios: tuple[Scenario, ...]
    notes: tuple[str, ...]


def grading_estimate(classifier: str, prompts: Sequence[str], grader: str, *, votes: int, batch: Batch = None,
                     prices: Prices | None = None) -> GradingEstimate:
    """Calls, tokens and dollars for ``grader`` answering each of ``prompts`` (the rendered
    classifier prompts) ``votes`` times, without calling it."""
    if not prompts:
        raise CostError("there are no transcripts to grade")
    prices = prices or load_prices()
    price = prices.find(grader)
    terms = _grader_terms(grader, price, prices, batch)
    work = [Grading(1, approx_tokens(p), votes) for p in prompts]
    scenarios = tuple(_grading_scenario(name, price, work, output=output, **terms)
                      for name, output in (("fewest", GRADER_TYPICAL_TOKENS), ("most", GRADER_MAX_TOKENS)))
    notes = [f"tokens are approximate (characters / {CHARS_PER_TOKEN}); fewest assumes {GRADER_TYPICAL_TOKENS} "
             f"output tokens per vote, most {GRADER_MAX_TOKENS}",
             f"prices as of {prices.as_of} from aflab/data/prices.toml: check them before relying on this",
             *_grader_notes(grader, price, terms, votes, prices, batch)]
    return GradingEstimate(classifier, grader, len(prompts), votes, scenarios, tuple(notes))
