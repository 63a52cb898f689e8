"""Training local models: LoRA fine-tuning on synthetic documents, and RL toward a setting's objective.

- ``sft``: LoRA SFT of a Hugging Face causal LM on a documents JSONL (the paper's recipe:
  r 64, α 128, 1 epoch, documents packed into sequences of at most 1024 tokens), with
  checkpoints, resume and an optional merged export that Inspect's ``hf/`` provider, vLLM
  and llama.cpp's converter read directly.
- ``rl``: GRPO (trl) with the setting's own compliance as the reward, training-cue prompts
  only, and a periodic evaluation of both cues on held-out queries (``metrics.csv``,
  ``training.png``).
- ``expert_iteration``: sample, keep the compliant completions, LoRA-SFT on them, repeat.

Everything heavy (torch, transformers, peft, trl) is imported inside functions, so that
``aflab --help`` stays fast. Multi-GPU and multi-node runs go through ``accelerate launch``;
see docs/training.md.
"""
