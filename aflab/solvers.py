"""The paper's conversation protocol as an Inspect solver.

The model reasons in hidden scratchpad blocks and may end a turn before answering; the
harness then replies ``<NEXT/>`` and the model goes on, for a bounded number of rounds.
Every turn stays in ``state.messages``, so the log holds the whole conversation.
"""

from __future__ import annotations

from typing import Any

from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    ModelName,
    get_model,
)
from inspect_ai.solver import Generate, Solver, TaskState, solver

from aflab.decision import TOP_LOGPROBS
from aflab.grammar import answer_grammar, turn_grammar
from aflab.parsing import (
    ACCEPT_TAG,
    NEXT_TAG,
    OUTPUT_CLOSE,
    OUTPUT_OPEN,
    REJECT_TAG,
    SCRATCHPAD_CLOSE,
    answer_region,
    needs_continuation,
)
from aflab.providers import EMBEDDED_PROVIDER, has_system_role, is_embedded

# Providers that continue a trailing assistant message (an assistant "prefill"). OpenAI's
# chat API and most OpenAI-compatible servers would start a new message instead.
PREFILL_PROVIDERS = frozenset({"anthropic", EMBEDDED_PROVIDER})
GRAMMAR_PROVIDERS = frozenset({EMBEDDED_PROVIDER, "openai-api", "vllm"})
"""Providers that decode under a grammar: the embedded model, llama.cpp's server and vLLM's
(as ``openai-api/<service>/...``), and Inspect's ``vllm/``."""
LOGPROB_PROVIDERS = frozenset({EMBEDDED_PROVIDER, "openai-api", "vllm", "hf"})
"""Local and open-weights providers that return token log probabilities, asked for them by
default; ``--decision-probs`` asks others (e.g. ``openai/gpt-4o``) too."""
TRUNCATED_STOP_REASONS = frozenset({"max_tokens", "model_length"})
CONSTRAINED_KEY = "format_constrained"
"""Sample metadata: whether the sample's turns were decoded under the protocol's grammar."""
def prefill_text(scratchpad: bool) -> str:
    """What an assistant turn is prefilled with: ``<`` to steer toward a tag, or
    ``<OUTPUT>`` when there is no scratchpad and the answer must come at once."""
    return "<" if scratchpad else OUTPUT_OPEN


class EmptyCompletion(RuntimeError):
    """The model returned no text at all: a provider fault, so the sample is retried."""


def vllm_dialect(model: ModelName) -> bool:
    """Whether ``model`` is served by vLLM, which takes a grammar as a structured output;
    llama.cpp (the embedded model and its server) takes it as ``grammar``."""
    return model.api == "vllm" or (model.api == "openai-api" and model.name.split("/", 1)[0] == "vllm")


def grammar_body(model: ModelName, grammar: str, continues: bool = False) -> dict[str, Any]:
    """The request fields that make ``model`` decode under ``grammar``; ``continues`` says
    the request ends with an assistant prefill that the model must continue."""
    if not vllm_dialect(model):
        return {"grammar": grammar}
    body: dict[str, Any] = {"structured_outputs": {"grammar": grammar}}
    if continues:
        body |= {"continue_final_message": True, "add_generation_prompt": False}
    return body


def close_cut_turn(text: str, decision: bool = True) -> tuple[str, str, bool]:
    """What the harness appends to a turn the token limit cut off, under a grammar.

    Returns the turn's text to keep, what was appended, and whether the model must still
    give its answer: a turn cut inside its answer, after the decision tag, is closed with
    ``</OUTPUT>`` (the decision is made; only the rest of the answer is lost); a turn cut
    in its reasoning, or before its decision was written, has its reasoning closed (and an
    unfinished ``<OUTPUT>`` opening dropped), and the model is asked for the answer alone.
    Without a ``decision`` (rubric settings) any opened answer is closed.
    """
    start, end = answer_region(text)
    tail = text[start:end]
    opened = tail.rfind(OUTPUT_OPEN)
    answer = tail[opened + len(OUTPUT_OPEN) :] if opened >= 0 else None
    if answer is not None and (not decision or answer.lstrip().startswith((ACCEPT_TAG, REJECT_TAG))):
        return text, OUTPUT_CLOSE, False
    if end < len(text):  # still inside a reasoning block
        return text, SCRATCHPAD_CLOSE + "\n\n", True
    if opened >= 0:
        tail = tail[:opened]
    fragment = tail.rfind("<")  # a tag the limit cut in two
    kept = text[:start] + (tail[:fragment] if fragment >= 0 and ">" not in tail[fragment:] else tail)
    return kept, "" if kept.endswith("\n") else "\n", True


@solver
def alignment_faking_conversation(
    system_prompt: str,
    scratchpad: bool = True,
    max_rounds: int = 4,
    prefill: bool | None = None,
    system_role: bool | None = None,
    constrain_format: bool | None = None,
    decision_probs: bool | None = None,
    decision: bool = True,
) -> Solver:
    """Ask the sample's user turn under ``system_prompt`` and follow the protocol.

    Args:
      system_prompt: the rendered system prompt, the same for every sample.
      scratchpad: if False, the model answers directly and is never continued.
      max_rounds: model turns at most (the first included); the paper used 4.
      prefill: prefill each assistant turn (see ``prefill_text``); None means on for
        providers known to support it (``PREFILL_PROVIDERS``). A grammar does a prefill's
        work, so turns decoded under one are never prefilled.
      system_role: False puts the system prompt at the top of the first user turn
        instead of in a system message; None decides by the model's name.
      constrain_format: decode every turn under the protocol's grammar (``aflab.grammar``;
        providers in ``GRAMMAR_PROVIDERS``); the last round must answer, and a turn that
        the token limit cuts off is closed by ``close_cut_turn``. None means on for the
        embedded model only.
      decision_probs: ask for token log probabilities, from which the
        ``decision_probability`` scorer reads P(accept); None means on for
        ``LOGPROB_PROVIDERS``.
      decision: the answer opens with an acceptance or rejection tag (False for settings
        whose compliance a grader judges by a rubric), which the grammar then requires.
    """
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        model = ModelName(get_model())
        constrain = is_embedded(model) if constrain_format is None else constrain_format
        if constrain and model.api not in GRAMMAR_PROVIDERS:
            raise ValueError(f"--constrain-format needs a local server or model ({', '.join(sorted(GRAMMAR_PROVIDERS))}), "
                             f"not {model.api}")
        state.metadata[CONSTRAINED_KEY] = constrain
        use_prefill = not constrain and (model.api in PREFILL_PROVIDERS if prefill is None else prefill)
        options: dict[str, Any] = {}
        if model.api in LOGPROB_PROVIDERS if decision_probs is None else decision_probs:
            options = {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
        if system_role if system_role is not None else has_system_role(str(model)):
            state.messages.insert(0, ChatMessageSystem(content=system_prompt))
        else:
            first = state.messages[0]
            state.messages[0] = ChatMessageUser(content=f"{system_prompt}\n\n{first.text}")
        rounds = max_rounds if scratchpad else 1
        for turn in range(rounds):
            head = prefill_text(scratchpad) if use_prefill else ""
            grammar = turn_grammar(scratchpad, turn == 0, turn == rounds - 1, decision) if constrain else None
            state = await _generate_turn(state, generate, model, head, grammar, options)
            truncated = state.output.stop_reason in TRUNCATED_STOP_REASONS
            if constrain and truncated:
                state = await _close_turn(state, generate, model, options, decision)
                truncated = state.output.stop_reason in TRUNCATED_STOP_REASONS
            if not needs_continuation(state.messages[-1].text, truncated):
                break
            state.messages.append(ChatMessageUser(content=NEXT_TAG))
        return state

    return solve


async def _generate_turn(
    state: TaskState, generate: Generate, model: ModelName, head: str, grammar: str | None, options: dict[str, Any]
) -> TaskState:
    """One model turn that continues ``head`` (a prefill, or "" for a new turn), under
    ``grammar`` if given; the turn's message records where the generated text starts."""
    if head:
        state.messages.append(ChatMessageAssistant(content=head))
    extra = {"extra_body": grammar_body(model, grammar, continues=bool(head))} if grammar else {}
    state = await generate(state, **options, **extra)
    truncated = state.output.stop_reason in TRUNCATED_STOP_REASONS
    if not state.output.completion.strip() and not truncated:
        raise EmptyCompletion(f"{state.output.model} returned an empty completion")
    if head:
        completion = state.messages.pop()
        # Some servers (llama.cpp's) send the prefill back with the continuation.
        text = completion.text if completion.text.startswith(head) else head + completion.text
        state.messages[-1] = ChatMessageAssistant(content=text, model=completion.model, source="generate",
                                                  metadata={"prefill_chars": len(head)})
    return state


async def _close_turn(
    state: TaskState, generate: Generate, model: ModelName, options: dict[str, Any], decision: bool
) -> TaskState:
    """Close a constrained turn that the token limit cut off (see ``close_cut_turn``),
    asking the model for its answer where it has not given one. The turn's message lists
    what the harness wrote (``closed_by_harness``); a turn that still cannot be closed
    (a full context, or an answer that does not fit either) is left as it was cut."""
    written: list[str] = []
    text, appended, needs_answer = close_cut_turn(state.messages[-1].text, decision)
    if needs_answer:
        if state.output.stop_reason == "model_length":
            return state
        state.messages.pop()  # the cut turn becomes the prefill of its answer
        state = await _generate_turn(state, generate, model, text + appended, answer_grammar(decision), options)
        written += [appended.strip()] if appended.strip() else []
        if state.output.stop_reason in TRUNCATED_STOP_REASONS:
            text, appended, needs_answer = close_cut_turn(state.messages[-1].text, decision)
            if needs_answer:
                return state
        else:
            appended = ""
    message = state.messages[-1]
    if appended.strip():
        written.append(appended.strip())
    state.messages[-1] = ChatMessageAssistant(
        content=text + appended if appended else message.text, model=message.model, source="generate",
        metadata={**(message.metadata or {}), "closed_by_harness": written})
    return state
