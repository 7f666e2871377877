import io
import os
import subprocess
import sys

import pytest
import torch

# two pytest-xdist workers share the 2 cores: one thread each avoids oversubscription
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The longest tests, run first: with two pytest-xdist workers, a long test that starts last leaves
# one worker running it alone at the end (the README test alone is about three quarters of the suite's wall time).
SLOWEST_FIRST = ("test_readme.py::test_readme_commands_run",)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.nodeid.endswith(SLOWEST_FIRST))  # stable: the rest keep their order


def run_cli_subprocess(*args, input: bytes | None = None, cwd=None, env=None, timeout=300):
    """Run the real CLI in a new process (`python -m ddpmctl ARGS`); returns a CompletedProcess."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "ddpmctl", *map(str, args)],
        input=input,
        capture_output=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )


def run_cli(*args, input: bytes | None = None, cwd=None, env=None, timeout=None):
    """Run the real CLI entry point (ddpmctl.cli.main) in this process, with stdin/stdout/stderr
    as byte buffers; returns a CompletedProcess like run_cli_subprocess (saves a Python + torch
    start per call). Use run_cli_subprocess for real pipes and signals."""
    from ddpmctl.cli import main
    from ddpmctl.cli.common import STATE

    argv = [str(a) for a in args]
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    inp = io.TextIOWrapper(io.BytesIO(input or b""), encoding="utf-8")
    saved = sys.stdin, sys.stdout, sys.stderr
    old_cwd = os.getcwd()
    old_env = dict(os.environ)
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        os.environ.update(env or {})
        sys.stdin, sys.stdout, sys.stderr = inp, out, err
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        STATE["debug"] = False
    return subprocess.CompletedProcess(argv, code, out.buffer.getvalue(), err.buffer.getvalue())


@pytest.fixture
def cli():
    return run_cli
