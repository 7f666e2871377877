"""Bad input, every command: a corpus of broken files and options (issue #8).

Every case must end with exit code 2, exactly one line on stderr that names the file or option and
the problem (no traceback), and a pre-existing output file left byte for byte as it was.

The broken files are generated in a temporary folder (nothing is stored in the repository):
``.npy`` files (truncated, pickled object array, wrong dtype, 0-d, 5-d, empty, NaN, inf, a header
declaring a huge shape, not an npy at all), image folders (empty, an unreadable file, mixed sizes,
a .png that is not a PNG), checkpoints (truncated, byte-corrupted, a safetensors file of another
tool, missing / malformed / incomplete metadata, weights that do not fit the recorded network,
a model whose data shape does not fit the observation or the mask) and FID statistics without
mu / sigma.
"""

from __future__ import annotations

import io as _io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --------------------------------------------------------------------------------------------
# the corpus


def _npy_header(shape, descr="<f4") -> bytes:
    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _make_unreadable(path: Path) -> None:
    """A file whose read fails for real. chmod 000 does not stop root, so as root the file is a
    link to /proc/self/mem, whose first page is never mapped: reading it fails with EIO."""
    if IS_ROOT:
        os.symlink("/proc/self/mem", path)
    else:
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
        path.chmod(0)


def _checkpoints(d: Path) -> None:
    from safetensors.torch import save_file

    from ddpmctl.checkpoint import META_KEY, make_meta, save_model
    from ddpmctl.diffusion import IDENTITY_NORMALIZATION, IMAGE_NORMALIZATION
    from ddpmctl.nets import build_net, default_net_config, validate_net_config
    from ddpmctl.schedules import make_process

    torch.manual_seed(0)

    def image_net(shape):
        cfg = validate_net_config({**default_net_config("images", shape), "base": 8, "mults": [1, 2], "groups": 4}, shape)
        return cfg, build_net(cfg)

    ddpm = make_process("ddpm", "linear", 50)
    cfg, net = image_net((1, 8, 8))
    meta = make_meta(cfg, ddpm, "eps", "images", (1, 8, 8), IMAGE_NORMALIZATION)
    (d / "ck").mkdir()
    save_model(d / "ck" / "model.safetensors", net, meta)
    good = (d / "ck" / "model.safetensors").read_bytes()

    cfg16, net16 = image_net((1, 16, 16))  # a 1-channel 16x16 model (for 3-channel 32x32 observations)
    (d / "ck16").mkdir()
    save_model(d / "ck16" / "model.safetensors", net16, make_meta(cfg16, ddpm, "eps", "images", (1, 16, 16), IMAGE_NORMALIZATION))

    ccfg = validate_net_config({**cfg, "num_classes": 3}, (1, 8, 8))  # class-conditional: a, b, c
    (d / "ckcond").mkdir()
    cmeta = make_meta(ccfg, ddpm, "eps", "images", (1, 8, 8), IMAGE_NORMALIZATION, classes=["a", "b", "c"])
    save_model(d / "ckcond" / "model.safetensors", build_net(ccfg), cmeta)

    scfg = validate_net_config({**cfg, "cond_channels": 1}, (1, 8, 8))  # SR3 for sr x2 (train --condition sr:2)
    (d / "cksr3").mkdir()
    smeta = make_meta(scfg, ddpm, "eps", "images", (1, 8, 8), IMAGE_NORMALIZATION, condition="sr:2")
    save_model(d / "cksr3" / "model.safetensors", build_net(scfg), smeta)
    save_model(d / "sr3nocond.safetensors", build_net(scfg), {**meta, "net": scfg})  # channels, no condition recorded
    save_model(d / "sr3badcond.safetensors", build_net(scfg), {**smeta, "condition": "sr:3"})  # 8 is not divisible by 3

    pcfg = validate_net_config({**default_net_config("points", (2,)), "hidden": 16, "blocks": 1, "emb_dim": 16}, (2,))
    (d / "ckpts").mkdir()
    save_model(d / "ckpts" / "model.safetensors", build_net(pcfg), make_meta(pcfg, ddpm, "eps", "points", (2,), IDENTITY_NORMALIZATION))

    (d / "ckve").mkdir()  # a points model of the ve process (distill refuses it)
    save_model(d / "ckve" / "model.safetensors", build_net(pcfg), make_meta(pcfg, make_process("ve"), "eps", "points", (2,), IDENTITY_NORMALIZATION))

    (d / "trunc.safetensors").write_bytes(good[: len(good) // 2])
    (d / "trunc_header.safetensors").write_bytes(good[:20])
    (d / "empty.safetensors").write_bytes(b"")
    n_header = struct.unpack("<Q", good[:8])[0]
    bad = bytearray(good)
    bad[8 : 8 + 16] = b"\xff" * 16  # the JSON header is garbage
    (d / "corrupt.safetensors").write_bytes(bytes(bad))
    (d / "hugeheader.safetensors").write_bytes(struct.pack("<Q", 1 << 60) + good[8:])
    bad = bytearray(good)
    bad[8 + n_header // 2] ^= 0x55  # one byte flipped inside the header
    (d / "flipped.safetensors").write_bytes(bytes(bad))
    (d / "notsafetensors.safetensors").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))

    weights = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(weights, str(d / "foreign.safetensors"))  # another tool: plain tensors, no metadata
    save_file(weights, str(d / "othermeta.safetensors"), metadata={"format": "pt"})
    save_file(weights, str(d / "badjson.safetensors"), metadata={META_KEY: "{not json"})
    save_file(weights, str(d / "notobject.safetensors"), metadata={META_KEY: "[1, 2]"})
    save_file(weights, str(d / "format99.safetensors"), metadata={META_KEY: json.dumps({**meta, "format": 99})})
    save_file(weights, str(d / "nonet.safetensors"), metadata={META_KEY: json.dumps({k: v for k, v in meta.items() if k != "net"})})
    save_file(weights, str(d / "processstring.safetensors"), metadata={META_KEY: json.dumps({**meta, "process": "ddpm"})})
    save_file(weights, str(d / "badbetas.safetensors"), metadata={META_KEY: json.dumps({**meta, "process": {"kind": "ddpm", "betas": "x"}})})
    save_file(weights, str(d / "badpred.safetensors"), metadata={META_KEY: json.dumps({**meta, "prediction": "banana"})})
    save_file(weights, str(d / "badprocess.safetensors"), metadata={META_KEY: json.dumps({**meta, "process": {"kind": "warp"}})})
    save_file(weights, str(d / "badnet.safetensors"), metadata={META_KEY: json.dumps({**meta, "net": {"type": "transformer"}})})
    save_file(weights, str(d / "baddata.safetensors"), metadata={META_KEY: json.dumps({**meta, "data": {"kind": "audio", "shape": [1]}})})
    save_file(weights, str(d / "badshape.safetensors"), metadata={META_KEY: json.dumps({**meta, "data": {**meta["data"], "shape": ["a"]}})})
    wide = {**meta, "net": {**cfg, "base": 16}}  # the metadata's network is wider than the weights
    save_file(weights, str(d / "mismatch.safetensors"), metadata={META_KEY: json.dumps(wide)})
    less = dict(list(weights.items())[1:])
    save_file(less, str(d / "missingweight.safetensors"), metadata={META_KEY: json.dumps(meta)})
    (d / "nomodel").mkdir()  # a folder that is not a checkpoint
    (d / "ck_state_bad").mkdir()  # a checkpoint folder whose state (for --resume) is corrupted
    (d / "ck_state_bad" / "model.safetensors").write_bytes(good)
    (d / "ck_state_bad" / "state.safetensors").write_bytes(good[:100])
    (d / "ck_state_bad" / "config.yaml").write_text(f"data: {d / 'imgs.npy'}\nsteps: 2\nbatch: 2\n")


def _arrays(d: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.random((4, 1, 8, 8)).astype(np.float32)
    np.save(d / "imgs.npy", imgs)
    np.save(d / "imgs2.npy", imgs[:2])
    # class labels of imgs.npy (4 samples)
    np.save(d / "lab_short.npy", np.array([0, 1, 2], np.int64))
    np.save(d / "lab_neg.npy", np.array([0, 1, -1, 2], np.int64))
    np.save(d / "lab_frac.npy", np.array([0.0, 1.5, 2.0, 1.0]))
    np.save(d / "lab_str.npy", np.array(["a", "b", "a", "b"]))
    np.save(d / "lab_2d.npy", np.zeros((4, 1), np.int64))
    np.savez(d / "goodmix.npz", weights=np.array([0.5, 0.5]), means=np.array([[-1.0, 0.0], [1.0, 0.0]]),
             covs=np.stack([0.1 * np.eye(2)] * 2), kind=np.array("gmm"))  # fmt: skip
    np.save(d / "imgs3.npy", rng.random((2, 3, 32, 32)).astype(np.float32))
    np.save(d / "pts.npy", rng.standard_normal((16, 2)).astype(np.float32))
    good = (d / "imgs.npy").read_bytes()
    (d / "trunc.npy").write_bytes(good[:-50])
    (d / "headeronly.npy").write_bytes(good[:128])
    (d / "halfheader.npy").write_bytes(good[:30])
    np.save(d / "pickled.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(d / "complex.npy", np.zeros((4, 1, 8, 8), np.complex64))
    np.save(d / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(d / "int64.npy", np.zeros((4, 1, 8, 8), np.int64))
    np.save(d / "scalar.npy", np.float32(3.0))
    np.save(d / "five.npy", np.zeros((2, 1, 1, 4, 4), np.float32))
    np.save(d / "chan5.npy", np.zeros((2, 5, 8, 8), np.float32))
    np.save(d / "empty.npy", np.zeros((0, 1, 8, 8), np.float32))
    np.save(d / "emptypts.npy", np.zeros((0, 2), np.float32))
    nan = imgs.copy()
    nan[1, 0, 3, 3] = np.nan
    np.save(d / "nan.npy", nan)
    inf = imgs.copy()
    inf[2, 0, 0, 0] = np.inf
    np.save(d / "inf.npy", inf)
    p = rng.standard_normal((16, 2)).astype(np.float32)
    p[3, 1] = np.nan
    np.save(d / "nanpts.npy", p)
    np.save(d / "range.npy", imgs * 3)  # images outside [0, 1]
    (d / "huge.npy").write_bytes(_npy_header((10**9, 3, 1024, 1024)) + b"\0" * 64)
    (d / "hugedim.npy").write_bytes(_npy_header((2**62, 2**62)) + b"\0" * 64)
    (d / "text.npy").write_bytes(b"this is not an npy file\n" * 10)
    _make_unreadable(d / "unreadable.npy")
    (d / "zero.npy").write_bytes(b"")
    (d / "badheader.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", 22) + b"{'descr': os.system}\n")
    (d / "pickled.npz").write_bytes(pickle.dumps({"mu": [0.0]}))
    # schedules (betas)
    np.save(d / "betas_neg.npy", np.linspace(-0.1, 0.02, 100))
    np.save(d / "betas_one.npy", np.linspace(0.1, 1.0, 100))
    np.save(d / "betas_nan.npy", np.array([0.01, np.nan, 0.02]))
    np.save(d / "betas_2d.npy", np.full((10, 10), 0.01))
    # FID statistics
    np.savez(d / "nomu.npz", mean=np.zeros(4), cov=np.eye(4))
    np.savez(d / "badsigma.npz", mu=np.zeros(4), sigma=np.eye(3))
    np.savez(d / "nansigma.npz", mu=np.zeros(4), sigma=np.full((4, 4), np.nan))
    np.savez(d / "objstats.npz", mu=np.array([None, 1], dtype=object), sigma=np.eye(2))
    np.savez(d / "stats4.npz", mu=np.zeros(4), sigma=np.eye(4))
    (d / "zip.npz").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    np.savez(d / "strstats.npz", mu=np.array(["a", "b"]), sigma=np.eye(2))
    with zipfile.ZipFile(d / "hugestats.npz", "w") as z:  # sigma's header declares 320 GB
        z.writestr("mu.npy", _npy_header((2048,), "<f8") + b"\0" * (2048 * 8))
        z.writestr("sigma.npy", _npy_header((200_000, 200_000), "<f8") + b"\0" * 64)
    with zipfile.ZipFile(d / "hugemix.npz", "w") as z:
        z.writestr("weights.npy", _npy_header((10**12,), "<f8") + b"\0" * 64)
        z.writestr("means.npy", _npy_header((1, 2), "<f8") + b"\0" * 16)
        z.writestr("covs.npy", _npy_header((1, 2, 2), "<f8") + b"\0" * 32)
    (d / "npyasnpz.npz").write_bytes(good)  # an .npy file named .npz
    with zipfile.ZipFile(d / "fake_ts.pt", "w") as z:  # looks like a TorchScript archive (it carries code)
        z.writestr("archive/code/__torch__.py", "def forward(self):\n    return 1\n")
        z.writestr("archive/data.pkl", b"")
    # mixtures
    np.savez(d / "notmix.npz", a=np.zeros(3))
    np.savez(d / "badmix.npz", weights=np.array([0.5, 0.6]), means=np.zeros((2, 2)), covs=np.stack([np.eye(2)] * 2))
    np.savez(d / "nonspd.npz", weights=np.array([1.0]), means=np.zeros((1, 2)), covs=-np.eye(2)[None])
    # restore: observations (with their sidecars) written by the real `degrade`
    for name, src, args in (
        ("obs", "imgs.npy", ["--task", "inpaint", "--box", "2,2,4,4"]),
        ("obsden", "imgs.npy", ["--task", "denoise", "--noise", "0.1"]),
        ("obs3", "imgs3.npy", ["--task", "denoise", "--noise", "0.1"]),
        ("obsbadjson", "imgs.npy", ["--task", "denoise", "--noise", "0.1"]),
        ("obsnan", "imgs.npy", ["--task", "denoise", "--noise", "0.1"]),
        ("obssr2", "imgs.npy", ["--task", "sr", "--scale", "2"]),
        ("obssr4", "imgs.npy", ["--task", "sr", "--scale", "4"]),
    ):
        r = run_cli("degrade", d / src, *args, "-o", d / f"{name}.npy")
        assert r.returncode == 0, r.stderr
    np.save(d / "maskfile.npy", np.ones((8, 8), np.float32) * (np.arange(8) < 4))
    r = run_cli("degrade", d / "imgs.npy", "--task", "inpaint", "--mask", d / "maskfile.npy", "-o", d / "obsmask.npy")
    assert r.returncode == 0, r.stderr
    np.save(d / "maskfile.npy", np.ones((5, 5), np.float32))  # the mask the sidecar names no longer fits
    (d / "obsbadjson.json").write_text("{broken")
    np.save(d / "obsnan.npy", nan)
    np.save(d / "obsnosidecar.npy", imgs)
    np.save(d / "mask5.npy", np.ones((5, 5), np.float32))
    np.save(d / "mask_nan.npy", np.full((8, 8), np.nan, np.float32))
    np.save(d / "mask_zero.npy", np.zeros((8, 8), np.float32))
    # configs
    (d / "bad.yaml").write_text("steps: [1, 2\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "unknown.yaml").write_text("stepz: 10\n")
    (d / "edm_eps.yaml").write_text("t_eps: 1.0e-3\n")
    (d / "python.yaml").write_text("steps: !!python/object/apply:os.system ['true']\n")


def _folders(d: Path) -> None:
    (d / "emptydir").mkdir()
    (d / "textonly").mkdir()
    (d / "textonly" / "readme.txt").write_text("no images here")
    (d / "fakepng").mkdir()
    Image.new("L", (8, 8), 128).save(d / "fakepng" / "a.png")
    (d / "fakepng" / "b.png").write_bytes(b"GIF89a this is not a png at all")
    (d / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n but the rest is garbage")
    (d / "unreadable").mkdir()
    Image.new("L", (8, 8), 128).save(d / "unreadable" / "a.png")
    _make_unreadable(d / "unreadable" / "b.png")
    (d / "mixed").mkdir()
    Image.new("L", (8, 8), 100).save(d / "mixed" / "a.png")
    Image.new("RGB", (12, 6), (200, 10, 10)).save(d / "mixed" / "b.png")
    Image.new("L", (16, 16), 30).save(d / "mixed" / "c.jpg")
    (d / "mixed_size").mkdir()
    Image.new("L", (8, 8), 100).save(d / "mixed_size" / "a.png")
    Image.new("L", (9, 8), 100).save(d / "mixed_size" / "b.png")
    (d / "dir.npy").mkdir()  # a folder named like a file


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    _arrays(d)
    _folders(d)
    _checkpoints(d)
    return d


# --------------------------------------------------------------------------------------------
# the cases: (id, command line, substrings the one stderr line must hold)
# {d} is the corpus folder, {o} the per-case output folder (its files exist before the call)

NPY_CORPUS = [
    ("trunc", "trunc.npy", "truncated"),
    ("headeronly", "headeronly.npy", "truncated"),
    ("halfheader", "halfheader.npy", "halfheader.npy"),
    ("pickled", "pickled.npy", "never unpickles"),
    ("complex", "complex.npy", "complex64"),
    ("strings", "strings.npy", "not numeric"),
    ("scalar", "scalar.npy", "shape ()"),
    ("five", "five.npy", "shape (2, 1, 1, 4, 4)"),
    ("empty", "empty.npy", "N = 0"),
    ("nan", "nan.npy", "NaN or inf"),
    ("inf", "inf.npy", "NaN or inf"),
    ("huge", "huge.npy", "truncated"),
    ("hugedim", "hugedim.npy", "truncated"),
    ("text", "text.npy", "not an .npy file"),
    ("zero", "zero.npy", "not an .npy file"),
    ("badheader", "badheader.npy", "malformed .npy header"),
    ("missing", "nosuch.npy", "no such file"),
    ("unreadable_npy", "unreadable.npy", "cannot read"),
    ("dir", "dir.npy", "folder holds no PNG/JPEG"),
]

FOLDER_CORPUS = [
    ("emptydir", "emptydir", "holds no PNG/JPEG"),
    ("textonly", "textonly", "holds no PNG/JPEG"),
    ("fakepng", "fakepng", "b.png: not a readable image"),
    ("fakefile", "fake.png", "fake.png: not a readable image"),
    ("unreadable", "unreadable", "b.png: not a readable image"),
]


def _corpus_cases():
    cases = []
    for cid, f, words in NPY_CORPUS:
        cases.append((f"noise-{cid}", ["noise", f"{{d}}/{f}", "--t", "10", "-o", "{o}/out.npy"], [f, words]))
        cases.append((f"fid-{cid}", ["fid", f"{{d}}/{f}", "{d}/imgs.npy", "--features", "raw", "--save-stats", "{o}/out.npz"], [f, words]))
    for cid, f, words in FOLDER_CORPUS:
        cases.append((f"noise-{cid}", ["noise", f"{{d}}/{f}", "--t", "10", "-o", "{o}/out.npy"], [words]))
        cases.append((f"train-{cid}", ["train", f"{{d}}/{f}", "--steps", "1", "-o", "{o}/ckpt"], [words]))
        cases.append((f"fid-{cid}", ["fid", f"{{d}}/{f}", "{d}/imgs.npy", "--features", "raw", "--save-stats", "{o}/out.npz"], [words]))
        if cid != "fakefile":
            cases.append((f"make-data-{cid}", ["make-data", "folder", f"{{d}}/{f}", "--size", "8", "-o", "{o}/out.npy"], [words]))
    return cases


CKPT_CORPUS = [
    ("trunc", "trunc.safetensors", "not a readable .safetensors file"),
    ("trunc_header", "trunc_header.safetensors", "not a readable .safetensors file"),
    ("empty", "empty.safetensors", "not a readable .safetensors file"),
    ("corrupt", "corrupt.safetensors", "not a readable .safetensors file"),
    ("hugeheader", "hugeheader.safetensors", "not a readable .safetensors file"),
    ("flipped", "flipped.safetensors", "flipped.safetensors"),
    ("pickle", "notsafetensors.safetensors", "not a readable .safetensors file"),
    ("foreign", "foreign.safetensors", "not a ddpmctl checkpoint"),
    ("othermeta", "othermeta.safetensors", "not a ddpmctl checkpoint"),
    ("badjson", "badjson.safetensors", "malformed 'ddpmctl' metadata"),
    ("notobject", "notobject.safetensors", "malformed 'ddpmctl' metadata"),
    ("format99", "format99.safetensors", "unsupported checkpoint format 99"),
    ("nonet", "nonet.safetensors", "lacks 'net'"),
    ("badpred", "badpred.safetensors", "banana"),
    ("badprocess", "badprocess.safetensors", "warp"),
    ("badbetas", "badbetas.safetensors", "badbetas.safetensors"),
    ("processstring", "processstring.safetensors", "processstring.safetensors"),
    ("badnet", "badnet.safetensors", "bad network config"),
    ("baddata", "baddata.safetensors", "malformed 'data'"),
    ("badshape", "badshape.safetensors", "malformed checkpoint metadata"),
    ("mismatch", "mismatch.safetensors", "the network expects"),
    ("missingweight", "missingweight.safetensors", "weights do not match the network config"),
    ("nomodel", "nomodel", "holds no model.safetensors"),
    ("missing", "nosuch.safetensors", "no such file"),
]


def _ckpt_cases():
    cases = []
    for cid, f, words in CKPT_CORPUS:
        cases.append((f"sample-{cid}", ["sample", f"{{d}}/{f}", "-n", "2", "--steps", "2", "-o", "{o}/out.npy"], [f, words]))
        cases.append((f"restore-{cid}", ["restore", f"{{d}}/{f}", "{d}/obsden.npy", "--steps", "2", "-o", "{o}/out.npy"], [f, words]))
    for cid in ("trunc", "trunc_header", "corrupt", "hugeheader", "pickle", "nomodel", "missing"):
        f, words = next((f, w) for c, f, w in CKPT_CORPUS if c == cid)
        cases.append((f"info-ckpt-{cid}", ["info", f"{{d}}/{f}"], [f]))
    for cid in ("trunc", "foreign", "badprocess", "mismatch", "nomodel", "missing"):
        f, words = next((f, w) for c, f, w in CKPT_CORPUS if c == cid)
        cases.append((f"distill-{cid}", ["distill", f"{{d}}/{f}", "{d}/imgs.npy", "-o", "{o}/student"], [f, words]))
    return cases


OPTION_CASES = [
    # make-data
    ("make-data-unknown-option", ["make-data", "triangles", "--bogus", "1", "-o", "{o}/out.npy"], ["--bogus"]),
    ("make-data-unknown-kind", ["make-data", "hexagons", "-o", "{o}/out.npy"], ["hexagons", "unknown data set"]),
    ("make-data-n-negative", ["make-data", "triangles", "--n", "-5", "-o", "{o}/out.npy"], ["--n", "-5"]),
    ("make-data-n-zero", ["make-data", "moons", "--n", "0", "-o", "{o}/out.npy"], ["--n", "between"]),
    ("make-data-n-not-int", ["make-data", "moons", "--n", "ten", "-o", "{o}/out.npy"], ["--n", "integer"]),
    ("make-data-size-small", ["make-data", "triangles", "--size", "1", "-o", "{o}/out.npy"], ["--size"]),
    ("make-data-noise-negative", ["make-data", "moons", "--noise", "-1", "-o", "{o}/out.npy"], ["--noise"]),
    ("make-data-noise-images", ["make-data", "triangles", "--noise", "0.1", "-o", "{o}/out.npy"], ["--noise", "only for"]),
    ("make-data-components-zero", ["make-data", "gmm", "--components", "0", "-o", "{o}/out.npy"], ["--components"]),
    ("make-data-channels", ["make-data", "folder", "{d}/mixed", "--channels", "2", "-o", "{o}/out.npy"], ["--channels", "1 or 3"]),
    ("make-data-out-format", ["make-data", "triangles", "--n", "2", "-o", "{o}/out.xyz"], ["out.xyz", "unknown output format"]),
    ("make-data-out-folder", ["make-data", "triangles", "--n", "2", "-o", "{o}/nosuchdir/out.npy"], ["nosuchdir", "does not exist"]),
    ("make-data-mixture-notmix", ["make-data", "gmm", "--mixture", "{d}/notmix.npz", "-o", "{o}/out.npy"], ["notmix.npz", "missing"]),
    ("make-data-mixture-weights", ["make-data", "gmm", "--mixture", "{d}/badmix.npz", "-o", "{o}/out.npy"], ["badmix.npz", "sum to 1"]),
    ("make-data-mixture-spd", ["make-data", "gmm", "--mixture", "{d}/nonspd.npz", "-o", "{o}/out.npy"], ["nonspd.npz"]),
    ("make-data-mixture-pickled", ["make-data", "gmm", "--mixture", "{d}/pickled.npz", "-o", "{o}/out.npy"], ["pickled.npz", "not a readable"]),
    ("make-data-labels-triangles", ["make-data", "triangles", "--labels", "-o", "{o}/out.npy"], ["--labels"]),
    ("make-data-split-synthetic", ["make-data", "triangles", "--split", "test", "-o", "{o}/out.npy"], ["--split", "only for"]),
    ("make-data-split-bogus", ["make-data", "mnist", "--split", "valid", "-o", "{o}/out.npy"], ["--split", "valid"]),
    ("make-data-from-folder-kind", ["make-data", "folder", "{d}/mixed", "--from", "{d}", "-o", "{o}/out.npy"], ["--from", "only for"]),
    ("make-data-from-missing", ["make-data", "mnist", "--from", "{d}/nosuch", "-o", "{o}/out.npy"], ["nosuch", "no such file or folder"]),
    ("make-data-mnist-dir-argument", ["make-data", "mnist", "{d}", "-o", "{o}/out.npy"], ["unexpected argument", "--from"]),
    ("make-data-mnist-empty-folder", ["make-data", "mnist", "--from", "{d}/emptydir", "-o", "{o}/out.npy"], ["emptydir", "no train-images-idx3-ubyte.gz"]),
    ("make-data-mnist-npy", ["make-data", "mnist", "--from", "{d}/imgs.npy", "-o", "{o}/out.npy"], ["imgs.npy", "images-idx3-ubyte"]),
    ("make-data-cifar-npy", ["make-data", "cifar10", "--from", "{d}/imgs.npy", "-o", "{o}/out.npy"], ["imgs.npy", "cifar-10-binary.tar.gz"]),
    # schedule
    ("schedule-unknown", ["schedule", "zigzag", "-o", "{o}/out.npy"], ["zigzag"]),
    ("schedule-T-zero", ["schedule", "linear", "--T", "0", "-o", "{o}/out.npy"], ["--T", "0"]),
    ("schedule-beta-negative", ["schedule", "linear", "--beta-start", "-0.1", "-o", "{o}/out.npy"], ["beta"]),
    ("schedule-beta-above-one", ["schedule", "linear", "--beta-end", "1.5", "-o", "{o}/out.npy"], ["beta"]),
    ("schedule-two-outputs", ["schedule", "linear", "cosine", "-o", "{o}/out.npy"], ["-o", "exactly one"]),
    ("schedule-file-negative", ["schedule", "{d}/betas_neg.npy", "-o", "{o}/out.npy"], ["betas_neg.npy"]),
    ("schedule-file-one", ["schedule", "{d}/betas_one.npy", "-o", "{o}/out.npy"], ["betas_one.npy"]),
    ("schedule-file-nan", ["schedule", "{d}/betas_nan.npy", "-o", "{o}/out.npy"], ["betas_nan.npy"]),
    ("schedule-file-2d", ["schedule", "{d}/betas_2d.npy", "-o", "{o}/out.npy"], ["betas_2d.npy"]),
    ("schedule-file-pickled", ["schedule", "{d}/pickled.npy", "-o", "{o}/out.npy"], ["pickled.npy", "never unpickles"]),
    ("schedule-file-trunc", ["schedule", "{d}/trunc.npy", "-o", "{o}/out.npy"], ["trunc.npy", "truncated"]),
    ("schedule-file-text", ["schedule", "{d}/text.npy", "-o", "{o}/out.npy"], ["text.npy", "not an .npy file"]),
    # noise
    ("noise-t-negative", ["noise", "{d}/imgs.npy", "--t", "-1", "-o", "{o}/out.npy"], ["--t", "-1"]),
    ("noise-t-above-T", ["noise", "{d}/imgs.npy", "--t", "5000", "-o", "{o}/out.npy"], ["--t", "5000"]),
    ("noise-t-not-number", ["noise", "{d}/imgs.npy", "--t", "ten", "-o", "{o}/out.npy"], ["--t", "ten"]),
    ("noise-edm-t-above-sigma-max", ["noise", "{d}/imgs.npy", "--sde", "edm", "--t", "81", "-o", "{o}/out.npy"], ["--t", "[0, 80]", "81"]),
    ("noise-steps-zero", ["noise", "{d}/imgs.npy", "--steps", "0", "-o", "{o}/out.npy"], ["--steps", "0"]),
    ("noise-t-and-steps", ["noise", "{d}/imgs.npy", "--t", "1", "--steps", "3", "-o", "{o}/out.npy"], ["--t", "--steps"]),
    ("noise-sde-unknown", ["noise", "{d}/imgs.npy", "--sde", "xyz", "--t", "0.5", "-o", "{o}/out.npy"], ["--sde", "xyz"]),
    ("noise-sde-t-range", ["noise", "{d}/imgs.npy", "--sde", "vp", "--t", "2", "-o", "{o}/out.npy"], ["--t", "[0, 1]"]),
    ("noise-T-zero", ["noise", "{d}/imgs.npy", "--T", "0", "--t", "0", "-o", "{o}/out.npy"], ["--T", "0"]),
    ("noise-rows-zero", ["noise", "{d}/imgs.npy", "--t", "1", "--rows", "0", "-o", "{o}/out.png"], ["--rows"]),
    ("noise-schedule-file", ["noise", "{d}/imgs.npy", "--schedule", "{d}/betas_nan.npy", "--t", "1", "-o", "{o}/out.npy"], ["betas_nan.npy"]),
    ("noise-range", ["noise", "{d}/range.npy", "--t", "1", "-o", "{o}/out.npy"], ["range.npy", "[0, 1]"]),
    ("noise-int64", ["noise", "{d}/int64.npy", "--t", "1", "-o", "{o}/out.npy"], ["int64.npy", "uint8"]),
    ("noise-nanpts", ["noise", "{d}/nanpts.npy", "--t", "1", "-o", "{o}/out.npy"], ["nanpts.npy", "NaN"]),
    ("noise-emptypts", ["noise", "{d}/emptypts.npy", "--t", "1", "-o", "{o}/out.npy"], ["emptypts.npy", "no points"]),
    ("noise-mixed-sizes", ["noise", "{d}/mixed_size", "--t", "1", "-o", "{o}/out.npy"], ["b.png", "make-data folder"]),
    ("noise-out-format", ["noise", "{d}/imgs.npy", "--t", "1", "-o", "{o}/out.jpgx"], ["out.jpgx", "unknown output format"]),
    ("noise-stdin-empty", ["noise", "-", "--t", "1", "-o", "{o}/out.npy"], ["-: stdin is empty"]),
    ("noise-unknown-option", ["noise", "{d}/imgs.npy", "--tt", "1", "-o", "{o}/out.npy"], ["--tt"]),
    # info
    ("info-pickled", ["info", "{d}/pickled.npy"], ["pickled.npy", "never unpickles"]),
    ("info-trunc", ["info", "{d}/trunc.npy"], ["trunc.npy", "truncated"]),
    ("info-huge", ["info", "{d}/huge.npy"], ["huge.npy", "truncated"]),
    ("info-text", ["info", "{d}/text.npy"], ["text.npy", "not an .npy file"]),
    ("info-missing", ["info", "{d}/nosuch.npy"], ["nosuch.npy", "no such file"]),
    ("info-fake-png", ["info", "{d}/fake.png"], ["fake.png"]),
    ("info-zip", ["info", "{d}/zip.npz"], ["zip.npz", "not a readable .npz"]),
    ("info-pickled-npz", ["info", "{d}/pickled.npz"], ["pickled.npz", "not a readable .npz"]),
    ("info-objstats", ["info", "{d}/objstats.npz"], ["objstats.npz"]),
    ("info-badjson", ["info", "{d}/badjson.safetensors"], ["badjson.safetensors", "malformed"]),
    ("info-notobject", ["info", "{d}/notobject.safetensors"], ["notobject.safetensors", "malformed"]),
    ("info-process-string", ["info", "{d}/processstring.safetensors"], ["processstring.safetensors", "malformed"]),
    ("info-betas", ["info", "{d}/badbetas.safetensors"], ["badbetas.safetensors", "malformed"]),
    ("info-unreadable", ["info", "{d}/unreadable/b.png"], ["b.png"]),
    ("info-unreadable-npy", ["info", "{d}/unreadable.npy"], ["unreadable.npy"]),
    # degrade
    ("degrade-task-unknown", ["degrade", "{d}/imgs.npy", "--task", "colorize", "-o", "{o}/out.npy"], ["--task", "colorize"]),
    ("degrade-box-outside", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--box", "6,6,4,4", "-o", "{o}/out.npy"], ["--box", "not inside"]),
    ("degrade-box-negative", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--box", "-1,0,2,2", "-o", "{o}/out.npy"], ["--box"]),
    ("degrade-box-malformed", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--box", "1,2,3", "-o", "{o}/out.npy"], ["--box", "x,y,w,h"]),
    ("degrade-box-whole", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--box", "0,0,8,8", "-o", "{o}/out.npy"], ["--box", "whole image"]),
    ("degrade-box-denoise", ["degrade", "{d}/imgs.npy", "--task", "denoise", "--box", "1,1,2,2", "-o", "{o}/out.npy"], ["--box", "only for --task inpaint"]),
    ("degrade-noise-negative", ["degrade", "{d}/imgs.npy", "--task", "denoise", "--noise", "-0.1", "-o", "{o}/out.npy"], ["--noise", ">= 0"]),
    ("degrade-noise-nan", ["degrade", "{d}/imgs.npy", "--task", "denoise", "--noise", "nan", "-o", "{o}/out.npy"], ["--noise"]),
    ("degrade-keep-zero", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--keep", "0", "-o", "{o}/out.npy"], ["--keep"]),
    ("degrade-scale-one", ["degrade", "{d}/imgs.npy", "--task", "sr", "--scale", "1", "-o", "{o}/out.npy"], ["--scale", ">= 2"]),
    ("degrade-scale-indivisible", ["degrade", "{d}/imgs.npy", "--task", "sr", "--scale", "3", "-o", "{o}/out.npy"], ["--scale", "not divisible"]),
    ("degrade-kernel-sigma", ["degrade", "{d}/imgs.npy", "--task", "deblur", "--kernel-sigma", "0", "-o", "{o}/out.npy"], ["--kernel-sigma", "> 0"]),
    ("degrade-kernel-even", ["degrade", "{d}/imgs.npy", "--task", "deblur", "--kernel-size", "4", "-o", "{o}/out.npy"], ["--kernel-size", "odd"]),
    ("degrade-kernel-large", ["degrade", "{d}/imgs.npy", "--task", "deblur", "--kernel-size", "31", "-o", "{o}/out.npy"], ["--kernel-size", "larger"]),
    ("degrade-mask-shape", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--mask", "{d}/mask5.npy", "-o", "{o}/out.npy"], ["mask5.npy", "does not fit"]),
    ("degrade-mask-nan", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--mask", "{d}/mask_nan.npy", "-o", "{o}/out.npy"], ["mask_nan.npy", "NaN"]),
    ("degrade-mask-empty", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--mask", "{d}/mask_zero.npy", "-o", "{o}/out.npy"], ["mask_zero.npy", "keeps no pixel"]),
    ("degrade-mask-missing", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--mask", "{d}/nosuch.npy", "-o", "{o}/out.npy"], ["nosuch.npy", "no such file"]),
    ("degrade-mask-pickled", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--mask", "{d}/pickled.npy", "-o", "{o}/out.npy"], ["pickled.npy", "never unpickles"]),
    ("degrade-mask-and-box", ["degrade", "{d}/imgs.npy", "--task", "inpaint", "--box", "1,1,2,2", "--keep", "0.5", "-o", "{o}/out.npy"], ["inpaint", "one of"]),
    ("degrade-points-sr", ["degrade", "{d}/pts.npy", "--task", "sr", "-o", "{o}/out.npy"], ["sr", "needs images"]),
    ("degrade-nan", ["degrade", "{d}/nan.npy", "--task", "denoise", "-o", "{o}/out.npy"], ["nan.npy", "NaN"]),
    ("degrade-pickled", ["degrade", "{d}/pickled.npy", "--task", "denoise", "-o", "{o}/out.npy"], ["pickled.npy", "never unpickles"]),
    ("degrade-out-folder", ["degrade", "{d}/imgs.npy", "--task", "denoise", "-o", "{o}/outdir/"], ["outdir", "degrade writes"]),
    # train
    ("train-steps-zero", ["train", "{d}/imgs.npy", "--steps", "0", "-o", "{o}/ckpt"], ["--steps", "0"]),
    ("train-batch-negative", ["train", "{d}/imgs.npy", "--batch", "-4", "-o", "{o}/ckpt"], ["--batch", "-4"]),
    ("train-lr-negative", ["train", "{d}/imgs.npy", "--lr", "-1", "-o", "{o}/ckpt"], ["--lr"]),
    ("train-ema-one", ["train", "{d}/imgs.npy", "--ema", "1.5", "-o", "{o}/ckpt"], ["--ema", "[0, 1)"]),
    ("train-sde-unknown", ["train", "{d}/imgs.npy", "--sde", "warp", "-o", "{o}/ckpt"], ["--sde", "warp"]),
    ("train-prediction-unknown", ["train", "{d}/imgs.npy", "--prediction", "banana", "-o", "{o}/ckpt"], ["--prediction", "banana"]),
    ("train-prediction-edm-not-edm", ["train", "{d}/imgs.npy", "--prediction", "edm", "--sde", "vp", "-o", "{o}/ckpt"], ["--prediction edm", "--sde edm"]),
    ("train-p-mean-not-edm", ["train", "{d}/imgs.npy", "--p-mean", "-1", "--steps", "1", "-o", "{o}/ckpt"], ["--p-mean", "edm"]),
    ("train-edm-p-std-zero", ["train", "{d}/imgs.npy", "--sde", "edm", "--p-std", "0", "-o", "{o}/ckpt"], ["--p-std", "> 0"]),
    ("train-edm-sigma-data-negative", ["train", "{d}/imgs.npy", "--sde", "edm", "--sigma-data", "-0.5", "-o", "{o}/ckpt"], ["--sigma-data", "> 0"]),
    ("train-edm-t-eps", ["train", "{d}/imgs.npy", "--sde", "edm", "--config", "{d}/edm_eps.yaml", "--steps", "1", "-o", "{o}/ckpt"], ["--t-eps", "sigma_min"]),
    ("train-steps-and-epochs", ["train", "{d}/imgs.npy", "--steps", "3", "--epochs", "1", "-o", "{o}/ckpt"], ["--steps", "--epochs"]),
    ("train-mults", ["train", "{d}/imgs.npy", "--mults", "1,x", "-o", "{o}/ckpt"], ["--mults", "1,x"]),
    ("train-too-deep", ["train", "{d}/imgs.npy", "--mults", "1,1,1,1,1,1", "--steps", "1", "-o", "{o}/ckpt"], ["8"]),
    ("train-config-yaml", ["train", "{d}/imgs.npy", "--config", "{d}/bad.yaml", "-o", "{o}/ckpt"], ["bad.yaml", "not valid YAML"]),
    ("train-config-list", ["train", "{d}/imgs.npy", "--config", "{d}/list.yaml", "-o", "{o}/ckpt"], ["list.yaml", "mapping"]),
    ("train-config-unknown", ["train", "{d}/imgs.npy", "--config", "{d}/unknown.yaml", "-o", "{o}/ckpt"], ["stepz"]),
    ("train-config-python", ["train", "{d}/imgs.npy", "--config", "{d}/python.yaml", "-o", "{o}/ckpt"], ["python.yaml", "not valid YAML"]),
    ("train-config-missing", ["train", "{d}/imgs.npy", "--config", "{d}/nosuch.yaml", "-o", "{o}/ckpt"], ["nosuch.yaml", "no such file"]),
    ("train-resume-missing", ["train", "--resume", "{d}/nosuchckpt", "-o", "{o}/ckpt"], ["--resume", "nosuchckpt"]),
    ("train-resume-corrupt", ["train", "--resume", "{d}/ck_state_bad", "--steps", "3", "-o", "{o}/ckpt"], ["state.safetensors", "not a readable"]),
    ("train-stdin", ["train", "-", "--steps", "1", "-o", "{o}/ckpt"], ["-:", "stdin"]),
    ("train-existing-output", ["train", "{d}/imgs.npy", "--steps", "1", "-o", "{o}/ckpt"], ["ckpt", "--force"]),
    ("train-no-output", ["train", "{d}/imgs.npy", "--steps", "1"], ["-o"]),
    ("train-pickled", ["train", "{d}/pickled.npy", "--steps", "1", "-o", "{o}/ckpt"], ["pickled.npy", "never unpickles"]),
    ("train-trunc", ["train", "{d}/trunc.npy", "--steps", "1", "-o", "{o}/ckpt"], ["trunc.npy", "truncated"]),
    ("train-nan", ["train", "{d}/nan.npy", "--steps", "1", "-o", "{o}/ckpt"], ["nan.npy", "NaN"]),
    ("train-five", ["train", "{d}/five.npy", "--steps", "1", "-o", "{o}/ckpt"], ["five.npy", "shape"]),
    ("train-empty", ["train", "{d}/empty.npy", "--steps", "1", "-o", "{o}/ckpt"], ["empty.npy", "N = 0"]),
    ("train-huge", ["train", "{d}/huge.npy", "--steps", "1", "-o", "{o}/ckpt"], ["huge.npy", "truncated"]),
    ("train-text", ["train", "{d}/text.npy", "--steps", "1", "-o", "{o}/ckpt"], ["text.npy", "not an .npy"]),
    ("train-mixed-sizes", ["train", "{d}/mixed_size", "--steps", "1", "-o", "{o}/ckpt"], ["b.png", "make-data folder"]),
    ("train-labels-length", ["train", "{d}/imgs.npy", "--labels", "{d}/lab_short.npy", "-o", "{o}/ckpt"], ["--labels", "3 labels for 4 samples"]),
    ("train-labels-negative", ["train", "{d}/imgs.npy", "--labels", "{d}/lab_neg.npy", "-o", "{o}/ckpt"], ["lab_neg.npy", "negative"]),
    ("train-labels-non-integer", ["train", "{d}/imgs.npy", "--labels", "{d}/lab_frac.npy", "-o", "{o}/ckpt"], ["lab_frac.npy", "1.5", "not an integer"]),
    ("train-labels-strings", ["train", "{d}/imgs.npy", "--labels", "{d}/lab_str.npy", "-o", "{o}/ckpt"], ["lab_str.npy", "integers"]),
    ("train-labels-2d", ["train", "{d}/imgs.npy", "--labels", "{d}/lab_2d.npy", "-o", "{o}/ckpt"], ["lab_2d.npy", "(N,)"]),
    ("train-labels-missing", ["train", "{d}/imgs.npy", "--labels", "{d}/nosuch.npy", "-o", "{o}/ckpt"], ["nosuch.npy", "no such file"]),
    ("train-labels-pickled", ["train", "{d}/imgs.npy", "--labels", "{d}/pickled.npy", "-o", "{o}/ckpt"], ["pickled.npy", "never unpickles"]),
    ("train-labels-and-no-labels", ["train", "{d}/imgs.npy", "--labels", "{d}/lab_neg.npy", "--no-labels", "-o", "{o}/ckpt"], ["--no-labels", "--labels"]),
    ("train-label-dropout-one", ["train", "{d}/imgs.npy", "--label-dropout", "1", "-o", "{o}/ckpt"], ["--label-dropout", "[0, 1)"]),
    ("train-condition-unknown", ["train", "{d}/imgs.npy", "--condition", "blur:2", "-o", "{o}/ckpt"], ["--condition", "blur:2"]),
    ("train-condition-factor", ["train", "{d}/imgs.npy", "--condition", "sr:1", "-o", "{o}/ckpt"], ["--condition", ">= 2"]),
    ("train-condition-indivisible", ["train", "{d}/imgs.npy", "--condition", "sr:3", "--steps", "1", "-o", "{o}/ckpt"], ["--condition sr:3", "not divisible"]),
    ("train-condition-points", ["train", "{d}/pts.npy", "--condition", "sr:2", "--steps", "1", "-o", "{o}/ckpt"], ["--condition sr:2", "needs images"]),
    ("train-condition-noise-alone", ["train", "{d}/imgs.npy", "--condition-noise", "0.1", "-o", "{o}/ckpt"], ["--condition-noise", "needs --condition"]),
    ("train-condition-noise-negative", ["train", "{d}/imgs.npy", "--condition", "sr:2", "--condition-noise", "-1", "-o", "{o}/ckpt"], ["--condition-noise", ">= 0"]),
    ("train-schedule-file", ["train", "{d}/imgs.npy", "--schedule", "{d}/betas_neg.npy", "--steps", "1", "-o", "{o}/ckpt"], ["betas_neg.npy"]),
    # sample
    ("sample-n-negative", ["sample", "{d}/ck", "-n", "-3", "-o", "{o}/out.npy"], ["-n", "-3"]),
    # distill (the teacher {d}/ck: ddpm, T = 50, 1x8x8 images)
    ("distill-steps-not-power-of-2", ["distill", "{d}/ck", "{d}/imgs.npy", "--from-steps", "12", "--to-steps", "4", "-o", "{o}/st"], ["--from-steps 12", "power of 2"]),
    ("distill-steps-equal", ["distill", "{d}/ck", "{d}/imgs.npy", "--from-steps", "4", "--to-steps", "4", "-o", "{o}/st"], ["--to-steps 4", "power of 2"]),
    ("distill-to-steps-zero", ["distill", "{d}/ck", "{d}/imgs.npy", "--to-steps", "0", "-o", "{o}/st"], ["--to-steps", "0"]),
    ("distill-steps-above-T", ["distill", "{d}/ck", "{d}/imgs.npy", "--from-steps", "64", "-o", "{o}/st"], ["--from-steps 64", "T = 50"]),
    ("distill-ve-teacher", ["distill", "{d}/ckve", "{d}/pts.npy", "-o", "{o}/st"], ["ckve", "variance-preserving", "is ve"]),
    ("distill-conditional-teacher", ["distill", "{d}/ckcond", "{d}/imgs.npy", "-o", "{o}/st"], ["ckcond", "class-conditional"]),
    ("distill-missing-data", ["distill", "{d}/ck", "{d}/nosuch.npy", "--from-steps", "8", "-o", "{o}/st"], ["nosuch.npy", "no such file"]),
    ("distill-pickled-data", ["distill", "{d}/ck", "{d}/pickled.npy", "--from-steps", "8", "-o", "{o}/st"], ["pickled.npy", "never unpickles"]),
    ("distill-data-shape", ["distill", "{d}/ck", "{d}/imgs3.npy", "--from-steps", "8", "-o", "{o}/st"], ["imgs3.npy", "shape [3, 32, 32]", "[1, 8, 8]"]),
    ("distill-points-for-images", ["distill", "{d}/ck", "{d}/pts.npy", "--from-steps", "8", "-o", "{o}/st"], ["pts.npy", "points"]),
    ("distill-no-output", ["distill", "{d}/ck", "{d}/imgs.npy", "--from-steps", "8"], ["-o"]),
    ("distill-guidance-without-guide", ["distill", "{d}/ck", "{d}/imgs.npy", "--guidance", "2", "-o", "{o}/st"], ["--guidance", "--guide"]),
    ("distill-bad-guide", ["distill", "{d}/ck", "{d}/imgs.npy", "--from-steps", "8", "--guide", "{d}/ck16", "-o", "{o}/st"], ["--guide", "data shape"]),
    ("distill-resume-nothing", ["distill", "{d}/ck", "{d}/imgs.npy", "--from-steps", "8", "--resume", "-o", "{o}/st"], ["--resume", "holds a finished distillation"]),
    ("distill-existing-output", ["distill", "{d}/ck", "{d}/imgs.npy", "--from-steps", "8", "-o", "{o}/st"], ["st", "already holds", "--force"]),
    ("distill-output-parent", ["distill", "{d}/ck", "{d}/imgs.npy", "--from-steps", "8", "-o", "{o}/no/st"], ["parent folder"]),
    ("distill-lr-zero", ["distill", "{d}/ck", "{d}/imgs.npy", "--lr", "0", "-o", "{o}/st"], ["--lr", "0"]),
    ("distill-time-limit", ["distill", "{d}/ck", "{d}/imgs.npy", "--time-limit", "soon", "-o", "{o}/st"], ["--time-limit", "soon"]),
    ("sample-steps-zero", ["sample", "{d}/ck", "--steps", "0", "-o", "{o}/out.npy"], ["--steps", "0"]),
    ("sample-batch-zero", ["sample", "{d}/ck", "--batch", "0", "-o", "{o}/out.npy"], ["--batch", "0"]),
    ("sample-sampler-unknown", ["sample", "{d}/ck", "--sampler", "magic", "-o", "{o}/out.npy"], ["--sampler", "magic"]),
    ("sample-langevin-ddpm", ["sample", "{d}/ck", "--sampler", "langevin", "-n", "2", "-o", "{o}/out.npy"], ["langevin", "ve"]),
    ("sample-solver-unknown", ["sample", "{d}/ck", "--solver", "rk99", "-o", "{o}/out.npy"], ["--solver", "rk99"]),
    ("sample-solver-not-ode", ["sample", "{d}/ck", "--sampler", "ddim", "--solver", "heun", "-o", "{o}/out.npy"], ["--solver", "ode"]),
    ("sample-spacing-unknown", ["sample", "{d}/ck", "--spacing", "cubic", "-o", "{o}/out.npy"], ["--spacing", "cubic"]),
    ("sample-eta", ["sample", "{d}/ck", "--sampler", "ddim", "--eta", "2", "-n", "2", "-o", "{o}/out.npy"], ["--eta", "[0, 1]"]),
    ("sample-steps-above-T", ["sample", "{d}/ck", "--sampler", "ddpm", "--steps", "60", "-n", "2", "-o", "{o}/out.npy"], ["--steps", "60"]),
    ("sample-rho", ["sample", "{d}/ck", "--spacing", "karras", "--rho", "-1", "-n", "2", "-o", "{o}/out.npy"], ["--rho"]),
    ("sample-option-unknown", ["sample", "{d}/ck", "-O", "chrun=40", "-n", "2", "-o", "{o}/out.npy"], ["--option", "chrun"]),
    ("sample-option-no-value", ["sample", "{d}/ck", "--option", "churn", "-n", "2", "-o", "{o}/out.npy"], ["--option", "NAME=VALUE"]),
    ("sample-option-type", ["sample", "{d}/ck", "--sampler", "restart", "-O", "restarts=two", "-n", "2", "-o", "{o}/out.npy"], ["--option", "restarts", "int"]),
    ("sample-churn-negative", ["sample", "{d}/ck", "--sampler", "edm", "-O", "churn=-1", "-n", "2", "-o", "{o}/out.npy"], ["--option churn", "-1"]),
    ("sample-euler-a-eta", ["sample", "{d}/ck", "--sampler", "euler-a", "--eta", "1.5", "-n", "2", "-o", "{o}/out.npy"], ["--eta", "[0, 1]"]),
    ("sample-variance", ["sample", "{d}/ck", "--sampler", "ddpm", "--variance", "huge", "-n", "2", "-o", "{o}/out.npy"], ["--variance", "huge"]),
    ("sample-process-on-ckpt", ["sample", "{d}/ck", "--process", "ve", "-o", "{o}/out.npy"], ["--process", "mixture"]),
    ("sample-npy-as-ckpt", ["sample", "{d}/imgs.npy", "-o", "{o}/out.npy"], ["imgs.npy", "not a checkpoint"]),
    ("sample-points-folder", ["sample", "{d}/ckpts", "-n", "2", "--steps", "2", "-o", "{o}/outdir/"], ["outdir", "points"]),
    ("sample-preview-format", ["sample", "{d}/ck", "--preview", "{o}/p.jpg", "-o", "{o}/out.npy"], ["--preview", "p.jpg", ".png"]),
    ("sample-out-folder-missing", ["sample", "{d}/ck", "-n", "2", "-o", "{o}/nosuchdir/out.npy"], ["nosuchdir", "does not exist"]),
    ("sample-mixture-notmix", ["sample", "{d}/notmix.npz", "-n", "2", "-o", "{o}/out.npy"], ["notmix.npz"]),
    ("sample-mixture-weights", ["sample", "{d}/badmix.npz", "-n", "2", "-o", "{o}/out.npy"], ["badmix.npz", "sum to 1"]),
    ("sample-trajectory-negative", ["sample", "{d}/ck", "--trajectory", "-2", "-o", "{o}/out.npy"], ["--trajectory"]),
    ("sample-trajectory-at-range", ["sample", "{d}/ck", "--trajectory-at", "1.5,0", "-n", "2", "-o", "{o}/out.npy"], ["--trajectory-at", "1.5", "[0, t_max = 1]"]),
    ("sample-trajectory-at-negative", ["sample", "{d}/ck", "--trajectory-at", "-0.5", "-n", "2", "-o", "{o}/out.npy"], ["--trajectory-at", "-0.5", "outside"]),
    ("sample-trajectory-at-nan", ["sample", "{d}/ck", "--trajectory-at", "1,nan", "-n", "2", "-o", "{o}/out.npy"], ["--trajectory-at", "nan", "outside"]),
    ("sample-trajectory-at-text", ["sample", "{d}/ck", "--trajectory-at", "1,half", "-n", "2", "-o", "{o}/out.npy"], ["--trajectory-at", "numbers", "1,half"]),
    ("sample-trajectory-at-empty", ["sample", "{d}/ck", "--trajectory-at", ",", "-n", "2", "-o", "{o}/out.npy"], ["--trajectory-at", "at least one"]),
    ("sample-trajectory-at-disagree", ["sample", "{d}/ck", "--trajectory", "4", "--trajectory-at", "1,0", "-n", "2", "-o", "{o}/out.npy"], ["--trajectory 4", "--trajectory-at (2 times)", "disagree"]),
    ("sample-trajectory-at-stdout", ["sample", "{d}/ck", "--trajectory-at", "1,0", "-n", "2", "-o", "-"], ["--trajectory", "not stdout"]),
    ("sample-trajectory-show-alone", ["sample", "{d}/ck", "--trajectory-show", "x0", "-n", "2", "-o", "{o}/out.png"], ["--trajectory-show", "needs --trajectory"]),
    ("sample-trajectory-show-unknown", ["sample", "{d}/ck", "--trajectory", "3", "--trajectory-show", "x", "-o", "{o}/out.png"], ["--trajectory-show", "'x'"]),
    ("sample-trajectory-rows-zero", ["sample", "{d}/ck", "--trajectory", "3", "--trajectory-rows", "0", "-o", "{o}/out.png"], ["--trajectory-rows", ">= 1"]),
    ("sample-trajectory-rows-alone", ["sample", "{d}/ck", "--trajectory-rows", "16", "-n", "2", "-o", "{o}/out.png"], ["--trajectory-rows", "needs --trajectory"]),
    ("sample-class-unconditional", ["sample", "{d}/ck", "--class", "1", "-n", "2", "-o", "{o}/out.npy"], ["--class", "not class-conditional"]),
    ("sample-per-class-unconditional", ["sample", "{d}/ck", "--per-class", "2", "-o", "{o}/out.npy"], ["--per-class", "not class-conditional"]),
    ("sample-class-missing", ["sample", "{d}/ckcond", "--class", "7", "-n", "2", "-o", "{o}/out.npy"], ["--class", "no class 7", "has 3: 0 a, 1 b, 2 c"]),
    ("sample-class-negative", ["sample", "{d}/ckcond", "--class", "-1", "-n", "2", "-o", "{o}/out.npy"], ["--class", "no class -1"]),
    ("sample-class-name", ["sample", "{d}/ckcond", "--class", "hexagon", "-n", "2", "-o", "{o}/out.npy"], ["--class", "no class 'hexagon'"]),
    ("sample-classes-bad", ["sample", "{d}/ckcond", "--classes", "0,x", "-n", "2", "-o", "{o}/out.npy"], ["--classes", "no class 'x'"]),
    ("sample-classes-empty", ["sample", "{d}/ckcond", "--classes", ",", "-n", "2", "-o", "{o}/out.npy"], ["--classes", "comma-separated"]),
    ("sample-class-and-per-class", ["sample", "{d}/ckcond", "--class", "0", "--per-class", "2", "-o", "{o}/out.npy"], ["--per-class", "not with --class"]),
    ("sample-per-class-zero", ["sample", "{d}/ckcond", "--per-class", "0", "-o", "{o}/out.npy"], ["--per-class", ">= 1"]),
    ("sample-cfg-without-class", ["sample", "{d}/ckcond", "--cfg", "2", "-n", "2", "-o", "{o}/out.npy"], ["--cfg", "needs --class"]),
    ("sample-cfg-negative", ["sample", "{d}/ckcond", "--class", "a", "--cfg", "-1", "-n", "2", "-o", "{o}/out.npy"], ["--cfg", ">= 0"]),
    ("sample-cfg-nan", ["sample", "{d}/ckcond", "--class", "a", "--cfg", "nan", "-n", "2", "-o", "{o}/out.npy"], ["--cfg", "finite"]),
    ("sample-cfg-with-guide", ["sample", "{d}/ckcond", "--class", "a", "--cfg", "2", "--guide", "{d}/ckcond", "-n", "2", "-o", "{o}/out.npy"], ["--cfg", "--guide"]),
    ("sample-mixture-class", ["sample", "{d}/goodmix.npz", "--class", "2", "-n", "2", "-o", "{o}/out.npy"], ["--class", "no class 2", "has 2"]),
    ("sample-sr3", ["sample", "{d}/cksr3", "-n", "2", "-o", "{o}/out.npy"], ["SR3", "restore CKPT y.npy --method sr3"]),
    ("sample-sr3-nocond", ["sample", "{d}/sr3nocond.safetensors", "-n", "2", "-o", "{o}/out.npy"], ["sr3nocond", "no condition is recorded"]),
    ("sample-sr3-badcond", ["sample", "{d}/sr3badcond.safetensors", "-n", "2", "-o", "{o}/out.npy"], ["sr3badcond", "not divisible by 3"]),
    ("encode-sr3", ["encode", "{d}/cksr3", "{d}/imgs.npy", "--steps", "2", "-o", "{o}/z.npy"], ["image-conditional", "--method sr3"]),
    ("restore-sr3-unconditional", ["restore", "{d}/ck", "{d}/obssr2.npy", "--method", "sr3", "-o", "{o}/out.npy"], ["--method sr3", "not an SR3 model"]),
    ("restore-sr3-scale", ["restore", "{d}/cksr3", "{d}/obssr4.npy", "-o", "{o}/out.npy"], ["sr:2 observations", "sr x4"]),
    ("restore-sr3-task", ["restore", "{d}/cksr3", "{d}/obs.npy", "--method", "sr3", "-o", "{o}/out.npy"], ["sr:2 observations", "inpaint"]),
    ("restore-sr3-other-method", ["restore", "{d}/cksr3", "{d}/obssr2.npy", "--method", "dps", "-o", "{o}/out.npy"], ["--method dps", "use --method sr3"]),
    ("restore-sr3-sampler-unknown", ["restore", "{d}/cksr3", "{d}/obssr2.npy", "--sampler", "magic", "-o", "{o}/out.npy"], ["--sampler", "magic"]),
    ("restore-sr3-sampler-process", ["restore", "{d}/cksr3", "{d}/obssr2.npy", "--sampler", "langevin", "-o", "{o}/out.npy"], ["langevin", "ve"]),
    ("restore-sampler-not-sr3", ["restore", "{d}/ck", "{d}/obs.npy", "--sampler", "ddim", "-o", "{o}/out.npy"], ["--sampler", "sr3"]),
    ("restore-class-unconditional", ["restore", "{d}/ck", "{d}/obs.npy", "--class", "0", "-o", "{o}/out.npy"], ["--class", "not class-conditional"]),
    ("restore-class-missing", ["restore", "{d}/ckcond", "{d}/obs.npy", "--class", "d", "-o", "{o}/out.npy"], ["--class", "no class 'd'"]),
    ("sample-unknown-option", ["sample", "{d}/ck", "--temperature", "2", "-o", "{o}/out.npy"], ["--temperature"]),
    # fid
    ("fid-stats-nomu", ["fid", "{d}/imgs.npy", "{d}/nomu.npz", "--features", "raw"], ["nomu.npz", "'mu' and 'sigma'"]),
    ("fid-stats-badsigma", ["fid", "{d}/imgs.npy", "{d}/badsigma.npz", "--features", "raw"], ["badsigma.npz", "sigma has shape"]),
    ("fid-stats-nan", ["fid", "{d}/imgs.npy", "{d}/nansigma.npz", "--features", "raw"], ["nansigma.npz", "NaN"]),
    ("fid-stats-zip", ["fid", "{d}/imgs.npy", "{d}/zip.npz", "--features", "raw"], ["zip.npz", "not a readable .npz"]),
    ("fid-stats-pickled", ["fid", "{d}/imgs.npy", "{d}/pickled.npz", "--features", "raw"], ["pickled.npz", "not a readable .npz"]),
    ("fid-stats-object", ["fid", "{d}/imgs.npy", "{d}/objstats.npz", "--features", "raw"], ["objstats.npz", "never unpickles"]),
    ("fid-stats-dims", ["fid", "{d}/imgs.npy", "{d}/stats4.npz", "--features", "raw"], ["stats4.npz", "cannot be compared"]),
    ("fid-stats-huge", ["fid", "{d}/imgs.npy", "{d}/hugestats.npz", "--features", "raw"], ["hugestats.npz", "truncated"]),
    ("fid-stats-npy", ["fid", "{d}/imgs.npy", "{d}/npyasnpz.npz", "--features", "raw"], ["npyasnpz.npz", "not a readable .npz"]),
    ("fid-stats-strings", ["fid", "{d}/imgs.npy", "{d}/strstats.npz", "--features", "raw"], ["strstats.npz", "real numbers"]),
    ("fid-weights-torchscript", ["fid", "{d}/imgs.npy", "{d}/imgs.npy", "--weights", "{d}/fake_ts.pt"], ["fake_ts.pt", "refused"]),
    ("info-stats-huge", ["info", "{d}/hugestats.npz"], ["hugestats.npz", "truncated"]),
    ("info-stats-npy", ["info", "{d}/npyasnpz.npz"], ["npyasnpz.npz", "not a readable .npz"]),
    ("sample-mixture-huge", ["sample", "{d}/hugemix.npz", "-o", "{o}/out.npy"], ["hugemix.npz", "truncated"]),
    ("sample-mixture-npy", ["sample", "{d}/npyasnpz.npz", "-o", "{o}/out.npy"], ["npyasnpz.npz", "not a readable .npz"]),
    ("fid-stats-missing", ["fid", "{d}/imgs.npy", "{d}/nosuch.npz"], ["nosuch.npz", "no such file"]),
    ("fid-features-unknown", ["fid", "{d}/imgs.npy", "{d}/imgs.npy", "--features", "clip"], ["--features", "clip"]),
    ("fid-preprocess-unknown", ["fid", "{d}/imgs.npy", "{d}/imgs.npy", "--preprocess", "magic"], ["--preprocess", "magic"]),
    ("fid-batch-zero", ["fid", "{d}/imgs.npy", "{d}/imgs.npy", "--batch", "0"], ["--batch", "0"]),
    ("fid-one-set", ["fid", "{d}/imgs.npy"], ["--save-stats"]),
    ("fid-kid-one-set", ["fid", "{d}/imgs.npy", "--kid", "--save-stats", "{o}/out.npz"], ["--kid"]),
    ("fid-kid-subsets", ["fid", "{d}/imgs.npy", "{d}/imgs.npy", "--kid", "--kid-subsets", "0"], ["--kid-subsets"]),
    ("fid-save-stats-ext", ["fid", "{d}/imgs.npy", "--save-stats", "{o}/out.txt"], ["out.txt", ".npz"]),
    ("fid-weights-missing", ["fid", "{d}/imgs.npy", "{d}/imgs.npy", "--weights", "{d}/nosuch.pth"], ["--weights", "nosuch.pth"]),
    ("fid-weights-garbage", ["fid", "{d}/imgs.npy", "{d}/imgs.npy", "--weights", "{d}/text.npy"], ["text.npy"]),
    ("fid-points-inception", ["fid", "{d}/pts.npy", "{d}/pts.npy", "--features", "inception"], ["pts.npy", "--features raw"]),
    ("fid-points-vs-images", ["fid", "{d}/pts.npy", "{d}/imgs.npy", "--features", "raw"], ["pts.npy"]),
    ("fid-channels", ["fid", "{d}/chan5.npy", "{d}/imgs.npy"], ["chan5.npy", "1 or 3 channels"]),
    ("fid-mixed-sizes-raw", ["fid", "{d}/mixed_size", "{d}/imgs.npy", "--features", "raw"], ["mixed_size"]),
    # restore
    ("restore-shape-mismatch", ["restore", "{d}/ck16", "{d}/obs3.npy", "-o", "{o}/out.npy"], ["obs3", "1, 16, 16"]),
    ("restore-mask-mismatch", ["restore", "{d}/ck", "{d}/obs.npy", "--mask", "{d}/mask5.npy", "-o", "{o}/out.npy"], ["mask5.npy", "does not fit"]),
    ("restore-ckpt-vs-box", ["restore", "{d}/ck16", "{d}/obs.npy", "-o", "{o}/out.npy"], ["obs", "1, 16, 16"]),
    ("restore-sidecar-mask", ["restore", "{d}/ck", "{d}/obsmask.npy", "-o", "{o}/out.npy"], ["maskfile.npy", "does not fit"]),
    ("restore-box-outside", ["restore", "{d}/ck", "{d}/obs.npy", "--box", "6,6,4,4", "-o", "{o}/out.npy"], ["--box", "not inside"]),
    ("restore-sdedit-inpaint", ["restore", "{d}/ck", "{d}/obs.npy", "--method", "sdedit", "-o", "{o}/out.npy"], ["sdedit", "denoising only"]),
    ("restore-repaint-denoise", ["restore", "{d}/ck", "{d}/obsden.npy", "--method", "repaint", "-o", "{o}/out.npy"], ["repaint", "denoising"]),
    ("restore-method-unknown", ["restore", "{d}/ck", "{d}/obs.npy", "--method", "magic", "-o", "{o}/out.npy"], ["--method", "magic"]),
    ("restore-steps-zero", ["restore", "{d}/ck", "{d}/obs.npy", "--steps", "0", "-o", "{o}/out.npy"], ["--steps", "0"]),
    ("restore-option-unknown", ["restore", "{d}/ck", "{d}/obs.npy", "-O", "magic=1", "-o", "{o}/out.npy"], ["--option", "magic"]),
    ("restore-option-type", ["restore", "{d}/ck", "{d}/obs.npy", "-O", "travel_repeat=two", "-o", "{o}/out.npy"], ["travel_repeat", "int"]),
    ("restore-option-travel", ["restore", "{d}/ck", "{d}/obs.npy", "--method", "ddnm", "-O", "travel_interval=0", "-O", "travel_repeat=1", "-o", "{o}/out.npy"], ["travel_interval", ">= 1"]),
    ("restore-diffpir-zeta", ["restore", "{d}/ck", "{d}/obs.npy", "--method", "diffpir", "--zeta", "2", "-o", "{o}/out.npy"], ["--zeta", "[0, 1]"]),
    ("restore-pigdm-weight", ["restore", "{d}/ck", "{d}/obs.npy", "--method", "pigdm", "-O", "weight=-1", "-o", "{o}/out.npy"], ["weight", ">= 0"]),
    ("restore-eta", ["restore", "{d}/ck", "{d}/obs.npy", "--eta", "2", "-o", "{o}/out.npy"], ["--eta", "[0, 1]"]),
    ("restore-noise-negative", ["restore", "{d}/ck", "{d}/obsden.npy", "--noise", "-0.5", "-o", "{o}/out.npy"], ["--noise"]),
    ("restore-zeta-negative", ["restore", "{d}/ck", "{d}/obs.npy", "--method", "dps", "--zeta", "-1", "-o", "{o}/out.npy"], ["--zeta"]),
    ("restore-batch-zero", ["restore", "{d}/ck", "{d}/obs.npy", "--batch", "0", "-o", "{o}/out.npy"], ["--batch", "0"]),
    ("restore-no-sidecar", ["restore", "{d}/ck", "{d}/obsnosidecar.npy", "-o", "{o}/out.npy"], ["obsnosidecar", "sidecar"]),
    ("restore-bad-sidecar", ["restore", "{d}/ck", "{d}/obsbadjson.npy", "-o", "{o}/out.npy"], ["obsbadjson.json"]),
    ("restore-obs-nan", ["restore", "{d}/ck", "{d}/obsnan.npy", "-o", "{o}/out.npy"], ["obsnan.npy", "NaN"]),
    ("restore-obs-pickled", ["restore", "{d}/ck", "{d}/pickled.npy", "-o", "{o}/out.npy"], ["pickled.npy", "never unpickles"]),
    ("restore-obs-trunc", ["restore", "{d}/ck", "{d}/trunc.npy", "-o", "{o}/out.npy"], ["trunc.npy", "truncated"]),
    ("restore-obs-scalar", ["restore", "{d}/ck", "{d}/scalar.npy", "-o", "{o}/out.npy"], ["scalar.npy"]),
    ("restore-truth-mismatch", ["restore", "{d}/ck", "{d}/obs.npy", "--truth", "{d}/pts.npy", "-o", "{o}/out.npy"], ["pts.npy", "does not match"]),
    ("restore-points-sr", ["restore", "{d}/ckpts", "{d}/pts.npy", "--task", "sr", "-o", "{o}/out.npy"], ["sr", "needs images"]),
    ("restore-task-unknown", ["restore", "{d}/ck", "{d}/obs.npy", "--task", "colorize", "-o", "{o}/out.npy"], ["--task", "colorize"]),
    # encode, sample --from
    ("encode-shape", ["encode", "{d}/ck", "{d}/imgs3.npy", "-o", "{o}/z.npy"], ["imgs3.npy", "does not fit"]),
    ("encode-points-for-images", ["encode", "{d}/ck", "{d}/pts.npy", "-o", "{o}/z.npy"], ["pts.npy", "does not fit"]),
    ("encode-steps-zero", ["encode", "{d}/ck", "{d}/imgs.npy", "--steps", "0", "-o", "{o}/z.npy"], ["--steps", "0"]),
    ("encode-steps-one", ["encode", "{d}/ck", "{d}/imgs.npy", "--steps", "1", "-o", "{o}/z.npy"], ["--steps", ">= 2"]),
    ("encode-steps-above-T", ["encode", "{d}/ck", "{d}/imgs.npy", "--steps", "60", "-o", "{o}/z.npy"], ["--steps", "60"]),
    ("encode-solver-unknown", ["encode", "{d}/ck", "{d}/imgs.npy", "--solver", "rk99", "-o", "{o}/z.npy"], ["--solver", "rk99"]),
    ("encode-out-format", ["encode", "{d}/ck", "{d}/imgs.npy", "-o", "{o}/z.png"], ["z.png", ".npy"]),
    ("encode-nan", ["encode", "{d}/ck", "{d}/nan.npy", "-o", "{o}/z.npy"], ["nan.npy", "NaN"]),
    ("encode-pickled", ["encode", "{d}/ck", "{d}/pickled.npy", "-o", "{o}/z.npy"], ["pickled.npy", "never unpickles"]),
    ("encode-ckpt-trunc", ["encode", "{d}/trunc.safetensors", "{d}/imgs.npy", "-o", "{o}/z.npy"], ["trunc.safetensors"]),
    ("sample-from-stochastic", ["sample", "{d}/ck", "--from", "{d}/imgs.npy", "--sampler", "ddpm", "-o", "{o}/out.npy"], ["--from", "deterministic ode"]),
    ("sample-from-shape", ["sample", "{d}/ck", "--from", "{d}/pts.npy", "-o", "{o}/out.npy"], ["--from", "do not fit"]),
    ("sample-from-nan", ["sample", "{d}/ck", "--from", "{d}/nan.npy", "-o", "{o}/out.npy"], ["--from", "NaN"]),
    ("sample-from-missing", ["sample", "{d}/ck", "--from", "{d}/nosuch.npy", "-o", "{o}/out.npy"], ["nosuch.npy", "no such file"]),
    # nll
    ("nll-shape", ["nll", "{d}/ck", "{d}/imgs3.npy"], ["imgs3.npy", "does not fit"]),
    ("nll-method-unknown", ["nll", "{d}/ck", "{d}/imgs.npy", "--method", "elbo"], ["--method", "elbo"]),
    ("nll-probes-zero", ["nll", "{d}/ck", "{d}/imgs.npy", "--probes", "0"], ["--probes", ">= 1"]),
    ("nll-probe-unknown", ["nll", "{d}/ck", "{d}/imgs.npy", "--probe", "cauchy"], ["--probe", "cauchy"]),
    ("nll-rtol", ["nll", "{d}/ck", "{d}/imgs.npy", "--rtol", "0"], ["--rtol"]),
    ("nll-terms-above", ["nll", "{d}/ck", "{d}/imgs.npy", "--method", "vlb", "--terms", "50"], ["--terms", "49"]),
    ("nll-vlb-continuous", ["nll", "{d}/goodmix.npz", "{d}/pts.npy", "--method", "vlb"], ["vlb", "discrete"]),
    ("nll-range", ["nll", "{d}/ck", "{d}/range.npy"], ["range.npy", "[0, 1]"]),
    ("nll-seed-negative", ["nll", "{d}/ck", "{d}/imgs.npy", "--seed", "-1"], ["--seed"]),
    # interpolate
    ("interpolate-shape", ["interpolate", "{d}/ck", "{d}/imgs3.npy", "{d}/imgs3.npy", "-o", "{o}/out.npy"], ["imgs3.npy", "does not fit"]),
    ("interpolate-different-n", ["interpolate", "{d}/ck", "{d}/imgs.npy", "{d}/imgs2.npy", "-o", "{o}/out.npy"], ["4 and 2", "as many"]),
    ("interpolate-steps-zero", ["interpolate", "{d}/ck", "{d}/imgs.npy", "{d}/imgs.npy", "--steps", "0", "-o", "{o}/out.npy"], ["--steps", "0"]),
    ("interpolate-k-one", ["interpolate", "{d}/ck", "{d}/imgs.npy", "{d}/imgs.npy", "--k", "1", "-o", "{o}/out.npy"], ["--k", ">= 2"]),
    ("interpolate-space", ["interpolate", "{d}/ck", "{d}/imgs.npy", "{d}/imgs.npy", "--space", "pixel", "-o", "{o}/out.npy"], ["--space", "pixel"]),
    ("interpolate-out-format", ["interpolate", "{d}/ck", "{d}/imgs.npy", "{d}/imgs.npy", "-o", "{o}/out.xyz"], ["out.xyz", "unknown output format"]),
    ("interpolate-mix-shape", ["interpolate", "{d}/goodmix.npz", "{d}/imgs.npy", "{d}/imgs.npy", "-o", "{o}/out.npy"], ["imgs.npy", "does not fit"]),
]

CASES = _corpus_cases() + _ckpt_cases() + OPTION_CASES


def _fill(arg: str, d: Path, o: Path) -> str:
    return arg.replace("{d}", str(d)).replace("{o}", str(o))


OUTPUT_FLAGS = ("-o", "--output", "--save-stats", "--preview", "--params")


def _prepare_outputs(argv: list[str]) -> dict[Path, bytes]:
    """Create every output the command line names, with known bytes; returns what must survive."""
    before = {}
    for flag, value in zip(argv, argv[1:]):
        if flag not in OUTPUT_FLAGS or value == "-":
            continue
        p = Path(value)
        if not p.parent.exists():
            continue  # a case about a missing output folder
        if value.endswith("/") or p.suffix == "":  # a folder output (train's checkpoint folder)
            p.mkdir(exist_ok=True)
            p = p / "model.safetensors"
        p.write_bytes(b"previous output of " + p.name.encode())
        before[p] = p.read_bytes()
    return before


def check_bad_input(r, words, before):
    err = r.stderr.decode(errors="replace")
    lines = err.strip().splitlines()
    assert r.returncode == 2, f"exit {r.returncode}, stderr: {err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err}"
    assert lines[0].startswith("ddpmctl"), lines[0]
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    for p, data in before.items():
        assert p.read_bytes() == data, f"{p} was overwritten"
    return lines[0]


@pytest.mark.parametrize("argv, words", [pytest.param(a, w, id=i) for i, a, w in CASES])
def test_bad_input(corpus, tmp_path, argv, words):
    argv = [_fill(a, corpus, tmp_path) for a in argv]
    words = [_fill(w, corpus, tmp_path) for w in words]
    before = _prepare_outputs(argv)
    listing = sorted(os.listdir(tmp_path))
    r = run_cli(*argv)
    check_bad_input(r, words, before)
    assert sorted(os.listdir(tmp_path)) == listing  # nothing new (no partial or temporary file)


def test_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------------------------
# documented behaviour that is not an error


def test_make_data_folder_resizes_mixed_sizes_and_channels(corpus, tmp_path):
    """make-data folder crops each image to its centre square and resizes it to --size; a folder
    with any colour image becomes RGB (grayscale images are repeated over the 3 channels)."""
    r = run_cli("make-data", "folder", corpus / "mixed", "--size", "8", "-o", tmp_path / "m.npy", "--json")
    assert r.returncode == 0, r.stderr
    x = np.load(tmp_path / "m.npy")
    assert x.shape == (3, 3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], 100 / 255, atol=1e-6)  # gray a.png, repeated over RGB
    np.testing.assert_allclose(x[1, :, 2:6, 2:6].mean(axis=(1, 2)), np.array([200, 10, 10]) / 255, atol=0.02)
    r = run_cli("make-data", "folder", corpus / "mixed", "--size", "8", "--channels", "1", "-o", tmp_path / "g.npy")
    assert r.returncode == 0 and np.load(tmp_path / "g.npy").shape == (3, 1, 8, 8)


def test_make_data_folder_skip_bad(corpus, tmp_path):
    """--skip-bad leaves out an unreadable or fake file, with one warning line each."""
    for folder in ("fakepng", "unreadable"):
        r = run_cli("make-data", "folder", corpus / folder, "--size", "8", "--skip-bad", "-o", tmp_path / "s.npy")
        assert r.returncode == 0, r.stderr
        warn = r.stderr.decode().strip().splitlines()
        assert len(warn) == 1 and "b.png" in warn[0] and "warning" in warn[0]
        assert np.load(tmp_path / "s.npy").shape == (1, 1, 8, 8)


def test_info_describes_foreign_safetensors(corpus):
    """info shows what a file holds: a safetensors file of another tool is described (exit 0) and
    flagged as not a ddpmctl checkpoint; sample and restore refuse it (cases above)."""
    r = run_cli("info", corpus / "foreign.safetensors", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["tensors"] > 0 and "not a ddpmctl checkpoint" in d["note"]
    r = run_cli("info", corpus / "format99.safetensors", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ddpmctl"]["format"] == 99


def test_unreadable_file_is_really_unreadable(corpus):
    """The 'unreadable' case is a real read failure (as root: EIO from /proc/self/mem)."""
    with pytest.raises(OSError):
        with open(corpus / "unreadable" / "b.png", "rb") as f:
            f.read(16)


def test_debug_shows_the_traceback(corpus, tmp_path):
    r = run_cli("--debug", "noise", corpus / "trunc.npy", "--t", "1", "-o", tmp_path / "o.npy")
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("ddpmctl noise: error:")
