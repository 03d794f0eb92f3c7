"""Run the memory-bound loops of conv and pooling on several cores.

NumPy's BLAS already uses every thread it is given for matrix products, but
the rest of a convolution (im2col copies, col2im adds, the per-tap loops of
pooling and depthwise convs) runs in one NumPy call at a time on one core.
NumPy releases the GIL inside those calls, so splitting the batch into one
slice per thread and running the slices at once uses the other cores: the
3x3 max-pool forward of benchmarks/conv.py went from 11.3 to 5.8 ms on 2 cores.

Only work that is independent per slice is split (each thread writes its own
samples), so results are bit for bit the same for every thread count.

The thread count is, in order: ``set_num_threads(n)``, the environment
variables ``TINYGRAD_NP_NUM_THREADS``, ``OMP_NUM_THREADS``, else the number of
CPUs this process may run on. PyTorch's ``torch.set_num_threads`` works alike.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

# below this many array elements of work a slice is not worth a thread hand-off
# (a hand-off costs some 20 microseconds; NumPy does ~1e9 simple element ops a second)
MIN_ELEMENTS = 1 << 16


def _default_threads() -> int:
    for var in ("TINYGRAD_NP_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
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


_state: dict = {"threads": None, "pool": None, "pool_size": 0}
_local = threading.local()  # .inside: this thread is running a slice (no nesting)
_lock = threading.Lock()


def get_num_threads() -> int:
    """How many threads conv and pooling loops use (see ``set_num_threads``)."""
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the loops of conv and pooling (1: everything on the caller's
    thread). BLAS keeps its own setting (``OPENBLAS_NUM_THREADS`` when NumPy loads).

    >>> set_num_threads(1); get_num_threads()
    1
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _state["threads"] = n


def _pool(workers: int) -> ThreadPoolExecutor:
    with _lock:
        if _state["pool"] is None or _state["pool_size"] < workers:
            if _state["pool"] is not None:
                _state["pool"].shutdown(wait=False)
            _state["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="tinygrad_np")
            _state["pool_size"] = workers
        return _state["pool"]


def split(n: int, parts: int) -> list[slice]:
    """``range(n)`` cut into ``parts`` contiguous slices of near-equal length (none empty).

    >>> split(5, 2)
    [slice(0, 3, None), slice(3, 5, None)]
    """
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def for_slices(n: int, fn: Callable[[slice], None], work: int) -> None:
    """Call ``fn(s)`` for contiguous slices ``s`` covering ``range(n)``, at once on up to
    ``get_num_threads()`` threads. ``work``: elements the whole job touches, so that
    small jobs stay on the calling thread. ``fn`` must only write what its slice owns.
    """
    threads = min(get_num_threads(), n, max(1, work // MIN_ELEMENTS))
    if threads <= 1 or getattr(_local, "inside", False):
        fn(slice(0, n))
        return
    slices = split(n, threads)
    futures = [_pool(threads - 1).submit(_run_inside, fn, s) for s in slices[1:]]
    try:
        _run_inside(fn, slices[0])
    finally:
        for f in futures:
            f.result()  # re-raises a worker's exception


def _run_inside(fn: Callable[[slice], None], s: slice) -> None:
    _local.inside = True
    try:
        fn(s)
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
