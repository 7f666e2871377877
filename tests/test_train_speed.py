"""benchmarks/train_speed.py's operator count (its GPU estimate's basis): views cost nothing, the
count does not depend on the batch, and a deeper network runs more operators per step."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import train_speed  # noqa: E402

from ddpmctl.nets import build_net, default_net_config  # noqa: E402

SHAPE = (1, 8, 8)


def _net(**keys):
    torch.manual_seed(0)
    cfg = default_net_config("images", SHAPE, "sinusoidal")
    cfg.update({"base": 8, "mults": [1, 2], "attn": [], "mid_attn": False, **keys})
    return build_net(cfg)


def test_step_ops_counts_compute_not_views_nor_batch():
    class Linear(torch.nn.Module):  # x -> w * x, through views: one mul forward, its grads, AdamW
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, c):
            return (self.w * x.view(len(x), -1)).view(x.shape)

    small = train_speed.step_ops(Linear(), SHAPE, batch=2)
    assert small == train_speed.step_ops(Linear(), SHAPE, batch=5)
    assert 5 < small < 60
    one, two = train_speed.step_ops(_net(blocks=1), SHAPE, 2), train_speed.step_ops(_net(blocks=2), SHAPE, 2)
    assert one == train_speed.step_ops(_net(blocks=1), SHAPE, 4) and two > one + 20


def test_micro_batches_make_the_same_step_as_the_whole_batch():
    """--levers' micro-batches are the same training step (gradients summed, each chunk weighted by
    its share, also for an uneven last chunk), so only their speed is compared."""
    g = torch.Generator().manual_seed(1)
    x, eps = torch.randn(7, *SHAPE, generator=g), torch.randn(7, *SHAPE, generator=g)
    c = torch.rand(7, generator=g) * 1000
    params = []
    for chunks in (1, 4):  # 7 rows in chunks of 2, 2, 2, 1
        net = _net()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        train_speed.training_step(net, opt, x, c, eps, chunks, torch.device("cpu"), amp=False)
        params.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    moved = (params[0] - torch.cat([p.detach().flatten() for p in _net().parameters()])).abs().max()
    assert moved > 1e-4  # the step did something
    torch.testing.assert_close(params[1], params[0], rtol=0, atol=1e-6)
