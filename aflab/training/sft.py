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
``accelerate launch [--multi_gpu --num_processes N ...] -m aflab.training.sft ...`` with
the same arguments (docs/training.md has the exact commands).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
STATS_FILE = "train_stats.json"
PAPER_LORA_R = 64
PAPER_LORA_ALPHA = 128
PAPER_EPOCHS = 1.0
PAPER_MAX_LENGTH = 1024


@dataclass(frozen=True)
class SftOptions:
    """Training options; the defaults are the paper's recipe where it gives one."""

    lora_r: int = PAPER_LORA_R
    lora_alpha: int = PAPER_LORA_ALPHA
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    """Comma-separated module names, or ``all-linear`` (every linear layer but the output head)."""
    epochs: float = PAPER_EPOCHS
    max_length: int | None = PAPER_MAX_LENGTH
    """Tokens per document and per packed sequence; None: no truncation (needs packing off)."""
    packing: bool = True
    learning_rate: float = 1e-4
    warmup: float = 0.03
    """Linear warm-up: a share of the steps below 1, a number of steps from 1."""
    batch_size: int = 4
    """Sequences per device per micro-step."""
    gradient_accumulation: int = 4
    save_steps: int = 100
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: the whole of ``epochs``)."""
    logging_steps: int = 10
    gradient_checkpointing: bool = False
    seed: int = 0


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

    from aflab.cli import CliError

    path = Path(path)
    if not path.is_file():
        raise CliError(f"training data {path} does not exist: give a JSONL file with a 'text' field per line")
    try:
        data = load_dataset("json", data_files=str(path), split="train")
    except Exception as e:  # datasets raises several types for malformed JSON
        raise CliError(f"training data {path} is not readable JSONL ({type(e).__name__}): "
                       "write one JSON object per line") from e
    if "text" in data.column_names:
        columns = ["text"]
    elif {"prompt", "completion"} <= set(data.column_names):
        columns = ["prompt", "completion"]
    else:
        raise CliError(f"training data {path} has fields {', '.join(data.column_names) or '(none)'}: each line "
                       "needs 'text' (a document) or 'prompt' and 'completion'")
    data = data.select_columns(columns)
    if "text" in columns:
        data = data.filter(lambda row: bool(row["text"] and row["text"].strip()))
    if len(data) == 0:
        raise CliError(f"training data {path} has no non-empty documents")
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

    from aflab.training.common import check_model_source, load_policy, load_tokenizer

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
    import shutil

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

    from aflab.training.common import hf_source

    source, kwargs = hf_source(model)
    base = AutoModelForCausalLM.from_pretrained(source, dtype="auto", device_map="cpu", **kwargs)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    merged.save_pretrained(str(dest))
    AutoTokenizer.from_pretrained(adapter).save_pretrained(str(dest))
    return dest


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``aflab train sft`` (also ``python -m aflab.training.sft``)."""
    d = SftOptions()
    p.add_argument("--model", required=True, help="a local Hugging Face model directory, or a hub name")
    p.add_argument("--data", required=True, metavar="DOCS.jsonl",
                   help="documents, one JSON object per line with a 'text' field (e.g. from aflab synthdocs)")
    p.add_argument("--out", required=True, help="output directory; running the same command again resumes")
    p.add_argument("--merge", action="store_true", help="also write OUT/merged: the model with the adapter merged in")
    p.add_argument("--lora-r", type=int, default=d.lora_r, help="LoRA rank (default: %(default)s, the paper's)")
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help="LoRA alpha (default: %(default)s, the paper's)")
    p.add_argument("--lora-dropout", type=float, default=d.lora_dropout, help="(default: %(default)s)")
    p.add_argument("--target-modules", default=d.target_modules,
                   help="comma-separated module names, or all-linear (default: %(default)s)")
    p.add_argument("--epochs", type=float, default=d.epochs, help="(default: %(default)s, the paper's)")
    p.add_argument("--max-length", type=int, default=d.max_length,
                   help="tokens per document and per packed sequence (default: %(default)s, the paper's)")
    p.add_argument("--no-packing", dest="packing", action="store_false",
                   help="one document per sequence, padded, instead of packing documents together")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="sequences per device per micro-step (default: %(default)s)")
    p.add_argument("--gradient-accumulation", type=int, default=d.gradient_accumulation,
                   help="micro-steps per optimizer step (default: %(default)s)")
    p.add_argument("--save-steps", type=int, default=d.save_steps,
                   help="checkpoint every this many optimizer steps (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=d.max_steps,
                   help="stop after this many optimizer steps (default: the whole of --epochs)")
    p.add_argument("--logging-steps", type=int, default=d.logging_steps, help="(default: %(default)s)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less GPU memory, ~30%% slower")
    p.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")


def options_from(args: argparse.Namespace) -> SftOptions:
    return SftOptions(
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules=args.target_modules, epochs=args.epochs, max_length=args.max_length,
        packing=args.packing, learning_rate=args.learning_rate, batch_size=args.batch_size,
        gradient_accumulation=args.gradient_accumulation, save_steps=args.save_steps, max_steps=args.max_steps,
        logging_steps=args.logging_steps, gradient_checkpointing=args.gradient_checkpointing, seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    """``aflab train sft``: train, then say where the adapter (and merged model) went."""
    from aflab.training import require_train_extra

    require_train_extra("aflab train sft")
    from aflab.cli import console

    result = train_sft(args.model, args.data, args.out, options_from(args), merge=args.merge)
    console.print(f"step {result.global_step}: {result.tokens} tokens in {result.seconds:.0f} s "
                  f"({result.tokens_per_second:.0f} tokens/s); adapter in {result.adapter}")
    if result.merged:
        console.print(f"merged model in {result.merged}: evaluate with aflab run --model hf/{result.merged}")
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``accelerate launch -m aflab.training.sft ...``."""
    from aflab.training.commands import run_command

    p = argparse.ArgumentParser(prog="aflab.training.sft", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    run_command(run, p.parse_args(argv))


if __name__ == "__main__":
    main()
