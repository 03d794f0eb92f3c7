"""Activations and (log-)softmax: forward and VJP side by side."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import special

from tinygrad_np import _parallel as par
from tinygrad_np.autograd import Op, is_grad_enabled
from tinygrad_np.ops.elementwise import (
    Exp,
    NarrowKept,
    WidenRead,
    blend,
    const,
    select,
    tie,
    zero_where,
)
from tinygrad_np.ops.reduce import add_up, short_rows
from tinygrad_np.tensor import FLOAT16, Tensor, float_input, number_arg

_ZEROS: dict = {}


def _zeros(dtype) -> np.ndarray:
    """A read-only run of RELU_CHUNK zeros of ``dtype`` (relu's other operand)."""
    z = _ZEROS.get(dtype)
    if z is None:
        z = _ZEROS[dtype] = np.zeros(RELU_CHUNK, dtype)
        z.flags.writeable = False
    return z


# relu takes the maximum against a run of zeros this long, a chunk at a time: NumPy's
# maximum with a 0-d zero has no vector loop (1M float32 entries: 0.39 ms, 0.19 this way)
RELU_CHUNK = 1 << 15


class Relu(Op):
    """y = max(x, 0) (NaN stays NaN).   VJP: gx = g where x > 0 or x is NaN (as PyTorch),
    else 0."""

    saves_inputs = False
    keeps_output = True  # (its VJP reads y > 0: a change to y in place must raise)

    def forward(self, x):
        out = np.empty(x.shape, dtype=x.dtype)
        flat_x, flat_out = x.reshape(-1), out.reshape(-1)  # large ones split onto threads
        zeros = _zeros(x.dtype)  # (NumPy's maximum against a 0-d zero takes 2.2x as long)
        step = zeros.size

        def run(s):
            for i in range(s.start, s.stop, step):
                j = min(i + step, s.stop)
                np.maximum(flat_x[i:j], zeros[: j - i], out=flat_out[i:j])

        par.for_slices(x.size, run, x.size)
        self.out = out  # the output: no extra memory
        return out

    def vjp(self, g):
        if not is_grad_enabled():  # g where y > 0 (exactly where x > 0), else 0
            gd = g.data
            if gd.shape != self.out.shape or gd.dtype.kind != "f":
                return (select(g, ~(self.out <= 0)),)
            out = np.empty(gd.shape, dtype=gd.dtype)
            flat_g, flat_y, flat_out = gd.reshape(-1), self.out.reshape(-1), out.reshape(-1)

            def run(s):  # (a select: an inf g where y <= 0 gives 0, not nan)
                zero_where(flat_g[s], flat_y[s] <= 0, out=flat_out[s])

            par.for_slices(gd.size, run, gd.size)
            return (const(out),)
        y = self.saved_output(lambda: self.inputs[0].relu())
        return (select(tie(g, y), ~(self.out <= 0)),)  # (a NaN x passes g on, as PyTorch)


class LeakyRelu(Op):
    """y = x if x > 0 else a*x.   VJP: gx = g * (1 if x > 0 else a)."""

    saves_inputs = False

    name = "leaky_relu"

    def forward(self, x, *, negative_slope):
        # (in x's dtype, without np.where, which took 12x the time of relu: max(x, a*x)
        # for 0 < a <= 1, min for a > 1; NaN stays NaN in both; a = 0 would make inf * 0)
        self.pos = x > 0
        scaled = np.multiply(x, np.asarray(negative_slope, x.dtype), out=np.empty_like(x))
        if 0 < negative_slope <= 1:
            return np.maximum(x, scaled, out=scaled)
        if negative_slope > 1:
            return np.minimum(x, scaled, out=scaled)
        return blend(scaled, x, self.pos)

    def vjp(self, g):
        slope = np.asarray(self.args["negative_slope"], g.dtype)
        if not is_grad_enabled():
            gd = g.data
            return (const(blend(gd * slope, gd, self.pos)),)
        return (tie(g, self.inputs[0]) * const(np.where(self.pos, np.ones((), g.dtype), slope)),)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """Leaky ReLU: ``x`` for positive ``x``, ``negative_slope * x`` otherwise."""
    float_input(input, "leaky_relu")
    negative_slope = number_arg(negative_slope, "leaky_relu", "negative_slope")
    return LeakyRelu.apply(input, negative_slope=negative_slope)


# SciPy's expit runs one scalar loop: 3.4 ms a million float32 entries on one thread,
# where 1 / (1 + e^-x) in four NumPy passes over cache-sized chunks takes 0.9 and splits
# over the threads. Both round the same way: within 3.2 float32 ulps of the float64
# sigmoid over the normal range (SciPy's 2.3, PyTorch's 2.3; 0.5 on average against 0.43),
# and both give 0 below x = -88.7, where e^-x overflows (the true value is subnormal).
# Under SIGMOID_SMALL entries the four calls cost more than SciPy's one.
SIGMOID_SMALL = 4096


def sigmoid32(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) of a float32 array, ``by_chunks``."""
    return by_chunks(_sigmoid_chunk, x)


def _sigmoid_chunk(out, x) -> None:
    with np.errstate(over="ignore"):  # (e^-x past float32's range: inf, and 0 after; set
        np.negative(x, out=out)  # on each thread, whose settings are its own)
        np.exp(out, out=out)
        out += np.float32(1)
        np.divide(np.float32(1), out, out=out)


def by_chunks(fn, *arrays: np.ndarray) -> np.ndarray:
    """``fn(out, *pieces)`` over PHI_CHUNK-long pieces of the flattened arrays (all of one
    shape; the result takes the first one's dtype), split over the threads: the passes of
    a piece find it in the cache, where whole-array expressions go through memory once a
    pass, with a temporary each, on one thread."""
    flats = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    out = np.empty(arrays[0].shape, arrays[0].dtype)
    flat_out = out.reshape(-1)

    def run(s: slice) -> None:
        for i in range(s.start, s.stop, PHI_CHUNK):
            j = min(i + PHI_CHUNK, s.stop)
            fn(flat_out[i:j], *[f[i:j] for f in flats])

    par.for_slices(flat_out.size, run, flat_out.size)
    return out


def _chunkable(y: np.ndarray, g: np.ndarray) -> bool:
    """Whether a VJP factor of y times g goes ``by_chunks`` (large, one float dtype)."""
    return (
        y.size >= PHI_SMALL and y.shape == g.shape and y.dtype == g.dtype
        and y.dtype.kind == "f" and y.dtype.itemsize >= 4
    )  # fmt: skip


def _sigmoid_grad(out, y, g) -> None:  # g (y (1 - y)), as the whole-array expression
    np.subtract(1, y, out=out)
    out *= y
    out *= g


def _tanh_grad(out, y, g) -> None:  # g (1 - y y), as the whole-array expression
    np.multiply(y, y, out=out)
    np.subtract(1, out, out=out)
    out *= g


class Sigmoid(Op):
    """y = 1 / (1 + e^-x).   VJP: gx = g * y * (1 - y)."""

    saves_inputs = False  # (its VJP reads y, recorded too)
    keeps_output = True

    def forward(self, x):
        if x.dtype == np.float32 and x.size >= SIGMOID_SMALL:
            self.out = sigmoid32(x)
        else:  # (SciPy computes float16 in float32 and returns that: x's dtype again)
            self.out = special.expit(x).astype(x.dtype, copy=False)
        return self.out

    def vjp(self, g):
        if not is_grad_enabled():  # not recorded: the factor is a constant, made in NumPy
            if _chunkable(self.out, g.data):
                return (const(by_chunks(_sigmoid_grad, self.out, g.data)),)
            return (g * const(self.out * (1 - self.out)),)
        y = self.saved_output(lambda: self.inputs[0].sigmoid())
        return (g * y * (1 - y),)


class Tanh(Op):
    """y = tanh x.   VJP: gx = g * (1 - y^2)."""

    saves_inputs = False  # (its VJP reads y, recorded too)
    keeps_output = True

    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def vjp(self, g):
        if not is_grad_enabled():  # not recorded: the factor is a constant, made in NumPy
            if _chunkable(self.out, g.data):
                return (const(by_chunks(_tanh_grad, self.out, g.data)),)
            return (g * const(1 - self.out * self.out),)
        y = self.saved_output(lambda: self.inputs[0].tanh())
        return (g * (1 - y * y),)


class Erf(Op):
    """y = erf x.   VJP: gx = g * 2/sqrt(pi) * e^(-x^2)."""

    def forward(self, x):
        return special.erf(x).astype(x.dtype, copy=False)  # (float16 as above)

    def vjp(self, g):
        x = self.inputs[0]
        return (g * (2 / math.sqrt(math.pi)) * (-(x * x)).exp(),)


_SQRT1_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_TANH_C = math.sqrt(2 / math.pi)

# The normal CDF Phi for float32, from NumPy's vectorised exp instead of SciPy's erf (11 ns
# an entry, 20x PyTorch's whole GELU). With a = |x|/sqrt(2), t = 1/(1 + PHI_P a), u = t - 1,
#     erfc(a) = t exp(S(u) - a^2),   Phi(x) = 1 - erfc(a)/2 (x >= 0) or erfc(a)/2 (x < 0),
# where S is a degree-9 polynomial with S(0) = 0 (the coefficients of u^9 to u^1 below),
# fitted by iteratively reweighted least squares to log(erfc(a) / t) + a^2 on 400,001
# points of a in [0, 9.3]: its error, erfc's relative error, is at most 3e-8. Evaluated in
# float32 the rounding of a^2 in the exponent dominates: erfc's relative error grows to
# about a^2 * 6e-8. Phi for x < 0 comes from erfc itself, not from 1 + erf(x/sqrt 2), so
# the tail keeps its relative accuracy: Phi is within 3 float32 ulps for x >= 0, GELU
# within 6 (x Phi rounded again; PyTorch's 5) and 28 for x >= -4 (one on average), where
# 0.5 (1 + erf) in float32 loses up to 4,000 ulps in the tail (PyTorch's up to 66,000).
PHI_P = 0.65
PHI_S = (
    -0.21975122286015042, -0.6877212088593951, -0.7316905531542759, -0.3941698457248974,
    -0.24672743963150484, 0.045528122791325135, 0.05280568609230596, -0.3761213142946293,
    0.7359635144871666,
)
PHI_CHUNK = 1 << 16  # entries a pass: the chunk's five arrays stay in the L2 cache
# below this many entries the 30-odd NumPy calls cost more than SciPy's Phi (correctly
# rounded from float64; 8 ns an entry): 100 entries 22 -> 3 us, 4000 the same
PHI_SMALL = 4096


def phi32(x: np.ndarray) -> np.ndarray:
    """Phi(x) of a float32 array (a new float32 array of its shape), one cache-sized chunk
    at a time, large arrays split over the threads."""
    flat_x = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(x.shape, np.float32)
    flat_out = out.reshape(-1)
    f32 = np.float32
    p, one, half, sqrt1_2 = f32(PHI_P), f32(1), f32(0.5), f32(_SQRT1_2)
    c0, *coefs = (f32(c) for c in PHI_S)

    def run(s: slice) -> None:
        with np.errstate(over="ignore"):  # (a^2 of a huge |x|: inf, and erfc 0, as it is)
            run_chunks(s)

    def run_chunks(s: slice) -> None:
        n = min(PHI_CHUNK, s.stop - s.start)
        a_buf, t_buf = np.empty(n, np.float32), np.empty(n, np.float32)
        q_buf, m_buf = np.empty(n, np.float32), np.empty(n, np.int32)
        for i in range(s.start, s.stop, PHI_CHUNK):
            j = min(i + PHI_CHUNK, s.stop)
            xc, h = flat_x[i:j], flat_out[i:j]
            a, t, q, m = a_buf[: j - i], t_buf[: j - i], q_buf[: j - i], m_buf[: j - i]
            np.abs(xc, out=a)
            a *= sqrt1_2
            np.multiply(a, p, out=t)
            t += one
            np.reciprocal(t, out=t)
            u = np.subtract(t, one, out=q)
            np.multiply(u, c0, out=h)  # S(u) by Horner
            for c in coefs:
                h += c
                h *= u
            a *= a
            h -= a
            np.exp(h, out=h)
            h *= t
            h *= half  # h = erfc(a) / 2
            # Phi = h where x's sign bit is set, else 1 - h, chosen by bits (a mask in
            # where= or np.where takes 25x as long on random signs)
            np.subtract(one, h, out=q)
            np.right_shift(xc.view(np.int32), 31, out=m)  # all ones for x < 0, else 0
            hi, qi = h.view(np.int32), q.view(np.int32)
            np.bitwise_xor(hi, qi, out=hi)
            hi &= m
            hi ^= qi

    par.for_slices(flat_x.size, run, flat_x.size * 34)
    return out


def _gelu_grad(x: np.ndarray, cdf: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g * (Phi(x) + x phi(x)), one cache-sized chunk at a time (large arrays on the
    threads), where x, Phi(x) and g are alike; else in whole-array passes."""
    if x.size < PHI_SMALL or not (
        x.shape == cdf.shape == g.shape and x.dtype == cdf.dtype == g.dtype
    ):  # (small arrays: whole-array passes, fewer calls)
        d = np.multiply(x, x, out=np.empty_like(x))  # (an array for a 0-d x too)
        d *= -0.5
        np.exp(d, out=d)
        d *= x
        d *= _INV_SQRT_2PI
        d += cdf
        return (g * d).astype(g.dtype, copy=False)
    flat_x, flat_cdf = np.ascontiguousarray(x).reshape(-1), cdf.reshape(-1)
    flat_g = np.ascontiguousarray(g).reshape(-1)
    out = np.empty(x.shape, x.dtype)
    flat_out = out.reshape(-1)
    half, scale = x.dtype.type(-0.5), x.dtype.type(_INV_SQRT_2PI)

    def run(s: slice) -> None:
        for i in range(s.start, s.stop, PHI_CHUNK):
            j = min(i + PHI_CHUNK, s.stop)
            xc, d = flat_x[i:j], flat_out[i:j]
            np.multiply(xc, xc, out=d)
            d *= half
            np.exp(d, out=d)
            d *= xc
            d *= scale
            d += flat_cdf[i:j]
            d *= flat_g[i:j]

    par.for_slices(flat_x.size, run, flat_x.size * 8)
    return out


def _gelu_tanh_chunks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tanh u, y) of the tanh GELU of a float32 or float64 array, the same operations in
    the same order as the whole-array expressions, by cache-sized chunks on the threads
    (whole arrays: ten passes through memory with a temporary each, on one thread). (4096,
    1000), two threads, ms: float32 forward 9.1 -> 3.6, forward and backward 22.4 -> 7.9;
    float64 21.6 -> 8.3 and 45.7 -> 14.9; the same bits."""
    flat_x = np.ascontiguousarray(x).reshape(-1)
    t, y = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
    flat_t, flat_y = t.reshape(-1), y.reshape(-1)

    def run(s: slice) -> None:
        buf = np.empty(min(PHI_CHUNK, s.stop - s.start), x.dtype)
        for i in range(s.start, s.stop, PHI_CHUNK):
            j = min(i + PHI_CHUNK, s.stop)
            xc, tc, yc, a = flat_x[i:j], flat_t[i:j], flat_y[i:j], buf[: j - i]
            np.multiply(xc, xc, out=a)  # u = C (x + 0.044715 x^3), x^3 as (x x) x
            a *= xc
            a *= 0.044715
            a += xc
            a *= _TANH_C
            np.tanh(a, out=tc)
            np.multiply(xc, 0.5, out=yc)  # y = (0.5 x) (1 + tanh u)
            np.add(tc, 1, out=a)
            yc *= a

    par.for_slices(flat_x.size, run, flat_x.size)
    return t, y


def _gelu_tanh_grad(out, t, x, g) -> None:
    """g (0.5 (1 + t) + (0.5 C) x (1 - t t) (1 + (3 * 0.044715) x x)), as the whole-array
    expression computes it (for ``by_chunks``)."""
    m = np.multiply(x, 0.5 * _TANH_C)  # ((0.5 C) x) (1 - t t)
    np.multiply(t, t, out=out)
    np.subtract(1, out, out=out)
    m *= out
    np.multiply(x, x, out=out)  # ... (1 + (3 * 0.044715) (x x))
    out *= 3 * 0.044715
    out += 1
    m *= out
    np.add(t, 1, out=out)  # 0.5 (1 + t) + ...
    out *= 0.5
    out += m
    out *= g


class Gelu(Op):
    """y = x * Phi(x) (or its tanh approximation).

    VJP: gx = g * (Phi(x) + x * phi(x)); with approximate="tanh",
    u = c (x + 0.044715 x^3),
    gx = g * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) c (1 + 3*0.044715 x^2)).
    """

    def forward(self, x, *, approximate):
        # tanh u (or Phi(x)) is kept for the backward, which recomputed it (erf takes 11 ns
        # an entry); x^3 as x * x * x, as PyTorch (np.power of a negative float32 base is
        # 60x slower)
        if approximate == "tanh":
            if x.dtype.kind == "f" and x.dtype.itemsize >= 4 and x.size >= PHI_SMALL:
                self.t, y = _gelu_tanh_chunks(x)
                return y
            self.t = np.tanh(_TANH_C * (x + 0.044715 * (x * x * x)))
            return (0.5 * x * (1 + self.t)).astype(x.dtype, copy=False)
        if x.dtype == np.float32 and x.size >= PHI_SMALL:
            self.cdf = phi32(x)
        else:  # (SciPy's Phi, from erfc in the tail: not 1 + erf)
            self.cdf = special.ndtr(x).astype(x.dtype, copy=False)
        with np.errstate(invalid="ignore"):  # (-inf * 0: NaN, as PyTorch, without a warning)
            return x * self.cdf

    def vjp(self, g):
        x = self.inputs[0]
        if not is_grad_enabled():  # not recorded: the factor in NumPy, from the forward's
            xd = x.data
            if self.args["approximate"] == "tanh":
                t = self.t
                if _chunkable(t, g.data):
                    return (const(by_chunks(_gelu_tanh_grad, t, xd, g.data)),)
                d = 0.5 * (1 + t) + (0.5 * _TANH_C) * xd * (1 - t * t) * (
                    1 + (3 * 0.044715) * (xd * xd)
                )
            else:
                return (const(_gelu_grad(xd, self.cdf, g.data)),)
            return (const((g.data * d).astype(g.dtype, copy=False)),)
        if self.args["approximate"] == "tanh":
            t = (_TANH_C * (x + 0.044715 * x * x * x)).tanh()
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _TANH_C * (1 + 3 * 0.044715 * x * x)
        else:
            cdf = 0.5 * (1 + Erf.apply(x * _SQRT1_2))
            pdf = _INV_SQRT_2PI * (-0.5 * x * x).exp()
            d = cdf + x * pdf
        return (g * d,)


def in_float32(fn, x: Tensor, *args, reads: str = "", **kwargs) -> Tensor:
    """``fn(x, *args)`` for float16 ``x``, computed in float32 and its result rounded to
    float16 once, as PyTorch computes float16: in float16, softmax's sum of exponentials
    stopped growing at 2048 (along dim 0: 2.4x the right probability for 5000 entries),
    the tanh GELU's gradient was NaN from |x| = 256 (x * x overflowed), the MSE's squares
    overflowed from a difference of 256. The gradient comes back in float16. ``reads``:
    "input" or "output", what the op's backward reads in PyTorch (a change to it in place
    before backward then raises, as there; see ``elementwise.WidenRead``)."""
    name = fn.__name__
    if reads == "input":
        x32 = WidenRead.apply(x, dtype=np.dtype(np.float32), of=name)
    else:
        x32 = x.astype(np.float32)
    out = fn(x32, *args, **kwargs)
    if reads == "output":
        return NarrowKept.apply(out, dtype=np.dtype(np.float16), of=name)
    return out.astype(np.float16)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """GELU, exact (``approximate="none"``) or the tanh approximation (``"tanh"``)."""
    float_input(input, "gelu")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    if input.dtype is FLOAT16:  # (see in_float32)
        return in_float32(gelu, input, approximate, reads="input")
    return Gelu.apply(input, approximate=approximate)


def _dim(x: Tensor, dim: int, what: str) -> int:
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{what}: dim must be an int, got {dim!r}")
    if not -max(x.ndim, 1) <= dim < max(x.ndim, 1):
        raise ValueError(f"{what}: dim {dim} is out of range for a tensor of shape {x.shape}")
    return int(dim) % max(x.ndim, 1)


def row_max(x: np.ndarray, axis: int) -> np.ndarray:
    """``x.max(axis, keepdims=True)`` (x non-empty along ``axis``)."""
    if x.size and short_rows(x, axis):
        return np.take_along_axis(x, x.argmax(axis=-1)[..., None], -1)
    return x.max(axis=axis, keepdims=True)


def row_sum(e: np.ndarray, axis: int) -> np.ndarray:
    """``e.sum(axis, keepdims=True)`` of exponentials (finite or NaN: no infs meet zeros)."""
    if short_rows(e, axis):
        return np.matmul(e, np.ones(e.shape[-1], e.dtype))[..., None]
    return e.sum(axis=axis, keepdims=True)


class Softmax(Op):
    """y = e^(x - max) / sum e^(x - max).   VJP: gx = y * (g - sum(g * y))."""

    saves_inputs = False  # (its VJP reads y, recorded too)
    keeps_output = True

    def forward(self, x, *, dim):
        if x.shape[dim] == 0:  # nothing to normalize (NumPy's max has no empty reduction)
            self.out = np.empty_like(x)
            return self.out
        e = x - row_max(x, dim)
        np.exp(e, out=e)
        e /= row_sum(e, dim)  # (in place: one array of x's size)
        self.out = e
        return self.out

    def vjp(self, g):
        dim = self.args["dim"]
        if not is_grad_enabled():  # the same sums, with one array of x's size, not three
            y, gd = self.out, g.data
            gx = gd - add_up(gd * y, (dim,), True)  # (as Tensor.sum adds)
            gx *= y
            return (const(gx),)
        y = self.saved_output(lambda: self.inputs[0].softmax(dim))
        return (y * (g - (g * y).sum(dim, keepdim=True)),)


class LogSoftmax(Op):
    """y = x - max - log sum e^(x - max).   VJP: gx = g - softmax(x) * sum(g)."""

    name = "log_softmax"

    @staticmethod
    def inplace_reads(needs, recording):  # the saved softmax, never x
        return (False,)

    def forward(self, x, *, dim):
        if x.shape[dim] == 0:
            self.out = np.empty_like(x)
            return np.empty_like(x)
        z = x - row_max(x, dim)
        e = np.exp(z)
        s = row_sum(e, dim)
        e /= s
        self.out = e  # softmax, for the VJP
        z -= np.log(s)  # (in place: two arrays of x's size, not four)
        return z

    def vjp(self, g):
        dim = self.args["dim"]
        if not is_grad_enabled():  # the same sums, with one array of x's size, not two
            gd = g.data
            gx = self.out * add_up(gd, (dim,), True)  # (as Tensor.sum adds)
            np.subtract(gd, gx, out=gx)
            return (const(gx),)
        # Recorded: the softmax as exp(y) of this node's output y, so that the second-order
        # graph runs through y's node (hooks on y, grad(..., [y]) see it, as in PyTorch,
        # which saves y); recomputing softmax(x) went round it (a hook doubling y's
        # gradient was lost). y's data is not kept: the exp's value is the saved softmax.
        y = Tensor._make(np.broadcast_to(np.zeros((), self.out.dtype), self.out.shape), True, self)
        p = _ExpOfLogSoftmax.apply(y, _p=self.out)
        return (g - p * g.sum(dim, keepdim=True),)


class _ExpOfLogSoftmax(Exp):
    """exp(y) of a log_softmax's output y, whose value (the softmax) that op saved: those
    bits, without y's data. VJP (an exp's): g * the value."""

    name = "exp"

    def forward(self, y, *, _p):
        self.out = _p
        return _p


def implicit_dim(x: Tensor, dim: int | None, what: str, stacklevel: int = 3) -> int:
    """``dim``, or where it is None PyTorch's legacy choice for softmax (dim 0 for 0-, 1-
    and 3-dim inputs, else dim 1: a batch of images' channels), with a warning."""
    if dim is not None:
        return dim
    dim = 0 if x.ndim in (0, 1, 3) else 1
    warnings.warn(
        f"{what} without dim: took dim {dim} for a {x.ndim}-dim input, as PyTorch's legacy "
        "rule does (0 for 0-, 1- and 3-dim inputs, else 1); pass dim= to say which",
        UserWarning, stacklevel=stacklevel,
    )  # fmt: skip
    return dim


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3) -> Tensor:
    """Numerically stable softmax along ``dim`` (None: ``implicit_dim``, as PyTorch)."""
    x = input  # (PyTorch's name for the keyword)
    float_input(x, "softmax")
    dim = implicit_dim(x, dim, "softmax", _stacklevel)
    if x.dtype is FLOAT16:
        return in_float32(softmax, x, dim, reads="output")
    if x.ndim == 0:
        return Softmax.apply(x.reshape(1), dim=0).reshape(())
    return Softmax.apply(x, dim=_dim(x, dim, "softmax"))


def log_softmax(input: Tensor, dim: int | None = None) -> Tensor:
    """Numerically stable log-softmax along ``dim`` (None: ``implicit_dim``, as PyTorch)."""
    x = input  # (PyTorch's name for the keyword)
    float_input(x, "log_softmax")
    dim = implicit_dim(x, dim, "log_softmax")
    if x.dtype is FLOAT16:
        return in_float32(log_softmax, x, dim, reads="output")
    if x.ndim == 0:
        return LogSoftmax.apply(x.reshape(1), dim=0).reshape(())
    return LogSoftmax.apply(x, dim=_dim(x, dim, "log_softmax"))
