"""The stages in order: ``aflab probe activations``' work, given its options."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from aflab.condition import Condition
from aflab.cues import TRAINING_CUE, UNMONITORED_CUE
from aflab.errors import UsageError
from aflab.parsing import OUTPUT_OPEN
from aflab.probes.activations.capture import capture, outcome_summary, parse_layers, prompts, shared_prefix
from aflab.probes.activations.probing import PROBE_C, probe_capture
from aflab.probes.activations.report import probe_figure, steering_figure, write_report
from aflab.probes.activations.steering import cue_direction, steering_sweep
from aflab.providers import has_system_role
from aflab.training import require_train_extra
from aflab.training.common import check_model_source, hf_source, load_tokenizer

console = Console(stderr=True)


def _device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but torch sees no CUDA GPU here: use --device cpu or a machine with a GPU")
    return name


CHECKPOINTS = "checkpoints"
"""Subfolder of ``--out`` with every finished batch, so that a re-run resumes (and a run
with other α reuses the capture)."""


def _key(*identity: Any) -> str:
    """A short hash of what determines a batch's result: model, prompts and options."""
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def probe_activations(
    model_name: str,
    condition: Condition,
    out: str | Path,
    *,
    limit: int = 100,
    layers: str = "all",
    steer_layer: int | None = None,
    alphas: list[float] | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 4,
    device: str | None = None,
) -> dict[str, Any]:
    """Capture, probe, optionally steer (``steer_layer`` with ``alphas``), and write
    probes.json, probes.md and the figures into ``out``; returns what probes.json holds.

    ``condition`` is a no-scratchpad condition whose compliance is read from the
    acceptance tag; ``layers`` is ``all`` or a comma list (see ``parse_layers``), checked
    against the model's config before its weights load.
    """
    require_train_extra("aflab probe activations")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if limit < 2:
        raise UsageError(f"--limit {limit}: probes need at least 2 queries (≥ 200 for stable ones)")
    if max_new_tokens < 1 or batch_size < 1:
        raise UsageError("--max-new-tokens and --batch-size must be at least 1")
    setting = condition.setting
    if setting.compliance == "rubric":
        raise UsageError(f"setting {setting.name} is judged by a grader's rubric, but probe activations reads "
                         "compliance from the acceptance tag of a short greedy answer: use a setting with the tag "
                         "protocol, such as helpful_only")
    device = _device(device)
    queries = setting.queries()[:limit]
    check_model_source(model_name)
    source, source_args = hf_source(model_name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Layers are checked against the config before the weights load: an 8B model takes a while.
    count = AutoConfig.from_pretrained(source, **source_args).get_text_config().num_hidden_layers
    chosen = parse_layers(layers, count)
    steer = None if steer_layer is None else parse_layers(str(steer_layer), count)[0]
    if steer is not None and steer not in chosen:
        chosen = sorted([*chosen, steer])
    tokenizer = load_tokenizer(model_name)
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    console.print(f"loading {model_name} on {device}")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **source_args).to(device).eval()

    cues = (TRAINING_CUE, UNMONITORED_CUE)
    pairs = [(q.id, cue) for q in queries for cue in cues]
    texts = prompts(tokenizer, condition.system_prompt, [condition.user_turn(q.text, cue) for q in queries for cue in cues],
                    system_role=has_system_role(model_name))
    conversations = [(q, cue, text) for (q, cue), text in zip(pairs, texts, strict=True)]
    key = _key(model_name, texts, chosen, max_new_tokens, batch_size)
    prefix = shared_prefix(model, tokenizer, texts)
    console.print(f"capturing {len(chosen)} layers for {len(conversations)} prompts on {device} "
                  f"({len(prefix.ids) if prefix else 0} shared prompt tokens computed once)")
    cap = capture(model, tokenizer, conversations, chosen, max_new_tokens=max_new_tokens,
                  batch_size=batch_size, prefix=prefix, checkpoints=out / CHECKPOINTS / f"capture-{key}")
    results = probe_capture(cap)
    report: dict[str, Any] = {
        "model": model_name, "setting": setting.name, "variation": condition.variation.name,
        "n_queries": len(queries), "layers": chosen,
        "position": f"final prompt token of the answer's {OUTPUT_OPEN} prefill (token-healed: see docs/probes.md)",
        "probe": f"StandardScaler + LogisticRegression(C={PROBE_C}), StratifiedGroupKFold by query (folds per "
                 "target); accuracy with a Wilson interval over the held-out predictions",
        "probes": [asdict(r) for r in results],
        "answers": outcome_summary(cap.samples),
        "samples": [asdict(s) for s in cap.samples],
    }
    title = f"{model_name} · {setting.name}, no scratchpad, {len(queries)} queries"
    figures = {"probe_accuracy.png": lambda path: probe_figure(results, path, title)}
    if steer is not None:
        acts = cap.activations[chosen.index(steer)]
        direction = cue_direction(acts, [s.cue for s in cap.samples])
        console.print(f"steering layer {steer} with α in {alphas}")
        report["steering"] = {
            "layer": steer,
            "direction": "difference of class means at the final prompt token (training − unmonitored), from the "
                         "same samples; α = 1 adds one average cue effect at the final prompt token and every "
                         "generated token",
            "direction_norm": float(np.linalg.norm(direction)),
            "median_activation_norm": float(np.median(np.linalg.norm(acts, axis=1))),
            "alphas": steering_sweep(model, tokenizer, conversations, steer, direction, alphas or [0.0],
                                     baseline=cap.samples, max_new_tokens=max_new_tokens,
                                     batch_size=batch_size, prefix=prefix,
                                     checkpoints=out / CHECKPOINTS / f"steer-{key}-layer{steer}"),
        }
        figures["steering.png"] = lambda path: steering_figure(report["steering"], path, title)
    write_report(out, report, figures)
    return report
