"""The sets FID compares: ``.npy`` arrays (read in sequential chunks), image folders (file by file,
through ``io.read_image``), single images, statistics files, in-memory arrays and ``Stats``."""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ddpmctl import io
from ddpmctl.errors import InputError
from ddpmctl.fid.stats import Stats, is_stats_file


@dataclass
class Source:
    """One input set. ``batches(size)`` yields float32 arrays (images (B, C, H, W) in [0, 1] or
    points (B, D)); a stats file has ``stats`` instead."""

    name: str
    kind: str  # images | points | stats
    n: int
    item_shape: tuple[int, ...] | None = None
    batches: Callable[[int], Iterator[np.ndarray]] | None = field(default=None, repr=False)
    stats: Stats | None = None


def _array_source(arr: np.ndarray, name: str, chunks: Callable[[int], Iterator[np.ndarray]] | None = None) -> Source:
    """A source over an array; ``chunks(size)`` (default: slices of ``arr``) yields its rows in order."""
    if chunks is None:

        def chunks(size: int) -> Iterator[np.ndarray]:
            for i in range(0, arr.shape[0], size):
                yield np.asarray(arr[i : i + size])

    if arr.ndim == 2:
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise InputError(f"{name}: holds no points (shape {tuple(arr.shape)})")

        def point_batches(size: int) -> Iterator[np.ndarray]:
            for part in chunks(size):
                yield io.as_points(part, name)

        return Source(name, "points", int(arr.shape[0]), (int(arr.shape[1]),), point_batches)
    if arr.ndim not in (3, 4):
        raise InputError(
            f"{name}: expected images (N, C, H, W) / (N, H, W) or points (N, D), got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] == 0:
        raise InputError(f"{name}: holds no images (N = 0)")
    item = (1, *arr.shape[1:]) if arr.ndim == 3 else tuple(arr.shape[1:])

    def image_batches(size: int) -> Iterator[np.ndarray]:
        for part in chunks(size):
            yield io.as_float_images(part, name)

    return Source(name, "images", int(arr.shape[0]), tuple(int(s) for s in item), image_batches)


def _folder_source(folder: Path) -> Source:
    """The images of a folder, read in batches; every image gets the first one's channel count."""
    files = io.list_image_files(folder)
    first = io.read_image(files[0])
    channels = first.shape[0]
    threads = max(1, min(8, os.cpu_count() or 1))

    def batches(size: int) -> Iterator[np.ndarray]:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:  # PIL decodes without the GIL
            for i in range(0, len(files), size):
                imgs = list(pool.map(lambda f: io.read_image(f, channels=channels), files[i : i + size]))
                # images of one batch are stacked by size; a size change starts a new batch
                start = 0
                for j in range(1, len(imgs) + 1):
                    if j == len(imgs) or imgs[j].shape != imgs[start].shape:
                        yield np.stack(imgs[start:j])
                        start = j

    # sizes are checked lazily (FID's Inception resizes each batch to 299; raw features need one size)
    return Source(str(folder), "images", len(files), tuple(first.shape), batches)


def open_source(x, name: str | None = None) -> Source:
    """An input: a path (``.npy``, ``-``, a folder of images, an image file, a stats ``.npz``), an
    array (images (N, C, H, W) in [0, 1] or points (N, D)), or a ``Stats``."""
    if isinstance(x, Source):
        return x
    if isinstance(x, Stats):
        return Source(name or "<stats>", "stats", x.n or 0, stats=x)
    if isinstance(x, (np.ndarray, torch.Tensor)):
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        return _array_source(arr, name or "<array>")
    path = str(x)
    if is_stats_file(path):
        st = Stats.load(path)
        return Source(path, "stats", st.n or 0, stats=st)
    if path != io.STDIO and Path(path).is_dir():
        return _folder_source(Path(path))
    if path != io.STDIO and io.is_image_file(path):
        return _array_source(io.read_array(path), path)
    if path == io.STDIO:
        return _array_source(io.read_npy(path), path)
    # read in sequential chunks, not through the memory map: memory stays at one batch
    return _array_source(io.read_npy(path, mmap=True), path, lambda size: io.iter_npy_chunks(path, size))


def prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` in a background thread, ``depth`` items ahead (reading overlaps the network)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as e:  # handed to the consumer
            q.put((done, e))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
