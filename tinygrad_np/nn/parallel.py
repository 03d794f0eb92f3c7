"""``DataParallel``: one training step's batch split over worker processes.

Why processes. The conv, pooling and product loops already run on several threads
inside one op, but a small network such as LeNet-5 is made of many short NumPy calls
with Python in between: there the threads wait on each other and on the GIL, and a
batch-128 step took 11.0 ms on one thread and 12.0 ms on two (2-core VM). Two
processes that each run half of the batch do not share a GIL: two LeNet-5 steps on
batch 64 ran at once in 6.15 ms each, as fast as one alone (6.29 ms).

How. ``DataParallel(module, workers=2)`` forks ``workers - 1`` copies of this process
the first time it is called. Each call then cuts the batch into ``workers`` contiguous
shards; this process runs the first shard through ``module`` itself while each worker
runs one of the others through its copy, after taking the current parameters and
buffers from a shared memory block (so optimizer steps reach the workers). The outputs
are joined into one Tensor in batch order. Its backward sends each worker its part of
the upstream gradient, runs this process's part meanwhile, and adds the workers'
parameter gradients (from a second shared block per worker, each written and announced
as soon as the worker's backward is done with it, so that the last layers' are added
while the worker computes the first layers') to this process's: every parameter ends
with the gradient of the whole batch, summed in a fixed order (the same bits for the
same ``workers``; possibly different last bits from the unsplit module). As for the
unsplit module, a parameter's hooks run once, on that sum, and a parameter no shard
used gets no gradient.

As ``torch.nn.DataParallel``: the wrapped module is ``.module`` and the state dict's
keys start with ``module.``; a layer that looks at the whole batch (``BatchNorm``)
sees one shard's statistics, and buffer updates made in the workers are lost (this
process's shard updates its buffers). Dropout draws from a different seeded stream in
each worker. The workers keep the graph of the latest call only, so an output's
backward must come before the next call (a later one raises), and it runs once (a second
one raises, even after ``retain_graph=True``). Double backward (``create_graph=True``) is
not supported through it. The module's output must keep the batch axis first. Workers
need ``fork`` (POSIX; tested on Linux); where there is none, or with ``workers=1``, the
module runs whole in this process.

>>> import tinygrad_np as tg
>>> from tinygrad_np import nn
>>> tg.manual_seed(0)
>>> net = nn.Sequential(nn.Linear(4, 3))
>>> dp = nn.DataParallel(net, workers=2)
>>> x = tg.randn(6, 4)
>>> y = dp(x)
>>> bool(abs(y.data - net(x).data).max() < 1e-6)
True
>>> y.sum().backward()
>>> net[0].weight.grad.shape
(3, 4)
>>> dp.close()
"""

from __future__ import annotations

import functools
import mmap
import multiprocessing as mp
import os
import pickle
import signal
import threading
import time
import traceback
import weakref

import numpy as np

from tinygrad_np import _parallel as par
from tinygrad_np import autograd
from tinygrad_np.autograd import Op
from tinygrad_np.nn.module import Module
from tinygrad_np.tensor import Tensor, generator, manual_seed

__all__ = ["DataParallel"]


class _Block:
    """Arrays of fixed shapes and dtypes laid out in one anonymous shared memory map
    (a forked child sees the same pages)."""

    def __init__(self, layout: list[tuple[tuple, np.dtype]]):
        offsets, size = [], 0
        for shape, dtype in layout:
            size = -(-size // 64) * 64  # each array on its own cache line
            offsets.append(size)
            size += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self.map = mmap.mmap(-1, max(size, 1))
        self.arrays = [
            np.ndarray(shape, dtype, buffer=self.map, offset=off)
            for (shape, dtype), off in zip(layout, offsets, strict=True)
        ]


_WALKS = ("parameters", "named_parameters", "buffers", "named_buffers", "modules",
          "named_modules", "_named_members")  # fmt: skip


@functools.cache
def _plain(cls: type) -> bool:
    """Whether ``cls`` lists its members as Module does (no override of the walks)."""
    return all(getattr(cls, name) is getattr(Module, name) for name in _WALKS)


def _members(module: Module) -> tuple[list, list, list]:
    """``module.modules()``, ``.parameters()`` and ``.buffers()`` in their order, from one
    walk of the tree without the names (three named walks took about 50 µs of every
    LeNet-5 call); the three walks themselves where a module overrides one."""
    modules, seen = [], set()
    stack = [module]
    while stack:  # depth first, children in order: the order of named_modules
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        modules.append(m)
        stack.extend(c for c in reversed(m._modules.values()) if c is not None)
    if not all(_plain(type(m)) for m in modules):
        return list(module.modules()), list(module.parameters()), list(module.buffers())
    found = ([], [])
    for out, registry in zip(found, ("_parameters", "_buffers"), strict=True):
        seen = set()
        for m in modules:
            for t in m.__dict__[registry].values():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    out.append(t)
    return modules, found[0], found[1]


def _layout(tensors) -> list[tuple[tuple, np.dtype]]:
    return [(tuple(t.shape), t.data.dtype) for t in tensors]


# how long a process polls for the other side's message before it blocks: a process
# woken from a blocking wait started 0.1 ms late on the 2-core VM, and a worker waits
# about 0.3-0.5 ms between the two messages of a LeNet-5 step. Polling only delays
# another process when there are more busy processes than cores.
SPIN_SECONDS = 2e-3
# while blocked, how often a process checks that the other side is still alive
ALIVE_CHECK_SECONDS = 0.05
MAILBOX_BYTES = 1 << 20
_HEADER = 64  # two message sizes and the stop flag, then the two mailboxes
PARENT, WORKER = 0, 1


class _Channel:
    """Messages both ways between this process (side ``PARENT``) and one worker (side
    ``WORKER``), one at a time each way.

    A message up to ``MAILBOX_BYTES`` pickled is written to the sender's mailbox, a
    shared memory block, and announced by one release of the sender's semaphore, which
    the receiver polls. On the 2-core VM the receiver then sees it 1-2 µs after it is
    posted when both sides are warm, and a whole hand-off in a LeNet-5 training step
    (pickling and unpickling after NumPy work has evicted that code) takes 40-50 µs,
    where a pipe took 40-90 µs (a system call and a wake-up each way), four times a
    step. Larger messages go through the pipe.
    """

    def __init__(self, ctx):
        self.ends = ctx.Pipe()  # (this process's end, the worker's end)
        self.sems = (ctx.Semaphore(0), ctx.Semaphore(0))  # released by: parent, worker
        # released by the worker once per parameter gradient it has written to its block
        # during a backward, and once more at the end of it (see _backward)
        self.published = ctx.Semaphore(0)
        self.map = mmap.mmap(-1, _HEADER + 2 * MAILBOX_BYTES)
        # sizes[side]: bytes in that side's mailbox (-1: the message is in the pipe);
        # sizes[2]: set to 1 by close()
        self.sizes = np.ndarray((3,), np.int64, buffer=self.map)

    def _box(self, side: int) -> slice:
        start = _HEADER + side * MAILBOX_BYTES
        return slice(start, start + MAILBOX_BYTES)

    def send(self, side: int, message) -> None:
        """Send ``message`` from ``side`` (raises OSError when a pipe message finds the
        other side gone)."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        box = self._box(side)
        if len(data) <= MAILBOX_BYTES:
            self.map[box.start : box.start + len(data)] = data
            self.sizes[side] = len(data)
            self.sems[side].release()  # (a release or acquire is a memory barrier)
        else:  # announced first: a large write blocks until the other side reads
            self.sizes[side] = -1
            self.sems[side].release()
            self.ends[side].send_bytes(data)

    def recv(self, side: int, alive):
        """The other side's next message, received on ``side``: polled for up to
        ``SPIN_SECONDS``, then waited for, checking ``alive()`` now and then (EOFError
        when it says the other side is gone). ``("close",)`` once ``stop()`` was called."""
        other = 1 - side
        _acquire(self.sems[other], alive)
        if self.sizes[2]:
            return ("close",)
        n = int(self.sizes[other])
        if n < 0:
            return pickle.loads(self.ends[side].recv_bytes())
        box = self._box(other)
        return pickle.loads(self.map[box.start : box.start + n])

    def stop(self) -> None:
        """Tell the worker to stop (without touching the mailbox, which it may still be
        reading after an interrupted call)."""
        self.sizes[2] = 1
        self.sems[PARENT].release()

    def close(self) -> None:  # (the shared block goes with the last reference to it)
        for end in self.ends:
            end.close()


def _acquire(sem, alive) -> None:
    """Take one release of ``sem``: polled for up to ``SPIN_SECONDS``, then waited for,
    checking ``alive()`` now and then (EOFError when it says the other side is gone)."""
    if not sem.acquire(False):
        end = time.perf_counter() + SPIN_SECONDS
        while not sem.acquire(False):
            if time.perf_counter() > end:
                while not sem.acquire(timeout=ALIVE_CHECK_SECONDS):
                    if not alive():
                        raise EOFError("the other side of the channel is gone")
                break


def _receive(channel: _Channel, side: int, alive):
    """``channel.recv(side, alive)`` (a separate function, so that tests can interrupt
    the wait)."""
    return channel.recv(side, alive)


def _worker_main(
    channel: _Channel, module: Module, state: _Block, grads: _Block, inbox: mmap.mmap, seed: int
):
    """A worker's loop: run forward and backward passes of one shard on request."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    par.set_num_threads(1)  # one core per process
    manual_seed(seed)
    parent = os.getppid()

    def alive() -> bool:  # once the parent is gone, this process is someone else's child
        return os.getppid() == parent

    def send(message) -> None:
        channel.send(WORKER, message)

    modules, params, buffers = _members(module)
    # this copy's parameters compute straight from the shared block, which the parent
    # refreshes before each forward request: no copy here (nobody else holds these arrays)
    for p, a in zip(params, state.arrays[: len(params)], strict=True):
        p.data = a
    x = out = None
    while True:
        try:
            msg = _receive(channel, WORKER, alive)
        except (EOFError, OSError):  # the parent is gone
            return
        kind = msg[0]
        if kind == "close":
            return
        try:
            if kind == "forward":
                _, xs, record, x_grad, needs, modes = msg
                if isinstance(xs, tuple):  # (shape, dtype): the shard is in the inbox block,
                    # which the parent writes again only after this step's backward answer
                    xs = np.ndarray(xs[0], np.dtype(xs[1]), buffer=inbox)
                x = out = None
                # parameters: the shared arrays themselves (set above); buffers: private
                # copies, since a layer may update them in place (BatchNorm's running stats)
                for t, a in zip(buffers, state.arrays[len(params) :], strict=True):
                    np.copyto(t.data, a)
                for p, r in zip(params, needs, strict=True):
                    p.requires_grad = r
                for m, training in zip(modules, modes, strict=True):
                    m.training = training
                with autograd.enable_grad() if record else autograd.no_grad():
                    x = Tensor(xs, requires_grad=x_grad)
                    out = module(x)
                _check_output(out)
                send(("ok", out.data))
            elif kind == "backward":
                gx = _backward(channel, out, x, params, grads, msg[1])
                x = out = None
                send(("ok", gx))
        except BaseException:  # noqa: BLE001 - every failure goes back to the parent
            x = out = None
            send(("error", traceback.format_exc()))


def _backward(channel: _Channel, out, x, params: list, grads: _Block, g: np.ndarray):
    """A worker's backward of its shard: each parameter gradient is written to the
    ``grads`` block as soon as it is final (the last layers' first), its index appended
    to the block's order array and announced on ``channel.published``, so that the
    parent can add it to its own while this process computes the first layers'; -2 - j
    announces that parameter j got no gradient in this shard (unused), -1 ends the list
    (also when this fails). Returns the shard's input gradient (or None)."""
    order, done = grads.arrays[-1], []

    def publish(j: int, used: bool = True) -> None:
        order[len(done)] = j if used else -2 - j
        done.append(j)
        channel.published.release()  # (a memory barrier: the parent sees the array)

    index = {id(p): j for j, p in enumerate(params) if p.requires_grad}

    def on_leaf(t, gt) -> None:
        j = index.get(id(t))
        if j is not None:
            np.copyto(grads.arrays[j], gt.data)
            publish(j)

    try:
        if out is None or out.grad_fn is None:
            raise RuntimeError(
                "backward through DataParallel twice, or after a forward that "
                "recorded nothing: the worker holds no graph"
            )
        targets = ([x] if x.requires_grad else []) + [p for p in params if p.requires_grad]
        # (the parameters' hooks run once, on the whole batch's gradient, in the caller's
        # backward: not here)
        got = autograd.grad(
            out, targets, Tensor(g), allow_unused=True, _on_leaf=on_leaf, _leaf_hooks=False
        )
        gx = got[0].data if x.requires_grad and got[0] is not None else None
        published = set(done)
        for t, gt in zip(targets[1:] if x.requires_grad else targets,
                         got[1:] if x.requires_grad else got, strict=True):  # fmt: skip
            j = index[id(t)]
            if j not in published:  # unused, or finished only at the end
                if gt is not None:
                    np.copyto(grads.arrays[j], gt.data)
                publish(j, gt is not None)
        return gx
    finally:
        order[len(done)] = -1
        channel.published.release()


def _check_output(out) -> None:
    if not isinstance(out, Tensor) or out.ndim == 0:
        raise TypeError(
            "DataParallel: the module must return one Tensor with the batch as its first "
            f"axis, got {type(out).__name__}"
        )


class _Workers:
    """The forked worker processes of one DataParallel and their shared blocks."""

    def __init__(self, module: Module, n: int, inbox_bytes: int):
        ctx = mp.get_context("fork")
        _, params, buffers = _members(module)
        self.layout = _layout(params + buffers)
        self.state = _Block(self.layout)
        n_params = len(params)
        for t, a in zip(params + buffers, self.state.arrays, strict=True):
            np.copyto(a, t.data)
        par.stop_pool()  # fork from a process whose only thread is this one
        seeds = generator().integers(0, 2**63 - 1, size=n)
        self.channels, self.procs, self.grads, self.inboxes = [], [], [], []
        self.broken = False  # a worker died or an answer went unread: restart at next call
        self.calls = 0  # forward requests sent so far
        self.stop = None  # the finalizer that closes this pool (set by DataParallel)
        self.pid = os.getpid()  # the process whose children the workers are
        for i in range(n):
            # parameter gradients, then the order they were written in (_backward)
            grads = _Block(self.layout[:n_params] + [((n_params + 1,), np.dtype(np.int64))])
            inbox = mmap.mmap(-1, max(inbox_bytes, 1))  # this worker's shard of each call
            channel = _Channel(ctx)
            proc = ctx.Process(
                target=_worker_main,
                args=(channel, module, self.state, grads, inbox, int(seeds[i])),
                name=f"tinygrad_np-DataParallel-{i + 1}",
                daemon=True,
            )
            proc.start()
            channel.ends[WORKER].close()
            self.channels.append(channel)
            self.procs.append(proc)
            self.grads.append(grads)
            self.inboxes.append(inbox)

    def recv(self, i: int):
        try:
            status, value = _receive(self.channels[i], PARENT, self._alive(i))
        except (EOFError, OSError):
            self.broken = True
            code = self.procs[i].exitcode
            raise RuntimeError(
                f"DataParallel: worker {i + 1} died (exit code {code}) before answering"
            ) from None
        except BaseException:  # Ctrl-C while waiting: the answer would come out of turn
            self.broken = True
            raise
        if status == "error":
            raise RuntimeError(f"DataParallel: worker {i + 1} failed:\n{value}")
        return value

    def _alive(self, i: int):
        proc = self.procs[i]
        return lambda: proc.exitcode is None

    def send(self, i: int, message: tuple) -> None:
        try:
            self.channels[i].send(PARENT, message)
        except OSError:  # the pipe is broken: the worker is gone
            self.broken = True
            code = self.procs[i].exitcode
            raise RuntimeError(f"DataParallel: worker {i + 1} died (exit code {code})") from None
        except BaseException:  # Ctrl-C during a large message: the worker has half of it
            self.broken = True
            raise

    def send_shard(self, i: int, shard: np.ndarray, *rest) -> None:
        """Send worker i a forward request; the shard goes through its inbox block when it
        fits (a pipe moves 64 KiB at a time, each a hand-off between the processes)."""
        inbox = self.inboxes[i]
        if shard.nbytes <= len(inbox):
            np.copyto(np.ndarray(shard.shape, shard.dtype, buffer=inbox), shard)
            self.send(i, ("forward", (shard.shape, shard.dtype.str), *rest))
        else:
            self.send(i, ("forward", shard, *rest))

    def published(self, i: int):
        """``(j, used)`` for each parameter gradient worker i writes to its block during a
        backward, as it writes them, until it is done (``used``: False when parameter j
        got no gradient in its shard, and nothing was written; see ``_backward``)."""
        order, sem, alive = self.grads[i].arrays[-1], self.channels[i].published, self._alive(i)
        for k in range(len(order)):
            try:
                _acquire(sem, alive)
            except EOFError:
                self.broken = True
                code = self.procs[i].exitcode
                raise RuntimeError(
                    f"DataParallel: worker {i + 1} died (exit code {code}) during backward"
                ) from None
            except BaseException:  # Ctrl-C while waiting
                self.broken = True
                raise
            j = int(order[k])
            if j == -1:
                return
            yield (j, True) if j >= 0 else (-2 - j, False)
        self.broken = True  # (cannot happen: each parameter is written once)
        raise RuntimeError(f"DataParallel: worker {i + 1} wrote more gradients than parameters")

    def answers(self, n: int) -> list:
        """The answers of workers 1..n, all read before the first error among them is
        raised (so that no answer is left to be taken for a later one)."""
        values, error = [], None
        for i in range(n):
            try:
                values.append(self.recv(i))
            except RuntimeError as e:
                values.append(None)
                error = error or e
        if error is not None:
            raise error
        return values

    def drain(self, n: int, backward: bool = False) -> None:
        """Read and drop the answers of workers 1..n (after this process failed), and in
        a backward what they announced of their gradients first."""
        for i in range(n):
            try:
                if backward:
                    for _ in self.published(i):
                        pass
                self.recv(i)
            except RuntimeError:
                pass

    def close(self) -> None:
        if os.getpid() != self.pid:  # a forked copy of the owner: the workers are not ours
            self.channels, self.procs = [], []
            return
        for channel in self.channels:
            channel.stop()
        for proc in self.procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)
        for channel in self.channels:
            channel.close()
        self.channels, self.procs = [], []


def _add_workers_gradients(workers: _Workers, n: int, params, got: dict, sole: set) -> dict:
    """{j: parameter j's gradient over the whole batch}: this process's own (``got``, by
    id of the parameter) plus workers 1..n's, each taken as the worker writes it (the last
    layers' while it still computes the first layers'), added in a fixed order: this
    process's, then worker 1's, worker 2's, ... None where no shard used the parameter, as
    the unsplit module's backward gives. Into this process's own array in place where
    nothing else holds it (``sole``; an add in place took 0.24 against 0.36 ms for the
    96x96 network's 945x945 weight)."""
    totals: dict[int, np.ndarray | None] = {}
    made: set[int] = set()  # arrays made here or held by nobody else: added into in place
    try:
        for w in range(n):
            theirs = workers.grads[w].arrays
            for j, used in workers.published(w):
                if w == 0:
                    mine = got[id(params[j])]
                    totals[j] = None if mine is None else mine.data
                    if id(params[j]) in sole:
                        made.add(j)
                if not used or j not in totals:  # (not there only if worker 1 failed:
                    continue  # raised by the caller's answers())
                if totals[j] is None:
                    totals[j] = theirs[j].copy()
                elif j in made:
                    totals[j] += theirs[j]
                else:
                    totals[j] = np.add(totals[j], theirs[j])
                made.add(j)
    except BaseException:  # (Ctrl-C, no memory) announcements left unread: start anew
        workers.broken = True
        raise
    return totals


class _Gather(Op):
    """y = the shards' outputs joined along the batch axis: this process's (``local``,
    a Tensor with its own graph) then each worker's (``parts``).

    Inputs: x and the module's parameters (``mine``: this process's rows of x, the leaf
    ``local`` was computed from). VJP: each worker gets its rows of g and
    returns its parameter gradients (and its rows of gx); this process's rows go through
    ``local``'s graph meanwhile; the gradients are added, this process's first.
    """

    saves_inputs = False

    def forward(self, x, *params, local, mine, parts, pool, call, _lock):
        self.name = "DataParallel"
        return np.concatenate([local.data, *parts], axis=0)

    def vjp(self, g):
        with self.args["_lock"]:  # (as the forward: one exchange with the workers at a time)
            return self._vjp(g)

    def _vjp(self, g):
        if autograd.is_grad_enabled():
            raise NotImplementedError(
                "DataParallel: create_graph=True (double backward) is not supported; "
                "call the wrapped module (.module) directly for higher derivatives"
            )
        a = self.args
        local, parts, workers = a["local"], a["parts"], a["pool"]
        if self.__dict__.get("_done"):
            raise RuntimeError(
                "DataParallel: a second backward through the same output is not supported "
                "(the shards' graphs are freed by the first, retain_graph or not); call the "
                "wrapped module (.module) directly to backward twice"
            )
        self._done = True
        if workers.calls != a["call"] or workers.stop is None or not workers.stop.alive:
            # the workers hold the graph of their latest forward only
            raise RuntimeError(
                "DataParallel: this output's backward came after another call of the same "
                "DataParallel (or after close()); its workers keep only the latest call's "
                "graph: run backward before the next call"
            )
        gd = g.data
        rows = [len(local.data)] + [len(p) for p in parts]
        starts = np.cumsum([0] + rows)
        for i in range(len(parts)):
            workers.send(i, ("backward", gd[starts[i + 1] : starts[i + 2]]))
        x, params = self.inputs[0], self.inputs[1:]
        need = self.needs_grad
        targets = [t for t, r in zip((a["mine"], *params), need, strict=True) if r]
        sole: set[int] = set()  # this process's gradients that the sums may add into
        try:
            with par.single_threaded():
                got = autograd.grad(  # (parameter hooks: in the caller's backward only)
                    local, targets, Tensor(gd[: rows[0]]), allow_unused=True,
                    _leaf_hooks=False, _sole=sole,
                )  # fmt: skip
        except BaseException:
            workers.drain(len(parts), backward=True)
            raise
        got = dict(zip([id(t) for t in targets], got, strict=True))
        totals = _add_workers_gradients(workers, len(parts), params, got, sole)
        gxs = workers.answers(len(parts))
        out = []
        if need[0]:
            mine = got[id(a["mine"])]
            first = mine.data if mine is not None else np.zeros((rows[0],) + x.shape[1:], gd.dtype)
            gx = np.concatenate([first, *gxs], axis=0).astype(x.dtype, copy=False)
            out.append(Tensor._make(gx, False, None))  # (arrays made here: wrapped, not copied)
        else:
            out.append(None)
        for j, r in enumerate(need[1:]):
            total = totals[j] if r else None
            # (an array made here is wrapped, not copied; the engine copies this process's
            # own gradient where someone else may hold it)
            out.append(None if total is None else Tensor._make(total, False, None))
        return tuple(out)


class DataParallel(Module):
    """Run ``module`` on the batch split over ``workers`` processes (this one included);
    see the module docstring. ``workers`` defaults to ``tinygrad_np.get_num_threads()``.

    Use it like the module it wraps; call ``close()``, leave its ``with`` block, or let
    the program end to stop the worker processes. If parameters are added or change shape
    or dtype while workers run, the next call notices and restarts them.
    """

    def __init__(self, module: Module, workers: int | None = None):
        super().__init__()
        if not isinstance(module, Module):
            got = type(module).__name__
            raise TypeError(f"DataParallel: module must be an nn.Module, got {got}")
        if workers is None:
            workers = par.get_num_threads()
        if (
            isinstance(workers, (bool, np.bool_))
            or not isinstance(workers, (int, np.integer))
            or workers < 1
        ):
            raise ValueError(f"DataParallel: workers must be a positive int, got {workers!r}")
        self.module = module
        self.workers = int(workers)
        object.__setattr__(self, "_workers", None)
        # held while this process talks to the workers (a forward, a backward): calls from
        # two threads take turns instead of reading each other's answers
        object.__setattr__(self, "_lock", threading.RLock())

    def extra_repr(self) -> str:
        return f"workers={self.workers}"

    def _pool(self, n: int, inbox_bytes: int, tensors: list) -> _Workers | None:
        """Workers for n shards, started anew when broken, too few or out of date with the
        module's parameters and buffers (``tensors``); None without ``fork``."""
        pool = self._workers
        if pool is not None and (
            pool.broken
            or len(pool.procs) < n
            or pool.layout != _layout(tensors)
            or pool.pid != os.getpid()  # this process was forked from the pool's owner
        ):
            self.close()  # (in a forked copy: forgets the owner's workers, stops none)
            pool = None
        if pool is None:
            if "fork" not in mp.get_all_start_methods():
                return None
            pool = _Workers(self.module, n, inbox_bytes)
            # stopped at close(), or when this object is collected, or at exit: whichever
            # comes first (a finalizer runs once, so no old pool is kept alive by it)
            pool.stop = weakref.finalize(self, pool.close)
            object.__setattr__(self, "_workers", pool)
        return pool

    def forward(self, input):
        x = input if isinstance(input, Tensor) else Tensor(input)
        if x.ndim == 0:
            raise ValueError("DataParallel: input must have a batch axis, got a 0-d Tensor")
        with self._lock:
            return self._forward(x)

    def _forward(self, x: Tensor):
        shards = par.split(x.shape[0], min(self.workers, x.shape[0]))
        modules, params, buffers = _members(self.module)
        pool = None
        if len(shards) > 1:  # inboxes sized for this call's shards (larger ones use the pipe)
            biggest = max(s.stop - s.start for s in shards[1:])
            pool = self._pool(len(shards) - 1, biggest * x.data[:1].nbytes, params + buffers)
        if pool is None:
            return self.module(x)
        for a, t in zip(pool.state.arrays, params + buffers, strict=True):
            np.copyto(a, t.data)  # the current values, for the workers
        record = autograd.is_grad_enabled()
        needs = [p.requires_grad for p in params]
        modes = [m.training for m in modules]
        x_grad = record and x.requires_grad
        pool.calls += 1  # the workers' graph from here on belongs to this call
        for i, s in enumerate(shards[1:]):
            pool.send_shard(i, x.data[s], record, x_grad, needs, modes)
        try:
            with par.single_threaded():
                # a leaf of its own: _Gather's VJP takes this shard's gx from it
                mine = Tensor(x.data[shards[0]], requires_grad=record and x.requires_grad)
                local = self.module(mine)
                _check_output(local)
        except BaseException:
            pool.drain(len(shards) - 1)  # keep the channels in step, then re-raise ours
            raise
        parts = pool.answers(len(shards) - 1)  # (every answer read before an error is raised)
        for out, s in zip([local.data, *parts], shards, strict=True):
            if np.ndim(out) == 0 or len(out) != s.stop - s.start:
                raise ValueError(
                    f"DataParallel: the module's output must keep the batch axis first "
                    f"(a shard of {s.stop - s.start} rows gave shape {np.shape(out)})"
                )
        return _Gather.apply(
            x, *params, local=local, mine=mine, parts=parts, pool=pool, call=pool.calls,
            _lock=self._lock,
        )

    def __enter__(self) -> DataParallel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (they start again at the next call). Also done on
        leaving a ``with DataParallel(...) as model:`` block."""
        pool = self._workers
        if pool is not None:
            object.__setattr__(self, "_workers", None)
            pool.stop()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_workers"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        object.__setattr__(self, "_lock", threading.RLock())
