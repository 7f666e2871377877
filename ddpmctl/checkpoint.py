"""Self-describing checkpoints (safetensors, no pickle).

A checkpoint directory holds

* ``model.safetensors``: the weights ``sample``, ``fid`` and ``restore`` use (the EMA weights when
  EMA is on) and, in the safetensors metadata under the key ``"ddpmctl"``, a JSON object with
  everything needed to rebuild and use the network::

      {"format": 1, "ddpmctl_version": "...", "net": {...build_net config...},
       "process": {...Process.to_dict()...}, "prediction": "eps" | "x0" | "v" | "score",
       "data": {"kind": "images" | "points", "shape": [C, H, W] or [D],
                "normalization": {"scale": s, "shift": b}},
       "step": int, "ema": bool, "train": {...the effective training config...},
       "classes": ["name of class 0", ...],   (class-conditional models only: net "num_classes" > 0)
       "condition": "sr:4"}   (image-conditional models only, SR3: net "cond_channels" > 0; ddpmctl.conditions)

* ``state.safetensors``: what ``train --resume`` needs: the raw weights (``model.*``), the EMA
  weights (``ema.*``), the AdamW moments (``optim.<i>.exp_avg``, ``optim.<i>.exp_avg_sq``, ``<i>``
  the parameter's position in ``net.parameters()``) and update count (``optim.step``), the torch
  RNG state(s) (``rng.torch``, ``rng.cuda``) and, in its metadata,
  the same ``"ddpmctl"`` object plus ``"state"`` (step, numpy and Python RNG states as JSON);
* ``config.yaml`` (the effective configuration), ``metrics.jsonl`` and sample grids.

Both files are written atomically (temporary file, fsync, rename): a kill at any moment leaves the
previous checkpoint loadable. ``state.safetensors`` is written before ``model.safetensors`` and is
self-contained, so resuming never mixes two steps.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ddpmctl import __version__
from ddpmctl.diffusion import Denoiser, Normalization, check_prediction
from ddpmctl.errors import InputError
from ddpmctl.io import existing_file, write_bytes
from ddpmctl.schedules import Process, process_from_dict

FORMAT = 1
META_KEY = "ddpmctl"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"


SNAPSHOT_GLOB = "snapshot-*.safetensors"


def snapshot_file(fraction: float) -> str:
    """File name of the EMA model kept at ``fraction`` of a run (``train --snapshot``):
    0.25 -> ``snapshot-25.safetensors`` (per cent of the run)."""
    return f"snapshot-{100 * fraction:.4g}.safetensors"


# --------------------------------------------------------------------------------------------
# writing


def _plain(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a .safetensors file atomically (``ddpmctl.io.write_bytes``)."""
    from safetensors.torch import save

    write_bytes(path, save(_plain(tensors), metadata=metadata))


def make_meta(
    net_config: dict,
    process: Process,
    prediction: str,
    data_kind: str,
    data_shape,
    normalization: Normalization,
    step: int = 0,
    ema: bool = True,
    train: dict | None = None,
    classes: list[str] | None = None,
    condition: str | None = None,
) -> dict:
    """The ``"ddpmctl"`` metadata object of a checkpoint (see the module docstring)."""
    meta = {
        "format": FORMAT,
        "ddpmctl_version": __version__,
        "net": net_config,
        "process": process.to_dict(),
        "prediction": prediction,
        "data": {"kind": data_kind, "shape": [int(s) for s in data_shape], "normalization": normalization.as_dict()},
        "step": int(step),
        "ema": bool(ema),
        "train": train or {},
    }
    if classes:
        meta["classes"] = [str(c) for c in classes]
    if condition:
        meta["condition"] = str(condition)
    return meta


def save_model(path: str | os.PathLike, net: torch.nn.Module | dict, meta: dict) -> None:
    """Write ``model.safetensors``: the weights of ``net`` (a module or a state dict) + metadata."""
    weights = net.state_dict() if isinstance(net, torch.nn.Module) else net
    save_tensors(path, weights, {META_KEY: json.dumps(meta, sort_keys=True)})


# --------------------------------------------------------------------------------------------
# reading


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, metadata) of a .safetensors file; InputError if it is not one."""
    from safetensors import safe_open

    name = str(path)
    existing_file(path, "a .safetensors file")
    try:
        with safe_open(name, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError, ... on a corrupted or foreign file
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise InputError(f"{name}: not a readable .safetensors file ({msg})") from None
    return tensors, metadata


def parse_meta(metadata: dict[str, str], name: str) -> dict:
    """The ``"ddpmctl"`` object of a safetensors metadata dict, checked."""
    if META_KEY not in metadata:
        raise InputError(f"{name}: not a ddpmctl checkpoint (no '{META_KEY}' metadata)")
    try:
        meta = json.loads(metadata[META_KEY])
    except json.JSONDecodeError as e:
        raise InputError(f"{name}: malformed '{META_KEY}' metadata ({e.msg})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{name}: malformed '{META_KEY}' metadata (not an object)")
    if meta.get("format") != FORMAT:
        raise InputError(f"{name}: unsupported checkpoint format {meta.get('format')!r} (this ddpmctl reads {FORMAT})")
    for key in ("net", "process", "prediction", "data"):
        if key not in meta:
            raise InputError(f"{name}: checkpoint metadata lacks '{key}'")
    data = meta["data"]
    if (
        not isinstance(data, dict)
        or data.get("kind") not in ("images", "points")
        or not isinstance(data.get("shape"), list)
    ):
        raise InputError(f"{name}: checkpoint metadata has a malformed 'data' entry")
    if not isinstance(meta["net"], dict) or not isinstance(meta["process"], dict):
        raise InputError(f"{name}: checkpoint metadata has a malformed 'net' or 'process' entry")
    try:
        check_prediction(meta["prediction"])
        [int(s) for s in data["shape"]]
        norm = data.get("normalization", {})
        float(norm.get("scale", 1.0)), float(norm.get("shift", 0.0))
    except (InputError, TypeError, ValueError) as e:
        raise InputError(f"{name}: malformed checkpoint metadata ({e})") from None
    return meta


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A checkpoint directory -> its model.safetensors; a file stays as it is."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
        if not p.exists():
            raise InputError(f"{path}: folder holds no {MODEL_FILE} (not a ddpmctl checkpoint directory)")
    return p


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata object of a checkpoint (dir or .safetensors), without building the net."""
    from safetensors import safe_open

    p = resolve_model_path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise InputError(f"{p}: not a readable .safetensors file ({msg})") from None
    return parse_meta(metadata, str(p))


def build_net_from_meta(meta: dict, name: str) -> torch.nn.Module:
    from ddpmctl.nets import build_net

    try:
        return build_net(dict(meta["net"]))
    except InputError as e:
        raise InputError(f"{name}: bad network config in checkpoint: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{name}: bad network config in checkpoint ({e.__class__.__name__}: {e})") from None


def load_weights(net: torch.nn.Module, weights: dict[str, torch.Tensor], name: str) -> None:
    """Copy ``weights`` into ``net``; InputError (one line) when names or shapes do not match."""
    own = net.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        n = len(missing) + len(unexpected)
        raise InputError(f"{name}: weights do not match the network config ({what}, {n} mismatch(es))")
    for k, v in own.items():
        if tuple(weights[k].shape) != tuple(v.shape):
            raise InputError(
                f"{name}: weight {k!r} has shape {tuple(weights[k].shape)}, the network expects {tuple(v.shape)}"
            )
    net.load_state_dict(weights, strict=True)


@dataclass
class LoadedModel:
    """A trained model, ready to sample from: the network (eval mode, on ``device``), its process,
    parameterisation and data normalisation."""

    net: torch.nn.Module
    process: Process
    prediction: str
    normalization: Normalization
    data_kind: str
    data_shape: tuple
    meta: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        p = next(iter(self.net.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def num_classes(self) -> int:
        """K > 0 for a class-conditional model (labels 0..K-1), 0 for an unconditional one."""
        return int(getattr(self.net, "num_classes", 0) or 0)

    @property
    def class_names(self) -> list[str]:
        """The names of the classes 0..K-1 (recorded at training; "0".."K-1" if none were)."""
        names = self.meta.get("classes")
        return list(names) if names else [str(c) for c in range(self.num_classes)]

    @property
    def condition(self):
        """The image condition of an SR3 model (``conditions.SRCondition``, from the recorded spec
        ``"sr:4"``); None for a model that takes none."""
        from ddpmctl.conditions import parse_condition

        spec = self.meta.get("condition")
        return parse_condition(spec, "checkpoint condition") if spec else None

    def denoiser(self, clip: bool | None = None) -> Denoiser:
        """A ``diffusion.Denoiser`` over the network. ``clip`` (default: True for images) clips the
        predicted x0 to the model-space data range [-1, 1]."""
        if clip is None:
            clip = self.data_kind == "images"
        lo, hi = self.normalization.to_model(0.0), self.normalization.to_model(1.0)
        return Denoiser(self.net, self.process, self.prediction, clip=(lo, hi) if clip else None)


def load_model(path: str | os.PathLike, device="cpu") -> LoadedModel:
    """Load a checkpoint (a directory or a model.safetensors / state.safetensors file) for sampling.

    Everything wrong (missing file, corrupted or foreign file, bad metadata, weights that do not fit
    the recorded network) raises ``InputError`` with one line naming the file."""
    p = resolve_model_path(path)
    tensors, metadata = read_tensors(p)
    meta = parse_meta(metadata, str(p))
    if "state" in metadata:  # a state.safetensors: sample from its EMA (or raw) weights
        prefix = "ema." if meta.get("ema") else "model."
        tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        process = process_from_dict(meta["process"])
    except InputError as e:
        raise InputError(f"{p}: {e}") from None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(f"{p}: malformed 'process' in checkpoint metadata ({e.__class__.__name__}: {e})") from None
    net = build_net_from_meta(meta, str(p))
    names = meta.get("classes")
    if names is not None and (not isinstance(names, list) or len(names) != getattr(net, "num_classes", 0)):
        raise InputError(f"{p}: checkpoint metadata has a malformed 'classes' entry (one name per class)")
    _check_condition(meta, net, str(p))
    load_weights(net, tensors, str(p))
    net.eval().requires_grad_(False)
    net.to(torch.device(device) if not isinstance(device, torch.device) else device)
    data = meta["data"]
    norm = data.get("normalization", {})
    return LoadedModel(
        net=net,
        process=process,
        prediction=meta["prediction"],
        normalization=Normalization(float(norm.get("scale", 1.0)), float(norm.get("shift", 0.0))),
        data_kind=data["kind"],
        data_shape=tuple(int(s) for s in data["shape"]),
        meta=meta,
    )


def _check_condition(meta: dict, net: torch.nn.Module, name: str) -> None:
    """InputError unless the recorded condition (``"sr:4"``) and the network's condition channels agree."""
    from ddpmctl.conditions import parse_condition

    spec, channels = meta.get("condition"), int(getattr(net, "cond_channels", 0) or 0)
    if spec is None and channels == 0:
        return
    try:
        cond = parse_condition(spec, "condition") if spec is not None else None
        if cond is None:
            raise InputError(f"the network takes {channels} condition channels but no condition is recorded")
        if channels != cond.check(meta["data"]["kind"], meta["data"]["shape"]):
            raise InputError(f"'{spec}' does not fit a network with {channels} condition channels")
    except InputError as e:
        raise InputError(f"{name}: malformed checkpoint metadata ({e})") from None


# --------------------------------------------------------------------------------------------
# training state (resume)


def _rng_states() -> tuple[dict[str, torch.Tensor], dict]:
    """torch (CPU and CUDA), numpy and Python global RNG states: (tensors, JSON-able dict)."""
    import random

    import numpy as np

    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, pystate, gauss_next = random.getstate()
    info = {
        "numpy": {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(pystate), "gauss_next": gauss_next},
    }
    return tensors, info


def _set_rng_states(tensors: dict[str, torch.Tensor], info: dict) -> None:
    import random

    import numpy as np

    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    if "rng.numpy" in tensors and "numpy" in info:
        n = info["numpy"]
        keys = tensors["rng.numpy"].numpy().astype(np.uint32)
        np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "python" in info:
        p = info["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def save_state(
    path: str | os.PathLike,
    net: torch.nn.Module,
    ema: torch.nn.Module | None,
    optimizer_state: dict[str, torch.Tensor],
    step: int,
    meta: dict,
    extra: dict | None = None,
) -> None:
    """Write ``state.safetensors``: raw and EMA weights, optimizer tensors (``optim.*``), step,
    RNG states."""
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    tensors.update({f"optim.{k}": v for k, v in optimizer_state.items()})
    rng_tensors, rng_info = _rng_states()
    tensors.update(rng_tensors)
    state = {"step": int(step), "rng": rng_info, "extra": extra or {}}
    save_tensors(path, tensors, {META_KEY: json.dumps(meta, sort_keys=True), "state": json.dumps(state)})


def load_state(path: str | os.PathLike) -> dict:
    """Read ``state.safetensors`` (a file or its directory): returns a dict with ``meta``, ``step``,
    ``model`` and ``ema`` (state dicts), ``optimizer`` (the ``optim.*`` tensors without the
    prefix), ``extra`` and the RNG states (restore them with ``restore_rng``)."""
    p = Path(path)
    if p.is_dir():
        p = p / STATE_FILE
    tensors, metadata = read_tensors(p)
    meta = parse_meta(metadata, str(p))
    try:
        state = json.loads(metadata["state"])
        step = int(state["step"])
    except (KeyError, ValueError, TypeError):
        raise InputError(f"{p}: not a ddpmctl training state (no valid 'state' metadata)") from None

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    return {
        "meta": meta,
        "step": step,
        "model": part("model."),
        "ema": part("ema."),
        "optimizer": part("optim."),
        "extra": state.get("extra", {}),
        "rng_tensors": {k: v for k, v in tensors.items() if k.startswith("rng.")},
        "rng_info": state.get("rng", {}),
        "path": str(p),
    }


def restore_rng(state: dict) -> None:
    """Set the global torch / numpy / Python RNGs to the states saved in ``state``."""
    _set_rng_states(state["rng_tensors"], state["rng_info"])
