"""Start-up (docs/startup.md): `ddpmctl --help`, every `ddpmctl CMD --help`, `schedule`, `make-data`,
`info` and shell completion never import torch, no `--help` imports numpy, and a command imports
only its own module.

Checked by what is imported, not by timing (benchmarks/startup.py times them): one fresh
interpreter runs the real CLI in-process, command after command, and reports after each which of
the watched modules are loaded, so the first command that imports torch is named."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ddpmctl.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent

# Runs each argv list of sys.argv[1] (JSON) through ddpmctl.cli.main; COMPLETE entries set the
# completion variables first. Prints one JSON line per run: the modules loaded after it.
RUNNER = r"""
import contextlib, io, json, os, sys
from ddpmctl.cli import main

def loaded():
    roots = ("torch", "numpy", "scipy", "matplotlib", "urllib", "http")
    return sorted(m for m in sys.modules if m.split(".")[0] in roots or m.startswith("ddpmctl.cli."))

for run in json.loads(sys.argv[1]):
    env, argv = run.get("env", {}), run["argv"]
    os.environ.update(env)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code
    for k in env:
        del os.environ[k]
    print(json.dumps({"argv": argv, "code": code, "loaded": loaded(), "out": out.getvalue()}), flush=True)
for module in sys.argv[2:]:
    __import__(module)
print(json.dumps({"argv": ["import", *sys.argv[2:]], "code": 0, "loaded": loaded(), "out": ""}), flush=True)
"""

# library modules that hold what the command line shows, importable without torch
TORCH_FREE = [
    "ddpmctl.betas",
    "ddpmctl.samplers",
    "ddpmctl.samplers.registry",
    "ddpmctl.restore_registry",
    "ddpmctl.nll_options",
    "ddpmctl.fid_options",
    "ddpmctl.distill_options",
    "ddpmctl.datasets",
    "ddpmctl.fileinfo",
    "ddpmctl.io",
    "ddpmctl.gmm",
]


def run_in_one_process(runs: list[dict], imports: list[str] = ()) -> list[dict]:
    r = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(runs), *imports],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    return [json.loads(line) for line in r.stdout.decode().splitlines()]


def _checkpoint_header(path: Path) -> None:
    """A .safetensors file with ddpmctl metadata (info reads only the header), written without torch."""
    from safetensors.numpy import save_file

    meta = {"ddpmctl": json.dumps({"process": {"kind": "ddpm", "betas": [1e-4, 0.02]}, "step": 3})}
    save_file({"w": np.zeros((2, 3), np.float32)}, str(path), metadata=meta)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("startup")
    from PIL import Image

    (d / "photos").mkdir()
    for i in range(2):
        Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(d / "photos" / f"{i}.png")
    _checkpoint_header(d / "ck.safetensors")
    help_runs = [["--help"]] + [[name, "--help"] for name, _, _ in COMMANDS]
    work = [
        ["schedule", "cosine", "-o", str(d / "b.npy")],
        ["schedule", "linear", "power", "--T", "50", "--json", "--plot", str(d / "s.png")],
        ["make-data", "triangles", "--n", "4", "-o", str(d / "x.npy")],
        ["make-data", "shapes", "--n", "4", "--size", "8", "-o", str(d / "sh.npy"), "--preview", str(d / "sh.png")],
        ["make-data", "swissroll", "--n", "16", "-o", str(d / "r.npy")],
        ["make-data", "moons", "--n", "16", "-o", str(d / "m.npy")],
        ["make-data", "checkerboard", "--n", "16", "-o", str(d / "c.npy")],
        ["make-data", "gmm", "--n", "16", "-o", str(d / "g.npy")],
        ["make-data", "folder", str(d / "photos"), "--size", "4", "-o", str(d / "f.npy")],
        ["info", str(d / "x.npy")],
        ["info", str(d / "g.npz")],
        ["info", str(d / "ck.safetensors"), "--json"],
        ["info", str(d / "photos")],
    ]
    complete = [
        {"argv": [], "env": {"_DDPMCTL_COMPLETE": "complete_bash", "COMP_WORDS": "ddpmctl sa", "COMP_CWORD": "1"}},
        {
            "argv": [],
            "env": {"_DDPMCTL_COMPLETE": "complete_bash", "COMP_WORDS": "ddpmctl sample --sa", "COMP_CWORD": "2"},
        },
    ]
    runs = [{"argv": a} for a in help_runs] + complete + [{"argv": a} for a in work]
    return d, run_in_one_process(runs, TORCH_FREE)


def test_help_of_every_command_imports_no_torch(reports):
    _, rs = reports
    helps = [r for r in rs if r["argv"] and r["argv"][-1] == "--help"]
    assert len(helps) == 1 + len(COMMANDS)
    for r in helps:  # the help runs come first: nothing before them has loaded numpy or torch
        assert r["code"] == 0 and "Usage" in r["out"], r["argv"]
        assert not [m for m in r["loaded"] if m.split(".")[0] in ("torch", "numpy")], r["argv"]
    # `ddpmctl --help` lists every command from its summary alone: no command module, not even numpy
    top = helps[0]
    assert top["argv"] == ["--help"] and all(summary in top["out"] for _, _, summary in COMMANDS)
    assert not [m for m in top["loaded"] if m.startswith("ddpmctl.cli.") and m != "ddpmctl.cli.common"]


def test_schedule_make_data_and_info_run_without_torch(reports):
    d, rs = reports
    work = [
        r for r in rs if r["argv"] and r["argv"][0] in ("schedule", "make-data", "info") and "--help" not in r["argv"]
    ]
    assert len(work) == 13
    for r in work:
        assert r["code"] == 0, r
        assert not [m for m in r["loaded"] if m.split(".")[0] == "torch"], r["argv"]
    np.testing.assert_allclose(np.load(d / "b.npy")[-1], 0.999)  # cosine's clipped last beta
    assert np.load(d / "x.npy").shape == (4, 1, 32, 32) and np.load(d / "f.npy").shape == (2, 1, 4, 4)
    assert np.load(d / "g.npy").shape == (16, 2) and (d / "g.npz").exists() and (d / "s.png").exists()
    ck = json.loads([r for r in work if "ck.safetensors" in " ".join(r["argv"])][0]["out"])
    assert ck["type"] == "checkpoint" and ck["ddpmctl"]["step"] == 3 and ck["ddpmctl"]["process"]["T"] == 2
    # no run needs scipy either (the rk45 solver and the FID are its only users)
    assert "scipy" not in rs[-1]["loaded"]


def test_shell_completion_imports_no_torch(reports):
    _, rs = reports
    names, options = [r for r in rs if r["argv"] == []]
    assert "sample" in names["out"].split() and "--sampler" in options["out"].split()
    for r in (names, options):
        assert not [m for m in r["loaded"] if m.split(".")[0] == "torch"], r["out"]


def test_the_library_modules_behind_the_choices_import_no_torch(reports):
    _, rs = reports
    last = rs[-1]
    assert last["argv"][0] == "import" and not [m for m in last["loaded"] if m.split(".")[0] == "torch"]


def test_a_command_imports_only_its_own_module():
    r, _ = run_in_one_process([{"argv": ["schedule", "linear", "--T", "10", "--json"]}])
    assert r["code"] == 0 and json.loads(r["out"])["schedules"][0]["T"] == 10
    assert [m for m in r["loaded"] if m.startswith("ddpmctl.cli.")] == ["ddpmctl.cli.common", "ddpmctl.cli.schedule"]


def test_make_data_of_a_synthetic_set_imports_no_network_module(tmp_path):
    """Only a download needs urllib.request / http.client (about 20 ms to import): ``ddpmctl.download``
    imports them in the functions that download, so ``make-data triangles`` never loads them."""
    r, _ = run_in_one_process([{"argv": ["make-data", "triangles", "--n", "2", "-o", str(tmp_path / "x.npy")]}])
    assert r["code"] == 0 and "ddpmctl.cli.make_data" in r["loaded"]  # the module that imports ddpmctl.download
    assert not {"urllib.request", "http.client"} & set(r["loaded"]), r["loaded"]


def test_lazy_group_resolves_every_command_and_no_other():
    import typer

    from ddpmctl.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("ddpmctl", [], resilient_parsing=True)
    assert group.list_commands(ctx) == [name for name, _, _ in COMMANDS]
    for name, _, summary in COMMANDS:
        command = group.get_command(ctx, name)
        assert command.name == name and command.short_help == summary and "Example" in command.help
        assert group.commands[name] is command
    assert group.get_command(ctx, "no-such-command") is None


def test_lazy_names_of_the_samplers_package_resolve():
    import ddpmctl.samplers as S
    from ddpmctl.samplers import ancestral, ode, stochastic

    for name in S.__all__:
        assert getattr(S, name) is not None and name in dir(S), name
    families = {"ancestral": ancestral, "ode": ode, "stochastic": stochastic}
    for record in (*S.SAMPLERS_BY_NAME.values(), *S.ODE_SOLVERS.values()):
        module, _, fn = record.function.rpartition(".")
        assert record.fn is getattr(families[module], fn), record.name
    with pytest.raises(AttributeError):
        S.no_such_name  # noqa: B018


def test_restore_records_name_functions_of_the_restore_module():
    from ddpmctl import restore

    for m in restore.METHODS.values():
        assert m.fn is getattr(restore, m.function) and m.times is getattr(restore, m.grid)
