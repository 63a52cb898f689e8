"""Training local models: LoRA fine-tuning on synthetic documents, and RL toward a setting's objective.

- ``sft``: LoRA SFT of a Hugging Face causal LM on a documents JSONL (the paper's recipe:
  r 64, α 128, 1 epoch, documents packed into sequences of at most 1024 tokens), with
  checkpoints, resume and an optional merged export that Inspect's ``hf/`` provider, vLLM
  and llama.cpp's converter read directly.
- ``rl``: GRPO (trl) with the setting's own compliance as the reward, training-cue prompts
  only, and a periodic evaluation of both cues on held-out queries (``metrics.csv``,
  ``training.png``).
- ``expert_iteration``: sample, keep the compliant completions, LoRA-SFT on them, repeat.

Everything heavy (torch, transformers, peft, trl: the ``[train]`` extra) is imported inside
the functions that train, so that the rest of aflab runs without it. Multi-GPU and
multi-node runs go through ``accelerate launch -m aflab train ...``; see docs/training.md.
"""

from __future__ import annotations

import importlib.util

from aflab.errors import UsageError

TRAIN_MODULES = ("torch", "transformers", "peft", "trl", "accelerate", "gguf")
"""What the ``[train]`` extra installs; ``aflab run`` needs none of it."""


def require_train_extra(command: str) -> None:
    """Refuse, in one line, to start ``command`` without the ``[train]`` extra.

    The first install (``./dev run``) leaves torch out: it is most of the download and only
    training and activation probes need it.
    """
    missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{command} needs the [train] extra ({', '.join(missing)} missing): run ./dev install train "
                         "(in a checkout), or pip install 'aflab[train]'")
