"""Use every core for a small model: the same LeNet-5 loop, with the batch split over processes.

    python examples/data_parallel.py                # 200 batches each way, Fashion-MNIST
    python examples/data_parallel.py --workers 4    # on a machine with 4 cores
    python examples/data_parallel.py --steps 5 --synthetic   # a smoke run, random images

It trains two copies of LeNet-5 from the same weights on the same batches: one called
directly (conv and pooling loops split over threads), one wrapped in
``nn.DataParallel(model, workers=N)`` (each batch cut into N shards, one per process).
It prints the time per batch of each and checks that the two runs computed the same
training, up to float rounding. On the 2-core machine of docs/performance.md a batch of
64 took 7.0 ms on two threads and 4.8 ms in DataParallel on two processes.
"""

import argparse
import os
import time

import numpy as np

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import nn, optim
from tinygrad_np.data import DataLoader, load_mnist
from tinygrad_np.models import LeNet5

parser = argparse.ArgumentParser(description="LeNet-5 on threads and in nn.DataParallel.")
parser.add_argument("--steps", type=int, default=200, help="batches to train each way")
parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
parser.add_argument("--synthetic", action="store_true", help="random images, no dataset")
args = parser.parse_args()

if args.synthetic:
    rng = np.random.default_rng(0)
    x_train = rng.standard_normal((64 * args.steps, 1, 28, 28)).astype(np.float32)
    y_train = rng.integers(0, 10, len(x_train))
else:
    images, y_train = load_mnist("fashion-mnist", "train")
    x_train = ((images.astype(np.float32) / 255 - 0.286) / 0.353)[:, None]


def train(model, params):
    """Train for --steps batches; returns the losses and the seconds per batch."""
    optimizer = optim.Adam(params, lr=1e-3)
    loader = DataLoader(x_train, y_train, batch_size=64, shuffle=True, seed=0)
    losses, start = [], None
    for step, (xb, yb) in enumerate(loader):
        if step == min(2, args.steps - 1):  # the first batches start the workers and
            start = time.perf_counter()  # warm the allocator up
        loss = F.cross_entropy(model(xb), yb)  # the loop is the same for both models
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step + 1 == args.steps:
            break
    return losses, (time.perf_counter() - start) / max(len(losses) - 2, 1)


tg.manual_seed(0)
plain = LeNet5()
twin = LeNet5()
twin.load_state_dict(plain.state_dict())

losses_plain, t_plain = train(plain, plain.parameters())
parallel = nn.DataParallel(twin, workers=args.workers)  # the one line that changes
losses_parallel, t_parallel = train(parallel, twin.parameters())
parallel.close()  # stop the worker processes

print(f"{tg.get_num_threads()} threads, one process:   {t_plain * 1e3:6.2f} ms per batch")
print(f"DataParallel, {args.workers} processes:   {t_parallel * 1e3:6.2f} ms per batch")
print(f"last loss: {losses_plain[-1]:.4f} (threads), {losses_parallel[-1]:.4f} (DataParallel)")
# the same training: only the order of the gradient's sums differs, so the first steps'
# losses agree to float32 rounding (later the differences grow, as any rounding does)
first = min(5, len(losses_plain))
gap = max(abs(a - b) for a, b in zip(losses_plain[:first], losses_parallel[:first], strict=True))
print(f"largest loss difference over the first {first} steps: {gap:.1e}")
assert gap < 1e-4
