"""Max and average pooling in any number of spatial dims, with differentiable VJPs.

A pooling window for output position i along one dim reads the padded input
at rows i*s + k*d, k < K (``convmath.strided_slice`` gives, for one kernel tap
k, those rows for every i at once). Every pass below loops over the prod(K)
kernel taps and works on whole (n, C, *out) arrays per tap, for blocks of n samples
that keep the block's input in cache (``POOL_BLOCK_BYTES``); windows that tile the
input with many taps (global pooling) are instead axes of a reshaped view
(``TILE_MIN_TAPS``).

    MaxPool         y = max over each window          gx = MaxPoolScatter(g)
    MaxPoolScatter  g routed to each window's argmax  gg = MaxPoolGather(h)
    MaxPoolGather   h read at each window's argmax    gh = MaxPoolScatter(g)
    AvgPool         y = window sum / divisor          gx = AvgPoolTranspose(g)
    AvgPoolTranspose  g / divisor spread on windows   gg = AvgPool(h)

The argmax (which tap won, ties to the first in row-major tap order, as
PyTorch) is fixed by the forward, so the scatter and gather are linear and
each other's VJP: max pooling is differentiable to every order.
"""

from __future__ import annotations

import math

import numpy as np

from tinygrad_np import _parallel as par
from tinygrad_np import convmath as cm
from tinygrad_np.autograd import Op
from tinygrad_np.ops.elementwise import tie, zero_where
from tinygrad_np.tensor import Tensor


class Argmax:
    """Where every pooling window's maximum sits (the first one on ties, as PyTorch).

    Computed on first use from the input and the window maxima, since the common
    backward (non-overlapping windows) routes g without it (short repr for viz).
    ``taps``: which kernel tap won, (N, C, *out); ``flat``: the winner's index into the
    padded input in C order. The input is padded a block of samples at a time, never
    whole (a padded copy of the input would be held beside the gradient).
    """

    __slots__ = ("x", "best", "geometry", "padding", "padded_shape", "_taps", "_flat")

    def __init__(self, x: np.ndarray, best: np.ndarray, kernel, stride, dilation, padding):
        self.x, self.best, self.geometry = x, best, (kernel, stride, dilation)
        self.padding = padding
        self.padded_shape = x.shape[:2] + cm.padded_sizes(x.shape[2:], padding)
        self._taps = self._flat = None

    @property
    def taps(self) -> np.ndarray:
        if self._taps is None:
            kernel, stride, dilation = self.geometry
            sizes = self.padded_shape[2:]
            padded = _has_padding(self.padding)
            if not padded and _tiles(kernel, stride, dilation, sizes, self.best.shape[2:]):
                self._taps = _argmax_tiled(self.x, self.best, kernel)
                return self._taps
            self._taps = _argmax_taps(self.x, self.padding, self.best, *self.geometry)
            if padded:
                _no_padding_maxima(self._taps, self.best, self.padded_shape, self.padding,
                                   *self.geometry)  # fmt: skip
        return self._taps

    @property
    def flat(self) -> np.ndarray:
        if self._flat is None:
            taps = self.taps
            flat = np.empty(taps.shape, dtype=np.int64)

            def run(s):  # a slice of samples, on a thread
                _flat_index(taps[s], self.padded_shape, *self.geometry, s.start, out=flat[s])

            par.for_slices(taps.shape[0], run, taps.size * par.STRIDED_WEIGHT)
            self._flat = flat
        return self._flat

    def __repr__(self) -> str:
        return f"Argmax(shape={tuple(self.best.shape)})"


def _flat_index(taps, padded_shape, kernel, stride, dilation, first: int = 0, out=None):
    """C-order index into an array of ``padded_shape`` of the tap ``taps[i]`` of window i:
    base of window i (row i*s per dim) plus the tap's offset (k*d per dim). ``taps`` may
    hold samples ``first``, ``first + 1``, ... of the batch. Written into ``out`` (int64,
    taps' shape) in three passes: the taps' offsets, then the window bases, which
    broadcast from one small array per dim."""
    nd = len(kernel)
    out_sizes = taps.shape[2:]
    elem = np.cumprod((1,) + tuple(padded_shape[:2:-1]))[::-1]  # C-order strides, spatial
    offsets = np.zeros(math.prod(kernel), dtype=np.int64)
    for t, k in enumerate(np.ndindex(*kernel)):
        offsets[t] = sum(k[i] * dilation[i] * elem[i] for i in range(nd))
    if out is None:
        out = np.empty(taps.shape, dtype=np.int64)
    # (mode="clip": taps are always below prod(kernel); the default bounds check made this
    # take 6x slower, 1.95 against 0.29 ms for 338K uint8 taps)
    np.take(offsets, taps, out=out, mode="clip")
    plane = int(np.prod(padded_shape[2:]))
    first_plane = first * taps.shape[1]
    lead = np.arange(first_plane, first_plane + taps.shape[0] * taps.shape[1], dtype=np.int64)
    base = (lead * plane).reshape(taps.shape[:2] + (1,) * nd)
    for i in range(nd - 1):  # every dim but the last folded into the small base array
        shape = [1] * (2 + nd)
        shape[2 + i] = out_sizes[i]
        base = base + (np.arange(out_sizes[i], dtype=np.int64) * (stride[i] * elem[i])).reshape(
            shape
        )
    out += base
    out += np.arange(out_sizes[-1], dtype=np.int64) * (stride[-1] * elem[-1])
    return out


# The passes below go over the kernel taps one at a time, each over a whole block of
# windows. Over the whole batch, every tap read the input afresh from memory; in blocks of
# samples holding about POOL_BLOCK_BYTES of input the later taps find it in the L2 cache.
# Measured on one thread (the 96x96 network's pools at batch 16, 3x3 s2 on 40x47x47 and
# 4x4 s2 on 105x22x22): the argmax 2.86 -> 1.70 and 2.56 -> 1.70 ms.
POOL_BLOCK_BYTES = 1 << 20


def _block_samples(shape, itemsize: int) -> int:
    """How many samples of an (N, C, ...) array of ``shape`` make one block."""
    # with threads, blocks of POOL_BLOCK_BYTES per thread measured best (fewer NumPy calls
    # contending for the GIL; 2 threads, 3x3 s2 on 64x56x56 at batch 32: 19.2 -> 17.5 ms)
    budget = POOL_BLOCK_BYTES * par.threads_here()
    return max(1, budget // max(1, math.prod(shape[1:]) * itemsize))


def _for_sample_blocks(shape, itemsize: int, fn, work: int) -> None:
    """``par.for_samples`` over an (N, C, ...) input of ``shape``, each thread's samples
    taken in blocks (``_block_samples``)."""
    n, c = shape[:2]
    step = _block_samples(shape, itemsize)

    def run(idx):
        ns, cs = idx
        lo, hi, _ = ns.indices(n)
        for n0 in range(lo, hi, step):
            fn((slice(n0, min(hi, n0 + step)), cs))

    par.for_samples(n, c, run, work)


def _window_taps(kernel, dilation, stride, out_sizes) -> tuple:
    """(tap, the slices of (N, C, *padded) that tap reads in every window), per tap."""
    return cm.tap_slices(tuple(kernel), tuple(dilation), tuple(stride), tuple(out_sizes), 2)


# Windows that tile the input (stride = kernel, no dilation) with this many taps or more
# are handled as one axis of a reshaped view (N, C, o1, k1, o2, k2, ...) per pass, not one
# NumPy call a tap: global pooling of 56x56 maps took 3136 calls a block (max_pool2d 32x,
# avg_pool2d 31x PyTorch's time; a 1-D window of 10,000: 93x). Below it the tap loops win
# (one thread, ms, loop against reshaped: max 4x4 on 128x128 4.9 against 16.5, 8x8 7.7
# against 7.7, a 1-D window of 64 13.6 against 6.0; average 6x6 4.3 against 6.5, a global
# 7x7 1.9 against 0.7, a 1-D window of 32 5.4 against 2.1).
TILE_MIN_TAPS = 64
TILE_MIN_TAPS_AVG = 40


def _tiles(kernel, stride, dilation, sizes, out_sizes, least: int | None = None) -> bool:
    """Whether windows of ``kernel`` tile the (padded) ``sizes`` from the start, with enough
    taps (``least``, TILE_MIN_TAPS by default) for the reshaped passes."""
    return (
        math.prod(kernel) >= (TILE_MIN_TAPS if least is None else least)
        and tuple(stride) == tuple(kernel)
        and all(d == 1 for d in dilation)
        and all(o * k <= n for o, k, n in zip(out_sizes, kernel, sizes, strict=True))
    )


def _tiled(a: np.ndarray, kernel, out_sizes) -> np.ndarray:
    """The view (N, C, o1, k1, o2, k2, ...) of the windows of ``a`` (N, C, *sizes)."""
    region = a[(slice(None), slice(None)) + tuple(slice(0, o * k) for o, k in
                                                  zip(out_sizes, kernel, strict=True))]  # fmt: skip
    shape = a.shape[:2] + tuple(v for o, k in zip(out_sizes, kernel, strict=True) for v in (o, k))
    return region.reshape(shape)


def _window_axes(nd: int) -> tuple[int, ...]:
    return tuple(3 + 2 * i for i in range(nd))


def _windows_last_order(nd: int) -> tuple[int, ...]:
    """The axes of the tiled view (N, C, o1, k1, o2, k2, ...) as (N, C, *out, *K)."""
    return (0, 1) + tuple(2 + 2 * i for i in range(nd)) + _window_axes(nd)


def _windows_last(a: np.ndarray, kernel, out_sizes) -> np.ndarray:
    """(N, C, *out, prod(K)): each window's entries in row-major tap order (a copy)."""
    t = _tiled(a, kernel, out_sizes).transpose(_windows_last_order(len(kernel)))
    return t.reshape(a.shape[:2] + tuple(out_sizes) + (math.prod(kernel),))


def _has_padding(padding) -> bool:
    return any(p for pair in padding for p in pair)


def _padded_blocks(lead: tuple, input_size, padding, dtype):
    """(gx, block) for a gradient gx (*lead, *input_size) made a block at a time:
    ``block(idx)`` gives (the zeroed array, in padded coordinates, that block idx of gx is
    written into; the call that gets it into gx). Without padding that is gx itself;
    with padding a buffer of the block's own, whose interior the call copies out (a whole
    padded gradient cropped at the end held two input-sized arrays beside gx)."""
    padded = cm.padded_sizes(input_size, padding)
    if not _has_padding(padding):
        gx = np.zeros(lead + padded, dtype=dtype)
        return gx, lambda idx: (gx[idx], lambda: None)
    gx = np.empty(lead + tuple(input_size), dtype=dtype)
    crop = cm.negate(padding)

    def block(idx):
        buf = np.zeros(gx[idx].shape[:2] + padded, dtype=dtype)
        return buf, lambda: np.copyto(gx[idx], cm.pad_spatial(buf, crop))

    return gx, block


def _scatter_taps(g, argmax, kernel, stride, padding, dilation, input_size) -> np.ndarray:
    """gx: g[i] added at the input row of window i's maximum (overlaps accumulate).

    Windows that tile the input: one pass per kernel tap t, the windows whose maximum is
    tap t write g there. Overlapping windows: every g added at its window's maximum in
    one ``np.add.at`` pass (it sums the repeats). Both split over samples onto threads (each
    writes only its own samples); with padding, each block is scattered into a padded
    buffer of its own and its interior copied out (not a padded gx, then cropped: two
    input-sized arrays beside the result)."""
    out_sizes = g.shape[2:]
    padded = g.shape[:2] + cm.padded_sizes(input_size, padding)
    gx, block = _padded_blocks(g.shape[:2], input_size, padding, g.dtype)
    if _tiles(kernel, stride, dilation, padded[2:], out_sizes):
        # one write a window (put_along_axis) into its tap row, then back into place
        gxp, write_back = block((slice(None), slice(None)))
        per_window = np.zeros(g.shape + (math.prod(kernel),), dtype=g.dtype)
        np.put_along_axis(per_window, argmax.taps[..., None].astype(np.intp), g[..., None], -1)
        view = _tiled(gxp, kernel, out_sizes).transpose(_windows_last_order(len(kernel)))
        np.copyto(view, per_window.reshape(g.shape + tuple(kernel)))  # (N, C, *out, *K)
        write_back()
    elif (
        tuple(stride) == tuple(kernel)
        and all(d == 1 for d in dilation)
        and argmax._taps is None  # (not found yet: found here, not kept)
        and not _has_padding(padding)
        and g.dtype.itemsize in (4, 8)
        and g.dtype.kind == "f"
        and not np.isnan(argmax.best).any()  # (a NaN window's tap: found by argmax.taps)
    ):
        _scatter_first_maxima(g, argmax.x, argmax.best, kernel, dilation, stride, gx)
    elif tuple(stride) == tuple(kernel) and all(d == 1 for d in dilation):
        taps = argmax.taps

        def run(idx):
            gb, ab = g[idx], taps[idx]
            xb, write_back = block(idx)
            miss = np.empty(gb.shape, dtype=bool)
            for t, (_, window) in enumerate(_window_taps(kernel, dilation, stride, out_sizes)):
                np.not_equal(ab, t, out=miss)
                zero_where(gb, miss, out=xb[window])  # (an inf g: 0 at the other taps)
            write_back()

        _for_sample_blocks(padded, g.itemsize, run, g.size * par.STRIDED_WEIGHT)
    else:
        taps = argmax.taps
        step = _block_samples(padded, g.itemsize)

        def run(s):  # each thread adds up its own samples, in index order (repeatable),
            # a block at a time: the maxima's flat indices into the block, then their sum
            # (np.add.at in NumPy 2: 1.4 ms for 677K windows of a 3x3 s2 pool, where
            # np.bincount, which sums in float64, took 3.8 ms)
            for n0 in range(s.start, s.stop, step):
                b = slice(n0, min(s.stop, n0 + step))
                flat = _flat_index(taps[b], padded, kernel, stride, dilation)
                xb, write_back = block(b)
                np.add.at(xb.reshape(-1), flat.ravel(), g[b].ravel())
                write_back()

        par.for_slices(g.shape[0], run, g.size * par.STRIDED_WEIGHT)
    return gx


def _scatter_first_maxima(g, x, best, kernel, dilation, stride, gx) -> None:
    """gx (zeros, unpadded) with g at the first tap of each tiling window that equals its
    maximum, tap by tap without finding which tap won first: a tap takes g where it equals
    the maximum and no earlier tap did (NumPy's bool order: not hit <= found), by bits as
    ``zero_where``. Five passes a tap over window-sized arrays, most of them bytes, where
    finding the taps (``Argmax.taps``) and then scattering took 6.5. Forward and backward,
    ms, one thread (two): LeNet-5's first pool, (128, 6, 28, 28) 2x2, 1.55 -> 1.31 (1.18
    -> 0.94); (32, 64, 56, 56) 2x2 18.3 -> 16.0 (11.1 -> 10.5); a 1-D window of 4 on
    (16, 32, 4000) 5.8 -> 4.9 (3.3 -> 2.9)."""
    taps = _window_taps(kernel, dilation, stride, g.shape[2:])

    def run(idx):
        gb, xb, bb, out = g[idx], x[idx], best[idx], gx[idx]
        found = np.zeros(bb.shape, dtype=bool)
        hit = np.empty(bb.shape, dtype=bool)
        other = np.empty(bb.shape, dtype=bool)
        for t, (_, window) in enumerate(taps):
            np.equal(xb[window], bb, out=hit)
            np.less_equal(hit, found, out=other)  # (all but the first hit of each window)
            if t < len(taps) - 1:
                np.logical_or(found, hit, out=found)
            zero_where(gb, other, out=out[window])

    _for_sample_blocks(x.shape, x.itemsize, run, g.size * par.STRIDED_WEIGHT)


def _gather_taps(h, argmax, padding) -> np.ndarray:
    """y[i] = h at the input row of window i's maximum."""
    hp = np.ascontiguousarray(cm.pad_spatial(h, padding))
    return hp.reshape(-1)[argmax.flat]


def _argmax_taps(x, padding, best, kernel, stride, dilation) -> np.ndarray:
    """Which tap of each window holds its maximum (the first one on ties, as PyTorch):
    the number of taps before the first one equal to the maximum, counted branch-free.
    A window whose maximum is NaN takes its last NaN tap, as PyTorch's CPU kernel.
    ``x`` is padded (with -inf) a block of samples at a time."""
    out_sizes = best.shape[2:]
    taps = _window_taps(kernel, dilation, stride, out_sizes)
    arg = np.empty(best.shape, dtype=np.uint8 if len(taps) < 256 else np.int32)
    padded = x.shape[:2] + cm.padded_sizes(x.shape[2:], padding)

    def run(idx):
        xb, bb, ab = cm.pad_spatial(x[idx], padding, value=-np.inf), best[idx], arg[idx]
        # after tap t, found marks the windows whose first maximum is at or before t, and
        # seen counts, per window, the taps from its first maximum on: first = K - seen
        # (the same-dtype loops, no temporaries: 3 passes per tap)
        seen = np.zeros(bb.shape, dtype=ab.dtype)
        found = np.zeros(bb.shape, dtype=np.uint8)
        hit = np.empty(bb.shape, dtype=bool)
        for _, window in taps:
            np.equal(xb[window], bb, out=hit)
            np.bitwise_or(found, hit.view(np.uint8), out=found)
            np.add(seen, found, out=seen, casting="unsafe")
        np.subtract(len(taps), seen, out=ab, casting="unsafe")
        np.minimum(ab, len(taps) - 1, out=ab)  # no tap equal (a NaN window): fixed below
        nan = np.isnan(bb)
        if nan.any():  # NaN equals nothing: point those windows at their last NaN
            for t, (_, window) in enumerate(taps):
                np.copyto(ab, t, where=nan & np.isnan(xb[window]))

    _for_sample_blocks(padded, x.itemsize, run, best.size * par.STRIDED_WEIGHT)
    return arg


def _argmax_tiled(xp, best, kernel) -> np.ndarray:
    """``_argmax_taps`` for windows that tile ``xp`` (no padding): one argmax over each
    window's entries, laid last (ties to the first, as there; a NaN window to its last
    NaN, as there)."""
    w = _windows_last(xp, kernel, best.shape[2:])
    arg = np.argmax(w, axis=-1)
    nan = np.isnan(best)
    if nan.any():
        last = w.shape[-1] - 1 - np.argmax(np.isnan(w[..., ::-1]), axis=-1)
        np.copyto(arg, last, where=nan)
    return arg.astype(np.uint8 if w.shape[-1] < 256 else np.int32)


def _no_padding_maxima(arg, best, padded_shape, padding, kernel, stride, dilation) -> None:
    """Windows whose input entries are all -inf tie with the -inf padding: there the first
    tap inside the input wins instead of the first tap (as PyTorch, whose windows start at
    their first input entry), so that their gradient reaches the input. Changes ``arg``."""
    neg = np.isneginf(best)
    if not neg.any():
        return
    inside = np.zeros(padded_shape[2:], dtype=bool)
    sizes = [n - b - a for n, (b, a) in zip(padded_shape[2:], padding, strict=True)]
    inside[cm._interior(sizes, padding)] = True
    first = np.full(best.shape[2:], -1, dtype=np.int64)  # per window: first tap inside
    taps = _window_taps(kernel, dilation, stride, best.shape[2:])
    for t, (_, window) in reversed(list(enumerate(taps))):
        first[inside[window[2:]]] = t
    np.copyto(arg, first.astype(arg.dtype), where=neg & (first >= 0))


class MaxPool(Op):
    """y[n,c,i] = max_k x_pad[n,c,i*s + k*d] (padding is -inf, never chosen).

    VJP: gx = g routed to the first maximal element of each window (``MaxPoolScatter``).
    The forward only takes maxima, one spatial dim at a time (a box's maximum is the
    maximum of its rows' maxima: 2 + 2 passes for a 3x3 window instead of 8, the first
    ones with long contiguous rows); which tap won is found in the VJP, by comparing x
    with the saved output: a change in place to either must raise at backward.
    """

    keeps_output = True

    @staticmethod
    def reads(needs):  # x as well as the output (``keeps_output``)
        return (True,)

    def forward(self, x, *, kernel_size, stride, padding, dilation, ceil_mode):
        nd = x.ndim - 2
        self.name = f"max_pool{nd}d"
        padded = x.shape[:2] + cm.padded_sizes(x.shape[2:], padding)
        out_sizes = cm._out_sizes(padded[2:], kernel_size, stride, dilation)
        best = np.empty(x.shape[:2] + out_sizes, dtype=x.dtype)

        axes = [
            ax
            for ax in range(nd)
            if not (kernel_size[ax] == 1 and stride[ax] == 1 and padded[2 + ax] == out_sizes[ax])
        ]

        def run(idx):  # for a block of samples (padded here, not the whole input at once):
            # a running maximum per dim, leading dims first
            a, target = cm.pad_spatial(x[idx], padding, value=-np.inf), best[idx]
            if not axes:  # a 1x1 window with stride 1: a plain copy
                np.copyto(target, a)
            for i, ax in enumerate(axes):
                k, s, d, o = kernel_size[ax], stride[ax], dilation[ax], out_sizes[ax]
                lead = (slice(None),) * (2 + ax)
                shape = a.shape[: 2 + ax] + (o,) + a.shape[3 + ax :]
                m = target if i == len(axes) - 1 else np.empty(shape, dtype=a.dtype)
                if s == k >= TILE_MIN_TAPS and d == 1:  # one reshaped max, not k calls
                    cut = a[lead + (slice(0, o * k),)]
                    np.max(cut.reshape(a.shape[: 2 + ax] + (o, k) + a.shape[3 + ax :]),
                           axis=3 + ax, out=m)  # fmt: skip
                    a = m
                    continue
                reads = [lead + (slice(t * d, t * d + (o - 1) * s + 1, s),) for t in range(k)]
                np.copyto(m, a[reads[0]])
                for r in reads[1:]:
                    np.maximum(m, a[r], out=m)
                a = m

        _for_sample_blocks(padded, x.itemsize, run, best.size * par.STRIDED_WEIGHT)
        self.out = best
        return best

    def vjp(self, g):
        a = self.args
        argmax = Argmax(
            self.inputs[0].data,
            self.out,
            a["kernel_size"],
            a["stride"],
            a["dilation"],
            a["padding"],
        )
        return (
            MaxPoolScatter.apply(
                tie(g, self.inputs[0]),  # (recorded: a zero second derivative for x)
                argmax=argmax,
                kernel_size=a["kernel_size"],
                stride=a["stride"],
                padding=a["padding"],
                dilation=a["dilation"],
                input_size=tuple(self.inputs[0].shape[2:]),
            ),
        )


class MaxPoolScatter(Op):
    """gx = zeros of the input's shape with g[i] added at window i's argmax.

    Linear in g. VJP: gg = h read at each window's argmax (``MaxPoolGather``).
    """

    saves_inputs = False

    def forward(self, g, *, argmax, kernel_size, stride, padding, dilation, input_size):
        self.name = f"max_pool{g.ndim - 2}d_backward"
        return _scatter_taps(g, argmax, kernel_size, stride, padding, dilation, input_size)

    def vjp(self, h):
        a = dict(self.args)
        del a["input_size"]
        return (MaxPoolGather.apply(h, **a),)


class MaxPoolGather(Op):
    """y[i] = h at window i's argmax.   Linear in h. VJP: scatter back (``MaxPoolScatter``)."""

    saves_inputs = False

    def forward(self, h, *, argmax, kernel_size, stride, padding, dilation):
        self.name = f"max_pool{h.ndim - 2}d_gather"
        return _gather_taps(h, argmax, padding)

    def vjp(self, g):
        return (MaxPoolScatter.apply(g, input_size=tuple(self.inputs[0].shape[2:]), **self.args),)


def avg_divisor(
    input_size, kernel_size, stride, padding, ceil_mode, count_include_pad
) -> np.ndarray:
    """Divisor of every window, shape (*out): product over dims of the window length
    clipped to the padded input (count_include_pad) or to the input (not), as PyTorch."""
    div = np.ones((), dtype=np.float64)
    for n, k, s, (p, _) in zip(input_size, kernel_size, stride, padding, strict=True):
        out = cm.conv_output_size(n, k, s, p, 1, ceil_mode)
        start = np.arange(out) * s - p
        end = np.minimum(start + k, n + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        div = np.multiply.outer(div, (end - start).astype(np.float64))
    return div


class AvgPool(Op):
    """y[n,c,i] = sum_k x_pad[n,c,i*s + k] / divisor[i] (zero padding).

    Linear. VJP: gx = g / divisor spread evenly over each window (``AvgPoolTranspose``).
    """

    saves_inputs = False

    def forward(self, x, *, kernel_size, stride, padding, ceil_mode, count_include_pad):
        nd = x.ndim - 2
        self.name = f"avg_pool{nd}d"
        dtype = x.dtype
        x = _summable(x)
        xp = cm.pad_spatial(x, padding)
        ones = (1,) * nd
        out_sizes = cm._out_sizes(xp.shape[2:], kernel_size, stride, ones)
        y = np.zeros(x.shape[:2] + out_sizes, dtype=x.dtype)
        taps = _window_taps(kernel_size, ones, stride, out_sizes)
        div = _divisor(
            x.shape[2:], kernel_size, stride, padding, ceil_mode, count_include_pad, x.dtype
        )

        tiles = _tiles(kernel_size, stride, ones, xp.shape[2:], out_sizes, TILE_MIN_TAPS_AVG)

        def run(idx):  # a block of samples (or channels), all taps while it is in cache
            yb, xb = y[idx], xp[idx]
            if tiles:  # one reshaped sum over the window axes
                np.sum(_tiled(xb, kernel_size, out_sizes), axis=_window_axes(nd), out=yb)
            else:
                for _, window in taps:
                    yb += xb[window]
            yb /= div  # (a quotient, correctly rounded as PyTorch's; not times 1/div)

        _for_sample_blocks(xp.shape, xp.itemsize, run, y.size * par.STRIDED_WEIGHT)
        return y.astype(dtype, copy=False)

    def vjp(self, g):
        return (AvgPoolTranspose.apply(g, input_size=tuple(self.inputs[0].shape[2:]), **self.args),)


class AvgPoolTranspose(Op):
    """gx[j] = sum over windows i containing j of g[i] / divisor[i].   VJP: gg = AvgPool(h)."""

    saves_inputs = False

    def forward(self, g, *, kernel_size, stride, padding, ceil_mode, count_include_pad, input_size):
        nd = g.ndim - 2
        self.name = f"avg_pool{nd}d_backward"
        dtype = g.dtype
        g = _summable(g)
        div = _divisor(
            input_size, kernel_size, stride, padding, ceil_mode, count_include_pad, g.dtype
        )
        gs = g / div
        out_sizes = g.shape[2:]
        padded = g.shape[:2] + cm.padded_sizes(input_size, padding)
        gx, block = _padded_blocks(g.shape[:2], input_size, padding, g.dtype)
        taps = _window_taps(kernel_size, (1,) * nd, stride, out_sizes)

        tiles = _tiles(kernel_size, stride, (1,) * nd, padded[2:], out_sizes, TILE_MIN_TAPS_AVG)
        spread = (slice(None), slice(None)) + (slice(None), None) * nd  # g over each window

        def run(idx):
            gb = gs[idx]
            xb, write_back = block(idx)
            if tiles:  # each window is written once: one broadcast copy
                np.copyto(_tiled(xb, kernel_size, out_sizes), gb[spread])
            else:
                for _, window in taps:
                    xb[window] += gb
            write_back()

        _for_sample_blocks(padded, g.itemsize, run, g.size * par.STRIDED_WEIGHT)
        return gx.astype(dtype, copy=False)

    def vjp(self, h):
        a = dict(self.args)
        del a["input_size"]
        return (AvgPool.apply(h, **a),)


def _summable(a: np.ndarray) -> np.ndarray:
    """``a`` in the dtype its window sums are taken in: float16 in float32, as PyTorch
    (summed in float16, nine values of 8000 overflowed to inf), others as they are."""
    return a.astype(np.float32) if a.dtype == np.float16 else a


def _divisor(input_size, kernel_size, stride, padding, ceil_mode, count_include_pad, dt):
    div = avg_divisor(input_size, kernel_size, stride, padding, ceil_mode, count_include_pad)
    return div.astype(dt)  # (whole numbers: exact in any float dtype)


# ----------------------------------------------------------------------------- functional


def _pool_args(what, input, nd, kernel_size, stride, padding, dilation, ceil_mode):
    if not isinstance(input, Tensor):
        raise TypeError(f"{what}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim not in (nd + 1, nd + 2):
        raise ValueError(
            f"{what}: input must be {nd + 1}-D (C, *spatial) or {nd + 2}-D (N, C, *spatial), "
            f"got shape {tuple(input.shape)}"
        )
    if input.dtype.kind != "f":
        raise ValueError(f"{what}: input must be a float tensor, got {input.dtype}")
    if 0 in input.shape[-nd - 1 :]:  # (a batch of 0 samples is fine, as in PyTorch)
        raise ValueError(
            f"{what}: input's channel and spatial dims must be non-empty, got shape "
            f"{tuple(input.shape)}"
        )
    kernel = cm.expand_arg(kernel_size, nd, "kernel_size", what)
    default = stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)
    strides = kernel if default else cm.expand_arg(stride, nd, "stride", what)
    dilations = cm.expand_arg(dilation, nd, "dilation", what)
    pads = cm.expand_arg(padding, nd, "padding", what)
    cm.check_positive(kernel, "kernel_size", what)
    cm.check_positive(strides, "stride", what)
    cm.check_positive(dilations, "dilation", what)
    x = input if input.ndim == nd + 2 else input.unsqueeze(0)
    pairs = []
    for i, (n, k, s, p, d) in enumerate(
        zip(x.shape[2:], kernel, strides, pads, dilations, strict=True)
    ):
        if p < 0 or p > cm.dilated_size(k, d) // 2:
            raise ValueError(
                f"{what}: padding must be between 0 and half the (dilated) kernel size "
                f"{cm.dilated_size(k, d)}, got padding={padding!r}"
            )
        if cm.conv_output_size(n, k, s, p, d, ceil_mode) <= 0:
            raise ValueError(
                f"{what}: kernel size {k} (dilated extent {cm.dilated_size(k, d)}) is larger "
                f"than the padded input {n + 2 * p} in spatial dim {i}"
            )
        pairs.append(cm.pool_padding(n, k, s, p, d, ceil_mode))
    return x, kernel, strides, tuple(pairs), dilations


def _max_pool(nd, input, kernel_size, stride, padding, dilation, ceil_mode) -> Tensor:
    what = f"max_pool{nd}d"
    x, kernel, strides, pads, dilations = _pool_args(
        what, input, nd, kernel_size, stride, padding, dilation, ceil_mode
    )
    y = MaxPool.apply(
        x,
        kernel_size=kernel,
        stride=strides,
        padding=pads,
        dilation=dilations,
        ceil_mode=bool(ceil_mode),
    )
    return y if input.ndim == nd + 2 else y.squeeze(0)


def _avg_pool(nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad) -> Tensor:
    what = f"avg_pool{nd}d"
    x, kernel, strides, pads, _ = _pool_args(
        what, input, nd, kernel_size, stride, padding, 1, ceil_mode
    )
    y = AvgPool.apply(
        x,
        kernel_size=kernel,
        stride=strides,
        padding=pads,
        ceil_mode=bool(ceil_mode),
        count_include_pad=bool(count_include_pad),
    )
    return y if input.ndim == nd + 2 else y.squeeze(0)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> Tensor:
    """1-D max pooling over (N, C, L); see ``max_pool2d``."""
    return _max_pool(1, input, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> Tensor:
    """2-D max pooling, PyTorch's ``F.max_pool2d`` (stride defaults to kernel_size).

    Padding (at most half the dilated kernel) is -inf, so it never wins;
    ``ceil_mode`` rounds the output size up but drops a window that would start
    in the right padding. With dilation a window can hold padding only (kernel 2,
    dilation 2, padding 1 on a width-1 input): its output is -inf, as in PyTorch,
    and it passes no gradient (PyTorch 2.13 writes that gradient to an element
    outside the window, past the input's end for the last one).

    VJP: the gradient of each output goes to the first maximal element of its
    window (overlapping windows accumulate); that routing is itself linear and
    differentiable (its VJP gathers at the same positions).

    >>> import tinygrad_np as tg
    >>> max_pool2d(tg.Tensor([[[[1.0, 2.0], [4.0, 3.0]]]]), 2).tolist()
    [[[[4.0]]]]
    """
    return _max_pool(2, input, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> Tensor:
    """3-D max pooling over (N, C, D, H, W); see ``max_pool2d``."""
    return _max_pool(3, input, kernel_size, stride, padding, dilation, ceil_mode)


def avg_pool1d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
) -> Tensor:
    """1-D average pooling over (N, C, L); see ``avg_pool2d``."""
    return _avg_pool(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad)


def avg_pool2d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
) -> Tensor:
    """2-D average pooling, PyTorch's ``F.avg_pool2d``.

    The divisor of a window is its size clipped to the padded input
    (``count_include_pad=True``) or the number of real input elements in it.
    VJP: each output's gradient divided by its divisor, spread over its window.

    >>> import tinygrad_np as tg
    >>> avg_pool2d(tg.Tensor([[[[1.0, 2.0], [4.0, 3.0]]]]), 2).tolist()
    [[[[2.5]]]]
    """
    return _avg_pool(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad)


def avg_pool3d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
) -> Tensor:
    """3-D average pooling over (N, C, D, H, W); see ``avg_pool2d``."""
    return _avg_pool(3, input, kernel_size, stride, padding, ceil_mode, count_include_pad)


def pool_output_shape(
    input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
) -> tuple[int, ...]:
    """The output shape of a pooling call (for docs and explain tools)."""
    nd = len(input_shape) - 2
    k = cm.expand_arg(kernel_size, nd, "kernel_size")
    s = k if stride is None else cm.expand_arg(stride, nd, "stride")
    p = cm.expand_arg(padding, nd, "padding")
    d = cm.expand_arg(dilation, nd, "dilation")
    return tuple(input_shape[:2]) + tuple(
        cm.conv_output_size(n, *a, ceil_mode=ceil_mode)
        for n, a in zip(input_shape[2:], zip(k, s, p, d, strict=True), strict=True)
    )
