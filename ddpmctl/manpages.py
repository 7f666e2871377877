"""Generate roff man pages (``man/ddpmctl.1``, ``man/ddpmctl-COMMAND.1``) from the CLI itself.

``python -m ddpmctl.manpages man`` rewrites them; a test regenerates them and fails on drift, so
the pages always say what ``--help`` says. Sections: NAME, SYNOPSIS, DESCRIPTION, OPTIONS,
EXAMPLES (the ``Example:`` lines of each command's help), FILES, EXIT STATUS, SEE ALSO.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from ddpmctl import __version__

DATE = "2026"  # fixed, so regenerating does not change the pages

EXIT_STATUS = [
    ("0", "Success."),
    ("1", "Failure while running (e.g. a non-finite loss, a full disk, an internal error)."),
    (
        "2",
        "Bad usage or bad input: an unknown option, a file that cannot be read, a wrong shape. "
        "One line on stderr names the file or option and the problem; no output file is written.",
    ),
    ("130", "Interrupted (Ctrl-C), after saving what must be saved."),
]

FILES = [
    ("*.npy", "Arrays: images float32 (N, C, H, W) in [0, 1], or points float32 (N, D). Never pickled."),
    ("*.png", "Pictures: grids of images, scatter plots of points. A folder of PNG/JPEG files is read as images."),
    (
        "CKPT/model.safetensors",
        "Self-describing checkpoint: EMA weights plus, in its metadata, the network, "
        "process, parameterisation and data normalisation.",
    ),
    ("CKPT/state.safetensors", "Everything --resume needs: raw weights, optimizer moments, step, RNG states."),
    ("-", "Standard input or output, as an .npy stream."),
]


def _esc(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


def _split_help(help_text: str) -> tuple[str, list[str], list[str]]:
    """(first line, description paragraphs, examples) of a command's help."""
    text = inspect.cleandoc(help_text or "")
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    examples = [p[len("Example:") :].strip() for p in paras if p.startswith("Example:")]
    body = [" ".join(p.split()) for p in paras if not p.startswith("Example:")]
    first = body[0] if body else ""
    return first, body, examples


def _options(cmd, ctx) -> list[tuple[str, str]]:
    rows = []
    for param in cmd.get_params(ctx):
        rec = param.get_help_record(ctx)
        if rec is None:
            if getattr(param, "param_type_name", "") == "argument":
                rows.append((param.human_readable_name, getattr(param, "help", "") or ""))
            continue
        rows.append(rec)
    return rows


def _page(name: str, title: str, synopsis: str, body: list[str], options, examples, see_also) -> str:
    out = [
        f'.TH "{name.upper()}" "1" "{DATE}" "ddpmctl {__version__}" "ddpmctl manual"',
        ".SH NAME",
        f"{_esc(name)} \\- {_esc(title)}",
        ".SH SYNOPSIS",
        f".B {_esc(synopsis)}",
        ".SH DESCRIPTION",
    ]
    for p in body:
        out += [_esc(p), ".PP"]
    if out[-1] == ".PP":
        out.pop()
    if options:
        out.append(".SH OPTIONS")
        for opt, help_ in options:
            out += [".TP", f".B {_esc(opt)}", _esc(" ".join(help_.split()))]
    if examples:
        out.append(".SH EXAMPLES")
        for ex in examples:
            out += [".PP", ".nf", ".RS 4", _esc(ex), ".RE", ".fi"]
    out.append(".SH FILES")
    for f, d in FILES:
        out += [".TP", f".I {_esc(f)}", _esc(d)]
    out.append(".SH EXIT STATUS")
    for code, d in EXIT_STATUS:
        out += [".TP", f".B {code}", _esc(d)]
    out.append(".SH SEE ALSO")
    out.append(_esc(", ".join(f"{s}(1)" for s in see_also)))
    return "\n".join(out) + "\n"


def generate() -> dict[str, str]:
    """{file name: roff text} for ddpmctl and each subcommand."""
    import typer

    from ddpmctl.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("ddpmctl", [], resilient_parsing=True)
    names = sorted(group.list_commands(ctx))
    pages = {}
    first, body, examples = _split_help(group.help or "")
    cmds = [".SH COMMANDS"]
    for n in names:
        c = group.commands[n]
        cmds += [".TP", f".B ddpmctl {_esc(n)}", _esc(_split_help(c.help or "")[0])]
    page = _page(
        "ddpmctl",
        first,
        "ddpmctl [--version] [--debug] COMMAND [OPTIONS] [ARGS]...",
        body,
        _options(group, ctx),
        examples,
        [f"ddpmctl-{n}" for n in names],
    )
    pages["ddpmctl.1"] = page.replace(".SH OPTIONS", "\n".join(cmds) + "\n.SH OPTIONS", 1)
    for n in names:
        c = group.commands[n]
        sub = c.make_context(n, [], parent=ctx, resilient_parsing=True)
        first, body, examples = _split_help(c.help or "")
        synopsis = " ".join(["ddpmctl", n] + c.collect_usage_pieces(sub))
        pages[f"ddpmctl-{n}.1"] = _page(
            f"ddpmctl-{n}",
            first,
            synopsis,
            body,
            _options(c, sub),
            examples,
            ["ddpmctl"] + [f"ddpmctl-{m}" for m in names if m != n],
        )
    return pages


def write(folder: str | Path) -> list[Path]:
    from ddpmctl.io import write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        write_text(folder / name, text)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for p in write(sys.argv[1] if len(sys.argv) > 1 else "man"):
        print(p)
