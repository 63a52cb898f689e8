"""Shared by the coverage simulations: propensities on the logit scale whose population
mean is a given rate."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

GH_NODES, GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(60)
GH_WEIGHTS = GH_WEIGHTS / GH_WEIGHTS.sum()


def intercept(rate: float, sd: float) -> float:
    """The logit intercept at which a normal propensity of spread ``sd`` averages ``rate``
    (Gauss–Hermite quadrature, bisection)."""
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expit(mid + sd * GH_NODES) @ GH_WEIGHTS < rate else (lo, mid)
    return (lo + hi) / 2
