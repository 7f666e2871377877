"""The shape of the package (docs/architecture.md): small functions and modules, few parameters,
discrete time only inside the process, no CLI code in the core. Read with ``ast``, so these hold
for every file under ddpmctl/, including ones added later."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ddpmctl"
FILES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 650
MAX_PARAMETERS = 12


def _functions(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _is_typer_command(path: Path, node) -> bool:
    """A Typer command function: its parameters are the command's flags, one each."""
    return path.parent.name == "cli" and node.name == "command"


def _where(path: Path, node) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"


def test_the_package_has_modules():
    assert len(FILES) > 20


def test_no_function_is_longer_than_a_screen():
    long = [
        f"{_where(p, f)} ({f.end_lineno - f.lineno + 1} lines)"
        for p in FILES
        for f in _functions(p)
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_no_module_is_longer_than_its_concern():
    long = [
        f"{p.relative_to(PACKAGE.parent)} ({n} lines)"
        for p in FILES
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert long == []


def test_functions_take_option_objects_not_long_parameter_lists():
    def count(a: ast.arguments) -> int:
        names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
        return len([x for x in names if x.arg not in ("self", "cls")]) + bool(a.vararg) + bool(a.kwarg)

    many = [
        f"{_where(p, f)} ({count(f.args)} parameters)"
        for p in FILES
        for f in _functions(p)
        if not _is_typer_command(p, f) and count(f.args) > MAX_PARAMETERS
    ]
    assert many == []


def test_discrete_time_stays_inside_the_process():
    leaks = []
    for p in FILES:
        if p.name == "schedules.py":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                if "DiscreteProcess" in ast.unparse(node.args[1]):
                    leaks.append(f"{p.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert leaks == []


@pytest.mark.parametrize("path", [p for p in FILES if "cli" not in p.relative_to(PACKAGE).parts[:1]], ids=str)
def test_the_core_does_not_import_the_cli(path):
    if path.name in ("manpages.py", "__main__.py"):  # the man pages render the CLI; __main__ runs it
        return
    imports = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imports.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imports.add(node.module)
            imports.add(node.module.split(".")[0])
    assert not imports & {"typer", "rich", "click", "ddpmctl.cli"}


def _documented_names(text: str) -> set[str]:
    """The `module.name` references of a doc page whose module is one of ddpmctl's."""
    modules = {p.stem for p in FILES if p.stem != "__init__"} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    names = set()
    for ref in re.findall(r"`([a-z_]+(?:\.[A-Za-z_0-9]+)+)`", text):
        if ref.split(".")[0] in modules - {"__main__"} and not ref.endswith((".py", ".md")):
            names.add(ref)
    return names


def test_every_code_location_in_the_architecture_page_exists():
    """docs/architecture.md names functions by `module.function`; each must resolve, so the
    page cannot drift from the code (the formula index points readers at these)."""
    import importlib

    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    names = _documented_names(text)
    assert len(names) > 50
    missing = []
    for ref in sorted(names):
        parts = ref.split(".")
        obj, i = None, len(parts)
        while i > 0 and obj is None:  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module("ddpmctl." + ".".join(parts[:i]))
            except ImportError:
                i -= 1
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        if obj is None:
            missing.append(ref)
    assert missing == []
