"""gradcheck failure reports: input, worst element, values, share, kinks, fast mode."""

import time

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np.autograd import Op


class _Mul(Op):
    """x * y with a VJP that can be broken at one element of one input."""

    broken: tuple | None = None  # (input index, element index, factor)

    def forward(self, x, y):
        self.x, self.y = x, y
        return x * y

    def vjp(self, g):
        gx = g.data * self.y
        gy = g.data * self.x
        if self.broken is not None:
            which, idx, factor = self.broken
            (gx, gy)[which][idx] *= factor
        return tg.Tensor(gx), tg.Tensor(gy)


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(
        tg.Tensor(rng.standard_normal(shape) + 2.0, dtype="float64", requires_grad=True)
        for _ in range(2)
    )


def _broken(which, idx, factor):
    return type("Broken", (_Mul,), {"broken": (which, idx, factor)})


def test_correct_op_passes():
    assert tg.gradcheck(lambda a, b: _Mul.apply(a, b), _inputs((3, 4)))


def test_report_names_input_element_values_and_fraction():
    op = _broken(1, (2, 1), 1.5)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a, b: op.apply(a, b), _inputs((3, 4)))
    e = info.value
    assert e.input_index == 1 and e.index == (2, 1)
    assert e.analytic == pytest.approx(1.5 * e.numerical, rel=1e-4)
    assert e.fraction == pytest.approx(1 / 12)
    assert e.at_kink is False
    msg = str(e)
    assert "inputs[1] (shape (3, 4))" in msg and "worst element (2, 1)" in msg
    assert "1 of 12 elements (8.3%) fail" in msg and "kink" not in msg


def test_fraction_counts_every_failing_element():
    class Twice(_Mul):
        def vjp(self, g):
            gx, gy = super().vjp(g)
            return gx * 2.0, gy

    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a, b: Twice.apply(a, b), _inputs((2, 5)))
    assert info.value.input_index == 0 and info.value.fraction == 1.0


def test_relu_at_zero_is_reported_as_a_kink_not_a_bug():
    x = tg.Tensor(np.array([[0.5, 0.0], [-1.0, 2.0]]), dtype="float64", requires_grad=True)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: a.relu(), x)
    e = info.value
    assert e.index == (0, 1) and e.at_kink
    assert "kink" in str(e) and "not a bug" not in str(e).split("kink")[0]
    # away from the kink the same function passes
    x.data[0, 1] = 0.3
    assert tg.gradcheck(lambda a: a.relu(), x)


def test_max_tie_is_a_kink():
    x = tg.Tensor(np.array([1.0, 3.0, 3.0, 0.5]), dtype="float64", requires_grad=True)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: a.max(), x)
    assert info.value.at_kink and info.value.index in {(1,), (2,)}


def test_fast_mode_checks_a_large_input_quickly_and_names_the_input():
    a, b = _inputs((300, 400))  # 120000 elements each: element-wise would take minutes
    t = time.perf_counter()
    assert tg.gradcheck(lambda x, y: _Mul.apply(x, y), (a, b), fast_mode=True)
    op = _broken(1, (123, 45), 3.0)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda x, y: op.apply(x, y), (a, b), fast_mode=True)
    assert time.perf_counter() - t < 10
    e = info.value
    assert e.input_index == 1 and e.index is None
    assert "fast mode" in str(e) and "inputs[1]" in str(e)


def test_fast_mode_then_full_mode_finds_the_element():
    op = _broken(0, (1, 3), -1.0)
    a, b = _inputs((3, 5), seed=3)
    with pytest.raises(tg.GradcheckError):
        tg.gradcheck(lambda x, y: op.apply(x, y), (a, b), fast_mode=True)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda x, y: op.apply(x, y), (a, b))
    assert info.value.index == (1, 3) and info.value.input_index == 0


def test_unusable_arguments_raise_clearly():
    with pytest.raises(ValueError, match="float64"):
        tg.gradcheck(lambda a: a * 2, tg.Tensor([1.0], requires_grad=True))
    with pytest.raises(ValueError, match="no input requires grad"):
        tg.gradcheck(lambda a: a * 2, tg.Tensor([1.0], dtype="float64"))
