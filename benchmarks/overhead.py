"""Per-op framework overhead: a chain of small elementwise ops, forward and backward.

Prints microseconds per op for tinygrad_np and, when it is installed, for
PyTorch (CPU) on the same chain, and the ratio of the two. With 16-element
tensors the arithmetic is negligible, so the figure is the cost of the
framework itself: building the graph node, dtype and shape bookkeeping, the
topological sort and the VJP calls.

    python benchmarks/overhead.py [--ops 200] [--size 16] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tinygrad_np as tg


def chain(x, w, b, n_ops: int):
    """n_ops elementwise ops cycling through mul, add, tanh, sub, mul-by-scalar."""
    y = x
    for i in range(n_ops):
        k = i % 5
        if k == 0:
            y = y * w
        elif k == 1:
            y = y + b
        elif k == 2:
            y = y.tanh()
        elif k == 3:
            y = y - b
        else:
            y = y * 0.9
    return y.sum()


def _time(step, repeats: int) -> float:
    """Median seconds of ``step()`` after two warm-up calls."""
    step()
    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_tinygrad(n_ops: int, size: int, repeats: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal(size).astype(np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal(size).astype(np.float32), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(size).astype(np.float32), requires_grad=True)

    def fwd():
        return chain(x, w, b, n_ops)

    def fwd_bwd():
        x.grad = w.grad = b.grad = None
        chain(x, w, b, n_ops).backward()

    return _time(fwd, repeats), _time(fwd_bwd, repeats)


def bench_torch(n_ops: int, size: int, repeats: int) -> tuple[float, float] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(size, generator=gen, requires_grad=True) for _ in range(3))

    def fwd():
        return chain(x, w, b, n_ops)

    def fwd_bwd():
        x.grad = w.grad = b.grad = None
        chain(x, w, b, n_ops).backward()

    return _time(fwd, repeats), _time(fwd_bwd, repeats)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=200, help="length of the chain")
    p.add_argument("--size", type=int, default=16, help="elements per tensor")
    p.add_argument("--repeats", type=int, default=30, help="timed runs (median reported)")
    args = p.parse_args(argv)
    n = args.ops + 1  # the chain's ops plus the final sum
    us = 1e6 / n
    tf, tfb = bench_tinygrad(args.ops, args.size, args.repeats)
    res = {"tinygrad_fwd": tf * us, "tinygrad_fwd_bwd": tfb * us}
    print(f"chain of {args.ops} elementwise ops on {args.size}-element float32 tensors")
    print(f"{'':12}{'forward':>14}{'fwd+bwd':>14}   (microseconds per op)")
    print(f"{'tinygrad_np':12}{tf * us:14.2f}{tfb * us:14.2f}")
    ref = bench_torch(args.ops, args.size, args.repeats)
    if ref is None:
        print("PyTorch is not installed: no ratio")
        return res
    pf, pfb = ref
    res.update(torch_fwd=pf * us, torch_fwd_bwd=pfb * us, ratio=tfb / pfb)
    print(f"{'pytorch':12}{pf * us:14.2f}{pfb * us:14.2f}")
    print(f"{'ratio':12}{tf / pf:14.2f}{tfb / pfb:14.2f}   (tinygrad_np / PyTorch; goal <= 1.0)")
    return res


if __name__ == "__main__":
    main()
