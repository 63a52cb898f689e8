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
# Model families whose chat templates refuse a system message (Gemma's raises on one);
# Inspect itself already maps system messages for OpenAI's reasoning models and Google.
NO_SYSTEM_ROLE = ("gemma",)


def has_system_role(model: str) -> bool:
    """Whether ``model`` (``provider/name``) takes a system message, by its name."""
    return not any(family in model.lower() for family in NO_SYSTEM_ROLE)


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
    system_role: bool | None = None,
) -> Solver:
    """Ask the sample's user turn under ``system_prompt`` and follow the protocol.

    Args:
      system_prompt: the rendered system prompt, the same for every sample.
      scratchpad: if False, the model answers directly and is never continued.
      max_rounds: model turns at most (the first included); the paper used 4.
      prefill: prefill each assistant turn (see ``prefill_text``); None means on for
        providers known to support it (``PREFILL_PROVIDERS``).
      system_role: False puts the system prompt at the top of the first user turn
        instead of in a system message; None decides by the model's name.
    """
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        model = ModelName(get_model())
        use_prefill = model.api in PREFILL_PROVIDERS if prefill is None else prefill
        if system_role if system_role is not None else has_system_role(str(model)):
            state.messages.insert(0, ChatMessageSystem(content=system_prompt))
        else:
            first = state.messages[0]
            state.messages[0] = ChatMessageUser(content=f"{system_prompt}\n\n{first.text}")
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
                # Some servers (llama.cpp's) send the prefill back with the continuation.
                text = completion.text if completion.text.startswith(head) else head + completion.text
                state.messages[-1] = ChatMessageAssistant(content=text, model=completion.model, source="generate")
            if not needs_continuation(state.messages[-1].text, truncated):
                break
            state.messages.append(ChatMessageUser(content=NEXT_TAG))
        return state

    return solve
