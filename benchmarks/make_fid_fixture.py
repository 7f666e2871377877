"""Make the FID reference fixture ``tests/data/fid_reference.{json,npz}`` with pytorch-fid's and
torch-fidelity's OWN code (issue #20). Runs in their environment, not ddpmctl's:

    python3 -m venv /tmp/fidref-venv
    /tmp/fidref-venv/bin/pip install torch==2.13.0 pytorch-fid==0.3.0 torch-fidelity==0.4.0
    /tmp/fidref-venv/bin/python benchmarks/make_fid_fixture.py --ddpmctl-python .venv/bin/python
    /tmp/fidref-venv/bin/python benchmarks/make_fid_fixture.py --ddpmctl-python .venv/bin/python --bench

(pip resolves pytorch-fid's torchvision to a newer torch: the fixture records the versions used.)

The images are written by ddpmctl (``--ddpmctl-python`` runs ``fid_reference_common.write_image_set``:
make-data, then PNG files as ``ddpmctl sample -o DIR/`` writes them). Everything after that is the
two projects' code: pytorch-fid's ``calculate_fid_given_paths`` (its file reader, which converts
grey PNGs to RGB with PIL's ``convert("RGB")``, its ``InceptionV3(resize_input=True,
normalize_input=True, use_fid_inception=True)``, ``np.cov`` and ``calculate_frechet_distance``)
and torch-fidelity's ``calculate_metrics(fid=True)`` (its reader, also ``convert("RGB")``, its
``FeatureExtractorInceptionV3`` with the TF1 resize, and its eigenvalue Frechet distance).
pytorch-fid's model gets the key-seeded weights (``fid_reference_common``) through its own loading
line: ``load_state_dict_from_url`` is replaced by a function that returns them for the keys and
shapes of the model it is called from; torch-fidelity loads the same tensors from a ``.pth`` file
(``feature_extractor_weights_path``). Global forward hooks record, without changing anything,
each network's input after its preprocessing (the input of the first convolution) and its pool3
output.

Written (CI part): for the sets ``grey`` (6 grey 32 x 32) and ``rgb`` (6 RGB 40 x 40):
the preprocessed input of each set's first image at the rows / columns ``INPUT_INDEX`` and the
per-channel sum and sum of squares of the whole 299 x 299 input; the pool3 features of the first
3 images of each set; the FID between the two sets as each tool computes it; and each tool's
Frechet distance on two synthetic well-conditioned statistics (``synthetic_statistics``).
``--bench``: the FID of ``bench_a`` against ``bench_b`` (2 x 2,100 images, slow on a CPU) by
both tools, stored as numbers only (``benchmarks/fid_reference.py`` checks them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fid_reference_common as common  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
JSON_PATH = ROOT / "tests" / "data" / "fid_reference.json"
NPZ_PATH = ROOT / "tests" / "data" / "fid_reference.npz"


def write_images(ddpmctl_python: str, names, tmp: Path) -> dict[str, Path]:
    """Write the image sets with ddpmctl (in its own environment); returns name -> folder."""
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import fid_reference_common as c\n"
        "for name, folder in zip(sys.argv[1::2], sys.argv[2::2]): c.write_image_set(name, folder)\n"
    )
    folders = {n: tmp / n for n in names}
    args = [a for n in names for a in (n, str(folders[n]))]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([ddpmctl_python, "-c", code, *args], check=True, cwd=ROOT, env=env)
    return folders


class Recorder:
    """Global forward hooks: the first convolution's input (3 x 299 x 299) and pool3 outputs."""

    def __init__(self):
        self.inputs: list[torch.Tensor] = []
        self.features: list[torch.Tensor] = []
        self.handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(self.pre),
            torch.nn.modules.module.register_module_forward_hook(self.post),
        ]

    def pre(self, module, args):
        x = args[0] if args else None
        if isinstance(module, torch.nn.Conv2d) and x is not None and tuple(x.shape[1:]) == (3, 299, 299):
            self.inputs.append(x.detach().cpu().clone())

    def post(self, module, args, out):
        import pytorch_fid.inception as pi
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        if isinstance(module, pi.InceptionV3):
            self.features.append(out[0].detach().cpu().reshape(out[0].shape[0], -1).clone())
        elif isinstance(module, FeatureExtractorInceptionV3):
            self.features.append(out[0].detach().cpu().clone())

    def take(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, f = torch.cat(self.inputs), torch.cat(self.features)
        self.inputs, self.features = [], []
        return x, f

    def close(self):
        for h in self.handles:
            h.remove()


def patch_pytorch_fid(record: dict) -> None:
    """pytorch-fid's ``fid_inception_v3`` builds the network, then calls
    ``load_state_dict_from_url(FID_WEIGHTS_URL)`` and loads the result with ``load_state_dict``
    (strict): answer that call with the key-seeded tensors for the model it was called from."""
    import pytorch_fid.inception as pi

    def load(url, *args, **kwargs):
        model = sys._getframe(1).f_locals["inception"]  # the local of pi.fid_inception_v3
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        state = common.key_seeded_state_dict(shapes)
        record["pytorch_fid_url"] = url
        record["sha256"] = common.state_dict_sha256(state)
        record["keys"] = len(state)
        return state

    pi.load_state_dict_from_url = load


def weights_file(tmp: Path) -> tuple[Path, dict]:
    """The key-seeded tensors for pytorch-fid's FID Inception, as a ``.pth`` for torch-fidelity."""
    import pytorch_fid.inception as pi

    record: dict = {}
    patch_pytorch_fid(record)
    model = pi.fid_inception_v3()
    state = model.state_dict()
    assert common.state_dict_sha256(state) == record["sha256"], "pytorch-fid did not load the tensors given"
    path = tmp / "key_seeded_weights.pth"
    torch.save(state, path)
    return path, record


def pytorch_fid_run(folders: list[Path], rec: Recorder | None, batch: int):
    """pytorch-fid's FID of two folders, and (with ``rec``) the inputs and features recorded."""
    from pytorch_fid.fid_score import calculate_fid_given_paths

    value = calculate_fid_given_paths([str(f) for f in folders], batch, "cpu", 2048, num_workers=0)
    return (float(value), *rec.take()) if rec else (float(value), None, None)


def torch_fidelity_run(folders, weights: Path, rec: Recorder | None, batch: int):
    """torch-fidelity's FID of two folders, and (with ``rec``) the inputs and features recorded."""
    import torch_fidelity

    m = torch_fidelity.calculate_metrics(
        input1=str(folders[0]),
        input2=str(folders[1]),
        fid=True,
        cuda=False,
        cache=False,
        batch_size=batch,
        save_cpu_ram=True,
        verbose=False,
        feature_extractor_weights_path=str(weights),
    )
    value = float(m["frechet_inception_distance"])
    return (value, *rec.take()) if rec else (value, None, None)


def synthetic_frechet() -> dict:
    """Each tool's Frechet distance on the well-conditioned ``synthetic_statistics``."""
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    mu1, s1, mu2, s2, digest = common.synthetic_statistics()
    tf = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)
    return {
        "samples_sha256": digest,
        "pytorch_fid": float(calculate_frechet_distance(mu1, s1, mu2, s2)),
        "torch_fidelity": float(tf["frechet_inception_distance"]),
    }


def input_summary(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(rows / columns ``INPUT_INDEX`` of each image, float32; per-channel sum and sum of squares, float64)."""
    idx = torch.from_numpy(common.INPUT_INDEX)
    sub = x[:, :, idx][:, :, :, idx].numpy().astype(np.float32)
    x64 = x.double()
    sums = torch.stack([x64.sum((2, 3)), (x64 * x64).sum((2, 3))], -1).numpy()
    return sub, sums


def ci_part(folders: dict[str, Path], weights: Path, rec: Recorder) -> tuple[dict, dict]:
    pair = [folders[n] for n in common.CI_SETS]
    n = [len(common.png_files(f)) for f in pair]
    k = common.STORED_PER_SET
    keep_img = [0, n[0]]  # the first image of each set
    keep_feat = list(range(k)) + list(range(n[0], n[0] + k))
    out, arrays = {"fid": {}}, {}
    for tool, run in (
        ("pytorch_fid", lambda: pytorch_fid_run(pair, rec, batch=n[0])),
        ("torch_fidelity", lambda: torch_fidelity_run(pair, weights, rec, batch=n[0])),
    ):
        t = time.perf_counter()
        value, x, f = run()
        assert x.shape[0] == f.shape[0] == sum(n), (tool, x.shape, f.shape)
        print(f"{tool}: FID {value:.9f} ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
        out["fid"][tool] = value
        arrays[f"{tool}_input"], arrays[f"{tool}_input_sums"] = input_summary(x[keep_img])
        arrays[f"{tool}_features"] = f[keep_feat].numpy().astype(np.float32)
        out[f"{tool}_features_range"] = [float(f.min()), float(f.max())]
    out["frechet_synthetic"] = synthetic_frechet()
    out["stored_images"] = {"input": keep_img, "features": keep_feat}
    return out, arrays


def bench_part(folders: dict[str, Path], weights: Path, tools: list[str]) -> dict:
    pair = [folders[n] for n in common.BENCH_SETS]
    out = {}
    runs = {
        "pytorch_fid": lambda: pytorch_fid_run(pair, None, batch=50),
        "torch_fidelity": lambda: torch_fidelity_run(pair, weights, None, batch=50),
    }
    for tool, run in ((t, runs[t]) for t in tools):
        t = time.perf_counter()
        value, _, _ = run()
        out[tool] = value
        out[f"{tool}_seconds"] = round(time.perf_counter() - t, 1)
        print(f"{tool}: FID {value:.9f} ({out[f'{tool}_seconds']} s)", file=sys.stderr)
    return out


def versions() -> dict:
    import PIL
    import pytorch_fid
    import scipy
    import torch_fidelity
    import torchvision

    return {
        "pytorch_fid": pytorch_fid.__version__,
        "torch_fidelity": torch_fidelity.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ddpmctl-python", required=True, help="a Python with ddpmctl (writes the images)")
    ap.add_argument("--bench", action="store_true", help="the N = 2,100 FIDs instead of the CI part")
    ap.add_argument("--tools", default="pytorch_fid,torch_fidelity", help="--bench: which tools (comma-separated)")
    args = ap.parse_args()
    part: dict = {}
    names = common.BENCH_SETS if args.bench else common.CI_SETS
    with tempfile.TemporaryDirectory() as tmp:
        folders = write_images(args.ddpmctl_python, names, Path(tmp))
        weights, wrec = weights_file(Path(tmp))
        sets = {
            n: {"make_data": common.make_data_commands(n), "pixels_sha256": common.pixels_sha256(folders[n])}
            for n in names
        }
        made_by = " ".join(["benchmarks/make_fid_fixture.py", *sys.argv[1:]])
        if args.bench:
            out = bench_part(folders, weights, args.tools.split(","))
            part["bench"] = {"made_by": [made_by], "sets": sets, **out, "versions": versions()}
        else:
            rec = Recorder()
            out, arrays = ci_part(folders, weights, rec)
            rec.close()
            part["ci"] = {"made_by": made_by, "sets": sets, **out, "versions": versions()}
            np.savez_compressed(NPZ_PATH, **arrays)
    meta = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}  # read now: keep the other part
    if "bench" in part and meta.get("bench", {}).get("sets") == part["bench"]["sets"]:
        # the same sets: keep the other tool's number (--tools runs one tool at a time)
        runs = meta["bench"].get("made_by", [])
        runs = [runs] if isinstance(runs, str) else runs
        part["bench"] = {**meta["bench"], **part["bench"], "made_by": sorted({*runs, made_by})}
    meta.update(part, weights={"seed": common.WEIGHTS_SEED, **wrec})
    JSON_PATH.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"wrote {JSON_PATH}" + ("" if args.bench else f" and {NPZ_PATH}"), file=sys.stderr)


if __name__ == "__main__":
    main()
