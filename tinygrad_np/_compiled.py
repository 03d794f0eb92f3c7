"""Depthwise convolution by compiled loops, where numba is installed (optional).

NumPy cannot keep an output in a register through the taps of a depthwise conv: every
route on NumPy and BLAS alone (``convmath``'s channel-major grids, band matrices, whole
planes) makes one pass over memory per tap, and ran the benchmark's depthwise layer at
2-2.5x PyTorch's time. Where ``numba`` imports, the three maps of a depthwise conv
(one input channel per group, any channel multiplier, any number of spatial dims,
strides, dilations and padding) run instead as the plain loops of
``_compiled_kernels``: a block of samples' padded planes (as phase planes where there
are strides) is laid in a buffer, and each tap is one loop over all of it (the "wide
grid", see ``_wide``). Row kernels, which read the input in place along each output
row, take the convs the wide grid cannot: a pad that crops, a plane whose buffers
would outgrow the scratch budget, and non-finite operands where the wide grid's zeros
between rows would meet them (the input gradient, for a non-finite weight; the weight
gradient, redone where its sums came out non-finite).

The kernels are compiled on first use (about a second each per dtype; numba keeps them
on disk, beside the module or in the user's cache folder, where it can write) and run
on this package's threads, each thread a range of channels (so the thread count does
not change a bit). Turn them off with ``F.compiled_kernels(False)`` (a ``with`` block)
or the environment variable ``TINYGRAD_NP_COMPILED=0`` (read at import);
``conv_algorithm("gemm")`` or ``("fft")`` also keeps them out (they run under "auto"
only). Planes of 6x6 or less stay on ``convmath``'s whole-plane matrices, and kernels
over 400 taps that the cost estimate sends to FFT on FFT (``convmath._compiled_route``).
Results agree with the NumPy routes to float rounding; the test suite runs both.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import threading

import numpy as np

from tinygrad_np import _parallel as par

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# a thread takes a share of a kernel only with at least this many multiply-adds (about
# 50 us on the benchmark machine: the kernels release the GIL, a hand-off costs ~20 us)
MIN_MACS_PER_THREAD = 1 << 18

# the wide-grid kernels' buffers: samples' planes laid end to end, up to this many entries
BLOCK_ENTRIES = 4096

_lock = threading.RLock()  # (re-entrant: a fork from a thread that holds it, see _before_fork)
_module: list = []  # [the kernels module or None], once imported (or found missing)


def _numba_compiler_lock():
    """numba's lock around compiling (and loading from its cache), once numba is imported."""
    module = sys.modules.get("numba.core.compiler_lock")
    return None if module is None else module.global_compiler_lock


def _before_fork() -> None:
    """Hold this module's lock and numba's compiler lock across a fork: a thread of the
    parent importing numba or compiling a kernel at that moment would leave the lock held
    in the child, where no thread can release it (nn.DataParallel's workers hung on
    their first depthwise conv)."""
    _lock.acquire()
    compiler = _numba_compiler_lock()
    if compiler is not None:
        compiler.acquire()


def _after_fork() -> None:
    compiler = _numba_compiler_lock()
    if compiler is not None:
        compiler.release()
    _lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                        after_in_child=_after_fork)  # fmt: skip


def enabled_by_environment() -> bool:
    """False where ``TINYGRAD_NP_COMPILED`` is set to 0 (or "false", "no", "off")."""
    value = os.environ.get("TINYGRAD_NP_COMPILED", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def kernels():
    """The compiled kernels' module, or None where numba is not installed or does not
    import (a numba built for another NumPy raises on import: the NumPy routes run)."""
    if not _module:
        with _lock:
            if not _module:
                try:
                    from tinygrad_np import _compiled_kernels
                except Exception:  # noqa: BLE001 - any failure means: not available
                    _compiled_kernels = None
                _module.append(_compiled_kernels)
    return _module[0]


def available() -> bool:
    """Whether the compiled depthwise kernels can run here: numba imports, and compiles
    (``NUMBA_DISABLE_JIT=1`` would run the loops as Python, thousands of times slower)."""
    if kernels() is None:
        return False
    import numba

    return not numba.config.DISABLE_JIT


# Tables for at most this many rows are kept (64 geometries at most); larger ones, whose
# convs take far longer than building them, are made for each call.
CACHE_MAX_ROWS = 1 << 14


def _small_cached(rows_of):
    """An lru_cache for the geometries whose ``rows_of(*args)`` is at most CACHE_MAX_ROWS."""

    def wrap(fn):
        cached = functools.lru_cache(maxsize=64)(fn)

        @functools.wraps(fn)
        def pick(*args):
            return (cached if rows_of(*args) <= CACHE_MAX_ROWS else fn)(*args)

        pick.cache_clear = cached.cache_clear
        return pick

    return wrap


@_small_cached(lambda sizes, out_sizes, kernel, *_: math.prod(out_sizes) * math.prod(kernel))
def _rowmap(sizes, out_sizes, kernel, strides, dilations, befores) -> np.ndarray:
    """(prod(out_sizes), prod(kernel)) int64: the flat input row (over the dims given, all
    but the last) that each output row reads at each tap, -1 where that row is padding."""
    lead = len(sizes)
    rows = np.zeros((1,) * (2 * lead), dtype=np.int64)
    valid = np.ones((1,) * (2 * lead), dtype=bool)
    for d in range(lead):
        coord = (
            np.arange(out_sizes[d])[:, None] * strides[d]
            + np.arange(kernel[d])[None, :] * dilations[d]
            - befores[d]
        )
        shape = [1] * (2 * lead)
        shape[d], shape[lead + d] = out_sizes[d], kernel[d]
        coord = coord.reshape(shape)
        valid = valid & (coord >= 0) & (coord < sizes[d])
        rows = rows * sizes[d] + coord
    table = np.where(valid, rows, -1).reshape(math.prod(out_sizes), math.prod(kernel))
    table = np.ascontiguousarray(table, dtype=np.int64)
    table.flags.writeable = False
    return table


def _out_sizes(in_sizes, kernel, pads, strides, dilations) -> tuple[int, ...]:
    """The output sizes of a conv of spatial ``in_sizes`` padded by ``pads``."""
    from tinygrad_np import convmath  # (imported here: convmath imports this module)

    padded = convmath.padded_sizes(in_sizes, pads)
    return tuple(convmath._out_sizes(padded, kernel, strides, dilations))


def _geometry(in_sizes, kernel, pads, strides, dilations):
    """(rowmap, out_sizes, (sw, dw, pw)) of a depthwise conv of spatial ``in_sizes``."""
    out_sizes = _out_sizes(in_sizes, kernel, pads, strides, dilations)
    table = _rowmap(
        tuple(in_sizes[:-1]), out_sizes[:-1], tuple(kernel[:-1]), tuple(strides[:-1]),
        tuple(dilations[:-1]), tuple(p[0] for p in pads[:-1]),
    )  # fmt: skip
    return table, out_sizes, (strides[-1], dilations[-1], pads[-1][0])


@_small_cached(lambda in_sizes, *_: math.prod(in_sizes[:-1]))
def _wide(in_sizes, kernel, pads, strides, dilations):
    """The wide grid of a conv (see ``_compiled_kernels``), or None where a pad crops:
    (in_dst, out_src, offs, plane, length, s, p, pp): ``s`` and ``p`` the last dim's
    stride and pad before, ``pp`` the entries of one phase plane. With strides, the
    padded plane is kept as its phase planes (entries ``r, r + s, r + 2s, ...`` of each
    dim, one plane per combination of ``r``s), so that every tap reads one phase plane
    at a fixed offset from where its output sits; ``in_dst[r]`` leaves out the last
    dim's pad and phase (the kernels' copies spread each row over its phases)."""
    if any(p < 0 for pair in pads for p in pair):
        return None
    nd = len(in_sizes)
    from tinygrad_np import convmath

    padded = convmath.padded_sizes(in_sizes, pads)
    out_sizes = _out_sizes(in_sizes, kernel, pads, strides, dilations)
    sizes = [-(-p // s) for p, s in zip(padded, strides, strict=True)]  # a phase plane
    pp = math.prod(sizes)
    pitch = [math.prod(sizes[d + 1 :]) for d in range(nd)]  # (C order, in a phase plane)
    phase_pitch = [math.prod(strides[d + 1 :]) * pp for d in range(nd)]

    def lead_rows(counts, where):  # the offset of each row (over all dims but the last)
        flat = np.zeros((1,), dtype=np.int64)
        for d in range(nd - 1):
            flat = (flat[:, None] + where(d, np.arange(counts[d]))).reshape(-1)
        return flat

    def placed(d, coord):  # padded coordinate -> its phase plane and place there
        r, q = np.divmod(coord, strides[d])[::-1]
        return r * phase_pitch[d] + q * pitch[d]

    in_dst = lead_rows(in_sizes, lambda d, i: placed(d, i + pads[d][0]))
    out_src = lead_rows(out_sizes, lambda d, i: i * pitch[d])
    offs = np.zeros((1,), dtype=np.int64)
    for d, (k, dil) in enumerate(zip(kernel, dilations, strict=True)):
        offs = (offs[:, None] + placed(d, np.arange(k) * dil)).reshape(-1)
    for a in (in_dst, out_src, offs):
        a.flags.writeable = False
    length = int(out_src[-1]) + out_sizes[-1]
    return in_dst, out_src, offs, pp * math.prod(strides), length, strides[-1], pads[-1][0], pp


def _block(n: int, plane: int) -> int:
    """How many samples' planes the wide-grid kernels lay end to end at once: up to
    BLOCK_ENTRIES entries (two such buffers stay in the L1/L2 cache)."""
    return max(1, min(n, BLOCK_ENTRIES // plane))


def _read_only(a: np.ndarray, dtype) -> np.ndarray:
    """A C-contiguous read-only view of ``a`` as ``dtype`` (copied only where needed): the
    kernels' inputs are always read-only, so numba compiles one version of each kernel
    whether a caller's array is writeable or not."""
    a = np.ascontiguousarray(a, dtype=dtype).view()
    a.flags.writeable = False
    return a


def _rows(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` (N, C, *S) as a read-only (N, C, prod(S[:-1]), S[-1]) array of ``dtype``."""
    return _read_only(a, dtype).reshape(a.shape[:2] + (math.prod(a.shape[2:-1]), a.shape[-1]))


def _weight_rows(w: np.ndarray, dtype) -> np.ndarray:
    """w (O, 1, *K) as a read-only (O, prod(K[:-1]), K[-1]) array of ``dtype``."""
    return _read_only(w, dtype).reshape(w.shape[0], -1, w.shape[-1])


def _by_channels(c: int, macs: int, fn, scratch_each: int = 0) -> None:
    """``fn(c0, c1)`` over ranges of the ``c`` input channels, on the package's threads
    (on fewer where each would take ``scratch_each`` bytes of buffers and all of them
    would outgrow the scratch budget: the thread count never changes what is computed)."""
    from tinygrad_np import convmath

    work = macs * par.MIN_ELEMENTS // MIN_MACS_PER_THREAD
    if scratch_each * par.get_num_threads() > convmath._settings["scratch_bytes"]:
        with par.single_threaded():
            fn(0, c)
        return
    par.for_slices(c, lambda s: fn(s.start, s.stop), work)


def _wide_fits(wide, itemsize: int) -> bool:
    """Whether the wide-grid kernels' two buffers of one sample's padded plane fit the
    scratch budget (else the row kernels run: they need none)."""
    from tinygrad_np import convmath

    return wide is not None and 2 * wide[3] * itemsize <= convmath._settings["scratch_bytes"]


def _args(pads, strides, dilations):
    """The geometry as tuples of ints (hashable, for the caches)."""
    return (tuple((int(a), int(b)) for a, b in pads), tuple(int(s) for s in strides),
            tuple(int(d) for d in dilations))  # fmt: skip


def _check(what: str, c: int, o: int, got_out, want_out) -> None:
    """The shapes the kernels trust (they read without bounds checks): ``o`` filters for
    ``c`` channels, and g's spatial sizes those of the conv's output. convmath's callers
    always pass such shapes; a direct call with others raises instead of reading past an
    array."""
    if c <= 0 or o % c or tuple(got_out) != tuple(want_out):
        raise ValueError(
            f"_compiled.{what}: {o} filters for {c} channels, output sizes {tuple(got_out)} "
            f"(the conv's: {tuple(want_out)})"
        )


def forward(x, w, bias, pads, strides, dilations, dtype) -> np.ndarray:
    """y (N, O, *out) of the depthwise conv of ``x`` (N, C, *S) zero-padded by ``pads``
    with ``w`` (O, 1, *K), plus ``bias`` (O,) unless None."""
    k = kernels()
    pads, strides, dilations = _args(pads, strides, dilations)
    n, c = x.shape[:2]
    o, kernel, sizes = w.shape[0], tuple(w.shape[2:]), tuple(x.shape[2:])
    out_sizes = _out_sizes(sizes, kernel, pads, strides, dilations)
    _check("forward", c, o, out_sizes, out_sizes)
    if bias is not None and np.shape(bias) != (o,):
        raise ValueError(f"_compiled.forward: bias of shape {np.shape(bias)} for {o} filters")
    y = np.empty((n, o) + out_sizes, dtype=dtype)
    xr, wr = _rows(x, dtype), _weight_rows(w, dtype)
    b = _read_only(np.zeros(0, dtype) if bias is None else bias, dtype)
    yr = y.reshape(n, o, math.prod(out_sizes[:-1]), out_sizes[-1])
    macs = y.size * math.prod(kernel)
    wide = _wide(sizes, kernel, pads, strides, dilations)
    if _wide_fits(wide, y.itemsize):
        wt, nb = wr.reshape(o, -1), _block(n, wide[3])
        each = 2 * nb * wide[3] * y.itemsize  # (a thread's two buffers)
        _by_channels(c, macs, lambda c0, c1: k.depthwise_forward_wide(
            xr, wt, b, *wide[:3], yr, *wide[3:], nb, c0, c1), each)  # fmt: skip
        return y
    table, _, (sw, dw, pw) = _geometry(sizes, kernel, pads, strides, dilations)
    _by_channels(c, macs, lambda c0, c1: k.depthwise_forward(
        xr, wr, b, table, yr, sw, dw, pw, c0, c1))  # fmt: skip
    return y


def input_grad(g, w, c, in_sizes, pads, strides, dilations, dtype) -> np.ndarray:
    """gx (N, C, *in_sizes): the input gradient of that conv (``c`` input channels) for
    upstream ``g``."""
    k = kernels()
    pads, strides, dilations = _args(pads, strides, dilations)
    n, in_sizes = g.shape[0], tuple(int(s) for s in in_sizes)
    kernel = tuple(w.shape[2:])
    _check("input_grad", c, w.shape[0], g.shape[2:],
           _out_sizes(in_sizes, kernel, pads, strides, dilations))  # fmt: skip
    if g.shape[1] != w.shape[0]:
        raise ValueError(f"_compiled.input_grad: g has {g.shape[1]} channels, w {w.shape[0]}")
    gx = np.empty((n, c) + in_sizes, dtype=dtype)
    gr, wr = _rows(g, dtype), _weight_rows(w, dtype)
    gxr = gx.reshape(n, c, math.prod(in_sizes[:-1]), in_sizes[-1])
    macs = g.size * math.prod(kernel)
    wide = _wide(in_sizes, kernel, pads, strides, dilations)
    if _wide_fits(wide, gx.itemsize) and np.isfinite(wr).all():  # (see ..._input_grad_wide)
        wt, nb = wr.reshape(w.shape[0], -1), _block(n, wide[3])
        each = 2 * nb * wide[3] * gx.itemsize
        _by_channels(c, macs, lambda c0, c1: k.depthwise_input_grad_wide(
            gr, wt, *wide[:3], gxr, *wide[3:], nb, c0, c1), each)  # fmt: skip
        return gx
    table, _, (sw, dw, pw) = _geometry(in_sizes, kernel, pads, strides, dilations)
    _by_channels(c, macs, lambda c0, c1: k.depthwise_input_grad(
        gr, wr, table, gxr, sw, dw, pw, c0, c1))  # fmt: skip
    return gx


def weight_grad(x, g, kernel, pads, strides, dilations, dtype) -> np.ndarray:
    """gw (O, 1, *kernel): the weight gradient of that conv for input ``x``, upstream ``g``."""
    k = kernels()
    pads, strides, dilations = _args(pads, strides, dilations)
    c, o = x.shape[1], g.shape[1]
    kernel, sizes = tuple(int(v) for v in kernel), tuple(x.shape[2:])
    _check("weight_grad", c, o, g.shape[2:], _out_sizes(sizes, kernel, pads, strides, dilations))
    if g.shape[0] != x.shape[0]:
        raise ValueError(f"_compiled.weight_grad: g has {g.shape[0]} samples, x {x.shape[0]}")
    gw = np.empty((o, math.prod(kernel[:-1]), kernel[-1]), dtype=dtype)
    xr, gr = _rows(x, dtype), _rows(g, dtype)
    macs = g.size * math.prod(kernel)
    wide = _wide(sizes, kernel, pads, strides, dilations)
    if _wide_fits(wide, gw.itemsize):
        gt, nb = gw.reshape(o, -1), _block(x.shape[0], wide[3])
        each = 2 * nb * wide[3] * gw.itemsize
        _by_channels(c, macs, lambda c0, c1: k.depthwise_weight_grad_wide(
            xr, gr, *wide[:3], gt, *wide[3:], nb, c0, c1), each)  # fmt: skip
        if np.isfinite(gw).all():  # (else redone where every product is a window's)
            return gw.reshape((o, 1) + kernel)
    table, _, (sw, dw, pw) = _geometry(sizes, kernel, pads, strides, dilations)
    _by_channels(c, macs, lambda c0, c1: k.depthwise_weight_grad(
        xr, gr, table, gw, sw, dw, pw, c0, c1))  # fmt: skip
    return gw.reshape((o, 1) + kernel)
