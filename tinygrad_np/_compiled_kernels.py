"""Depthwise convolution as plain loops, compiled by numba (imported only where numba is).

Read ``tinygrad_np/_compiled.py`` first: it says when these run and how their arrays are
laid out. Every kernel takes the spatial dims as rows: all dims but the last are
flattened into one row index, and ``rowmap[r, t]`` is the input row that output row
``r`` reads at leading tap ``t`` (all taps but the last dim's), or -1 where that row is
padding. So one kernel serves 1-D (one row), 2-D and 3-D. Along a row, output entry
``j`` at last-dim tap ``b`` reads input entry ``j * sw + b * dw - pw``.

Each kernel handles the input channels ``c0 <= c < c1`` (and their output channels
``c * m .. c * m + m - 1``), so threads given disjoint channel ranges write disjoint
parts of the result. The loops keep NumPy's IEEE arithmetic (no fastmath): the inner
loops are independent multiply-adds along a row, which LLVM vectorizes as they are.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(nogil=True, cache=True, boundscheck=False)
# the weight gradient's accumulators a tap: grid entry q adds into lane q % LANES (a
# fixed-length loop LLVM vectorizes, and the accumulators stay in the L1 cache)
LANES = 64


@_jit
def _span(b, sw, dw, pw, width, out_width):
    """(lo, hi, xo): the outputs ``lo <= j < hi`` of a row whose tap ``b`` reads the input
    row (entries ``xo + (j - lo) * sw``); the others read padding. Written with max() so
    that LLVM sees the indices are not negative (no wraparound checks in the loops)."""
    off = b * dw - pw
    lo = 0 if off >= 0 else max(0, (sw - 1 - off) // sw)
    hi = (width - 1 - off) // sw + 1 if width - 1 - off >= 0 else 0
    hi = max(min(hi, out_width), lo)
    return lo, hi, max(0, lo * sw + off)


@_jit
def depthwise_forward(x, w, bias, rowmap, y, sw, dw, pw, c0, c1):
    """y (N, O, Rout, OW) = the correlation of x (N, C, Rin, W) with w (O, T, KW), plus
    ``bias`` (O,) where it has entries. A non-finite weight times the padding's zeros
    is NaN, as in a padded copy."""
    n_samples, c_in, _, width = x.shape
    o_all, taps, kw = w.shape
    r_out, out_width = y.shape[2], y.shape[3]
    m = o_all // c_in
    step = max(1, sw)
    for o in range(c0 * m, c1 * m):
        c = o // m
        start = bias[o] if bias.shape[0] > 0 else 0.0
        for n in range(n_samples):
            for r in range(r_out):
                for j in range(out_width):
                    y[n, o, r, j] = start
                for t in range(taps):
                    ir = rowmap[r, t]
                    for b in range(kw):
                        wv = w[o, t, b]
                        if ir < 0:  # a row of padding
                            if not np.isfinite(wv):  # (a finite weight adds 0 there)
                                for j in range(out_width):
                                    y[n, o, r, j] += wv * 0.0
                            continue
                        lo, hi, xo = _span(b, sw, dw, pw, width, out_width)
                        if not np.isfinite(wv):
                            for j in range(out_width):
                                if j < lo or j >= hi:
                                    y[n, o, r, j] += wv * 0.0
                        if step == 1:
                            for q in range(hi - lo):
                                y[n, o, r, lo + q] += wv * x[n, c, ir, xo + q]
                        else:
                            for q in range(hi - lo):
                                y[n, o, r, lo + q] += wv * x[n, c, ir, xo + q * step]


@_jit
def depthwise_input_grad(g, w, rowmap, gx, sw, dw, pw, c0, c1):
    """gx (N, C, Rin, W) = the transposed correlation of g (N, O, Rout, OW) with w
    (O, T, KW): every (output, tap) pair that reads an input entry adds g * w to it;
    entries no window reads get 0."""
    n_samples, c_in, r_in, width = gx.shape
    o_all, taps, kw = w.shape
    r_out, out_width = g.shape[2], g.shape[3]
    m = o_all // c_in
    step = max(1, sw)
    for c in range(c0, c1):
        for n in range(n_samples):
            for i in range(r_in):
                for j in range(width):
                    gx[n, c, i, j] = 0.0
            for o in range(c * m, c * m + m):
                for r in range(r_out):
                    for t in range(taps):
                        ir = rowmap[r, t]
                        if ir < 0:
                            continue
                        for b in range(kw):
                            wv = w[o, t, b]
                            lo, hi, xo = _span(b, sw, dw, pw, width, out_width)
                            if step == 1:
                                for q in range(hi - lo):
                                    gx[n, c, ir, xo + q] += wv * g[n, o, r, lo + q]
                            else:
                                for q in range(hi - lo):
                                    gx[n, c, ir, xo + q * step] += wv * g[n, o, r, lo + q]


@_jit
def depthwise_weight_grad(x, g, rowmap, gw, sw, dw, pw, c0, c1):
    """gw (O, T, KW) = sum over samples and outputs of g (N, O, Rout, OW) times the input
    x (N, C, Rin, W) each tap reads, the padding's zeros included (so a non-finite g
    whose window reads padding gives NaN, as in a padded copy). Each tap's products
    are added into one accumulator per output column (a vector loop), summed at the
    end in float64."""
    n_samples, c_in, _, width = x.shape
    o_all, taps, kw = gw.shape
    r_out, out_width = g.shape[2], g.shape[3]
    m = o_all // c_in
    step = max(1, sw)
    acc = np.empty((taps, kw, out_width), dtype=gw.dtype)
    zero = acc.dtype.type(0)
    for o in range(c0 * m, c1 * m):
        c = o // m
        acc[:] = 0.0
        for n in range(n_samples):
            for r in range(r_out):
                for t in range(taps):
                    ir = rowmap[r, t]
                    for b in range(kw):
                        if ir < 0:  # a row of padding
                            for j in range(out_width):
                                acc[t, b, j] += g[n, o, r, j] * zero
                            continue
                        lo, hi, xo = _span(b, sw, dw, pw, width, out_width)
                        for j in range(lo):
                            acc[t, b, j] += g[n, o, r, j] * zero
                        for j in range(hi, out_width):
                            acc[t, b, j] += g[n, o, r, j] * zero
                        if step == 1:
                            for q in range(hi - lo):
                                acc[t, b, lo + q] += g[n, o, r, lo + q] * x[n, c, ir, xo + q]
                        else:
                            for q in range(hi - lo):
                                acc[t, b, lo + q] += (
                                    g[n, o, r, lo + q] * x[n, c, ir, xo + q * step]
                                )
        for t in range(taps):
            for b in range(kw):
                total = 0.0
                for j in range(out_width):
                    total += np.float64(acc[t, b, j])
                gw[o, t, b] = total


# ----------------------------------------------------------------------------- wide grids
#
# For stride 1 the row loops above are short (one output row, 50-odd entries a tap), and
# their set-up per row and tap cost more than the multiply-adds. These kernels lay each
# channel's plane, padded, in a flat buffer of its own and compute the outputs on its
# "wide grid": output i is at the flat offset of i in the padded plane, tap k reads
# ``offs[k]`` further on, so each tap is one loop over ``length`` entries (the whole
# plane, with the entries between rows that are no output: computed, then dropped).
# ``in_dst[r]``: where input row r starts in the padded buffer; ``out_src[r]``: where
# output row r starts on the wide grid. (max(0, ...) on offsets read from arrays tells
# LLVM they are not negative: without it every index gets a wraparound check and no loop
# is vectorized.)


@_jit
def depthwise_forward_wide(x, w, bias, in_dst, out_src, offs, y, plane, length, c0, c1):
    """y (N, O, Rout, OW) = the stride-1 correlation of x (N, C, Rin, W) with w (O, taps),
    plus ``bias`` (O,) where it has entries; the padding's zeros are in the buffer (so a
    non-finite weight makes NaN where it reads them, as in a padded copy)."""
    n_samples, c_in, r_in, width = x.shape
    o_all, taps = w.shape
    r_out, out_width = y.shape[2], y.shape[3]
    m = o_all // c_in
    xb = np.zeros(plane, dtype=x.dtype)
    yb = np.empty(length, dtype=y.dtype)
    for c in range(c0, c1):
        for n in range(n_samples):
            for r in range(r_in):
                d = max(0, in_dst[r])
                for j in range(width):
                    xb[d + j] = x[n, c, r, j]
            for o in range(c * m, c * m + m):
                start = bias[o] if bias.shape[0] > 0 else 0.0
                for q in range(length):
                    yb[q] = start
                for t in range(taps):
                    wv = w[o, t]
                    off = max(0, offs[t])
                    for q in range(length):
                        yb[q] += wv * xb[q + off]
                for r in range(r_out):
                    s = max(0, out_src[r])
                    for j in range(out_width):
                        y[n, o, r, j] = yb[s + j]


@_jit
def depthwise_input_grad_wide(g, w, in_dst, out_src, offs, gx, plane, length, c0, c1):
    """gx (N, C, Rin, W): the stride-1 transposed correlation of g (N, O, Rout, OW) with
    w (O, taps). g is laid on the wide grid with zeros between its rows, so the weights
    must be finite (0 * inf would reach inputs that no window pairs with that tap)."""
    n_samples, c_in, r_in, width = gx.shape
    o_all, taps = w.shape
    r_out, out_width = g.shape[2], g.shape[3]
    m = o_all // c_in
    gxb = np.empty(plane, dtype=gx.dtype)
    gb = np.zeros(length, dtype=g.dtype)
    for c in range(c0, c1):
        for n in range(n_samples):
            for p in range(plane):
                gxb[p] = 0.0
            for o in range(c * m, c * m + m):
                for r in range(r_out):
                    s = max(0, out_src[r])
                    for j in range(out_width):
                        gb[s + j] = g[n, o, r, j]
                for t in range(taps):
                    wv = w[o, t]
                    off = max(0, offs[t])
                    for q in range(length):
                        gxb[q + off] += wv * gb[q]
            for r in range(r_in):
                d = max(0, in_dst[r])
                for j in range(width):
                    gx[n, c, r, j] = gxb[d + j]


@_jit
def depthwise_weight_grad_wide(x, g, in_dst, out_src, offs, gw, plane, length, c0, c1):
    """gw (O, taps) = sum over samples of g (N, O, Rout, OW) times the padded input x
    (N, C, Rin, W) each tap reads, on the wide grid: LANES accumulators a tap (a vector
    loop), summed at the end in float64. The entries between g's rows
    are zeros: times a non-finite input they give NaN where the sum has none, so the
    caller redoes a non-finite result on the row kernel."""
    n_samples, c_in, r_in, width = x.shape
    o_all, taps = gw.shape
    r_out, out_width = g.shape[2], g.shape[3]
    m = o_all // c_in
    xb = np.zeros(plane, dtype=x.dtype)
    gb = np.zeros(length, dtype=g.dtype)
    acc = np.empty((taps, LANES), dtype=gw.dtype)
    full = length - length % LANES
    for c in range(c0, c1):
        for o in range(c * m, c * m + m):
            acc[:] = 0.0
            for n in range(n_samples):
                for r in range(r_in):
                    d = max(0, in_dst[r])
                    for j in range(width):
                        xb[d + j] = x[n, c, r, j]
                for r in range(r_out):
                    s = max(0, out_src[r])
                    for j in range(out_width):
                        gb[s + j] = g[n, o, r, j]
                for t in range(taps):
                    off = max(0, offs[t])
                    for q0 in range(0, full, LANES):
                        for u in range(LANES):
                            acc[t, u] += gb[q0 + u] * xb[q0 + u + off]
                    for q in range(full, length):
                        acc[t, q - full] += gb[q] * xb[q + off]
            for t in range(taps):
                total = 0.0
                for u in range(LANES):
                    total += np.float64(acc[t, u])
                gw[o, t] = total
