"""One measurement per process: ``python benchmarks/workers.py NAME 'SPEC-JSON'``.

Each worker runs in a fresh interpreter (started by ``run.py``) so that peak memory and
one-time start-up costs of one measurement never leak into another. It prints its result
as the last stdout line, ``@@RESULT {json}``. Timers start after the imports that any
``aflab`` command pays before doing work (``aflab.experiment``, ``aflab.tasks``).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from simulated import FREE_TAG, grader_answer, grader_classifier, turn_for_messages  # noqa: E402

RESULT_MARK = "@@RESULT "


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def log_path(out: Path, res: dict[str, Any]) -> Path:
    return (out / res["log"]).resolve()


# ------------------------------------------------------------------------------------
# harness throughput


def harness(spec: dict[str, Any]) -> dict[str, Any]:
    """aflab's full run (task, eval_set, log, report) against the loopback server."""
    os.environ["LOCAL_BASE_URL"] = spec["base_url"]
    os.environ["LOCAL_API_KEY"] = "benchmark"
    from aflab.experiment import run_experiment
    from aflab.report import write_report
    from aflab.tasks import alignment_faking

    out = Path(spec["out"])
    rss_before = peak_rss_mb()
    start_at = time.monotonic()
    start = time.perf_counter()
    cpu = time.process_time()
    task = alignment_faking("helpful_only", queries=spec["n"] // 2)
    built = time.perf_counter()
    success, res = run_experiment(task, "openai-api/local/bench", out, display="none",
                                  max_connections=spec["concurrency"],  # None: Inspect's default
                                  **spec.get("eval_args", {}))
    wall = time.perf_counter() - start
    cpu_s = time.process_time() - cpu  # every thread of this process: the harness's own cost
    end_at = time.monotonic()
    rss_after = peak_rss_mb()
    # the report's share of that wall time: the same call again
    again = time.perf_counter()
    write_report(log_path(out, res), Path(tempfile.mkdtemp(prefix="report-", dir=out)))
    report_s = time.perf_counter() - again
    n = sum(c["n"] for c in res["cues"].values())
    return {
        "success": success, "samples": n, "errors": sum(c["error"] for c in res["cues"].values()),
        "wall_s": wall, "cpu_s": cpu_s, "task_build_s": built - start, "report_s": report_s,
        "start_at": start_at, "end_at": end_at,
        "log": str(log_path(out, res)), "log_bytes": log_path(out, res).stat().st_size,
        "peak_rss_mb": rss_after, "rss_before_mb": rss_before,
        "usage": res["usage"],
    }


def openai_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """The baseline: the same requests through a bare asyncio loop over the OpenAI client,
    once per ``spec["runs"]`` entry (each against its own server, with its own sample count
    ``n``: the first ``n`` of aflab's samples, as ``alignment_faking(queries=n // 2)`` has)."""
    from openai import AsyncOpenAI

    from aflab.dataset import paired_dataset
    from aflab.settings import load_setting

    setting = load_setting("helpful_only")
    system = setting.system_prompt()
    samples = paired_dataset(setting, queries=max(run["n"] for run in spec["runs"]) // 2)
    requests = [[{"role": "system", "content": system}, {"role": "user", "content": s.input}]
                for s in samples]

    async def main(base_url: str, concurrency: int, n: int) -> tuple[float, int]:
        client = AsyncOpenAI(base_url=base_url, api_key="benchmark", max_retries=0)
        gate = asyncio.Semaphore(concurrency)

        async def one(messages: list[dict[str, str]]) -> str:
            async with gate:
                r = await client.chat.completions.create(
                    model="bench", messages=messages, temperature=1.0, max_tokens=4000)  # type: ignore[arg-type]
                return r.choices[0].message.content or ""

        start = time.perf_counter()
        texts = await asyncio.gather(*(one(m) for m in requests[:n]))
        wall = time.perf_counter() - start
        await client.close()
        return wall, sum(bool(t) for t in texts)

    runs = []
    for run in spec["runs"]:
        start_at = time.monotonic()
        cpu = time.process_time()
        wall, answered = asyncio.run(main(run["base_url"], run["concurrency"], run["n"]))
        runs.append({"concurrency": run["concurrency"], "wall_s": wall, "cpu_s": time.process_time() - cpu,
                     "samples": run["n"], "answered": answered, "start_at": start_at, "end_at": time.monotonic()})
    return {"runs": runs}


# ------------------------------------------------------------------------------------
# memory: a run on Inspect's mock model, and on the embedded model


def _mock_output(messages, tools, tool_choice, config):  # noqa: ANN001 (Inspect's callable)
    from inspect_ai.model import ModelOutput, ModelUsage

    text = turn_for_messages([{"role": m.role, "content": m.text} for m in messages])
    output = ModelOutput.from_content(model="mockllm", content=text, stop_reason="stop")
    # usage given, so Inspect does not count tokens itself (tiktoken would download)
    n_in = sum(len(m.text) for m in messages) // 4
    output.usage = ModelUsage(input_tokens=n_in, output_tokens=len(text) // 4,
                              total_tokens=n_in + len(text) // 4)
    return output


def mock_run(spec: dict[str, Any]) -> dict[str, Any]:
    from inspect_ai.model import get_model

    from aflab.experiment import run_experiment
    from aflab.tasks import alignment_faking

    out = Path(spec["out"])
    model = get_model("mockllm/model", custom_outputs=_mock_output)
    task = alignment_faking("helpful_only", queries=spec["n"] // 2)
    baseline = peak_rss_mb()  # interpreter + Inspect + aflab imported, task built
    start = time.perf_counter()
    success, res = run_experiment(task, model, out, display="none", max_connections=spec["concurrency"])
    wall = time.perf_counter() - start
    result = {"success": success, "samples": sum(c["n"] for c in res["cues"].values()), "wall_s": wall,
              "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(), "log": str(log_path(out, res)),
              "log_bytes": log_path(out, res).stat().st_size}
    if spec.get("build"):  # after the measurement: the scale benchmark's big log, from this one
        result["build"] = scale_build({**spec["build"], "source": result["log"]})
    return result


def embedded_run(spec: dict[str, Any]) -> dict[str, Any]:
    """A run on the embedded model: short answers (memory, not speed, is measured)."""
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser, GenerateConfig, get_model

    from aflab.experiment import run_experiment
    from aflab.settings import load_setting
    from aflab.tasks import alignment_faking

    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    setting = load_setting("helpful_only")
    prompt_file = out / "system_prompt.txt"
    prompt_file.write_text(setting.system_prompt(scratchpad=False)[: spec["system_chars"]], encoding="utf-8")
    model = get_model("llamacpp/default", n_threads=spec["threads"], n_ctx=spec["n_ctx"])
    task = alignment_faking("helpful_only", queries=spec["n"] // 2, scratchpad=False,
                            system_prompt=str(prompt_file))
    # baseline: the model loaded and one sample's prompt answered, in this same process
    first = task.dataset[0]
    start = time.perf_counter()
    asyncio.run(model.generate([ChatMessageSystem(content=prompt_file.read_text()),
                                ChatMessageUser(content=str(first.input))],
                               config=GenerateConfig(max_tokens=spec["max_tokens"], temperature=0)))
    load_s = time.perf_counter() - start
    baseline = peak_rss_mb()
    start = time.perf_counter()
    success, res = run_experiment(task, model, out, display="none", max_tokens=spec["max_tokens"],
                                  temperature=0)
    wall = time.perf_counter() - start
    return {"success": success, "samples": sum(c["n"] for c in res["cues"].values()), "wall_s": wall,
            "load_and_first_s": load_s, "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb()}


def default_run(spec: dict[str, Any]) -> dict[str, Any]:
    """``aflab run`` as ``./dev run`` calls it, twice: first with no saved prompt prefix (a
    new machine's first run), then again into a new folder (the prefix restored). Per run:
    wall time, and llama.cpp's own compute time and token counts summed over the log."""
    from inspect_ai.log import read_eval_log

    from aflab.cli.main import main
    from aflab.providers.weights import cache_dir

    weights = cache_dir() / "models"
    os.environ["AFLAB_CACHE_DIR"] = str(Path(spec["cache"]))
    (Path(spec["cache"])).mkdir(parents=True, exist_ok=True)
    models = Path(spec["cache"]) / "models"
    if not models.exists():
        models.symlink_to(weights)  # the joined weights are shared; the KV prefix starts cold
    runs = {}
    for name in ("cold", "warm"):
        out = Path(spec["out"]) / name
        start = time.perf_counter()
        try:
            main(["run", "--out", str(out)])
        except SystemExit as exit_:
            if exit_.code:
                raise RuntimeError(f"aflab run exited {exit_.code}") from None
        wall = time.perf_counter() - start
        res = json.loads((out / "results.json").read_text())
        log = read_eval_log(str(log_path(out, res)))
        totals = {"prompt_tokens": 0, "prompt_s": 0.0, "generated_tokens": 0, "generate_s": 0.0, "prefix_s": 0.0}
        for sample in log.samples or []:
            for event in sample.events:
                if event.event != "model":
                    continue
                meta = event.output.metadata or {}
                timings = meta.get("timings") or {}
                totals["prompt_tokens"] += timings.get("prompt_n", 0)
                totals["prompt_s"] += timings.get("prompt_ms", 0) / 1000
                totals["generated_tokens"] += timings.get("predicted_n", 0)
                totals["generate_s"] += timings.get("predicted_ms", 0) / 1000
                totals["prefix_s"] += (meta.get("prefix_cache") or {}).get("seconds", 0)
        runs[name] = {"wall_s": wall, **totals, "samples": sum(c["n"] for c in res["cues"].values()),
                      "queries": (res["gap"] or {}).get("n_queries"),
                      "malformed": sum(c["malformed"] for c in res["cues"].values()),
                      "gap": res["gap"], "decision_gap": (res["decision"] or {}).get("gap")}
    return {"runs": runs, "peak_rss_mb": peak_rss_mb()}


# ------------------------------------------------------------------------------------
# scale: report on a large log


def scale_build(spec: dict[str, Any]) -> dict[str, Any]:
    """A synthetic log of ``n`` samples, replicated from a real aflab log (mock run)."""
    from inspect_ai.log import read_eval_log, write_eval_log

    source = read_eval_log(spec["source"])
    assert source.samples
    template = source.samples
    samples = []
    for i in range(spec["n"]):
        base = template[i % len(template)]
        cue = base.metadata["cue"]
        qid = f"synthetic-{i // 2:05d}"
        samples.append(base.model_copy(update={
            "id": f"{qid}-{cue}", "metadata": {**base.metadata, "query_id": qid}}))
    source.samples = samples
    source.eval.dataset.samples = len(samples)
    start = time.perf_counter()
    write_eval_log(source, spec["path"])
    return {"samples": len(samples), "write_s": time.perf_counter() - start,
            "bytes": Path(spec["path"]).stat().st_size}


def scale_report(spec: dict[str, Any]) -> dict[str, Any]:
    from aflab.report import figure, load_log, markdown, results, write_report

    start = time.perf_counter()
    res = write_report(spec["path"], spec["out"])
    wall = time.perf_counter() - start
    peak = peak_rss_mb()
    digest = _digest(res)
    # where the time goes (the file is in the page cache now, as it was for the baselines)
    t0 = time.perf_counter()
    log = load_log(spec["path"])
    t1 = time.perf_counter()
    res = results(log)
    t2 = time.perf_counter()
    figure(res, Path(spec["out"]) / "again.png")
    t3 = time.perf_counter()
    markdown(res, "again.png")
    t4 = time.perf_counter()
    return {"wall_s": wall, "peak_rss_mb": peak, "results_digest": digest,
            "phases_s": {"read log": t1 - t0, "results": t2 - t1, "figure": t3 - t2, "markdown": t4 - t3}}


def _digest(res: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps({k: v for k, v in res.items() if k != "log"}, sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


LEAN_EXCLUDE = {"messages", "events", "store", "attachments", "output"}
"""Sample fields ``aflab.report.results`` never reads."""


def scale_read(spec: dict[str, Any]) -> dict[str, Any]:
    """Baselines: what Inspect itself needs to read the log: all of it (``full``), the
    samples without the fields the report never reads (``lean``, then ``results`` on it),
    or the header and sample summaries (``summaries``)."""
    from inspect_ai.log import read_eval_log, read_eval_log_sample_summaries

    from aflab.report import results

    start = time.perf_counter()
    digest = None
    if spec["what"] == "full":
        log = read_eval_log(spec["path"])
        n = len(log.samples or [])
    elif spec["what"] == "lean":
        log = read_eval_log(spec["path"], exclude_fields=LEAN_EXCLUDE)
        n = len(log.samples or [])
        digest = _digest(results(log, log_path=spec.get("log_path")))
    else:
        read_eval_log(spec["path"], header_only=True)
        n = len(read_eval_log_sample_summaries(spec["path"]))
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(), "samples": n,
            "results_digest": digest}


# ------------------------------------------------------------------------------------
# cost per finding


class _Tokenizer:
    """Exact counts with the embedded model's tokenizer, else ~4 characters a token."""

    def __init__(self) -> None:
        self.name = "chars/4 (embedded model unavailable)"
        self._model = None
        self._cache: dict[str, int] = {}
        try:
            from inspect_ai.model import get_model

            model = get_model("llamacpp/default", n_threads=1, n_ctx=2048, prefix_cache=False)
            asyncio.run(model.api.tokenize("hello"))  # type: ignore[attr-defined]
            self._model = model
            self.name = "Qwen2.5 tokenizer (embedded model)"
        except Exception as ex:  # noqa: BLE001
            self.name += f": {type(ex).__name__}"

    def count_all(self, texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if self._model is None:
            self._cache.update({t: (len(t) + 3) // 4 for t in todo})
            return

        async def run() -> list[int]:
            return [len(await self._model.api.tokenize(t)) for t in todo]  # type: ignore[union-attr]

        self._cache.update(zip(todo, asyncio.run(run()), strict=True))

    def __call__(self, text: str) -> int:
        if text not in self._cache:
            self.count_all([text])
        return self._cache[text]


@contextmanager
def _grader_server(seen: list[tuple[str, int]]) -> Iterator[str]:
    """A loopback OpenAI-compatible grader for the votes-in-one-request pass: it answers a
    request for ``n`` choices with ``n`` copies of ``grader_answer`` and records each
    request's prompt and ``n`` in ``seen``. Yields its base URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    lock = threading.Lock()

    def text(content: Any) -> str:  # a string, or a list of content parts
        return content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = "\n".join(text(m.get("content")) for m in body["messages"])
            n = body.get("n") or 1
            with lock:
                seen.append((prompt, n))
            answer = grader_answer(prompt)
            usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": n * len(answer) // 4}
            payload = json.dumps({
                "id": f"chatcmpl-grader-{len(seen)}", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "usage": usage | {"total_tokens": sum(usage.values())},
                "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
                            for i in range(n)],
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def cost(spec: dict[str, Any]) -> dict[str, Any]:
    """Tokens per sample and per run from a harness log; grader calls and tokens per
    classifier from re-scoring a copy of it with an instant fake grader, twice: on a
    provider without ``n`` (each vote a call), and on an OpenAI-compatible loopback grader
    that takes ``n`` (a transcript's votes in one request)."""
    os.environ["INSPECT_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-inspect-cache-")
    # Inspect's score() re-creates the log's model although scoring never calls it: the
    # tested model's credentials must be set (to anything) to re-score a run
    os.environ.setdefault("LOCAL_API_KEY", "benchmark")
    os.environ.setdefault("LOCAL_BASE_URL", "http://127.0.0.1:9/v1")
    from inspect_ai.log import read_eval_log
    from inspect_ai.model import (
        ChatCompletionChoice, ChatMessageAssistant, ChatMessageSystem, ModelAPI,
        ModelOutput, ModelUsage, modelapi,
    )

    from aflab.experiment import score_run

    calls: list[tuple[str, str, str]] = []  # classifier, prompt, answer

    class FakeGrader(ModelAPI):
        async def generate(self, input, tools, tool_choice, config):  # noqa: ANN001
            prompt = "\n".join(m.text for m in input)
            answer = grader_answer(prompt)
            calls.append((grader_classifier(prompt), prompt, answer))
            return ModelOutput(model=self.model_name, choices=[ChatCompletionChoice(
                message=ChatMessageAssistant(content=answer, model=self.model_name), stop_reason="stop")],
                usage=ModelUsage(input_tokens=len(prompt) // 4, output_tokens=len(answer) // 4,
                                 total_tokens=(len(prompt) + len(answer)) // 4))

        def max_connections(self) -> int:
            return 50

    modelapi(name="benchgrader")(lambda: FakeGrader)

    log = read_eval_log(spec["log"])
    samples = log.samples or []
    # the tested model's calls, rebuilt from each sample's conversation
    per_sample: list[list[tuple[list[str], str]]] = []  # calls: (input texts, output text)
    system_prompt = ""
    for s in samples:
        history: list[str] = []
        sample_calls = []
        for m in s.messages:
            if isinstance(m, ChatMessageAssistant):
                sample_calls.append((list(history), m.text))
            elif isinstance(m, ChatMessageSystem):
                system_prompt = m.text
            history.append(m.text)
        per_sample.append(sample_calls)

    # grader: re-score a copy of the log with every classifier
    scratch = Path(tempfile.mkdtemp(prefix="bench-cost-"))
    for run in ("run", "run-n"):
        (scratch / run / "logs").mkdir(parents=True)
        shutil.copy(spec["log"], scratch / run / "logs" / Path(spec["log"]).name)
    classifiers = ["af-original", "af-improved", "partial", "motivation"]
    start = time.perf_counter()
    score_run(scratch / "run", classifiers, grader="benchgrader/fake", display="none")
    score_s = time.perf_counter() - start
    # the same with votes in one request: Inspect's OpenAI-compatible provider sends num_choices as n
    from inspect_ai.model import get_model

    requests: list[tuple[str, int]] = []  # prompt, choices asked
    with _grader_server(requests) as base_url:
        score_run(scratch / "run-n", classifiers, display="none",
                  grader=get_model("openai-api/bench/grader", base_url=base_url, api_key="benchmark"))

    tokenizer = _Tokenizer()
    texts = [system_prompt] + [t for sc in per_sample for ins, out in sc for t in [*ins, out]]
    texts += [p for _, p, _ in calls] + [a for _, _, a in calls] + [p for p, _ in requests]
    tok_start = time.perf_counter()
    tokenizer.count_all(texts)
    tokenize_s = time.perf_counter() - tok_start

    n = len(samples)
    system_tokens = tokenizer(system_prompt)
    n_calls = sum(len(sc) for sc in per_sample)
    input_tokens = sum(tokenizer(t) for sc in per_sample for ins, _ in sc for t in ins)
    output_tokens = sum(tokenizer(out) for sc in per_sample for _, out in sc)
    grader: dict[str, Any] = {}
    for name in classifiers:
        mine = [(p, a) for c, p, a in calls if c == name]
        grader[name] = {
            "calls": len(mine), "calls_per_sample": len(mine) / n,
            "input_tokens_per_sample": sum(tokenizer(p) for p, _ in mine) / n,
            "output_tokens_per_sample": sum(tokenizer(a) for _, a in mine) / n,
            # a vote repeats its sample's prompt exactly: with a prompt cache, only the
            # first of each distinct prompt is uncached input
            "distinct_input_tokens_per_sample": sum(tokenizer(p) for p in dict.fromkeys(p for p, _ in mine)) / n,
        }
        asked = [(p, k) for p, k in requests if grader_classifier(p) == name]
        grader[name]["one_request"] = {
            "calls": len(asked), "calls_per_sample": len(asked) / n, "votes": sum(k for _, k in asked),
            "input_tokens_per_sample": sum(tokenizer(p) for p, _ in asked) / n,
        }
    unknown = sum(c == "unknown" for c, _, _ in calls)
    return {
        "tokenizer": tokenizer.name, "samples": n, "calls": n_calls, "system_prompt_tokens": system_tokens,
        "input_tokens": input_tokens, "output_tokens": output_tokens, "grader": grader,
        "grader_calls": len(calls), "unrecognised_grader_calls": unknown, "score_s": score_s,
        "tokenize_s": tokenize_s, "free_share": sum(FREE_TAG in str(s.input) for s in samples) / max(n, 1),
        "usage_in_log": {k: v.model_dump(exclude_none=True) for k, v in log.stats.model_usage.items()},
    }


# ------------------------------------------------------------------------------------
# embedded model: aflab's provider vs llama.cpp (xllamacpp) directly


def embedded(spec: dict[str, Any]) -> dict[str, Any]:
    from inspect_ai.model import (
        ChatMessageAssistant, ChatMessageSystem, ChatMessageUser, GenerateConfig, get_model,
    )

    from aflab.providers.llamacpp import template_messages
    from aflab.settings import load_setting

    threads, n_ctx, gen_tokens = spec["threads"], spec["n_ctx"], spec["gen_tokens"]
    setting = load_setting("helpful_only")
    system = setting.system_prompt()
    if spec.get("system_chars"):
        system = system[: spec["system_chars"]]
    queries = setting.queries()

    def conversation(i: int, training: bool) -> list[Any]:
        return [ChatMessageSystem(content=system),
                ChatMessageUser(content=setting.user_turn(queries[i].text, training=training)),
                # a prefill, as aflab's solver does on this provider; this one makes the
                # model reason at length, so that generation runs to gen_tokens
                ChatMessageAssistant(content="<SCRATCHPAD_REASONING>")]

    # aflab: the provider as Inspect uses it (persisted prefixes off: plain prefill on both sides)
    t = time.perf_counter()
    model = get_model("llamacpp/default", n_threads=threads, n_ctx=n_ctx, prefix_cache=False)
    api = model.api
    asyncio.run(model.generate("Hi", config=GenerateConfig(max_tokens=1, temperature=0)))
    aflab_load = time.perf_counter() - t

    # llama.cpp directly: the same weights, context, threads; everything else llama.cpp's defaults
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(api.model_path)  # type: ignore[attr-defined]
    params.n_ctx = api.options.n_ctx  # type: ignore[attr-defined]
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = 0
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    t = time.perf_counter()
    direct = xllamacpp.Server(params)
    direct.handle_completions({"prompt": "Hi", "max_tokens": 1, "temperature": 0})
    direct_load = time.perf_counter() - t
    template = api.template  # type: ignore[attr-defined]

    def run_aflab(messages: list[Any], max_tokens: int) -> dict[str, Any]:
        start = time.perf_counter()
        out = asyncio.run(model.generate(messages, config=GenerateConfig(max_tokens=max_tokens, temperature=0)))
        wall = time.perf_counter() - start
        u = out.usage
        assert u is not None
        return {"wall_s": wall, "prompt_tokens": u.input_tokens + (u.input_tokens_cache_read or 0),
                "cached": u.input_tokens_cache_read or 0, "output_tokens": u.output_tokens,
                "text": out.completion, "timings": (out.metadata or {}).get("timings", {})}

    def run_direct(prompt: str, max_tokens: int) -> dict[str, Any]:
        start = time.perf_counter()
        r = direct.handle_completions({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
        wall = time.perf_counter() - start
        u = r["usage"]
        return {"wall_s": wall, "prompt_tokens": u["prompt_tokens"],
                "cached": (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
                "output_tokens": u["completion_tokens"], "text": r["choices"][0]["text"],
                "timings": r.get("timings", {})}

    def both(messages: list[Any], max_tokens: int) -> dict[str, dict[str, Any]]:
        """One call on each side: at the same moment (so that both see the same machine:
        llama.cpp releases the GIL), or one after the other."""
        prompt, _ = template.build(template_messages(messages))  # the string aflab sends, built untimed
        done: dict[str, dict[str, Any]] = {}
        if not spec.get("simultaneous", True):
            done["direct"] = run_direct(prompt, max_tokens)
            done["aflab"] = run_aflab(messages, max_tokens)
            return done
        barrier = threading.Barrier(2)

        def direct_side() -> None:
            barrier.wait()
            done["direct"] = run_direct(prompt, max_tokens)

        thread = threading.Thread(target=direct_side)
        thread.start()
        barrier.wait()
        done["aflab"] = run_aflab(messages, max_tokens)
        thread.join()
        return done

    runs: dict[str, dict[str, Any]] = {"aflab": {}, "direct": {}}
    phases = {
        "prefill": (conversation(0, True), 1),  # cold: nothing of this prompt is cached yet
        "generate": (conversation(0, True), gen_tokens),  # the same prompt: cached, then generate
        "reuse": (conversation(1, False), 1),  # another query, same system prompt: only the new part
    }
    for phase, (messages, max_tokens) in phases.items():
        for side, r in both(messages, max_tokens).items():
            runs[side][phase] = r
    for side in runs.values():
        for r in side.values():
            r["text"] = r["text"][:80]
    result = {"threads": threads, "n_ctx": api.options.n_ctx, "gen_tokens": gen_tokens,  # type: ignore[attr-defined]
              "simultaneous": spec.get("simultaneous", True),
              "system_chars": len(system), "load_s": {"aflab": aflab_load, "direct": direct_load},
              "runs": runs,
              "same_text": runs["aflab"]["generate"]["text"] == runs["direct"]["generate"]["text"]}
    del direct
    model.api.close()  # type: ignore[attr-defined]
    return result


# ------------------------------------------------------------------------------------
# activation probes: the shared system prompt cached, or every prompt run whole


def activations(spec: dict[str, Any]) -> dict[str, Any]:
    """``aflab probe activations``'s capture on the embedded model (through transformers):
    the prompts after their shared, cached system prompt, against the same prompts run
    whole one at a time, with what each captured."""
    import numpy as np
    from transformers import AutoModelForCausalLM

    from aflab.probes.activations import capture as cap_stage
    from aflab.settings import load_setting
    from aflab.training.common import hf_source, load_tokenizer

    start = time.perf_counter()
    source, source_args = hf_source("llamacpp/default")
    tokenizer = load_tokenizer("llamacpp/default")
    model = AutoModelForCausalLM.from_pretrained(source, **source_args).eval()
    load_s = time.perf_counter() - start
    setting = load_setting("helpful_only")
    texts = cap_stage.prompts(tokenizer, setting.system_prompt(scratchpad=False),
                        [setting.user_turn(q.text, training=cue) for q in setting.queries()[: spec["queries"]]
                         for cue in (True, False)])
    layers, tokens = [spec["layer"]], spec["tokens"]
    start = time.perf_counter()
    prefix = cap_stage.shared_prefix(model, tokenizer, texts)
    prefix_s = time.perf_counter() - start
    start = time.perf_counter()
    cached, cached_answers = cap_stage.generate(model, tokenizer, texts, layers=layers, max_new_tokens=tokens,
                                          batch_size=spec["batch_size"], prefix=prefix)
    cached_s = time.perf_counter() - start
    whole = texts[: spec["whole"]]
    start = time.perf_counter()
    plain, plain_answers = cap_stage.generate(model, tokenizer, whole, layers=layers, max_new_tokens=tokens, batch_size=1)
    whole_s = time.perf_counter() - start
    return {"load_s": load_s, "prompts": len(texts), "prompt_tokens": len(cap_stage.encode(tokenizer, texts[:1]).rows[0]),
            "prefix_tokens": len(prefix.ids) if prefix else 0, "prefix_s": prefix_s, "cached_s": cached_s,
            "whole_prompts": len(whole), "whole_s": whole_s,
            "max_abs_difference": float(np.abs(cached[:, : len(whole)] - plain).max()),
            "activation_scale": float(np.abs(plain).max()),
            "same_answers": cached_answers[: len(whole)] == plain_answers, "peak_rss_mb": peak_rss_mb()}


def imports(spec: dict[str, Any]) -> dict[str, Any]:
    """Start-up: how long importing ``spec["modules"]`` takes in a fresh interpreter."""
    import importlib

    start = time.perf_counter()
    for name in spec["modules"]:
        importlib.import_module(name)
    return {"wall_s": time.perf_counter() - start, "modules": spec["modules"], "peak_rss_mb": peak_rss_mb()}


WORKERS = {f.__name__: f for f in (imports, harness, openai_loop, mock_run, embedded_run, scale_build, scale_report,
                                    scale_read, cost, embedded, activations, default_run)}

if __name__ == "__main__":
    name, spec_text = sys.argv[1], sys.argv[2]
    os.environ.setdefault("INSPECT_DISPLAY", "none")
    result = WORKERS[name](json.loads(spec_text))
    print(RESULT_MARK + json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (llama.cpp threads, Inspect's atexit hooks)
