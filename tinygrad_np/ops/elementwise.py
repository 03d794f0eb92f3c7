"""Elementwise arithmetic: forward and VJP side by side.

Broadcasting is NumPy's; the engine sums each gradient back to its input's
shape, so a VJP here returns gradients of the output's shape.
"""

from __future__ import annotations

import numpy as np

from tinygrad_np.autograd import Op, is_grad_enabled
from tinygrad_np.tensor import Tensor


def const(arr: np.ndarray) -> Tensor:
    """Wrap an array as a constant (no grad) tensor."""
    return Tensor._make(arr, False, None)


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
    """y = a / b.   VJP: ga = g / b, gb = -g * a / b^2."""

    def forward(self, a, b):
        try:
            return a / b
        except ValueError:  # checking shapes only on failure keeps the common path fast
            _check_broadcast("div", a, b)
            raise

    def vjp(self, g):
        a, b = self.inputs
        ga = g / b if self.needs_grad[0] else None
        gb = -g * a / (b * b) if self.needs_grad[1] else None
        return ga, gb


class Pow(Op):
    """y = a ** b.   VJP: ga = g * b * a^(b-1), gb = g * y * log(a).

    As PyTorch: ga is 0 where b == 0 (not 0 * 0^-1 = nan at a == 0), and gb is 0 where
    a == 0 and b >= 0 (the 0 * log(0) convention; with b < 0 it is y * log(0) = -inf).
    """

    def forward(self, a, b):
        try:
            return np.power(a, b)
        except ValueError:  # checking shapes only on failure keeps the common path fast
            _check_broadcast("pow", a, b)
            raise

    def vjp(self, g):
        a, b = self.inputs
        ga = gb = None
        if self.needs_grad[0]:
            flat = b.data == 0
            if np.any(flat):  # a^(b-1) with b = 1 there: finite, and times b it is 0
                b1 = Where.apply(const(flat), const(np.ones((), b.dtype)), b)
                ga = g * b * a ** (b1 - 1)
            else:
                ga = g * b * a ** (b - 1)
        if self.needs_grad[1]:
            # y * log(a), 0 where a == 0 and b >= 0 (log(1) = 0 in its place)
            zero = const((a.data == 0) & (b.data >= 0))
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

    keeps_output = True

    def forward(self, x):
        self.out = np.exp(x)
        return self.out

    def vjp(self, g):
        return (g * self.saved_output(self.inputs[0].exp),)


class Log(Op):
    """y = log x.   VJP: gx = g / x."""

    def forward(self, x):
        return np.log(x)

    def vjp(self, g):
        return (g / self.inputs[0],)


class Sqrt(Op):
    """y = sqrt x.   VJP: gx = g / (2 y)."""

    keeps_output = True

    def forward(self, x):
        self.out = np.sqrt(x)
        return self.out

    def vjp(self, g):
        return (g / (2 * self.saved_output(self.inputs[0].sqrt)),)


class Abs(Op):
    """y = |x|.   VJP: gx = g * sign(x) (0 at x = 0, as PyTorch)."""

    saves_inputs = False

    def forward(self, x):
        self.sign = np.sign(x)
        return np.abs(x)

    def vjp(self, g):
        return (g * const(self.sign),)


class Clip(Op):
    """y = min(max(x, lo), hi).   VJP: gx = g where lo <= x <= hi, else 0."""

    saves_inputs = False

    def forward(self, x, *, min, max):  # noqa: A002
        out = np.clip(x, min, max)
        mask = np.ones(x.shape, dtype=x.dtype)
        if min is not None:
            mask[x < min] = 0
        if max is not None:
            mask[x > max] = 0
        self.mask = mask
        return out

    def vjp(self, g):
        return (g * const(self.mask),)


def clip(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - PyTorch's names
    """Clamp to [min, max]; either bound may be None. The gradient is 0 outside."""
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")
    return Clip.apply(x, min=min, max=max)


class Cast(Op):
    """y = x as another dtype.   VJP: gx = g cast back to x's dtype."""

    saves_inputs = False

    def forward(self, x, *, dtype):
        return x.astype(dtype)

    def vjp(self, g):
        return (g.astype(self.inputs[0].dtype),)


class Where(Op):
    """y = a where c else b (c a constant bool array).   VJP: ga = g where c, gb = g where not c."""

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
    c = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if c.dtype != np.bool_:
        raise TypeError(f"where: condition must be bool, got dtype {c.dtype}")
    a = input if isinstance(input, Tensor) else None
    b = other if isinstance(other, Tensor) else None
    if a is None and b is None:
        a, b = Tensor(input), Tensor(other)
    elif a is None:
        a = b._other(input)
    elif b is None:
        b = a._other(other)
    return Where.apply(const(c), a, b)
