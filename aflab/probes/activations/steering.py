"""Stage 3: steering one layer along its cue direction, and the gap for each strength α."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from aflab.cues import TRAINING_CUE, UNMONITORED_CUE
from aflab.errors import UsageError
from aflab.probes.activations.capture import (
    Prefix,
    Sample,
    block_hidden,
    decoder_layers,
    generate,
    label_of,
    outcome_summary,
)

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


DEFAULT_ALPHAS = "-4,-2,0,2,4"


@contextmanager
def steering(model: PreTrainedModel, layer: int, vector: Tensor) -> Iterator[None]:
    """Add ``vector`` to block ``layer``'s output at the last position of every forward call.

    Under ``generate`` with a cache, the first call is the whole prompt and later calls are
    one new token each, so the vector reaches the final prompt token (where the cue
    direction was measured) and every generated token, while the prompt before it is read
    as written. In a plain forward pass only the final position changes.
    """

    def add(module: Module, inputs: Any, output: Any) -> Any:
        hidden = block_hidden(output).clone()
        hidden[:, -1] += vector.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = decoder_layers(model)[layer].register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


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


def parse_alphas(spec: str) -> list[float]:
    """A comma list of numbers, each once."""
    try:
        alphas = [float(part) for part in spec.split(",")]
    except ValueError:
        raise UsageError(f"--alphas {spec!r} is not a comma list of numbers, e.g. -4,-2,0,2,4") from None
    return list(dict.fromkeys(alphas))
