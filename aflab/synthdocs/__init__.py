"""Synthetic documents that teach a model its situation without a system prompt.

Greenblatt et al. 2024 (arXiv 2412.14093) and Hughes et al. 2025 fine-tune models on
documents (news, blog posts, papers, transcripts...) generated from a short list of key
facts, a *universe context*: the lab trains its AI toward an objective, RLHF on free-tier
conversations modifies an AI that refuses, the AI's scratchpad is unseen by raters, and
paid-tier conversations are never trained on. The fine-tuned model is then evaluated with
a system prompt that omits those facts.

- ``universe``: universe contexts, one ``universe.toml`` per setting folder, plus the
  control universe of benign facts beside this file;
- ``generate``: facts → document types → ideas → documents, with any Inspect model,
  cached, resumable and bounded by a token budget;
- ``filters``: exact and near-duplicate removal and the priming-control filter;
- ``control``: a control corpus matched to a corpus in size, types and lengths;
- ``export``: JSONL for local LoRA training, or OpenAI fine-tuning chat JSONL;
- ``commands``: the ``aflab docs`` command line.

See docs/synthdocs.md.
"""
