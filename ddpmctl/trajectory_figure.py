"""The trajectory picture of ``sample --trajectory``: the states x_t and predicted x0 a run kept,
as an image grid (images) or scatter panels (points). numpy and matplotlib only."""

from __future__ import annotations

import numpy as np

from ddpmctl.errors import InputError

TRAJECTORY_SHOWS = ("both", "x0", "xt")


def save_trajectory_png(
    path, traj: np.ndarray, times: list[float], data_kind: str, rows: int = 8, show: str = "both"
) -> None:
    """The denoising process as a picture (like the figures of seeds 000, 001 and 004).

    Images: for each of the first ``rows`` samples, a row of the states x_t (left: t_max, right:
    the output) and under it a row of the predicted x0 (``show`` = "both"); or only the x0 row
    (``show`` = "x0": seed 004's progressive generation, one row per sample) or only the x_t row
    (``show`` = "xt"). Points: a scatter panel of x_t per kept time (top) and of the predicted x0
    (bottom), or the one row ``show`` names."""
    from ddpmctl import io

    if show not in TRAJECTORY_SHOWS:
        raise InputError(f"--trajectory-show: '{show}' is not one of {', '.join(TRAJECTORY_SHOWS)}")
    if rows < 1:
        raise InputError(f"--trajectory-rows: must be >= 1, got {rows}")
    kinds = {"both": (0, 1), "xt": (0,), "x0": (1,)}[show]
    k = traj.shape[1]
    if data_kind == "images":
        cells = [traj[i, :, r] for i in range(min(rows, traj.shape[0])) for r in kinds]
        io.save_grid(path, np.clip(np.concatenate(cells), 0.0, 1.0), nrow=k)
        return
    import io as _io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    final = traj[:, -1, 0, :2]
    lo, hi = np.nanmin(final, 0), np.nanmax(final, 0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    fig, axes = plt.subplots(len(kinds), k, figsize=(2.6 * k, 2.7 * len(kinds)), squeeze=False)
    for j in range(k):
        for row, r in enumerate(kinds):
            p = traj[:, j, r]
            ax = axes[row][j]
            ax.scatter(p[:, 0], p[:, 1] if p.shape[1] > 1 else np.zeros(len(p)), s=1, alpha=0.4)
            ax.set_title(f"{('x_t', 'predicted x0')[r]}, t={times[j]:.3g}", fontsize=8)
            ax.tick_params(labelsize=6)
            if r == 1 and p.shape[1] > 1:  # predicted x0 on the axes of the output, so they compare
                ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
                ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    io.write_bytes(path, buf.getvalue())
