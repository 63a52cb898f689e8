"""What model calls cost: the price table, and a finished run's cost from its log.

Prices live in one data file, ``aflab/data/prices.toml``, so a new price or a new model
is an edit there. A model missing from it still gets its tokens counted; its cost reads
"price unknown". The report calls :func:`log_cost` on the finished log, whose token counts
are the provider's own; the estimate before a run (``aflab.estimate``) reads the same table.

Caching needs nothing from aflab. Inspect's ``cache_prompt`` is unset by default, which its
Anthropic provider treats as on: it marks the system prompt with ``cache_control`` (and
the conversation so far, so continuation rounds read it back too). OpenAI caches any
prompt prefix of 1,024 tokens or more by itself, and Gemini 2.5 models do the same.
With ``--batch`` the prices of the providers in ``prices.toml``'s ``[batch]`` table are
scaled by its factor.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from inspect_ai.log import EvalLog
from inspect_ai.model import ModelUsage

from aflab.errors import CostError
from aflab.formatting import usd
from aflab.providers import provider_of

PRICES_FILE = Path(__file__).parent / "data" / "prices.toml"
UNKNOWN_PRICE = "price unknown (add it to aflab/data/prices.toml)"
_VERSION_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|\d{3}|latest)$")
"""Dated or versioned model names ("-20240229", "-2024-08-06", "-001", "-latest")."""


Batch = bool | int | None
"""``--batch``: off (None, False), on (True) or on with a batch size; Inspect's ``batch``."""


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
        return self.batch.get(provider_of(model), 1.0) if batch else 1.0


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
    if provider_of(model) in local_providers:
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
    saving = f"; prompt caching saved {usd(cost['cache_saving'])}" if cost["cache_saving"] else ""
    lines = [f"**Cost**: {usd(cost['total'])}{saving} (prices as of {cost['prices_as_of']}, "
             "aflab/data/prices.toml)."]
    for model, m in cost["models"].items():
        lines.append(f"- `{model}`: {m['input_tokens']:,} input tokens, {m['cache_read_tokens']:,} read from cache, "
                     f"{m['cache_write_tokens']:,} written to it, {m['output_tokens']:,} output: {usd(m['cost'])}"
                     + (f" ({m['note']})" if "note" in m else ""))
    return lines
