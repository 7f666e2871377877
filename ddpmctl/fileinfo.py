"""What a file holds: arrays, images, folders, .npz statistics or mixtures, checkpoints.

``describe(path)`` returns a JSON-able dict; ``ddpmctl info`` prints it. Nothing is unpickled
and large arrays are scanned in chunks (memory maps stay cheap).
"""

from __future__ import annotations

import json
from pathlib import Path

from ddpmctl import io
from ddpmctl.errors import InputError
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)


def _array_stats(arr: np.ndarray, chunk: int = 4096) -> dict:
    """min, max, mean, std and the count of non-finite values, in chunks along axis 0."""
    if arr.size == 0 or arr.dtype.kind not in "fuib":
        return {}
    lo, hi, s, s2, n, bad = np.inf, -np.inf, 0.0, 0.0, 0, 0
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
    for i in range(0, flat.shape[0], chunk):
        part = np.asarray(flat[i : i + chunk], dtype=np.float64)
        fin = np.isfinite(part)
        bad += int((~fin).sum())
        vals = part[fin]
        if vals.size:
            lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
            s += float(vals.sum())
            s2 += float((vals * vals).sum())
            n += vals.size
    if n == 0:
        return {"nonfinite": bad}
    mean = s / n
    return {"min": lo, "max": hi, "mean": mean, "std": float(np.sqrt(max(s2 / n - mean * mean, 0.0))), "nonfinite": bad}


def _describe_array(arr: np.ndarray) -> dict:
    d = {"type": "array", "shape": list(arr.shape), "dtype": str(arr.dtype)}
    if arr.ndim == 2:
        d["kind"] = "points"
    elif arr.ndim in (3, 4):
        d["kind"] = "images"
        shape = arr.shape if arr.ndim == 4 else (arr.shape[0], 1) + arr.shape[1:]
        d["images"] = {"n": shape[0], "channels": shape[1], "height": shape[2], "width": shape[3]}
    elif arr.ndim == 5:
        d["kind"] = "noised images (N, K, C, H, W)"
    elif arr.ndim == 1:
        d["kind"] = "vector (e.g. betas)"
    d["stats"] = _array_stats(arr)
    return d


def _describe_npz(path: Path) -> dict:
    heads = io.npz_headers(path)  # headers only: no pickle, nothing large is read
    keys = {k: {"shape": list(shape), "dtype": str(dtype)} for k, (shape, dtype) in heads.items()}
    d = {"type": "npz", "arrays": keys}
    if "mu" in heads and "sigma" in heads:
        d["kind"] = "FID statistics"
        small = io.read_npz(
            path, keys=[k for k in ("n", "features", "preprocess") if k in heads and len(heads[k][0]) == 0]
        )
        for k, v in small.items():
            d[k] = v.tolist()
    elif {"weights", "means", "covs"} <= set(heads):
        d["kind"] = "Gaussian mixture"
        d["components"] = int(heads["weights"][0][0]) if len(heads["weights"][0]) == 1 else None
        d["dim"] = int(heads["means"][0][1]) if len(heads["means"][0]) == 2 else None
    return d


def _describe_checkpoint(path: Path) -> dict:
    from safetensors import safe_open

    file = path / "model.safetensors" if path.is_dir() else path
    if not file.exists():
        raise InputError(f"{path}: no model.safetensors in this folder")
    try:
        with safe_open(str(file), framework="numpy") as f:  # header only: no torch needed
            meta = f.metadata() or {}
            names = list(f.keys())
            params = 0
            for k in names:
                shape = f.get_slice(k).get_shape()
                params += int(np.prod(shape)) if shape else 1
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise InputError(f"{file}: not a readable .safetensors file ({e.__class__.__name__})") from None
    d = {"type": "checkpoint", "file": str(file), "tensors": len(names), "values": params}
    if "ddpmctl" in meta:
        try:
            info = json.loads(meta["ddpmctl"])
        except json.JSONDecodeError:
            raise InputError(f"{file}: malformed ddpmctl metadata") from None
        if not isinstance(info, dict) or not isinstance(info.get("process", {}), dict):
            raise InputError(f"{file}: malformed ddpmctl metadata (not an object with a 'process' object)")
        d["ddpmctl"] = {k: v for k, v in info.items() if k != "process"}
        proc = dict(info.get("process", {}))
        if "betas" in proc:
            b = np.asarray(proc.pop("betas"))
            if b.ndim != 1 or b.size == 0 or b.dtype.kind not in "fiu":
                raise InputError(f"{file}: malformed ddpmctl metadata (process betas are not a list of numbers)")
            proc.update(
                T=int(b.size), beta_min=float(b.min()), beta_max=float(b.max()), alpha_bar_T=float(np.prod(1 - b))
            )
        d["ddpmctl"]["process"] = proc
    else:
        d["note"] = "no ddpmctl metadata: not a ddpmctl checkpoint"
    if path.is_dir():
        d["files"] = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    return d


def describe(path: str) -> dict:
    """A JSON-able description of what ``path`` holds."""
    name = str(path)
    if name == io.STDIO:
        d = _describe_array(io.read_npy(name))
        d["file"] = name
        return d
    p = Path(path)
    if not p.exists():
        raise InputError(f"{name}: no such file or folder")
    if p.is_dir():
        if (p / "model.safetensors").exists():
            return _describe_checkpoint(p)
        files = io.list_image_files(p)
        sizes = {}
        for f in files[:1000]:
            from PIL import Image

            try:
                with Image.open(f) as im:
                    sizes[f"{im.width}x{im.height} {im.mode}"] = sizes.get(f"{im.width}x{im.height} {im.mode}", 0) + 1
            except OSError:
                sizes["unreadable"] = sizes.get("unreadable", 0) + 1
        return {"type": "image folder", "file": name, "images": len(files), "sizes": sizes}
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        return _describe_checkpoint(p)
    if suffix == ".npz":
        d = _describe_npz(p)
    elif io.is_image_file(p):
        img = io.read_image(p)
        d = {
            "type": "image",
            "channels": img.shape[0],
            "height": img.shape[1],
            "width": img.shape[2],
            "stats": _array_stats(img[None]),
        }
    elif suffix == ".json":
        try:
            d = {"type": "json", "content": json.loads(p.read_text())}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{name}: not valid JSON ({e})") from None
    else:
        d = _describe_array(io.read_npy(p))
    d["file"] = name
    return d


def format_description(d: dict, indent: int = 0) -> str:
    """Human-readable, one key per line."""
    lines = []
    pad = "  " * indent
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"{pad}{k}:")
            lines.append(format_description(v, indent + 1))
        elif isinstance(v, float):
            lines.append(f"{pad}{k}: {v:.6g}")
        elif isinstance(v, list) and len(v) > 12:
            lines.append(f"{pad}{k}: [{', '.join(map(str, v[:6]))}, ... ({len(v)} values)]")
        else:
            lines.append(f"{pad}{k}: {v}")
    return "\n".join(lines)
