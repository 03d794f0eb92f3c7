"""Elementwise arithmetic: forward and VJP side by side.

Broadcasting is NumPy's; the engine sums each gradient back to its input's
shape, so a VJP here returns gradients of the output's shape.
"""

from __future__ import annotations

import numpy as np

from tinygrad_np.autograd import Op, is_grad_enabled
from tinygrad_np.tensor import _INT_RANGE, Tensor


def const(arr: np.ndarray) -> Tensor:
    """Wrap an array as a constant (no grad) tensor."""
    return Tensor._make(arr, False, None)


# A VJP that passes its upstream gradient g through a 0/1 pattern (relu, clip, max, a
# pool's maximum, a one-hot target) selects: g where the pattern is 1, else 0, as
# PyTorch's backward passes do. Multiplying by the pattern instead turns an infinite or
# NaN g at a blocked position into NaN (inf * 0), which then spreads through the rest of
# the backward pass, e.g. the gradient of relu(x).sqrt() at x <= 0.
_SAME_SIZE_INT = {4: np.int32, 8: np.int64}


def zero_where(g: np.ndarray, drop: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``g`` with +0 where the bool array ``drop`` is true (written into ``out`` if given).
    For float32 and float64 a bitwise and of g's bits with an all-ones or all-zeros mask:
    20-30 % slower than multiplying by the pattern, where np.where on a random pattern took 7x
    as long (2M float32 entries: multiply 1.3 ms, this 1.5, np.where 8.6)."""
    ints = _SAME_SIZE_INT.get(g.dtype.itemsize) if g.dtype.kind == "f" else None
    if ints is None or drop.shape != g.shape:
        zero = np.zeros((), g.dtype)
        if out is None:
            return np.where(drop, zero, g)
        np.copyto(out, np.where(drop, zero, g))
        return out
    if out is None:
        out = np.empty(g.shape, g.dtype)
    # drop: 0, keep: -1 (all ones), a byte a mask (widened in the and's loop: 1M float32
    # entries 0.54 -> 0.35 ms against a mask of g's width)
    mask = np.subtract(drop.view(np.int8), np.int8(1))
    np.bitwise_and(g.view(ints), mask, out=out.view(ints))
    return out


def blend(a: np.ndarray, b: np.ndarray, take_b: np.ndarray) -> np.ndarray:
    """``b`` where the bool array ``take_b`` is true, else ``a`` (all three of one shape;
    a and b of one dtype), by bits as ``zero_where``: np.where on a random pattern took
    15.9 ms for 4M float32 entries, this 3."""
    a, b = np.asarray(a), np.asarray(b)  # (a 0-d operation gives a NumPy scalar)
    ints = _SAME_SIZE_INT.get(a.dtype.itemsize) if a.dtype.kind == "f" else None
    if ints is None or not (a.shape == b.shape == take_b.shape) or a.dtype != b.dtype:
        return np.where(take_b, b, a)
    mask = np.negative(take_b.view(np.int8))  # take b: -1 (all ones), take a: 0 (a byte)
    out = np.bitwise_xor(a.view(ints), b.view(ints), out=np.empty(a.shape, ints))  # (0-d too)
    np.bitwise_and(out, mask, out=out)  # a ^ b where b is taken, else 0
    np.bitwise_xor(out, a.view(ints), out=out)  # then b there, a elsewhere
    return out.view(a.dtype)


def select(g: Tensor, keep: np.ndarray) -> Tensor:
    """``g`` where the bool array ``keep`` (broadcastable to g) is true, else 0, as a VJP's
    result: a ``Where`` op when the backward is recorded, else a constant."""
    if is_grad_enabled():
        return Where.apply(const(keep), g, const(np.zeros((), g.dtype)))
    if keep.shape != g.shape:
        keep, gd = np.broadcast_arrays(keep, g.data)
        return const(zero_where(gd, ~keep))
    return const(zero_where(g.data, ~keep))


class Tie(Op):
    """``g`` itself, made to depend on ``of`` with a zero derivative. A recorded VJP whose
    value depends on its op's input only through a mask (relu, abs, leaky_relu, max
    pooling) is tied to that input, so that a second derivative through it is zeros, as
    PyTorch's (threshold_backward and the like take the input), not an error that the
    input was unused.   VJP: gg for g, zeros for ``of``."""

    saves_inputs = False
    name = "tie"

    def forward(self, g, of):
        return g.view()

    def vjp(self, gg):
        of = self.inputs[1]
        zeros = const(np.zeros(of.shape, dtype=of.dtype)) if self.needs_grad[1] else None
        return (gg if self.needs_grad[0] else None), zeros


def tie(g: Tensor, of: Tensor) -> Tensor:
    """``g``, tied to ``of`` (``Tie``) when the backward is recorded and ``of`` requires
    grad; else ``g`` as it is."""
    if is_grad_enabled() and of.requires_grad:
        return Tie.apply(g, of)
    return g


def _check_broadcast(name: str, a: np.ndarray, b: np.ndarray) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{name}: operands with shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
            "broadcast together"
        ) from None


class Add(Op):
    """y = a + b.   VJP: ga = g, gb = g (summed back over broadcast dims)."""

    saves_inputs = False

    def forward(self, a, b):
        try:
            return a + b
        except ValueError:  # checking shapes only on failure keeps the common path fast
            _check_broadcast("add", a, b)
            raise

    def vjp(self, g):
        return g, g


class Sub(Op):
    """y = a - b.   VJP: ga = g, gb = -g."""

    saves_inputs = False

    def forward(self, a, b):
        try:
            return a - b
        except ValueError:  # checking shapes only on failure keeps the common path fast
            _check_broadcast("sub", a, b)
            raise

    def vjp(self, g):
        if not self.needs_grad[1]:
            return g, None
        if not is_grad_enabled():  # not recorded: plain NumPy, no graph node needed
            return g, const(-g.data)
        return g, -g


class Mul(Op):
    """y = a * b.   VJP: ga = g * b, gb = g * a."""

    @staticmethod
    def reads(needs):  # a for b's gradient, b for a's
        return (needs[1], needs[0])

    def forward(self, a, b):
        try:
            return a * b
        except ValueError:  # checking shapes only on failure keeps the common path fast
            _check_broadcast("mul", a, b)
            raise

    def vjp(self, g):
        a, b = self.inputs
        if not is_grad_enabled():  # not recorded: plain NumPy, no graph node needed
            gd = g.data
            return (
                const(gd * b.data) if self.needs_grad[0] else None,
                const(gd * a.data) if self.needs_grad[1] else None,
            )
        return (
            g * b if self.needs_grad[0] else None,
            g * a if self.needs_grad[1] else None,
        )


class Div(Op):
    """y = a / b.   VJP: ga = g / b, gb = -g (a / b) / b (not a / b^2, which under- or
    overflows for |b| beyond 1e+-19 in float32)."""

    @staticmethod
    def reads(needs):  # a only for b's gradient
        return (needs[1], True)

    def forward(self, a, b):
        try:
            return a / b
        except ValueError:  # checking shapes only on failure keeps the common path fast
            _check_broadcast("div", a, b)
            raise

    def vjp(self, g):
        a, b = self.inputs
        ga = g / b if self.needs_grad[0] else None
        gb = (-g * (a / b)) / b if self.needs_grad[1] else None  # (PyTorch's order: 0 / b
        return ga, gb  # stays 0 where g / b would overflow)


def _int_power(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a ** b for integer arrays with some b < 0, as PyTorch: 1 for a base of 1, +-1 for
    -1, 0 for every other base (NumPy refuses them all)."""
    out = np.power(a, np.maximum(b, 0))
    unit = np.where(np.abs(a) == 1, np.where((a < 0) & (b % 2 == 1), -1, 1), 0)
    return np.where(b < 0, unit.astype(out.dtype), out)


class Pow(Op):
    """y = a ** b.   VJP: ga = g * b * a^(b-1), gb = g * y * log(a).

    As PyTorch: ga is 0 where b == 0 (not 0 * 0^-1 = nan at a == 0, nor inf * 0 = nan for
    an infinite g), and gb is 0 where a == 0 and b >= 0 (the 0 * log(0) convention; with
    b < 0 it is y * log(0) = -inf). Where b == 0 and a != 0, ga keeps its dependence on b,
    so that d/db of ga there is g / a (the mixed second derivative).
    """

    def forward(self, a, b):
        if (
            a.size > 64  # (np.power is quick on a few entries)
            and b.ndim == 0
            and a.dtype.kind == "f"
            and abs(b) < 2**31  # (False for NaN; inf fails it before int() is tried)
            and float(b) == int(b)
            and int(b) not in (-1, 0, 1, 2)  # (NumPy's own quick cases: x * x, 1 / x, ...)
            and not a.min() >= 0  # (a negative base, or a NaN)
        ):
            # A whole exponent of negative bases: |a|^b with the sign put back for an odd
            # one (pow is odd or even in a then): np.power takes a slow path for negative
            # bases (x ** 3 on 4M float32 normals 171 -> 7 ms); the results are as
            # accurate, not always the same bits (a last bit differs for 3% of float64
            # normals cubed).
            out = np.power(np.abs(a), b, out=np.empty(a.shape, np.result_type(a, b)))
            if int(b) % 2:
                np.copysign(out, a, out=out)
            return out
        try:
            return np.power(a, b)
        except ValueError:  # checking shapes only on failure keeps the common path fast
            _check_broadcast("pow", a, b)
            if a.dtype.kind in "iu" and b.dtype.kind in "iu" and b.ndim:
                return _int_power(a, b)
            raise

    def vjp(self, g):
        a, b = self.inputs
        ga = gb = None
        if self.needs_grad[0]:
            flat = b.data == 0
            if np.any(flat):  # a^(b-1) with b = 1 where a == 0 too: finite, times b it is 0
                both = flat & (a.data == 0)
                b1 = Where.apply(const(both), const(np.ones((), b.dtype)), b) if both.any() else b
                ga = g * b * a ** (b1 - 1)
                if not is_grad_enabled():  # where b == 0: 0, as PyTorch (not inf * 0)
                    ga = select(ga, ~np.broadcast_to(flat, ga.shape))
                else:  # (recorded: ga keeps its dependence on b there; an inf g gives 0)
                    bad = flat & ~np.isfinite(g.data)
                    if bad.any():
                        ga = select(ga, ~np.broadcast_to(bad, ga.shape))
            else:
                ga = g * b * a ** (b - 1)
        if self.needs_grad[1]:
            # y * log(a), 0 where a == 0 and b >= 0 (log(1) = 0 in its place)
            zero = const((a.data == 0) & (b.data >= 0))
            if a.dtype != g.dtype:  # the base in the result's dtype (an int's log in float32,
                # or a float32 base's with a float64 exponent, lost digits); a float base may
                # require grad (a recorded VJP): a cast op then, else a constant
                a = a.astype(g.dtype) if a.dtype.kind in "fc" else const(a.data.astype(g.dtype))
            safe_a = Where.apply(zero, const(np.ones((), a.dtype)), a)
            gb = g * (a**b) * safe_a.log()
        return ga, gb


class Neg(Op):
    """y = -x.   VJP: gx = -g."""

    saves_inputs = False

    def forward(self, x):
        return -x

    def vjp(self, g):
        return (-g,)


class Exp(Op):
    """y = e^x.   VJP: gx = g * y."""

    saves_inputs = False  # (its VJP reads y, recorded too)
    keeps_output = True

    def forward(self, x):
        self.out = np.exp(x)
        return self.out

    def vjp(self, g):
        return (g * self.saved_output(lambda: self.inputs[0].exp()),)


class Log(Op):
    """y = log x.   VJP: gx = g / x."""

    def forward(self, x):
        return np.log(x)

    def vjp(self, g):
        return (g / self.inputs[0],)


class Sqrt(Op):
    """y = sqrt x.   VJP: gx = g / (2 y)."""

    saves_inputs = False  # (its VJP reads y, recorded too)
    keeps_output = True

    def forward(self, x):
        self.out = np.sqrt(x)
        return self.out

    def vjp(self, g):
        return (g / (2 * self.saved_output(lambda: self.inputs[0].sqrt())),)


class Abs(Op):
    """y = |x|.   VJP: gx = g * sign(x) (0 at x = 0 and at a nan x, as PyTorch).

    The sign is taken in the VJP from the saved x: made in the forward it cost four times
    the forward itself, also where no backward came (1M float32: 0.09 ms for |x|)."""

    def forward(self, x):
        return np.abs(x)

    def vjp(self, g):
        x = self.inputs[0].data
        sign = np.sign(x, out=np.empty_like(x))  # (an array for a 0-d x too)
        if sign.dtype.kind == "f":  # (sign(nan) is nan: 0 there, as PyTorch's gradient)
            np.copyto(sign, 0, where=np.isnan(sign))
        return (tie(g, self.inputs[0]) * const(sign),)


class Clip(Op):
    """y = min(max(x, lo), hi).   VJP: gx = g where lo <= x <= hi, else 0 (also at a NaN
    x, as PyTorch)."""

    saves_inputs = False

    def forward(self, x, *, min, max):  # noqa: A002
        out = np.clip(x, min, max)
        keep = np.ones(x.shape, dtype=bool) if min is None else x >= min
        if max is not None:
            keep &= x <= max
        self.keep = keep
        return out

    def vjp(self, g):
        return (select(g, self.keep),)


def clip(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - PyTorch's names
    """Clamp to [min, max]; either bound may be None. The gradient is 0 outside."""
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")
    bounds = []
    for name, v in (("min", min), ("max", max)):
        if isinstance(v, Tensor) or (isinstance(v, np.ndarray) and v.ndim == 0):
            v = v.item() if v.ndim == 0 else v  # (a 0-d tensor or array: its number)
        if v is not None and (isinstance(v, (str, bytes)) or not np.isscalar(v)):
            raise TypeError(f"clip: {name} must be a number, a 0-d tensor or None, got {v!r}")
        bounds.append(v)
    # a bound is a scalar, as in arithmetic: it never changes a float tensor's dtype, and
    # a float bound makes an integer tensor float32 (as PyTorch)
    if x.dtype.kind in "iub" and any(isinstance(v, (float, np.floating)) for v in bounds):
        x = x.astype(np.float32)
    if x.dtype.kind == "f":
        bounds = [None if v is None else x.dtype.type(v) for v in bounds]
    elif x.dtype.kind in "iu":  # (an int bound that fits: this dtype, not NumPy's int64)
        lo, hi, _ = _INT_RANGE[x.dtype]
        bounds = [x.dtype.type(v) if v is not None and lo <= v <= hi else v for v in bounds]
    min, max = bounds  # noqa: A001
    return Clip.apply(x, min=min, max=max)


class Cast(Op):
    """y = x as another dtype.   VJP: gx = g cast back to x's dtype."""

    saves_inputs = False

    def forward(self, x, *, dtype):
        return x.astype(dtype)

    def vjp(self, g):
        return (g.astype(self.inputs[0].dtype),)


# A float16 op computed in float32 (``Tensor._half``, ``activation.in_float32``) keeps a
# float32 copy of its input, or makes its float16 output from a float32 one, so a change in
# place to the float16 tensor would go unseen at backward, where PyTorch (which keeps the
# float16 tensor) raises. These casts stand in for the op in that check.


class WidenRead(Cast):
    """x (float16) as float32, for an op whose backward reads x: the in-place check of x
    at backward is this node's (a Cast whose VJP reads nothing otherwise)."""

    saves_inputs = True
    viz_hidden = ("of",)

    def forward(self, x, *, dtype, of):
        self.name = f"astype for {of}"
        return x.astype(dtype)


class NarrowKept(Cast):
    """y (float32) as float16, for an op whose backward reads its output: a change to the
    float16 output in place raises at backward (``keeps_output``)."""

    keeps_output = True
    viz_hidden = ("of",)

    def forward(self, x, *, dtype, of):
        self.name = f"astype for {of}"
        self.out = x.astype(dtype)
        return self.out


class Where(Op):
    """y = a where c else b (c a constant bool array).   VJP: ga = g where c, gb = g where not c."""

    @staticmethod
    def inplace_reads(needs, recording):  # the condition only
        return (True,) + (False,) * (len(needs) - 1)

    def forward(self, c, a, b):
        try:
            return np.where(c, a, b)
        except ValueError:
            raise ValueError(
                f"where: condition {tuple(c.shape)}, input {tuple(a.shape)} and other "
                f"{tuple(b.shape)} cannot be broadcast together"
            ) from None

    def vjp(self, g):
        c = self.inputs[0]
        zero = const(np.zeros((), dtype=g.dtype))
        ga = Where.apply(c, g, zero) if self.needs_grad[1] else None
        gb = Where.apply(c, zero, g) if self.needs_grad[2] else None
        return None, ga, gb


def where(condition, input, other) -> Tensor:  # noqa: A002 - PyTorch's names
    """Elementwise ``input if condition else other``; condition a bool Tensor or array."""
    # (a copy: a later change to the condition must not change the recorded op's VJP)
    c = np.array(condition.data if isinstance(condition, Tensor) else condition)
    if c.dtype != np.bool_:
        raise TypeError(f"where: condition must be bool, got dtype {c.dtype}")
    a = input if isinstance(input, Tensor) else None
    b = other if isinstance(other, Tensor) else None
    if a is None and b is None:  # (two Python floats or ints: float32 or int64, as PyTorch)
        if any(isinstance(v, (float, np.floating)) for v in (input, other)) and all(
            isinstance(v, (int, float, np.integer, np.floating)) for v in (input, other)
        ):
            a, b = Tensor(np.float32(input)), Tensor(np.float32(other))
        else:
            a, b = Tensor(input), Tensor(other)
    elif a is None:  # (a scalar meets the tensor as in arithmetic: int and 0.5 is float32)
        b, a = b._pair(input)
    elif b is None:
        a, b = a._pair(other)
    return Where.apply(const(c), a, b)
