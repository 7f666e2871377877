"""The cache of original data-set files, and their download checked against the published checksums.

No CLI code. Where the files live: ``$DDPMCTL_DATA/<set>/`` when that is set, else
``$XDG_CACHE_HOME/ddpmctl/data/<set>/`` (by default ``~/.cache/ddpmctl/data/<set>/``). Where they
come from: the set's canonical folder (``realdata.SETS``), or ``$DDPMCTL_DATA_URL`` when that is
set (a folder URL the file name is appended to: a local mirror).

A download goes into a temporary file in the cache folder while its MD5 is computed; only when
every byte the server announced (Content-Length) has arrived and the MD5 equals the published one
is it renamed onto its name (``io.atomic_write``), so the cache never holds a partial or wrong
file. A file found in the cache is checked against the same MD5 before it is used, so one put
there by hand is verified too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from ddpmctl import io
from ddpmctl.errors import InputError, RunError

ENV_DATA = "DDPMCTL_DATA"
ENV_URL = "DDPMCTL_DATA_URL"
TIMEOUT = 30.0  # seconds without an answer before a connection or a read gives up
CHUNK = 1 << 16

# reporter(total bytes or None, description) -> a context manager yielding update(bytes)
Reporter = Callable[[int | None, str], contextlib.AbstractContextManager[Callable[[int], None]]]


@contextlib.contextmanager
def _silent(total: int | None, description: str):
    yield lambda advance=1: None


def cache_root() -> Path:
    """``$DDPMCTL_DATA``, else ``$XDG_CACHE_HOME/ddpmctl/data`` (default ``~/.cache/ddpmctl/data``)."""
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "ddpmctl" / "data"


def cache_dir(kind: str) -> Path:
    """The folder of one set's files: ``cache_root() / kind``."""
    return cache_root() / kind


def file_url(default_base: str, name: str) -> str:
    """The URL of ``name``: in ``$DDPMCTL_DATA_URL`` when set, else in the set's canonical folder."""
    base = os.environ.get(ENV_URL) or default_base
    return base.rstrip("/") + "/" + name


def md5_file(path: str | os.PathLike) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch(rs, name: str, reporter: Reporter | None = None) -> Path:
    """The verified local copy of file ``name`` of the set ``rs`` (a ``realdata.RealSet``): from
    the cache, else downloaded into it. ``InputError`` (one line naming the file to fetch and the
    folder to put it in) when it cannot be had, or when a cached copy fails its checksum."""
    dest = cache_dir(rs.name) / name
    expected = rs.md5[name]
    if dest.is_file():
        got = md5_file(dest)
        if got != expected:
            raise InputError(
                f"{dest}: MD5 {got} is not the published {expected} (not the original file): "
                "delete it to download it again, or give --from PATH"
            )
        return dest
    download(file_url(rs.url, name), dest, expected, reporter)
    return dest


def _failed(url: str, dest: Path, why: str) -> InputError:
    return InputError(
        f"cannot download {dest.name} ({why}): fetch {url} and put it in {dest.parent}/, or give --from PATH"
    )


def download(url: str, dest: str | os.PathLike, md5: str, reporter: Reporter | None = None) -> None:
    """Download ``url`` to ``dest``: all of it, with MD5 ``md5``, or nothing (see the module docstring)."""
    dest = Path(dest)
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{dest.parent}: cannot create the data folder ({e.strerror or e}); set ${ENV_DATA}") from None
    try:
        _download(url, dest, md5, reporter)
    except BaseException:
        for folder in created:  # leave no trace: the folders made for this file go too (when empty)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _download(url: str, dest: Path, md5: str, reporter: Reporter | None) -> None:
    # the network modules are imported here, where they are used: about 20 ms that every other
    # make-data run (a synthetic set, a folder, a cached file) does not pay (docs/startup.md)
    import http.client
    import urllib.error
    import urllib.request

    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        raise _failed(url, dest, f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise _failed(url, dest, f"no connection: {reason}") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length is not None and length.isdigit() else None
        with io.atomic_write(dest) as f, (reporter or _silent)(total, f"download {dest.name}") as update:
            got, digest = 0, hashlib.md5(usedforsecurity=False)
            while block := _read_block(response, url, dest):
                f.write(block)
                digest.update(block)
                got += len(block)
                update(len(block))
            if total is not None and got != total:
                raise _failed(url, dest, f"the transfer stopped after {got:,} of {total:,} bytes")
            if digest.hexdigest() != md5:
                raise _failed(url, dest, f"MD5 {digest.hexdigest()} is not the published {md5}")


def _read_block(response, url: str, dest: Path) -> bytes:
    import http.client  # loaded by ``_download`` already: a lookup in sys.modules

    try:
        return response.read(CHUNK)
    except (OSError, http.client.HTTPException) as e:  # a timeout or a reset connection mid-transfer
        raise _failed(url, dest, f"the transfer broke: {e.__class__.__name__}: {e}") from None
