"""ddpmctl.lazy: a stand-in module that imports the real one on first use (docs/startup.md)."""

import subprocess
import sys


def run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_module_is_imported_on_the_first_attribute_read_and_not_before():
    out = run(
        "import sys\n"
        "from ddpmctl.lazy import lazy_module\n"
        "np = lazy_module('numpy')\n"
        "print('numpy' in sys.modules)\n"
        "a = np.zeros(3, dtype=np.float32)\n"
        "import numpy\n"
        "print('numpy' in sys.modules, type(a) is numpy.ndarray, np.ndarray is numpy.ndarray, np.pi == numpy.pi)\n"
        "print(sys.modules['numpy'] is numpy and sys.modules['numpy'] is not np)\n"
    )
    assert out.splitlines() == ["False", "True True True True", "True"]


def test_a_missing_name_raises_attribute_error_and_a_later_import_still_gets_the_real_module():
    import importlib

    import pytest

    from ddpmctl.lazy import lazy_module

    json = lazy_module("json")
    with pytest.raises(AttributeError):
        json.no_such_function  # noqa: B018
    assert json.dumps({"a": 1}) == '{"a": 1}' and importlib.import_module("json").dumps is json.dumps
    assert repr(lazy_module("numpy")) == "<lazy module 'numpy'>"


def test_the_library_modules_behind_the_help_defer_numpy():
    """Loading them imports no numpy; calling them works as before (the rest of the suite runs them)."""
    modules = ["io", "betas", "datasets", "gmm", "fileinfo", "labels", "realdata", "samplers"]
    out = run(
        "import sys\n"
        + "".join(f"import ddpmctl.{m}\n" for m in modules)
        + "print('numpy' in sys.modules)\n"
        "from ddpmctl import betas\n"
        "b = betas.get_betas('cosine', 10)\n"
        "print('numpy' in sys.modules, type(b).__name__, b.shape)\n"
    )
    assert out.splitlines() == ["False", "True ndarray (10,)"]
