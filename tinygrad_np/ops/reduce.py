"""Reductions: sum, mean, var, max/min (with indices), argmax."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from tinygrad_np.autograd import Op, is_grad_enabled
from tinygrad_np.ops.elementwise import WidenRead, const, select
from tinygrad_np.tensor import FLOAT16, Tensor

values_indices = namedtuple("values_indices", ["values", "indices"])


def normalize_dims(dim, ndim: int, what: str) -> tuple[int, ...]:
    """``dim`` (None, int or tuple) as a sorted tuple of non-negative axes (None: all)."""
    if dim is None:
        return tuple(range(ndim))
    if not isinstance(dim, (int, np.integer, tuple, list)) or isinstance(dim, (bool, np.bool_)):
        raise TypeError(f"{what}: dim must be an int or a tuple of ints, got {dim!r}")
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"{what}: dim must be an int or a tuple of ints, got {dim!r}")
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise ValueError(f"{what}: dim {d} is out of range for a tensor with {ndim} dims")
        out.append(int(d) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: dim {dim!r} names an axis twice")
    return tuple(sorted(out)) if ndim else ()


def _all_if_empty(dim):
    """PyTorch's sum, mean and var reduce every dim for ``dim=()`` (not none, as NumPy)."""
    return None if isinstance(dim, (tuple, list)) and len(dim) == 0 else dim


def _keep_shape(shape: tuple[int, ...], dims: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


# NumPy adds pairwise only along the innermost loop, the last axis (and the reduced axes
# contiguous with it); every other summed axis is added one slice after another, whose
# rounding grows with its length: the mean of 250,000 float32 rows near 1e4 along dim 0
# came out 1e4 ulps off (PyTorch: 1). A float32 or float16 sum with more than this many
# such steps is added in float64 instead (twice the time of the float32 sum, for sums
# that long only).
SERIAL_SUM_LIMIT = 256


def _serial_steps(x: np.ndarray, dims: tuple[int, ...]) -> int:
    """How many slices NumPy adds one after another to sum ``x`` over ``dims``."""
    steps = 1
    for d in dims:
        steps *= x.shape[d]
    if x.flags.c_contiguous and dims and dims[-1] == x.ndim - 1:  # a pairwise inner run
        run = x.ndim - 1
        while run - 1 in dims:
            run -= 1
        for d in range(run, x.ndim):
            steps //= max(x.shape[d], 1)
    return steps


# Rows along the last axis up to this long (attention scores, class logits, a softmax's
# VJP) are summed as a product with a vector of ones, and their maxima found by np.argmax:
# NumPy's sum and max pay per row (rows of 64: the product 4x, argmax 1.8x as fast; the
# same values, NaN included). A speed hunt found softmax on (32, 4, 64, 64) 4.4x PyTorch's
# time, and sum(-1) of rows of 64 5.5x.
SHORT_ROW = 512


def short_rows(x: np.ndarray, axis: int) -> bool:
    """Whether ``x`` reduced over ``axis`` takes the short rows' routes (above)."""
    return (
        axis == x.ndim - 1
        and 1 < x.shape[-1] <= SHORT_ROW  # (rows of 1: the product is 7x np.sum's time)
        and x.dtype in (np.float32, np.float64)
        and x.flags.c_contiguous
    )


def add_up(x: np.ndarray, dim: tuple[int, ...], keepdim: bool = False) -> np.ndarray:
    """np.sum over ``dim``, in float64 where a float32 sum would add more than
    SERIAL_SUM_LIMIT slices one after another (``Sum``'s forward, for VJPs in NumPy);
    short rows (``short_rows``) as a product with a vector of ones."""
    if x.dtype is FLOAT16:  # in float32, as PyTorch: float16 partial sums overflow past
        # 65504 and stop growing (5000 ones summed down the rows came to 2048)
        return np.sum(x, axis=dim, keepdims=keepdim, dtype=np.float32).astype(np.float16)
    if len(dim) == 1 and x.ndim > 1 and short_rows(x, dim[0]):
        s = np.matmul(x, np.ones(x.shape[-1], x.dtype))
        return s[..., None] if keepdim else s
    if (
        x.size > SERIAL_SUM_LIMIT  # (a cheap test first: this runs for every sum)
        and x.dtype in (np.float32, np.float16)
        and _serial_steps(x, dim) > SERIAL_SUM_LIMIT
    ):
        return np.sum(x, axis=dim, keepdims=keepdim, dtype=np.float64).astype(x.dtype)
    return np.sum(x, axis=dim, keepdims=keepdim)


# Rows a block of ``leading_sum`` adds in float32 before the blocks' sums go to float64.
LEADING_BLOCK = 64


def leading_sum(x: np.ndarray, float64: bool = False) -> np.ndarray:
    """The sum of a 2-d float ``x`` over its rows (a bias gradient): ``add_up``'s, but
    for many float32 or float16 rows in blocks of LEADING_BLOCK rows, each summed in the
    dtype (a product with ones, or a reduce where the blocks are many and wide), the
    blocks' sums added in float64. At PyTorch's error (1e-7 relative on zero-mean data)
    and 1-6x faster than a float64 sum down the rows: (4096, 64) 125 -> 23 us, (4096, 1024)
    2571 -> 623, (200000, 3) 3760 -> 474 (nineteenth session). With ``float64`` the sum
    is returned in float64 (for callers that add such sums up further)."""
    n, c = x.shape
    short = x.dtype in (np.float32, np.float16)
    if float64 and short and n > SERIAL_SUM_LIMIT and not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)  # (accuracy asked for: the blocks need a copy)
    if n <= SERIAL_SUM_LIMIT or not short or (
        not x.flags.c_contiguous  # (the blocks' reshape would copy: a sum's broadcast g,
    ):  # which add_up sums without one)
        if float64:
            return (np.ones(n, dtype=x.dtype) @ x).astype(np.float64, copy=False)
        return add_up(x, (0,))
    b = LEADING_BLOCK
    m = n // b * b
    blocks = x[:m].reshape(n // b, b, c)
    if n // b <= 256 or c < 64:  # (a stacked product: one BLAS call a block)
        part = np.matmul(np.ones(b, dtype=x.dtype), blocks)
    else:
        part = np.add.reduce(blocks, axis=1)
    total = part.sum(axis=0, dtype=np.float64)
    if m < n:
        total += x[m:].sum(axis=0, dtype=np.float64)
    return total if float64 else total.astype(x.dtype)


class Sum(Op):
    """y = sum of x over dims.   VJP: gx = g (with the summed dims restored) expanded to x."""

    saves_inputs = False

    def forward(self, x, *, dim, keepdim):
        if x.dtype.kind == "u" and x.dtype.itemsize < 8:  # int64, as PyTorch (NumPy: uint64,
            return np.sum(x, axis=dim, keepdims=keepdim, dtype=np.int64)  # which wraps below 0)
        return add_up(x, dim, keepdim)

    def vjp(self, g):
        x = self.inputs[0]
        return (g.reshape(_keep_shape(x.shape, self.args["dim"])).expand(x.shape),)


def sum_(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    dims = normalize_dims(_all_if_empty(dim), x.ndim, "sum")
    return Sum.apply(x, dim=dims, keepdim=keepdim)


def mean(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Mean over ``dim`` (all dims when None)."""
    if x.dtype.kind not in "fc":
        raise TypeError(f"mean needs a floating-point tensor, got dtype {x.dtype}")
    dims = normalize_dims(_all_if_empty(dim), x.ndim, "mean")
    if x.dtype is FLOAT16:  # (divided in float32: a sum of 8192 values of 16 is inf in
        return mean(x.astype(np.float32), dims, keepdim).astype(np.float16)  # float16)
    n = int(np.prod([x.shape[d] for d in dims])) if dims else 1
    return Sum.apply(x, dim=dims, keepdim=keepdim) * (1.0 / max(n, 1) if n else float("nan"))


def var(x: Tensor, dim=None, correction: int = 1, keepdim: bool = False) -> Tensor:
    """Variance over ``dim`` with ``correction`` (1: unbiased, 0: population).

    Computed from d = x - m, m the mean rounded to x's dtype and held constant, as
    (sum d^2 - (sum d)^2 / n) / (n - correction): an identity for any constant m, so every
    derivative is exact, and the second term takes out the mean's rounding, which
    sum d^2 / n alone would add squared (float32 data near 1e6 came out 4e4 ulps off)."""
    dims = normalize_dims(_all_if_empty(dim), x.ndim, "var")
    if x.dtype is FLOAT16:  # (in float32, as PyTorch: the squares' sum overflows float16;
        # its backward reads x there, so a change to x in place raises: WidenRead)
        x32 = WidenRead.apply(x, dtype=np.dtype(np.float32), of="var")
        return var(x32, dims, correction, keepdim).astype(np.float16)
    n = int(np.prod([x.shape[d] for d in dims])) if dims else 1
    denom = max(n - correction, 0)
    scale = 1.0 / denom if denom else float("inf")
    if n == 0:
        d = x - mean(x, dims, keepdim=True)
        return Sum.apply(d * d, dim=dims, keepdim=keepdim) * scale
    d = x - mean(x, dims, keepdim=True).detach()
    s1 = Sum.apply(d, dim=dims, keepdim=keepdim)
    return (Sum.apply(d * d, dim=dims, keepdim=keepdim) - s1 * s1 * (1.0 / n)) * scale


class MaxMin(Op):
    """y = max (or min) over dims.   VJP: g routed to the first extreme element of each slice."""

    saves_inputs = False

    name = "max"

    def forward(self, x, *, dims, keepdim, largest, _indices=None):
        if any(x.shape[d] == 0 for d in dims):
            raise ValueError(
                f"max/min over an empty dim (shape {x.shape}, dims {dims}): no element to pick"
            )
        # move the reduced dims last, flatten them, and take the first arg-extreme (on the
        # contiguous copy: NumPy's argmax along a leading axis of 4096 x 4096 took 305 ms)
        rest = [i for i in range(x.ndim) if i not in dims]
        reduced = int(np.prod([x.shape[d] for d in dims]))  # (not -1: x may be empty)
        xt = x.transpose(rest + list(dims)).reshape([x.shape[i] for i in rest] + [reduced])
        idx = xt.argmax(-1) if largest else xt.argmin(-1)
        self.rest, self.reduced = rest, reduced
        self.indices = idx
        if _indices is not None:  # (the caller's indices, without a second argmax)
            _indices.append(idx)
        out = np.take_along_axis(xt, idx[..., None], -1)[..., 0]
        if keepdim:
            out = out.reshape(_keep_shape(x.shape, dims))
        return out

    def _spread(self, values: np.ndarray) -> np.ndarray:
        """An array of x's shape: ``values`` (the reduced shape) at each slice's extreme,
        zeros elsewhere (+0: an inf or nan value stays at its place)."""
        shape = self.inputs[0].shape
        rest, dims = self.rest, self.args["dims"]
        if len(dims) == 1:  # in x's own layout: no transposed copy back
            (d,) = dims
            out = np.zeros(shape, dtype=values.dtype)
            at = np.expand_dims(self.indices, d)
            np.put_along_axis(out, at, np.expand_dims(values, d), d)
            return out
        flat = np.zeros([shape[i] for i in rest] + [self.reduced], dtype=values.dtype)
        np.put_along_axis(flat, self.indices[..., None], values[..., None], -1)
        out = flat.reshape([shape[i] for i in rest] + [shape[i] for i in dims])
        return np.ascontiguousarray(out.transpose(np.argsort(rest + list(dims))))

    def vjp(self, g):
        x = self.inputs[0]
        if not is_grad_enabled():
            rest_shape = [x.shape[i] for i in self.rest]
            return (const(self._spread(g.data.reshape(rest_shape))),)
        mask = self._spread(np.ones(self.indices.shape, dtype=bool))
        g = g.reshape(_keep_shape(x.shape, self.args["dims"]))
        return (select(g, mask),)


def _extreme(x: Tensor, dim, keepdim: bool, largest: bool):
    what = "max" if largest else "min"
    if dim is None:
        return MaxMin.apply(x, dims=tuple(range(x.ndim)), keepdim=keepdim, largest=largest)
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{what}: dim must be an int, got {dim!r}")
    normalize_dims(dim, x.ndim, what)  # (range check)
    if x.ndim == 0:  # a 0-d tensor is its own extreme along dim 0 (or -1), at index 0
        out = MaxMin.apply(x, dims=(), keepdim=False, largest=largest)
        return values_indices(out, const(np.zeros((), dtype=np.int64)))
    (d,) = normalize_dims(dim, x.ndim, what)
    found: list = []
    op_out = MaxMin.apply(x, dims=(d,), keepdim=keepdim, largest=largest, _indices=found)
    idx = found[0].reshape(op_out.shape)
    return values_indices(op_out, const(idx.astype(np.int64)))


def max_(x: Tensor, dim=None, keepdim: bool = False):
    """Max of all elements (a Tensor), or along ``dim`` a ``(values, indices)`` named tuple."""
    return _extreme(x, dim, keepdim, largest=True)


def min_(x: Tensor, dim=None, keepdim: bool = False):
    """Min of all elements (a Tensor), or along ``dim`` a ``(values, indices)`` named tuple."""
    return _extreme(x, dim, keepdim, largest=False)


def _arg_extreme(x: Tensor, dim, keepdim: bool, what: str) -> Tensor:
    """argmax or argmin (``what``): the index of the first extreme, over the flattened
    tensor when ``dim`` is None (with ``keepdim``: a 1 for every dim, as PyTorch)."""
    find = getattr(x.data, what)
    if dim is None:
        flat = np.asarray(find(), dtype=np.int64)
        return const(flat.reshape((1,) * x.ndim) if keepdim else flat)
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{what}: dim must be an int or None, got {dim!r}")
    normalize_dims(dim, x.ndim, what)  # (range check)
    if x.ndim == 0:
        return const(np.zeros((), dtype=np.int64))
    (d,) = normalize_dims(dim, x.ndim, what)
    return const(find(axis=d, keepdims=keepdim).astype(np.int64))


def argmax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the first maximum (over the flattened tensor when ``dim`` is None)."""
    return _arg_extreme(x, dim, keepdim, "argmax")


def argmin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the first minimum (over the flattened tensor when ``dim`` is None)."""
    return _arg_extreme(x, dim, keepdim, "argmin")
