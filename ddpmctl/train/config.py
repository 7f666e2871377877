"""Training configuration: every option, its type and range declared once, and the one way the
effective configuration is resolved (defaults < resumed run's config.yaml < YAML file < flags)."""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ddpmctl import checkpoint as ckpt
from ddpmctl.diffusion import PREDICTIONS
from ddpmctl.errors import InputError
from ddpmctl.objectives import LOSSES
from ddpmctl.schedules import PROCESS_KINDS, Process, make_process

LR_SCHEDULES = ("constant", "cosine", "linear")
NORMALIZE = ("auto", "none")
OPTIMIZERS = ("adamw", "muon")


def _opt(default=None, *, choices: tuple = (), noun: str = "", bound: str = "", flag: str = ""):
    """A field with the values it takes: one of ``choices``, or within ``bound`` ("> 0", ">= 0",
    "[0, 1)"); messages name it ``flag`` (default ``--name-with-dashes``) and ``noun``. The type
    is the field's annotation (``int | None``: an int or null)."""
    return field(default=default, metadata={"choices": choices, "noun": noun, "bound": bound, "flag": flag})


@dataclass
class TrainConfig:
    """Every training option. YAML files and CLI flags fill the same fields (flags win)."""

    # data
    data: str | None = None  # the data path (recorded; ``--resume`` reuses it)
    normalize: str = _opt("auto", choices=NORMALIZE)  # points: auto = standardise with mean / std; none = identity
    hflip: bool = False  # images: random horizontal flips
    labels: str | None = None  # class labels (.npy, one per sample): a class-conditional network
    label_dropout: float = _opt(0.1, bound="[0, 1)")  # labels replaced by the null class (Ho & Salimans 2022)
    condition: str | None = None  # sr:F: an SR3 network that sees bicubic(A x0) beside x_t (ddpmctl.conditions)
    condition_noise: float = _opt(0.0, bound=">= 0")  # std (data units) of noise on A x0 at training
    # process
    sde: str = _opt("ddpm", choices=PROCESS_KINDS, noun="process ")  # ddpm (discrete) | vp | subvp | ve | edm
    schedule: str = "linear"  # ddpm: schedule name or betas .npy
    T: int = _opt(1000, bound="> 0")
    beta_start: float | None = None
    beta_end: float | None = None
    beta_min: float | None = None  # vp / subvp
    beta_max: float | None = None
    sigma_min: float | None = None  # ve, edm
    sigma_max: float | None = None
    t_eps: float | None = None  # smallest training time of the SDEs (default 1e-3 vp, 1e-5 ve)
    p_mean: float | None = None  # edm: ln sigma ~ N(p_mean, p_std^2) (default -1.2, 1.2)
    p_std: float | None = _opt(None, bound="> 0")
    sigma_data: float | None = _opt(None, bound="> 0")  # edm: the data std of the preconditioning (default 0.5)
    # objective
    prediction: str | None = _opt(None, choices=PREDICTIONS)  # default: edm with --sde edm, else eps
    loss: str = _opt("l2", choices=LOSSES)
    min_snr: float | None = _opt(None, bound="> 0")
    # network: keys of ddpmctl.nets' config that replace the defaults
    net: dict = field(default_factory=dict)
    # optimisation
    steps: int | None = _opt(None, bound="> 0")  # default 10000 when neither steps nor epochs is given
    epochs: float | None = _opt(None, bound="> 0")
    batch: int = _opt(64, bound="> 0")  # global batch (split across torchrun ranks)
    lr: float = _opt(2e-4, bound="> 0")
    weight_decay: float = _opt(0.0, bound=">= 0")
    adam_beta1: float = _opt(0.9, bound="[0, 1)", flag="adam_beta1")
    adam_beta2: float = _opt(0.999, bound="[0, 1)", flag="adam_beta2")
    optimizer: str = _opt("adamw", choices=OPTIMIZERS, noun="optimizer ")  # muon: Muon on the hidden matrices
    muon_momentum: float = _opt(0.95, bound="[0, 1)", flag="muon_momentum")
    warmup: int | None = _opt(None, bound=">= 0")  # default min(5000, 5% of the steps)
    lr_schedule: str = _opt("constant", choices=LR_SCHEDULES)
    lr_min: float = _opt(0.0, bound=">= 0")
    clip: float = _opt(1.0, bound=">= 0")  # gradient-norm clipping (0: off)
    ema: float = _opt(0.9999, bound="[0, 1)", noun="decay ")  # largest EMA decay (0: no EMA)
    ema_warmup: bool = True  # decay min(ema, (1 + n) / (10 + n))
    # run
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # bf16 autocast on CUDA
    compile: bool = False
    log_every: int = _opt(10, bound="> 0")
    save_every: int = _opt(1000, bound=">= 0")
    sample_every: int = _opt(0, bound=">= 0")
    sample_n: int = _opt(16, bound="> 0")
    sample_steps: int = _opt(50, bound="> 0")
    time_limit: float | None = _opt(None, bound="> 0")  # seconds of training wall time; also the lr's clock
    snapshots: list = field(default_factory=list)  # fractions of the run at which to keep the EMA model too

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> TrainConfig:
        """Build from a dict (YAML); unknown keys and wrong types -> InputError naming ``source``."""
        if not isinstance(d, dict):
            raise InputError(f"{source}: expected a mapping of option names to values")
        for k in d:
            if k not in _field_types():
                raise InputError(f"{source}: unknown option '{k}'")
        return cls().update(d, source)

    def update(self, d: dict, source: str = "config") -> TrainConfig:
        hints = _field_types()
        for k, v in d.items():
            if k not in hints:
                raise InputError(f"{source}: unknown option '{k}'")
            setattr(self, k, _coerce(v, *hints[k], f"{source}: {k}"))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        if self.prediction is None:
            self.prediction = "edm" if self.sde == "edm" else "eps"
        if self.prediction == "edm" and self.sde != "edm":
            raise InputError(f"--prediction edm: EDM's preconditioning needs --sde edm (this run's is {self.sde})")
        if self.steps is not None and self.epochs is not None:
            raise InputError("--steps and --epochs: give one of them, not both")
        for f in dataclasses.fields(self):
            if f.metadata:
                _check(f.name, getattr(self, f.name), _field_types()[f.name][1], **f.metadata)
        if not isinstance(self.net, dict):
            raise InputError("net: expected a mapping of network options")
        for f in self.snapshots:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                raise InputError(f"--snapshot: a fraction of the run in (0, 1), got {f!r}")
        self.snapshots = sorted({float(f) for f in self.snapshots})
        if self.condition is not None:
            from ddpmctl.conditions import parse_condition

            self.condition = parse_condition(self.condition).spec
        elif self.condition_noise > 0:
            raise InputError("--condition-noise: needs --condition (the noise of the training observation A x0)")
        return self

    def make_process(self) -> Process:
        extra = {k: getattr(self, k) for k in ("beta_start", "beta_end") if getattr(self, k) is not None}
        return make_process(
            None if self.sde == "ddpm" else self.sde,
            self.schedule,
            self.T,
            beta_min=self.beta_min,
            beta_max=self.beta_max,
            sigma_min=self.sigma_min,
            sigma_max=self.sigma_max,
            eps=self.t_eps,
            p_mean=self.p_mean,
            p_std=self.p_std,
            sigma_data=self.sigma_data,
            **extra,
        )


@functools.cache
def _field_types() -> dict[str, tuple[type, bool]]:
    """Each field's declared type as (base type, whether None is allowed)."""
    out = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        base = [a for a in args if a is not type(None)][0]
        out[name] = (typing.get_origin(base) or base, type(None) in args)
    return out


def _coerce(value, base: type, optional: bool, where: str):
    """Check / convert a YAML or flag value to the field's declared type."""
    if value is None:
        if optional:
            return None
        raise InputError(f"{where}: a value is required")
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: not isinstance(v, bool) and not (isinstance(v, float) and not v.is_integer()),
        float: lambda v: not isinstance(v, bool),
        str: lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool),
        dict: lambda v: isinstance(v, dict),
        list: lambda v: isinstance(v, (list, tuple)),
    }[base]
    try:
        if ok(value):
            return value if base is bool else base(value)
    except (TypeError, ValueError):
        pass
    raise InputError(f"{where}: expected {base.__name__}, got {value!r}") from None


def _check(name: str, value, optional: bool, choices: tuple, noun: str, bound: str, flag: str) -> None:
    """Refuse a value outside the field's declared choices or bound, naming its flag."""
    flag = flag or f"--{name.replace('_', '-')}"
    if choices and value not in choices:
        raise InputError(f"{flag}: unknown {noun}'{value}' (choose from {', '.join(choices)})")
    if bound == "[0, 1)" and not 0 <= value < 1:
        raise InputError(f"{flag}: {noun}must lie in [0, 1), got {value}")
    if bound in ("> 0", ">= 0") and not (value is None and optional):
        if value is None or not (value >= 0 if bound == ">= 0" else value > 0):
            raise InputError(f"{flag}: must be {bound}, got {value}")


def read_config_file(path: str | os.PathLike) -> dict:
    """A YAML config file as a dict (safe_load: no Python objects)."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise InputError(f"{path}: not valid YAML ({first})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a mapping of option names to values")
    return d


def config_to_yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None)


def resolve_config(
    resume: str | os.PathLike | None = None, file: str | os.PathLike | None = None, flags: dict | None = None
) -> TrainConfig:
    """The effective configuration: defaults < the resumed run's config.yaml (``resume``, a checkpoint
    folder) < the YAML ``file`` < ``flags`` (options given explicitly; None values count as not given).
    Giving ``steps`` drops an earlier ``epochs`` and the other way round."""
    cfg = TrainConfig()
    if resume is not None:
        saved = Path(resume) / ckpt.CONFIG_FILE
        if not Path(resume).is_dir():
            raise InputError(f"--resume {resume}: no such checkpoint folder")
        if not saved.exists():
            raise InputError(f"--resume {resume}: folder holds no config.yaml (not a ddpmctl checkpoint folder)")
        cfg = TrainConfig.from_dict(read_config_file(saved), str(saved))
    if file is not None:
        cfg.update(read_config_file(file), str(file))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    if "steps" in given:
        cfg.epochs = None
    elif "epochs" in given:
        cfg.steps = None
    return cfg.update(given, "option").validate()


def default_warmup(steps: int) -> int:
    """Linear warm-up length: 5000 steps as in score_sde (seed 000), scaled to short runs (5%)."""
    return int(min(5000, round(0.05 * steps)))


NET_FLAGS = {  # CLI flag -> key of the network config, per network type
    "unet": {"base": "base", "mults": "mults", "blocks": "blocks", "attn": "attn", "dropout": "dropout"},
    "mlp": {"base": "hidden", "blocks": "blocks", "dropout": "dropout"},
}


def net_flags_to_config(data_kind: str, flags: dict) -> dict:
    """Map the generic network flags (base, mults, blocks, attn, dropout) to the config keys of the
    network the data gets (U-Net for images, MLP for points)."""
    kind = "unet" if data_kind == "images" else "mlp"
    out = {}
    for name, value in flags.items():
        if name not in NET_FLAGS[kind]:
            raise InputError(f"--{name}: applies to the U-Net (images) only, this data is points (MLP)")
        out[NET_FLAGS[kind][name]] = value
    return out


def net_config_for(cfg: TrainConfig, data_kind: str, data_shape: tuple, process: Process) -> dict:
    """The network config: ddpmctl.nets' default for the data, with ``cfg.net`` keys replacing
    the defaults; checked against the data (channels, H/W divisibility)."""
    from ddpmctl.nets import default_net_config, validate_net_config

    net_cfg = default_net_config(data_kind, tuple(data_shape), process.time_embedding)
    if "type" in cfg.net and cfg.net["type"] != net_cfg.get("type"):
        net_cfg = dict(cfg.net)  # another kind of network: its config is given in full
    else:
        net_cfg = {**net_cfg, **cfg.net}
    return validate_net_config(net_cfg, tuple(data_shape))
