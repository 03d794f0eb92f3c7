"""Wall time of one training epoch of LeNet-5 on Fashion-MNIST: tinygrad_np vs PyTorch.

    python benchmarks/train_epoch.py                  # one full epoch each (60,000 images)
    python benchmarks/train_epoch.py --limit 6400     # a quicker estimate
    python benchmarks/train_epoch.py --threads 1
    python benchmarks/train_epoch.py --workers 1      # ours in one process (threads only)

Both run the same model (tinygrad_np.models.LeNet5 and its PyTorch twin, starting from the
same weights), the same batches in the same order, Adam with lr 1e-3, batch 64, float32, and
the same thread count for NumPy's BLAS and for torch (torch.set_num_threads). Data loading
and the test set are outside the timed loop. The runs alternate (ours, torch, ours, ...) so
that load from other processes hits both alike; the best time of each is compared.
Prints the ratio tinygrad_np / PyTorch (goal: <= 1.2).

Ours runs as ``tinygrad-np train`` does: the model wrapped in ``nn.DataParallel`` over
``--workers`` processes, each on one core (default: one per thread, at most one per 16
images of a batch, as the command line; the loop is otherwise the same). PyTorch keeps
its intra-op threads (``--threads``). ``--workers 1`` runs ours in one process, on
threads.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=1, help="epochs timed per framework")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="ours in nn.DataParallel over N processes (default: as tinygrad-np train)",
    )
    p.add_argument("--data-dir", default=None)
    return p.parse_args()


ARGS = parse_args()
# NumPy's BLAS reads its thread count when it loads: set it before importing numpy.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402

# this checkout's tinygrad_np, not whichever one is installed
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tinygrad_np as tg  # noqa: E402
import tinygrad_np.nn.functional as F  # noqa: E402
from tinygrad_np import nn, optim  # noqa: E402
from tinygrad_np.cli import default_workers, load_split  # noqa: E402
from tinygrad_np.data import DataLoader  # noqa: E402
from tinygrad_np.models import LeNet5  # noqa: E402


def torch_lenet(torch, state: dict[str, np.ndarray]):
    nn = torch.nn
    model = nn.Module()
    model.features = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )
    model.classifier = nn.Sequential(
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)
    )
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})

    def forward(x):
        return model.classifier(model.features(x).flatten(1))

    return model, forward


def epoch_ours(x, y, state, order_seed):
    model = LeNet5()
    model.load_state_dict(state)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    if ARGS.workers > 1:
        model = nn.DataParallel(model, workers=ARGS.workers)
        with tg.no_grad():
            model(x[: ARGS.batch_size])  # start the worker processes before the clock
    loader = DataLoader(x, y, batch_size=ARGS.batch_size, shuffle=True, seed=order_seed)
    start = time.perf_counter()
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    if ARGS.workers > 1:
        model.close()
    return elapsed, float(loss.item())


def epoch_torch(torch, x, y, state, order_seed):
    model, forward = torch_lenet(torch, state)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(x, y, batch_size=ARGS.batch_size, shuffle=True, seed=order_seed)
    start = time.perf_counter()
    for xb, yb in loader:  # the same batches, handed over without a copy
        xt, yt = torch.from_numpy(xb.data), torch.from_numpy(yb.data)
        loss = torch.nn.functional.cross_entropy(forward(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start, float(loss.item())


def main() -> int:
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: pip install 'tinygrad_np[reference]'", file=sys.stderr)
        return 1
    torch.set_num_threads(ARGS.threads)
    if ARGS.workers is None:
        ARGS.workers = default_workers(ARGS.batch_size)
    x, y = load_split("fashion-mnist", "train", ARGS.data_dir, ARGS.limit)
    tg.manual_seed(0)
    state = LeNet5().state_dict()
    n_batches = -(-len(y) // ARGS.batch_size)
    print(
        f"LeNet-5, Fashion-MNIST, {len(y)} images, batch {ARGS.batch_size} ({n_batches} steps), "
        f"Adam, float32, {ARGS.threads} thread(s)"
        + (
            f", ours in DataParallel over {ARGS.workers} processes"
            if ARGS.workers > 1
            else ", ours in one process"
        )
        + f"; torch {torch.__version__}, "
        f"numpy {np.__version__}"
    )
    # one short warm-up each (allocators, BLAS threads), untimed
    epoch_ours(x[:256], y[:256], state, 0)
    epoch_torch(torch, x[:256], y[:256], state, 0)
    ours, theirs = [], []
    for r in range(ARGS.repeats):
        t, loss = epoch_ours(x, y, state, r)
        ours.append(t)
        print(f"  tinygrad_np  epoch {r + 1}: {t:7.2f} s  ({len(y) / t:6.0f} images/s)  "
              f"last loss {loss:.4f}")  # fmt: skip
        t, loss = epoch_torch(torch, x, y, state, r)
        theirs.append(t)
        print(f"  PyTorch      epoch {r + 1}: {t:7.2f} s  ({len(y) / t:6.0f} images/s)  "
              f"last loss {loss:.4f}")  # fmt: skip
    ratio = min(ours) / min(theirs)
    print(f"best epoch: tinygrad_np {min(ours):.2f} s, PyTorch {min(theirs):.2f} s")
    print(f"ratio tinygrad_np / PyTorch: {ratio:.2f} (goal <= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
