"""Start-up time of the commands that need no torch, with `python -c "import torch"` as the peer.

    .venv/bin/python benchmarks/startup.py                       # this checkout, 10 runs each
    .venv/bin/python benchmarks/startup.py --root /work/main     # another checkout (PYTHONPATH=ROOT)

Each command runs in a new process, --runs times, the commands interleaved round-robin (so a burst
of load on a shared machine hits them all alike), after one untimed warm-up run each that writes
the bytecode caches (PYTHONDONTWRITEBYTECODE is removed from the children's environment, so the
figures are those of an installed package). Prints, per command, the median wall time, its spread
(min .. max), the median CPU time (user + system of the child, less sensitive to a loaded machine)
and whether the median meets the goal of issue #21 (under 0.3 s wall) — the peers have no goal.
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


def run_once(argv: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process; an error if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    ap.add_argument("--root", default=None, help="checkout to measure (PYTHONPATH); default: the one installed")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if args.root:
        env["PYTHONPATH"] = str(Path(args.root).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp))
        for _, argv, _ in cmds:  # warm-up: bytecode caches, page cache
            run_once(argv, env)
        times: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in cmds}
        for _ in range(args.runs):
            for label, argv, _ in cmds:
                times[label].append(run_once(argv, env))
    print(f"# {sys.executable} (Python {platform.python_version()}), {cpu_name()}, {os.cpu_count()} cores")
    print(f"# root: {env.get('PYTHONPATH', '(installed package)')}; {args.runs} runs each; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end")  # fmt: skip
    print(f"| command | wall median (s) | wall min .. max (s) | CPU median (s) | goal < {GOAL_S} s |")
    print("|---|---|---|---|---|")
    for label, _, has_goal in cmds:
        wall = [w for w, _ in times[label]]
        cpu = [c for _, c in times[label]]
        med = statistics.median(wall)
        goal = ("met" if med < GOAL_S else "NOT met") if has_goal else "(peer)"
        print(f"| `{label}` | {med:.3f} | {min(wall):.3f} .. {max(wall):.3f} | {statistics.median(cpu):.3f} | {goal} |")


if __name__ == "__main__":
    main()
