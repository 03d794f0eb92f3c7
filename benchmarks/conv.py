"""Convolution and pooling benchmarks against PyTorch on the same machine.

Run:  .venv/bin/python benchmarks/conv.py [--threads 2] [--repeat 15] [--only NAME ...]

Both libraries get the same thread count (torch.set_num_threads and the BLAS
thread variables, set before NumPy is imported). Each case is timed as the
median of ``--repeat`` runs after warm-up, the two libraries
alternating in blocks of three runs; the table prints milliseconds, the
ratio tinygrad_np / PyTorch (lower is better), and for conv layers the achieved
GFLOP/s (forward + both backward maps = 3x the forward flops) next to NumPy's
float32 matmul rate. ``--memory`` adds the peak-memory comparison of one
training step of the 96x96 network at batch 128.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeat", type=int, default=15)
ap.add_argument("--only", nargs="*", default=None, help="run only cases whose name contains one")
ap.add_argument("--memory", action="store_true", help="also measure peak memory (slow)")
ap.add_argument("--memory-only", action="store_true")
args = ap.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # (_timing)
import tinygrad_np as tg  # noqa: E402
import tinygrad_np.nn.functional as F  # noqa: E402
from tinygrad_np.models import LeNet5  # noqa: E402

try:
    import torch  # noqa: E402
    import torch.nn.functional as TF  # noqa: E402

    torch.set_num_threads(args.threads)
except ImportError:  # pragma: no cover
    torch = None


def median_ms(fn, repeat: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


from _timing import paired_median_ms  # noqa: E402 - (shared with layers.py)


def gemm_gflops() -> float:
    """NumPy's float32 matmul rate with BLAS's own threads (tinygrad_np runs BLAS on one
    thread and splits products itself; the ceiling is plain BLAS at the same count)."""
    from tinygrad_np._parallel import blas_threads

    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((1024, 1024)).astype(np.float32)
    times = []
    with blas_threads(args.threads):
        for _ in range(32):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    return 2 * 1024**3 / min(times[2:]) / 1e9  # the best run: a ceiling


# ----------------------------------------------------------------------------- models


def _init(rng, *shape):
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def lenet_params(rng):
    return [
        _init(rng, 6, 1, 5, 5), np.zeros(6, np.float32),
        _init(rng, 16, 6, 5, 5), np.zeros(16, np.float32),
        _init(rng, 120, 400), np.zeros(120, np.float32),
        _init(rng, 84, 120), np.zeros(84, np.float32),
        _init(rng, 10, 84), np.zeros(10, np.float32),
    ]  # fmt: skip


def lenet(f, p, x):
    """LeNet-5 on (N, 1, 28, 28); ``f`` is F or torch.nn.functional."""
    x = f.max_pool2d(f.relu(f.conv2d(x, p[0], p[1], padding=2)), 2)
    x = f.max_pool2d(f.relu(f.conv2d(x, p[2], p[3])), 2)
    x = x.reshape(x.shape[0], -1)
    x = f.relu(f.linear(x, p[4], p[5]))
    x = f.relu(f.linear(x, p[6], p[7]))
    return f.linear(x, p[8], p[9])


def net96_params(rng):
    return [
        _init(rng, 40, 3, 4, 4), np.zeros(40, np.float32),
        _init(rng, 105, 40, 2, 2), np.zeros(105, np.float32),
        _init(rng, 158, 105, 2, 2), np.zeros(158, np.float32),
        _init(rng, 158, 158, 2, 2), np.zeros(158, np.float32),
        _init(rng, 105, 158, 2, 2), np.zeros(105, np.float32),
        _init(rng, 945, 945), np.zeros(945, np.float32),
        _init(rng, 475, 945), np.zeros(475, np.float32),
        _init(rng, 8, 475), np.zeros(8, np.float32),
    ]  # fmt: skip


def net96(f, p, x):
    """The users' 96x96 network: (N, 3, 96, 96) -> (N, 8)."""
    x = f.max_pool2d(f.relu(f.conv2d(x, p[0], p[1], stride=2)), 3, 2)
    x = f.max_pool2d(f.relu(f.conv2d(x, p[2], p[3])), 4, 2)
    x = f.relu(f.conv2d(x, p[4], p[5]))
    x = f.relu(f.conv2d(x, p[6], p[7]))
    x = f.max_pool2d(f.relu(f.conv2d(x, p[8], p[9])), 3, 2)
    x = x.reshape(x.shape[0], -1)
    x = f.relu(f.linear(x, p[10], p[11]))
    x = f.relu(f.linear(x, p[12], p[13]))
    return f.linear(x, p[14], p[15])


def train_step_case(model, params_fn, x_shape, n_classes, lr=0.01):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    y = rng.integers(0, n_classes, x_shape[0])
    p0 = params_fn(rng)
    tp = [tg.Tensor(a, requires_grad=True) for a in p0]
    xt, yt = tg.Tensor(x), y

    def ours():
        for p in tp:
            p.grad = None
        loss = F.cross_entropy(model(F, tp, xt), yt)
        loss.backward()
        for p in tp:
            p.data -= lr * p.grad.data

    if torch is None:
        return ours, None
    pp = [torch.tensor(a, requires_grad=True) for a in p0]
    xx, yy = torch.tensor(x), torch.tensor(y)

    def theirs():
        for p in pp:
            p.grad = None
        loss = TF.cross_entropy(model(TF, pp, xx), yy)
        loss.backward()
        with torch.no_grad():
            for p in pp:
                p -= lr * p.grad

    return ours, theirs


def conv_case(n, c, o, size, k, stride=1, padding=0, dilation=1, groups=1, nd=2):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c) + (size,) * nd).astype(np.float32)
    w = _init(rng, o, c // groups, *((k,) * nd))
    b = np.zeros(o, np.float32)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    fn_ours = getattr(F, f"conv{nd}d")
    xt, wt, bt = (tg.Tensor(a, requires_grad=True) for a in (x, w, b))
    out_shape = fn_ours(tg.Tensor(x), tg.Tensor(w), **kw).shape
    g = rng.standard_normal(out_shape).astype(np.float32)
    gt = tg.Tensor(g)

    def ours():
        tg.grad(fn_ours(xt, wt, bt, **kw), [xt, wt, bt], [gt])

    flops = 3 * 2 * n * o * (c // groups) * k**nd * int(np.prod(out_shape[2:]))
    if torch is None:
        return ours, None, flops
    fn_t = getattr(TF, f"conv{nd}d")
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tgr = torch.tensor(g)

    def theirs():
        torch.autograd.grad(fn_t(tx, tw, tb, **kw), [tx, tw, tb], tgr)

    return ours, theirs, flops


def pool_case(n, c, size, k, s):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    xt = tg.Tensor(x, requires_grad=True)
    g = tg.Tensor(np.ones(F.max_pool2d(tg.Tensor(x), k, s).shape, np.float32))

    def ours():
        tg.grad(F.max_pool2d(xt, k, s), [xt], [g])

    tx = torch.tensor(x, requires_grad=True)
    tgr = torch.tensor(g.data)

    def theirs():
        torch.autograd.grad(TF.max_pool2d(tx, k, s), [tx], tgr)

    return ours, theirs, None


def _step(model, params_fn, x_shape, n_classes):
    return (*train_step_case(model, params_fn, x_shape, n_classes), None)


class _Functional(tg.nn.Module):
    """A functional model (``model(F, params, x)``) as an nn.Module, its parameters
    registered in ``params_fn``'s order, so that nn.DataParallel can run it."""

    def __init__(self, model, params_fn):
        super().__init__()
        self.model = model
        for i, a in enumerate(params_fn(np.random.default_rng(0))):
            self.register_parameter(f"p{i}", tg.nn.Parameter(a))

    def forward(self, x):
        return self.model(F, list(self.parameters()), x)


def data_parallel_case(model, params_fn, make_module, x_shape, n_classes, lr=0.01):
    """A training step with our model in nn.DataParallel over --threads processes (one
    core each); PyTorch's side is the plain step on --threads intra-op threads."""
    _, theirs = train_step_case(model, params_fn, x_shape, n_classes, lr)
    rng = np.random.default_rng(0)  # the same draws as train_step_case: x, y, weights
    x = rng.standard_normal(x_shape).astype(np.float32)
    y = rng.integers(0, n_classes, x_shape[0])
    net = make_module()
    for p, a in zip(net.parameters(), params_fn(rng), strict=True):  # same order
        p.data[...] = a
    dp = tg.nn.DataParallel(net, workers=args.threads)
    xt, params = tg.Tensor(x), list(net.parameters())

    def ours():
        for p in params:
            p.grad = None
        loss = F.cross_entropy(dp(xt), y)
        loss.backward()
        for p in params:
            p.data -= lr * p.grad.data

    return ours, theirs, None


CASES = {
    "lenet5 train step (batch 128)": lambda: _step(lenet, lenet_params, (128, 1, 28, 28), 10),
    "lenet5 step, ours in DataParallel": lambda: data_parallel_case(
        lenet, lenet_params, LeNet5, (128, 1, 28, 28), 10),
    "96x96 net train step (batch 32)": lambda: _step(net96, net96_params, (32, 3, 96, 96), 8),
    "96x96 net step, ours in DataParallel": lambda: data_parallel_case(
        net96, net96_params, lambda: _Functional(net96, net96_params), (32, 3, 96, 96), 8),
    "conv2d 3x3 32->64 @32x32 (b32)": lambda: conv_case(32, 32, 64, 32, 3, padding=1),
    "conv2d 4x4 s2 3->40 @96x96 (b32)": lambda: conv_case(32, 3, 40, 96, 4, stride=2),
    "conv2d 11x11 16->32 @64x64 (b8)": lambda: conv_case(8, 16, 32, 64, 11, padding=5),
    "depthwise 3x3 64ch @56x56 (b16)": lambda: conv_case(16, 64, 64, 56, 3, padding=1, groups=64),
    "dilated 3x3 d2 32->64 @32x32 (b32)": lambda: conv_case(32, 32, 64, 32, 3, 1, 2, 2),
    "conv3d 3x3x3 8->16 @16^3 (b8)": lambda: conv_case(8, 8, 16, 16, 3, padding=1, nd=3),
    "conv2d 3x3 128->128 @16x16 (b32)": lambda: conv_case(32, 128, 128, 16, 3, padding=1),
    "max_pool2d 3x3 s2 64ch @56x56 (b32)": lambda: pool_case(32, 64, 56, 3, 2),
    "max_pool2d 2x2 s2 64ch @56x56 (b32)": lambda: pool_case(32, 64, 56, 2, 2),
}  # fmt: skip


def _peak_rss_bytes() -> int:
    """This process's peak resident memory. Linux's VmHWM belongs to the process image and
    starts afresh at exec; ``ru_maxrss`` does not (a child started by a large parent
    reports at least the parent's size), so it is only the fallback."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _peak_rss_child(which: str, batch: int) -> None:
    """In a fresh process: peak RSS over the setup and two training steps of one framework,
    above the RSS right after the imports (the setup is the same for both frameworks)."""
    before = _peak_rss_bytes()
    ours, theirs = train_step_case(net96, net96_params, (batch, 3, 96, 96), 8)
    fn = ours if which == "ours" else theirs
    fn()
    fn()
    print(_peak_rss_bytes() - before)


def peak_memory_96(batch: int = 128) -> tuple[float, float | None]:
    """Peak resident memory of one 96x96 training step, each framework measured in its own
    fresh process (same setup in both, so neither sees the other's buffers). The PyTorch
    process leaves glibc's allocator at its defaults (TINYGRAD_NP_MALLOC_TUNE=0)."""
    import subprocess

    def child(which: str) -> float:
        here = str(Path(__file__).parent)
        code = (
            f"import sys; sys.argv = ['conv.py', '--threads', {str(args.threads)!r}]; "
            f"sys.path.insert(0, {here!r}); import conv; conv._peak_rss_child({which!r}, {batch})"
        )
        env = dict(os.environ)
        if which == "torch":
            env["TINYGRAD_NP_MALLOC_TUNE"] = "0"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        return float(out.stdout.strip().splitlines()[-1])

    return child("ours"), (child("torch") if torch is not None else None)


def main() -> None:
    print(f"threads: {args.threads}; NumPy {np.__version__}", end="")
    print(f"; torch {torch.__version__}" if torch else "; torch not installed")
    print(
        "depthwise convs: compiled kernels (numba)"
        if F.has_compiled_kernels()
        else "depthwise convs: NumPy routes (numba missing, or TINYGRAD_NP_COMPILED=0)"
    )
    if not args.memory_only:
        gemm = gemm_gflops()
        print(f"NumPy float32 matmul 1024^3: {gemm:.0f} GFLOP/s\n")
        head = f"{'case':38s} {'ours ms':>9s} {'torch ms':>9s} {'ratio':>6s}"
        head += f" {'GFLOP/s':>8s} {'%GEMM':>6s}"
        print(head)
        print("-" * len(head))
        for name, make in CASES.items():
            if args.only and not any(s in name for s in args.only):
                continue
            ours, theirs, flops = make()
            if theirs:
                t_ours, t_theirs = paired_median_ms(ours, theirs, args.repeat)
            else:
                t_ours, t_theirs = median_ms(ours, args.repeat), float("nan")
            rate = f"{flops / t_ours / 1e6:8.0f}" if flops else " " * 8
            pct = f"{100 * flops / t_ours / 1e6 / gemm:5.0f}%" if flops else ""
            print(f"{name:38s} {t_ours:9.2f} {t_theirs:9.2f} {t_ours / t_theirs:6.2f} {rate} {pct}")
    if args.memory or args.memory_only:
        ours, theirs = peak_memory_96()
        line = "\npeak RSS, 96x96 train step batch 128 (above imports): "
        line += f"ours {ours / 2**20:.0f} MiB"
        if theirs is not None:
            line += f", torch {theirs / 2**20:.0f} MiB, ratio {ours / theirs:.2f}"
        print(line)


if __name__ == "__main__":
    main()
