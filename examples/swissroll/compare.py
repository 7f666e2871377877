"""Scatter plots of several point sets side by side, titled by file name (uses ddpmctl's library).

Usage: python compare.py OUT.png data.npy samples-a.npy samples-b.npy ...
"""

import sys
from pathlib import Path

from ddpmctl.io import read_npy, save_scatter

out, *files = sys.argv[1:]
save_scatter(out, [read_npy(f) for f in files], titles=[Path(f).stem for f in files])
print(f"wrote {out}", file=sys.stderr)
