"""Activations and (log-)softmax: forward and VJP side by side."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from tinygrad_np import _parallel as par
from tinygrad_np.autograd import Op, is_grad_enabled
from tinygrad_np.ops.elementwise import blend, const, select, zero_where
from tinygrad_np.ops.reduce import add_up
from tinygrad_np.tensor import Tensor, float_input, number_arg


class Relu(Op):
    """y = max(x, 0) (NaN stays NaN).   VJP: gx = g where x > 0 or x is NaN (as PyTorch),
    else 0."""

    saves_inputs = False
    keeps_output = True  # (its VJP reads y > 0: a change to y in place must raise)

    def forward(self, x):
        out = np.empty(x.shape, dtype=x.dtype)
        zero = np.zeros((), x.dtype)
        flat_x, flat_out = x.reshape(-1), out.reshape(-1)  # large ones split onto threads
        par.for_slices(x.size, lambda s: np.maximum(flat_x[s], zero, out=flat_out[s]), x.size)
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
        return (select(g, ~(self.out <= 0)),)  # (a NaN x passes g on, as PyTorch)


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
        return (g * const(np.where(self.pos, np.ones((), g.dtype), slope)),)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """Leaky ReLU: ``x`` for positive ``x``, ``negative_slope * x`` otherwise."""
    float_input(input, "leaky_relu")
    negative_slope = number_arg(negative_slope, "leaky_relu", "negative_slope")
    return LeakyRelu.apply(input, negative_slope=negative_slope)


class Sigmoid(Op):
    """y = 1 / (1 + e^-x).   VJP: gx = g * y * (1 - y)."""

    saves_inputs = False  # (its VJP reads y, recorded too)
    keeps_output = True

    def forward(self, x):
        self.out = special.expit(x)
        return self.out

    def vjp(self, g):
        if not is_grad_enabled():  # not recorded: the factor is a constant, made in NumPy
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
            return (g * const(1 - self.out * self.out),)
        y = self.saved_output(lambda: self.inputs[0].tanh())
        return (g * (1 - y * y),)


class Erf(Op):
    """y = erf x.   VJP: gx = g * 2/sqrt(pi) * e^(-x^2)."""

    def forward(self, x):
        return special.erf(x)

    def vjp(self, g):
        x = self.inputs[0]
        return (g * (2 / math.sqrt(math.pi)) * (-(x * x)).exp(),)


_SQRT1_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_TANH_C = math.sqrt(2 / math.pi)


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
            self.t = np.tanh(_TANH_C * (x + 0.044715 * (x * x * x)))
            return (0.5 * x * (1 + self.t)).astype(x.dtype, copy=False)
        self.cdf = (0.5 * (1 + special.erf(x * _SQRT1_2))).astype(x.dtype, copy=False)
        return x * self.cdf

    def vjp(self, g):
        x = self.inputs[0]
        if not is_grad_enabled():  # not recorded: the factor in NumPy, from the forward's
            xd = x.data
            if self.args["approximate"] == "tanh":
                t = self.t
                d = 0.5 * (1 + t) + (0.5 * _TANH_C) * xd * (1 - t * t) * (
                    1 + (3 * 0.044715) * (xd * xd)
                )
            else:
                d = np.multiply(xd, xd, out=np.empty_like(xd))  # (an array for a 0-d x too)
                d *= -0.5
                np.exp(d, out=d)
                d *= xd
                d *= _INV_SQRT_2PI
                d += self.cdf
            return (const((g.data * d).astype(g.dtype, copy=False)),)
        if self.args["approximate"] == "tanh":
            t = (_TANH_C * (x + 0.044715 * x * x * x)).tanh()
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _TANH_C * (1 + 3 * 0.044715 * x * x)
        else:
            cdf = 0.5 * (1 + Erf.apply(x * _SQRT1_2))
            pdf = _INV_SQRT_2PI * (-0.5 * x * x).exp()
            d = cdf + x * pdf
        return (g * d,)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """GELU, exact (``approximate="none"``) or the tanh approximation (``"tanh"``)."""
    float_input(input, "gelu")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(input, approximate=approximate)


def _dim(x: Tensor, dim: int, what: str) -> int:
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{what}: dim must be an int, got {dim!r}")
    if not -max(x.ndim, 1) <= dim < max(x.ndim, 1):
        raise ValueError(f"{what}: dim {dim} is out of range for a tensor of shape {x.shape}")
    return int(dim) % max(x.ndim, 1)


# Rows along the last axis up to this long (attention scores, class logits) take each row's
# maximum through np.argmax (1.8x quicker than np.max on rows of 64: NumPy's max pays per
# row; the same value, NaN included) and its sum of exponentials as a product with a vector
# of ones (4x quicker than np.sum on rows of 64, as accurate). A speed hunt found softmax
# on (32, 4, 64, 64) 4.4x PyTorch's time.
SHORT_ROW = 512


def _short_rows(x: np.ndarray, axis: int) -> bool:
    return (
        axis == x.ndim - 1
        and 0 < x.shape[-1] <= SHORT_ROW
        and x.dtype in (np.float32, np.float64)
        and x.flags.c_contiguous
    )


def row_max(x: np.ndarray, axis: int) -> np.ndarray:
    """``x.max(axis, keepdims=True)`` (x non-empty along ``axis``)."""
    if x.size and _short_rows(x, axis):
        return np.take_along_axis(x, x.argmax(axis=-1)[..., None], -1)
    return x.max(axis=axis, keepdims=True)


def row_sum(e: np.ndarray, axis: int) -> np.ndarray:
    """``e.sum(axis, keepdims=True)`` of exponentials (finite or NaN: no infs meet zeros)."""
    if _short_rows(e, axis):
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
    def inplace_reads(needs, recording):  # the saved softmax, but x when recorded
        return (recording,)

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
        p = self.saved_output(lambda: self.inputs[0].softmax(dim))
        return (g - p * g.sum(dim, keepdim=True),)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim``."""
    float_input(x, "softmax")
    if x.ndim == 0:
        return Softmax.apply(x.reshape(1), dim=0).reshape(())
    return Softmax.apply(x, dim=_dim(x, dim, "softmax"))


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable log-softmax along ``dim``."""
    float_input(x, "log_softmax")
    if x.ndim == 0:
        return LogSoftmax.apply(x.reshape(1), dim=0).reshape(())
    return LogSoftmax.apply(x, dim=_dim(x, dim, "log_softmax"))
