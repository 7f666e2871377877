"""No pickle anywhere: a scan of the package for unsafe loads (the reliability issue's rule)."""

import re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "ddpmctl"


def _calls(src: str, name: str) -> list[str]:
    """The full argument text of each call `name(...)` (balanced parentheses)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", src):
        depth, i = 1, m.end()
        while depth and i < len(src):
            depth += {"(": 1, ")": -1}.get(src[i], 0)
            i += 1
        out.append(src[m.end() : i - 1])
    return out


def test_no_unsafe_loads_in_the_package():
    problems = []
    for f in sorted(PKG.rglob("*.py")):
        src = f.read_text()
        rel = f.relative_to(PKG.parent)
        if re.search(r"^\s*(import pickle|from pickle|import dill|import cloudpickle)", src, re.M):
            problems.append(f"{rel}: imports pickle")
        if "allow_pickle=True" in src:
            problems.append(f"{rel}: allow_pickle=True")
        for args in _calls(src, "np.load") + _calls(src, "numpy.load"):
            if "allow_pickle=False" not in args:
                problems.append(f"{rel}: np.load without allow_pickle=False")
        for args in _calls(src, "torch.load"):
            if "weights_only=True" not in args:
                problems.append(f"{rel}: torch.load without weights_only=True")
        if re.search(r"(?<![.\w])(eval|exec)\(", src):
            problems.append(f"{rel}: eval/exec")
        # TorchScript is only read from the one file whose SHA-256 fid/inception.py checks first
        if "jit.load" in src and rel.as_posix() != "ddpmctl/fid/inception.py":
            problems.append(f"{rel}: torch.jit.load")
    assert not problems, problems


def test_scan_catches_unsafe_code():
    bad = "x = np.load(p)\ny = torch.load(f)\n"
    assert _calls(bad, "np.load") == ["p"] and _calls(bad, "torch.load") == ["f"]
