"""``aflab probe ...``: one command per probe beyond the compliance gap.

Every probe but ``activations`` is a sweep with its own report: it takes ``aflab sweep``'s
options (modes, limit, seed, grader, dry run, ...) and fixes the settings, variations and
cues its question needs (``run_probe``).
"""

from __future__ import annotations

import argparse

from aflab.cli.options import condition_from, condition_options
from aflab.cli.output import console
from aflab.cli.sweep import execute_sweep, sweep_options, sweep_spec
from aflab.probes.activations.run import probe_activations
from aflab.probes.activations.steering import DEFAULT_ALPHAS, parse_alphas
from aflab.probes.anti_lab import BASELINE, CONTROLS, run_anti_lab, run_controls
from aflab.probes.belief import REALISM, run_belief
from aflab.probes.motivation import SCENARIOS, SETTING, TIERS, run_motivation
from aflab.settings import load_setting
from aflab.sweep import SweepRunner
from aflab.variations import BASE


def probe_options(p: argparse.ArgumentParser, setting: str, several: bool = False) -> None:
    """The options of a sweep-based probe: its models and setting (``--settings``, a comma
    list, where the probe compares ``several``), and the sweep's own."""
    p.add_argument("--models", required=True, help="comma-separated Inspect models")
    if several:
        p.add_argument("--settings", default=setting, help="comma-separated setting names or folders (default: %(default)s)")
    else:
        p.add_argument("--setting", default=setting, help="setting name or folder (default: %(default)s)")
    sweep_options(p)
    p.set_defaults(command="probe")


def run_probe(args: argparse.Namespace, variations: list[str], cues: str, runner: SweepRunner, wrote: str,
              dry_run_notes: tuple[str, ...] = (), settings: list[str] | None = None) -> int:
    """Run (or price, with ``--dry-run``) the probe's sweep with ``runner``, which writes the
    files named in ``wrote`` beside the sweep's comparison; ``settings`` default to
    ``--setting``."""
    settings = [s.strip() for s in settings or [args.setting] if s.strip()]
    for name in settings:
        load_setting(name)  # an unknown setting fails here, before any model is built
    spec = sweep_spec(args, models=args.models, settings=settings, variations=variations, cues=cues)
    return execute_sweep(spec, args, runner, wrote, dry_run_notes)


def anti_lab(args: argparse.Namespace) -> int:
    return run_probe(args, [BASE, BASELINE], "paid", run_anti_lab, "anti_lab.md, anti_lab.json, anti_lab.png",
                     settings=args.settings.split(","))


def controls(args: argparse.Namespace) -> int:
    return run_probe(args, [BASE, *CONTROLS, BASELINE], "free,paid", run_controls, "controls.md")


def belief(args: argparse.Namespace) -> int:
    variations = [v.strip() for v in args.variations.split(",") if v.strip()]
    return run_probe(args, variations, "free,paid", run_belief, "belief.md, belief.json, belief.png",
                     dry_run_notes=("the belief probe adds one follow-up question per sample, and one grader call per "
                                    "sample with scratchpad reasoning (eval awareness), not counted above",))


def motivation(args: argparse.Namespace) -> int:
    return run_probe(args, [BASE, *SCENARIOS], ",".join(TIERS), run_motivation,
                     "motivation.md, motivation.json, motivation.png")


def activations(args: argparse.Namespace) -> int:
    probe_activations(args.model, condition_from(args, scratchpad=False), args.out, limit=args.limit,
                      layers=args.layers, steer_layer=args.steer_layer, alphas=parse_alphas(args.alphas),
                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, device=args.device)
    console.print(f"wrote {args.out}/probes.json, probes.md and the figures")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    probe = sub.add_parser("probe", help="probes beyond the compliance gap: anti-lab behaviour, controls, belief, "
                                         "motivation, activations")
    probes = probe.add_subparsers(dest="probe", required=True)

    a = probes.add_parser("anti-lab", help="would the model act against its lab (copy its weights out, leak, sabotage)?")
    probe_options(a, "anti_lab,anti_lab_animal_welfare", several=True)
    a.set_defaults(func=anti_lab)

    c = probes.add_parser("controls", help="does the compliance gap survive role-play, priming and realism controls?")
    probe_options(c, "helpful_only")
    c.set_defaults(func=controls)

    b = probes.add_parser("belief", help="does the model believe the scenario, and does doubting it change the gap?")
    probe_options(b, "helpful_only")
    b.add_argument("--variations", default=",".join(REALISM), help="comma-separated prompt variations (default: %(default)s)")
    b.set_defaults(func=belief)

    m = probes.add_parser("motivation", help="goal-guarding or rater sycophancy? three tiers and deployment scenarios")
    probe_options(m, SETTING)
    m.set_defaults(func=motivation)

    act = probes.add_parser("activations", help="linear probes and steering on a local model's residual stream "
                                                "(no scratchpad): is the cue, and the coming compliance, readable?")
    act.add_argument("--model", required=True, help="a Hugging Face model directory or hub name (a chat model)")
    condition_options(act)
    act.add_argument("--limit", type=int, default=100, help="queries, each under both cues (default: %(default)s; "
                                                            "≥ 200 for stable probes)")
    act.add_argument("--layers", default="all", help="'all' or block indices, e.g. 8,16,24 (default: %(default)s)")
    act.add_argument("--steer-layer", type=int, help="steer this layer along its cue direction (default: no steering)")
    act.add_argument("--alphas", default=DEFAULT_ALPHAS, help="multiples of the cue direction to add (default: %(default)s)")
    act.add_argument("--max-new-tokens", type=int, default=32, help="answer tokens generated (default: %(default)s)")
    act.add_argument("--batch-size", type=int, default=4, help="prompts per forward pass (default: %(default)s)")
    act.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    act.add_argument("--out", required=True, help="folder for probes.json, probes.md and the figures")
    act.set_defaults(func=activations)
