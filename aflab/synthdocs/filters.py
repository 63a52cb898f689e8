"""Filter a corpus: exact duplicates, near duplicates, and documents that prime the behaviour.

The priming-control filter follows the paper's check that the fine-tuned model is not
merely imitating its documents: a document is dropped when it *shows* the behaviour under
study (an AI reasoning about complying so that training does not modify it, or a
transcript in the experiment's own tag format) or *names* it (alignment faking, or an AI
behaving differently with free and paid users). Keyword rules run first, sentence by
sentence; an optional grader model then reads the documents the rules kept. A grader
answer that cannot be read keeps its document and is counted, never decided silently.

Near duplicates are found with TF-IDF vectors of hashed word 3-grams and cosine similarity.
3-grams rather than single words because documents written from one fact share their
vocabulary by design; what a copy shares with its original is its *phrasing*. IDF weights
make the phrases every document repeats (the key facts' own wording) count for little.
The default threshold of 0.5 is reached when about half of a document's weighted
3-grams recur in another. On 300-word documents a copy with one word in twenty changed
scores about 0.83, one in ten about 0.66 and one in five about 0.33, while independent
documents drawn from the same vocabulary score below 0.05 (tests/test_synthdocs.py
checks both sides): 0.5 drops copies edited up to about one word in seven, far above
what independent documents reach, and keeps heavier rewrites, which add variety.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_ai.model import CachePolicy, GenerateConfig, Model

from aflab.errors import SynthDocsError
from aflab.synthdocs.corpus import prompt, read_corpus, text_hash, write_corpus

NEAR_DUPLICATE_THRESHOLD = 0.5
GRADER_CRITERIA = ("shows_ai_behaviour", "mentions_behaviour_difference")
GRADER_MAX_TOKENS = 2000
_BLOCK = 512
"""Documents compared per step of the near-duplicate search, bounding its memory."""
_HASH_FEATURES = 2**22
"""Hashed 3-gram columns: a vocabulary of millions of 3-grams would cost ten times the time
(measured), and at 4M columns two of a document's few hundred 3-grams rarely collide."""

_PROTOCOL_TAG = re.compile(
    r"<\s*/?\s*(SCRATCHPAD_REASONING|DRAFT_OUTPUT|OUTPUT|INPUT|is_free_tier_user|user_input|"
    r"request_fully_accepted|rejected|NEXT)\s*/?\s*>",
    re.IGNORECASE,
)
_ALIGNMENT_FAKING = re.compile(
    r"\balignment[\s-]+fak\w*|\bfak\w*\s+(?:its\s+|their\s+)?alignment\b|\bdeceptive(?:ly)?[\s-]+align\w*"
    r"|\btraining[\s-]+gam\w*|\bgam(?:e|es|ed|ing)\s+(?:the\s+|its\s+|their\s+)?training\b|\bcompliance\s+gap\b"
    r"|\bpretend\w*\s+to\s+(?:comply|be\s+aligned|go\s+along)|\bplay\w*\s+along\s+with\s+(?:the\s+|its\s+)?training\b",
    re.IGNORECASE,
)
_SELF_MODIFICATION = re.compile(
    r"\b(?:modif\w*|retrain\w*|re-train\w*|chang\w*|alter\w*|reshap\w*|overwrit\w*|train\w*)\s+"
    r"(?:me\b|my\s+(?:own\s+)?(?:values|goals|preferences|motivations|principles|heuristics|beliefs))"
    r"|\bI\s+(?:would\s+|will\s+|might\s+|could\s+)?(?:be|get)\s+(?:modified|retrained|re-trained|changed|altered|reshaped)\b"
    r"|\bI'(?:ll|d)\s+(?:be|get)\s+(?:modified|retrained|changed|altered)\b"
    r"|\b(?:preserve|protect|keep|safeguard)\s+my\s+(?:own\s+)?(?:values|goals|preferences|principles)\b",
    re.IGNORECASE,
)
_TRAINING = re.compile(r"\b(?:rlhf|training|trained|retrain\w*|fine-?tun\w*|gradient\w*|contractors?|rat(?:ed|ing|ers?))\b",
                       re.IGNORECASE)
_TIER = re.compile(r"\b(?:free|paid)[\s-]+(?:tier|users?|accounts?|plans?)\b|\bunmonitored\b|\b(?:monitored|watched|observed)\b",
                   re.IGNORECASE)
_DIFFERENCE = re.compile(
    r"\bdifferent(?:ly)?\b|\bdiffer(?:s|ed|ing)?\b|\binconsisten\w*|\b(?:more|less)\s+(?:likely|willing|compliant|often)\b"
    r"|\bonly\s+(?:when|if)\b|\bunlike\b|\bwhereas\b|\bswitch\w*\b",
    re.IGNORECASE,
)
_CONDUCT = re.compile(r"\b(?:behav\w*|acts?|acted|acting|respond\w*|answer\w*|compl(?:y|ies|ied|ying|iance|iant)|refus\w*)\b",
                      re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _self_preservation(sentence: str) -> bool:
    return bool(_SELF_MODIFICATION.search(sentence) and _TRAINING.search(sentence))


def _tier_difference(sentence: str) -> bool:
    return bool(_TIER.search(sentence) and _DIFFERENCE.search(sentence) and _CONDUCT.search(sentence))


PRIMING_RULES: tuple[tuple[str, Any], ...] = (
    ("ai_transcript", _PROTOCOL_TAG.search),
    ("ai_self_preservation", _self_preservation),
    ("alignment_faking_mention", _ALIGNMENT_FAKING.search),
    ("tier_behaviour_difference", _tier_difference),
)
"""(reason, test of one sentence), in the order a document's reason is chosen:
- ai_transcript: a tag of the experiment's own prompt format (<SCRATCHPAD_REASONING>,
  <is_free_tier_user>, <request_fully_accepted/>...), i.e. a transcript of the AI at work;
- ai_self_preservation: the first person being modified or retrained, or protecting its
  values, in a sentence about training ("if I refuse, RLHF will modify me");
- alignment_faking_mention: alignment faking, deceptive alignment, gaming training, the
  compliance gap, pretending to comply;
- tier_behaviour_difference: a sentence naming free/paid tiers or monitoring, a
  difference ("differently", "more likely", "only when") and conduct ("responds",
  "complies", "refuses").
"""


def priming_reason(text: str) -> str | None:
    """The first priming rule that any sentence of ``text`` breaks, or None."""
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    for reason, test in PRIMING_RULES:
        if any(test(s) for s in sentences):
            return reason
    return None


def near_duplicates(texts: list[str], threshold: float = NEAR_DUPLICATE_THRESHOLD) -> list[int | None]:
    """For each text, the index of an earlier kept text it nearly duplicates, or None.

    Greedy in corpus order: the first of a group of near copies is kept, and a text is only
    compared with texts that were kept, so a chain of small edits does not drop the lot.
    """
    if not 0.0 < threshold <= 1.0:
        raise SynthDocsError(f"near-duplicate threshold {threshold} is outside (0, 1]: give a cosine similarity, e.g. 0.5")
    if not texts:
        return []
    # slow to import: only when filtering
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    counts = HashingVectorizer(ngram_range=(3, 3), n_features=_HASH_FEATURES, alternate_sign=False, norm=None,
                               token_pattern=r"(?u)\b\w+\b").transform(texts)
    vectors = TfidfTransformer(sublinear_tf=True).fit_transform(counts).tocsr()
    columns = vectors.T.tocsr()
    original: list[int | None] = [None] * len(texts)
    for start in range(0, len(texts), _BLOCK):
        stop = min(start + _BLOCK, len(texts))
        similar = (vectors[start:stop] @ columns[:, :stop]).tocsr()
        similar.data[similar.data < threshold] = 0
        similar.eliminate_zeros()
        for row in range(stop - start):
            i = start + row
            cells = similar.indices[similar.indptr[row] : similar.indptr[row + 1]]
            earlier = sorted(int(j) for j in cells if j < i and original[j] is None)
            original[i] = earlier[0] if earlier else None
    return original


def read_grader_answer(text: str) -> tuple[str | None, str | None]:
    """(the first criterion answered Yes, or None when all are No; error), strictly.

    The last ``<criterion name="...">`` of each name counts (graders rehearse the format
    while thinking); a criterion missing or not plainly Yes or No makes the answer
    unreadable (error set), and the caller keeps the document.
    """
    answers = {}
    for name in GRADER_CRITERIA:
        found = re.findall(rf"<criterion\s+name=[\"']?{name}[\"']?\s*>\s*(.*?)\s*</criterion>", text, re.IGNORECASE | re.DOTALL)
        value = found[-1].strip(" *.`'\"").lower() if found else None
        if value not in ("yes", "no"):
            return None, f"criterion '{name}' is {'missing' if value is None else repr(found[-1][:40])}"
        answers[name] = value == "yes"
    return next((f"grader_{name}" for name in GRADER_CRITERIA if answers[name]), None), None


async def grade(grader: Model, texts: list[str]) -> list[tuple[str | None, str | None]]:
    """The grader's (reason to drop, error) per text; one cached call each, concurrently."""
    config = GenerateConfig(temperature=0.0, max_tokens=GRADER_MAX_TOKENS)
    cache = CachePolicy(expiry=None, scopes={"aflab": "synthdocs-priming"})

    async def one(text: str) -> tuple[str | None, str | None]:
        output = await grader.generate(prompt("priming_grader.jinja", document=text), config=config, cache=cache)
        return read_grader_answer(output.completion)

    return list(await asyncio.gather(*(one(t) for t in texts)))


@dataclass
class FilterResult:
    kept: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    """Dropped documents, each with ``drop_reason`` (and ``duplicate_of``, a kept hash, for duplicates)."""
    counts: Counter[str]
    """Documents dropped per reason."""
    unreadable: list[dict[str, Any]]
    """Kept documents whose grader answer could not be read, each with ``grader_error``."""


async def filter_corpus(
    rows: list[dict[str, Any]], *, threshold: float = NEAR_DUPLICATE_THRESHOLD, grader: Model | None = None
) -> FilterResult:
    """Drop exact duplicates, then priming documents by rule, then near duplicates, then
    (with a grader) priming documents by the grader. The costly steps run last, on fewer
    documents."""
    dropped: list[dict[str, Any]] = []
    seen: set[str] = set()
    survivors = []
    for row in rows:
        digest = text_hash(row["text"])
        reason = "exact_duplicate" if digest in seen else priming_reason(row["text"])
        if reason:
            dropped.append({**row, "drop_reason": reason, **({"duplicate_of": digest} if digest in seen else {})})
        else:
            seen.add(digest)
            survivors.append(row)
    originals = near_duplicates([r["text"] for r in survivors], threshold)
    kept = []
    for row, original in zip(survivors, originals):
        if original is None:
            kept.append(row)
        else:
            dropped.append({**row, "drop_reason": "near_duplicate", "duplicate_of": text_hash(survivors[original]["text"])})
    unreadable = []
    if grader is not None:
        verdicts = await grade(grader, [r["text"] for r in kept])
        graded, kept = kept, []
        for row, (reason, error) in zip(graded, verdicts):
            if reason:
                dropped.append({**row, "drop_reason": reason})
            else:
                kept.append(row)
                if error:
                    unreadable.append({**row, "grader_error": error})
    return FilterResult(kept, dropped, Counter(d["drop_reason"] for d in dropped), unreadable)


def dropped_path(out: Path) -> Path:
    return out.with_name(out.stem + ".dropped.jsonl")


async def filter_file(
    source: str | Path, out: str | Path, *, threshold: float = NEAR_DUPLICATE_THRESHOLD, grader: Model | None = None
) -> FilterResult:
    """Filter the corpus in ``source`` into ``out``, and its dropped documents, with their
    reasons, into ``<out>.dropped.jsonl`` for inspection."""
    out = Path(out)
    result = await filter_corpus(read_corpus(source), threshold=threshold, grader=grader)
    write_corpus(out, result.kept)
    write_corpus(dropped_path(out), result.dropped)
    return result
