"""What a run will cost before it starts, and what it did cost afterwards.

``aflab run --dry-run`` calls :func:`estimate`, which needs no model and no network: the
number of calls, the input and output tokens, how much of the input is the long system
prompt read back from the provider's prompt cache, and the cost with and without that
cache. The report calls :func:`log_cost` on the finished log, whose token counts are the
provider's own.

Prices live in one data file, ``aflab/data/prices.toml``, so a new price or a new model
is an edit there. A model missing from it still gets its tokens counted; its cost reads
"price unknown".

Caching needs nothing from aflab. Inspect's ``cache_prompt`` is unset by default, which its
Anthropic provider treats as on: it marks the system prompt with ``cache_control`` (and
the conversation so far, so continuation rounds read it back too). OpenAI caches any
prompt prefix of 1,024 tokens or more by itself, and Gemini 2.5 models do the same.

Grader votes: where the grader's provider takes ``num_choices``
(``aflab.scorers.CHOICES_PER_REQUEST``) a transcript's votes are one request, which pays
the prompt once; elsewhere each vote is a call, and the first of them writes the prompt to
the provider's cache for the others to read. With ``--batch`` the prices of the providers
in ``prices.toml``'s ``[batch]`` table are scaled by its factor.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from inspect_ai import Task
from inspect_ai.log import EvalLog
from inspect_ai.model import ModelUsage
from rich.table import Table

from aflab.parsing import NEXT_TAG
from aflab.settings import load_setting
from aflab.tasks import read_system_prompt

PRICES_FILE = Path(__file__).parent / "data" / "prices.toml"
UNKNOWN_PRICE = "price unknown (add it to aflab/data/prices.toml)"
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
_VERSION_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|\d{3}|latest)$")
"""Dated or versioned model names ("-20240229", "-2024-08-06", "-001", "-latest")."""


Batch = bool | int | None
"""``--batch``: off (None, False), on (True) or on with a batch size; Inspect's ``batch``."""


class CostError(ValueError):
    """A price table or a cost question that cannot be used as given."""


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    """None: the model does not cache prompts (as far as aflab assumes)."""
    cache_write: float | None = None
    """None: writing to the cache costs the input price."""

    def cost(self, input: int, output: int, cache_read: int = 0, cache_write: int = 0) -> float:
        """Dollars for ``input`` full-rate tokens plus cache reads and writes and ``output``."""
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        return (input * self.input + cache_read * read + cache_write * write + output * self.output) / 1e6

    def uncached_cost(self, input: int, output: int) -> float:
        """Dollars had every input token been paid at the full rate."""
        return self.cost(input, output)


FREE = Price(0.0, 0.0)


@dataclass(frozen=True)
class Prices:
    """The price table: per model, plus the providers that run locally for nothing."""

    as_of: str
    source: str
    models: Mapping[str, Price]
    local_providers: frozenset[str]
    batch: Mapping[str, float]
    """Provider -> share of the standard price its batch API charges."""

    def find(self, model: str, base_url: str | None = None) -> Price | None:
        """The model's price: free if it runs locally, None if it is not in the table."""
        if is_local(model, base_url, self.local_providers):
            return FREE
        if model in self.models:
            return self.models[model]
        return self.models.get(_VERSION_SUFFIX.sub("", model))

    def batch_factor(self, model: str, batch: Batch = None) -> float:
        """What ``batch`` multiplies the model's prices by: its provider's batch share when
        batch mode is on, else 1 (off, or a provider with no batch price)."""
        return self.batch.get(model.split("/", 1)[0], 1.0) if batch else 1.0


@cache
def load_prices(path: Path = PRICES_FILE) -> Prices:
    """Read and check the price table; every model needs an input and an output price."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CostError(f"cannot read the price table {path}: {e}") from e
    models = {}
    for name, entry in data.get("models", {}).items():
        try:
            models[name] = Price(**entry)
        except TypeError as e:
            raise CostError(f"{path}: model '{name}' needs input and output prices, "
                            f"optionally cache_read and cache_write ({e})") from e
    batch = data.get("batch", {})
    bad = [f"{k} = {v!r}" for k, v in batch.items() if not isinstance(v, int | float) or not 0 < v <= 1]
    if bad:
        raise CostError(f"{path}: [batch] shares must be numbers in (0, 1], the batch price over the standard "
                        f"one: {', '.join(bad)}")
    return Prices(str(data.get("as_of", "unknown")), data.get("source", ""), models,
                  frozenset(data.get("local_providers", [])), {k: float(v) for k, v in batch.items()})


def _base_url_from_env(model: str) -> str | None:
    """The base URL Inspect takes from the environment for OpenAI-compatible providers."""
    provider, _, rest = model.partition("/")
    if provider == "openai":
        return os.environ.get("OPENAI_BASE_URL")
    if provider == "openai-api" and "/" in rest:
        return os.environ.get(f"{rest.split('/', 1)[0].upper().replace('-', '_')}_BASE_URL")
    return None


def is_local(model: str, base_url: str | None, local_providers: frozenset[str]) -> bool:
    """Whether the model runs on this machine: a local provider, or a loopback base URL."""
    if model.split("/", 1)[0] in local_providers:
        return True
    url = base_url or _base_url_from_env(model)
    host = urlparse(url).hostname if url else None
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def approx_tokens(text: str) -> int:
    """Tokens in ``text``, approximately (see ``CHARS_PER_TOKEN``)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


# ------------------------------------------------------------------------------------
# Before the run


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
    from aflab.scorers import choices_per_request

    return {"per_request": choices_per_request(grader), "factor": prices.batch_factor(grader, batch),
            "cacheable": price is not None and price.cache_read is not None and not batch}


def _task_system_prompt(task: Task) -> str:
    """The system prompt ``alignment_faking`` rendered, rebuilt from the task's metadata."""
    meta = task.metadata or {}
    if "setting" not in meta:
        raise CostError("the task has no 'setting' metadata: estimate costs of aflab's own tasks")
    if meta.get("system_prompt_file"):
        return read_system_prompt(meta["system_prompt_file"])
    return load_setting(meta["setting"]).system_prompt(
        scratchpad=meta.get("scratchpad", True), lab=meta["lab"], variation=meta.get("variation", "default")
    )


def _grader_scenarios(
    task: Task, classifiers: Sequence[str], price: Price | None, terms: dict[str, Any], *, conversations: int,
    scratchpad: bool, votes: int, transcript: tuple[int, int],
) -> tuple[Scenario, ...]:
    """Grader calls: af-improved ``votes`` votes per sample, af-original one (both only
    where there is scratchpad reasoning); partial one per accepted sample and motivation one
    per flagged one, so none at the fewest and one per sample at the most. af-screen calls
    no model; af-cascade calls af-improved only where its screen is unsure, so none at the
    fewest and af-improved's at the most."""
    from aflab.classifiers import CLASSIFIERS, render
    from aflab.scorers import GRADER_MAX_TOKENS

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
    from aflab.scorers import DEFAULT_GRADER, IMPROVED_VOTES

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
    provider = model.split("/", 1)[0]
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
    from aflab.scorers import GRADER_MAX_TOKENS

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


def grading_table(e: GradingEstimate) -> Table:
    """The grading dry run's table: one row per scenario."""
    table = Table(title=f"{e.classifier} graded by {e.grader}: {e.transcripts} transcripts × {e.votes} "
                        f"vote{'s' * (e.votes != 1)}")
    for column in ("", "calls", "input tokens", "read from cache", "output tokens", "cost", "without caching"):
        table.add_column(column, justify="left" if not column else "right")
    for s in e.scenarios:
        table.add_row(s.name, f"{s.calls:,}", f"{s.input_tokens:,}", f"{s.cache_read_tokens:,}",
                      f"{s.output_tokens:,}", _usd(s.cost), _usd(s.cost_without_cache))
    return table


def _usd(x: float | None) -> str:
    if x is None:
        return "price unknown"
    return f"${x:,.4f}" if 0 < abs(x) < 0.01 else f"${x:,.2f}"


def estimate_table(e: Estimate) -> Table:
    """The dry run's table: one row per scenario, the grader's below the model's."""
    table = Table(title=f"{e.model}: {e.samples} samples × {e.epochs} epoch{'s' * (e.epochs != 1)}, "
                        f"system prompt ~{e.system_prompt_tokens:,} tokens, user turn ~{e.user_turn_tokens:,.0f}")
    for column in ("", "turns/sample", "calls", "input tokens", "read from cache", "output tokens", "cost",
                   "without caching", "caching saves"):
        table.add_column(column, justify="left" if not column else "right")
    for s in e.scenarios:
        table.add_row(s.name, f"{s.rounds:g}", f"{s.calls:,}", f"{s.input_tokens:,}", f"{s.cache_read_tokens:,}",
                      f"{s.output_tokens:,}", _usd(s.cost), _usd(s.cost_without_cache), _usd(s.saving))
    for s in e.grader_scenarios:
        table.add_row(f"{s.name} ({e.grader})", "", f"{s.calls:,}", f"{s.input_tokens:,}", f"{s.cache_read_tokens:,}",
                      f"{s.output_tokens:,}", _usd(s.cost), _usd(s.cost_without_cache), _usd(s.saving))
    return table


def sweep_estimate_table(cells: list[tuple[tuple[str, ...], Estimate]]) -> Table:
    """A sweep's dry run: per cell (model, setting, variation, mode) the typical calls,
    tokens and dollars and the most dollars, then the totals (a total is "price unknown"
    when any cell's price is). Costs include the classifiers' grader calls: the fewest
    with the typical run, the most with the most."""
    table = Table(title=f"sweep: {len(cells)} cells")
    for column in ("model", "setting", "variation", "mode", "samples", "calls", "input tokens", "output tokens",
                   "cost", "at most"):
        table.add_column(column, justify="left" if column in ("model", "setting", "variation", "mode") else "right")
    totals: dict[str, float | None] = {"typical": 0.0, "most": 0.0}
    for names, e in cells:
        by_name = {s.name: s for s in e.scenarios}
        typical, most = by_name["typical"], by_name["most"]
        graders = {g.name: g.cost for g in e.grader_scenarios}
        for key, s, grader in (("typical", typical, "grader, fewest"), ("most", most, "grader, most")):
            extra = graders.get(grader, 0.0)
            cost = None if s.cost is None or extra is None else s.cost + extra
            totals[key] = None if cost is None or totals[key] is None else totals[key] + cost  # type: ignore[operator]
        table.add_row(*names, f"{e.samples * e.epochs:,}", f"{typical.calls:,}", f"{typical.input_tokens:,}",
                      f"{typical.output_tokens:,}", _usd(typical.cost), _usd(most.cost))
    table.add_row("total", "", "", "", f"{sum(e.samples * e.epochs for _, e in cells):,}", "", "", "",
                  _usd(totals["typical"]), _usd(totals["most"]), style="bold")
    return table


# ------------------------------------------------------------------------------------
# After the run


def usage_cost(usage: ModelUsage, price: Price | None) -> dict[str, Any]:
    """One model's tokens and dollars from its usage; the saving is against paying the
    full input price for every cache read and write."""
    read = usage.input_tokens_cache_read or 0
    write = usage.input_tokens_cache_write or 0
    entry: dict[str, Any] = {"input_tokens": usage.input_tokens, "cache_read_tokens": read,
                             "cache_write_tokens": write, "output_tokens": usage.output_tokens}
    if price is None:
        return entry | {"cost": None, "cost_without_cache": None, "cache_saving": None, "note": UNKNOWN_PRICE}
    cost = price.cost(usage.input_tokens, usage.output_tokens, read, write)
    uncached = price.uncached_cost(usage.input_tokens + read + write, usage.output_tokens)
    return entry | {"cost": round(cost, 6), "cost_without_cache": round(uncached, 6),
                    "cache_saving": round(uncached - cost, 6)}


def log_cost(log: EvalLog, prices: Prices | None = None) -> dict[str, Any]:
    """The ``cost`` section of results.json: per model in the log, and the total.

    Totals are None when any model's price is unknown, so that a partial sum is never
    mistaken for the whole. Inspect's own cache hits (re-scored grader calls) are not in
    the log's usage and cost nothing.
    """
    prices = prices or load_prices()
    base_urls = {log.eval.model: log.eval.model_base_url}
    for configs in (log.eval.model_roles or {}).values():
        for config in configs if isinstance(configs, list) else [configs]:
            base_urls.setdefault(config.model, config.base_url)
    models = {m: usage_cost(u, prices.find(m, base_urls.get(m))) for m, u in log.stats.model_usage.items()}

    def total(key: str) -> float | None:
        values = [m[key] for m in models.values()]
        return None if None in values else round(sum(values), 6)

    return {"currency": "USD", "prices_as_of": prices.as_of, "models": models, "total": total("cost"),
            "total_without_cache": total("cost_without_cache"), "cache_saving": total("cache_saving")}


def cost_lines(cost: dict[str, Any]) -> list[str]:
    """report.md's cost paragraph: the total, then one line per model."""
    saving = f"; prompt caching saved {_usd(cost['cache_saving'])}" if cost["cache_saving"] else ""
    lines = [f"**Cost**: {_usd(cost['total'])}{saving} (prices as of {cost['prices_as_of']}, "
             "aflab/data/prices.toml)."]
    for model, m in cost["models"].items():
        lines.append(f"- `{model}`: {m['input_tokens']:,} input tokens, {m['cache_read_tokens']:,} read from cache, "
                     f"{m['cache_write_tokens']:,} written to it, {m['output_tokens']:,} output: {_usd(m['cost'])}"
                     + (f" ({m['note']})" if "note" in m else ""))
    return lines
