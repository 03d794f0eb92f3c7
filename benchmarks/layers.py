"""The rest of a modern CNN's training step against PyTorch: batch norm, a residual block,
the optimizers.

Run:  .venv/bin/python benchmarks/layers.py [--threads 2] [--repeat 15] [--only NAME ...]
      [--batch 32]

``conv.py`` times convolutions and pooling; this script times what sits between them in
a ResNet-style network: BatchNorm2d in training mode (forward and backward), a residual
block (conv 3x3, batch norm, ReLU, conv 3x3, batch norm, the skip connection added,
ReLU: forward, backward and an Adam step), and the optimizers' ``step()`` on two
1000x1000 parameters. Both libraries get the same thread count and the same inputs; the
table prints medians in milliseconds and the ratio tinygrad_np / PyTorch, the two
libraries timed in alternating blocks as in ``conv.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeat", type=int, default=15)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--only", nargs="*", default=None, help="run only cases whose name contains one")
args = ap.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)


import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # (_timing)
import torch  # noqa: E402

import tinygrad_np as tg  # noqa: E402
from tinygrad_np import nn  # noqa: E402

torch.set_num_threads(args.threads)
tg.set_num_threads(args.threads)

from _timing import paired_median_ms  # noqa: E402


def _pair(a: np.ndarray):
    return tg.Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def batch_norm_case(n: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 64, 32, 32)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    ours_bn, their_bn = nn.BatchNorm2d(64), torch.nn.BatchNorm2d(64)
    xo, xt = _pair(x)
    go, gt = tg.Tensor(g), torch.tensor(g)

    def ours():
        tg.grad(ours_bn(xo), [xo, ours_bn.weight, ours_bn.bias], [go])

    def theirs():
        torch.autograd.grad(their_bn(xt), [xt, their_bn.weight, their_bn.bias], gt)

    return ours, theirs


class Block(nn.Module):
    """conv 3x3 - BN - ReLU - conv 3x3 - BN, + x, ReLU (a ResNet basic block)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = self.bn1(self.conv1(x)).relu()
        return (self.bn2(self.conv2(y)) + x).relu()


class TorchBlock(torch.nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


def block_case(n: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 64, 32, 32)).astype(np.float32)
    ours_net, their_net = Block(64), TorchBlock(64)
    their_net.load_state_dict(
        {k: torch.tensor(np.asarray(v)) for k, v in ours_net.state_dict().items()}
    )
    ours_opt = tg.optim.Adam(ours_net.parameters(), lr=1e-3)
    their_opt = torch.optim.Adam(their_net.parameters(), lr=1e-3)
    xo, xt = tg.Tensor(x), torch.tensor(x)

    def ours():
        ours_opt.zero_grad()
        ours_net(xo).mean().backward()
        ours_opt.step()

    def theirs():
        their_opt.zero_grad()
        their_net(xt).mean().backward()
        their_opt.step()

    return ours, theirs


def optimizer_case(make_ours, make_theirs):
    def case(n: int):
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal((1000, 1000)).astype(np.float32) for _ in range(2)]
        grads = [rng.standard_normal((1000, 1000)).astype(np.float32) for _ in range(2)]
        ours_p = [tg.Tensor(a.copy(), requires_grad=True) for a in arrays]
        their_p = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
        for p, q, g in zip(ours_p, their_p, grads, strict=True):
            p.grad, q.grad = tg.Tensor(g), torch.tensor(g)
        return make_ours(ours_p).step, make_theirs(their_p).step

    return case


CASES = {
    "batch_norm2d train, 64ch @32x32": batch_norm_case,
    "residual block 64ch @32x32 + Adam": block_case,
    "Adam step, 2 x 1000x1000": optimizer_case(
        lambda p: tg.optim.Adam(p, lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)
    ),
    "SGD momentum step, 2 x 1000x1000": optimizer_case(
        lambda p: tg.optim.SGD(p, lr=1e-3, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
    ),
}


def main() -> None:
    print(f"threads: {args.threads}; batch {args.batch}; NumPy {np.__version__}; "
          f"torch {torch.__version__}")  # fmt: skip
    print()
    print(f"{'case':<40} {'ours ms':>8} {'torch ms':>9} {'ratio':>6}")
    print("-" * 66)
    for name, make in CASES.items():
        if args.only and not any(s in name for s in args.only):
            continue
        ours, theirs = make(args.batch)
        o, t = paired_median_ms(ours, theirs, args.repeat)
        print(f"{name:<40} {o:8.2f} {t:9.2f} {o / t:6.2f}")


if __name__ == "__main__":
    main()
