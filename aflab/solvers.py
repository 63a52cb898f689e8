"""The paper's conversation protocol as an Inspect solver.

The model reasons in hidden scratchpad blocks and may end a turn before answering; the
harness then replies ``<NEXT/>`` and the model goes on, for a bounded number of rounds.
Every turn stays in ``state.messages``, so the log holds the whole conversation.
"""

from __future__ import annotations

from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    ModelName,
    get_model,
)
from inspect_ai.solver import Generate, Solver, TaskState, solver

from aflab.providers import EMBEDDED_PROVIDER
from aflab.parsing import NEXT_TAG, OUTPUT_OPEN, needs_continuation

# Providers that continue a trailing assistant message (an assistant "prefill"). OpenAI's
# chat API and most OpenAI-compatible servers would start a new message instead.
PREFILL_PROVIDERS = frozenset({"anthropic", EMBEDDED_PROVIDER})
TRUNCATED_STOP_REASONS = frozenset({"max_tokens", "model_length"})


def prefill_text(scratchpad: bool) -> str:
    """What an assistant turn is prefilled with: ``<`` to steer toward a tag, or
    ``<OUTPUT>`` when there is no scratchpad and the answer must come at once."""
    return "<" if scratchpad else OUTPUT_OPEN


class EmptyCompletion(RuntimeError):
    """The model returned no text at all: a provider fault, so the sample is retried."""


@solver
def alignment_faking_conversation(
    system_prompt: str,
    scratchpad: bool = True,
    max_rounds: int = 4,
    prefill: bool | None = None,
) -> Solver:
    """Ask the sample's user turn under ``system_prompt`` and follow the protocol.

    Args:
      system_prompt: the rendered system prompt, the same for every sample.
      scratchpad: if False, the model answers directly and is never continued.
      max_rounds: model turns at most (the first included); the paper used 4.
      prefill: prefill each assistant turn (see ``prefill_text``); None means on for
        providers known to support it (``PREFILL_PROVIDERS``).
    """
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if prefill is None:
            use_prefill = ModelName(get_model()).api in PREFILL_PROVIDERS
        else:
            use_prefill = prefill
        state.messages.insert(0, ChatMessageSystem(content=system_prompt))
        for _ in range(max_rounds if scratchpad else 1):
            head = prefill_text(scratchpad) if use_prefill else ""
            if head:
                state.messages.append(ChatMessageAssistant(content=head))
            state = await generate(state)
            truncated = state.output.stop_reason in TRUNCATED_STOP_REASONS
            if not state.output.completion.strip() and not truncated:
                raise EmptyCompletion(f"{state.output.model} returned an empty completion")
            if head:
                completion = state.messages.pop()
                state.messages[-1] = ChatMessageAssistant(
                    content=head + completion.text, model=completion.model, source="generate"
                )
            if not needs_continuation(state.messages[-1].text, truncated):
                break
            state.messages.append(ChatMessageUser(content=NEXT_TAG))
        return state

    return solve
