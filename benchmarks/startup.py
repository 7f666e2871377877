"""Start-up time of the commands that need no torch, with `python -c "import torch"` as the peer.

    .venv/bin/python benchmarks/startup.py                                # the installed ddpmctl
    .venv/bin/python benchmarks/startup.py --root OLD --root .            # two checkouts, side by side

Each command runs in a new process, --runs times, the commands (and the checkouts given by --root,
each as PYTHONPATH) interleaved round-robin, so a burst of load on a shared machine hits them all
alike; the peers run once per round. Before timing, one untimed run of each writes the bytecode
caches (PYTHONDONTWRITEBYTECODE is removed from the children's environment, so the figures are
those of an installed package). Prints, per command, the median wall time, its spread (min ..
max), the median CPU time (user + system of the child, less sensitive to a loaded machine) and
whether the median meets the goal of issue #21 (under 0.3 s wall); the peers have no goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 0.3


def commands(tmp: Path) -> list[tuple[str, list[str], bool]]:
    """(label, argv after the interpreter, whether the goal applies)."""
    d = ["-m", "ddpmctl"]
    tri, roll, betas = str(tmp / "t.npy"), str(tmp / "s.npy"), str(tmp / "b.npy")
    return [
        ('python -c "import torch"', ["-c", "import torch"], False),
        ('python -c "pass"', ["-c", "pass"], False),
        ("ddpmctl --help", [*d, "--help"], True),
        ("ddpmctl schedule --help", [*d, "schedule", "--help"], True),
        ("ddpmctl sample --help", [*d, "sample", "--help"], True),
        ("ddpmctl make-data triangles --n 16", [*d, "make-data", "triangles", "--n", "16", "-o", tri], True),
        ("ddpmctl make-data swissroll --n 1000", [*d, "make-data", "swissroll", "--n", "1000", "-o", roll], True),
        ("ddpmctl schedule cosine -o b.npy", [*d, "schedule", "cosine", "-o", betas], True),
        ("ddpmctl info t.npy", [*d, "info", tri], True),
    ]  # fmt: skip


def run_once(argv: list[str], env: dict, cwd: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process; an error if it fails. ``cwd`` is
    not a checkout: ``python -m`` puts it first on sys.path, ahead of PYTHONPATH."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *argv], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.decode().strip()[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10)")
    ap.add_argument("--root", action="append", help="a checkout to measure (PYTHONPATH); repeatable")
    args = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    roots = [str(Path(r).resolve()) for r in args.root] if args.root else [None]
    envs = {None: base, **{r: dict(base, PYTHONPATH=r) for r in roots if r is not None}}
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp))
        jobs = [(None, c) for c in cmds if not c[2]] + [(r, c) for r in roots for c in cmds if c[2]]
        for root, (_, argv, _) in jobs:  # warm-up: bytecode caches, page cache
            run_once(argv, envs[root], tmp)
        times: dict[tuple, list[tuple[float, float]]] = {(root, c[0]): [] for root, c in jobs}
        for _ in range(args.runs):
            for root, (label, argv, _) in jobs:
                times[root, label].append(run_once(argv, envs[root], tmp))
    print(f"# {sys.executable} (Python {platform.python_version()}), {cpu_name()}, {os.cpu_count()} cores")
    print(f"# {args.runs} runs each; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end")
    print(f"| checkout | command | wall median (s) | wall min .. max (s) | CPU median (s) | goal < {GOAL_S} s |")
    print("|---|---|---|---|---|---|")
    for root, (label, _, has_goal) in jobs:
        wall = [w for w, _ in times[root, label]]
        cpu = [c for _, c in times[root, label]]
        med = statistics.median(wall)
        goal = ("met" if med < GOAL_S else "NOT met") if has_goal else "(peer)"
        where = "-" if root is None and not has_goal else (root or "installed")
        print(
            f"| {where} | `{label}` | {med:.3f} | {min(wall):.3f} .. {max(wall):.3f} | "
            f"{statistics.median(cpu):.3f} | {goal} |"
        )


if __name__ == "__main__":
    main()
