"""Man pages are generated from the CLI; the committed ones must not drift from --help."""

from pathlib import Path

from ddpmctl.manpages import generate

MAN = Path(__file__).resolve().parent.parent / "man"


def test_man_pages_match_cli():
    pages = generate()
    assert "ddpmctl.1" in pages and len(pages) >= 4
    for name, text in pages.items():
        f = MAN / name
        assert f.exists(), f"{name} missing: run 'make man'"
        assert f.read_text() == text, f"{name} drifted from the CLI: run 'make man'"
    stale = {p.name for p in MAN.glob("*.1")} - set(pages)
    assert not stale, f"man pages of commands that no longer exist: {stale}"


def test_pages_have_required_sections():
    for name, text in generate().items():
        for sec in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "FILES", "EXIT STATUS", "SEE ALSO"):
            assert f".SH {sec}" in text, (name, sec)
        if name != "ddpmctl.1":
            assert ".SH EXAMPLES" in text, name
