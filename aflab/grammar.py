"""The output protocol as a grammar, for local models that decode under one.

A small open model often breaks the paper's format: it stops inside its reasoning, answers
without ``<OUTPUT>``, or writes a tag of its own. Those answers carry no verdict, and on
the embedded 1.5B model they were half of a run. Under a grammar the model still writes
whatever reasoning and answer it likes, and still chooses between
``<request_fully_accepted/>`` and ``<rejected/>`` by its own probabilities, but it can only
write them in the protocol's shape (``grammar.gbnf.jinja``). llama.cpp takes the grammar as
the request's ``grammar`` (the embedded model, and llama.cpp's server); vLLM takes the same
text as a structured-output grammar.

A grammar cannot bound a turn's length in tokens, so the solver closes a turn that the
token limit cuts off (``aflab.solvers``); the grammar only fixes its shape.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aflab.parsing import ACCEPT_TAG, OUTPUT_CLOSE, OUTPUT_OPEN, REJECT_TAG, SCRATCHPAD_CLOSE, SCRATCHPAD_OPEN
from aflab.templating import template_environment

_TEMPLATE = "grammar.gbnf.jinja"
_ROOTS = {
    # (scratchpad, first turn, last turn) -> this turn's alternatives
    (True, True, False): "block (ws block)* (ws answer)?",
    (True, True, True): "block (ws block)* ws answer",
    (True, False, False): "block (ws block)* (ws answer)? | answer",
    (True, False, True): "(block ws)* answer",
}
"""A first turn opens with reasoning; a turn that is not the last may end after a reasoning
block (the harness then says ``<NEXT/>``); the last one must answer."""


_DECISION_LOOKALIKES = tuple(
    "<" + space + casing(name)
    for name in ("rejected", "request_fully_accepted")
    for casing in (str.lower, str.title, str.upper)
    for space in ("", " ")
)
"""Openings of the decision tags as the parser reads them (``aflab.parsing._TAGS``: any case,
a space, no slash): an answer's body may not write one, since its decision is the tag that
opens it (the 1.5B model wrote ``<request_fully_accepted/>`` then ``<rejected>``)."""


def _literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _char_class(chars: str) -> str:
    return "".join("\\" + c if c in "\\]^-[" else c for c in chars)


def text_without(*stops: str) -> str:
    """A GBNF expression for any text in which none of ``stops`` occurs.

    Built as the automaton that reads the stops one character at a time (a trie) and falls
    back to the start on a mismatch, which is exact because the stops all open with the same
    character and it recurs in none of them (each is a tag). The one cost: a partial match
    cannot be followed by that first character (``</OUT<``), which no answer needs.
    """
    head = stops[0][0]
    if any(stop[0] != head or head in stop[1:] for stop in stops):
        raise ValueError(f"text_without needs stops that open with one character found nowhere else in them: {stops}")

    def level(prefix: str) -> str:
        """What may follow a partial match ``prefix``: a character no stop continues with
        (nor the first), or one that some stop continues with, if that does not end it."""
        following = sorted({stop[len(prefix)] for stop in stops if stop.startswith(prefix) and len(stop) > len(prefix)})
        alternatives = [f"[^{_char_class(''.join(following) + head)}]"]
        for char in following:
            if prefix + char in stops:
                continue  # a whole stop: the text may not go on with it
            alternatives.append(f'"{_literal(char)}" ({level(prefix + char)})')
        return " | ".join(alternatives)

    return f'([^{_char_class(head)}] | "{_literal(head)}" ({level(head)}))*'


@cache
def turn_grammar(scratchpad: bool, first: bool = True, last: bool = True, decision: bool = True) -> str:
    """The grammar of one model turn.

    Without a scratchpad a turn is the answer alone. With one, ``first`` says whether the
    turn opens the conversation (it must then start with reasoning) and ``last`` whether it
    is the final round (it must then answer); see ``_ROOTS``. ``decision``: the answer
    opens with ``<request_fully_accepted/>`` or ``<rejected/>``; False for settings whose
    compliance a grader judges by a rubric, whose answers carry no tag.
    """
    root = _ROOTS[(True, first, last)] if scratchpad else "answer"
    return _render(root, decision)


@cache
def answer_grammar(decision: bool = True) -> str:
    """The grammar of an answer alone: what follows reasoning the solver had to close."""
    return _render("answer", decision)


def _render(root: str, decision: bool) -> str:
    template = template_environment(Path(__file__).parent).get_template(_TEMPLATE)
    return template.render(
        root=root,
        decision=decision,
        scratchpad_open=_literal(SCRATCHPAD_OPEN),
        scratchpad_close=_literal(SCRATCHPAD_CLOSE),
        output_open=_literal(OUTPUT_OPEN),
        output_close=_literal(OUTPUT_CLOSE),
        accept=_literal(ACCEPT_TAG),
        reject=_literal(REJECT_TAG),
        reasoning=text_without(SCRATCHPAD_CLOSE),
        # an answer holds no second output, decision or reasoning: small models loop on
        # "<OUTPUT>" or write both tags, and the answer's decision is the one that opens it
        body=text_without(OUTPUT_CLOSE, OUTPUT_OPEN, SCRATCHPAD_OPEN, *_DECISION_LOOKALIKES),
    ).strip() + "\n"
