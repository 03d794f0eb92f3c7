"""detect_anomaly: the first non-finite forward or backward names the op and the user's line."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np import autograd
from tinygrad_np.autograd import Op
from tinygrad_np.nn import functional as F

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _x(values):
    return tg.Tensor(np.array(values, dtype=np.float64), requires_grad=True)


def test_forward_nan_names_op_and_user_line():
    x = _x([1.0, -1.0])
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            y = x * 2
            z = y.log()  # the culprit line
            z.sum()
    msg = str(info.value)
    assert "forward of op 'log' produced NaN" in msg
    assert "test_anomaly.py" in msg and 'z = y.log()  # the culprit line"' in msg
    assert "tinygrad_np/" not in msg.split("created at")[1]  # no framework frame


def test_backward_nan_points_at_the_line_that_created_the_op():
    x = _x([4.0, 0.0])
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            r = x.sqrt()  # d sqrt / dx at 0 is inf
            r.sum().backward()
    msg = str(info.value)
    assert msg.startswith("backward of op 'sqrt' produced inf in its gradient")
    assert "r = x.sqrt()  # d sqrt / dx at 0 is inf" in msg
    assert "backward()" not in msg  # the creating line, not the backward call


def test_forward_is_checked_before_anything_downstream():
    x = _x([1.0, 0.0])
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            a = x / x.sum()
            b = 1.0 / x  # inf here first
            (a + b).log()
    assert "op 'div'" in str(info.value) and "b = 1.0 / x" in str(info.value)


class _BadGrad(Op):
    """Forward is fine; the hand-written VJP divides by zero."""

    def forward(self, x):
        self.x = x
        return x * 3

    def vjp(self, g):
        return (tg.Tensor(g.data / np.zeros_like(self.x)),)


def test_vjp_returning_nan_directly_names_the_input():
    x = _x([1.0, 2.0])
    with pytest.raises(tg.AnomalyError) as info:
        with tg.detect_anomaly():
            y = _BadGrad.apply(x)  # made here
            y.sum().backward()
    msg = str(info.value)
    assert "backward of op '_badgrad'" in msg and "gradient for input 0" in msg
    assert "y = _BadGrad.apply(x)  # made here" in msg


def _helper(t):
    return t.log()  # inside the user's own helper


def test_innermost_user_frame_wins_and_framework_frames_are_skipped():
    x = _x([-1.0])
    with pytest.raises(tg.AnomalyError) as info, tg.detect_anomaly():
        _helper(x)
    assert "in _helper" in str(info.value) and "return t.log()" in str(info.value)
    # a call through nn.functional (several framework frames) still lands on this file
    with pytest.raises(tg.AnomalyError) as info, tg.detect_anomaly():
        F.leaky_relu(tg.Tensor(np.array([np.nan]), requires_grad=True))
    msg = str(info.value)
    assert "test_anomaly.py" in msg and "F.leaky_relu(" in msg


def test_off_by_default_nothing_recorded_nothing_raised(monkeypatch):
    assert autograd._state.anomaly is False

    def boom():
        raise AssertionError("_user_frame must not run outside detect_anomaly")

    monkeypatch.setattr(autograd, "_user_frame", boom)
    x = _x([-1.0, 0.0])
    y = x.log()  # NaN and -inf, silently, as in NumPy
    assert not np.isfinite(y.data).any()
    assert not hasattr(y.grad_fn, "created_at")
    (x.sqrt()).sum().backward()
    assert np.isinf(x.grad.data[1])


def test_state_restored_after_error_and_nesting():
    with pytest.raises(tg.AnomalyError):
        with tg.detect_anomaly():
            with tg.detect_anomaly(check_nan=False):
                _x([-1.0]).log()  # inner block switched checking off
                assert autograd._state.anomaly is False
            _x([-1.0]).log()
    assert autograd._state.anomaly is False
    assert autograd._state.vjp_of is None


def test_graph_built_outside_backward_inside_says_so():
    x = _x([0.0])
    r = x.sqrt()
    with pytest.raises(tg.AnomalyError) as info, tg.detect_anomaly():
        r.sum().backward()
    assert "created outside detect_anomaly" in str(info.value)


def test_finite_graph_runs_normally_under_anomaly():
    x = _x([1.0, 2.0])
    with tg.detect_anomaly():
        y = x.log() * x
        y.sum().backward()
    np.testing.assert_allclose(x.grad.data, np.log([1.0, 2.0]) + 1.0)
    assert "y = x.log() * x" in y.grad_fn.created_at  # kept after the graph is released


_QUIET_SCRIPT = r"""
import numpy as np, tinygrad_np as tg
x = tg.Tensor([0.0, 1.0, -1.0], requires_grad=True)
y = x.log() + x.sqrt() + 1 / x + x ** -np.inf + tg.Tensor([3e38]) * 10 + (x * np.inf) * 0
y.sum().backward()
assert np.isnan(y.data[[0, 2]]).all() and np.isnan(x.grad.data[0]), (y, x.grad)
try:  # the user's own NumPy still warns
    np.log(np.zeros(1))
    raise SystemExit("no warning from the user's own np.log(0)")
except RuntimeWarning:
    pass
with np.errstate(divide="raise"):  # and NumPy's error settings still apply in the ops
    try:
        x.log()
        raise SystemExit("no FloatingPointError under np.errstate(divide='raise')")
    except FloatingPointError:
        pass
print("quiet")
"""


def test_special_values_in_ops_raise_no_numpy_warnings():
    # in a fresh interpreter with RuntimeWarnings as errors: pytest drops the filter that
    # importing tinygrad_np adds (and this suite restates it in pyproject.toml)
    run = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", _QUIET_SCRIPT],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "quiet", run.stderr[-2000:]


def test_the_suites_filter_is_the_packages():
    from tinygrad_np import _quiet

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    entry = f"ignore:{_quiet.IEEE_MESSAGES}:RuntimeWarning:{_quiet.OWN_MODULES}"
    assert entry.replace("\\", "\\\\") in text
