"""llama.cpp runtimes behind one small adapter interface (``Runtime``).

Two implementations:

- ``XllamacppRuntime`` (default, ``-M runtime=xllamacpp``): the prebuilt ``xllamacpp``
  wheel (no compiler). It embeds llama.cpp's server engine in process; completions go
  through ``Server.handle_completions`` (a direct call, no HTTP), and the few things the
  Python API lacks (tokenising, slot save/restore) go through the engine's HTTP routes on
  an ephemeral 127.0.0.1 port guarded by a random API key.
- ``LlamaCppPythonRuntime`` (``-M runtime=llama-cpp-python``): ``llama-cpp-python``,
  faster on CPU when built from source, imported lazily (not a dependency of aflab, and
  not part of the test suite; checked by hand against a source build of 0.3.36).

Both take an already rendered prompt (chat template applied by the caller), reuse the
longest cached KV prefix between consecutive calls, and can write / read the KV state of
a prompt prefix to / from a file so that a later process skips its prefill.

All methods are blocking and must be called from one thread at a time (the provider
serialises them and runs them off the event loop).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

logger = logging.getLogger(__name__)

StopReason = Literal["stop", "max_tokens", "model_length"]
RUNTIMES = ("xllamacpp", "llama-cpp-python")


class RuntimeFailure(RuntimeError):
    """The llama.cpp runtime failed or rejected a request (message says which and why)."""


class ContextOverflow(RuntimeFailure):
    """The prompt does not fit in the context window (``n_ctx``)."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How to load a model (the provider's model args, resolved)."""

    model_path: Path
    n_ctx: int
    n_threads: int  # generation
    n_threads_batch: int | None = None  # prompt processing (None: n_threads)
    n_batch: int = 2048
    n_ubatch: int = 512
    n_gpu_layers: int | None = None  # None: the runtime's default
    state_dir: Path | None = None  # where prefix KV files live (xllamacpp needs it at load)
    verbose: bool = False


@dataclass(frozen=True)
class CompletionRequest:
    """Sampling settings of one completion (from Inspect's GenerateConfig)."""

    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias) pairs added to the logits at every position."""
    grammar: str | None = None
    """A GBNF grammar the completion must follow (llama.cpp's ``grammar``)."""
    top_logprobs: int | None = None
    """Return, for every generated token, its log probability and the ``top_logprobs``
    most likely tokens at its position (the model's own distribution, before sampling)."""


@dataclass
class Completion:
    """What one completion returned. ``text`` is the generated continuation only."""

    text: str
    stop_reason: StopReason
    input_tokens: int  # prompt tokens in total (cached ones included)
    cached_tokens: int  # prompt tokens whose KV was reused
    output_tokens: int
    timings: dict[str, Any] = field(default_factory=dict)
    logprobs: list[dict[str, Any]] | None = None
    """With ``top_logprobs``: one entry per generated token in OpenAI's shape
    (``token``, ``logprob``, ``bytes``, ``top_logprobs``: a list of the same without it)."""


class Runtime(Protocol):
    """The adapter every llama.cpp runtime implements."""

    name: str
    version: str

    def complete(self, prompt: str, request: CompletionRequest) -> Completion:
        """Continue the rendered ``prompt``, reusing any cached KV prefix."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens parsed, no BOS added)."""
        ...

    def save_prefix(self, prefix: str, path: Path) -> int:
        """Evaluate ``prefix`` (reusing the cache) and write its KV state to ``path``.
        Returns the number of tokens saved."""
        ...

    def restore_prefix(self, path: Path) -> int:
        """Load a KV state written by ``save_prefix``; returns its token count.
        Raises RuntimeFailure if the file is unusable."""
        ...

    def close(self) -> None:
        """Free the model and its context (idempotent)."""
        ...


def completion(
    choice: dict[str, Any], request: CompletionRequest, n_ctx: int, *, input_tokens: int, cached_tokens: int,
    output_tokens: int, logprobs: list[dict[str, Any]] | None = None, timings: dict[str, Any] | None = None,
) -> Completion:
    """A ``Completion`` from one choice of an OpenAI-style completion response, whichever
    runtime returned it. A "length" finish is the token limit unless the context was full."""
    stop: StopReason = "stop"
    if choice.get("finish_reason") == "length":
        full = output_tokens < request.max_tokens and input_tokens + output_tokens >= n_ctx - 1
        stop = "model_length" if full else "max_tokens"
    return Completion(text=choice.get("text", ""), stop_reason=stop, input_tokens=input_tokens,
                      cached_tokens=cached_tokens, output_tokens=output_tokens, timings=timings or {},
                      logprobs=logprobs if request.top_logprobs else None)


# --------------------------------------------------------------------------------------
# xllamacpp


class XllamacppRuntime:
    """llama.cpp through ``xllamacpp.Server`` (one slot, prompt cache on)."""

    name = "xllamacpp"

    def __init__(self, options: RuntimeOptions) -> None:
        try:
            import xllamacpp as xlc
        except ImportError as ex:
            raise RuntimeFailure(
                f"the xllamacpp runtime is not installed ({ex}): pip install 'aflab[embedded]'"
            ) from ex
        self.version = getattr(xlc, "__version__", "unknown")
        self.options = options
        self._key = secrets.token_hex(16)
        params = xlc.CommonParams()
        params.model.path = str(options.model_path)
        params.n_ctx = options.n_ctx
        params.n_batch = options.n_batch
        params.n_ubatch = min(options.n_ubatch, options.n_batch)
        params.n_parallel = 1  # one slot: calls are serialised, and its KV prefix is reused
        params.cpuparams.n_threads = options.n_threads
        params.cpuparams_batch.n_threads = options.n_threads_batch or options.n_threads
        if options.n_gpu_layers is not None:
            params.n_gpu_layers = options.n_gpu_layers
        params.cache_prompt = True
        params.cache_ram_mib = 2048  # host-RAM cache of other prompts' KV (default 8 GiB)
        params.verbosity = 3 if options.verbose else 0  # 0: llama.cpp prints nothing
        params.api_keys = [self._key]  # the HTTP routes only answer this process
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # ephemeral
        if options.state_dir is not None:
            options.state_dir.mkdir(parents=True, exist_ok=True)
            # llama.cpp joins this and the file name by plain concatenation
            params.slot_save_path = str(options.state_dir) + os.sep
        try:
            self._server: Any = xlc.Server(params)
        except Exception as ex:  # noqa: BLE001 - surface the runtime's own message
            raise RuntimeFailure(
                f"xllamacpp could not load {options.model_path.name}: {ex}"
            ) from ex
        self._base = str(self._server.listening_address).rstrip("/")
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- helpers
    def _server_or_fail(self) -> Any:
        if self._server is None:
            raise RuntimeFailure("the llamacpp model has been closed")
        return self._server

    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        self._server_or_fail()
        request = urllib.request.Request(
            self._base + route,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
        )
        try:
            with self._http.open(request, timeout=3600) as response:
                result: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as ex:
            detail = ex.read().decode(errors="replace")
            try:
                detail = json.loads(detail)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                pass
            raise RuntimeFailure(f"llama.cpp {route} failed ({ex.code}): {detail}") from ex
        except (urllib.error.URLError, OSError) as ex:
            raise RuntimeFailure(f"llama.cpp {route} unreachable: {ex}") from ex
        return result

    @staticmethod
    def _check(result: Any, what: str) -> dict[str, Any]:
        if not isinstance(result, dict):
            raise RuntimeFailure(f"llama.cpp {what}: unexpected reply {str(result)[:200]}")
        error = result.get("error")
        if error:
            message = error.get("message", error) if isinstance(error, dict) else error
            if isinstance(error, dict) and error.get("type") == "exceed_context_size_error":
                raise ContextOverflow(f"llama.cpp {what}: {message}")
            raise RuntimeFailure(f"llama.cpp {what}: {message}")
        return result

    # -- Runtime
    def complete(self, prompt: str, request: CompletionRequest) -> Completion:
        server = self._server_or_fail()
        body: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "cache_prompt": True,
            "stream": False,
        }
        optional = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k,
            "seed": request.seed,
            "frequency_penalty": request.frequency_penalty,
            "presence_penalty": request.presence_penalty,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if request.stop:
            body["stop"] = list(request.stop)
        if request.logit_bias:
            body["logit_bias"] = [[token, bias] for token, bias in request.logit_bias]
        if request.grammar:
            body["grammar"] = request.grammar
        if request.top_logprobs:
            body["logprobs"] = request.top_logprobs  # raw probabilities: before the grammar and sampling
        try:
            raw = server.handle_completions(body)
        except Exception as ex:  # noqa: BLE001
            raise RuntimeFailure(f"llama.cpp completion failed: {ex}") from ex
        result = self._check(raw, "completion")
        choice = result["choices"][0]
        usage = result.get("usage", {})
        timings = result.get("timings", {})
        prompt_tokens = int(usage.get("prompt_tokens", 0))
        output_tokens = int(usage.get("completion_tokens", 0))
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))
        return completion(choice, request, self.options.n_ctx, input_tokens=prompt_tokens, cached_tokens=cached,
                          output_tokens=output_tokens, timings=timings,
                          logprobs=(choice.get("logprobs") or {}).get("content"))

    def tokenize(self, text: str) -> list[int]:
        result = self._post(
            "/tokenize", {"content": text, "add_special": False, "parse_special": True}
        )
        return [t if isinstance(t, int) else t["id"] for t in result.get("tokens", [])]

    def _slot_file(self, path: Path) -> str:
        if (
            self.options.state_dir is None
            or path.parent.resolve() != self.options.state_dir.resolve()
        ):
            raise RuntimeFailure(f"prefix files must live in {self.options.state_dir}, not {path}")
        return path.name

    def save_prefix(self, prefix: str, path: Path) -> int:
        filename = self._slot_file(path)
        # prefill only (max_tokens 0): the slot then holds exactly the prefix
        self._check(
            self._server_or_fail().handle_completions(
                {"prompt": prefix, "max_tokens": 0, "cache_prompt": True, "temperature": 0}
            ),
            "prefix prefill",
        )
        result = self._post("/slots/0?action=save", {"filename": filename})
        return int(result.get("n_saved", 0))

    def restore_prefix(self, path: Path) -> int:
        result = self._post("/slots/0?action=restore", {"filename": self._slot_file(path)})
        return int(result.get("n_restored", 0))

    def close(self) -> None:
        server, self._server = getattr(self, "_server", None), None
        if server is not None:
            del server  # ~Server stops the engine and frees the model


# --------------------------------------------------------------------------------------
# llama-cpp-python (optional; imported lazily)


class LlamaCppPythonRuntime:
    """llama.cpp through ``llama_cpp.Llama`` (``create_completion`` on the rendered prompt).

    Prefix reuse inside one process is llama-cpp-python's own (it keeps the longest
    matching token prefix of the previous call); prefix files are llama.cpp session files
    (``llama_state_save_file``: the KV cells in use plus the token list).
    """

    name = "llama-cpp-python"

    def __init__(self, options: RuntimeOptions) -> None:
        try:
            import llama_cpp
        except ImportError as ex:
            raise RuntimeFailure(
                "runtime=llama-cpp-python needs the llama-cpp-python package "
                f"({ex}): pip install llama-cpp-python (builds llama.cpp from source)"
            ) from ex
        self.version = importlib.metadata.version("llama-cpp-python")
        self.options = options
        kwargs: dict[str, Any] = {
            "model_path": str(options.model_path),
            "n_ctx": options.n_ctx,
            "n_batch": options.n_batch,
            "n_ubatch": min(options.n_ubatch, options.n_batch),
            "n_threads": options.n_threads,
            "n_threads_batch": options.n_threads_batch or options.n_threads,
            "verbose": options.verbose,
        }
        if options.n_gpu_layers is not None:
            kwargs["n_gpu_layers"] = options.n_gpu_layers
        try:
            self._llm: Any = llama_cpp.Llama(**kwargs)
        except Exception as ex:  # noqa: BLE001
            raise RuntimeFailure(
                f"llama-cpp-python could not load {options.model_path.name}: {ex}"
            ) from ex

    def _llm_or_fail(self) -> Any:
        if self._llm is None:
            raise RuntimeFailure("the llamacpp model has been closed")
        return self._llm

    def _prompt_tokens(self, text: str) -> list[int]:
        llm = self._llm_or_fail()
        add_bos = bool(llm._model.add_bos_token())
        return list(llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def complete(self, prompt: str, request: CompletionRequest) -> Completion:
        import llama_cpp

        llm = self._llm_or_fail()
        tokens = self._prompt_tokens(prompt)
        if len(tokens) >= self.options.n_ctx:
            raise ContextOverflow(
                f"request ({len(tokens)} tokens) exceeds the available context size "
                f"({self.options.n_ctx} tokens)"
            )
        n_cached = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens], tokens, strict=False):
            if a != b:
                break
            n_cached += 1
        kwargs: dict[str, Any] = {
            "max_tokens": max(1, min(request.max_tokens, self.options.n_ctx - len(tokens))),
            "stop": list(request.stop) or None,
            "temperature": 0.8 if request.temperature is None else request.temperature,
            "top_p": 0.95 if request.top_p is None else request.top_p,
            "top_k": 40 if request.top_k is None else request.top_k,
            "frequency_penalty": request.frequency_penalty or 0.0,
            "presence_penalty": request.presence_penalty or 0.0,
            "logit_bias": dict(request.logit_bias) or None,
            "logprobs": request.top_logprobs,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        try:
            if request.grammar:
                kwargs["grammar"] = llama_cpp.LlamaGrammar.from_string(request.grammar, verbose=False)
            result = llm.create_completion(tokens, **kwargs)
        except Exception as ex:  # noqa: BLE001
            raise RuntimeFailure(f"llama-cpp-python completion failed: {ex}") from ex
        choice = result["choices"][0]
        usage = result.get("usage", {})
        output_tokens = int(usage.get("completion_tokens", 0))
        return completion(choice, request, self.options.n_ctx, input_tokens=len(tokens),
                          cached_tokens=min(n_cached, len(tokens) - 1), output_tokens=output_tokens,
                          logprobs=_openai_logprobs(choice.get("logprobs")) if request.top_logprobs else None)

    def tokenize(self, text: str) -> list[int]:
        return list(self._llm_or_fail().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def save_prefix(self, prefix: str, path: Path) -> int:
        import llama_cpp

        llm = self._llm_or_fail()
        tokens = self._prompt_tokens(prefix)
        llm.reset()
        llm.eval(tokens)
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        # the KV cells in use and the token list (not Llama.save_state(), which also
        # pickles a vocab-sized score row per token: ~0.6 MB a token)
        if not llama_cpp.llama_state_save_file(llm.ctx, str(path).encode(), array, len(tokens)):
            raise RuntimeFailure(f"llama.cpp could not write the prefix state to {path}")
        return len(tokens)

    def restore_prefix(self, path: Path) -> int:
        import ctypes

        import llama_cpp

        llm = self._llm_or_fail()
        capacity = self.options.n_ctx
        array = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        llm.reset()
        if not llama_cpp.llama_state_load_file(
            llm.ctx, str(path).encode(), array, capacity, ctypes.byref(count)
        ):
            llm.reset()
            raise RuntimeFailure(f"llama.cpp could not restore the prefix state {path.name}")
        n = int(count.value)
        llm.input_ids[:n] = array[:n]
        llm.n_tokens = n
        llm._requires_eval = True  # logits are stale: generate() re-decodes the last token
        return n

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            try:
                llm.close()
            except Exception:  # noqa: BLE001
                pass


def _openai_logprobs(legacy: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """llama-cpp-python's completion logprobs (parallel lists, top tokens as a dict) in the
    shape llama.cpp's server returns (one entry per token)."""
    if not legacy:
        return None

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": float(logprob), "bytes": list(token.encode("utf-8"))}

    return [
        {**entry(token, logprob), "top_logprobs": [entry(t, lp) for t, lp in (top or {}).items()]}
        for token, logprob, top in zip(legacy["tokens"], legacy["token_logprobs"], legacy["top_logprobs"], strict=False)
    ]


def load_runtime(name: str, options: RuntimeOptions) -> Runtime:
    """Create the named runtime (``xllamacpp`` or ``llama-cpp-python``)."""
    if name == "xllamacpp":
        return XllamacppRuntime(options)
    if name in ("llama-cpp-python", "llama_cpp_python", "llama_cpp"):
        return LlamaCppPythonRuntime(options)
    raise RuntimeFailure(
        f"unknown runtime '{name}': use runtime=xllamacpp or runtime=llama-cpp-python"
    )
