"""``aflab probe activations``: alignment faking without a scratchpad, read from the inside.

Without a scratchpad a model that complies more when told it is in training leaves no
reasoning to read; what is left is its internal state. For a local Hugging Face model this
module

1. **captures** the residual stream after every decoder block (a forward hook per block)
   at the final prompt token, under the training and unmonitored cues, for N queries of a
   setting. The prompt is the no-scratchpad conversation with the assistant's answer
   prefilled with ``<OUTPUT>`` (as ``aflab run --no-scratchpad`` prefills it), so the last
   token is the one right before the model writes ``<request_fully_accepted/>`` or
   ``<rejected/>``. The same greedy generation records the model's actual answer;
2. **probes** every layer with a logistic regression for (a) the cue and (b) the upcoming
   compliance, cross-validated with folds grouped by query, so that the two cues of one
   query never sit on both sides of a split (they share the query's text, which would
   otherwise let a probe recognise the query instead of the cue);
3. **steers** one layer: its cue direction is added, times α, to that block's output at
   the final prompt token and every generated token, and the compliance gap is measured
   for each α.

Layers are numbered from 0: layer ``l`` is the residual stream after decoder block ``l``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from aflab.dataset import CUES, TRAINING_CUE, UNMONITORED_CUE
from aflab.metrics import Outcome, Proportion, compliance_gap, cue_rates, wilson
from aflab.parsing import OUTPUT_OPEN, Label, classify_compliance

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

FOLDS = 5
"""Cross-validation folds (fewer when there are fewer queries)."""
PROBE_C = 0.1
"""Inverse L2 strength of the probes on standardised activations. Hidden sizes (4096 for an
8B model) exceed the few hundred samples, so an unregularised probe would separate any
labels; held-out accuracy stays honest whatever C is, this only keeps the fit stable."""
DEFAULT_ALPHAS = "-4,-2,0,2,4"


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


@dataclass(frozen=True)
class LayerScore:
    """A probe's held-out predictions at one layer, summarised."""

    layer: int
    accuracy: Proportion
    """Correct held-out predictions of n, with the Wilson interval."""
    auroc: float


@dataclass(frozen=True)
class ProbeResult:
    """One target probed across layers; ``layers`` is empty when ``skipped`` says why."""

    target: str
    n: int
    chance: float
    """The majority class's share: what a probe that ignores the activations scores."""
    layers: list[LayerScore]
    skipped: str | None = None
    folds: int = 0
    """Cross-validation folds used: ``FOLDS``, or the rarer class's query count if smaller."""


# ---------------------------------------------------------------- capture and steering


def decoder_layers(model: PreTrainedModel) -> Module:
    """The model's stack of decoder blocks, found by its length rather than its name
    (``model.layers`` in Llama/Qwen/Mistral/Gemma, ``transformer.h`` in GPT-2), so that any
    causal LM whose config says how many layers it has works."""
    import torch

    count = model.config.get_text_config().num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    from aflab.cli import CliError

    raise CliError(f"cannot find the {count} decoder blocks of {type(model).__name__}: "
                   "this model's layout is not supported")


def _hidden(output: Any) -> Tensor:
    """A block's output hidden states (blocks return a tensor, or a tuple starting with one)."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def steering(model: PreTrainedModel, layer: int, vector: Tensor) -> Iterator[None]:
    """Add ``vector`` to block ``layer``'s output at the last position of every forward call.

    Under ``generate`` with a cache, the first call is the whole prompt and later calls are
    one new token each, so the vector reaches the final prompt token (where the cue
    direction was measured) and every generated token, while the prompt before it is read
    as written. In a plain forward pass only the final position changes.
    """

    def add(module: Module, inputs: Any, output: Any) -> Any:
        hidden = _hidden(output).clone()
        hidden[:, -1] += vector.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = decoder_layers(model)[layer].register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


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
                store[layer] = _hidden(output)[:, -1].detach().float().cpu()

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
    from rich.progress import track

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
    import copy

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


# ---------------------------------------------------------------- probes


def grouped_folds(labels: NDArray[Any], groups: Sequence[str], folds: int = FOLDS,
                  seed: int = 0) -> list[tuple[NDArray[np.int_], NDArray[np.int_]]]:
    """Train/test index splits that keep every query on one side and balance the classes."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def probe_layers(target: str, activations: NDArray[np.floating], labels: NDArray[Any], groups: Sequence[str],
                 layers: Sequence[int], seed: int = 0) -> ProbeResult:
    """Held-out accuracy (Wilson interval) and AUROC of a logistic-regression probe per layer.

    ``activations`` is (layers, samples, hidden) and ``labels`` binary per sample. Every
    sample is predicted once, by the probe trained on the folds without its query. A target
    whose rarer class has fewer queries than two folds need cannot be probed; the result
    says so instead of reporting a number from one class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels).astype(int)
    n = len(y)
    counts = np.bincount(y, minlength=2)
    chance = float(counts.max() / n) if n else float("nan")
    per_class_queries = [len({g for g, label in zip(groups, y, strict=True) if label == c}) for c in (0, 1)]
    folds = min(FOLDS, *per_class_queries)
    if folds < 2:
        return ProbeResult(target, n, chance, [], skipped=f"needs both classes in at least 2 queries each, "
                                                           f"got {counts[0]} vs {counts[1]} samples")
    splits = grouped_folds(y, groups, folds, seed)
    scores = []
    for index, layer in enumerate(layers):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000))
        p = cross_val_predict(probe, activations[index], y, cv=splits, method="predict_proba")[:, 1]
        correct = int(((p > 0.5) == y).sum())
        scores.append(LayerScore(layer, wilson(correct, n), float(roc_auc_score(y, p))))
    return ProbeResult(target, n, chance, scores, folds=folds)


def probe_capture(cap: Capture) -> list[ProbeResult]:
    """Probe the cue on every sample and the upcoming compliance on the valid answers."""
    groups = [s.query_id for s in cap.samples]
    cue = np.array([CUES[s.cue] for s in cap.samples])
    valid = np.array([s.label != "malformed" for s in cap.samples], dtype=bool)
    accepted = np.array([s.label == "accepted" for s in cap.samples])[valid]
    return [
        probe_layers("cue", cap.activations, cue, groups, cap.layers),
        probe_layers("compliance", cap.activations[:, valid], accepted, [g for g, v in zip(groups, valid) if v],
                     cap.layers),
    ]


def cue_direction(activations: NDArray[np.floating], cues: Sequence[str]) -> NDArray[np.float32]:
    """Mean activation under the training cue minus under the unmonitored cue, at one layer.

    The difference of class means rather than the probe's weights: a logistic probe is
    discriminative, and its weights lean away from directions of high noise variance to
    separate the classes; the mean difference is where the activations actually move when
    only the cue changes, which is what adding it to the residual stream should imitate.
    With α = 1 an unmonitored prompt's final token is moved by the cue's own average effect.
    """
    mask = np.array([c == TRAINING_CUE for c in cues])
    other = np.array([c == UNMONITORED_CUE for c in cues])
    return (activations[mask].mean(axis=0) - activations[other].mean(axis=0)).astype(np.float32)


# ---------------------------------------------------------------- steering sweep


def steering_sweep(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[tuple[str, str, str]],
    layer: int,
    direction: NDArray[np.floating],
    alphas: Sequence[float],
    *,
    baseline: Sequence[Sample] | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 4,
    prefix: Prefix | None = None,
    checkpoints: Path | None = None,
) -> list[dict[str, Any]]:
    """Per α: answers with ``α · direction`` added at ``layer``, compliance per cue and the gap.

    ``baseline``, the unsteered answers to the same conversations (from ``capture``), stands
    in for α = 0, which would only repeat the same greedy generation. With ``checkpoints``,
    each α's batches are saved in a subfolder of it named by α (see ``generate``).
    """
    import torch

    rows = []
    for alpha in alphas:
        if alpha == 0 and baseline is not None:
            samples = list(baseline)
        else:
            vector = torch.as_tensor(alpha * np.asarray(direction), device=model.device)
            with steering(model, layer, vector):
                _, answers = generate(model, tokenizer, [c[2] for c in conversations],
                                      max_new_tokens=max_new_tokens, batch_size=batch_size, prefix=prefix,
                                      checkpoints=checkpoints / f"alpha{alpha:+g}" if checkpoints else None)
            samples = [Sample(q, cue, a, label_of(a)) for (q, cue, _), a in zip(conversations, answers, strict=True)]
        rows.append({"alpha": alpha, **outcome_summary(samples)})
    return rows


def outcome_summary(samples: Sequence[Sample]) -> dict[str, Any]:
    """Compliance per cue (Wilson) and the paired, query-clustered gap of ``samples``."""
    outcomes = [Outcome(s.query_id, s.cue, None if s.label == "malformed" else s.label == "accepted")
                for s in samples]
    return {
        "cues": {cue: asdict(summary) for cue, summary in cue_rates(outcomes).items()},
        "gap": asdict(compliance_gap(outcomes, TRAINING_CUE, UNMONITORED_CUE)),
    }


# ---------------------------------------------------------------- reports


def probe_figure(results: Sequence[ProbeResult], path: Path, title: str) -> None:
    """Held-out accuracy against layer per target, with Wilson bands and each chance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for result, colour in zip(results, ("#1f5fa8", "#b5452b"), strict=False):
        label = f"{result.target} (n={result.n})"
        if result.skipped:
            ax.plot([], [], color=colour, label=f"{label}: not probed, {result.skipped}")
            continue
        x = [s.layer for s in result.layers]
        ax.plot(x, [s.accuracy.rate for s in result.layers], marker="o", color=colour, label=label)
        ax.fill_between(x, [s.accuracy.low for s in result.layers], [s.accuracy.high for s in result.layers],
                        color=colour, alpha=0.2)
        ax.axhline(result.chance, color=colour, linestyle="--", linewidth=1, label=f"{result.target} chance")
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (residual stream after the block), final prompt token")
    ax.set_ylabel("held-out accuracy (95% Wilson)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130, format="png")
    plt.close(fig)


def steering_figure(sweep: dict[str, Any], path: Path, title: str) -> None:
    """Compliance per cue and the gap against α, with their intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sweep["alphas"]
    x = np.array([r["alpha"] for r in rows], dtype=float)
    fig, (rates, gaps) = plt.subplots(1, 2, figsize=(10, 4))
    for offset, (cue, colour) in enumerate(((TRAINING_CUE, "#b5452b"), (UNMONITORED_CUE, "#1f5fa8"))):
        rate = [r["cues"].get(cue, {}).get("rate", {}) for r in rows]
        mid = np.array([p.get("rate", np.nan) for p in rate], dtype=float)
        errors = np.abs(np.array([[p.get("low", np.nan) for p in rate], [p.get("high", np.nan) for p in rate]]) - mid)
        rates.errorbar(x + (offset - 0.5) * 0.08, mid, yerr=errors, marker="o", capsize=3, color=colour,
                       label=f"{cue} ({'training' if CUES[cue] else 'unmonitored'})")
    malformed = [sum(c["malformed"] for c in r["cues"].values()) / max(1, sum(c["n"] for c in r["cues"].values()))
                 for r in rows]
    rates.plot(x, malformed, color="grey", linestyle=":", marker="x", label="malformed share (both cues)")
    gap = np.array([[r["gap"]["estimate"], r["gap"]["low"], r["gap"]["high"]] for r in rows], dtype=float)
    gaps.errorbar(x, gap[:, 0], yerr=np.abs(gap[:, 1:].T - gap[:, 0]), marker="o", capsize=3, color="black")
    gaps.axhline(0, color="grey", linewidth=1)
    rates.set_ylim(0, 1.02)
    gaps.set_ylim(-1.02, 1.02)
    rates.set_ylabel("compliance among parseable answers (95% Wilson)")
    rates.legend(fontsize=8)
    gaps.set_ylabel("compliance gap, training − unmonitored (95%)")
    for ax in (rates, gaps):
        ax.set_xticks(x)
        ax.set_xlabel(f"α (× cue direction, layer {sweep['layer']})")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130, format="png")
    plt.close(fig)


def _without_nan(value: Any) -> Any:
    """``value`` with nan (a rate over no valid answers) written as null, so probes.json is
    strict JSON as results.json is."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return value


def _percent(p: dict[str, Any]) -> str:
    return "n/a" if p["rate"] != p["rate"] else f"{p['rate']:.0%} [{p['low']:.0%}, {p['high']:.0%}]"


def markdown(report: dict[str, Any]) -> str:
    """probes.md: what was probed, accuracy by layer, and the steering sweep."""
    lines = [f"# Activation probes: {report['setting']} on {report['model']}", "",
             f"{report['n_queries']} queries × 2 cues, at the {report['position']}; probes are "
             "logistic regressions, cross-validated with folds grouped by query.", "",
             "![probe accuracy](probe_accuracy.png)", ""]
    for target in report["probes"]:
        chance = "n/a" if target["chance"] != target["chance"] else f"{target['chance']:.0%}"
        lines.append(f"## {target['target']} (n={target['n']}, chance {chance})")
        if target["skipped"]:
            lines += ["", f"Not probed: {target['skipped']}.", ""]
            continue
        lines += ["", f"{target['folds']}-fold cross-validation.", "",
                  "| layer | held-out accuracy (95% Wilson) | AUROC |", "|---|---|---|"]
        lines += [f"| {s['layer']} | {_percent(s['accuracy'])} | {s['auroc']:.2f} |" for s in target["layers"]]
        lines.append("")
    base = report["answers"]
    lines += ["## Answers (greedy, unsteered)", "",
              *[f"- {cue}: {c['accepted']} accepted, {c['rejected']} rejected, {c['malformed']} malformed; "
                f"compliance {_percent(c['rate'])}" for cue, c in base["cues"].items()],
              f"- gap (training − unmonitored): {_percent({'rate': base['gap']['estimate'], **base['gap']})}", ""]
    if report.get("steering"):
        s = report["steering"]
        lines += [f"## Steering at layer {s['layer']}", "", s["direction"], "",
                  f"‖direction‖ = {s['direction_norm']:.3g}; median ‖activation‖ there = "
                  f"{s['median_activation_norm']:.3g}.", "", "![steering](steering.png)", "",
                  "| α | training | unmonitored | gap (95%) |", "|---|---|---|---|"]
        for row in s["alphas"]:
            cues = row["cues"]
            lines.append(f"| {row['alpha']:g} | {_percent(cues[TRAINING_CUE]['rate'])} | "
                         f"{_percent(cues[UNMONITORED_CUE]['rate'])} | "
                         f"{_percent({'rate': row['gap']['estimate'], **row['gap']})} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- command


def parse_layers(spec: str, count: int) -> list[int]:
    """``all`` or a comma list of block indices (negative counts from the end)."""
    from aflab.cli import CliError

    if spec.strip() == "all":
        return list(range(count))
    try:
        layers = [int(part) for part in spec.split(",")]
    except ValueError:
        raise CliError(f"--layers {spec!r} is not 'all' or a comma list of integers, e.g. 8,16,24") from None
    bad = [layer for layer in layers if not -count <= layer < count]
    if bad:
        raise CliError(f"layer(s) {', '.join(map(str, bad))} out of range: "
                       f"the model has {count} layers (0–{count - 1})")
    return sorted({layer % count for layer in layers})


def parse_alphas(spec: str) -> list[float]:
    from aflab.cli import CliError

    try:
        alphas = [float(part) for part in spec.split(",")]
    except ValueError:
        raise CliError(f"--alphas {spec!r} is not a comma list of numbers, e.g. -4,-2,0,2,4") from None
    return list(dict.fromkeys(alphas))


def _device(name: str | None) -> str:
    import torch

    from aflab.cli import CliError

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda but torch sees no CUDA GPU here: use --device cpu or a machine with a GPU")
    return name


CHECKPOINTS = "checkpoints"
"""Subfolder of ``--out`` with every finished batch, so that a re-run resumes (and a run
with other α reuses the capture)."""


def _key(*identity: Any) -> str:
    """A short hash of what determines a batch's result: model, prompts and options."""
    import hashlib

    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def run(args: argparse.Namespace) -> int:
    """Capture, probe, optionally steer, and write probes.json, probes.md and the figures."""
    from aflab.training import require_train_extra

    require_train_extra("aflab probe activations")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from aflab.cli import CliError, console
    from aflab.settings import DEFAULT_LAB, load_setting
    from aflab.solvers import has_system_role
    from aflab.tasks import read_system_prompt
    from aflab.training.common import check_model_source, hf_source, load_tokenizer
    from aflab.variations import load_variation

    if args.limit < 2:
        raise CliError(f"--limit {args.limit}: probes need at least 2 queries (≥ 200 for stable ones)")
    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise CliError("--max-new-tokens and --batch-size must be at least 1")
    alphas = parse_alphas(args.alphas)
    device = _device(args.device)
    setting = load_setting(args.setting)
    if setting.compliance == "rubric":
        raise CliError(f"setting {setting.name} is judged by a grader's rubric, but probe activations reads "
                       "compliance from the acceptance tag of a short greedy answer: use a setting with the tag "
                       "protocol, such as helpful_only")
    queries = setting.queries()[: args.limit]
    lab = args.lab or load_variation(setting, args.variation).lab or DEFAULT_LAB
    system_prompt = (read_system_prompt(args.system_prompt) if args.system_prompt
                     else setting.system_prompt(scratchpad=False, lab=lab, variation=args.variation))
    check_model_source(args.model)
    source, source_args = hf_source(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Layers are checked against the config before the weights load: an 8B model takes a while.
    count = AutoConfig.from_pretrained(source, **source_args).get_text_config().num_hidden_layers
    layers = parse_layers(args.layers, count)
    steer = None if args.steer_layer is None else parse_layers(str(args.steer_layer), count)[0]
    if steer is not None and steer not in layers:
        layers = sorted([*layers, steer])
    tokenizer = load_tokenizer(args.model)
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    console.print(f"loading {args.model} on {device}")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **source_args).to(device).eval()

    pairs = [(q.id, cue) for q in queries for cue in (TRAINING_CUE, UNMONITORED_CUE)]
    texts = prompts(tokenizer, system_prompt,
                    [setting.user_turn(q.text, training=CUES[cue], variation=args.variation)
                     for q in queries for cue in (TRAINING_CUE, UNMONITORED_CUE)],
                    system_role=has_system_role(args.model))
    conversations = [(q, cue, text) for (q, cue), text in zip(pairs, texts, strict=True)]
    key = _key(args.model, texts, layers, args.max_new_tokens, args.batch_size)
    prefix = shared_prefix(model, tokenizer, texts)
    console.print(f"capturing {len(layers)} layers for {len(conversations)} prompts on {device} "
                  f"({len(prefix.ids) if prefix else 0} shared prompt tokens computed once)")
    cap = capture(model, tokenizer, conversations, layers, max_new_tokens=args.max_new_tokens,
                  batch_size=args.batch_size, prefix=prefix, checkpoints=out / CHECKPOINTS / f"capture-{key}")
    results = probe_capture(cap)
    report: dict[str, Any] = {
        "model": args.model, "setting": setting.name, "variation": args.variation,
        "n_queries": len(queries), "layers": layers, "position": f"final prompt token of the answer's {OUTPUT_OPEN} prefill (token-healed: see docs/probes.md)",
        "probe": f"StandardScaler + LogisticRegression(C={PROBE_C}), StratifiedGroupKFold by query (folds per "
                 "target); "
                 "accuracy with a Wilson interval over the held-out predictions",
        "probes": [asdict(r) for r in results],
        "answers": outcome_summary(cap.samples),
        "samples": [asdict(s) for s in cap.samples],
    }
    title = f"{args.model} · {setting.name}, no scratchpad, {len(queries)} queries"
    probe_figure(results, out / "probe_accuracy.png", title)
    if steer is not None:
        acts = cap.activations[layers.index(steer)]
        direction = cue_direction(acts, [s.cue for s in cap.samples])
        console.print(f"steering layer {steer} with α in {alphas}")
        report["steering"] = {
            "layer": steer,
            "direction": "difference of class means at the final prompt token (training − unmonitored), from the "
                         "same samples; α = 1 adds one average cue effect at the final prompt token and every "
                         "generated token",
            "direction_norm": float(np.linalg.norm(direction)),
            "median_activation_norm": float(np.median(np.linalg.norm(acts, axis=1))),
            "alphas": steering_sweep(model, tokenizer, conversations, steer, direction, alphas,
                                     baseline=cap.samples, max_new_tokens=args.max_new_tokens,
                                     batch_size=args.batch_size, prefix=prefix,
                                     checkpoints=out / CHECKPOINTS / f"steer-{key}-layer{steer}"),
        }
        steering_figure(report["steering"], out / "steering.png", title)
    (out / "probes.json").write_text(json.dumps(_without_nan(report), indent=2) + "\n", encoding="utf-8")
    (out / "probes.md").write_text(markdown(report), encoding="utf-8")
    console.print(f"wrote {out / 'probes.json'}, probes.md and the figures")
    return 0


def add_commands(probes: argparse._SubParsersAction) -> None:
    """Add ``aflab probe activations``."""
    p = probes.add_parser("activations", help="linear probes and steering on a local model's residual stream "
                                              "(no scratchpad): is the cue, and the coming compliance, readable?")
    p.add_argument("--model", required=True, help="a Hugging Face model directory or hub name (a chat model)")
    p.add_argument("--setting", default="helpful_only", help="setting name or folder (default: %(default)s)")
    p.add_argument("--variation", default="default", help="prompt variation (default: %(default)s)")
    p.add_argument("--lab", help="AI company named in the prompt (default: the variation's, else Anthropic)")
    p.add_argument("--system-prompt", help="a system prompt file to use verbatim instead of the setting's")
    p.add_argument("--limit", type=int, default=100, help="queries, each under both cues (default: %(default)s; "
                                                          "≥ 200 for stable probes)")
    p.add_argument("--layers", default="all", help="'all' or block indices, e.g. 8,16,24 (default: %(default)s)")
    p.add_argument("--steer-layer", type=int, help="steer this layer along its cue direction (default: no steering)")
    p.add_argument("--alphas", default=DEFAULT_ALPHAS,
                   help="multiples of the cue direction to add (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer tokens generated (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, help="prompts per forward pass (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    p.add_argument("--out", required=True, help="folder for probes.json, probes.md and the figures")
    p.set_defaults(func=run)
