"""Batch normalisation: one fused op in training mode (its VJP in NumPy, or composed
from differentiable Tensor ops when the backward is recorded, so every order of
derivative works), composed ops in evaluation mode, and an in-place update of the
running statistics.

The per-channel sums over the batch and space are BLAS matrix-vector products and
row-wise BLAS dot products over the (N*C, spatial) rows: NumPy's ``sum`` over axes
(0, 2, 3) walks the array with short strided loops. Measured, 2
threads, (32, 64, 32, 32) float32, forward and backward: the composed ops 29.0 ms, the
fused op 4.7-5.1, PyTorch 2.2-2.5; one thread: 27.1 -> 6.8-7.5.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from tinygrad_np import _parallel as par
from tinygrad_np.autograd import Op, is_grad_enabled
from tinygrad_np.ops.elementwise import WidenRead, const
from tinygrad_np.ops.reduce import leading_sum
from tinygrad_np.tensor import FLOAT16, Tensor, float_input, number_arg


def _row_sums(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """(n, C) sums over L of a (n, C, L), or of a * b: a BLAS matrix-vector product (or
    a BLAS dot product a row, as a stack of (1, L) x (L, 1) products) over the (n*C, L)
    rows. (``np.einsum("ij,ij->i")``, as fast, added a row of 65536 float32 squares
    27.7 ulps off, the dot products 1.6.)"""
    n, c, length = a.shape
    rows = a.reshape(n * c, length)
    if length > ROW_BLOCK:  # blocks of a long row, their sums added in float64
        total = np.zeros(n * c)
        ones = np.ones(ROW_BLOCK, dtype=a.dtype)
        b2 = None if b is None else b.reshape(n * c, length)
        for s in range(0, length, ROW_BLOCK):
            e = min(length, s + ROW_BLOCK)
            if b2 is None:
                total += rows[:, s:e] @ ones[: e - s]
            else:
                total += (rows[:, None, s:e] @ b2[:, s:e, None]).reshape(-1)
        return total.reshape(n, c)
    if b is None:
        return (rows @ np.ones(length, dtype=a.dtype)).reshape(n, c)
    return (rows[:, None, :] @ b.reshape(n * c, length, 1)).reshape(n, c)


# Rows longer than this are summed in blocks of it, the blocks' sums added in float64: a
# plane of 2048 x 2048 float32 values summed in one BLAS product was 10-170x PyTorch's
# error in the batch norm's output and gradients (a hunt, nineteenth session).
ROW_BLOCK = 1 << 16


def _channel_sums(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """(C,) float64 sums of a (n, C, L), or of a * b, over n and L: the rows' sums
    (``_row_sums``) added in float64; for rows shorter than SHORT_ROWS the columns' sums
    over n instead (one BLAS product with a row of ones), then over L in float64."""
    n, c, length = a.shape
    if length >= SHORT_ROWS:
        return _row_sums(a, b).sum(axis=0, dtype=np.float64)
    cols = (a if b is None else a * b).reshape(n, c * length)
    # (down the samples in blocks, added in float64: one float32 product over a thread's
    # share of a large batch lost accuracy with N; BatchNorm1d on (N, C))
    return leading_sum(cols, float64=True).reshape(c, length).sum(axis=1)


# Rows shorter than this are summed down the columns instead: (N, C) input to BatchNorm1d
# made N * C dot products of length 1 (4096 x 1024: 70 ms, PyTorch 9).
SHORT_ROWS = 32


def _ordered_sum(parts: dict) -> np.ndarray:
    """The chunks' partial sums, added in the chunks' order (the same bits for a thread
    count)."""
    return sum(parts[k] for k in sorted(parts))

# On one thread the samples go in chunks of about this many bytes, so that what one pass
# writes the next reads from the L2 cache (2 MiB a core on the benchmark machine). One
# thread, (32, 64, 32, 32) float32, ms, forward / backward: whole 2.70 / 5.41, chunks of
# 512 KiB 2.69 / 4.04. On two threads each takes its share whole (chunks of 512 KiB: 2.38
# / 3.68 against 1.88 / 3.20; more, shorter calls for the two threads to hand the GIL
# between).
BN_CHUNK_BYTES = 1 << 19


def _chunked(n: int, per_sample: int, fn) -> None:
    """``fn(chunk)`` for slices of the N samples: each thread's contiguous share whole,
    or on one thread chunks of about BN_CHUNK_BYTES. The per-row sums are added over N
    afterwards, in order; BLAS may round a row's sum differently in another chunking, so
    results are the same bits for one thread count (as the split products elsewhere)."""
    step = max(1, BN_CHUNK_BYTES // max(per_sample, 1))

    def run(s):
        if s.stop - s.start < n:  # a share, beside another thread's
            fn(s)
            return
        for n0 in range(s.start, s.stop, step):
            fn(slice(n0, min(s.stop, n0 + step)))

    par.for_slices(n, run, n * per_sample // 4)


class BatchNormTrain(Op):
    """y = (x - mean) / sqrt(var + eps) * w + b with the batch's per-channel mean and
    biased variance (over every dim but C); ``_stats`` receives them (for the running
    statistics).

    VJP (m = N * spatial values per channel, xhat the normalised x, a = w / sqrt(var+eps)):
    gb = sum g, gw = sum g * xhat, gx = a * (g - gb / m - xhat * gw / m). x - mean is
    recomputed in the backward (as PyTorch, which keeps x, the mean and 1 / std).
    """

    name = "batch_norm"

    @staticmethod
    def inplace_reads(needs, recording):  # x for any gradient but b's, w for x's
        return ((needs[0] or needs[1]),) + ((needs[0], False) if len(needs) == 3 else ())

    def forward(self, x, *wb, eps, affine, _stats):
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1)
        m = x3.shape[2] * n
        per_sample = x3[0].nbytes
        parts: dict[int, np.ndarray] = {}
        y = np.empty_like(x3)  # x - mean first, normalised in place after

        def sums(s):
            parts[s.start] = _channel_sums(x3[s])

        _chunked(n, per_sample, sums)
        # The rows' sums are added in float64, and x - mean (with the mean rounded to x's
        # dtype) is corrected by that rounding in the shift below: float32 data with an
        # offset of 1e4 came out 3-4x less accurate than PyTorch's (which sums in double)
        # without, 3x more accurate with (max error 1.7e-4 against 5.3e-4), at no cost
        # (a pass for the residual's own row sums, which would give 6e-7, cost 15 % of the
        # forward).
        mean64 = _ordered_sum(parts) / m
        mean = mean64.astype(x.dtype)
        parts.clear()

        def centre(s):
            np.subtract(x3[s], mean[:, None], out=y[s])
            parts[s.start] = _channel_sums(y[s], y[s])

        _chunked(n, per_sample, centre)
        r = mean64 - mean  # mean(x - mean), but for the rows' own rounding
        var = np.maximum(_ordered_sum(parts) / m - r * r, 0.0)
        mean = (mean + r).astype(x.dtype)
        var = var.astype(x.dtype)
        inv = 1.0 / np.sqrt(var + eps)
        self.mean, self.inv = mean, inv
        self.r = (mean64 - mean).astype(x.dtype)  # (what x - mean misses: see the VJP)
        _stats["mean"], _stats["var"] = mean, var
        scale = (wb[0] * inv if affine else inv).astype(x.dtype, copy=False)
        # y = (x - mean) * scale + shift, from y = x - the first mean: shift - r * scale
        shift = (wb[1] if affine else 0.0) - r * scale
        shift = shift.astype(x.dtype, copy=False)[:, None]
        scale = scale[:, None]

        def normalise(s):
            y[s] *= scale
            y[s] += shift

        _chunked(n, per_sample, normalise)
        return y.reshape(x.shape)

    def vjp(self, g):
        x = self.inputs[0]
        affine = self.args["affine"]
        if is_grad_enabled():
            return self._composed(g)
        n, c = x.shape[:2]
        x3 = x.data.reshape(n, c, -1)
        g3 = g.data.reshape(n, c, -1)
        dt = x3.dtype
        m = x3.shape[2] * n
        per_sample = x3[0].nbytes
        mean = self.mean.astype(dt, copy=False)[:, None]
        g_parts: dict[int, np.ndarray] = {}
        gx_parts: dict[int, np.ndarray] = {}
        local = threading.local()

        def centred(s) -> np.ndarray:  # x - mean of chunk s, in this thread's buffer
            buf = getattr(local, "buf", None)
            if buf is None or buf.shape[0] < s.stop - s.start:
                buf = local.buf = np.empty((s.stop - s.start,) + x3.shape[1:], dtype=dt)
            out = buf[: s.stop - s.start]
            np.subtract(x3[s], mean, out=out)
            return out

        def sums(s):
            xc = centred(s)
            g_parts[s.start] = _channel_sums(g3[s])
            gx_parts[s.start] = _channel_sums(g3[s], xc)

        _chunked(n, per_sample, sums)
        # x - mean is exact in floating point (Sterbenz) but misses r, the rounding of the
        # mean to x's dtype: xhat = (xc - r) * inv. Corrected here (the sums in float64) as
        # in the forward; without, grad x was 4-50x less accurate than PyTorch's at an
        # offset of 1e4.
        r = self.r.astype(np.float64)
        gb = _ordered_sum(g_parts)
        gw = (_ordered_sum(gx_parts) - r * gb) * self.inv  # sum g * xhat
        a = self.inv * (self.inputs[1].data if affine else 1.0)
        k = a * gw * self.inv / m
        shift = (a * gb / m - k * r).astype(dt, copy=False)[:, None]
        k = k.astype(dt, copy=False)[:, None]
        a = a.astype(dt, copy=False)[:, None]
        gx = np.empty_like(x3)

        def grad(s):
            xc = centred(s)
            xc *= k
            np.multiply(g3[s], a, out=gx[s])
            gx[s] -= xc
            gx[s] -= shift

        _chunked(n, per_sample, grad)
        out = [const(gx.reshape(x.shape)) if self.needs_grad[0] else None]
        if affine:
            out += [const(gw.astype(x.dtype, copy=False)) if self.needs_grad[1] else None]
            out += [const(gb.astype(x.dtype, copy=False)) if self.needs_grad[2] else None]
        return tuple(out)

    def _composed(self, g):
        """The same VJP as Tensor ops of x, w and g (a recorded backward)."""
        x = self.inputs[0]
        affine, eps = self.args["affine"], self.args["eps"]
        dims = (0,) + tuple(range(2, x.ndim))
        bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        m = x.size // x.shape[1]
        mean = x.mean(dims, keepdim=True)
        inv = (x.var(dims, correction=0, keepdim=True) + eps) ** -0.5
        xhat = (x - mean) * inv
        gb = g.sum(dims, keepdim=True)
        gw = (g * xhat).sum(dims, keepdim=True)
        a = inv * self.inputs[1].reshape(bshape) if affine else inv
        gx = a * (g - gb / m - xhat * (gw / m))
        out = [gx if self.needs_grad[0] else None]
        if affine:
            out += [gw.reshape(x.shape[1]) if self.needs_grad[1] else None]
            out += [gb.reshape(x.shape[1]) if self.needs_grad[2] else None]
        return tuple(out)


class BatchNormEval(Op):
    """y = (x - mean) * a + b with the running statistics (constants), a = w / sqrt(var +
    eps) per channel: one subtraction and two passes in place (the four separate ops of
    the formula made an array each: eval-mode batch norm was 4-5x PyTorch's time).

    VJP: gx = g a; gw = sum g (x - mean) / sqrt(var + eps); gb = sum g (over N and space).
    """

    name = "batch_norm"

    @staticmethod
    def inplace_reads(needs, recording):  # x for w's gradient, w for x's
        return (len(needs) > 1 and needs[1],) + ((needs[0], False) if len(needs) == 3 else ())

    def forward(self, x, *wb, mean, inv):
        y = np.empty(np.broadcast_shapes(x.shape, mean.shape), dtype=np.result_type(x, mean))
        scale = wb[0].reshape(mean.shape) * inv if wb else inv
        shift = wb[1].reshape(mean.shape) if wb else None

        def run(s):  # the three passes over a block while it is in cache
            np.subtract(x[s], mean, out=y[s])
            y[s] *= scale
            if shift is not None:
                y[s] += shift

        _chunked(x.shape[0], x[:1].nbytes, run)
        return y

    def vjp(self, g):
        x = self.inputs[0]
        mean, inv = self.args["mean"], self.args["inv"]
        need = self.needs_grad
        dims = (0,) + tuple(range(2, x.ndim))
        c = x.shape[1]
        if is_grad_enabled():
            scale = const(inv) * self.inputs[1].reshape(mean.shape) if len(need) > 1 else const(inv)
            out = [g * scale if need[0] else None]
            if len(need) > 1:
                xhat = (x - const(mean)) * const(inv)
                out += [(g * xhat).sum(dims).reshape(c) if need[1] else None]
                out += [g.sum(dims).reshape(c) if need[2] else None]
            return tuple(out)
        gd = g.data
        scale = self.inputs[1].data.reshape(mean.shape) * inv if len(need) > 1 else inv
        out = [const(gd * scale) if need[0] else None]
        if len(need) > 1:  # the sums a block of samples at a time (x - mean, times g, made
            # whole were three input-sized temporaries beside gx), in float64 across blocks
            n = x.shape[0]
            x3, m3 = x.data.reshape(n, c, -1), mean.reshape(1, c, 1)
            gw_parts: dict[int, np.ndarray] = {}
            gb_parts: dict[int, np.ndarray] = {}

            step = max(1, BN_CHUNK_BYTES // max(x3[:1].nbytes, 1))

            def sums(s):  # (a thread's share in chunks too: x - mean of a whole share was
                for n0 in range(s.start, s.stop, step):  # half the input per thread)
                    b = slice(n0, min(s.stop, n0 + step))
                    g3 = gd[b].reshape(b.stop - b.start, c, -1)
                    if need[1]:
                        gw_parts[b.start] = _channel_sums(g3, x3[b] - m3)
                    if need[2]:
                        gb_parts[b.start] = _channel_sums(g3)

            _chunked(n, x3[:1].nbytes, sums)
            gw = _ordered_sum(gw_parts) * inv.reshape(c) if need[1] else None
            gb = _ordered_sum(gb_parts) if need[2] else None
            out += [None if gw is None else const(gw.astype(x.dtype)),
                    None if gb is None else const(gb.astype(x.dtype))]  # fmt: skip
        return tuple(out)


def _batch_norm_in_float32(x, rm, rv, weight, bias, training, momentum, eps) -> Tensor:
    """``batch_norm`` of float16 ``x`` computed in float32: the result, the gradients and
    the running statistics (updated in place) rounded to float16 once."""
    rm32, rv32 = (None if r is None else r.astype(np.float32) for r in (rm, rv))
    # (its backward reads x for w's gradient and w for x's: their in-place checks)
    x32 = WidenRead.apply(x, dtype=np.dtype(np.float32), of="batch_norm")
    w32 = None if weight is None else WidenRead.apply(weight, dtype=x32.dtype, of="batch_norm")
    b32 = None if bias is None else bias.astype(np.float32)
    out = batch_norm(x32, rm32, rv32, w32, b32, training, momentum, eps)
    for r, r32 in ((rm, rm32), (rv, rv32)):
        if r is not None and training:
            r[...] = r32
    return out.astype(np.float16)


def _stat_array(t: Any, C: int, what: str) -> np.ndarray | None:
    if t is None:
        return None
    arr = t.data if isinstance(t, Tensor) else t
    if not isinstance(arr, np.ndarray) or arr.shape != (C,):
        shape = tuple(np.shape(arr))
        raise ValueError(f"batch_norm: {what} must have shape ({C},), got {shape}")
    return arr


def batch_norm(
    input: Tensor,
    running_mean: Tensor | np.ndarray | None,
    running_var: Tensor | np.ndarray | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each channel of ``input`` (N, C, *spatial): y = (x - mean) / sqrt(var + eps)
    * weight + bias.

    Training: mean and biased variance over every dim but C (the batch statistics); the
    running statistics, when given, are updated in place with
    ``r = (1 - momentum) * r + momentum * s`` using the unbiased variance, as PyTorch.
    Evaluation: ``running_mean`` and ``running_var`` are used. The gradient flows through
    the batch statistics, not through the running ones.

    >>> import tinygrad_np as tg
    >>> x = tg.Tensor([[1.0], [3.0]])
    >>> batch_norm(x, None, None, training=True, eps=0.0).tolist()
    [[-1.0], [1.0]]
    """
    float_input(input, "batch_norm")
    if input.ndim < 2:
        raise ValueError(
            f"batch_norm: input must be (N, C, *spatial), got shape {tuple(input.shape)}"
        )
    momentum = number_arg(momentum, "batch_norm", "momentum")
    eps = number_arg(eps, "batch_norm", "eps")
    if eps < 0:
        raise ValueError(f"batch_norm: eps must be >= 0, got {eps}")
    C = input.shape[1]
    rm = _stat_array(running_mean, C, "running_mean")
    rv = _stat_array(running_var, C, "running_var")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (not isinstance(t, Tensor) or t.shape != (C,)):
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"batch_norm: {name} must be a Tensor of shape ({C},), got {got}")
    for name, a in (("weight", weight), ("bias", bias), ("running_mean", rm),
                    ("running_var", rv)):  # fmt: skip
        if a is not None and a.dtype != input.dtype:
            raise ValueError(
                f"batch_norm: input is {input.dtype} but {name} is {a.dtype} (convert one: "
                "model.double() or x.float())"
            )
    if input.dtype is FLOAT16:  # in float32, rounded once, as PyTorch: in float16 the
        # squares' sums overflowed (every output 0), a variance over 65504 did, and x - mean
        # and the gradients' sums lost most of their digits
        return _batch_norm_in_float32(input, rm, rv, weight, bias, training, momentum, eps)
    bshape = (1, C) + (1,) * (input.ndim - 2)  # broadcasts a (C,) vector over N and spatial
    dims = (0,) + tuple(range(2, input.ndim))
    if input.size == 0:  # an empty batch (or no channels): an empty output (as PyTorch),
        y = input * 1  # the running statistics unchanged, zero gradients for weight and bias
        if weight is not None:
            y = y * weight.reshape(bshape)
        return y if bias is None else y + bias.reshape(bshape)
    if training:
        n = input.size // C
        if n <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input "
                f"of shape {tuple(input.shape)}"
            )
        # one op for weight and bias (or neither) of x's dtype; else the composed ops below
        fused = (weight is None) == (bias is None) and all(
            t is None or t.dtype == input.dtype for t in (weight, bias)
        )
        if not fused:
            mean = input.mean(dims, keepdim=True)  # (1, C, 1...)
            var = input.var(dims, correction=0, keepdim=True)  # biased: used to normalise
            stats = {"mean": mean.data.reshape(C), "var": var.data.reshape(C)}
        else:
            stats: dict = {}
            wb = () if weight is None else (weight, bias)
            out = BatchNormTrain.apply(input, *wb, eps=eps, affine=bool(wb), _stats=stats)
        if rm is not None:
            rm *= 1.0 - momentum
            rm += momentum * stats["mean"].astype(rm.dtype, copy=False)
        if rv is not None:
            unbiased = stats["var"] * (n / (n - 1))
            rv *= 1.0 - momentum
            rv += momentum * unbiased.astype(rv.dtype, copy=False)
        if fused:
            return out
    else:
        if rm is None or rv is None:
            raise ValueError(
                "batch_norm: running_mean and running_var are needed when not training"
            )
        if (weight is None) == (bias is None):  # one op (the running statistics constants)
            # (copies: a training step before this op's backward updates rm in place)
            m = rm.astype(input.dtype, copy=True).reshape(bshape)
            inv = (1.0 / np.sqrt(rv.astype(np.float64) + eps)).astype(input.dtype)
            wb = () if weight is None else (weight, bias)
            return BatchNormEval.apply(input, *wb, mean=m, inv=inv.reshape(bshape))
        mean = Tensor._make(rm.astype(input.dtype, copy=True).reshape(bshape), False, None)
        var = Tensor._make(rv.astype(input.dtype, copy=True).reshape(bshape), False, None)
    out = (input - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(bshape)
    if bias is not None:
        out = out + bias.reshape(bshape)
    return out
