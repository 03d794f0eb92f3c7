"""Per-op framework overhead: a chain of small elementwise ops, forward and backward.

Prints microseconds per op for tinygrad_np and, when it is installed, for
PyTorch (CPU) on the same chain, and the ratio of the two. With 16-element
tensors the arithmetic is negligible, so the figure is the cost of the
framework itself: building the graph node, dtype and shape bookkeeping, the
topological sort and the VJP calls.

    python benchmarks/overhead.py [--ops 200] [--size 16] [--repeats 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

# this checkout's tinygrad_np, not whichever one is installed
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tinygrad_np as tg  # noqa: E402


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


def _steps(x, w, b, n_ops: int):
    """(forward, forward+backward) closures over leaf tensors of either framework."""

    def fwd():
        return chain(x, w, b, n_ops)

    def fwd_bwd():
        x.grad = w.grad = b.grad = None
        chain(x, w, b, n_ops).backward()

    return fwd, fwd_bwd


def tinygrad_steps(n_ops: int, size: int):
    rng = np.random.default_rng(0)
    x, w, b = (
        tg.Tensor(rng.standard_normal(size).astype(np.float32), requires_grad=True)
        for _ in range(3)
    )
    return _steps(x, w, b, n_ops)


def torch_steps(n_ops: int, size: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(size, generator=gen, requires_grad=True) for _ in range(3))
    return _steps(x, w, b, n_ops)


def measure(steps: dict, repeats: int) -> dict:
    """Median seconds per call of each step. The frameworks take turns within every round,
    so that load from other processes on a shared machine falls on both alike."""
    for step in steps.values():  # warm up
        step()
        step()
    times: dict = {k: [] for k in steps}
    for _ in range(repeats):
        for k, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=200, help="length of the chain")
    p.add_argument("--size", type=int, default=16, help="elements per tensor")
    p.add_argument("--repeats", type=int, default=50, help="timed rounds (median reported)")
    args = p.parse_args(argv)
    n = args.ops + 1  # the chain's ops plus the final sum
    steps = dict(zip(("tg_fwd", "tg_fwd_bwd"), tinygrad_steps(args.ops, args.size), strict=True))
    ref = torch_steps(args.ops, args.size)
    if ref is not None:
        steps.update(zip(("pt_fwd", "pt_fwd_bwd"), ref, strict=True))
    us = {k: v * 1e6 / n for k, v in measure(steps, args.repeats).items()}
    print(f"chain of {args.ops} elementwise ops on {args.size}-element float32 tensors")
    print(f"{'':12}{'forward':>14}{'fwd+bwd':>14}   (microseconds per op, median)")
    print(f"{'tinygrad_np':12}{us['tg_fwd']:14.2f}{us['tg_fwd_bwd']:14.2f}")
    if ref is None:
        print("PyTorch is not installed: no ratio")
        return us
    us["ratio_fwd"] = us["tg_fwd"] / us["pt_fwd"]
    us["ratio"] = us["tg_fwd_bwd"] / us["pt_fwd_bwd"]
    print(f"{'pytorch':12}{us['pt_fwd']:14.2f}{us['pt_fwd_bwd']:14.2f}")
    print(
        f"{'ratio':12}{us['ratio_fwd']:14.2f}{us['ratio']:14.2f}"
        "   (tinygrad_np / PyTorch; goal <= 1.0)"
    )
    return us


if __name__ == "__main__":
    main()
