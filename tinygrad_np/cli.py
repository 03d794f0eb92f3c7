"""The command line: ``tinygrad-np`` or ``python -m tinygrad_np``.

    tinygrad-np train --dataset fashion-mnist --model lenet --epochs 5 --out runs/lenet
    tinygrad-np eval runs/lenet/checkpoint.npz
    tinygrad-np graph --model lenet -o lenet.svg [--backward]
    tinygrad-np demo

Each subcommand is one ``add_<name>(subparsers)`` function in ``COMMANDS`` that registers its
parser and sets ``func`` (called with the parsed arguments; returns the exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PROG = "tinygrad-np"

# Per-dataset pixel statistics of the training images (of x / 255), used to standardise.
NORMALIZE = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
CHECKPOINT_FORMAT = "tinygrad_np-checkpoint-1"


class CLIError(Exception):
    """An error the command line reports in one line, with exit code 1."""


# --------------------------------------------------------------------------- argument types


def _number(parse, ok, wanted: str):
    """An argparse type: ``parse(text)`` accepted when ``ok(value)``, else a usage error."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    convert.__name__ = wanted  # argparse names the type in its messages
    return convert


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
_nonnegative_float = _number(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")


# --------------------------------------------------------------------------- data and models


def load_split(
    dataset: str, split: str, data_dir: str | None, limit: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Images as standardised float32 (N, 1, 28, 28) and labels int64 (N,)."""
    from tinygrad_np.data import DatasetNotFoundError, load_mnist

    try:
        images, labels = load_mnist(dataset, split, root=data_dir)
    except DatasetNotFoundError:
        raise
    except ValueError as e:  # (a file there that is not MNIST's: named in the message)
        raise CLIError(f"{dataset} {split} split: {e}") from None
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    mean, std = NORMALIZE[dataset]
    x = (images.astype(np.float32) / np.float32(255) - np.float32(mean)) / np.float32(std)
    return x[:, None], labels  # (N, 28, 28) -> (N, 1, 28, 28)


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    from tinygrad_np import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of ``model`` on (x, y), in eval mode, no grad."""
    import tinygrad_np as tg
    from tinygrad_np.data import DataLoader
    from tinygrad_np.nn import functional as F

    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    with tg.no_grad():
        for xb, yb in DataLoader(x, y, batch_size=batch_size):
            logits = model(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum").item())
            correct += int((logits.data.argmax(1) == yb.data).sum())
    model.train(was_training)
    n = max(len(y), 1)
    return loss_sum / n, correct / n


# --------------------------------------------------------------------------- checkpoints
# One .npz written by tinygrad_np.save (atomically, so Ctrl-C during a save keeps the old one):
# {"format", "model": state dict, "optimizer": state dict, "meta": arguments and progress}.


def save_checkpoint(path: Path, model, optimizer, meta: dict[str, Any]) -> Path:
    import tinygrad_np as tg

    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "meta": meta,
    }
    tg.save(checkpoint, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """(meta, model state dict, optimizer state dict) of a checkpoint written by ``train``."""
    import tinygrad_np as tg

    path = Path(path)
    if path.is_dir():
        hint = " (its checkpoint.npz?)" if (path / "checkpoint.npz").is_file() else ""
        raise CLIError(f"checkpoint {path} is a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise CLIError(f"checkpoint {path} does not exist")
    try:
        checkpoint = tg.load(path)
    except (OSError, ValueError) as e:
        raise CLIError(f"{path} is not a tinygrad-np checkpoint ({e})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CLIError(f"{path} was saved by tinygrad_np.save but is not a training checkpoint")
    from tinygrad_np.models import MODELS

    meta = checkpoint.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    args = meta.get("args")
    parts = [checkpoint.get("model"), checkpoint.get("optimizer"), meta.get("progress")]
    if (
        not isinstance(args, dict)
        or args.get("model") not in MODELS
        or args.get("dataset") not in NORMALIZE
        or not all(isinstance(p, dict) for p in parts)
    ):
        raise CLIError(f"{path} is a damaged training checkpoint (its entries are incomplete)")
    return meta, checkpoint["model"], checkpoint["optimizer"]


@contextlib.contextmanager
def _from_checkpoint(path):
    """Errors of a checkpoint whose entries do not fit (a missing key, a wrong shape) as one
    line naming the file."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise CLIError(f"{path} does not fit this version's model or optimizer: {msg}") from None


# --------------------------------------------------------------------------- train


class _Metrics:
    """Appends one JSON object per line to ``metrics.jsonl`` and keeps them for the plot."""

    def __init__(self, path: Path):
        self.path = path
        self.records: list[dict[str, Any]] = []
        if path.exists():
            lines = path.read_text().split("\n")
            # A run killed while writing leaves a last line cut short (no newline): it is
            # dropped, and the file rewritten without it, so appends start on a new line.
            complete, cut = lines[:-1], lines[-1]
            for i, line in enumerate(complete):
                if not line.strip():
                    continue
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise CLIError(f"{path}, line {i + 1}, is damaged: {e}") from None
            if cut.strip():
                with path.open("w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in self.records)

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, epoch: int, step: int) -> None:
        """Forget records past (epoch, step): a resumed run writes them again."""
        # an epoch record sorts after that epoch's steps
        keep = [r for r in self.records if (r["epoch"], r.get("step", math.inf)) <= (epoch, step)]
        if len(keep) != len(self.records):
            self.records = keep
            with self.path.open("w") as f:
                f.writelines(json.dumps(r) + "\n" for r in keep)


def plot_metrics(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Loss and accuracy curves to ``path`` (PNG); None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = [r for r in records if r["type"] == "step"]
    epochs = [r for r in records if r["type"] == "epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        x = [r["global_step"] for r in steps]
        loss = np.array([r["loss"] for r in steps])
        acc = np.array([r["acc"] for r in steps])
        window = max(1, min(50, len(loss) // 10))
        kernel = np.ones(window) / window
        ax_loss.plot(x, loss, alpha=0.3, color="C0", label="train loss (batch)")
        ax_loss.plot(
            x[window - 1 :],
            np.convolve(loss, kernel, "valid"),
            color="C0",
            label=f"train loss ({window}-batch mean)",
        )
        ax_acc.plot(
            x[window - 1 :],
            np.convolve(acc, kernel, "valid"),
            color="C0",
            label=f"train accuracy ({window}-batch mean)",
        )
    if epochs:
        x = [r["global_step"] for r in epochs]
        ax_loss.plot(x, [r["test_loss"] for r in epochs], "o-", color="C1", label="test loss")
        ax_acc.plot(x, [r["test_acc"] for r in epochs], "o-", color="C1", label="test accuracy")
    ax_loss.set(xlabel="step", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class _GracefulInterrupt:
    """While active, the first Ctrl-C only sets ``requested``; the loop stops after the batch
    it is in, so the checkpoint never holds a half-applied optimizer step. A second Ctrl-C
    raises KeyboardInterrupt at once."""

    def __enter__(self) -> _GracefulInterrupt:
        self.requested = False
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C cannot arrive here anyway
            self.previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this batch (again to stop at once)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _default_run_dir(prefix: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{prefix}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{prefix}-{stamp}-{n}"
    return path


TRAIN_DEFAULTS = {
    "dataset": "fashion-mnist",
    "model": "lenet",
    "epochs": 1,
    "batch_size": 64,
    "optimizer": "adam",
    "lr": None,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "constant",
    "seed": 0,
    "limit": None,
    "test_limit": None,
}


def train(args: argparse.Namespace, out: Path | None = None) -> dict[str, Any]:
    """Train as ``tinygrad-np train`` does; returns the last epoch's metrics record.

    Raises ``KeyboardInterrupt`` after saving a checkpoint when interrupted.
    """
    import tinygrad_np as tg
    from tinygrad_np import optim
    from tinygrad_np.data import DataLoader
    from tinygrad_np.models import build_model

    resume = None
    if args.resume is not None:
        resume = load_checkpoint(args.resume)
        saved = resume[0]["args"]
        # the run's identity comes from the checkpoint; --epochs may extend it
        with _from_checkpoint(args.resume):
            for key in ("dataset", "model", "batch_size", "optimizer", "schedule", "seed",
                        "limit"):  # fmt: skip
                setattr(args, key, saved[key])
            if args.epochs is None:
                args.epochs = saved["epochs"]
            given = {k: getattr(args, k, None) for k in ("lr", "momentum", "weight_decay")}
            for key in given:  # (the run's, where not given again: its optimizer state
                if given[key] is None:  # holds them, and config.json records them)
                    setattr(args, key, saved.get(key))
        if getattr(args, "test_limit", None) is None:  # (the test set it was measured on)
            args.test_limit = saved.get("test_limit")
        if getattr(args, "workers", 1) is None:  # as the run began (its last bits depend on it)
            args.workers = saved.get("workers", 1)
    if args.epochs is None:
        args.epochs = TRAIN_DEFAULTS["epochs"]
    for key in ("momentum", "weight_decay"):
        if getattr(args, key, None) is None:
            setattr(args, key, TRAIN_DEFAULTS[key])
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    if resume is not None and out is None and args.out is None:
        out = Path(args.resume).parent
    run_dir = Path(args.out) if args.out is not None else out
    if run_dir is None:
        run_dir = _default_run_dir(f"{args.model}-{args.dataset}")

    x_train, y_train = load_split(args.dataset, "train", args.data_dir, args.limit)
    x_test, y_test = load_split(args.dataset, "test", args.data_dir, args.test_limit)

    tg.manual_seed(args.seed)
    model = build_model(args.model)
    optimizer = make_optimizer(
        args.optimizer, model.parameters(), lr, args.momentum, args.weight_decay
    )
    loader = DataLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    progress = {"epoch": 0, "step": 0, "global_step": 0, "loss_sum": 0.0, "correct": 0, "seen": 0}
    if resume is not None:
        meta, model_state, opt_state = resume
        with _from_checkpoint(args.resume):
            model.load_state_dict(model_state)
            optimizer.load_state_dict(opt_state)
            progress = {k: meta["progress"][k] for k in progress} | meta["progress"]
        hyper = {"momentum": given["momentum"], "weight_decay": given["weight_decay"]}
        if args.schedule == "constant":  # --lr given again overrides the saved one
            hyper["lr"] = given["lr"]
        elif given["lr"] is not None and given["lr"] != saved.get("lr"):
            print("note: --lr is ignored on resuming a cosine schedule (it continues the "
                  f"run's, from {saved.get('lr')})", file=sys.stderr)  # fmt: skip
            lr = args.lr = saved.get("lr")
        for group in optimizer.param_groups:  # (--momentum and --weight-decay given again)
            group.update({k: v for k, v in hyper.items() if v is not None and k in group})
    scheduler = None
    if args.schedule == "cosine":  # per batch, from lr down to 0 at the end of the last epoch
        total = args.epochs * len(loader)
        scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
        if resume is not None and resume[0].get("scheduler"):
            scheduler.load_state_dict(resume[0]["scheduler"])
            if scheduler.T_max != total:  # --epochs changed the plan: from here on the new
                scheduler.T_max = total  # curve down to 0 (the saved one ended, or rose again)
                for group, rate in zip(optimizer.param_groups, scheduler._closed_form_lr(),
                                       strict=True):  # fmt: skip
                    group["lr"] = rate

    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / "checkpoint.npz"
    metrics = _Metrics(run_dir / "metrics.jsonl")
    metrics.truncate_after(progress["epoch"], progress["step"])
    config = {k: getattr(args, k) for k in TRAIN_DEFAULTS} | {"lr": lr, "epochs": args.epochs}
    config["threads"] = tg.get_num_threads()  # the same losses bit for bit need the same count
    workers = getattr(args, "workers", 1)  # train() called without it: one process
    if workers is None:
        workers = default_workers(args.batch_size)
    config["workers"] = workers  # and the same number of processes per batch
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"run folder: {run_dir}", file=sys.stderr)
    if workers > 1:
        print(f"each batch split over {workers} processes (--workers 1: one)", file=sys.stderr)

    def save(progress: dict[str, Any]) -> Path:
        meta = {"args": config, "progress": progress, "normalize": NORMALIZE[args.dataset]}
        meta["scheduler"] = scheduler.state_dict() if scheduler is not None else None
        return save_checkpoint(checkpoint, model, optimizer, meta)

    last: dict[str, Any] | None = {}
    for r in metrics.records:
        if r["type"] == "epoch":
            last = r

    # the batches go through `runner`: the model itself, or nn.DataParallel around it (the
    # checkpoint keeps the model's own state dict either way; leaving the with block stops
    # DataParallel's workers, however training ends)
    runner = tg.nn.DataParallel(model, workers=workers) if workers > 1 else model
    in_use = runner if runner is not model else contextlib.nullcontext()
    with _GracefulInterrupt() as interrupt, in_use:
        while progress["epoch"] < args.epochs:
            last = _train_epoch(
                args, runner, optimizer, scheduler, loader, metrics, progress, interrupt
            )
            if last is None:  # Ctrl-C: save where we are, then stop
                path = save(progress)
                plot_metrics(metrics.records, run_dir / "curves.png")
                print(f"interrupted: checkpoint saved to {path}", file=sys.stderr)
                raise KeyboardInterrupt
            test_loss, test_acc = evaluate(runner, x_test, y_test)
            last |= {"test_loss": test_loss, "test_acc": test_acc}
            metrics.write(last)
            print(
                f"epoch {last['epoch'] + 1}/{args.epochs}: train loss {last['train_loss']:.4f}, "
                f"train accuracy {last['train_acc']:.2%}, test loss {test_loss:.4f}, "
                f"test accuracy {test_acc:.2%} ({len(y_test)} images), "
                f"{last['seconds']:.1f} s, {last['images_per_s']:.0f} images/s"
            )
            progress.update(epoch=progress["epoch"] + 1, step=0, loss_sum=0.0, correct=0, seen=0)
            save(progress)
            if interrupt.requested:
                print(f"interrupted: checkpoint saved to {checkpoint}", file=sys.stderr)
                raise KeyboardInterrupt
    if plot_metrics(metrics.records, run_dir / "curves.png") is None:
        print("note: install matplotlib (pip install 'tinygrad_np[plot]') for curves.png")
    print(f"checkpoint: {checkpoint}")
    last = dict(last, run_dir=str(run_dir), checkpoint=str(checkpoint))
    return last


def _train_epoch(args, model, optimizer, scheduler, loader, metrics, progress, interrupt):
    """One epoch (or its rest, after a resume); updates ``progress`` in place. Returns the
    epoch's metrics record without the test metrics, or None when Ctrl-C stopped it."""
    from tinygrad_np.nn import functional as F

    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but train without it all the same
        tqdm = None
    epoch = progress["epoch"]
    model.train()
    loader.set_epoch(epoch)
    batches = iter(loader)
    for _ in range(progress["step"]):  # a checkpoint from the middle of an epoch
        next(batches)
    bar = None
    if tqdm is not None and not args.quiet:
        bar = tqdm(
            total=len(loader),
            initial=progress["step"],
            desc=f"epoch {epoch + 1}/{args.epochs}",
            unit="batch",
            file=sys.stderr,
            dynamic_ncols=True,
        )
    start, seen_at_start = time.perf_counter(), progress["seen"]
    try:
        for xb, yb in batches:
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()

            loss_value = float(loss.item())
            correct = int((logits.data.argmax(1) == yb.data).sum())
            progress["step"] += 1
            progress["global_step"] += 1
            progress["loss_sum"] += loss_value * len(yb)
            progress["correct"] += correct
            progress["seen"] += len(yb)
            metrics.write(
                {
                    "type": "step",
                    "epoch": epoch,
                    "step": progress["step"],
                    "global_step": progress["global_step"],
                    "loss": loss_value,
                    "acc": correct / len(yb),
                    "lr": lr,
                }
            )
            if bar is not None:
                rate = (progress["seen"] - seen_at_start) / (time.perf_counter() - start)
                bar.set_postfix(
                    loss=f"{progress['loss_sum'] / progress['seen']:.4f}",
                    acc=f"{progress['correct'] / progress['seen']:.2%}",
                    img_s=f"{rate:.0f}",
                    refresh=False,
                )
                bar.update(1)
            if interrupt.requested and progress["step"] < len(loader):
                return None
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    return {
        "type": "epoch",
        "epoch": epoch,
        "global_step": progress["global_step"],
        "train_loss": progress["loss_sum"] / max(progress["seen"], 1),
        "train_acc": progress["correct"] / max(progress["seen"], 1),
        "seconds": seconds,
        "images_per_s": (progress["seen"] - seen_at_start) / max(seconds, 1e-9),
    }


def default_workers(batch_size: int) -> int:
    """Processes per batch when ``--workers`` is not given: one per thread (the threads
    default to the cores), but no more than one per 16 images of a batch (each process
    costs about 1.4 ms a LeNet-5 step however few its images), and one off Linux (where
    forking a process that has loaded a BLAS is tested) or without ``fork``. Measured on
    2 cores: one LeNet-5 epoch at batch 64 in 4.2-4.8 s on two processes, 6.4 s on one
    process with two threads."""
    from tinygrad_np import get_num_threads

    linux = sys.platform.startswith("linux")
    if not linux or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(get_num_threads(), batch_size // 16))


def _add_workers_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="split each batch over N processes, one core each (nn.DataParallel). Default: "
        "one per thread, at most one per 16 images of a batch, on Linux; 1: this process only. "
        "Losses repeat bit for bit for one N",
    )


def _add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="threads for conv, pooling and matrix products (default: $TINYGRAD_NP_NUM_THREADS, "
        "$OMP_NUM_THREADS or the CPU count); losses repeat bit for bit for one thread count",
    )


def _add_train_arguments(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    d = TRAIN_DEFAULTS
    p.add_argument("--data-dir", metavar="DIR", help="folder with the four IDX files")
    p.add_argument(
        "--out", metavar="DIR", help="run folder (default runs/<model>-<dataset>-<date>-<time>)"
    )
    p.add_argument("--seed", type=int, default=d["seed"], help="seed (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_threads_argument(p)
    _add_workers_argument(p)
    if demo:
        return
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default=d["dataset"])
    p.add_argument("--model", choices=["lenet", "mlp"], default=d["model"])
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"epochs in total (default {d['epochs']}, or the resumed run's)",
    )
    p.add_argument("--batch-size", type=_positive_int, default=d["batch_size"])
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=d["optimizer"])
    p.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="learning rate (default: sgd 0.05, adam/adamw 1e-3)",
    )
    p.add_argument(
        "--momentum", type=_nonnegative_float, default=None,
        help=f"sgd only (default {d['momentum']}, or the resumed run's)",
    )  # fmt: skip
    p.add_argument(
        "--weight-decay", type=_nonnegative_float, default=None,
        help=f"(default {d['weight_decay']}, or the resumed run's)",
    )  # fmt: skip
    p.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        default=d["schedule"],
        help="learning rate: constant, or cosine annealing to 0 over all batches",
    )
    p.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue a run from its checkpoint.npz (up to --epochs epochs in total)",
    )
    p.add_argument(
        "--limit", type=_positive_int, metavar="N", help="train on the first N images only"
    )
    p.add_argument(
        "--test-limit", type=_positive_int, metavar="N", help="test on the first N images only"
    )


def run_train(args: argparse.Namespace) -> int:
    if args.resume is not None and not Path(args.resume).is_file():
        args.parser.error(f"--resume: no such file: {args.resume}")
    train(args)
    return 0


def add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on MNIST or Fashion-MNIST",
        description="Train LeNet-5 or an MLP; leaves checkpoint.npz, metrics.jsonl, "
        "config.json and curves.png in the run folder. Ctrl-C saves a checkpoint first.",
    )
    _add_train_arguments(p)
    p.set_defaults(func=run_train, parser=p)


# --------------------------------------------------------------------------- eval


def run_eval(args: argparse.Namespace) -> int:
    import tinygrad_np as tg
    from tinygrad_np.models import build_model

    meta, model_state, _ = load_checkpoint(args.checkpoint)
    saved = meta["args"]
    dataset = args.dataset or saved["dataset"]
    x, y = load_split(dataset, args.split, args.data_dir, args.limit)
    tg.manual_seed(0)
    model = build_model(saved["model"])
    with _from_checkpoint(args.checkpoint):
        model.load_state_dict(model_state)
    loss, acc = evaluate(model, x, y, batch_size=args.batch_size)
    print(
        f"{saved['model']} on {dataset} {args.split} ({len(y)} images): "
        f"loss {loss:.4f}, accuracy {acc:.2%}"
    )
    return 0


def add_eval(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint")
    p.add_argument("checkpoint", help="checkpoint.npz written by train")
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], help="default: as trained")
    p.add_argument("--data-dir", metavar="DIR")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--batch-size", type=_positive_int, default=1000)
    p.add_argument("--limit", type=_positive_int, metavar="N", help="first N images only")
    _add_threads_argument(p)
    p.set_defaults(func=run_eval, parser=p)


# --------------------------------------------------------------------------- graph


def draw_model_graph(model_name: str, out: Path, backward: bool = False) -> Path:
    """Draw ``model_name``'s forward (or backward) graph with ``viz.graph_command``."""
    import tinygrad_np as tg
    from tinygrad_np import viz
    from tinygrad_np.models import build_model

    tg.manual_seed(0)
    model = build_model(model_name)
    try:
        return viz.graph_command(model, out, backward=backward)
    except (OSError, ValueError) as e:  # (a folder that cannot be written; a bad suffix)
        raise CLIError(f"cannot write {out}: {e}") from None
    except ImportError as e:
        raise CLIError(f"{e}; install the Python package: pip install graphviz") from None
    except viz.GraphvizNotFoundError as e:
        raise CLIError(" ".join(str(e).split())) from None


def run_graph(args: argparse.Namespace) -> int:
    path = draw_model_graph(args.model, Path(args.output), backward=args.backward)
    print(path)
    return 0


def add_graph(subparsers) -> None:
    p = subparsers.add_parser("graph", help="draw a model's computation graph")
    p.add_argument("--model", choices=["lenet", "mlp"], default="lenet")
    p.add_argument(
        "-o", "--output", default="graph.svg", help="svg, png or pdf (default %(default)s)"
    )
    p.add_argument("--backward", action="store_true", help="draw the gradients' graph")
    p.set_defaults(func=run_graph, parser=p)


# --------------------------------------------------------------------------- demo

# Measured (docs/training.md): 86.65% test accuracy after this one epoch with seed 0.
DEMO = {
    "dataset": "fashion-mnist",
    "model": "lenet",
    "optimizer": "adam",
    "lr": 2e-3,
    "batch_size": 32,
}


def run_demo(args: argparse.Namespace) -> int:
    settings = TRAIN_DEFAULTS | DEMO | {"epochs": 1, "seed": args.seed, "resume": None}
    settings |= {"data_dir": args.data_dir, "out": args.out, "quiet": args.quiet}
    settings["workers"] = args.workers
    train_args = argparse.Namespace(**settings)
    run_dir = Path(args.out) if args.out else _default_run_dir("demo")
    print(
        f"demo: training LeNet-5 on Fashion-MNIST for one epoch (Adam, lr {DEMO['lr']:g}, "
        f"batch {DEMO['batch_size']})",
        file=sys.stderr,
    )
    result = train(train_args, out=run_dir)
    svg = run_dir / "lenet.svg"
    try:
        draw_model_graph("lenet", svg)
        graph_note = str(svg)
    except CLIError as e:
        graph_note = f"not drawn: {e}"
    print()
    print(f"test accuracy: {result['test_acc']:.2%}")
    print(f"run folder:    {run_dir}")
    print(f"  checkpoint   {result['checkpoint']}")
    print(f"  metrics      {run_dir / 'metrics.jsonl'}")
    curves = run_dir / "curves.png"
    print(f"  curves       {curves if curves.exists() else 'not drawn: matplotlib missing'}")
    print(f"  graph        {graph_note}")
    return 0


def add_demo(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train LeNet-5 on Fashion-MNIST for one epoch and draw its graph",
        description="What `make demo` runs: one epoch of LeNet-5 on Fashion-MNIST; leaves the "
        "checkpoint, metrics, loss curves and graph SVG in one run folder.",
    )
    _add_train_arguments(p, demo=True)
    p.set_defaults(func=run_demo, parser=p)


# --------------------------------------------------------------------------- check, explain

_BACKWARD_NAMES = {"dy", "g", "grad", "grad_output", "dout", "gy"}


def run_check(args: argparse.Namespace) -> int:
    import inspect

    from tinygrad_np import check

    def load(spec):
        try:
            return check.load_function(spec)
        except Exception as e:  # (also a SyntaxError, or any error of the module's import)
            raise CLIError(f"cannot load {spec!r}: {type(e).__name__}: {e}") from None

    fwd = None if args.forward is None else load(args.forward)
    bwd = None if args.backward is None else load(args.backward)
    for spec in args.functions:
        fn = load(spec)
        params = set(inspect.signature(fn).parameters)
        which = "backward" if params & _BACKWARD_NAMES else "forward"
        if (bwd if which == "backward" else fwd) is not None:
            raise CLIError(f"{spec!r} is a second {which} (a backward is one with a dy argument)")
        if which == "backward":
            bwd = fn
        else:
            fwd = fn
    if fwd is None and bwd is None:
        raise CLIError("give at least one function as module:function (or --forward/--backward)")
    ndim = tuple(args.ndim) if args.ndim else None
    try:
        if args.op == "conv":
            report = check.conv(fwd, bwd, ndim=ndim, seed=args.seed)
        else:
            kind = args.op.split("_")[0]
            report = check.pool(fwd, bwd, kind=kind, ndim=ndim, seed=args.seed)
    except (TypeError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(report)
    return 0 if report.ok else 1


def add_check(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="check your own NumPy conv or pooling forward/backward against the framework",
        description="Runs tinygrad_np.check over the sweep of configurations and prints the "
        "report; exit code 1 when something fails. A function with a parameter named dy "
        "(or g, grad, grad_output, dout, gy) is taken as the backward, any other as the "
        "forward.",
    )
    p.add_argument("functions", nargs="*", metavar="MODULE:FUNCTION",
                   help="e.g. my_conv:backward or path/to/my_conv.py:backward")  # fmt: skip
    p.add_argument("--forward", help="the forward, as MODULE:FUNCTION")
    p.add_argument("--backward", help="the backward, as MODULE:FUNCTION")
    p.add_argument("--op", choices=["conv", "max_pool", "avg_pool"], default="conv")
    p.add_argument("--ndim", type=int, nargs="+", choices=[1, 2, 3],
                   help="spatial dims to check (default: those your code supports)")  # fmt: skip
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.set_defaults(func=run_check, parser=p)


def _ints(text: str) -> tuple[int, ...] | int:
    """'2' -> 2, '2,1' or '2x1' -> (2, 1)."""
    parts = [t for t in text.replace("x", ",").split(",") if t]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected ints like 2 or 2,1, got {text!r}")
    try:
        vals = tuple(int(t) for t in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ints like 2 or 2,1, got {text!r}") from None
    return vals[0] if len(vals) == 1 else vals


def _padding(text: str):
    """'1', '1,2', 'same', 'valid', or pairs '0:1,2:2' (before:after per dim)."""
    if text.lower() in ("same", "valid"):
        return text.lower()
    if ":" in text:
        try:
            return tuple(tuple(int(v) for v in pr.split(":")) for pr in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad padding pairs {text!r}") from None
    return _ints(text)


# explain's options that not every op takes (their defaults), and which op takes which
_EXPLAIN_OPTIONS = {"weight": None, "kernel_size": None, "dilation": 1, "groups": 1,
                    "output_padding": 0, "ceil_mode": False, "dtype": "float32"}  # fmt: skip
_EXPLAIN_OPTIONS_OF = {
    "conv": {"weight", "dilation", "groups", "dtype"},
    "conv_transpose": {"weight", "dilation", "groups", "output_padding"},
    "max_pool": {"kernel_size", "dilation", "ceil_mode"},
    "avg_pool": {"kernel_size", "ceil_mode"},
}


def run_explain(args: argparse.Namespace) -> int:
    from tinygrad_np import explain

    op = args.op
    kind = op[:-2]  # conv, conv_transpose, max_pool or avg_pool
    extra = [name for name in _EXPLAIN_OPTIONS if name not in _EXPLAIN_OPTIONS_OF[kind] and (
        getattr(args, name) not in (None, False))]  # fmt: skip
    if extra:  # (not silently dropped: the explanation would be of another call)
        raise CLIError(f"{op} takes no " + ", ".join("--" + n.replace("_", "-") for n in extra))
    for name, default in _EXPLAIN_OPTIONS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    kw: dict[str, Any] = {"stride": args.stride, "quiet": True}
    try:
        if op.startswith("conv"):
            if args.weight is None:
                raise CLIError(f"{op} needs --weight, e.g. --weight 40x3x4x4")
            stride = 1 if args.stride is None else args.stride  # (0 is refused there)
            padding = 0 if args.padding is None else args.padding
            kw |= {"dilation": args.dilation, "groups": args.groups, "stride": stride}
            if op.startswith("conv_transpose"):
                kw |= {"padding": padding, "output_padding": args.output_padding}
            else:
                kw |= {"padding": padding, "dtype": args.dtype}
            e = getattr(explain, op)(args.input, args.weight, **kw)
        else:
            if args.kernel_size is None:
                raise CLIError(f"{op} needs --kernel-size")
            kw |= {"padding": 0 if args.padding is None else args.padding,
                   "ceil_mode": args.ceil_mode}  # fmt: skip
            if op.startswith("max"):
                kw["dilation"] = args.dilation
            if args.stride is None:
                kw["stride"] = None
            e = getattr(explain, op)(args.input, args.kernel_size, **kw)
    except (TypeError, ValueError) as err:
        raise CLIError(str(err)) from None
    print(e)
    return 0


def add_explain(subparsers) -> None:
    ops = [
        f"{k}{d}d" for k in ("conv", "conv_transpose", "max_pool", "avg_pool") for d in (1, 2, 3)
    ]
    p = subparsers.add_parser(
        "explain",
        help="explain the arithmetic of a conv or pooling call (sizes, padding, VJP, memory)",
        description="e.g. tinygrad-np explain conv2d --input 128x3x96x96 --weight 40x3x4x4 "
        "--stride 2",
    )
    p.add_argument("op", choices=ops)
    p.add_argument("--input", required=True, help="input shape, e.g. 128x3x96x96")
    p.add_argument("--weight", help="weight shape (conv), e.g. 40x3x4x4")
    p.add_argument("--kernel-size", type=_ints, help="pooling window, e.g. 2 or 3,2")
    p.add_argument("--stride", type=_ints, default=None)
    p.add_argument("--padding", type=_padding, default=None,
                   help="2, 2,1, same, valid, or before:after pairs like 0:1,1:1")  # fmt: skip
    p.add_argument("--dilation", type=_ints, default=None, help="default 1 (not avg pools)")
    p.add_argument("--groups", type=_positive_int, default=None, help="default 1 (convs)")
    p.add_argument("--output-padding", type=_ints, default=None,
                   help="default 0 (transposed convs)")  # fmt: skip
    p.add_argument("--ceil-mode", action="store_true", help="pools")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="default float32 (convs: the algorithm's choice)")  # fmt: skip
    p.set_defaults(func=run_explain, parser=p)


# --------------------------------------------------------------------------- main

COMMANDS: list[Callable[[Any], None]] = [
    add_train,
    add_eval,
    add_graph,
    add_demo,
    add_check,
    add_explain,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train, evaluate and draw tinygrad_np models."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for usage errors, 1 for other errors)."""
    from tinygrad_np.data import DatasetNotFoundError

    for name in ("stdout", "stderr"):  # closed (2>&-): Python sets None; print to nowhere
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # (kept open for the process)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        from tinygrad_np import set_num_threads

        set_num_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # (the output piped into `head`, which has stopped reading)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (no second error when Python flushes)
        return 141
    except DatasetNotFoundError as e:
        places = ", ".join(str(p) for p in e.searched)
        reason = e.reason.splitlines()
        if len(reason) > 1:  # "could not download X:" and one line per URL: keep the first
            reason = [reason[0], reason[1].strip(), "..." if len(reason) > 2 else ""]
        print(
            f"{PROG}: error: {e.name} not found (looked in {places}; "
            f"{' '.join(reason).strip()}). To get it: {e.hint}",
            file=sys.stderr,
        )
        return 1
    except CLIError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # (an output folder that cannot be made or written, a full disk)
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
