"""Sweeps: models × settings × prompt variations × scratchpad modes, as one Inspect eval set.

A sweep is one call to ``eval_set`` with a task per (setting, variation, mode) and every
model, logging into ``DIR/logs``: Inspect runs the models' tasks in parallel within each
provider's connection limits, and running the same sweep again skips finished cells and
finishes only the missing samples of interrupted ones. The comparison report is then
built from the logs alone (``aflab.compare``).

A sweep file (YAML) names the same things as the command line::

    models:
      - anthropic/claude-3-opus-20240229
      - name: openai-api/vllm/meta-llama/Llama-3.1-8B-Instruct   # with provider options
        base_url: http://localhost:8000/v1
        args: {api_key: none}
    settings: [helpful_only, animal_welfare]   # built-in names or setting folders
    variations: [default, no-examples, lab-openai]
    scratchpad: [true, false]
    queries: 100
    grader: openai/gpt-4o                      # a name, or a mapping like a model's
    classifiers: [af-improved]
    batch: true                                # or a batch size: providers' batch APIs, ~50 % price
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from inspect_ai import Task
from inspect_ai.model import Model, get_model

from aflab.compare import write_comparison
from aflab.errors import SettingError, SweepError
from aflab.experiment import evaluate, rescore_log
from aflab.prices import Batch
from aflab.report import local_path
from aflab.settings import load_setting
from aflab.tasks import alignment_faking
from aflab.variations import BASE, all_variations, missing_blocks


@dataclass(frozen=True)
class ModelSpec:
    name: str
    base_url: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sweep:
    models: list[ModelSpec]
    settings: list[str] = field(default_factory=lambda: ["helpful_only"])
    variations: list[str] = field(default_factory=lambda: [BASE])
    scratchpad: list[bool] = field(default_factory=lambda: [True])
    queries: int | None = None
    seed: int | None = None
    cues: str = "free,paid"
    epochs: int = 1
    grader: ModelSpec | None = None
    classifiers: list[str] = field(default_factory=list)
    votes: int | None = None
    max_connections: int | None = None
    max_tasks: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_rounds: int | None = None
    batch: Batch = None
    """Send the models' and the grader's calls to their providers' batch APIs (True, or a
    batch size), as Inspect's ``batch`` option."""


def _as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return value
    raise SweepError(f"sweep key '{key}' must be a list or a comma-separated string, not {type(value).__name__}")


def _model_spec(entry: Any) -> ModelSpec:
    if isinstance(entry, str):
        return ModelSpec(entry)
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        unknown = set(entry) - {"name", "base_url", "args"}
        if unknown:
            raise SweepError(f"model '{entry['name']}': unknown key(s) {', '.join(sorted(unknown))}; use name, base_url, args")
        return ModelSpec(entry["name"], entry.get("base_url"), dict(entry.get("args") or {}))
    raise SweepError(f"model entry {entry!r} must be a model name or a mapping with a 'name'")


def sweep_from_dict(config: dict[str, Any]) -> Sweep:
    """A ``Sweep`` from a sweep file's (or the command line's) keys, checked."""
    known = {f.name for f in fields(Sweep)}
    unknown = set(config) - known
    if unknown:
        raise SweepError(f"unknown sweep key(s) {', '.join(sorted(unknown))}: the keys are {', '.join(sorted(known))}")
    if not config.get("models"):
        raise SweepError("a sweep needs models: give --models a,b or a 'models:' list in the sweep file")
    values = dict(config)
    values["models"] = [_model_spec(m) for m in _as_list(config["models"], "models")]
    if values.get("grader") is not None:
        values["grader"] = _model_spec(values["grader"])
    for key in ("settings", "variations", "classifiers"):
        if key in values:
            values[key] = [str(v) for v in _as_list(values[key], key)]
    batch = values.get("batch")
    if batch is not None and not (isinstance(batch, bool) or (isinstance(batch, int) and batch > 0)):
        raise SweepError(f"sweep key 'batch' must be true, false or a batch size (a positive whole number), not {batch!r}")
    if "scratchpad" in values:
        modes = values["scratchpad"] if isinstance(values["scratchpad"], list) else [values["scratchpad"]]
        if not modes or not all(isinstance(m, bool) for m in modes):
            raise SweepError("sweep key 'scratchpad' must be true, false or [true, false]")
        values["scratchpad"] = list(dict.fromkeys(modes))
    return Sweep(**values)


def load_sweep(path: str | Path) -> Sweep:
    """The sweep described by a YAML file."""
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise SweepError(f"cannot read sweep file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise SweepError(f"sweep file {path} is not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(config, dict):
        raise SweepError(f"sweep file {path} must be a mapping of keys (models, settings, variations, ...)")
    return sweep_from_dict(config)


def sweep_tasks(sweep: Sweep) -> tuple[list[Task], list[str]]:
    """One task per setting × variation × mode, and notes on the cells left out.

    A variation that edits blocks a setting does not have is skipped for that setting (with
    a note) rather than failing the sweep, so common variations can be swept over settings
    that support only some of them; a variation no setting knows is an error.
    """
    tasks: list[Task] = []
    notes: list[str] = []
    known: set[str] = set()
    for setting_name in sweep.settings:
        setting = load_setting(setting_name)
        variations = all_variations(setting)
        known |= variations.keys()
        for variation in sweep.variations:
            missing = missing_blocks(setting, variations[variation]) if variation in variations else []
            if variation not in variations or missing:
                why = f"no block {', '.join(missing)}" if missing else "not defined for it"
                notes.append(f"variation '{variation}' skipped for setting '{setting_name}': {why}")
                continue
            for scratchpad in sweep.scratchpad:
                # the registered task, given names, so that each cell's log records its arguments
                tasks.append(alignment_faking(
                    setting_name,
                    queries=sweep.queries,
                    seed=sweep.seed,
                    cues=sweep.cues,
                    scratchpad=scratchpad,
                    variation=variation,
                    **({"max_rounds": sweep.max_rounds} if sweep.max_rounds else {}),
                ))
    unknown = [v for v in sweep.variations if v not in known]
    if unknown:
        raise SettingError(f"unknown variation(s) {', '.join(unknown)}: `aflab variations` lists them")
    return tasks, notes


SweepRunner = Callable[..., tuple[bool, dict[str, Any]]]
"""``run_sweep`` or a probe's runner with its signature: (sweep, out, models=, grader=) ->
(every cell finished, comparison)."""


def _model(spec: ModelSpec) -> Model:
    return get_model(spec.name, base_url=spec.base_url, **spec.args)


def sweep_models(sweep: Sweep) -> tuple[list[Model], Model | None]:
    """The sweep's models and grader, constructed now so that a missing key or package
    fails before any work."""
    return [_model(m) for m in sweep.models], _model(sweep.grader) if sweep.grader else None


def run_sweep(sweep: Sweep, out: str | Path, models: list[Model] | None = None,
              grader: Model | None = None, display: str | None = None,
              wrap: Callable[[Task], Task] | None = None) -> tuple[bool, dict[str, Any]]:
    """Run every cell of ``sweep`` into ``out/logs`` and write the comparison into ``out``.

    ``models`` and ``grader`` override the sweep's model names with ready model objects
    (tests pass scripted mock models); ``wrap`` changes every task before it runs (a probe
    adds its own solver steps and scorers). Returns whether every cell finished, and the
    comparison.
    """
    out = Path(out)
    tasks, notes = sweep_tasks(sweep)
    if wrap is not None:
        tasks = [wrap(task) for task in tasks]
    if models is None:
        models = [_model(m) for m in sweep.models]
    if grader is None and sweep.grader:
        grader = _model(sweep.grader)
    success, logs = evaluate(
        tasks,
        models,
        out / "logs",
        grader=grader,
        epochs=sweep.epochs,
        display=display,
        max_tasks=sweep.max_tasks,
        max_connections=sweep.max_connections,
        temperature=sweep.temperature,
        max_tokens=sweep.max_tokens,
        seed=sweep.seed,
        batch=sweep.batch,
    )
    if sweep.classifiers:
        for log in logs:
            if log.status == "success":
                rescore_log(local_path(log.location), sweep.classifiers, grader=grader, votes=sweep.votes,
                            batch=sweep.batch)
    comparison = write_comparison(out / "logs", out)
    comparison.setdefault("notes", []).extend(notes)
    return success, comparison
