"""Run the memory-bound loops of conv and pooling on several cores.

NumPy's BLAS already uses every thread it is given for matrix products, but
the rest of a convolution (im2col copies, col2im adds, the per-tap loops of
pooling and depthwise convs) runs in one NumPy call at a time on one core.
NumPy releases the GIL inside those calls, so splitting the batch into one
slice per thread and running the slices at once uses the other cores: the
3x3 max-pool forward of benchmarks/conv.py went from 11.3 to 5.8 ms on 2 cores.

Loops are split only where the slices are independent (each thread writes its
own samples or channels), so they give the same bits for every thread count.
A matrix product split over its summed axis adds its partial products in a
fixed order: the same bits for one thread count, possibly different last bits
for another.

The thread count is, in order: ``set_num_threads(n)``, the environment
variables ``TINYGRAD_NP_NUM_THREADS``, ``OMP_NUM_THREADS``, else the number of
CPUs this process may run on. PyTorch's ``torch.set_num_threads`` works alike.

BLAS. OpenBLAS keeps its worker threads spinning for a while after each
matrix product, so a product followed by threaded NumPy loops had three
threads fighting for two cores (the loops gained nothing). When NumPy's BLAS
is OpenBLAS, importing tinygrad_np therefore sets it to one thread and
``matmul`` below splits large products over this module's threads instead:
every thread in the process is then one of ours. Set
``TINYGRAD_NP_KEEP_BLAS_THREADS=1`` to leave BLAS's threading as it was (the
loops are then still threaded, products use BLAS's own threads).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# the least work, in element copies, a thread should get from one NumPy call: shorter
# calls spend their time handing the GIL back and forth. Measured on 2 cores: im2col
# copies of 0.6M elements per thread ran at 0.8x the speed of one thread, 1.2M at 1.3x;
# a 2x2 max-pool forward at 37K outputs per thread at 0.8x, 75K at 1.6x. Callers weight
# their work: a strided compare or add per output counts 16 copies (STRIDED_WEIGHT).
MIN_ELEMENTS = 1 << 20
STRIDED_WEIGHT = 16


def _default_threads() -> int:
    for var in ("TINYGRAD_NP_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if var == "OMP_NUM_THREADS":  # (OpenMP's list form, "2,1": the outer level's count)
            value = value.split(",")[0].strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{var} must be a positive integer, got {value!r}") from None
            if n <= 0:
                raise ValueError(f"{var} must be a positive integer, got {value!r}")
            return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_state: dict = {"threads": None, "pool": None, "pool_size": 0, "pool_pid": None, "own_blas": False}
_local = threading.local()  # .inside: this thread is running a slice (no nesting)
_lock = threading.Lock()

# Per-thread state that a task takes from the thread that hands it to the pool, as (get,
# set) pairs (``carry``): autograd's grad mode above all, so that a VJP computed on a
# worker during a plain backward records nothing (the worker's own mode is "on").
_carried: list[tuple[Callable[[], object], Callable[[object], None]]] = []


def carry(get: Callable[[], object], set_: Callable[[object], None]) -> None:
    """Make every pool task run with the submitting thread's value of some per-thread
    state: ``get()`` read there, ``set_(value)`` on the worker for the task's duration."""
    _carried.append((get, set_))



def _after_fork_in_child() -> None:
    """A forked child has none of its parent's threads: a lock one of them held would
    stay held forever, and the pool's threads are gone (it is made anew when needed)."""
    global _lock
    _lock = threading.Lock()
    _state["pool"], _state["pool_size"], _state["pool_pid"] = None, 0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads() -> int:
    """How many threads conv, pooling and large products use (see ``set_num_threads``)."""
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def threads_here() -> int:
    """The threads work started on this thread will use: 1 inside ``single_threaded()``
    or a task of the pool, else ``get_num_threads()`` (for algorithm choices)."""
    return 1 if getattr(_local, "inside", False) else get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the loops of conv and pooling and for large matrix products
    (1: everything on the caller's thread), like ``torch.set_num_threads``. With
    ``TINYGRAD_NP_KEEP_BLAS_THREADS=1`` products use BLAS's own threads instead.

    >>> before = get_num_threads()
    >>> set_num_threads(1); get_num_threads()
    1
    >>> set_num_threads(before)
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _state["threads"] = int(n)


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared worker pool, made anew when too small or after a fork (a forked child
    inherits the pool object but none of its threads: tasks would wait forever)."""
    with _lock:
        pool = _state["pool"]
        if pool is None or _state["pool_size"] < workers or _state["pool_pid"] != os.getpid():
            old = pool if pool is not None and _state["pool_pid"] == os.getpid() else None
            # the new pool in place before the old one stops (an interrupt in between
            # must not leave a stopped pool installed)
            _state["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="tinygrad_np")
            _state["pool_size"] = workers
            _state["pool_pid"] = os.getpid()
            if old is not None:
                old.shutdown(wait=False)
        return _state["pool"]


def _submit(workers: int, fn: Callable[[slice], object], s: slice):
    """``fn(s)`` as a task of the pool (at least ``workers`` threads), with the carried
    state of this thread. Another thread may replace or stop the pool between our taking
    it and submitting to it: then the new one takes the task."""
    values = [get() for get, _ in _carried]
    # and this thread's context variables: NumPy's floating-point error state lives in one
    # (since NumPy 2.0, with np.errstate's callback), so that a caller's np.errstate holds
    # on the pool's threads too; else whether an op raised depended on the thread count and
    # on which slice held the bad value
    context = contextvars.copy_context()
    for attempt in range(3):
        try:
            return _pool(workers).submit(context.run, _run_task, fn, s, values)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _run_task(fn: Callable[[slice], object], s: slice, values: list) -> object:
    own = [get() for get, _ in _carried]
    for (_, set_), v in zip(_carried, values, strict=True):
        set_(v)
    try:
        return _run_inside(fn, s)
    finally:
        for (_, set_), v in zip(_carried, own, strict=True):
            set_(v)


def stop_pool() -> None:
    """Stop this module's worker threads (they start again when next needed). Called before
    ``fork``: a child gets none of its parent's threads, and forking while threads run
    risks a lock some thread held (Python 3.12 warns about it)."""
    with _lock:
        pool = _state["pool"]
        _state["pool"], _state["pool_size"], _state["pool_pid"] = None, 0, None
    if pool is not None:
        pool.shutdown(wait=True)


def split(n: int, parts: int) -> list[slice]:
    """``range(n)`` cut into ``parts`` contiguous slices of near-equal length (none empty).

    >>> split(5, 2)
    [slice(0, 2, None), slice(2, 5, None)]
    """
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def for_slices(n: int, fn: Callable[[slice], None], work: int) -> None:
    """Call ``fn(s)`` for contiguous slices ``s`` covering ``range(n)``, at once on up to
    ``get_num_threads()`` threads. ``work``: the elements one of ``fn``'s NumPy calls
    processes over the whole range; each thread gets at least ``MIN_ELEMENTS`` of it, so
    small jobs stay on the calling thread. ``fn`` must only write what its slice owns.
    """
    threads = min(get_num_threads(), n, max(1, work // MIN_ELEMENTS))
    if threads <= 1 or getattr(_local, "inside", False):
        fn(slice(0, n))
        return
    slices = split(n, threads)
    futures = [_submit(threads - 1, fn, s) for s in slices[1:]]
    try:
        _run_inside(fn, slices[0])
    finally:
        for f in futures:
            f.result()  # re-raises a worker's exception


def both(first: Callable[[], object], second: Callable[[], object]) -> tuple:
    """``(first(), second())``, the second on a pool thread while the caller runs the
    first, when there are threads to spare; both run unsplit (as one slice each)."""
    if get_num_threads() < 2 or getattr(_local, "inside", False):
        return first(), second()
    future = _submit(1, lambda s: second(), slice(0, 1))
    try:
        a = _run_inside(lambda s: first(), slice(0, 1))
    finally:
        b = future.result()  # waits for the second even when the first failed; re-raises
    return a, b


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run every loop and product of this thread, inside the block, on this thread only
    (``nn.DataParallel`` gives each process one core)."""
    prev = getattr(_local, "inside", False)
    _local.inside = True
    try:
        yield
    finally:
        _local.inside = prev


def _run_inside(fn: Callable[[slice], object], s: slice) -> object:
    _local.inside = True
    try:
        return fn(s)
    finally:
        _local.inside = False


def for_samples(
    n: int, c: int, fn: Callable[[tuple[slice, slice]], None], work: int
) -> None:
    """``for_slices`` over the first two axes of an (N, C, ...) job: ``fn((ns, cs))`` gets
    a slice of samples, or of channels when there are fewer samples than threads."""
    if n >= get_num_threads() or c == 1:
        for_slices(n, lambda s: fn((s, slice(None))), work)
    else:
        for_slices(c, lambda s: fn((slice(None), s)), work)


# ----------------------------------------------------------------------------- BLAS

# products below this many multiply-adds run in one BLAS call: concurrent single-thread
# OpenBLAS calls pay a hand-off per call. Measured on 2 cores, split in two: 6M
# multiply-adds ran at 0.55x the speed of one call, 8M (LeNet's first conv) at 1.4x,
# 31M at 1.6x; short wide products split over the summed axis: 15M at 0.85x, 31M at 1.25x
MIN_MATMUL_MACS = 1 << 23
SPLIT_K_MACS = 24 << 20


def _openblas_thread_setters() -> list:
    """``set_num_threads`` functions of every OpenBLAS library loaded in this process."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:  # not Linux
        return []
    paths = sorted(
        {
            line.split()[-1]
            for line in maps.splitlines()
            if "openblas" in line.lower() and ".so" in line and line.split()[-1].startswith("/")
        }
    )
    setters = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (
            "scipy_openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_",
            "openblas_set_num_threads",
        ):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                setters.append(fn)
                break
    return setters


def take_over_blas() -> bool:
    """Set OpenBLAS to one thread so that ``matmul`` threads products itself (see the
    module doc); returns whether tinygrad_np now threads the products."""
    if os.environ.get("TINYGRAD_NP_KEEP_BLAS_THREADS", "0") not in ("", "0"):
        return False
    setters = _openblas_thread_setters()
    for fn in setters:
        fn(1)
    _state["own_blas"] = bool(setters)
    _state["blas_setters"] = setters
    return _state["own_blas"]


def owns_blas() -> bool:
    """Whether tinygrad_np runs BLAS on one thread and threads the products itself."""
    return _state["own_blas"]


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Give OpenBLAS ``n`` threads of its own inside the block (benchmarks use it to
    measure NumPy's plain matmul rate); back to one thread after, if tinygrad_np threads
    the products."""
    setters = _state.get("blas_setters") or _openblas_thread_setters()
    for fn in setters:
        fn(n)
    try:
        yield
    finally:
        if _state["own_blas"]:
            for fn in setters:
                fn(1)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` for 2-D operands, split over threads when large: by
    rows or columns of the result, or (when both are short) over the summed axis, whose
    partial products are then added in a fixed order. Other shapes go to ``np.matmul``.
    """
    if a.ndim != 2 or b.ndim != 2:
        return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    if k == 1:  # an outer product (a matrix-vector product's weight gradient): one multiply,
        # the same numbers (1024 x 1024: 0.27 ms, NumPy's matmul 1.15)
        return np.multiply(a, b) if out is None else np.multiply(a, b, out=out)
    threads = get_num_threads()
    short = max(m, n) < 16 * threads
    if (
        not _state["own_blas"]
        or threads == 1
        or m * n * k < (SPLIT_K_MACS if short else MIN_MATMUL_MACS)
        or getattr(_local, "inside", False)
    ):
        return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a.dtype, b.dtype))
    if not short:
        if n >= m:
            for_slices(n, lambda s: np.matmul(a, b[:, s], out=out[:, s]), 1 << 30)
        else:
            for_slices(m, lambda s: np.matmul(a[s], b, out=out[s]), 1 << 30)
        return out
    # a short, wide product (a weight gradient): split the summed axis
    parts = split(k, threads)
    partial = [None] * len(parts)

    def run(s):
        for i in range(len(parts))[s]:
            partial[i] = np.matmul(a[:, parts[i]], b[parts[i]])

    for_slices(len(parts), run, 1 << 30)
    np.copyto(out, partial[0])
    for p in partial[1:]:
        out += p
    return out
