"""Split a labelled data set into its first K rows and the rest, labels and class names beside each.

Usage: python split.py ALL.npy K FIRST.npy REST.npy   (ALL.labels.npy and ALL.classes.txt beside ALL)

``make-data mnist --n N --seed S`` writes a random permutation's first N digits, so the first K
rows of it and the rest are a random train / held-out split with no digit in both.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np


def stem(path: str) -> str:
    return path[: -len(".npy")]


def main(src: str, k: str, first: str, rest: str) -> None:
    x = np.load(src)
    y = np.load(stem(src) + ".labels.npy")
    k = int(k)
    if not 0 < k < len(x) or len(y) != len(x):
        sys.exit(f"split.py: need 0 < K < {len(x)} and one label per row")
    for out, rows in ((first, slice(0, k)), (rest, slice(k, None))):
        np.save(out, x[rows])
        np.save(stem(out) + ".labels.npy", y[rows])
        if Path(stem(src) + ".classes.txt").exists():
            shutil.copyfile(stem(src) + ".classes.txt", stem(out) + ".classes.txt")


if __name__ == "__main__":
    main(*sys.argv[1:])
