"""gradcheck failure reports: input, worst element, values, share, kinks, fast mode."""

import time

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import nn
from tinygrad_np.autograd import Op
from tinygrad_np.ops.elementwise import const


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


# ----------------------------------------------------------------- found by a hunt (19th)


class _Scale(Op):
    """y_i = w * c_i, its VJP with output ``bad``'s share ``factor`` times too large."""

    c = np.random.default_rng(11).standard_normal(1000)
    bad, factor = 7, 1.01

    def forward(self, w):
        return w * self.c

    def vjp(self, g):
        m = np.ones_like(self.c)
        m[self.bad] = self.factor
        return ((g * const(self.c * m)).sum().reshape(1),)


def test_one_wrong_jacobian_entry_among_many_outputs_is_caught():
    """Every Jacobian entry is compared (as PyTorch's default mode): one output's share of
    the gradient 1% off among 1000 outputs failed to show in J^T u, whose tolerance grows
    with the whole sum (missed 20 times in 20)."""
    w = tg.Tensor([0.7], dtype="float64", requires_grad=True)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: _Scale.apply(a), w)
    e = info.value
    assert e.input_index == 0 and e.index == (0,) and e.output_element == (7,)
    assert "d output[7] / d inputs[0][0]" in str(e)
    with pytest.raises(tg.GradcheckError):
        tg.gradcheck(lambda a: _Scale.apply(a), w, fast_mode=True)


@pytest.mark.parametrize("fast_mode", [False, True])
@pytest.mark.parametrize(
    "fn, scale",
    [(lambda a, b: (a.tanh(), tg.Tensor(np.full((3,), 1e8))), 1.0),
     (lambda a, b: (a.tanh(), 1e8 * b), 1.0),
     (lambda a, b: a.tanh() + 1e6 + b, 1.0),
     (lambda a, b: (a * a, b), 1e6)],
)  # fmt: skip
def test_large_outputs_do_not_drown_the_differences(fn, scale, fast_mode):
    """Each output is differenced on its own, and divided by how far apart the two points
    really are: a large output beside the checked one (constant, or of another input), a
    large offset, or a large x (where x + eps rounds) failed correct functions that
    PyTorch passes."""
    x = tg.Tensor(np.array([0.3, -0.7, 1.1]) * scale, dtype="float64", requires_grad=True)
    y = tg.Tensor(np.array([0.2, 0.5, -0.4]), dtype="float64", requires_grad=True)
    assert tg.gradcheck(fn, (x, y), fast_mode=fast_mode)
    with pytest.raises(tg.GradcheckError):  # (a detached dependence still fails)
        tg.gradcheck(lambda a: (a.tanh(), 1e3 * a.detach()), x, fast_mode=fast_mode)


class _BadRelu(Op):
    def forward(self, x):
        self.m = (x > 0).astype(x.dtype)
        return x * self.m

    def vjp(self, g):
        return (g * const(self.m * 1.05),)  # (slope 1.05: wrong wherever x > 0)


def test_a_kink_does_not_excuse_failures_elsewhere():
    """at_kink is True only when every failing element checked sits at a kink: a wrong
    slope on six smooth elements, with one input at relu's kink as well, was reported as
    "sits at a kink ... rather than call it a bug"."""
    x = np.random.default_rng(5).standard_normal((3, 4))
    x[0, 0] = 0.0
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: _BadRelu.apply(a), tg.Tensor(x, requires_grad=True))
    assert info.value.at_kink is False
    assert "sit at a kink, the others do not: the fault is real" in str(info.value)


def test_strong_curvature_is_not_a_kink():
    """A smooth function's one-sided slopes differ by its curvature times the step, which
    doubles with the step; a kink's jump does not. 1e3 x^2 at x = 1e-9 with a wrong VJP
    was called a kink."""

    class BadSquare(Op):
        def forward(self, x):
            return 1e3 * x * x

        def vjp(self, g):
            return (g * 2e3 * self.inputs[0] + g * 1e-3,)

    x = tg.Tensor([1e-9, 0.5], dtype="float64", requires_grad=True)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: BadSquare.apply(a), x)
    assert info.value.at_kink is False and "kink" not in str(info.value)


def test_a_random_function_is_refused_as_such():
    """A function that gives other values at the same inputs (dropout) raises at once,
    saying so: it was reported as sitting at a kink."""
    x = tg.Tensor(np.linspace(0.5, 1.5, 20), dtype="float64", requires_grad=True)
    with pytest.raises(tg.GradcheckError, match="not deterministic"):
        tg.gradcheck(lambda a: F.dropout(a, 0.5), x)


def test_fast_mode_needs_a_projection_and_sees_a_small_element():
    """n_projections=0 checked nothing and returned True; and the rounding allowance, a
    worst-case bound linear in the outputs, let a gradient 3x too large at one element
    (where it is small) pass."""
    x = tg.Tensor(np.ones(4), dtype="float64", requires_grad=True)
    with pytest.raises(ValueError, match="n_projections"):
        tg.gradcheck(lambda a: a * 2, x, fast_mode=True, n_projections=0)

    class BrokenMul(Op):
        def forward(self, a, b):
            self.a, self.b = a, b
            return a * b

        def vjp(self, g):
            gb = g.data * self.a
            gb[123, 45] *= 3.0
            return tg.Tensor(g.data * self.b), tg.Tensor(gb)

    rng = np.random.default_rng(1)
    a = tg.Tensor(rng.standard_normal((300, 400)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal((300, 400)), requires_grad=True)
    a.data[123, 45] = 0.004
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda p, q: BrokenMul.apply(p, q), (a, b), fast_mode=True)
    assert info.value.input_index == 1


# ----------------------------------------------------------- regressions of the rewrite


class _WrongSquare(Op):
    def forward(self, x):
        return x * x

    def vjp(self, g):
        return (g * 3.0 * self.inputs[0],)


@pytest.mark.parametrize("shape", [(3, 4), ()])
def test_the_projection_fallback_reports_a_wrong_gradient(shape):
    """Beyond JACOBIAN_MAX_OUTPUTS outputs, J^T u is checked: a wrong gradient of a 2-d
    or 0-d input raised IndexError there (flat indices into the input-shaped excess)."""
    x = tg.Tensor(np.random.default_rng(0).uniform(0.5, 2.0, shape), requires_grad=True)
    wide = tg.Tensor(np.ones((70, 70) + (1,) * len(shape)))  # (4900+ outputs)
    with pytest.raises(tg.GradcheckError, match="random upstream gradient") as info:
        tg.gradcheck(lambda a: _WrongSquare.apply(a) * wide, x)
    assert info.value.input_index == 0 and info.value.fraction == 1.0


def test_data_parallel_is_checked_on_the_graph_it_keeps():
    """fn is evaluated twice for the determinism check and the second call's graph is the
    one backwarded: nn.DataParallel keeps only its latest call's graph (gradcheck of it
    raised after the check was added)."""
    net = nn.Sequential(nn.Linear(3, 2)).double()
    x = tg.Tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    with nn.DataParallel(net, workers=2) as dp:
        assert tg.gradcheck(lambda a: dp(a), (x,))
        assert tg.gradcheck(lambda a: dp(a), (x,), fast_mode=True)


def test_a_kink_within_the_step_but_not_at_the_input_is_a_kink():
    """relu's kink 0.6 eps from the input: the one-sided slopes at eps cross it, those at
    eps/2 and eps/4 do not (the test at eps and 2 eps called it smooth)."""
    x = tg.Tensor(np.array([0.0, 6e-7, -2.0]), requires_grad=True)
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: a.relu(), x)
    assert info.value.at_kink and "the 2 failing elements sit at a kink" in str(info.value)


@pytest.mark.parametrize("fast_mode", [False, True])
def test_inputs_too_large_for_the_step_are_named(fast_mode):
    """Where x +- eps rounds to x, finite differences measure nothing: gradcheck says so
    (fast mode passed wrong VJPs there, its rounding correction being all the estimate)."""
    x = tg.Tensor(np.full((2, 3), 1e13), requires_grad=True)
    with pytest.raises(tg.GradcheckError, match="rounds to"):
        tg.gradcheck(lambda a: _WrongSquare.apply(a), x, fast_mode=fast_mode)
    assert tg.gradcheck(lambda a: a * a, x, eps=1e7, fast_mode=fast_mode)


def test_inputs_holding_inf_or_nan_are_checked():
    """An inf or NaN input stays one when moved: its nominal step is taken (such inputs
    were refused as "too large for the step": masked logits, a where's masked entry)."""
    logits = tg.Tensor(np.array([-np.inf, 0.3, 1.2]), requires_grad=True)
    x = tg.Tensor(np.array([0.3, np.inf, -0.7]), requires_grad=True)
    mask = tg.Tensor(np.array([True, False, True]))
    for fast in (False, True):
        assert tg.gradcheck(lambda a: a.softmax(0), logits, fast_mode=fast)
        assert tg.gradcheck(lambda a: tg.where(mask, a, 0.0), x, fast_mode=fast)


def test_a_wrong_vjp_at_large_inputs_is_reported_as_such():
    """At x = 5e9 the step eps still moves x (it is measured exactly), but the kink probe's
    shorter steps do not: the probe gives up there instead of raising its own "rounds to"
    error over the real mismatch."""
    x = tg.Tensor(np.array([5e9, -3e9]), requires_grad=True)
    assert tg.gradcheck(lambda a: a * 1.0, x)
    with pytest.raises(tg.GradcheckError, match="analytic 2, numerical 1") as info:
        tg.gradcheck(lambda a: _Doubled.apply(a), x)
    assert info.value.input_index == 0


class _Doubled(Op):
    def forward(self, x):
        return x * 1.0

    def vjp(self, g):
        return (g * 2.0,)


def test_reports_name_the_random_output_and_the_limit_that_applied():
    """The determinism error names fn's output index (it counted float outputs only), and
    the J^T u fallback says which limit sent it there (outputs, or Jacobian entries)."""
    x = tg.Tensor(np.linspace(0.5, 1.5, 20), requires_grad=True)
    with pytest.raises(tg.GradcheckError, match=r"output 2\b"):
        tg.gradcheck(lambda a: (a > 1, a * 2, F.dropout(a, 0.5)), x)
    wide = tg.Tensor(np.ones((2100, 1)))
    y = tg.Tensor(np.random.default_rng(0).uniform(0.5, 2.0, (2100,)), requires_grad=True)
    with pytest.raises(tg.GradcheckError, match="the Jacobian has 2100 x 2100 entries"):
        tg.gradcheck(lambda a: _WrongSquare.apply(a) * wide[:, 0], y)
