"""aflab's benchmarks: harness overhead, embedded-model speed, cost per finding, memory, scale.

    python benchmarks/run.py            # full: ~20 minutes on 2 CPU cores
    python benchmarks/run.py --quick    # smoke test for CI: under 2 minutes

Every figure is printed next to a baseline measured in the same run, with their ratio, so
that results from busy or different machines stay comparable; ``benchmarks/results.json``
keeps the last results (figures, raw measurements, machine, versions) for comparison
between commits. Each measurement runs in its own process (``workers.py``); the simulated
model is a bounded loopback server (``loopback_server.py``). Nothing leaves 127.0.0.1, and
no GPU is used. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT_MARK = "@@RESULT "
SCHEMA = "aflab.benchmarks/1"
SECTIONS = ("harness", "cost", "memory", "scale", "embedded", "default", "activations")

MODES: dict[str, dict[str, Any]] = {
    "full": {
        # L = 10 s: the fast end of real calls that write a ~650-token scratchpad (10-40 s);
        # at C=10, N=100 (ten waves) instead of 400, which would take 400 s a side: a smaller N
        # gives the fixed start-up a larger share of the wall time, so it can only lower the ratio
        "harness_n": 400, "latency_s": 10.0, "concurrency": [10, 50, 200], "harness_n_at": {10: 100},
        "mock_n": 400, "mock_concurrency": 50, "scale_n": 10_000, "full_run_pairs": 400,
        "scale_baselines": ["full", "lean", "summaries"],
        "harness_variants": [
            {"key": "default", "concurrency": None,
             "label": "aflab run without --max-connections (Inspect's adaptive default)"},
            # stress: 100 requests/s, 5-20x what C=200 real calls ask; the harness's CPU per sample
            # is the limit here, and the bare loop is measured at the same load
            {"key": "stress", "concurrency": 200, "latency_s": 2.0, "bare": True,
             "label": "stress, L=2 s, C=200: aflab run"},
            {"key": "stress-no-realtime", "concurrency": 200, "latency_s": 2.0, "eval_args": {"log_realtime": False},
             "label": "stress, L=2 s, C=200: aflab run with Inspect's log_realtime=False"},
        ],
        "embedded_system_chars": None, "embedded_gen_tokens": 64,
        "embedded_run_n": 20, "embedded_run_system_chars": 1500,
        "default_run": True,
        # activation capture: 8 prompts after a cached system prompt against 2 run whole (~70 s each)
        "activations": {"queries": 4, "whole": 2, "batch_size": 4, "layer": 14, "tokens": 8},
    },
    "quick": {
        "harness_n": 100, "latency_s": 0.1, "concurrency": [10, 50, 200],
        "mock_n": 100, "mock_concurrency": 50, "scale_n": 1_000, "full_run_pairs": 400,
        "scale_baselines": ["full"],
        "embedded_system_chars": 300, "embedded_gen_tokens": 8,
        "embedded_run_n": 0, "embedded_run_system_chars": 300,
        "default_run": False,  # two runs of ./dev run's main job: minutes
        "activations": None,  # loading the embedded model into transformers alone takes ~40 s
    },
}


# ------------------------------------------------------------------------------------
# running workers and the loopback server


class WorkerFailed(RuntimeError):
    pass


def run_worker(name: str, spec: dict[str, Any], scratch: Path, timeout: float = 900) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its result."""
    env = os.environ | {
        "INSPECT_DISPLAY": "none",
        # Inspect's sample buffers and caches go to the scratch folder, not the user's home
        "XDG_DATA_HOME": str(scratch / "xdg-data"),
        "INSPECT_CACHE_DIR": str(scratch / "inspect-cache"),
        "PYTHONUNBUFFERED": "1",
    }
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(HERE / "workers.py"), name, json.dumps(spec)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=scratch)
    except subprocess.TimeoutExpired as ex:
        raise WorkerFailed(f"{name}: no result after {timeout:.0f} s") from ex
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise WorkerFailed(f"{name} exited {proc.returncode}: " + " | ".join(tail))
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK):])
    result["process_s"] = time.perf_counter() - started
    return result


@contextlib.contextmanager
def loopback_server(latency: float, max_requests: int, max_lifetime: float) -> Iterator[tuple[str, dict[str, Any]]]:
    """Start the bounded loopback server; yield (base_url, stats) and fill stats on exit."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "loopback_server.py"), "--latency", str(latency),
         "--max-requests", str(max_requests), "--max-lifetime", str(max_lifetime)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stats: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise WorkerFailed(f"loopback server did not start: {proc.stderr.read() if proc.stderr else ''}")
        port = json.loads(line)["port"]
        yield f"http://127.0.0.1:{port}/v1", stats
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
            stats.update(json.loads(r.read()))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------
# figures


@dataclass
class Figure:
    section: str
    name: str
    value: float | None
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    ratio: float | None = None
    ratio_means: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> Figure:
        f = Figure(*args, **kwargs)
        self.figures.append(f)
        return f


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _server_note(r: dict[str, Any], stats: dict[str, Any]) -> str:
    if stats.get("first_request_at") and r.get("start_at"):
        r["until_first_request_s"] = stats["first_request_at"] - r["start_at"]
        r["serving_s"] = stats["last_response_at"] - stats["first_request_at"]
        r["after_last_response_s"] = r["end_at"] - stats["last_response_at"]
    r["server"] = stats
    return (f"server saw {stats.get('chat_requests')} requests, peak {stats.get('peak_in_flight')} in flight, "
            f"{stats.get('connections_opened')} connections; first request after "
            f"{r.get('until_first_request_s', float('nan')):.1f} s, serving "
            f"{r.get('serving_s', float('nan')):.1f} s, done {r.get('after_last_response_s', float('nan')):.1f} s "
            "after the last answer")


@dataclass
class HarnessRun:
    """One aflab measurement against its own loopback server (and maybe a bare-loop twin)."""

    key: str
    label: str
    concurrency: int | None  # None: Inspect's adaptive default
    latency: float
    n: int
    eval_args: dict[str, Any] = field(default_factory=dict)
    target: bool = False  # one of the C ∈ {10, 50, 200} rows with the ≥ 0.9 target
    bare: bool = False  # the bare loop runs the same work

    def lifetime(self) -> float:
        """The server's and the worker's bound: generous, but finite."""
        return 120 + 20 * self.n * self.latency / (self.concurrency or 10)


def harness_runs(cfg: dict[str, Any]) -> list[HarnessRun]:
    n, latency = cfg["harness_n"], cfg["latency_s"]
    runs = [HarnessRun(f"c{c}", f"C={c}", c, latency, cfg.get("harness_n_at", {}).get(c, n), target=True, bare=True)
            for c in cfg["concurrency"]]
    runs += [HarnessRun(v["key"], v["label"], v["concurrency"], v.get("latency_s", latency), v.get("n", n),
                        v.get("eval_args", {}), bare=v.get("bare", False)) for v in cfg.get("harness_variants", [])]
    return runs


def bench_harness(cfg: dict[str, Any], scratch: Path, out: Results) -> str | None:
    """Harness throughput at each concurrency: aflab, then the bare OpenAI loop; and the
    start-up cost of importing aflab's run path."""
    try:
        base = run_worker("imports", {"modules": ["inspect_ai"]}, scratch)
        mine = run_worker("imports", {"modules": ["aflab.experiment", "aflab.tasks"]}, scratch)
        out.raw["harness.imports"] = {"inspect_ai": base, "aflab": mine}
        out.add("harness", "start-up: import aflab.experiment + aflab.tasks", mine["wall_s"], "s",
                "import inspect_ai", base["wall_s"], _ratio(mine["wall_s"], base["wall_s"]), "aflab / inspect_ai",
                "", None, "paid once per `aflab run` before any sample starts")
    except WorkerFailed as ex:
        out.failures["harness.imports"] = str(ex)
    last_log = None
    runs = harness_runs(cfg)
    for run in runs:
        key = f"harness.aflab.{run.key}"
        try:
            with loopback_server(run.latency, max_requests=2 * run.n, max_lifetime=run.lifetime()) as (url, stats):
                r = run_worker("harness", {"base_url": url, "out": str(scratch / key), "n": run.n,
                                           "concurrency": run.concurrency, "eval_args": run.eval_args},
                               scratch, timeout=run.lifetime())
        except WorkerFailed as ex:
            out.failures[key] = str(ex)
            continue
        note = _server_note(r, stats) + f"; report {r['report_s']:.1f} s of it; CPU {r['cpu_s']:.1f} s"
        out.raw[key] = r
        c_eff = run.concurrency or stats.get("peak_in_flight") or 1
        ideal = run.n * run.latency / c_eff
        ratio = _ratio(ideal, r["wall_s"])
        label = f"{run.label}: aflab run (task, eval_set, log, report)" if run.target else run.label
        out.add("harness", label, r["wall_s"], "s", f"ideal N·L/C = {run.n}·{run.latency:g}/{c_eff}"
                + ("" if run.concurrency else " (C = peak in flight)"), ideal, ratio, "ideal / wall",
                "≥ 0.9" if run.target else "", None if ratio is None or not run.target else ratio >= 0.9, note)
        if run.target:
            last_log = r["log"]  # the cost benchmark reads the last (largest-C) one
    # the bare loop: one process, one server per run, one run after the other
    twins = [run for run in runs if run.bare]
    lifetime = sum(run.lifetime() for run in twins)  # every server waits for the runs before its own
    try:
        with contextlib.ExitStack() as stack:
            servers = [stack.enter_context(loopback_server(run.latency, 2 * run.n, lifetime)) for run in twins]
            spec = [{"base_url": url, "concurrency": run.concurrency, "n": run.n} for (url, _), run in zip(servers, twins)]
            bare = run_worker("openai_loop", {"runs": spec}, scratch, timeout=lifetime)
        # stats are filled as each server closes, i.e. now
    except WorkerFailed as ex:
        out.failures["harness.bare"] = str(ex)
        return last_log
    for r, (_, stats), run in zip(bare["runs"], servers, twins):
        assert run.concurrency is not None
        ideal = run.n * run.latency / run.concurrency
        note = _server_note(r, stats) + f"; CPU {r['cpu_s']:.1f} s"
        out.raw[f"harness.bare.{run.key}"] = r
        label = run.label.removesuffix(": aflab run")
        out.add("harness", f"{label}: bare asyncio loop over the OpenAI client", r["wall_s"], "s",
                f"ideal N·L/C = {run.n}·{run.latency:g}/{run.concurrency}", ideal, _ratio(ideal, r["wall_s"]),
                "ideal / wall", "", None, note)
        a = out.raw.get(f"harness.aflab.{run.key}")
        if a:
            out.add("harness", f"{label}: aflab vs the bare loop", a["wall_s"], "s", "bare loop", r["wall_s"],
                    _ratio(r["wall_s"], a["wall_s"]), "bare / aflab")
    # CPU per extra sample: two runs that differ in N share every fixed cost (start-up, imports
    # during the run), so their CPU difference over their N difference is the per-sample cost
    small = min(twins, key=lambda run: run.n)
    large = max(twins, key=lambda run: (run.n, run.concurrency or 0))
    pairs = [(out.raw.get(f"harness.{side}.{small.key}"), out.raw.get(f"harness.{side}.{large.key}"))
             for side in ("aflab", "bare")]
    if large.n > small.n and all(a and b for a, b in pairs):
        (a0, a1), (b0, b1) = pairs  # type: ignore[misc]
        mine, bare_ms = (1000 * (hi["cpu_s"] - lo["cpu_s"]) / (large.n - small.n) for lo, hi in ((a0, a1), (b0, b1)))
        out.add("harness", f"CPU per sample (N={small.n} → {large.n}, C={small.concurrency} → {large.concurrency})",
                mine, "ms", "bare loop", bare_ms, _ratio(mine, bare_ms), "aflab / bare", "", None,
                f"one core runs at most ~{1000 / mine:.0f} aflab samples/s; a run asks C/L "
                f"(C=200: {200 / cfg['latency_s']:g}/s at L={cfg['latency_s']:g} s)" if mine > 0 else "")
    return last_log


COST_LOG_LATENCY_S = 0.1
"""Latency of the harness run that makes the cost section's log when the harness section
does not run (``--only cost``): the log's turns are the same at any latency."""


def _cost_log(cfg: dict[str, Any], scratch: Path) -> str:
    """A log of ``harness_n`` simulated samples for the cost section, from one quick run."""
    run = HarnessRun("cost", "cost log", 50, COST_LOG_LATENCY_S, cfg["harness_n"])
    with loopback_server(run.latency, max_requests=2 * run.n, max_lifetime=run.lifetime()) as (url, _):
        r = run_worker("harness", {"base_url": url, "out": str(scratch / "cost-log"), "n": run.n,
                                   "concurrency": run.concurrency, "eval_args": {}}, scratch, timeout=run.lifetime())
    return r["log"]


def bench_cost(cfg: dict[str, Any], scratch: Path, out: Results, log: str | None) -> None:
    try:
        r = run_worker("cost", {"log": log or _cost_log(cfg, scratch)}, scratch)
    except WorkerFailed as ex:
        out.failures["cost"] = str(ex)
        return
    out.raw["cost"] = r
    n, calls, s_tok = r["samples"], r["calls"], r["system_prompt_tokens"]
    pairs = cfg["full_run_pairs"]
    run_samples = 2 * pairs
    in_ps, out_ps = r["input_tokens"] / n, r["output_tokens"] / n
    run_calls = calls / n * run_samples
    run_in = in_ps * run_samples
    # prompt caching: the shared system prompt is written once and read from cache by every later call
    cached_reads = s_tok * (run_calls - 1)
    uncached = run_in - cached_reads
    tok = f"tokens: {r['tokenizer']}"
    out.add("cost", "input tokens per sample (no caching)", in_ps, "tok", "", None, None, "", "",
            None, f"{calls / n:.2f} calls per sample; system prompt {s_tok} tokens; {tok}")
    out.add("cost", "output tokens per sample", out_ps, "tok", "input tokens per sample", in_ps,
            _ratio(out_ps, in_ps), "output / input", "", None, "simulated long scratchpad turn, one per sample")
    out.add("cost", f"input tokens per full run ({pairs} pairs), no caching", run_in, "tok")
    out.add("cost", "uncached input tokens per full run, with caching", uncached, "tok",
            "no caching", run_in, _ratio(uncached, run_in), "cached / uncached run", "", None,
            f"{cached_reads:,.0f} tokens read from cache: the system prompt after the first call")
    out.add("cost", f"output tokens per full run ({pairs} pairs)", out_ps * run_samples, "tok")
    tested = in_ps + out_ps
    for name, g in r["grader"].items():
        per = g["input_tokens_per_sample"] + g["output_tokens_per_sample"]
        out.add("cost", f"grader {name}: tokens per sample", per, "tok", "tested model's tokens per sample",
                tested, _ratio(per, tested), "grader / tested", "", None,
                f"{g['calls_per_sample']:.2f} calls per sample ({g['input_tokens_per_sample']:,.0f} in, "
                f"{g['output_tokens_per_sample']:,.0f} out)")
    imp = r["grader"].get("af-improved")
    if imp and imp["input_tokens_per_sample"]:
        out.add("cost", "grader af-improved: uncached input per sample, with caching",
                imp["distinct_input_tokens_per_sample"], "tok", "no caching", imp["input_tokens_per_sample"],
                _ratio(imp["distinct_input_tokens_per_sample"], imp["input_tokens_per_sample"]),
                "cached / uncached", "", None,
                "its votes send the same prompt: all but the first are cache reads")
    one = (imp or {}).get("one_request")
    if imp and one and imp["calls"]:
        out.add("cost", "grader af-improved: requests per sample, votes in one request (n)",
                one["calls_per_sample"], "calls", "one call per vote", imp["calls_per_sample"],
                _ratio(one["calls_per_sample"], imp["calls_per_sample"]), "one request / separate", "", None,
                f"{one['votes']:,} votes in {one['calls']:,} requests to an OpenAI-compatible loopback grader; "
                f"{imp['calls']:,} calls to a provider without n")
        out.add("cost", "grader af-improved: input tokens per sample, votes in one request (n)",
                one["input_tokens_per_sample"], "tok", "one call per vote", imp["input_tokens_per_sample"],
                _ratio(one["input_tokens_per_sample"], imp["input_tokens_per_sample"]), "one request / separate",
                "", None, "the prompt is paid once per transcript; the output is the same votes either way")
        # the other classifiers ask one vote: the same one call either way (the loopback pass can
        # make a few more of them, where identical prompts were sent together and so missed
        # Inspect's cache that the instant in-process grader had already filled)
        every = sum(g["input_tokens_per_sample"] for g in r["grader"].values())
        every_one = every - imp["input_tokens_per_sample"] + one["input_tokens_per_sample"]
        out.add("cost", "grader, all 4 classifiers: input tokens per sample, votes in one request (n)", every_one,
                "tok", "one call per vote", every, _ratio(every_one, every), "one request / separate", "", None,
                "af-improved's votes in one request; af-original, partial and motivation one call each either way")
    out.add("cost", "re-scoring with all 4 classifiers (instant grader)", r["score_s"] / max(r["grader_calls"], 1) * 1000,
            "ms/call", "", None, None, "", "", None,
            f"{r['grader_calls']} grader calls in {r['score_s']:.1f} s: aflab + Inspect overhead per grader call")


def bench_embedded(cfg: dict[str, Any], scratch: Path, out: Results, threads: int, simultaneous: bool) -> None:
    spec = {"threads": threads, "n_ctx": 16384, "gen_tokens": cfg["embedded_gen_tokens"],
            "system_chars": cfg["embedded_system_chars"], "simultaneous": simultaneous}
    try:
        r = run_worker("embedded", spec, scratch, timeout=1200)
    except WorkerFailed as ex:
        if _unavailable(ex):
            out.skipped["embedded"] = str(ex)
        else:
            out.failures["embedded"] = str(ex)
        return
    out.raw["embedded"] = r
    a, d = r["runs"]["aflab"], r["runs"]["direct"]

    def prefill_rate(x: dict[str, Any]) -> float:
        return (x["prompt_tokens"] - x["cached"]) / x["wall_s"]

    def gen_rate(x: dict[str, Any]) -> float:  # the one re-evaluated prompt token's time left out
        return x["output_tokens"] / (x["wall_s"] - x["timings"].get("prompt_ms", 0) / 1000)

    pa, pd = prefill_rate(a["prefill"]), prefill_rate(d["prefill"])
    ga, gd = gen_rate(a["generate"]), gen_rate(d["generate"])
    setup = (f"{threads} thread(s) each, n_ctx {r['n_ctx']}, prompt {a['prefill']['prompt_tokens']} tokens, "
             + ("both sides at the same time" if r["simultaneous"] else "one side after the other"))
    out.add("embedded", "prefill tokens/s: aflab llamacpp/default", pa, "tok/s", "xllamacpp called directly", pd,
            _ratio(pa, pd), "aflab / direct", "≥ 0.95", _ratio(pa, pd) is not None and pa / pd >= 0.95,
            f"{setup}; llama.cpp's own timings {a['prefill']['timings'].get('prompt_per_second', 0):.1f} vs "
            f"{d['prefill']['timings'].get('prompt_per_second', 0):.1f} tok/s")
    out.add("embedded", "generation tokens/s: aflab llamacpp/default", ga, "tok/s", "xllamacpp called directly", gd,
            _ratio(ga, gd), "aflab / direct", "≥ 0.95", _ratio(ga, gd) is not None and ga / gd >= 0.95,
            f"{a['generate']['output_tokens']} vs {d['generate']['output_tokens']} tokens (greedy, same text: "
            f"{r['same_text']}); llama.cpp's own timings "
            f"{a['generate']['timings'].get('predicted_per_second', 0):.1f} vs "
            f"{d['generate']['timings'].get('predicted_per_second', 0):.1f} tok/s")
    for side, x in (("aflab", a), ("direct", d)):
        cold, warm = x["prefill"], x["reuse"]
        out.add("embedded", f"next sample, shared system prompt reused ({side})", warm["wall_s"], "s",
                "first sample (cold prefill)", cold["wall_s"], _ratio(cold["wall_s"], warm["wall_s"]),
                "speed-up ×", "large" if side == "aflab" else "", None,
                f"{warm['cached']} of {warm['prompt_tokens']} prompt tokens reused")
    def outside(x: dict[str, Any]) -> float:  # mean ms per call spent outside llama.cpp's compute
        calls = list(x.values())
        return 1000 * sum(c["wall_s"] - (c["timings"].get("prompt_ms", 0) + c["timings"].get("predicted_ms", 0)) / 1000
                          for c in calls) / len(calls)

    out.add("embedded", "time per call outside llama.cpp's compute: aflab", outside(a), "ms", "direct", outside(d),
            None, "", "", None, "wall time minus llama.cpp's own prompt + generation timings, mean of 3 calls: "
            "what the provider adds (template, thread hop, Inspect's generate)")
    out.add("embedded", "model load + first call: aflab", r["load_s"]["aflab"], "s", "direct", r["load_s"]["direct"],
            _ratio(r["load_s"]["aflab"], r["load_s"]["direct"]), "aflab / direct")


def bench_default(cfg: dict[str, Any], scratch: Path, out: Results) -> None:
    """``./dev run``'s main job, cold (no saved prompt prefix) and warm: its wall time against
    llama.cpp's own compute in the same run, so that time lost outside generation shows."""
    if not cfg["default_run"]:
        out.skipped["default"] = "full mode only (two runs of the default job take minutes)"
        return
    try:
        r = run_worker("default_run", {"cache": str(scratch / "default-cache"), "out": str(scratch / "default")},
                       scratch, timeout=1800)
    except WorkerFailed as ex:
        (out.skipped if _unavailable(ex) else out.failures)["default"] = str(ex)
        return
    out.raw["default"] = r
    for name, x in r["runs"].items():
        compute = x["prompt_s"] + x["generate_s"] + x["prefix_s"]
        tokens = x["prompt_tokens"] + x["generated_tokens"]
        out.add("default", f"./dev run's job ({name}): wall time", x["wall_s"], "s",
                "llama.cpp's own compute in it", compute, _ratio(compute, x["wall_s"]), "compute / wall", "≥ 0.8",
                compute / x["wall_s"] >= 0.8,
                f"{x['samples']} samples ({x['queries']} paired queries), {x['malformed']} malformed; "
                f"{x['prompt_tokens']} prompt tokens at {x['prompt_tokens'] / max(x['prompt_s'], 1e-9):.1f} tok/s, "
                f"{x['generated_tokens']} generated at {x['generated_tokens'] / max(x['generate_s'], 1e-9):.1f} tok/s"
                + (f", system prompt prefilled once in {x['prefix_s']:.0f} s" if x["prefix_s"] > 1 else "")
                + f"; {tokens / x['wall_s']:.1f} tokens/s over the whole run")


def bench_memory(cfg: dict[str, Any], scratch: Path, out: Results, threads: int, build: bool) -> str | None:
    """Peak RSS of runs on the mock model and the embedded model. With ``build``, the mock
    run's process then writes the scale benchmark's big log (after its measurement)."""
    big_log = None
    n = cfg["mock_n"]
    spec: dict[str, Any] = {"out": str(scratch / "mock"), "n": n, "concurrency": cfg["mock_concurrency"]}
    if build:
        big_log = scratch / "scale" / "logs" / "big.eval"
        big_log.parent.mkdir(parents=True, exist_ok=True)
        spec["build"] = {"path": str(big_log), "n": cfg["scale_n"]}
    try:
        r = run_worker("mock_run", spec, scratch)
        out.raw["memory.mock"] = r
        out.add("memory", f"peak RSS, {r['samples']}-sample run on the mock model", r["peak_rss_mb"], "MB",
                "same process before the run (imports, task)", r["baseline_rss_mb"],
                _ratio(r["peak_rss_mb"], r["baseline_rss_mb"]), "run / baseline", "", None,
                f"{(r['peak_rss_mb'] - r['baseline_rss_mb']) / r['samples'] * 1024:.0f} KB per sample; "
                f"run took {r['wall_s']:.1f} s; log {r['log_bytes'] / 2**20:.1f} MB")
    except WorkerFailed as ex:
        out.failures["memory.mock"] = str(ex)
        big_log = None
    n = cfg["embedded_run_n"]
    if not n:
        out.skipped["memory.embedded"] = "not in --quick mode (each sample prefills ~150 tokens: ~4 s on 1 core)"
        return str(big_log) if big_log else None
    try:
        r = run_worker("embedded_run", {"out": str(scratch / "embedded-run"), "n": n, "threads": threads,
                                        "n_ctx": 16384, "max_tokens": 1,
                                        "system_chars": cfg["embedded_run_system_chars"]}, scratch, timeout=1200)
        out.raw["memory.embedded"] = r
        out.add("memory", f"peak RSS, {r['samples']}-sample run on the embedded model", r["peak_rss_mb"], "MB",
                "same process, model loaded, one sample answered", r["baseline_rss_mb"],
                _ratio(r["peak_rss_mb"], r["baseline_rss_mb"]), "run / baseline", "", None,
                f"{(r['peak_rss_mb'] - r['baseline_rss_mb']) / r['samples'] * 1024:.0f} KB per sample; "
                f"1-token answers, {cfg['embedded_run_system_chars']}-character system prompt; "
                f"run took {r['wall_s']:.0f} s")
    except WorkerFailed as ex:
        key = "memory.embedded"
        (out.skipped if _unavailable(ex) else out.failures)[key] = str(ex)
    return str(big_log) if big_log else None


def _unavailable(ex: Exception) -> bool:
    """A failure because the embedded model cannot run here (not installed, no weights)."""
    return any(w in str(ex) for w in ("xllamacpp", "WeightsError", "LlamaCppError", "not installed"))


def bench_scale(cfg: dict[str, Any], scratch: Path, out: Results, path: str | None) -> None:
    if path is None or not Path(path).exists():
        out.skipped["scale"] = "no big log (the mock run did not build it)"
        return
    build = out.raw["memory.mock"]["build"]
    try:
        report = run_worker("scale_report", {"path": path, "out": str(scratch / "scale" / "report")}, scratch)
        reads = {what: run_worker("scale_read", {"path": path, "what": what}, scratch)
                 for what in cfg["scale_baselines"]}
    except WorkerFailed as ex:
        out.failures["scale"] = str(ex)
        return
    out.raw["scale"] = {"build": build, "report": report, **{f"read_{k}": v for k, v in reads.items()}}
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in report["phases_s"].items())
    size = f"{build['samples']:,} samples, {build['bytes'] / 2**20:.0f} MB log"
    names = {"full": "Inspect reads the whole log",
             "lean": "Inspect reads samples without messages/events, + results()",
             "summaries": "Inspect reads header + sample summaries"}
    for what, r in reads.items():
        note = phases if what == "full" else ""
        if what == "lean":
            note = f"same results as the report: {r['results_digest'] == report['results_digest']}"
        out.add("scale", f"report wall time ({size})", report["wall_s"], "s", names[what], r["wall_s"],
                _ratio(report["wall_s"], r["wall_s"]), "report / baseline", "", None, note)
    for what, r in reads.items():
        out.add("scale", "report peak RSS", report["peak_rss_mb"], "MB", names[what], r["peak_rss_mb"],
                _ratio(report["peak_rss_mb"], r["peak_rss_mb"]), "report / baseline")


# ------------------------------------------------------------------------------------
# output


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "–"
    if unit in ("tok", "MB") or abs(x) >= 1000:
        text = f"{x:,.0f}"
    elif abs(x) >= 100:
        text = f"{x:.0f}"
    elif abs(x) >= 10:
        text = f"{x:.1f}"
    else:
        text = f"{x:.2f}"
    return f"{text} {unit}".strip()


def print_table(res: Results, header: str) -> None:
    rows = []
    for f in res.figures:
        ratio = "–" if f.ratio is None else (f"{f.ratio:.1f}×" if f.ratio_means == "speed-up ×" else f"{f.ratio:.2f}")
        verdict = "" if f.met is None else (" ✓" if f.met else " ✗")
        baseline = f"{_fmt(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline_name else ""
        rows.append((f.section, f.name, _fmt(f.value, f.unit), baseline,
                     f"{ratio} {f.ratio_means}".strip() if f.ratio is not None else "–",
                     f"{f.target}{verdict}"))
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=header, show_lines=False)
        for col in ("", "figure", "value", "baseline (same run)", "ratio", "target"):
            table.add_column(col, overflow="fold")
        section = None
        for row in rows:
            table.add_row(row[0] if row[0] != section else "", *row[1:])
            section = row[0]
        Console(width=max(160, shutil.get_terminal_size().columns)).print(table)
    except ImportError:
        print(header)
        for row in rows:
            print(" | ".join(row))
    for f in res.figures:
        if f.note:
            print(f"  [{f.section}] {f.name}: {f.note}")
    for key, why in res.skipped.items():
        print(f"  skipped {key}: {why}")
    for key, why in res.failures.items():
        print(f"  FAILED {key}: {why}")
    for note in res.notes:
        print(f"  note: {note}")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(), "python": platform.python_version(), "commit": commit,
        "versions": {d: _version(d) for d in ("aflab", "inspect_ai", "openai", "xllamacpp", "pydantic")},
    }


def write_results(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    temporary.replace(path)


def bench_activations(cfg: dict[str, Any], scratch: Path, out: Results) -> None:
    """Per prompt, ``aflab probe activations``'s capture with the shared system prompt cached
    against the prompt run whole."""
    if cfg["activations"] is None:
        out.skipped["activations"] = "full mode only (the embedded model loads into transformers in ~40 s)"
        return
    try:
        r = run_worker("activations", cfg["activations"], scratch, timeout=1800)
    except WorkerFailed as ex:
        (out.skipped if _unavailable(ex) or "gguf" in str(ex) else out.failures)["activations"] = str(ex)
        return
    out.raw["activations"] = r
    cached, whole = r["cached_s"] / r["prompts"], r["whole_s"] / r["whole_prompts"]
    out.add("activations", "probe activations: a prompt after the cached system prompt", cached, "s",
            "the prompt run whole", whole, _ratio(whole, cached), "speed-up ×", "large", None,
            f"{r['prompt_tokens']}-token prompts, {r['prefix_tokens']} shared (computed once in {r['prefix_s']:.0f} s); "
            f"{r['prompts']} prompts in batches vs {r['whole_prompts']} one at a time; largest activation difference "
            f"{r['max_abs_difference']:.2g} (activations up to {r['activation_scale']:.3g}), same answers: "
            f"{r['same_answers']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="aflab benchmarks (figures as ratios to same-run baselines)")
    parser.add_argument("--quick", action="store_true", help="CI smoke test: small sizes, under 2 minutes")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads for the embedded model, both sides (default 1: stable on a "
                             "shared 2-core machine)")
    parser.add_argument("--embedded-sequential", action="store_true",
                        help="run the embedded model's two sides one after the other (default: at the same "
                             "moment, so that both see the same machine load)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated subset of: " + ", ".join(SECTIONS))
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the results (default benchmarks/results.json; with --quick "
                             "benchmarks/results-quick.json, with --only a subset benchmarks/results-partial.json, "
                             "neither committed)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, reports)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = MODES[mode]
    only = {s.strip() for s in args.only.split(",")}
    # a partial run never replaces the last full results
    default = "results-quick.json" if args.quick else "results.json" if only >= set(SECTIONS) else "results-partial.json"
    args.output = args.output or HERE / default
    started = time.perf_counter()
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="aflab-bench-"))
    res = Results()
    try:
        log = bench_harness(cfg, scratch, res) if "harness" in only else None
        if "cost" in only:
            bench_cost(cfg, scratch, res, log)
        big_log = bench_memory(cfg, scratch, res, args.threads, build="scale" in only) \
            if "memory" in only or "scale" in only else None
        if "scale" in only:
            bench_scale(cfg, scratch, res, big_log)
        if "embedded" in only:
            bench_embedded(cfg, scratch, res, args.threads, not args.embedded_sequential)
        if "default" in only:
            bench_default(cfg, scratch, res)
        if "activations" in only:
            bench_activations(cfg, scratch, res)
    finally:
        if args.keep:
            print(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    res.notes.append(f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after: "
                     "other work on the machine slows both sides of every ratio")
    info = machine_info()
    header = (f"aflab benchmarks ({mode}) — {wall:.0f} s on {info['cpus_usable']} CPU(s), "
              f"Python {info['python']}, inspect_ai {info['versions']['inspect_ai']}")
    print_table(res, header)
    payload = {
        "schema": SCHEMA, "mode": mode, "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_s": round(wall, 1), "machine": info, "config": cfg | {"threads": args.threads, "only": sorted(only)},
        "figures": [asdict(f) for f in res.figures], "skipped": res.skipped, "failures": res.failures,
        "notes": res.notes, "raw": res.raw,
    }
    write_results(args.output, payload)
    print(f"results written to {args.output}")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
