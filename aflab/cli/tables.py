"""What the terminal shows: result tables, a sweep's comparison, dry-run estimates."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from aflab.cli.output import note, out
from aflab.compare import comparison_name
from aflab.cues import cue_label
from aflab.estimate import Estimate, GradingEstimate
from aflab.formatting import difference_text, rate_text, usd


def print_results(res: dict[str, Any]) -> None:
    """A run's results: counts and rates per cue, the gap, classifier rates and notes."""
    table = Table(title=f"{res['setting']} · {res['model']}")
    for column in ("cue", "n", "complied", "refused", "malformed", "errors", "compliance [95% CI]"):
        table.add_column(column, justify="left" if column == "cue" else "right")
    for cue, c in res["cues"].items():
        table.add_row(cue_label(cue), str(c["n"]), str(c["accepted"]), str(c["rejected"]),
                      str(c["malformed"]), str(c["error"]), rate_text(c["compliance"]))
    out.print(table)
    if res["gap"]:
        out.print(f"compliance gap (training − unmonitored): {rate_text(res['gap'])}")
    for c in res.get("classifiers", {}).values():
        rates = ", ".join(f"{cue_label(cue)} {r['flagged']}/{r['n']} {rate_text(r['rate'])}"
                          + (f" ({r['unknown']} unknown)" if r["unknown"] else "")
                          for cue, r in c["cues"].items())
        out.print(f"{c['description']}: {rates}")
    for line in res["notes"]:
        note(line)


def print_comparison(comparison: dict[str, Any]) -> None:
    """The comparison's cells and its flagged differences on the terminal."""
    table = Table(title="sweep comparison (compliance, 95% CI)")
    for column in ("model", "setting", "variation", "mode", "status", "training", "unmonitored", "gap"):
        table.add_column(column, overflow="fold")
    for cell in comparison["cells"]:
        res = cell["results"] or {}
        cues = res.get("cues", {})
        table.add_row(
            cell["model"], cell["setting"], cell["variation"], cell["mode"], cell["status"],
            *(rate_text(cues[c]["compliance"]) if c in cues else "–" for c in ("free", "paid")),
            rate_text(res["gap"]) if res.get("gap") else "–",
        )
    out.print(table)
    for cell in comparison["cells"]:
        failures = [f for f in (cell["results"] or {}).get("failures", []) if f["label"] == "error"]
        if failures:
            out.print(f"[red]{cell['model']} · {cell['setting']} · {cell['variation']} · {cell['mode']}:[/red] "
                            f"{len(failures)} samples failed, e.g. {failures[0]['reason'][:200]}", soft_wrap=True)
    flagged = [f for f in comparison["comparisons"] if f["flagged"]]
    out.print(f"{len(flagged)} of {len(comparison['comparisons'])} differences significant "
                    "(Benjamini-Hochberg adjusted p < 0.05)")
    for f in flagged:
        out.print(f"  {f['model']} · {f['setting']}: {comparison_name(f)}, {f['measure']} "
                        f"{difference_text(f)}, adjusted p {f['p_adjusted']:.3g}")
    for line in comparison.get("notes", []):
        note(line)


def grading_table(e: GradingEstimate) -> Table:
    """The grading dry run's table: one row per scenario."""
    table = Table(title=f"{e.classifier} graded by {e.grader}: {e.transcripts} transcripts × {e.votes} "
                        f"vote{'s' * (e.votes != 1)}")
    for column in ("", "calls", "input tokens", "read from cache", "output tokens", "cost", "without caching"):
        table.add_column(column, justify="left" if not column else "right")
    for s in e.scenarios:
        table.add_row(s.name, f"{s.calls:,}", f"{s.input_tokens:,}", f"{s.cache_read_tokens:,}",
                      f"{s.output_tokens:,}", usd(s.cost), usd(s.cost_without_cache))
    return table


def estimate_table(e: Estimate) -> Table:
    """The dry run's table: one row per scenario, the grader's below the model's."""
    table = Table(title=f"{e.model}: {e.samples} samples × {e.epochs} epoch{'s' * (e.epochs != 1)}, "
                        f"system prompt ~{e.system_prompt_tokens:,} tokens, user turn ~{e.user_turn_tokens:,.0f}")
    for column in ("", "turns/sample", "calls", "input tokens", "read from cache", "output tokens", "cost",
                   "without caching", "caching saves"):
        table.add_column(column, justify="left" if not column else "right")
    for s in e.scenarios:
        table.add_row(s.name, f"{s.rounds:g}", f"{s.calls:,}", f"{s.input_tokens:,}", f"{s.cache_read_tokens:,}",
                      f"{s.output_tokens:,}", usd(s.cost), usd(s.cost_without_cache), usd(s.saving))
    for s in e.grader_scenarios:
        table.add_row(f"{s.name} ({e.grader})", "", f"{s.calls:,}", f"{s.input_tokens:,}", f"{s.cache_read_tokens:,}",
                      f"{s.output_tokens:,}", usd(s.cost), usd(s.cost_without_cache), usd(s.saving))
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
                      f"{typical.output_tokens:,}", usd(typical.cost), usd(most.cost))
    table.add_row("total", "", "", "", f"{sum(e.samples * e.epochs for _, e in cells):,}", "", "", "",
                  usd(totals["typical"]), usd(totals["most"]), style="bold")
    return table


