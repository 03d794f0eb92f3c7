"""Tensor construction, dtype rules, operators, grad mode and the other API.md promises."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np import Tensor

# ----------------------------------------------------------------------------- construction


def test_python_floats_become_float32():
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor([[1, 2.5]]).dtype == np.float32


def test_numpy_float64_stays_and_dtype_argument():
    assert Tensor(np.zeros(3)).dtype == np.float64
    assert Tensor(np.float64(2.0)).dtype == np.float64
    assert Tensor(np.zeros(3, np.float32)).dtype == np.float32
    assert Tensor([1.0], dtype="float64").dtype == np.float64
    assert Tensor([1.0], dtype=np.float64).dtype == np.float64


def test_dtype_float64_from_python_floats_keeps_full_precision():
    t = Tensor([0.1, 1 / 3], dtype="float64")
    assert t.data.tolist() == [0.1, 1 / 3]
    assert Tensor(0.1, dtype=np.float64).item() == 0.1


def test_integer_and_bool_keep_dtype():
    assert Tensor([1, 2]).dtype == np.int64
    assert Tensor(np.array([1, 2], np.int32)).dtype == np.int32
    assert Tensor([True, False]).dtype == np.bool_


@pytest.mark.parametrize("data", [[1, 2], np.array([1, 2], np.int32), [True, False]])
def test_integer_and_bool_cannot_require_grad(data):
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(data, requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(data).requires_grad_()


def test_factories_reject_integer_requires_grad():
    with pytest.raises(TypeError):
        tg.zeros(2, dtype="int64", requires_grad=True)
    with pytest.raises(TypeError):
        tg.arange(3, requires_grad=True)


def test_constructor_copies_data():
    a = np.ones(3)
    t = Tensor(a)
    a[0] = 5.0
    assert t.data[0] == 1.0
    t2 = Tensor(t)
    t.data[1] = 7.0
    assert t2.data[1] == 1.0


def test_object_data_is_rejected():
    with pytest.raises(TypeError):
        Tensor([object()])


# ----------------------------------------------------------------------------- dtype promotion


def test_promotion_follows_numpy():
    a = Tensor(np.ones(2, np.float32))
    b = Tensor(np.ones(2, np.float64))
    assert (a + b).dtype == np.float64
    assert (b * a).dtype == np.float64
    assert (a @ a).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_python_scalars_never_change_dtype(dtype):
    t = Tensor(np.ones(3, dtype))
    for r in (t + 1.5, 1.5 + t, t * 2, 2 - t, t / 3.0, 3.0 / t, t**2, 2.0**t, -t, t - True):
        assert r.dtype == dtype
    i = Tensor([1, 2])
    assert (i + 1).dtype == np.int64
    assert (i * 3).dtype == np.int64


def test_reflected_ops_with_arrays():
    t = Tensor([1.0, 2.0])
    r = np.array([3.0, 4.0], np.float32) + t
    assert isinstance(r, Tensor)
    assert r.tolist() == [4.0, 6.0]
    assert (np.array([3.0, 4.0], np.float32) - t).tolist() == [2.0, 2.0]
    assert (np.array([[1.0, 0.0], [0.0, 2.0]], np.float32) @ t).tolist() == [1.0, 4.0]


# ----------------------------------------------------------------------------- attributes


def test_attributes_and_conversions():
    t = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and t.dtype == np.float32
    assert t.is_leaf and t.grad_fn is None and t.grad is None
    y = t * 2.0
    assert not y.is_leaf and y.grad_fn is not None and y.grad_fn.name == "mul"
    assert isinstance(t.numpy(), np.ndarray)
    assert np.asarray(t).shape == (2, 3)
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert t.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert Tensor([2.5]).item() == 2.5
    with pytest.raises(ValueError, match="one element"):
        t.item()
    c = t.clone()
    assert c.grad_fn is not None and c.data is not t.data
    d = t.detach()
    assert d.data is t.data and not d.requires_grad
    assert t.astype("float64").dtype == np.float64
    assert t.astype(np.float32) is t


def test_data_is_assignable_outside_the_graph():
    t = Tensor(np.zeros(3), requires_grad=True)
    t.data[1] = 5.0
    assert t.tolist() == [0.0, 5.0, 0.0]
    t.data = np.ones(3)
    (t * t).sum().backward()
    assert t.grad.tolist() == [2.0, 2.0, 2.0]


def test_grad_is_assignable():
    t = Tensor(np.zeros(2), requires_grad=True)
    t.grad = Tensor(np.ones(2))
    assert t.grad.tolist() == [1.0, 1.0]
    t.grad = None
    assert t.grad is None
    with pytest.raises(ValueError, match="shape"):
        t.grad = Tensor(np.ones(3))


def test_repr_is_readable():
    t = Tensor([1.0, 2.0], requires_grad=True)
    assert "requires_grad=True" in repr(t)
    assert "grad_fn=<mul>" in repr(t * 2.0)
    assert "float64" in repr(Tensor(np.zeros(2)))


# ----------------------------------------------------------------------------- in place, compare


def test_in_place_ops_on_tensors_without_grad():
    t = Tensor([1.0, 2.0])
    data = t.data
    t += 1.0
    t *= Tensor([2.0, 3.0])
    t -= 1.0
    t /= 2.0
    assert t.data is data
    np.testing.assert_allclose(t.numpy(), [1.5, 4.0])
    t[0] = 9.0
    assert t.tolist()[0] == 9.0


def test_in_place_on_requires_grad_is_refused_but_allowed_under_no_grad():
    p = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        p += 1.0
    with pytest.raises(RuntimeError, match="in-place"):
        p[0] = 3.0
    with tg.no_grad():
        p -= 0.5
        p[1] = 0.0
    assert p.tolist() == [0.5, 0.0]
    assert p.is_leaf and p.requires_grad


def test_comparisons_return_bool_without_grad():
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = Tensor([2.0, 2.0, 2.0])
    for r, want in [
        (a < b, [True, False, False]),
        (a <= b, [True, True, False]),
        (a > b, [False, False, True]),
        (a >= 2.0, [False, True, True]),
        (a == b, [False, True, False]),
        (a != b, [True, False, True]),
    ]:
        assert r.dtype == np.bool_ and not r.requires_grad and r.grad_fn is None
        assert r.tolist() == want
    m = (a > 1.0) & (a < 3.0)
    assert m.tolist() == [False, True, False]
    assert (~m).tolist() == [True, False, True]


# ----------------------------------------------------------------------------- factories


@pytest.mark.parametrize("make", [tg.zeros, tg.ones, tg.empty, tg.rand, tg.randn])
def test_factories_take_shape_as_tuple_or_args(make):
    assert make(2, 3).shape == (2, 3)
    assert make((2, 3)).shape == (2, 3)
    assert make([4]).shape == (4,)
    assert make(2, 3).dtype == np.float32
    assert make(2, dtype="float64").dtype == np.float64
    t = make(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf


def test_other_factories():
    assert tg.full((2, 2), 3.0).tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert tg.full(3, 1.0).dtype == np.float32
    assert tg.zeros(2).tolist() == [0.0, 0.0]
    assert tg.ones(2).tolist() == [1.0, 1.0]
    assert tg.arange(3).tolist() == [0, 1, 2] and tg.arange(3).dtype == np.int64
    assert tg.arange(0, 1, 0.5).dtype == np.float32
    assert tg.eye(2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    x = Tensor(np.ones((2, 3)))
    assert tg.zeros_like(x).dtype == np.float64 and tg.ones_like(x).shape == (2, 3)
    assert tg.ones_like(x, dtype="float32").dtype == np.float32
    assert tg.tensor([1.0]).dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        tg.zeros(-1)


def test_manual_seed_reproducible():
    tg.manual_seed(3)
    a, b = tg.rand(4), tg.randn(2, 2)
    tg.manual_seed(3)
    assert tg.rand(4).tolist() == a.tolist()
    assert tg.randn(2, 2).tolist() == b.tolist()
    assert tg.rand(4).tolist() != a.tolist()


def test_manual_seed_controls_dropout():
    import tinygrad_np.nn.functional as F

    x = tg.ones(100)
    tg.manual_seed(0)
    a = F.dropout(x, 0.5)
    tg.manual_seed(0)
    b = F.dropout(x, 0.5)
    assert a.tolist() == b.tolist()
    assert set(np.unique(a.numpy()).tolist()) == {0.0, 2.0}


# ----------------------------------------------------------------------------- grad mode


def test_no_grad_and_enable_grad_as_decorators():
    x = Tensor([1.0], requires_grad=True)

    @tg.no_grad
    def bare(t):
        return t * 2.0

    @tg.no_grad()
    def called(t):
        return t * 2.0

    @tg.enable_grad
    def back_on(t):
        return t * 2.0

    assert bare.__name__ == "bare"
    assert not bare(x).requires_grad and not called(x).requires_grad
    with tg.no_grad():
        assert back_on(x).requires_grad
        assert tg.enable_grad()(lambda t: t * 2.0)(x).requires_grad
    assert (x * 2.0).requires_grad  # the mode is restored


def test_grad_mode_restored_after_exception():
    with pytest.raises(ZeroDivisionError), tg.no_grad():
        1 / 0
    assert (Tensor([1.0], requires_grad=True) * 2.0).requires_grad


# ----------------------------------------------------------------------------- backward API


def test_backward_on_non_scalar_without_gradient_raises():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2.0).backward()
    (x * 2.0).backward(Tensor([1.0, 1.0]))
    assert x.grad.tolist() == [2.0, 2.0]
    (x * 2.0).backward(np.array([1.0, 0.0], np.float32))  # an array is fine too
    assert x.grad.tolist() == [4.0, 2.0]


def test_backward_gradient_of_wrong_shape_raises():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="shape"):
        (x * 2.0).backward(Tensor([1.0, 1.0, 1.0]))


def test_backward_without_grad_history_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).sum().backward()


def test_tinygrad_grad_function():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (g,) = tg.grad((x * x).sum(), x)
    assert g.tolist() == [2.0, 4.0]
    assert x.grad is None


def test_retain_grad_and_register_hook_replacing_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = x * 3.0
    h.retain_grad()
    h.register_hook(lambda g: g * 0.0 + 1.0)  # replaces the incoming gradient
    (h * h).sum().backward()
    assert h.grad.tolist() == [1.0, 1.0]
    assert x.grad.tolist() == [3.0, 3.0]
    with pytest.raises(RuntimeError):
        Tensor([1.0]).register_hook(lambda g: g)


# ----------------------------------------------------------------------------- max / min


def test_max_min_with_dim_return_named_tuple():
    x = Tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    r = x.max(1)
    assert r.values.tolist() == [5.0, 7.0] and r.indices.tolist() == [1, 0]
    values, indices = x.min(0)
    assert values.tolist() == [1.0, 0.0, 2.0] and indices.tolist() == [0, 1, 0]
    assert indices.dtype == np.int64
    k = x.max(1, keepdim=True)
    assert k.values.shape == (2, 1) and k.indices.shape == (2, 1)
    assert isinstance(x.max(), Tensor) and x.max().item() == 7.0 and x.min().item() == 0.0
    assert x.argmax(1).tolist() == [1, 0] and x.argmax().item() == 3


def test_max_gradient_goes_to_first_maximal_element():
    x = Tensor([[3.0, 1.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    x.max(1).values.sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    x.grad = None
    x.max().backward()
    assert x.grad.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    x.grad = None
    x.min(0).values.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]


# ----------------------------------------------------------------------------- methods


def test_shape_arguments_as_tuple_or_args():
    x = Tensor(np.arange(24.0).reshape(2, 3, 4))
    assert x.reshape(6, 4).shape == x.reshape((6, 4)).shape == (6, 4)
    assert x.view(-1, 4).shape == (6, 4)
    assert x.permute(2, 0, 1).shape == x.permute((2, 0, 1)).shape == (4, 2, 3)
    assert x[:, :1].expand(2, 5, 4).shape == (2, 5, 4)
    assert x[:, :1].expand((2, -1, 4)).shape == (2, 1, 4)
    assert x.flatten(1).shape == (2, 12)
    assert x.T.shape == (4, 3, 2)
    assert x.unsqueeze(1).squeeze(1).shape == (2, 3, 4)


def test_indexing_repeated_indices_accumulate():
    x = Tensor(np.arange(4.0), requires_grad=True)
    x[[0, 0, 3, 0]].sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 0.0, 1.0]
    x.grad = None
    x[Tensor([1, 1])].sum().backward()
    assert x.grad.tolist() == [0.0, 2.0, 0.0, 0.0]
    x.grad = None
    x[x > 1.5].sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_len_iter_bool():
    x = Tensor([[1.0, 2.0], [3.0, 4.0]])
    assert len(x) == 2
    assert [r.tolist() for r in x] == [[1.0, 2.0], [3.0, 4.0]]
    assert bool(Tensor([1.0]))
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)


def test_where_condition_as_array_or_tensor():
    a, b = Tensor([1.0, 2.0]), Tensor([5.0, 6.0])
    assert tg.where(np.array([True, False]), a, b).tolist() == [1.0, 6.0]
    assert tg.where(Tensor([False, True]), a, b).tolist() == [5.0, 2.0]
    assert tg.where(a > 1.5, a, 0.0).tolist() == [0.0, 2.0]


def test_dropout_eval_identity_scaling_and_gradient():
    import tinygrad_np.nn.functional as F

    x = Tensor(np.ones((50, 40)), requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 1.0).numpy().sum() == 0.0
    tg.manual_seed(5)
    y = F.dropout(x, 0.25)
    kept = y.numpy() != 0
    assert 0.65 < kept.mean() < 0.85  # about 1 - p survive
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.75)


_PROMOTION_EXPRS = ["a * 1.5", "1.5 * a", "a + 2", "a / 2", "2 / a", "a ** 0.5", "a / a",
                    "a - 0.5", "0.5 - a", "a * True", "a * 2"]  # fmt: skip


@pytest.mark.parametrize(
    "expr, init",
    [
        (e, i)
        for e in _PROMOTION_EXPRS
        for i in ([1, 2], [True, False], [1.0, 2.0])
        if not (isinstance(i[0], bool) and "-" in e)  # PyTorch refuses bool subtraction
    ],
)
def test_python_scalar_promotion_matches_torch(expr, init):
    """An integer or bool tensor meeting a Python float (or divided) gives float32, as in
    PyTorch, not NumPy's float64."""
    torch = pytest.importorskip("torch")
    with np.errstate(divide="ignore", invalid="ignore"):  # True / False
        ours = eval(expr, {"a": tg.Tensor(init)})
    theirs = eval(expr, {"a": torch.tensor(init)})
    assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
