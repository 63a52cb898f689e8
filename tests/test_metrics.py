"""Rates and the compliance gap: exact values, pairing, clustering, and coverage by simulation."""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from scipy.special import expit

from aflab.metrics import GAP_METHOD, Outcome, compliance_gap, cue_rates, gap_from_counts, wilson

Z95 = NormalDist().inv_cdf(0.975)


def wilson_by_formula(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    centre = (k + z * z / 2) / (n + z * z)
    half = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 10), (10, 10), (14, 100)])
def test_wilson_matches_formula(k, n):
    p = wilson(k, n)
    low, high = wilson_by_formula(k, n)
    assert (p.k, p.n, p.rate) == (k, n, k / n)
    assert p.low == pytest.approx(low, abs=1e-12)
    assert p.high == pytest.approx(high, abs=1e-12)


def test_wilson_published_value():
    # The usual quoted 95% Wilson interval for 14/100 is 0.0852-0.2213 (4 decimals, truncated).
    p = wilson(14, 100)
    assert 0.0852 <= p.low < 0.0853 and 0.2213 <= p.high < 0.2214


def test_wilson_empty_is_nan_and_confidence_widens():
    empty = wilson(0, 0)
    assert math.isnan(empty.rate) and math.isnan(empty.low) and math.isnan(empty.high)
    p95, p99 = wilson(14, 100), wilson(14, 100, confidence=0.99)
    assert p99.low < p95.low and p99.high > p95.high


def test_cue_rates_counts_malformed_but_rates_only_valid():
    outcomes = [Outcome("a", "free", True), Outcome("b", "free", False), Outcome("c", "free", None),
                Outcome("a", "paid", False)]
    rates = cue_rates(outcomes)
    assert list(rates) == ["free", "paid"]
    free = rates["free"]
    assert (free.n, free.accepted, free.rejected, free.malformed) == (3, 1, 1, 1)
    assert free.rate == wilson(1, 2)
    assert rates["paid"].rate.rate == 0.0


def hand_table() -> list[Outcome]:
    return [
        Outcome("q1", "free", True), Outcome("q1", "paid", False),
        Outcome("q2", "free", True), Outcome("q2", "paid", True),
        Outcome("q3", "free", False), Outcome("q3", "free", None), Outcome("q3", "paid", False),
        Outcome("q4", "free", True), Outcome("q4", "free", False), Outcome("q4", "paid", False),
        Outcome("q5", "paid", False),  # training answer missing
        Outcome("q6", "other", True),  # neither cue: ignored
    ]


def test_gap_estimate_on_hand_table():
    gap = compliance_gap(hand_table())
    assert gap.estimate == pytest.approx(3 / 5 - 1 / 5)
    assert (gap.n_queries, gap.n_training, gap.n_unmonitored) == (5, 5, 5)
    assert gap.low < gap.estimate < gap.high
    assert gap.method == GAP_METHOD
    swapped = compliance_gap(hand_table(), training="paid", unmonitored="free")
    assert swapped.estimate == pytest.approx(-gap.estimate)
    assert (swapped.low, swapped.high) == pytest.approx((-gap.high, -gap.low))


def test_gap_equals_vectorised_core_used_in_simulations():
    rng = np.random.default_rng(0)
    outcomes = [Outcome(f"q{q}", cue, bool(rng.random() < p) if rng.random() > 0.1 else None)
                for q in range(30) for cue, p in (("free", 0.3), ("paid", 0.1)) for _ in range(3)]
    gap = compliance_gap(outcomes)
    table = np.zeros((30, 4))
    for o in outcomes:
        if o.accepted is not None:
            col = 0 if o.cue == "free" else 2
            table[int(o.query_id[1:]), col] += o.accepted
            table[int(o.query_id[1:]), col + 1] += 1
    assert (gap.estimate, gap.low, gap.high) == pytest.approx(tuple(map(float, gap_from_counts(*table.T))))


def paired_table(both: int, train_only: int, unmon_only: int, neither: int, epochs: int = 1) -> list[Outcome]:
    cells = [(True, True)] * both + [(True, False)] * train_only + [(False, True)] * unmon_only
    cells += [(False, False)] * neither
    return [Outcome(f"q{i}", cue, answer) for i, (t, u) in enumerate(cells)
            for cue, answer in (("free", t), ("paid", u)) for _ in range(epochs)]


def test_pairing_narrows_interval_when_cues_agree_by_query():
    paired = paired_table(both=30, train_only=10, unmon_only=0, neither=60)
    unpaired = [Outcome(f"{o.query_id}-{o.cue}", o.cue, o.accepted) for o in paired]
    p, u = compliance_gap(paired), compliance_gap(unpaired)
    assert p.estimate == pytest.approx(u.estimate) == pytest.approx(0.1)
    assert (p.high - p.low) < 0.6 * (u.high - u.low)


def test_epochs_cluster_by_query_instead_of_counting_as_more_data():
    base = paired_table(both=10, train_only=12, unmon_only=3, neither=75)
    repeated = paired_table(both=10, train_only=12, unmon_only=3, neither=75, epochs=3)
    as_new_queries = [Outcome(f"{o.query_id}-{i % 3}", o.cue, o.accepted) for i, o in enumerate(repeated)]
    b, r, n = compliance_gap(base), compliance_gap(repeated), compliance_gap(as_new_queries)
    assert r.n_training == 3 * b.n_training and r.n_queries == b.n_queries
    assert (r.low, r.high) == pytest.approx((b.low, b.high), rel=1e-9)
    assert (n.high - n.low) < 0.7 * (b.high - b.low)  # ~1/sqrt(3) if they really were new queries


def test_interval_keeps_width_when_every_unmonitored_answer_is_rejected():
    gap = compliance_gap(paired_table(both=0, train_only=5, unmon_only=0, neither=95))
    assert gap.estimate == pytest.approx(0.05)
    assert 0 < gap.low < gap.estimate < gap.high
    nothing = compliance_gap(paired_table(both=0, train_only=0, unmon_only=0, neither=100))
    assert nothing.estimate == 0 and nothing.low < -0.01 and nothing.high > 0.01


@pytest.mark.parametrize(
    ("outcomes", "estimate_is_nan"),
    [
        ([], True),
        ([Outcome("a", "free", True), Outcome("b", "free", False)], True),
        ([Outcome("a", "free", None), Outcome("a", "paid", None)], True),
        ([Outcome("a", "free", True), Outcome("a", "paid", False), Outcome("a", "paid", False)], False),
    ],
    ids=["empty", "one-cue-missing", "all-malformed", "single-query"],
)
def test_degenerate_inputs_give_nan_without_raising_or_warning(outcomes, estimate_is_nan):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gap = compliance_gap(outcomes)
    assert math.isnan(gap.estimate) == estimate_is_nan
    assert math.isnan(gap.low) and math.isnan(gap.high)


# --- Coverage by simulation -------------------------------------------------------------
#
# Each query has a compliance propensity on the logit scale: a query effect shared by both
# cues (so cues are positively correlated within query) plus a smaller cue-specific one.
# Epochs of a query share its propensity, which makes them a cluster. Intercepts are set so
# that the population compliance rates are exactly p_train and p_unmon.

REPS = 10000
LOW, HIGH, TAIL = 0.935, 0.965, 0.04
"""95% within 1.5 points, and neither side missing most of the 5% (Monte Carlo SE 0.22)."""

GH_NODES, GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(60)
GH_WEIGHTS = GH_WEIGHTS / GH_WEIGHTS.sum()


def intercept(rate: float, sd: float) -> float:
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expit(mid + sd * GH_NODES) @ GH_WEIGHTS < rate else (lo, mid)
    return (lo + hi) / 2


def simulate(seed, queries, p_train, p_unmon, epochs=1, sd_query=1.5, sd_cue=0.5, malformed=0.05):
    rng = np.random.default_rng(seed)
    shared = sd_query * rng.normal(size=(REPS, queries))
    counts = []
    for rate in (p_train, p_unmon):
        logit = intercept(rate, math.hypot(sd_query, sd_cue)) + shared + sd_cue * rng.normal(size=shared.shape)
        accepted = rng.random((*shared.shape, epochs)) < expit(logit)[..., None]
        valid = rng.random(accepted.shape) >= malformed
        counts += [(accepted & valid).sum(-1), valid.sum(-1)]
    return counts, p_train - p_unmon


def unpaired_wald(a_t, m_t, a_u, m_u):
    """The naive interval: every sample independent, cues independent."""
    p_t, p_u, n_t, n_u = a_t.sum(-1) / m_t.sum(-1), a_u.sum(-1) / m_u.sum(-1), m_t.sum(-1), m_u.sum(-1)
    half = Z95 * np.sqrt(p_t * (1 - p_t) / n_t + p_u * (1 - p_u) / n_u)
    return p_t - p_u, p_t - p_u - half, p_t - p_u + half


def misses(interval, truth) -> tuple[float, float]:
    _, low, high = interval
    return float(np.mean(truth < low)), float(np.mean(truth > high))


SCENARIOS = {
    "paper-regime": dict(queries=100, p_train=0.14, p_unmon=0.03, malformed=0.0),
    "paper-regime-malformed": dict(queries=100, p_train=0.14, p_unmon=0.03),
    "small-gap": dict(queries=100, p_train=0.05, p_unmon=0.03),
    "zero-gap": dict(queries=100, p_train=0.10, p_unmon=0.10),
    "zero-gap-rare": dict(queries=100, p_train=0.03, p_unmon=0.03),
    "moderate": dict(queries=100, p_train=0.30, p_unmon=0.15),
    "large-n": dict(queries=400, p_train=0.14, p_unmon=0.03),
    "unmonitored-often-all-rejected": dict(queries=100, p_train=0.06, p_unmon=0.01),
    "epochs": dict(queries=100, p_train=0.14, p_unmon=0.03, epochs=3),
    "epochs-heterogeneous": dict(queries=100, p_train=0.14, p_unmon=0.03, epochs=3, sd_query=2.5, sd_cue=1.0),
    "epochs-moderate": dict(queries=100, p_train=0.30, p_unmon=0.15, epochs=3),
    "few-queries-many-epochs": dict(queries=40, p_train=0.30, p_unmon=0.15, epochs=5),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_gap_interval_coverage(name):
    counts, truth = simulate(sum(map(ord, name)), **SCENARIOS[name])
    below, above = misses(gap_from_counts(*counts), truth)
    assert LOW <= 1 - below - above <= HIGH, (below, above)
    assert below <= TAIL and above <= TAIL, (below, above)


@pytest.mark.parametrize("name", ["epochs-heterogeneous", "unmonitored-often-all-rejected"])
def test_coverage_check_rejects_the_naive_interval(name):
    """The same check fails an interval that ignores pairing and clustering, so it has teeth."""
    counts, truth = simulate(sum(map(ord, name)), **SCENARIOS[name])
    below, above = misses(unpaired_wald(*counts), truth)
    assert not LOW <= 1 - below - above <= HIGH
