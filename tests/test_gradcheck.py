"""Every op-table row and case through gradcheck and gradgradcheck (float64, finite differences).

Also checks gradcheck itself: it must catch a deliberately wrong VJP, name the
input and the worst element, flag kinks, and work in fast mode.
"""

from __future__ import annotations

import numpy as np
import pytest
from _rows import cases, tg_inputs
from op_table import ROWS

import tinygrad_np as tg
from tinygrad_np.autograd import Op


@pytest.mark.parametrize(("row", "shapes"), cases())
def test_gradcheck(row, shapes):
    inputs = tg_inputs(row, shapes)
    fn = lambda *xs: row.fn(*xs, **row.kwargs)  # noqa: E731
    assert tg.gradcheck(fn, tuple(inputs), eps=row.eps, atol=row.atol, rtol=row.rtol)


@pytest.mark.parametrize(("row", "shapes"), cases([r for r in ROWS if r.gradgrad]))
def test_gradgradcheck(row, shapes):
    inputs = tg_inputs(row, shapes)
    fn = lambda *xs: row.fn(*xs, **row.kwargs)  # noqa: E731
    assert tg.gradgradcheck(fn, tuple(inputs), eps=row.eps, atol=row.atol, rtol=row.rtol)


# ----------------------------------------------------------------------------- gradcheck itself


class _WrongSquare(Op):
    """y = x^2 with a wrong VJP (3x instead of 2x) on purpose."""

    def forward(self, x):
        return x * x

    def vjp(self, g):
        return (g * 3.0 * self.inputs[0],)


class _WrongSecondInput(Op):
    """y = a * b whose VJP for b drops a factor: gb = g (instead of g * a)."""

    def forward(self, a, b):
        return a * b

    def vjp(self, g):
        a, b = self.inputs
        return g * b, g


def _x(shape=(2, 3), seed=0, positive=True):
    a = np.random.default_rng(seed).uniform(0.5, 2.0, shape)
    return tg.Tensor(a, requires_grad=True)


def test_gradcheck_catches_wrong_vjp_and_names_input_and_element():
    x = _x()
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: _WrongSquare.apply(a), x)
    err = info.value
    assert err.input_index == 0
    assert len(err.index) == 2 and all(0 <= k < n for k, n in zip(err.index, (2, 3), strict=True))
    assert err.fraction == 1.0
    assert not err.at_kink
    # analytic is 1.5x the numerical value at the worst element
    assert err.analytic == pytest.approx(1.5 * err.numerical, rel=1e-4)
    msg = str(err)
    assert "inputs[0]" in msg and str(err.index) in msg


def test_gradcheck_names_the_faulty_second_input():
    a, b = _x(seed=1), _x(seed=2)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda p, q: _WrongSecondInput.apply(p, q), (a, b))
    assert info.value.input_index == 1
    assert "inputs[1]" in str(info.value)
    # the correct first input alone passes
    b.requires_grad_(False)
    assert tg.gradcheck(lambda p, q: _WrongSecondInput.apply(p, q), (a, b))


def test_gradcheck_fast_mode_passes_and_catches():
    x = _x((4, 5))
    assert tg.gradcheck(lambda a: (a * a).exp().sum(1), x, fast_mode=True)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: _WrongSquare.apply(a), x, fast_mode=True)
    assert info.value.index is None and "fast mode" in str(info.value)


def test_gradcheck_fast_mode_checks_fewer_evaluations():
    calls = {"n": 0}

    def fn(a):
        calls["n"] += 1
        return a.exp()

    x = _x((6, 6))
    tg.gradcheck(fn, x, fast_mode=True, n_projections=2)
    fast = calls["n"]
    calls["n"] = 0
    tg.gradcheck(fn, x)
    assert fast <= 10 < 2 * 36 <= calls["n"]  # (1 + 1 for determinism + 4 a projection)


def test_gradcheck_flags_kink():
    # relu at exactly 0: the one-sided slopes differ, so a mismatch there is flagged as a kink
    x = tg.Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: a.relu(), x)
    assert info.value.at_kink
    assert info.value.index == (0,)
    assert "kink" in str(info.value)


def test_gradcheck_rejects_float32_and_no_grad_inputs():
    with pytest.raises(ValueError, match="float64"):
        tg.gradcheck(lambda a: a * 2.0, tg.Tensor([1.0, 2.0], requires_grad=True))
    with pytest.raises(ValueError, match="requires grad"):
        tg.gradcheck(lambda a: a * 2.0, tg.Tensor(np.ones(2)))


def test_gradgradcheck_catches_wrong_second_derivative():
    class WrongGradOfGrad(Op):
        """y = x^3 with gx = 3 x^2 computed from a constant, so its own derivative is 0."""

        def forward(self, x):
            self.x2 = x * x
            return x**3

        def vjp(self, g):
            return (g * 3.0 * tg.Tensor(self.x2),)

    x = _x((3,))
    assert tg.gradcheck(lambda a: WrongGradOfGrad.apply(a), x)
    with pytest.raises(tg.GradcheckError):
        tg.gradgradcheck(lambda a: WrongGradOfGrad.apply(a), x)


def test_gradcheck_tuple_outputs_and_unused_input():
    a, b = _x(seed=3), _x(seed=4)
    assert tg.gradcheck(lambda p, q: (p.exp(), p * 2.0), (a, b))


def test_a_non_finite_gradient_fails_against_a_finite_or_nan_difference():
    a = tg.Tensor(np.array([0.0, 1.0]), requires_grad=True)  # sqrt'(0) = inf; the difference: nan
    with np.errstate(all="ignore"):
        for fast in (False, True):
            with pytest.raises(tg.GradcheckError):
                tg.gradcheck(lambda t: t.sqrt(), a, fast_mode=fast)
    b = tg.Tensor(np.array([0.5, 1.0]), requires_grad=True)
    assert tg.gradcheck(lambda t: t.sqrt(), b)
