"""Depthwise convolution as plain loops, compiled by numba (imported only where numba is).

``tinygrad_np/_compiled.py`` says when these run and builds their index tables. Every
kernel takes the spatial dims as rows: arrays come as (N, C, R, W), all dims but the last
flattened into one row index R. The row kernels (first) read the input in place: for
each output row and tap, ``rowmap[r, t]`` is the input row that output row ``r`` reads
at leading tap ``t`` (all taps but the last dim's), or -1 where that row is padding, and
along a row output entry ``j`` at last-dim tap ``b`` reads input entry
``j * sw + b * dw - pw``. The wide-grid kernels (below them) copy a block of samples'
planes into a padded buffer first. So one kernel serves 1-D (one row), 2-D and 3-D.

Each kernel handles the input channels ``c0 <= c < c1`` (and their output channels
``c * m .. c * m + m - 1``), so threads given disjoint channel ranges write disjoint
parts of the result. The loops keep NumPy's IEEE arithmetic (no fastmath): the inner
loops are independent multiply-adds along a row or buffer, which LLVM vectorizes as
they are.
"""
from __future__ import annotations

import numba
import numpy as np


def _probe():  # (a function to try numba's disk cache on)
    return 0


def _cache_works() -> bool:
    """Whether numba can keep compiled code on disk for this module: beside it, or in the
    user's cache folder. Where neither is writable (a read-only install and no writable
    home), it raises when a cached function is declared; the kernels are then compiled
    afresh in each process instead."""
    try:
        numba.njit(cache=True)(_probe)
    except RuntimeError:
        return False
    return True


_jit = numba.njit(nogil=True, cache=_cache_works(), boundscheck=False)
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
# The row loops above are short (one output row, 50-odd entries a tap), and their
# set-up per row and tap cost more than the multiply-adds. These kernels lay a channel's
# planes, padded, end to end in a flat buffer of their own (``nb`` samples at a time,
# ``plane`` entries each) and compute the outputs on that "wide grid": output i of
# sample s is at s * plane plus the flat offset of i in the padded plane, and tap k
# reads ``offs[k]`` further on, so each tap is one loop over all the block's entries
# (those between rows and between planes that are no output are computed, then
# dropped). With strides the padded plane is laid out as its phase planes (see
# ``_compiled._wide``): tap k then reads one phase plane, still at a fixed offset from
# the output's place. ``in_dst[r]``: where input row r starts in a padded plane;
# ``out_src[r]``: where output row r starts; ``length``: one plane's run of outputs
# (from the first to the last). Small planes are what the blocks are for: a 7x7 plane's
# taps are loops of 61 entries, 32 samples' one loop of 2,600. (max(0, ...) on offsets
# read from arrays tells LLVM they are not negative: without it every index gets a
# wraparound check and no loop is vectorized.)


@_jit
def _phase_start(r, ph, in_dst, sl, pl, pp):
    """(first entry j of input row r in phase ph, its place in a padded plane): with a
    stride ``sl`` along the last dim, entry j is at phase (j + pl) % sl, place
    (j + pl) // sl."""
    j0 = max(0, (ph - pl) % sl)
    return j0, max(0, in_dst[r] + ph * pp + (j0 + pl) // sl)


@_jit
def _planes_in(src, n0, count, c, in_dst, plane, sl, pl, pp, buf):
    """Samples n0 .. n0 + count - 1 of channel c of src (N, C, R, W) into their padded
    planes in buf (the padding, never written, stays as it is)."""
    width = src.shape[3]
    for s in range(count):
        for r in range(src.shape[2]):
            for ph in range(sl):
                j0, d = _phase_start(r, ph, in_dst, sl, pl, pp)
                d = max(0, d + s * plane)  # (max: see above)
                if sl == 1:
                    for u in range(width):
                        buf[d + u] = src[n0 + s, c, r, u]
                else:
                    for u in range((width - j0 + sl - 1) // sl):
                        buf[d + u] = src[n0 + s, c, r, j0 + u * sl]


@_jit
def _planes_out(buf, n0, count, c, in_dst, plane, sl, pl, pp, dst):
    """The reverse of ``_planes_in``: the padded planes' insides to dst (N, C, R, W). (A
    function of its own: the kernels' inputs are read-only arrays, and numba will not
    compile one function with a branch that writes to them, even a branch never taken.)"""
    width = dst.shape[3]
    for s in range(count):
        for r in range(dst.shape[2]):
            for ph in range(sl):
                j0, d = _phase_start(r, ph, in_dst, sl, pl, pp)
                d = max(0, d + s * plane)  # (max: see above)
                if sl == 1:
                    for u in range(width):
                        dst[n0 + s, c, r, u] = buf[d + u]
                else:
                    for u in range((width - j0 + sl - 1) // sl):
                        dst[n0 + s, c, r, j0 + u * sl] = buf[d + u]


@_jit
def _outputs_in(src, n0, count, o, out_src, plane, buf):
    """Channel o of samples n0 .. n0 + count - 1 of src (N, O, Rout, OW) to their places
    on the wide grid in buf (the entries between them are left as they are)."""
    for s in range(count):
        for r in range(src.shape[2]):
            d = max(0, s * plane + out_src[r])
            for j in range(src.shape[3]):
                buf[d + j] = src[n0 + s, o, r, j]


@_jit
def _outputs_out(buf, n0, count, o, out_src, plane, dst):
    """The reverse of ``_outputs_in``."""
    for s in range(count):
        for r in range(dst.shape[2]):
            d = max(0, s * plane + out_src[r])
            for j in range(dst.shape[3]):
                dst[n0 + s, o, r, j] = buf[d + j]


@_jit
def depthwise_forward_wide(
    x, w, bias, in_dst, out_src, offs, y, plane, length, sl, pl, pp, nb, c0, c1
):
    """y (N, O, Rout, OW) = the correlation of x (N, C, Rin, W) with w (O, taps), plus
    ``bias`` (O,) where it has entries; the padding's zeros are in the buffer (so a
    non-finite weight makes NaN where it reads them, as in a padded copy)."""
    n_samples, c_in = x.shape[0], x.shape[1]
    o_all, taps = w.shape
    m = o_all // c_in
    xb = np.zeros(nb * plane, dtype=x.dtype)
    yb = np.empty(nb * plane, dtype=y.dtype)
    for c in range(c0, c1):
        for n0 in range(0, n_samples, nb):
            count = min(nb, n_samples - n0)
            run = (count - 1) * plane + length
            _planes_in(x, n0, count, c, in_dst, plane, sl, pl, pp, xb)
            for o in range(c * m, c * m + m):
                start = bias[o] if bias.shape[0] > 0 else 0.0
                for q in range(run):
                    yb[q] = start
                for t in range(taps):
                    wv = w[o, t]
                    off = max(0, offs[t])
                    for q in range(run):
                        yb[q] += wv * xb[q + off]
                _outputs_out(yb, n0, count, o, out_src, plane, y)


@_jit
def depthwise_input_grad_wide(
    g, w, in_dst, out_src, offs, gx, plane, length, sl, pl, pp, nb, c0, c1
):
    """gx (N, C, Rin, W): the transposed correlation of g (N, O, Rout, OW) with w
    (O, taps). g is laid on the wide grid with zeros between its entries, so the weights
    must be finite (0 * inf would reach inputs that no window pairs with that tap)."""
    n_samples, c_in = gx.shape[0], gx.shape[1]
    o_all, taps = w.shape
    m = o_all // c_in
    gxb = np.empty(nb * plane, dtype=gx.dtype)
    gb = np.zeros(nb * plane, dtype=g.dtype)  # (only outputs are written: zeros between)
    for c in range(c0, c1):
        for n0 in range(0, n_samples, nb):
            count = min(nb, n_samples - n0)
            run = (count - 1) * plane + length
            for p in range(count * plane):
                gxb[p] = 0.0
            for o in range(c * m, c * m + m):
                _outputs_in(g, n0, count, o, out_src, plane, gb)
                for t in range(taps):
                    wv = w[o, t]
                    off = max(0, offs[t])
                    for q in range(run):
                        gxb[q + off] += wv * gb[q]
            _planes_out(gxb, n0, count, c, in_dst, plane, sl, pl, pp, gx)


@_jit
def depthwise_weight_grad_wide(
    x, g, in_dst, out_src, offs, gw, plane, length, sl, pl, pp, nb, c0, c1
):
    """gw (O, taps) = sum over samples of g (N, O, Rout, OW) times the padded input x
    (N, C, Rin, W) each tap reads, on the wide grid: LANES accumulators a tap (a vector
    loop), summed at the end in float64. The entries between g's are zeros: times a
    non-finite input they give NaN where the sum has none, so the caller redoes a
    non-finite result on the row kernel."""
    n_samples, c_in = x.shape[0], x.shape[1]
    o_all, taps = gw.shape
    m = o_all // c_in
    xb = np.zeros(nb * plane, dtype=x.dtype)
    gb = np.zeros(nb * plane, dtype=g.dtype)  # (only outputs are written: zeros between)
    acc = np.empty((m, taps, LANES), dtype=gw.dtype)
    for c in range(c0, c1):
        acc[:] = 0.0
        for n0 in range(0, n_samples, nb):
            count = min(nb, n_samples - n0)
            run = (count - 1) * plane + length
            full = run - run % LANES
            _planes_in(x, n0, count, c, in_dst, plane, sl, pl, pp, xb)
            for k in range(m):  # (the m outputs of channel c read the same planes)
                _outputs_in(g, n0, count, c * m + k, out_src, plane, gb)
                for t in range(taps):
                    off = max(0, offs[t])
                    for q0 in range(0, full, LANES):
                        for u in range(LANES):
                            acc[k, t, u] += gb[q0 + u] * xb[q0 + u + off]
                    for q in range(full, run):
                        acc[k, t, q - full] += gb[q] * xb[q + off]
        for k in range(m):
            for t in range(taps):
                total = 0.0
                for u in range(LANES):
                    total += np.float64(acc[k, t, u])
                gw[c * m + k, t] = total
