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


def test_help_texts_hold_no_rich_markup():
    """Typer's rich --help reads "[default: 8]" (any "[" + a letter, "#", "/" or "@" ... "]") as a
    markup tag and drops it, leaving "samples ." in the terminal; help texts say "(default: 8)"."""
    import re

    import typer

    from ddpmctl.cli import app

    tag = re.compile(r"\[[a-z#/@][^\[\]]*\]")
    group = typer.main.get_command(app)
    ctx = group.make_context("ddpmctl", [], resilient_parsing=True)
    found = []
    for name in group.list_commands(ctx):
        cmd = group.commands[name]
        for param in cmd.params:
            for text in (getattr(param, "help", None) or "",):
                found += [(name, param.name, m) for m in tag.findall(text)]
        found += [(name, "(command)", m) for m in tag.findall(cmd.help or "")]
    assert not found, found


def test_help_prose_is_reflowed():
    """--help wraps prose at the terminal's width: every paragraph of a command's help that is not
    an example is one line (typer's rich help would otherwise keep the docstring's line breaks)."""
    import typer

    from ddpmctl.cli import app, reflow

    assert reflow("a\nb\n\nExample: x\ny\n\n- item\n- item") == "a b\n\nExample: x\ny\n\n- item\n- item"
    group = typer.main.get_command(app)
    ctx = group.make_context("ddpmctl", [], resilient_parsing=True)
    for name in group.list_commands(ctx):
        for para in (group.commands[name].help or "").split("\n\n"):
            assert para.startswith("Example") or "\n" not in para, (name, para[:80])
