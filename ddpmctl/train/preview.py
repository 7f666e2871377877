"""The sample grids of a training run (``train --sample-every K``): drawn from the EMA weights with
DDIM (``ddpmctl.sampling.generate``) every K steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddpmctl import checkpoint as ckpt
from ddpmctl import io as dio


def write_samples(path: Path, net, run) -> None:
    """A sample grid (images) or scatter plot (points) drawn from ``net`` (the EMA weights) of the run
    ``run`` (``loop.RunState``) with DDIM; a class-conditional net draws sample i of class i mod K; an
    SR3 net restores the first training images from their condition (rows: the bicubic condition c,
    the SR3 output, the clean image)."""
    from ddpmctl.sampling import generate

    meta_base, cfg, data = run.meta_base, run.cfg, run.data
    was_training = net.training
    net.eval()
    try:
        model = ckpt.LoadedModel(
            net=net,
            process=meta_base["process"],
            prediction=meta_base["prediction"],
            normalization=meta_base["normalization"],
            data_kind=meta_base["data_kind"],
            data_shape=tuple(meta_base["data_shape"]),
            meta={"condition": meta_base["condition"]} if meta_base.get("condition") else {},
        )
        k = len(meta_base.get("classes") or [])
        labels = [i % k for i in range(cfg.sample_n)] if k else None
        n, steps = cfg.sample_n, cfg.sample_steps
        clean = cond = None
        if data.condition is not None:  # the first n training images (repeated if there are fewer)
            clean = data.batch(np.arange(n) % len(data))
            cond = data.condition.from_clean(clean)
        samples, _ = generate(model, "ddim", n, steps, cfg.seed, n, run.device, labels=labels, cond=cond)
        if cond is not None:
            from ddpmctl.restore.driver import comparison_rows

            norm = data.normalization
            shown = [np.clip(norm.to_data(v.cpu().numpy()), 0.0, 1.0) for v in (cond, clean)]
            samples, nrow = comparison_rows([shown[0], samples, shown[1]])
            dio.save_grid(path, samples, nrow=nrow)
            return
        dio.save_output(path, samples)
    finally:
        net.train(was_training)
