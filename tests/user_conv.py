"""A learner's NumPy convolution, written the textbook way, with switchable planted bugs.

This is the "user code" that tests/test_check.py feeds to ``tinygrad_np.check``:
plain loops over output positions, channels-first, any number of spatial dims,
``stride``/``dilation`` one int per dim, ``padding`` one (before, after) pair per dim.
``backward`` follows the derivation in docs/convolution.md: dilate dy by the
stride, pad it, correlate with the flipped, per-group transposed kernel, crop.
``BUGS`` names the classic slips; ``make_backward(bug)`` returns a backward with one.
"""

from __future__ import annotations

import functools

import numpy as np

BUGS = (
    "no_stride_dilation",  # correlate dy itself, not dy with stride-1 zeros between entries
    "wrong_padding_side",  # crop dx with p_after in front and p_before behind
    "dw_wrong_axis",  # sum the per-sample weight gradients over channels, not the batch
    "no_groups_split",  # send every output channel's gradient to every input channel
    "kernel_not_flipped",  # correlate with the transposed kernel without flipping it
)


def _window(o, stride, dilation, kernel):
    """The slices of the padded input that output position ``o`` reads."""
    return tuple(
        slice(oi * s, oi * s + d * (k - 1) + 1, d)
        for oi, s, d, k in zip(o, stride, dilation, kernel, strict=True)
    )


def conv_forward(x, w, b, stride, padding, dilation, groups):
    """y[n, f, o] = b[f] + sum_{c in f's group, k} xp[n, c, o*s + k*d] w[f, c, k]."""
    nd = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0), *padding])
    n, c = xp.shape[:2]
    f, kernel = w.shape[0], w.shape[2:]
    out = [
        (xp.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(nd)
    ]
    cg, fg = c // groups, f // groups
    y = np.zeros((n, f, *out))
    axes = list(range(1, nd + 2))
    for o in np.ndindex(*out):
        win = _window(o, stride, dilation, kernel)
        for g in range(groups):
            patch = xp[(slice(None), slice(g * cg, (g + 1) * cg), *win)]  # (N, Cg, *K)
            wg = w[g * fg : (g + 1) * fg]  # (Fg, Cg, *K)
            yo = np.tensordot(patch, wg, (axes, axes))  # (N, Fg)
            y[(slice(None), slice(g * fg, (g + 1) * fg), *o)] = yo
    if b is not None:
        y += b.reshape(1, -1, *[1] * nd)
    return y


def conv_backward(x, w, b, dy, stride, padding, dilation, groups, bug=None):
    """(dx, dw, db) for ``conv_forward``; ``bug`` plants one of ``BUGS``."""
    nd = x.ndim - 2
    n, c, *size = x.shape
    f, cg, *kernel = w.shape
    fg = f // groups
    spatial = tuple(range(2, nd + 2))

    # 1. put stride-1 zeros between dy's entries, so that dy lines up with xp
    if bug == "no_stride_dilation":
        dyd = dy
    else:
        lengths = [(o - 1) * s + 1 for o, s in zip(dy.shape[2:], stride, strict=True)]
        dyd = np.zeros((n, f, *lengths))
        dyd[(slice(None), slice(None), *[slice(None, None, s) for s in stride])] = dy

    # 2. full correlation with the flipped kernel, per group, channels swapped:
    #    pad d*(K-1) in front and up to the padded input's length behind
    padded = [m + pb + pa for m, (pb, pa) in zip(size, padding, strict=True)]
    reach = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
    pads = [(r, max(0, p - L)) for r, p, L in zip(reach, padded, dyd.shape[2:], strict=True)]
    dyp = np.pad(dyd, [(0, 0), (0, 0), *pads])
    if bug == "no_groups_split":
        wt = np.swapaxes(w, 0, 1)  # (Cg, F, *K): every output channel feeds every input one
        wt = np.flip(wt, spatial)
        dxp = conv_forward(dyp, wt, None, [1] * nd, [(0, 0)] * nd, dilation, 1)
        dxp = np.concatenate([dxp] * groups, axis=1)
    else:
        wt = w.reshape(groups, fg, cg, *kernel).swapaxes(1, 2).reshape(c, fg, *kernel)
        if bug != "kernel_not_flipped":
            wt = np.flip(wt, spatial)
        dxp = conv_forward(dyp, wt, None, [1] * nd, [(0, 0)] * nd, dilation, groups)
    # the padded-input gradient may come out short when rows were left over: zero-fill them
    fill = [(0, max(0, p - m)) for p, m in zip(padded, dxp.shape[2:], strict=True)]
    dxp = np.pad(dxp, [(0, 0), (0, 0), *fill])

    # 3. crop the padding off again
    crop = []
    for m, (pb, pa) in zip(size, padding, strict=True):
        start = pa if bug == "wrong_padding_side" else pb
        crop.append(slice(start, start + m))
    dx = dxp[(slice(None), slice(None), *crop)]

    # 4. weight gradient: per sample, correlate the padded input with dy
    xp = np.pad(x, [(0, 0), (0, 0), *padding])
    per_sample = np.zeros((n, f, cg, *kernel))
    out = dy.shape[2:]
    for k in np.ndindex(*kernel):
        taps = tuple(
            slice(ki * d, ki * d + (o - 1) * s + 1, s)
            for ki, d, o, s in zip(k, dilation, out, stride, strict=True)
        )
        for g in range(groups):
            xs = xp[(slice(None), slice(g * cg, (g + 1) * cg), *taps)]  # (N, Cg, *out)
            gs = dy[:, g * fg : (g + 1) * fg]  # (N, Fg, *out)
            # (N, Fg, Cg): sum over output positions only
            contrib = np.einsum("nfp,ncp->nfc", gs.reshape(n, fg, -1), xs.reshape(n, cg, -1))
            per_sample[(slice(None), slice(g * fg, (g + 1) * fg), slice(None), *k)] = contrib
    if bug == "dw_wrong_axis":
        dw = per_sample.sum(axis=1)  # (N, Cg, *K): right shape only when N == F
    else:
        dw = per_sample.sum(axis=0)  # (F, Cg, *K)

    db = dy.sum(axis=(0, *spatial)) if b is not None else None
    return dx, dw, db


def make_backward(bug):
    """``conv_backward`` with one planted bug, keeping the signature the kit reads."""

    @functools.wraps(conv_backward)
    def backward(x, w, b, dy, stride, padding, dilation, groups):
        return conv_backward(x, w, b, dy, stride, padding, dilation, groups, bug=bug)

    del backward.__wrapped__  # so inspect reads this signature, without `bug`
    return backward


def conv2d_forward_nodilation(x, w, b, stride, padding):
    """The same forward for a user whose code takes no dilation or groups."""
    return conv_forward(x, w, b, stride, padding, [1] * (x.ndim - 2), 1)


# ----------------------------------------------------------------------------- pooling


def _pool_out(n, k, s, p, d, ceil_mode, bug=None):
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if bug == "keep_window_in_padding":
        return out
    if ceil_mode and (out - 1) * s >= n + p:  # a last window may not start in the padding
        out -= 1
    return out


def _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode, bug=None):
    """Yield (output index, per-dim input positions inside x, per-dim positions incl. padding)."""
    size = x.shape[2:]
    pads = [pb for pb, _ in padding]
    out = [
        _pool_out(n, k, s, p, d, ceil_mode, bug)
        for n, k, s, p, d in zip(size, kernel_size, stride, pads, dilation, strict=True)
    ]
    for o in np.ndindex(*out):
        pos = [
            oi * s + np.arange(k) * d - p
            for oi, s, k, p, d in zip(o, stride, kernel_size, pads, dilation, strict=True)
        ]
        inside = [q[(q >= 0) & (q < n)] for q, n in zip(pos, size, strict=True)]
        padded = [q[q < n + p] for q, n, p in zip(pos, size, pads, strict=True)]
        yield o, out, inside, padded


def max_pool_forward(x, kernel_size, stride, padding, dilation, ceil_mode, bug=None):
    y = None
    windows = _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode, bug)
    for o, out, inside, _ in windows:
        if y is None:
            y = np.zeros((*x.shape[:2], *out))
        block = x[(slice(None), slice(None), *np.ix_(*inside))]
        y[(slice(None), slice(None), *o)] = block.reshape(*x.shape[:2], -1).max(axis=2)
    return y


def max_pool_backward(x, dy, kernel_size, stride, padding, dilation, ceil_mode, bug=None):
    """The gradient goes to each window's maximum; overlapping windows add up."""
    dx = np.zeros_like(x)
    n, c = x.shape[:2]
    for o, _, inside, _ in _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode):
        grid = np.ix_(*inside)
        block = x[(slice(None), slice(None), *grid)].reshape(n, c, -1)
        arg = block.argmax(axis=2)  # (N, C)
        if bug == "last_tie":  # a tie goes to the last maximum, not the first
            arg = block.shape[2] - 1 - block[..., ::-1].argmax(axis=2)
        where = np.unravel_index(arg, [len(q) for q in inside])
        coords = [q[w] for q, w in zip(inside, where, strict=True)]
        ni, ci = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
        g = dy[(slice(None), slice(None), *o)]
        if bug == "overwrite_overlaps":
            dx[(ni, ci, *coords)] = g  # a later window wipes an earlier one's gradient
        else:
            np.add.at(dx, (ni, ci, *coords), g)
    return dx


def avg_pool_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    y = None
    dil = [1] * (x.ndim - 2)
    for o, out, inside, padded in _pool_windows(x, kernel_size, stride, padding, dil, ceil_mode):
        if y is None:
            y = np.zeros((*x.shape[:2], *out))
        block = x[(slice(None), slice(None), *np.ix_(*inside))]
        count = np.prod([len(q) for q in (padded if count_include_pad else inside)])
        y[(slice(None), slice(None), *o)] = block.reshape(*x.shape[:2], -1).sum(axis=2) / count
    return y


def avg_pool_backward(x, dy, kernel_size, stride, padding, ceil_mode, count_include_pad):
    dx = np.zeros_like(x)
    dil = [1] * (x.ndim - 2)
    for o, _, inside, padded in _pool_windows(x, kernel_size, stride, padding, dil, ceil_mode):
        count = np.prod([len(q) for q in (padded if count_include_pad else inside)])
        g = dy[(slice(None), slice(None), *o)] / count  # (N, C)
        dx[(slice(None), slice(None), *np.ix_(*inside))] += g.reshape(*g.shape, *[1] * len(inside))
    return dx
