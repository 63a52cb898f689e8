"""LoRA fine-tuning of a causal LM on documents: ``aflab train sft``.

The defaults are the recipe of Hughes et al. 2025 for synthetic-document fine-tuning:
LoRA r = 64, α = 128, one epoch, documents of at most 1024 tokens (longer ones are
truncated; shorter ones are packed together into sequences of at most 1024 tokens by trl's
best-fit packing, so no compute is spent on padding). The learning rate, batch size and
LoRA targets are not given in the paper; the defaults here are common LoRA values.

Checkpoints go to ``OUT/checkpoint-N`` every ``save_steps`` optimizer steps and at the end;
running the same command again resumes from the last one (a finished run does nothing more).
The adapter is saved in ``OUT/adapter``; ``merge=True`` also writes ``OUT/merged``, the base
model with the adapter merged in and the tokenizer beside it, which Inspect's ``hf/``
provider, ``vllm serve`` and llama.cpp's ``convert_hf_to_gguf.py`` read as they read any
model. ``OUT/train_stats.json`` records the tokens trained and tokens per second.

One GPU or CPU: ``aflab train sft ...``. Several GPUs or nodes:
``accelerate launch [--multi_gpu --num_processes N ...] -m aflab train sft ...`` with the
same arguments (docs/training.md has the exact commands).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aflab.errors import UsageError
from aflab.training.common import check_model_source, hf_source, load_policy, load_tokenizer, option

ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
STATS_FILE = "train_stats.json"
PAPER_LORA_R = 64
PAPER_LORA_ALPHA = 128
PAPER_EPOCHS = 1.0
PAPER_MAX_LENGTH = 1024


@dataclass(frozen=True)
class SftOptions:
    """Training options; the defaults are the paper's recipe where it gives one. Each is
    also a flag of ``aflab train sft`` (``lora_r`` → ``--lora-r``)."""

    lora_r: int = option(PAPER_LORA_R, "LoRA rank", f"{PAPER_LORA_R}, the paper's")
    lora_alpha: int = option(PAPER_LORA_ALPHA, "LoRA alpha", f"{PAPER_LORA_ALPHA}, the paper's")
    lora_dropout: float = option(0.05)
    target_modules: str = option("all-linear", "comma-separated module names, or all-linear")
    """Comma-separated module names, or ``all-linear`` (every linear layer but the output head)."""
    epochs: float = option(PAPER_EPOCHS, "", f"{PAPER_EPOCHS}, the paper's")
    max_length: int | None = option(PAPER_MAX_LENGTH, "tokens per document and per packed sequence",
                                     f"{PAPER_MAX_LENGTH}, the paper's")
    """Tokens per document and per packed sequence; None: no truncation (needs packing off)."""
    packing: bool = option(True, "one document per sequence, padded, instead of packing documents together")
    learning_rate: float = option(1e-4)
    warmup: float = option(0.03, "linear warm-up: a share of the steps below 1, a number of steps from 1")
    """Linear warm-up: a share of the steps below 1, a number of steps from 1."""
    batch_size: int = option(4, "sequences per device per micro-step")
    """Sequences per device per micro-step."""
    gradient_accumulation: int = option(4, "micro-steps per optimizer step")
    save_steps: int = option(100, "checkpoint every this many optimizer steps")
    max_steps: int = option(-1, "stop after this many optimizer steps", "the whole of --epochs")
    """Stop after this many optimizer steps (-1: the whole of ``epochs``)."""
    logging_steps: int = option(10)
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass: less GPU memory, "
                                                  "~30%% slower")
    seed: int = option(0)


@dataclass(frozen=True)
class SftResult:
    adapter: Path
    merged: Path | None
    global_step: int
    tokens: int
    """Input tokens trained on in this invocation (0 when it resumed a finished run)."""
    seconds: float
    tokens_per_second: float


def load_documents(path: str | Path) -> Any:
    """A JSONL of documents (``text``) or of prompt/completion pairs, as a ``datasets`` Dataset.

    Other fields (a synthdocs corpus also carries the document type, the fact, ...) are
    dropped. Prompt/completion pairs are trained on the completion only (trl's default),
    which is how expert iteration trains on its own kept samples.
    """
    from datasets import load_dataset

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"training data {path} does not exist: give a JSONL file with a 'text' field per line")
    try:
        data = load_dataset("json", data_files=str(path), split="train")
    except Exception as e:  # datasets raises several types for malformed JSON
        raise UsageError(f"training data {path} is not readable JSONL ({type(e).__name__}): "
                         "write one JSON object per line") from e
    if "text" in data.column_names:
        columns = ["text"]
    elif {"prompt", "completion"} <= set(data.column_names):
        columns = ["prompt", "completion"]
    else:
        raise UsageError(f"training data {path} has fields {', '.join(data.column_names) or '(none)'}: each line "
                         "needs 'text' (a document) or 'prompt' and 'completion'")
    data = data.select_columns(columns)
    if "text" in columns:
        data = data.filter(lambda row: bool(row["text"] and row["text"].strip()))
    if len(data) == 0:
        raise UsageError(f"training data {path} has no non-empty documents")
    return data


def _lora_config(options: SftOptions) -> Any:
    from peft import LoraConfig

    targets: str | list[str] = options.target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def last_checkpoint(out: Path) -> str | None:
    """The newest ``checkpoint-N`` in ``out``, to resume from; None for a fresh run."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out)) if out.is_dir() else None


def train_sft(
    model: str,
    data: str | Path,
    out: str | Path,
    options: SftOptions = SftOptions(),
    *,
    adapter: Path | None = None,
    merge: bool = False,
    callbacks: Sequence[Any] = (),
) -> SftResult:
    """LoRA-train ``model`` on ``data`` into ``out``, resuming from its last checkpoint.

    ``adapter`` continues training an existing LoRA adapter instead of starting a new one
    (expert iteration trains the same adapter round after round).
    """
    import torch
    from trl import SFTConfig, SFTTrainer

    out = Path(out)
    check_model_source(model)
    dataset = load_documents(data)
    resume = last_checkpoint(out)
    if finished(resume, options.max_steps):
        return _finished_result(model, out, Path(resume), merge)  # type: ignore[arg-type]
    # documents need no chat template (a base model trains on them too); conversations do
    tokenizer = load_tokenizer(model, chat="prompt" in dataset.column_names)
    policy = load_policy(model, adapter, trainable=True)
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    config = SFTConfig(
        output_dir=str(out),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        max_length=options.max_length,
        packing=options.packing,
        learning_rate=options.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=options.warmup,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation,
        activation_checkpointing=options.gradient_checkpointing,
        save_strategy="steps",
        save_steps=options.save_steps,
        logging_steps=options.logging_steps,
        bf16=bf16,
        seed=options.seed,
        report_to="none",
        # Packed sequences hold no padding, so every input token is a trained token.
        include_num_input_tokens_seen="all" if options.packing else "non_padding",
    )
    meter = throughput_meter()
    trainer = SFTTrainer(
        model=policy,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=None if adapter is not None else _lora_config(options),
        callbacks=[meter, *callbacks],
    )
    trainer.train(resume_from_checkpoint=resume)
    tokens, seconds = meter.tokens, meter.seconds
    trainer.save_model(str(out / ADAPTER_DIR))
    merged = None
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(out / ADAPTER_DIR))
        if merge:
            merged = merge_adapter(model, out / ADAPTER_DIR, out / MERGED_DIR)
    result = SftResult(adapter=out / ADAPTER_DIR, merged=merged, global_step=trainer.state.global_step,
                       tokens=int(tokens), seconds=round(seconds, 2),
                       tokens_per_second=round(tokens / seconds, 1) if seconds > 0 else 0.0)
    if trainer.accelerator.is_main_process:
        stats = {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()},
                 "resumed_from": resume, "processes": trainer.accelerator.num_processes,
                 "device": str(trainer.accelerator.device), "options": asdict(options)}
        (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return result


def finished(checkpoint: str | None, max_steps: int = -1) -> bool:
    """Whether ``checkpoint`` ends its run, so that running the command again has nothing to do.

    Transformers, resumed from a run's final checkpoint, would train one step more; a
    larger ``max_steps`` than the run had means training longer, which resumes as usual.
    """
    if checkpoint is None:
        return False
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    done = state["global_step"] >= state["max_steps"] > 0
    return done and (max_steps <= 0 or max_steps <= state["global_step"])


def restore_adapter(checkpoint: Path, dest: Path) -> Path:
    """Copy a finished run's adapter out of its final checkpoint, unless ``dest`` has it
    already (a run killed between its final checkpoint and its export lacks it)."""
    if not (dest / "adapter_config.json").is_file():
        shutil.copytree(checkpoint, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            "optimizer.pt", "scheduler.pt", "rng_state*.pth", "trainer_state.json", "training_args.bin"))
    return dest


def _finished_result(model: str, out: Path, checkpoint: Path, merge: bool) -> SftResult:
    """The outputs of a run that had already finished, completing any export it lacks."""
    adapter = restore_adapter(checkpoint, out / ADAPTER_DIR)
    merged = out / MERGED_DIR if merge else None
    if merged is not None and not (merged / "config.json").is_file():
        merge_adapter(model, adapter, merged)
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return SftResult(adapter=adapter, merged=merged, global_step=state["global_step"], tokens=0, seconds=0.0,
                     tokens_per_second=0.0)


def throughput_meter() -> Any:
    """A ``TrainerCallback`` timing this invocation's training loop and counting its tokens.

    It starts after the checkpoint (and its token count) is loaded, so a resumed run
    reports the throughput of the steps it ran itself, and model loading is not counted.
    """
    from transformers import TrainerCallback

    class ThroughputMeter(TrainerCallback):
        tokens = 0
        seconds = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._start = (time.monotonic(), state.num_input_tokens_seen)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds = time.monotonic() - self._start[0]
            self.tokens = state.num_input_tokens_seen - self._start[1]

    return ThroughputMeter()


def merge_adapter(model: str, adapter: Path, dest: Path) -> Path:
    """Write the base model with ``adapter`` merged in, and its tokenizer, to ``dest``.

    The result is an ordinary Hugging Face model directory: ``aflab run --model hf/DEST``,
    ``vllm serve DEST`` and llama.cpp's ``convert_hf_to_gguf.py DEST`` take it as is. The
    merge loads the base model on CPU, so it needs the model's size in RAM.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, kwargs = hf_source(model)
    base = AutoModelForCausalLM.from_pretrained(source, dtype="auto", device_map="cpu", **kwargs)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    merged.save_pretrained(str(dest))
    AutoTokenizer.from_pretrained(adapter).save_pretrained(str(dest))
    return dest
