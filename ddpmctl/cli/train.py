"""ddpmctl train: train a U-Net (images) or MLP (points) denoiser; checkpoints in a folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ddpmctl.cli.common import (
    batch_option,
    device_option,
    emit_json,
    err,
    flag_option,
    handle_errors,
    json_option,
    parse_int_list,
    progress,
    quiet_option,
    seed_option,
    steps_option,
)
from ddpmctl.errors import InputError

# Parameter count of the default image network (3x32x32, sinusoidal), checked by tests/test_train.py.
DEFAULT_UNET_PARAMS = "1,063,651"
DEFAULT_MLP_PARAMS = "530,178"


def _help() -> str:
    paras = [
        "Train a denoising network on images (U-Net) or points (MLP) and write checkpoints.",
        "DATA is an .npy array (read through a memory map) or a folder of images. Images (N, C, H, W) in "
        "[0, 1] are mapped to [-1, 1]; points (N, D) are standardised with one mean and standard deviation "
        "(recorded in the checkpoint; --normalize none keeps them as they are).",
        "The process is discrete DDPM (--schedule, --T; t uniform over the T steps), a continuous SDE "
        "(--sde vp|subvp|ve; t uniform in (eps, 1)) or EDM's (--sde edm: Karras et al. 2022, Table 1; noise "
        "levels ln sigma ~ N(--p-mean, --p-std^2), preconditioning with --sigma-data, EDM's loss weight). The "
        "network predicts eps (default), x0, v, the score or EDM's F (--prediction; edm, the default with "
        "--sde edm) under an L2 or L1 loss (--loss), optionally with min-SNR-gamma weighting (--min-snr). "
        "AdamW with a linear warm-up, gradient clipping and an EMA of the weights (sampling uses the EMA).",
        "Every option can also come from a YAML file (--config; flags override it); the effective "
        "configuration is saved as CKPT_DIR/config.yaml. CKPT_DIR receives model.safetensors (EMA weights "
        "plus all metadata: what sample, fid and restore read), state.safetensors (what --resume reads), "
        "metrics.jsonl and sample grids. Ctrl-C saves a checkpoint and exits with code 130; --resume "
        "CKPT_DIR continues exactly where the run stopped. Under torchrun each rank takes its share of the "
        "global --batch (DDP).",
        "Class-conditional training: --labels LABELS.npy (one integer class per sample; DATA.labels.npy beside "
        "DATA.npy is used when present, --no-labels ignores it) adds a class embedding to the network's time "
        "embedding, and --label-dropout p (default 0.1) replaces a label by the null class with probability p, "
        "which trains the unconditional model in the same network (classifier-free guidance: sample --class K "
        "--cfg S). The checkpoint records the classes and their names (from LABELS.classes.txt, else 0..K-1).",
        "SR3 (Saharia et al. 2021): --condition sr:F trains a super-resolution model: the U-Net also sees the "
        "bicubic upsampling of y = A x0, the F x F average pooling of 'degrade --task sr --scale F', as extra input "
        "channels beside x_t (--condition-noise s adds N(0, s^2) noise to y, for noisy observations). Such a "
        "checkpoint records its condition and restores with 'restore CKPT y.npy --method sr3'; 'sample' refuses it.",
        f"Default networks: a U-Net of {DEFAULT_UNET_PARAMS} parameters for 3x32x32 images and an MLP of "
        f"{DEFAULT_MLP_PARAMS} parameters for 2-D points; --dry-run prints the parameter count and GFLOP per "
        "image of the network for your data and options.",
        "Example: ddpmctl train triangles.npy --steps 20000 --batch 128 -o ckpt/",
        "Example: ddpmctl train swissroll.npy --sde vp --steps 5000 -o roll/",
        "Example: ddpmctl train triangles.npy --sde edm --time-limit 10m -o edm/",
        "Example: ddpmctl train shapes.npy --labels shapes.labels.npy --steps 20000 -o cond/",
        "Example: ddpmctl train triangles.npy --condition sr:4 --config examples/triangles/demo.yaml -o sr3/",
        "Example: torchrun --nproc_per_node=2 -m ddpmctl train data.npy --config train.yaml -o ckpt/",
    ]
    return "\n\n".join(paras)


def _net_flags(base, mults, blocks, attn, dropout) -> dict:
    flags = {}
    if base is not None:
        flags["base"] = base
    if mults is not None:
        flags["mults"] = parse_int_list(mults, "--mults")
    if blocks is not None:
        flags["blocks"] = blocks
    if attn is not None:
        flags["attn"] = [] if attn.strip().lower() in ("", "none") else parse_int_list(attn, "--attn")
    if dropout is not None:
        flags["dropout"] = dropout
    return flags


def parse_duration(text: str) -> float:
    """'690', '90s', '12m', '1.5h' -> seconds (> 0); InputError otherwise."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    scale = units.get(t[-1:], None)
    try:
        value = float(t[:-1] if scale else t) * (scale or 1.0)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise InputError(f"--time-limit: expected a positive duration such as 690, 90s, 12m or 1.5h, got '{text}'")
    return value


# options with long help, declared here so that ``command``'s signature reads as a list
OPTIMIZER = typer.Option(
    None,
    "--optimizer",
    help="adamw (default) or muon (Muon on the hidden weight matrices, AdamW on the rest; same --lr scale).",
)
SCHEDULE = typer.Option(None, "--schedule", "-s", help="DDPM beta schedule name or .npy of betas (default linear).")
SDE = typer.Option(None, "--sde", help="Process: ddpm (discrete, default), vp, subvp, ve or edm (Karras et al. 2022).")
P_MEAN = typer.Option(None, "--p-mean", help="edm: mean of ln sigma in training (default -1.2, EDM Table 1).")
P_STD = typer.Option(None, "--p-std", help="edm: standard deviation of ln sigma in training (default 1.2).")
SIGMA_DATA = typer.Option(
    None,
    "--sigma-data",
    help="edm: the data's standard deviation in model space that the preconditioning assumes "
    "(default 0.5; standardised points have 1).",
)

LABEL_DROPOUT = typer.Option(
    None, "--label-dropout", help="With labels: probability of the null class (unconditional) (default 0.1)."
)
CONDITION = typer.Option(
    None,
    "--condition",
    metavar="sr:F",
    help="SR3: condition the network on the bicubic upsampling of the x F average-pooled image (what 'degrade "
    "--task sr --scale F' writes); restore with --method sr3.",
)
CONDITION_NOISE = typer.Option(
    None,
    "--condition-noise",
    help="With --condition: std of Gaussian noise added to the low-resolution training image, in image units "
    "[0, 1] like 'degrade --noise' (default 0).",
)
PREDICTION = typer.Option(
    None,
    "--prediction",
    help="Network output: eps (default), x0, v, score or edm (EDM's preconditioned F; the default with --sde edm).",
)


# The command's flags as a table, one line per option (the formatter leaves it as written).
# fmt: off
@handle_errors("train")
def command(
    data: Optional[str] = typer.Argument(None, help="Training data: .npy (images or points) or a folder of images. "
                                         "Optional with --resume (the recorded path is used)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Checkpoint folder (created)."),
    config: Optional[str] = typer.Option(None, "--config", help="YAML file of options (flags override it)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue training from this checkpoint folder."),
    force: bool = flag_option("--force", help="Overwrite a checkpoint already in the output folder."),
    steps: Optional[int] = steps_option("Optimizer steps (default 10000)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Instead of --steps: passes over the data."),
    time_limit: Optional[str] = typer.Option(
        None, "--time-limit", help="Stop after this much training wall time (e.g. 690, 90s, 12m, 1.5h) and save; "
        "a decaying --lr-schedule then decays over that time (or the steps, if they end first)."),
    batch: Optional[int] = batch_option(None, "Global: split across torchrun ranks (default 64)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 2e-4)."),
    optimizer: Optional[str] = OPTIMIZER,
    warmup: Optional[int] = typer.Option(
        None, "--warmup", help="Linear warm-up steps (default min(5000, 5% of the steps))."),
    lr_schedule: Optional[str] = typer.Option(
        None, "--lr-schedule", help="After warm-up: constant (default), or a cosine or linear decay to lr_min."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Decoupled weight decay (default 0)."),
    clip: Optional[float] = typer.Option(None, "--clip", help="Gradient-norm clipping (default 1.0; 0: off)."),
    ema: Optional[float] = typer.Option(
        None, "--ema", help="Largest EMA decay (default 0.9999, warm-up (1+n)/(10+n); 0: off)."),
    sde: Optional[str] = SDE,
    p_mean: Optional[float] = P_MEAN,
    p_std: Optional[float] = P_STD,
    sigma_data: Optional[float] = SIGMA_DATA,
    schedule: Optional[str] = SCHEDULE,
    T: Optional[int] = typer.Option(None, "--T", "-T", help="DDPM steps T of a named schedule (default 1000)."),
    prediction: Optional[str] = PREDICTION,
    loss: Optional[str] = typer.Option(None, "--loss", help="l2 (default) or l1."),
    min_snr: Optional[float] = typer.Option(None, "--min-snr", help="Min-SNR-gamma loss weighting (e.g. 5)."),
    normalize: Optional[str] = typer.Option(None, "--normalize", help="Points: auto (standardise, default) or none."),
    base: Optional[int] = typer.Option(None, "--base", help="Network width: U-Net base channels / MLP hidden units."),
    mults: Optional[str] = typer.Option(None, "--mults", help="U-Net channel multipliers per level, e.g. 1,2,2."),
    blocks: Optional[int] = typer.Option(None, "--blocks", help="Residual blocks per level (U-Net) / in total (MLP)."),
    attn: Optional[str] = typer.Option(None, "--attn", help="U-Net self-attention resolutions, e.g. 16 or 16,8; none."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout rate in the residual blocks."),
    hflip: Optional[bool] = flag_option("--hflip/--no-hflip", help="Random horizontal flips of images.", default=None),
    labels: Optional[str] = typer.Option(None, "--labels", help="Class labels (.npy, one integer per sample): train "
                                         "a class-conditional model (default: DATA.labels.npy when it exists)."),
    no_labels: bool = flag_option("--no-labels", help="Ignore DATA.labels.npy: train an unconditional model."),
    label_dropout: Optional[float] = LABEL_DROPOUT,
    condition: Optional[str] = CONDITION,
    condition_noise: Optional[float] = CONDITION_NOISE,
    seed: Optional[int] = seed_option(None, "(default 0)"),
    device: Optional[str] = device_option(None),
    bf16: Optional[bool] = flag_option("--bf16/--no-bf16", help="bf16 autocast on CUDA (default on).", default=None),
    compile_: Optional[bool] = flag_option("--compile/--no-compile", help="torch.compile the network.", default=None),
    log_every: Optional[int] = typer.Option(
        None, "--log-every", help="Write metrics.jsonl every K steps (default 10)."),
    save_every: Optional[int] = typer.Option(
        None, "--save-every", help="Checkpoint every K steps (default 1000; always at the end)."),
    sample_every: Optional[int] = typer.Option(
        None, "--sample-every", help="Write a sample grid (EMA, DDIM) every K steps."),
    snapshot: Optional[list[float]] = typer.Option(
        None, "--snapshot", help="Also keep the EMA model at this fraction of the run (by steps or --time-limit) as "
        "snapshot-P.safetensors (P per cent), e.g. a guide for sample --guide; repeatable."),
    dry_run: bool = flag_option("--dry-run", help="Print the network's parameters and GFLOP per image, then exit."),
    quiet: bool = quiet_option(),
    json_out: bool = json_option(),
) -> None:
    from ddpmctl import train as training

    flags = dict(steps=steps, epochs=epochs, batch=batch, lr=lr, optimizer=optimizer, warmup=warmup,
                 lr_schedule=lr_schedule, weight_decay=weight_decay, clip=clip, ema=ema, sde=sde, schedule=schedule,
                 T=T, p_mean=p_mean, p_std=p_std, sigma_data=sigma_data, prediction=prediction, loss=loss,
                 min_snr=min_snr, normalize=normalize, hflip=hflip, seed=seed, condition_noise=condition_noise,
                 device=device, bf16=bf16, compile=compile_, log_every=log_every, save_every=save_every,
                 sample_every=sample_every, time_limit=None if time_limit is None else parse_duration(time_limit),
                 snapshots=list(snapshot) if snapshot else None, label_dropout=label_dropout, condition=condition,
                 labels=_labels_flag(data, labels, no_labels, resume))
    # fmt: on
    cfg = _config(resume, config, flags, no_labels)
    train_data = training.open_run_data(cfg, data, _net_flags(base, mults, blocks, attn, dropout))
    if dry_run:
        return _dry_run(cfg, train_data, json_out)
    result = _train(cfg, train_data, output or resume, resume, force, quiet or not _rank0())
    if _rank0():
        _report(result, cfg, output or resume, json_out, quiet)


def _rank0() -> bool:
    """Whether this process is rank 0 (the only one under plain python; torchrun sets RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


def _config(resume: Optional[str], config: Optional[str], flags: dict, no_labels: bool):
    """The effective configuration (``train.resolve_config``); --no-labels cannot drop a resumed run's labels."""
    from ddpmctl.train import resolve_config

    cfg = resolve_config(resume, config, flags)
    if no_labels and cfg.labels is not None:
        raise InputError(f"--no-labels: the resumed run is class-conditional (labels {cfg.labels})")
    return cfg


def _labels_flag(data: Optional[str], labels: Optional[str], no_labels: bool, resume: Optional[str]):
    """--labels, else, for a new run without --no-labels, DATA.labels.npy when it is there (said on stderr)."""
    from ddpmctl.labels import find_labels

    if labels is not None and no_labels:
        raise InputError("--no-labels: not with --labels")
    if labels is not None or no_labels or resume is not None or data is None:
        return labels
    found = find_labels(data)
    if found is not None and _rank0():
        err(f"ddpmctl train: using the class labels {found} beside {data} (class-conditional; --no-labels to ignore)")
    return found


def _dry_run(cfg, train_data, json_out: bool) -> None:
    """Print the network's parameters and GFLOP per sample for this data and these options."""
    from ddpmctl.train import describe_model

    info = describe_model(cfg, train_data)
    if json_out:
        emit_json(info)
        return
    shape = "x".join(str(s) for s in info["data_shape"])
    per = "image" if info["data_kind"] == "images" else "sample"
    print(f"network: {info['net'].get('type')}  data: {info['data_kind']} {shape}  process: {info['process']}")
    print(f"parameters: {info['params']:,}")
    print(f"forward: {info['gflop_per_sample']:.4g} GFLOP per {per}")


def _train(cfg, train_data, output: str, resume: str | None, force: bool, quiet: bool):
    """Run the library's training under a progress bar; Ctrl-C -> one line and its exit code."""
    from ddpmctl.train import TrainingInterrupted, train

    if output is None:
        raise InputError("missing -o/--output CKPT_DIR (the checkpoint folder)")
    with progress(cfg.steps, "train", quiet) as update:
        state = {"first": True}

        def on_step(info: dict) -> None:
            if state["first"]:
                update(advance=info["step"] - 1)
                state["first"] = False
            fields = {}
            if info.get("loss") is not None:
                fields["loss"] = info["loss"]
            if info.get("images_per_s"):
                fields["img/s"] = round(info["images_per_s"], 1)
            update(1, **fields)

        rank0 = int(os.environ.get("RANK", "0")) == 0
        try:
            return train(
                cfg,
                train_data,
                output,
                [on_step],
                resume=resume,
                overwrite=force,
                log=lambda msg: err(f"ddpmctl train: {msg}") if rank0 else None,
            )
        except TrainingInterrupted as e:
            if rank0:
                err(f"ddpmctl train: {e.message}")
            raise typer.Exit(e.exit_code) from None


def _report(result, cfg, output: str, json_out: bool, quiet: bool) -> None:
    if json_out:
        emit_json(result.as_dict())
    elif not quiet:
        loss_txt = f"{result.loss:.4g}" if result.loss is not None else "n/a"
        stop_note = " (time limit reached)" if result.stopped and cfg.time_limit else ""
        print(
            f"trained {result.step} of {result.total_steps} steps{stop_note}: loss {loss_txt}, "
            f"{result.images_per_s:.1f} samples/s, {result.elapsed_s:.1f} s; "
            f"checkpoint {Path(output) / 'model.safetensors'}"
        )


command.__doc__ = _help()
