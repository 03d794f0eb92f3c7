"""Bad input gives a clear error naming the argument; NaN propagates without crashing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import Tensor


def _t(*shape, grad=False):
    return Tensor(np.random.default_rng(0).standard_normal(shape), requires_grad=grad)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("add", lambda a, b: a + b),
        ("sub", lambda a, b: a - b),
        ("mul", lambda a, b: a * b),
        ("div", lambda a, b: a / b),
        ("pow", lambda a, b: a**b),
    ],
)
def test_broadcast_mismatch_names_op_and_shapes(name, fn):
    with pytest.raises(ValueError, match=rf"{name}: .*\(2, 3\) and \(4,\)"):
        fn(_t(2, 3), _t(4))


def test_where_mismatch():
    with pytest.raises(ValueError, match=r"where: condition \(2,\).*\(3,\)"):
        tg.where(np.array([True, False]), _t(3), _t(3))


def test_matmul_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\)"):
        _t(2, 3) @ _t(4, 5)
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 2, 3\) and \(3, 3, 4\)"):
        _t(2, 2, 3) @ _t(3, 3, 4)
    with pytest.raises(ValueError, match="matmul"):
        _t(3) @ Tensor(np.array(2.0))


def test_cat_and_stack_mismatch_name_the_tensor():
    with pytest.raises(ValueError, match=r"cat: tensors\[1\] has shape \(3, 2\)"):
        tg.cat([_t(2, 3), _t(3, 2)], dim=0)
    with pytest.raises(ValueError, match=r"cat: tensors\[1\]"):
        tg.cat([_t(2, 3), _t(2, 3, 1)], dim=0)
    with pytest.raises(ValueError, match=r"stack: tensors\[2\] has shape \(2,\)"):
        tg.stack([_t(3), _t(3), _t(2)])
    with pytest.raises(ValueError, match="non-empty"):
        tg.cat([])


def test_linear_mismatches():
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\).*\(4, 5\)"):
        F.linear(_t(2, 3), _t(4, 5))
    with pytest.raises(ValueError, match="linear: bias"):
        F.linear(_t(2, 3), _t(4, 3), _t(5))
    with pytest.raises(ValueError, match="linear: input dtype float32"):
        F.linear(_t(2, 3).float(), _t(4, 3))


def test_movement_errors():
    x = _t(2, 3)
    with pytest.raises(ValueError, match=r"reshape: .*\(2, 3\).*\(4, 2\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match="expand"):
        x.expand(4, 3)
    with pytest.raises(ValueError, match="permute"):
        x.permute(0, 0)
    with pytest.raises(ValueError, match="permute"):
        x.permute(0, 5)
    with pytest.raises(ValueError, match="permute"):
        x.permute(0, 1, 2)
    with pytest.raises(ValueError, match="unsqueeze"):
        x.unsqueeze(4)
    with pytest.raises(ValueError, match="flatten"):
        _t(2, 3, 4).flatten(2, 1)
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        x.sum(2)
    with pytest.raises(ValueError, match="softmax: dim 3"):
        x.softmax(3)
    with pytest.raises(ValueError, match="names an axis twice"):
        x.sum((0, -2))
    with pytest.raises(IndexError, match="invalid"):
        x[5]
    with pytest.raises(IndexError, match="integer or bool"):
        x[np.array([0.5])]


def test_loss_target_shape_mismatch():
    with pytest.raises(ValueError, match=r"mse_loss: target has shape \(3,\).*\(2, 3\)"):
        F.mse_loss(_t(2, 3), _t(3))
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits: target"):
        F.binary_cross_entropy_with_logits(_t(2, 3), _t(2, 2))
    with pytest.raises(ValueError, match=r"cross_entropy: target has shape \(3,\)"):
        F.cross_entropy(_t(2, 4), np.array([0, 1, 2]))


# ----------------------------------------------------------------------------- dtypes


def test_integer_tensor_cannot_require_grad_names_dtype():
    with pytest.raises(TypeError, match="only floating-point tensors can require grad.*int64"):
        Tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match="bool"):
        Tensor(np.array([True]), requires_grad=True)
    with pytest.raises(TypeError, match="dtype"):
        Tensor([1.0], dtype="not-a-dtype")


def test_where_condition_must_be_bool():
    with pytest.raises(TypeError, match="where: condition must be bool"):
        tg.where(np.array([1, 0]), _t(2), _t(2))


# ----------------------------------------------------------------------------- class targets


@pytest.mark.parametrize("bad", [3, -1, 7])
def test_out_of_range_class_target_names_target_and_class(bad):
    logits = _t(2, 3, grad=True)
    with pytest.raises(IndexError, match=rf"cross_entropy: target holds class {bad}.*\[0, 3\)"):
        F.cross_entropy(logits, np.array([0, bad]))
    with pytest.raises(IndexError, match=rf"nll_loss: target holds class {bad}"):
        F.nll_loss(logits, Tensor(np.array([bad, 0])))


def test_out_of_range_target_in_spatial_loss():
    with pytest.raises(IndexError, match="class 4"):
        F.cross_entropy(_t(2, 3, 2), np.array([[0, 1], [4, 2]]))


def test_ignore_index_is_not_out_of_range():
    loss = F.cross_entropy(_t(2, 3), np.array([-100, 1]))
    assert np.isfinite(loss.item())
    loss = F.cross_entropy(_t(2, 3), np.array([5, 1]), ignore_index=5)
    assert np.isfinite(loss.item())


def test_class_target_must_be_integer():
    with pytest.raises(TypeError, match="cross_entropy: target must hold integer"):
        F.cross_entropy(_t(2, 3), np.array([0.0, 1.0]))


def test_bad_options_name_the_argument():
    x = _t(2, 3)
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(x, x, reduction="max")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, np.array([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")
    with pytest.raises(TypeError, match="negative_slope"):
        F.leaky_relu(x, "0.1")
    with pytest.raises(ValueError, match="dropout: p"):
        F.dropout(x, 1.5)
    with pytest.raises(ValueError, match="clip"):
        x.clip()
    with pytest.raises(ValueError, match="pad"):
        F.pad(x, (1, 2, 3))


# ----------------------------------------------------------------------------- NaN


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("exp_sum", lambda x: x.exp().sum()),
        ("relu", lambda x: x.relu().sum()),
        ("sigmoid_tanh", lambda x: (x.sigmoid() * x.tanh()).sum()),
        ("softmax", lambda x: x.softmax(-1).sum()),
        ("log_softmax", lambda x: x.log_softmax(-1).sum()),
        ("max", lambda x: x.max(1).values.sum()),
        ("matmul", lambda x: (x @ x.T).sum()),
        ("mean_var", lambda x: x.mean() + x.var()),
        ("cross_entropy", lambda x: F.cross_entropy(x, np.array([0, 2]))),
        ("gelu", lambda x: F.gelu(x).sum()),
        ("index", lambda x: x[[0, 0], 1:].sum()),
    ],
)
def test_nan_propagates_without_crashing(name, fn):
    x = Tensor(np.array([[1.0, np.nan, -2.0], [0.5, 3.0, 1.0]]), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = fn(x)
        assert np.isnan(y.item()), f"{name}: NaN input should give NaN output"
        y.backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert np.isnan(x.grad.numpy()).any() or name in ("relu", "max", "index")


def test_nan_in_float32_training_step_does_not_raise():
    w = Tensor(np.array([[np.nan, 1.0]], np.float32), requires_grad=True)
    loss = F.mse_loss(F.linear(Tensor(np.ones((3, 2), np.float32)), w), np.zeros((3, 1)))
    loss.backward()
    assert np.isnan(loss.item()) and np.isnan(w.grad.numpy()).all()


def test_comparison_in_place_and_assignment_shape_errors_name_the_operation():
    """API.md: a shape mismatch in any op raises ValueError naming the operands and their
    shapes; comparisons, & and |, in-place arithmetic and item assignment passed NumPy's
    message on (no op named; the in-place one with a third shape)."""
    a, b = tg.ones(2, 3), tg.ones(4)
    for fn, name in ((lambda: a < b, "less"), (lambda: a == b, "equal"),
                     (lambda: (a > 0) & (b > 0), "bitwise_and")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"{name}: operands with shapes \(2, 3\) and \(4,\)"):
            fn()
    with tg.no_grad():
        with pytest.raises(ValueError, match=r"add in place: .*\(4,\).*\(2, 3\)"):
            a += b
        with pytest.raises(ValueError, match=r"item assignment: .*\(4,\).*\(3,\)"):
            a[0] = np.ones(4)


def test_functions_take_pytorchs_input_keyword():
    """F.softmax, F.log_softmax and F.dropout take input= as PyTorch's (they took x=)."""
    t = tg.Tensor([[1.0, 2.0], [3.0, 5.0]])
    np.testing.assert_array_equal(F.softmax(input=t, dim=1).data, F.softmax(t, 1).data)
    np.testing.assert_array_equal(F.log_softmax(input=t, dim=0).data, F.log_softmax(t, 0).data)
    assert F.dropout(input=t, p=0.0).shape == (2, 2)


def test_assignment_errors_other_than_shapes_keep_numpys_message():
    """Only a real shape mismatch gets the item-assignment shape message: NaN into an int
    tensor keeps NumPy's "cannot convert float NaN to integer" (a scalar was reported as
    not broadcasting)."""
    t = tg.Tensor(np.arange(3))
    for key in (slice(None), slice(0, 2), np.array([True, False, True]), [0, 2]):
        with pytest.raises(ValueError, match="NaN to integer"):
            t[key] = float("nan")
