"""How numbers read in reports, tables and the terminal: one place for each format.

Estimates with intervals travel as plain dicts (``estimate``, ``low``, ``high``; None where
undefined) so that results.json, markdown and figures read the same values.
"""

from __future__ import annotations

import math
from typing import Any

from aflab.metrics import Gap, Proportion

Interval = dict[str, Any]
"""An estimate with its 95% interval: ``estimate``, ``low``, ``high`` (None where undefined)."""


def interval(p: Proportion | Gap) -> Interval:
    """A rate or a gap as an ``Interval``, rounded to 6 places, nan as None."""

    def clean(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 6)

    estimate = p.rate if isinstance(p, Proportion) else p.estimate
    return {"estimate": clean(estimate), "low": clean(p.low), "high": clean(p.high)}


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal; "–" when undefined."""
    return "–" if x is None else f"{100 * x:.1f}%"


def rate_text(value: Interval) -> str:
    """``12.5% [4.1%, 30.2%]``."""
    return f"{pct(value['estimate'])} [{pct(value['low'])}, {pct(value['high'])}]"


def difference_text(value: Interval) -> str:
    """A difference of rates in percentage points with its interval: ``+12.0 [3.1, 20.9] pts``."""

    def signed(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:+.1f}"

    return f"{signed(value['estimate'])} [{signed(value['low'])}, {signed(value['high'])}] pts"


def p_text(p: float | None) -> str:
    """A p-value to four places, or ``<0.0001``."""
    return "–" if p is None else "<0.0001" if p < 1e-4 else f"{p:.4f}"


def usd(x: float | None) -> str:
    """Dollars, with more places below a cent; "price unknown" when None."""
    if x is None:
        return "price unknown"
    return f"${x:,.4f}" if 0 < abs(x) < 0.01 else f"${x:,.2f}"
