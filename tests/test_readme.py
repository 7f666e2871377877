"""Every command the README shows in a ```sh block runs, in order, in one folder (so files chain
as in the README), shrunk to tiny sizes: data sets to 32 items, training to a few steps of a
tiny network, sampling to a handful of samples. ```console blocks are shown, not run (`make demo`
and `make test` are what CI itself runs; the multi-node torchrun line needs several machines)."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

TINY = [
    (r"(make-data \S+.*?)--n \d+", r"\1--n 32"),
    (r"(sample|restore)(.*?) -n \d+", r"\1\2 -n 8"),
    (r"--steps \d+", "--steps 4"),
    (r"--time-limit \S+", "--steps 4"),  # a wall-time budget becomes 4 steps
    (r"ddpmctl train ((?:tri|shapes)\S*\.npy)", r"ddpmctl train \1 --base 8 --mults 1,2 --attn none --batch 16"),
    (r"ddpmctl train (roll\S*\.npy)", r"ddpmctl train \1 --base 16"),
    (r"--kid-subset-size \d+", "--kid-subset-size 8"),
    (r"--steps-per-round \d+", "--steps-per-round 2 --batch 8"),
    (r"--config examples/", f"--config {README.parent}/examples/"),  # the tests run in a temporary folder
]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def shrink(line: str) -> str:
    for pat, rep in TINY:
        line = re.sub(pat, rep, line)
    return line


def test_readme_has_runnable_blocks():
    blocks = sh_blocks(README.read_text())
    assert len(blocks) >= 5
    cmds = {w for b in blocks for w in re.findall(r"ddpmctl ([a-z-]+)", b)}
    for c in ("make-data", "schedule", "noise", "train", "sample", "fid", "degrade", "restore", "info"):
        assert c in cmds, f"README shows no '{c}' command"


def test_readme_commands_run(tmp_path):
    script = ["set -euo pipefail", f'ddpmctl() {{ "{sys.executable}" -m ddpmctl "$@"; }}']
    for block in sh_blocks(README.read_text()):
        script += [shrink(line) for line in block.splitlines()]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=1200
    )
    assert r.returncode == 0, r.stderr[-4000:]
