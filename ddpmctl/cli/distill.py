"""ddpmctl distill: progressive distillation of a checkpoint's DDIM sampler into a few-step student."""

from __future__ import annotations

from typing import Optional

import typer

from ddpmctl.cli.common import (
    at_least,
    batch_option,
    choice_option,
    device_option,
    emit_json,
    err,
    flag_option,
    handle_errors,
    json_option,
    progress,
    quiet_option,
    seed_option,
)
from ddpmctl.cli.train import parse_duration
from ddpmctl.distill_options import DEFAULT_FROM_STEPS, DistillConfig
from ddpmctl.errors import InputError

DEFAULTS = DistillConfig()

# options with long help, declared here so that ``command``'s signature reads as a list
TEACHER = typer.Argument(..., metavar="TEACHER", help="The trained checkpoint (folder or .safetensors file).")
DATA = typer.Argument(
    ..., metavar="DATA", help="Training data (.npy or a folder of images) of the teacher's kind and shape."
)
FROM_STEPS = typer.Option(
    None, "--from-steps", callback=at_least("--from-steps", 2),
    help=f"The teacher's DDIM steps N in round 1 (its grid is the one 'sample --sampler ddim --steps N' uses) "
         f"(default: {DEFAULT_FROM_STEPS}; a distilled teacher: the steps it records).",
)  # fmt: skip
TO_STEPS = typer.Option(
    DEFAULTS.to_steps, "--to-steps", callback=at_least("--to-steps", 1),
    help="The student's steps (its NFE): each round halves the steps, so N must be --to-steps times a power of 2.",
)  # fmt: skip
STEPS_PER_ROUND = typer.Option(
    DEFAULTS.steps_per_round, "--steps-per-round", callback=at_least("--steps-per-round", 1),
    help="Optimizer updates per round (fewer if --time-limit ends the round first).",
)  # fmt: skip
LR = typer.Option(
    None, "--lr", callback=at_least("--lr", 0, strict=True),
    help="Peak learning rate of each round (linear warm-up, then a linear decay to 0 at the round's end) "
         "(default: the teacher's training lr, from its checkpoint).",
)  # fmt: skip
GUIDE = typer.Option(
    None, "--guide", metavar="GUIDE",
    help="Distil the teacher guided by this weaker model (autoguidance, as 'sample --guide'): round 1's "
         "targets are the guided DDIM's; the student needs no guide (1 NFE per step).",
)  # fmt: skip
TIME_LIMIT = typer.Option(
    None, "--time-limit",
    help="Stop after this much wall time in all (e.g. 90s, 20m, 1.5h): each round gets an equal share of "
         "what is left, and its learning rate decays over that share.",
)  # fmt: skip


# fmt: off
@handle_errors("distill")
def command(
    teacher: str = TEACHER,
    data: str = DATA,
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Student folder (created)."),
    from_steps: Optional[int] = FROM_STEPS,
    to_steps: int = TO_STEPS,
    steps_per_round: int = STEPS_PER_ROUND,
    lr: Optional[float] = LR,
    optimizer: Optional[str] = choice_option(
        None, "--optimizer", ("adamw", "muon"), "adamw or muon (default: the teacher's, from its checkpoint)."),
    warmup: Optional[int] = typer.Option(
        None, "--warmup", callback=at_least("--warmup", 0),
        help="Linear warm-up updates of each round (default: 5% of --steps-per-round)."),
    clip: float = typer.Option(DEFAULTS.clip, "--clip", callback=at_least("--clip", 0),
                               help="Gradient-norm clipping (0: off)."),
    ema: float = typer.Option(DEFAULTS.ema, "--ema", callback=at_least("--ema", 0),
                              help="EMA decay of the student's weights within a round (0: off, the raw weights)."),
    guide: Optional[str] = GUIDE,
    guidance: Optional[float] = typer.Option(
        None, "--guidance", help="With --guide: the weight w, x0 = x0_guide + w (x0 - x0_guide) (default: 3)."),
    batch: int = batch_option(DEFAULTS.batch),
    seed: int = seed_option(0),
    time_limit: Optional[str] = TIME_LIMIT,
    device: str = device_option(),
    force: bool = flag_option("--force", help="Overwrite a student already in the output folder."),
    resume: bool = flag_option("--resume", help="Continue in the output folder after its last finished round."),
    quiet: bool = quiet_option(),
    json_out: bool = json_option(),
) -> None:
    # fmt: on
    """Distil a trained checkpoint into a student that samples in a few steps (progressive distillation,
    Salimans & Ho 2022, Algorithm 2).

    Round 1 trains a student, initialised from the teacher, so that one DDIM step of the student from t to
    t'' lands where two DDIM steps of the teacher (t -> t' -> t'', eta 0) land, on the teacher's N-step
    grid: the student's x0 is fitted to x~ = (z_t'' - (sigma_t''/sigma_t) z_t) / (alpha_t'' - (sigma_t''/sigma_t)
    alpha_t) with the truncated-SNR weight max(SNR(t), 1). The student becomes the next round's teacher on
    every other time, until the steps reach --to-steps: log2(N / --to-steps) rounds. Needs a ddpm or vp
    checkpoint, neither class-conditional nor self-conditioned (docs/distill.md).

    OUT receives model.safetensors (the last student), student-K.safetensors (each earlier round's, K
    steps) and metrics.jsonl. Every student is a checkpoint like any other that also records the
    distillation and its grid: 'ddpmctl sample OUT' samples with DDIM on that grid (K NFE) by default;
    'info' shows the record. Ctrl-C keeps the finished rounds; --resume continues after the last.

    Example: ddpmctl distill ckpt/ triangles.npy --from-steps 64 --to-steps 4 -o student/

    Example: ddpmctl distill ckpt/ triangles.npy --guide ckpt/snapshot-20.safetensors --guidance 4 -o student/

    Example: ddpmctl sample student/ -n 64 -o samples.png   (4 NFE)
    """
    from ddpmctl.distill import plan_distill, run_distill

    if output is None:
        raise InputError("missing -o/--output OUT (the student folder)")
    if guidance is not None and guide is None:
        raise InputError("--guidance: needs --guide (the weaker model that guides the teacher)")
    cfg = DistillConfig(
        from_steps=from_steps, to_steps=to_steps, steps_per_round=steps_per_round, batch=batch, lr=lr,
        optimizer=optimizer, warmup=warmup, clip=clip, ema=ema, seed=seed, device=device,
        guidance=(3.0 if guidance is None else guidance) if guide is not None else 1.0,
        time_limit=None if time_limit is None else parse_duration(time_limit),
    )  # fmt: skip
    job = plan_distill(teacher, data, output, cfg, guide, resume, force)  # every check before any work
    if job.model.prediction in ("eps", "score") and not quiet:
        err(f"ddpmctl distill: warning: the teacher predicts {job.model.prediction}; its x0 error at high noise "
            "is its output's times sigma/alpha, so few-step students learn slowly (x0 or v networks distil best; "
            "docs/distill.md)")  # fmt: skip
    with progress((job.rounds - job.first_round + 1) * steps_per_round, "distill", quiet) as update:

        def on_step(info: dict) -> None:
            fields = {"round": f"{info['round']}/{info['rounds']}", "steps": info["steps"]}
            if info.get("loss") is not None:
                fields["loss"] = info["loss"]
            update(1, **fields)

        result = run_distill(job, [on_step])
    _report(result, teacher, json_out, quiet)


def _report(result, teacher: str, json_out: bool, quiet: bool) -> None:
    if json_out:
        emit_json(result.as_dict())
        return
    if quiet:
        return
    for r in result.rounds:
        loss = "n/a" if r["loss"] is None else f"{r['loss']:.4g}"
        print(f"round {r['round']}: {r['steps']}-step student, {r['updates']} updates, loss {loss}, "
              f"{r['seconds']:.1f} s -> {r['file']}")  # fmt: skip
    earlier = [r["file"] for r in result.rounds[:-1]]
    print(
        f"distilled {teacher} into a {result.steps}-step student in {result.elapsed_s:.1f} s: {result.model}; "
        f"'ddpmctl sample {result.out_dir}' samples with {result.steps} NFE"
        + (f" (the {2 * result.steps}-step student: {earlier[-1]})" if earlier else "")
    )
