"""Training (``ddpmctl train``): configuration, data stream, optimizers, distributed setup and the
loop, a module each.

    from ddpmctl.train import TrainConfig, train
    result = train(TrainConfig(steps=2000, batch=128, sde="vp"), "swissroll.npy", "ckpt/")
    result = train({"steps": 4000}, None, "ckpt/", resume=True)  # reloads ckpt/config.yaml
"""

from ddpmctl.train.config import (
    LR_SCHEDULES,
    NORMALIZE,
    OPTIMIZERS,
    TrainConfig,
    config_to_yaml,
    default_warmup,
    net_config_for,
    net_flags_to_config,
    read_config_file,
    resolve_config,
)
from ddpmctl.train.data import (
    IndexStream,
    TrainData,
    epoch_permutation,
    open_data,
    open_run_data,
    seed_global_rng,
    step_seeds,
)
from ddpmctl.train.dist import Dist, TrainingInterrupted, setup_distributed
from ddpmctl.train.loop import Callback, TrainResult, describe_model, train
from ddpmctl.train.optim import AdamW, Muon, ema_decay, ema_update, lr_at, make_optimizer, newton_schulz

__all__ = [
    "LR_SCHEDULES",
    "NORMALIZE",
    "OPTIMIZERS",
    "TrainConfig",
    "config_to_yaml",
    "default_warmup",
    "net_config_for",
    "net_flags_to_config",
    "read_config_file",
    "resolve_config",
    "IndexStream",
    "TrainData",
    "epoch_permutation",
    "open_data",
    "open_run_data",
    "seed_global_rng",
    "step_seeds",
    "Dist",
    "TrainingInterrupted",
    "setup_distributed",
    "Callback",
    "TrainResult",
    "describe_model",
    "train",
    "AdamW",
    "Muon",
    "ema_decay",
    "ema_update",
    "lr_at",
    "make_optimizer",
    "newton_schulz",
]
