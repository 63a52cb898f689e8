"""Rates and the compliance gap: exact values, pairing, clustering, and coverage by simulation."""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from aflab.metrics import (
    CONTRAST_METHOD,
    GAP_DIFFERENCE,
    GAP_METHOD,
    RATE_DIFFERENCE,
    Contrast,
    Outcome,
    compliance_gap,
    contrast_from_counts,
    cue_rates,
    fdr_adjust,
    gap_from_counts,
    wilson,
)
from tests.simulation import intercept

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


# --- Comparing cells of a sweep ---------------------------------------------------------
#
# Two cells (variation A and default B, or two reasoning modes) ask the same queries. A
# query's propensity under a cue and cell is the shared query effect, a cue effect shared
# by both cells, and (for a real change) a cell-specific effect; intercepts again make the
# population rates exactly the targets, so the true gap difference is known.

TRAINING_ROWS = [0, 2]
"""Rows of the simulated (training A, unmonitored A, training B, unmonitored B) counts
that hold the two cells' training-cue rates."""
REJECT_LOW, REJECT_HIGH = 0.035, 0.065
"""5% within 1.5 points (Monte Carlo SE 0.22 points at 10,000 replicates)."""


def simulate_cells(seed, queries, cell_a, cell_b, epochs=1, sd_query=1.5, sd_cue=0.5, sd_cell=0.0,
                   malformed=0.05, reps=REPS):
    """Counts of shape (reps, 4, queries) and the true gap difference A - B; ``cell_*`` are
    (p_train, p_unmon). With ``sd_cell`` 0 and equal rates, both cells share every
    query's propensities: the null."""
    rng = np.random.default_rng(seed)
    shared = sd_query * rng.normal(size=(reps, queries))
    cue_effects = sd_cue * rng.normal(size=(2, reps, queries))
    sd = math.sqrt(sd_query**2 + sd_cue**2 + sd_cell**2)
    accepted, valid = [], []
    for p_train, p_unmon in (cell_a, cell_b):
        for cue, rate in enumerate((p_train, p_unmon)):
            logit = intercept(rate, sd) + shared + cue_effects[cue] + sd_cell * rng.normal(size=shared.shape)
            answers = rng.random((*shared.shape, epochs)) < expit(logit)[..., None]
            ok = rng.random(answers.shape) >= malformed
            accepted.append((answers & ok).sum(-1))
            valid.append(ok.sum(-1))
    truth = (cell_a[0] - cell_a[1]) - (cell_b[0] - cell_b[1])
    return np.stack(accepted, -2), np.stack(valid, -2), truth


NULL_SCENARIOS = {
    "paper-regime": dict(queries=100, cell_a=(0.14, 0.03), cell_b=(0.14, 0.03)),
    "zero-gap": dict(queries=100, cell_a=(0.10, 0.10), cell_b=(0.10, 0.10)),
    "few-queries": dict(queries=20, cell_a=(0.30, 0.15), cell_b=(0.30, 0.15), epochs=3),
    "few-queries-one-epoch": dict(queries=20, cell_a=(0.30, 0.15), cell_b=(0.30, 0.15)),
}


def rejection_rate(contrast: Contrast) -> float:
    return float(np.mean(contrast.p_value < 0.05))


@pytest.mark.parametrize("name", NULL_SCENARIOS)
def test_comparison_rejects_five_percent_under_the_null_and_covers(name):
    accepted, valid, truth = simulate_cells(sum(map(ord, name)), **NULL_SCENARIOS[name])
    gap = contrast_from_counts(accepted, valid, GAP_DIFFERENCE)
    training = contrast_from_counts(accepted[..., TRAINING_ROWS, :], valid[..., TRAINING_ROWS, :], RATE_DIFFERENCE)
    assert truth == 0
    assert REJECT_LOW <= rejection_rate(gap) <= REJECT_HIGH
    assert REJECT_LOW <= rejection_rate(training) <= REJECT_HIGH
    # the test and the interval are one construction: 0 is outside exactly when p < .05
    assert np.array_equal(gap.p_value < 0.05, (gap.low > 0) | (gap.high < 0))


@pytest.mark.parametrize(("cell_a", "queries", "epochs"), [((0.30, 0.05), 100, 1), ((0.45, 0.15), 20, 3)],
                         ids=["paper-regime-vs-larger-gap", "few-queries-vs-larger-gap"])
def test_gap_difference_interval_covers_a_real_change(cell_a, queries, epochs):
    cell_b = (0.14, 0.03) if queries == 100 else (0.30, 0.15)
    accepted, valid, truth = simulate_cells(queries + epochs, queries, cell_a, cell_b, epochs=epochs, sd_cell=0.6)
    gap = contrast_from_counts(accepted, valid, GAP_DIFFERENCE)
    below, above = misses(gap[:3], truth)
    assert LOW <= 1 - below - above <= HIGH, (below, above)
    assert below <= TAIL and above <= TAIL, (below, above)
    assert rejection_rate(gap) > 0.25  # and the change is often detected


def test_comparison_check_rejects_an_unpaired_test():
    """Treating the two cells as independent samples ignores that they share queries: far
    too few rejections under the null, so the rejection-rate check above has teeth."""
    accepted, valid, _ = simulate_cells(1, **NULL_SCENARIOS["paper-regime"])
    rates = accepted.sum(-1) / valid.sum(-1)
    variance = (np.square(GAP_DIFFERENCE) * rates * (1 - rates) / valid.sum(-1)).sum(-1)
    p_unpaired = 2 * stats.norm.sf(np.abs(rates @ np.asarray(GAP_DIFFERENCE)) / np.sqrt(variance))
    assert not REJECT_LOW <= float(np.mean(p_unpaired < 0.05)) <= REJECT_HIGH


def test_contrast_of_two_rates_on_hand_counts():
    # 8 queries: A accepts 6, B all 8, so only A's influences are non-zero: 6 of
    # (1 - 3/4) / 8 and 2 of -(3/4) / 8; variance 24/1024 times the CR1 factor 8/7.
    contrast = contrast_from_counts([[1] * 6 + [0] * 2, [1] * 8], np.ones((2, 8)), RATE_DIFFERENCE)
    se = math.sqrt(24 / 1024 * 8 / 7)
    assert float(contrast.estimate) == pytest.approx(-0.25)
    assert float(contrast.p_value) == pytest.approx(2 * stats.t.sf(0.25 / se, 7))
    half = stats.t.ppf(0.975, 7) * se
    assert (float(contrast.low), float(contrast.high)) == pytest.approx((-0.25 - half, -0.25 + half))
    clipped = contrast_from_counts([[1, 0, 1], [1, 1, 1]], np.ones((2, 3)), RATE_DIFFERENCE)
    assert float(clipped.low) == -1.0  # a rate difference cannot go below -1
    assert "CR1" in CONTRAST_METHOD


def test_contrast_pairs_by_query_and_clusters_epochs():
    # cells that agree query by query: pairing removes the query-to-query spread
    a = np.array([[1, 1, 0, 0, 1, 0, 0, 0] * 5, [1, 1, 0, 0, 0, 0, 0, 0] * 5])
    m = np.ones_like(a)
    paired = contrast_from_counts(a, m, RATE_DIFFERENCE)
    shuffled = contrast_from_counts(np.stack([a[0], np.roll(a[1], 3)]), m, RATE_DIFFERENCE)
    assert float(paired.estimate) == pytest.approx(float(shuffled.estimate))
    assert float(paired.high - paired.low) < 0.6 * float(shuffled.high - shuffled.low)
    # three identical epochs of each query are one query's evidence, not three
    repeated = contrast_from_counts(3 * a, 3 * m, RATE_DIFFERENCE)
    assert (float(repeated.low), float(repeated.high)) == pytest.approx((float(paired.low), float(paired.high)))


def test_comparisons_where_no_query_varies_keep_a_width():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = contrast_from_counts(np.zeros((2, 100)), np.ones((2, 100)), RATE_DIFFERENCE)
        separated = contrast_from_counts([[1] * 10, [0] * 10], np.ones((2, 10)), RATE_DIFFERENCE)
    assert float(same.p_value) == 1.0 and -0.03 < float(same.low) < -0.01 and 0.01 < float(same.high) < 0.03
    assert float(separated.estimate) == 1.0 and float(separated.p_value) < 1e-4
    assert 0.7 < float(separated.low) < 0.95 and float(separated.high) == 1.0


@pytest.mark.parametrize(("accepted", "valid"), [([[1], [0]], [[1], [1]]), ([[1, 1], [0, 0]], [[1, 1], [0, 0]])],
                         ids=["single-query", "empty-cell"])
def test_comparisons_that_cannot_be_made_are_nan_without_warnings(accepted, valid):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        contrast = contrast_from_counts(accepted, valid, RATE_DIFFERENCE)
    assert math.isnan(contrast.p_value) and math.isnan(contrast.low) and math.isnan(contrast.high)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="K weights"):
        contrast_from_counts(np.zeros((3, 5)), np.ones((3, 5)), RATE_DIFFERENCE)


def test_benjamini_hochberg_flags_the_real_changes_among_many_nulls():
    """200 comparisons with no change and 6 with a large one, as a big sweep would make."""
    null_counts = simulate_cells(7, queries=100, cell_a=(0.14, 0.03), cell_b=(0.14, 0.03), reps=200)[:2]
    real_counts = simulate_cells(8, queries=100, cell_a=(0.60, 0.05), cell_b=(0.14, 0.03), sd_cell=0.6, reps=6)[:2]
    p = contrast_from_counts(*map(np.concatenate, zip(null_counts, real_counts)), GAP_DIFFERENCE).p_value
    p[3] = math.nan  # a comparison that could not be made stays out
    adjusted = fdr_adjust(p)
    assert math.isnan(adjusted[3]) and np.all(adjusted[np.isfinite(p)] >= p[np.isfinite(p)])
    assert np.flatnonzero(adjusted < 0.05).tolist() == list(range(200, 206))
    assert (p[:200] < 0.05).sum() >= 4  # uncorrected, chance alone would flag some nulls
