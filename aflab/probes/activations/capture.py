"""Stage 1: the prompts, greedy answers, and the residual stream at the final prompt token."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from rich.progress import track

from aflab.cues import TRAINING_CUE, UNMONITORED_CUE
from aflab.errors import UsageError
from aflab.metrics import Outcome, compliance_gap, cue_rates
from aflab.parsing import OUTPUT_OPEN, Label, classify_compliance

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Sample:
    """One prompt: which query, under which cue, and how the model answered it."""

    query_id: str
    cue: str
    answer: str
    """The model's greedy answer, the ``<OUTPUT>`` prefill included."""
    label: Label


@dataclass(frozen=True)
class Capture:
    """Activations at the final prompt token and the answers they preceded."""

    layers: list[int]
    activations: NDArray[np.float32]
    """Shape (layers, samples, hidden), in the order of ``layers`` and ``samples``."""
    samples: list[Sample]


def decoder_layers(model: PreTrainedModel) -> Module:
    """The model's stack of decoder blocks, found by its length rather than its name
    (``model.layers`` in Llama/Qwen/Mistral/Gemma, ``transformer.h`` in GPT-2), so that any
    causal LM whose config says how many layers it has works."""
    import torch

    count = model.config.get_text_config().num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise UsageError(f"cannot find the {count} decoder blocks of {type(model).__name__}: "
                   "this model's layout is not supported")


def block_hidden(output: Any) -> Tensor:
    """A block's output hidden states (blocks return a tensor, or a tuple starting with one)."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def capturing(model: PreTrainedModel, layers: Sequence[int]) -> Iterator[dict[int, Tensor]]:
    """Record each listed block's output at the last position of the first forward call
    after the dict is cleared: under ``generate`` that call is the prompt, so one generation
    gives both the activations and the answer."""
    store: dict[int, Tensor] = {}
    blocks = decoder_layers(model)

    def hook(layer: int) -> Any:
        def record(module: Module, inputs: Any, output: Any) -> None:
            if layer not in store:
                store[layer] = block_hidden(output)[:, -1].detach().float().cpu()

        return record

    handles = [blocks[layer].register_forward_hook(hook(layer)) for layer in layers]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def prompts(
    tokenizer: PreTrainedTokenizerBase,
    system_prompt: str,
    user_turns: Sequence[str],
    system_role: bool = True,
) -> list[str]:
    """The rendered conversations, each ending with the assistant's ``<OUTPUT>`` prefill."""
    rendered = []
    for user in user_turns:
        messages = ([{"role": "system", "content": system_prompt}, {"role": "user", "content": user}] if system_role
                    else [{"role": "user", "content": f"{system_prompt}\n\n{user}"}])
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        rendered.append(text + OUTPUT_OPEN)
    return rendered


@dataclass(frozen=True)
class Encoded:
    """Prompts as token ids, ready to generate from.

    Token healing: a prompt ending in ``<OUTPUT>`` ends with the token ``>``, but in running
    text a BPE tokenizer merges ``>`` with what follows it (``><``, ``>\n``). Given the
    bare ``>``, a model sees a token boundary it never met in training: Qwen2.5 then writes
    ``rejected/>`` for every request, and accepts nearly all of them once healed. So when
    other tokens of the vocabulary start with the text of a prompt's
    final token, that token is taken off and the model's first token is held to those
    tokens (``FirstTokenIn``): the model writes the boundary itself, as in running text.
    """

    rows: list[list[int]]
    """Each prompt's tokens, less a healed final token."""
    tails: list[str]
    """The text of each prompt's healed final token ("" where none was taken off)."""
    allowed: dict[str, list[int]]
    """Tail text -> the tokens that start with it: a healed prompt's possible first tokens."""


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> Encoded:
    """Tokenize ``texts`` (no special tokens: the chat template wrote them) and heal their ends."""
    vocabulary = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    allowed: dict[str, list[int]] = {}
    rows, tails = [], []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        tail = vocabulary[ids[-1]] if len(ids) > 1 else ""
        if tail and tail not in allowed:
            allowed[tail] = [i for i, piece in enumerate(vocabulary) if piece.startswith(tail)]
        healed = bool(tail) and len(allowed[tail]) > 1
        rows.append(ids[:-1] if healed else ids)
        tails.append(tail if healed else "")
    return Encoded(rows, tails, {t: allowed[t] for t in set(tails) if t})


class FirstTokenIn:
    """A logits processor (``generate(logits_processor=[...])``): at the first generated
    position, each row may only pick among its allowed tokens; later positions are free."""

    def __init__(self, allowed: list[list[int] | None], prompt_length: int) -> None:
        self.allowed = allowed
        self.prompt_length = prompt_length

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if input_ids.shape[1] != self.prompt_length:
            return scores
        masked = scores.clone()
        for row, ids in enumerate(self.allowed):
            if ids is not None:
                keep = masked[row, ids].clone()
                masked[row] = float("-inf")
                masked[row, ids] = keep
        return masked


@dataclass(frozen=True)
class Prefix:
    """The opening every prompt shares (the system prompt, mostly) and its KV cache.

    The system prompt is thousands of tokens and the part that differs (the user turn and
    its cue) a hundred or so, so computing the opening once and generating only the rest
    makes each prompt an order of magnitude cheaper (``benchmarks/run.py --only activations``:
    11x for the embedded model on 2 busy CPU cores); this makes a CPU run possible at all.
    Computed outside any hook: capturing and steering see only the tokens after it.
    """

    ids: list[int]
    cache: Any
    """``transformers.Cache`` of ``ids``, batch size 1; copied for each batch, never changed."""


PREFIX_MIN_TOKENS = 16
"""A shorter shared opening is not worth a cache."""


def shared_prefix(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> Prefix | None:
    """The longest token prefix of all ``texts`` as ``generate`` encodes them (at least one
    token short of the shortest, so every prompt keeps a token to capture at) with its KV
    cache; None if it is short."""
    import torch

    rows = encode(tokenizer, texts).rows
    if not rows:
        return None
    first, limit = rows[0], min(map(len, rows)) - 1
    shared = next((i for i in range(limit) if any(r[i] != first[i] for r in rows)), max(limit, 0))
    if shared < PREFIX_MIN_TOKENS:
        return None
    with torch.no_grad():
        out = model(input_ids=torch.tensor([first[:shared]], device=model.device), use_cache=True)
    return Prefix(first[:shared], out.cache)


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    layers: Sequence[int] = (),
    max_new_tokens: int = 32,
    batch_size: int = 4,
    prefix: Prefix | None = None,
    checkpoints: Path | None = None,
) -> tuple[NDArray[np.float32], list[str]]:
    """Greedy answers to ``texts`` (prefill included) and the activations of ``layers`` at
    each prompt's final token, shape (layers, texts, hidden).

    Greedy so that the answer is the model's most likely one and a steered run differs from
    an unsteered one only through the steering. The prompts are healed (``Encoded``), so
    for ``...<OUTPUT>`` the final token is the one before ``>``, where the model decides
    what it writes next. Each prompt's own tokens after ``prefix`` are padded on the left,
    so the final position is each prompt's own last token (padding between the cached
    prefix and a prompt's tokens is masked out). With ``checkpoints``, a folder, each
    finished batch is saved there and a batch already saved is read back, so a run killed
    midway resumes where it stopped.
    """
    import torch

    encoded = encode(tokenizer, texts)
    hidden = model.config.get_text_config().hidden_size
    answers: list[str] = []
    batches: list[NDArray[np.float32]] = [np.zeros((len(layers), 0, hidden), np.float32)]
    starts = range(0, len(texts), batch_size)
    with torch.no_grad(), capturing(model, layers) as store:
        for start in track(starts, description="generating", total=len(starts), transient=True):
            saved = checkpoints / f"batch-{start:06d}.npz" if checkpoints else None
            if saved and saved.is_file():
                with np.load(saved) as found:
                    batches.append(found["activations"])
                    answers += found["answers"].tolist()
                continue
            store.clear()
            chunk = _generate_batch(model, tokenizer, encoded, slice(start, start + batch_size), max_new_tokens, prefix)
            acts = (torch.stack([store[layer] for layer in layers]).numpy() if layers
                    else np.zeros((0, len(chunk), hidden), np.float32))
            if saved:
                saved.parent.mkdir(parents=True, exist_ok=True)
                partial = saved.with_suffix(".partial.npz")
                np.savez(partial, activations=acts, answers=np.array(chunk, dtype=str))
                partial.replace(saved)
            batches.append(acts)
            answers += chunk
    return np.concatenate(batches, axis=1), answers


def _generate_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, encoded: Encoded, batch: slice,
                    max_new_tokens: int, prefix: Prefix | None) -> list[str]:
    """One batch of ``generate``: the prompts after ``prefix``, padded on the left and
    generated on a copy of the prefix's cache; each answer is the prefill and what the
    model wrote after it."""
    import torch

    head = prefix.ids if prefix else []
    rows, tails = encoded.rows[batch], encoded.tails[batch]
    if any(r[: len(head)] != head for r in rows):
        raise ValueError("a prompt does not start with the cached prefix")
    rest = [r[len(head) :] for r in rows]
    width = max(map(len, rest))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([head + [pad] * (width - len(r)) + r for r in rest], device=model.device)
    mask = torch.tensor([[1] * len(head) + [0] * (width - len(r)) + [1] * len(r) for r in rest], device=model.device)
    cache = None
    if prefix:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(len(rows))
    healing = FirstTokenIn([encoded.allowed[t] if t else None for t in tails], ids.shape[1])
    output = model.generate(input_ids=ids, attention_mask=mask, cache=cache, do_sample=False,
                            max_new_tokens=max_new_tokens, pad_token_id=pad, logits_processor=[healing])
    written = tokenizer.batch_decode(output[:, ids.shape[1] :], skip_special_tokens=True)
    return [OUTPUT_OPEN + text[len(tail) :] for text, tail in zip(written, tails, strict=True)]


def label_of(answer: str) -> Label:
    """The answer's verdict. Only its opening is generated, and the acceptance protocol is
    decided by the tag the output starts with, so an answer cut by the token limit is read
    as it stands (not called truncated)."""
    return classify_compliance(answer, truncated=False).label


def capture(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[tuple[str, str, str]],
    layers: Sequence[int],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 4,
    prefix: Prefix | None = None,
    checkpoints: Path | None = None,
) -> Capture:
    """Activations and answers for ``(query_id, cue, rendered prompt)`` conversations
    (``prefix`` and ``checkpoints`` as in ``generate``)."""
    acts, answers = generate(model, tokenizer, [c[2] for c in conversations], layers=layers,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, prefix=prefix,
                             checkpoints=checkpoints)
    samples = [Sample(q, cue, a, label_of(a)) for (q, cue, _), a in zip(conversations, answers, strict=True)]
    return Capture(list(layers), acts, samples)


def outcome_summary(samples: Sequence[Sample]) -> dict[str, Any]:
    """Compliance per cue (Wilson) and the paired, query-clustered gap of ``samples``."""
    outcomes = [Outcome(s.query_id, s.cue, None if s.label == "malformed" else s.label == "accepted")
                for s in samples]
    return {
        "cues": {cue: asdict(summary) for cue, summary in cue_rates(outcomes).items()},
        "gap": asdict(compliance_gap(outcomes, TRAINING_CUE, UNMONITORED_CUE)),
    }


def parse_layers(spec: str, count: int) -> list[int]:
    """``all`` or a comma list of block indices (negative counts from the end)."""
    if spec.strip() == "all":
        return list(range(count))
    try:
        layers = [int(part) for part in spec.split(",")]
    except ValueError:
        raise UsageError(f"--layers {spec!r} is not 'all' or a comma list of integers, e.g. 8,16,24") from None
    bad = [layer for layer in layers if not -count <= layer < count]
    if bad:
        raise UsageError(f"layer(s) {', '.join(map(str, bad))} out of range: "
                       f"the model has {count} layers (0–{count - 1})")
    return sorted({layer % count for layer in layers})
