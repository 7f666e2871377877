"""ddpmctl's FID of two sets of 2,100 images against the FID that pytorch-fid 0.3.0 (and, where
stored, torch-fidelity 0.4.0) computed itself on the same images with the same weights
(``tests/data/fid_reference.json``, part "bench", made by ``benchmarks/make_fid_fixture.py --bench``).

    .venv/bin/python benchmarks/fid_reference.py [--device cpu] [--batch 50] [--tools pytorch_fid,torch_fidelity]

Slow: 4,200 Inception passes per tool (355 s measured on 2 otherwise idle CPU cores). The sets are
regenerated with make-data (``fid_reference_common.IMAGE_SETS``: bench_a, bench_b) and written as PNG
files; the weights are the key-seeded ones (not the TF-2015 file), read through ``--weights``.
Both are checked against the SHA-256 the fixture recorded. With 2,100 > 2,048 samples the
covariances have full rank, so this also compares the Frechet distances where pytorch-fid's
``sqrtm`` is accurate. Prints one line per tool and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fid_reference_common as common  # noqa: E402

from ddpmctl import fid  # noqa: E402
from ddpmctl.nets import inception as net  # noqa: E402

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "fid_reference.json"
PREPROCESS = {"pytorch_fid": "pytorch-fid", "torch_fidelity": "tf"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--tools", default="pytorch_fid,torch_fidelity", help="which stored numbers to check")
    args = ap.parse_args()
    meta = json.loads(FIXTURE.read_text())
    bench = meta.get("bench")
    if not bench:
        sys.exit(f"{FIXTURE} has no bench part: run benchmarks/make_fid_fixture.py --bench first")
    tools = [t for t in args.tools.split(",") if t in bench]
    summary: dict = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        state = common.key_seeded_state_dict(net.expected_state_dict_shapes())
        if common.state_dict_sha256(state) != meta["weights"]["sha256"]:
            sys.exit("the key-seeded weights differ from the fixture's")
        weights = Path(tmp) / "key_seeded.pth"
        torch.save(state, weights)
        folders = []
        for name in common.BENCH_SETS:
            folder = Path(tmp) / name
            common.write_image_set(name, folder)
            if common.pixels_sha256(folder) != bench["sets"][name]["pixels_sha256"]:
                sys.exit(f"make-data gives other images for {name} than the fixture's")
            folders.append(folder)
        print(f"sets: {' and '.join(c for n in common.BENCH_SETS for c in common.make_data_commands(n))}")
        for tool in tools:
            t = time.perf_counter()
            r = fid.compute(
                folders[0], folders[1], weights=weights, preprocess_mode=PREPROCESS[tool], batch=args.batch,
                device=args.device,
            )  # fmt: skip
            seconds = time.perf_counter() - t
            ref = bench[tool]
            summary[tool] = {"ddpmctl": r.fid, "reference": ref, "difference": r.fid - ref, "seconds": seconds}
            print(
                f"{tool:15s} (--preprocess {PREPROCESS[tool]}): ddpmctl {r.fid:.9f}  {tool} {ref:.9f}  "
                f"difference {r.fid - ref:+.3e} (relative {(r.fid - ref) / ref:+.2e})  [{seconds:.0f} s, "
                f"{r.a.n} + {r.b.n} images]"
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
