"""Dtypes, scalars and integer edge cases as PyTorch has them (each found different by a
differential hunt: silent wrong values or dtypes first, then errors where PyTorch works)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F

torch = pytest.importorskip("torch")


def _same(ours: tg.Tensor, theirs) -> None:
    assert ours.shape == tuple(theirs.shape)
    assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_mse_loss_refuses_integer_input():
    with pytest.raises(TypeError, match="mse_loss: input must be a floating-point"):
        F.mse_loss(tg.Tensor(np.array([1, 2])), tg.Tensor(np.array([0, 0])))
    with pytest.raises(TypeError, match="mse_loss"):
        F.mse_loss(tg.Tensor(np.array([1, 2], np.int32)), np.array([0.5, 0.5]))


@pytest.mark.parametrize("args", [(1e8, 1e8 + 100, 1.0), (16777216.0, 16777226.0), (0, 1, 0.1),
                                  (-3.5, 7.25, 0.37), (2.0,)])
def test_float_arange_is_made_in_float64_then_rounded(args):
    ours = tg.arange(*args)
    np.testing.assert_array_equal(ours.numpy(), np.arange(*args, dtype=np.float64)
                                  .astype(np.float32))  # (correctly rounded)
    theirs = torch.arange(*args)  # (PyTorch's own rounding: within an ulp of those)
    assert ours.shape == tuple(theirs.shape) and ours.dtype == np.float32
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=2e-7, atol=3e-8)


@pytest.mark.parametrize("args", [(0, 2.5, 1), (0, -2.5, -1), (0.5, 3, 1), (0, 2.7, 2),
                                  (1, 10.9, 3), (0, 5, 1.5)])
def test_integer_arange_cuts_its_arguments_to_ints_as_pytorch(args):
    _same(tg.arange(*args, dtype="int64"), torch.arange(*args, dtype=torch.int64))
    with pytest.raises(ValueError, match="step=0.5 is 0 as an int"):
        tg.arange(0, 2.5, 0.5, dtype="int64")


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "bool"])
def test_integer_sums_are_int64(dtype):
    a = (np.arange(12).reshape(3, 4) * 37 % 256).astype(dtype)
    for dim in (None, 0, (0, 1)):
        _same(tg.Tensor(a).sum(dim), torch.from_numpy(a).sum(dim) if dim is not None
              else torch.from_numpy(a).sum())
    row_sums = tg.Tensor(a).sum(1)
    total = tg.Tensor(a).sum()
    assert (row_sums - total).numpy().min() < 0 or a.sum() == 0  # (no wrap-around)


@pytest.mark.parametrize("other", [np.float64(0.1), 0.1, [0.1], np.float32(0.1)])
def test_comparisons_take_a_scalar_as_arithmetic_does(other):
    x = tg.Tensor([0.1, 0.2])
    xt = torch.tensor([0.1, 0.2])
    ot = torch.tensor(other) if isinstance(other, list) else other
    for op in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
        _same(getattr(x, op)(other), getattr(xt, op)(ot))


def test_comparisons_with_none_or_a_string_are_python_bools():
    x = tg.Tensor([1.0, 2.0])
    assert (x == None) is False and (x != None) is True  # noqa: E711 - the point of the test
    assert (x == "a") is False and (x != "a") is True
    with pytest.raises(TypeError):
        x < None  # noqa: B015


def test_integer_comparisons_with_out_of_range_ints_do_not_wrap():
    u = tg.Tensor(np.array([0, 44, 255], np.uint8))
    assert not (u == 300).numpy().any() and (u < 300).numpy().all()
    assert not (u == -1).numpy().any() and (u > -1).numpy().all()


@pytest.mark.parametrize("dtype,scalar", [("uint8", -1), ("uint8", 300), ("int32", 2**40),
                                          ("int8", -200), ("int16", 2**63 - 1)])
def test_python_ints_outside_the_dtype_wrap_as_pytorch(dtype, scalar):
    a = np.array([0, 5, 100], dtype)
    for op in ("__add__", "__sub__", "__mul__", "__radd__", "__rsub__"):
        _same(getattr(tg.Tensor(a), op)(scalar), getattr(torch.from_numpy(a), op)(scalar))


def test_an_int_beyond_64_bits_is_a_clear_error():
    with pytest.raises(OverflowError, match="out of range for the tensor's dtype int32"):
        tg.Tensor(np.array([1, 2], np.int32)) + 2**70


def test_division_and_powers_do_not_wrap_an_int_beyond_the_dtype():
    a = np.array([-32768, 16384, 32767], np.int16)
    _same(tg.Tensor(a) / 32768, torch.from_numpy(a) / 32768)  # (audio normalisation)
    u = np.array([2, 4], np.uint8)
    _same(512 / tg.Tensor(u), 512 / torch.from_numpy(u))
    _same(tg.Tensor(u) / 256, torch.from_numpy(u) / 256)
    with pytest.raises(OverflowError, match="out of range"):
        tg.Tensor(u) ** 256  # (PyTorch raises too)
    with pytest.raises(OverflowError, match="out of range"):
        tg.where(tg.Tensor(np.array([True, False])), tg.Tensor(u), 1000)


def test_comparisons_keep_values_beyond_the_dtype_and_complex_scalars():
    i = tg.Tensor(np.array([1, 16777217, 2**62]))
    _same(i == 16777217.0, torch.tensor([1, 16777217, 2**62]) == 16777217.0)
    assert not (i == 2**63).numpy().any() and (i < 2**64).numpy().all()
    assert (i == np.uint64(2**63)).numpy().tolist() == [False] * 3
    assert (tg.Tensor([1.0]) == 1 + 0j).numpy().tolist() == [True]
    assert (tg.Tensor(np.array([0.1])) == [0.1]).numpy().tolist() == [True]  # (float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no cast overflow warning)
        assert (tg.Tensor(np.array([1, 2], np.int32)) < 1e40).numpy().all()
        assert (tg.Tensor(np.array([1.0, 3e38], np.float32)) < 1e40).numpy().all()


@pytest.mark.parametrize("dtype", ["int32", "int16", "uint8", "int64"])
@pytest.mark.parametrize("args", [(0, 3.7), (0.5, 3.2, 1.5), (0, 2.5, 1), (0, 5, 1.5),
                                  (0.5, 5.6), (10, 2, -3)])
def test_integer_arange_as_pytorch_for_each_dtype(dtype, args):
    _same(tg.arange(*args, dtype=dtype), torch.arange(*args, dtype=getattr(torch, dtype)))


@pytest.mark.parametrize("bound", [np.float64(0.15), 0.15, 0.5, 2, np.int64(1)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32"])
def test_clip_bounds_are_scalars(bound, dtype):
    a = np.array([0, 1, 3, -2]).astype(dtype)
    _same(tg.Tensor(a).clip(bound), torch.from_numpy(a).clamp(bound))
    _same(tg.Tensor(a).clip(None, bound), torch.from_numpy(a).clamp(None, bound))


@pytest.mark.parametrize("pair", [(1.0, 0), (1, 0.5), (np.float64(2.5), 1), (1, 0), (True, 0)])
def test_where_of_two_scalars(pair):
    c = np.array([True, False, True])
    _same(tg.where(tg.Tensor(c), *pair), torch.where(torch.from_numpy(c), *pair))


def test_argmax_and_max_keepdim_without_dim():
    a = np.random.default_rng(0).standard_normal((2, 3, 4))
    for name in ("argmax", "argmin"):
        _same(getattr(tg.Tensor(a), name)(keepdim=True),
              getattr(torch.from_numpy(a), name)(keepdim=True))
    x = tg.Tensor(a, requires_grad=True)
    y = x.max(keepdim=True)
    assert y.shape == (1, 1, 1)
    np.testing.assert_array_equal(y.numpy(), torch.from_numpy(a).amax((0, 1, 2), keepdim=True))
    y.backward(tg.Tensor(np.ones((1, 1, 1))))
    assert x.grad.numpy().sum() == 1 and x.grad.numpy().flat[a.argmax()] == 1


@pytest.mark.parametrize("exponent", [np.nan, np.inf, -np.inf])
def test_pow_of_many_negative_bases_to_nan_or_inf(exponent):
    a = np.linspace(-3, 3, 101).astype(np.float32)
    _same(tg.Tensor(a) ** exponent, torch.from_numpy(a) ** exponent)


def test_integer_pow_with_negative_integer_exponents():
    a = np.array([0, 0, 2, -1, 1, -1, 3])
    b = np.array([-1, -2, -1, -3, -5, -2, 2])
    _same(tg.Tensor(a) ** tg.Tensor(b), torch.from_numpy(a) ** torch.from_numpy(b))
    _same(2 ** tg.Tensor(b), 2 ** torch.from_numpy(b))
    with pytest.raises(ValueError):  # (a negative scalar exponent: both refuse)
        tg.Tensor(a) ** -1


def test_batch_norm_of_an_empty_batch():
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    x = tg.Tensor(np.zeros((0, 3, 2), np.float32), requires_grad=True)
    w = tg.Tensor(np.ones(3, np.float32), requires_grad=True)
    b = tg.Tensor(np.zeros(3, np.float32), requires_grad=True)
    y = F.batch_norm(x, rm, rv, w, b, training=True)
    assert y.shape == (0, 3, 2)
    y.sum().backward()
    assert x.grad.shape == (0, 3, 2)
    np.testing.assert_array_equal(w.grad.numpy(), 0)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)


def test_zero_d_results_are_arrays_that_in_place_ops_write():
    x = tg.Tensor(np.arange(12.0, dtype=np.float32).reshape(3, 4))
    xt = torch.arange(12.0).reshape(3, 4)
    assert type(x[1, 2].data) is np.ndarray and type(x.sum().data) is np.ndarray
    x[1, 2] += 100
    xt[1, 2] += 100
    _same(x, xt)
    y, yt = x[0, 1], xt[0, 1]  # (a 0-d view, as PyTorch's)
    y += 5
    yt += 5
    _same(x, xt)
    s = x.sum()
    s += 1
    assert s.item() == xt.sum().item() + 1
    w = tg.Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    with tg.no_grad():
        w[0, 0] -= 0.5
    assert w.numpy()[0, 0] == 0.5


def test_a_tensor_gradient_takes_the_outputs_dtype():
    x = tg.Tensor(np.zeros(5, np.float32), requires_grad=True)
    xt = torch.zeros(5, requires_grad=True)
    idx = np.zeros(3000, np.int64)
    x[idx].backward(tg.Tensor(np.ones(3000, np.float16)))  # (float16 sums stop at 2048)
    xt[torch.from_numpy(idx)].backward(torch.ones(3000, dtype=torch.float16))
    _same(x.grad, xt.grad)
    x.grad = None
    x[[0, 0, 1]].backward(tg.Tensor(np.ones(3, bool)))
    assert x.grad.numpy().tolist() == [2, 1, 0, 0, 0] and x.grad.dtype == np.float32
    y = x * 2
    y.retain_grad()
    y.backward(tg.Tensor(np.ones(5, np.float64)))
    assert y.grad.dtype == np.float32
    with pytest.raises(TypeError, match="must hold real numbers"):
        (x * 2).backward(tg.Tensor(np.ones(5, np.complex64)))  # (PyTorch raises too)


def test_float16_sigmoid_and_large_gathers():
    h = np.linspace(-4, 4, 9).astype(np.float16)
    _same(tg.Tensor(h).sigmoid(), torch.from_numpy(h).sigmoid())
    x = tg.Tensor(np.ones((10, 4), np.float16), requires_grad=True)
    idx = np.arange(5000) % 10
    x[idx].sum().backward()
    assert x.grad.dtype == np.float16 and x.grad.numpy()[0, 0] == 500


def test_format_and_index_as_pytorch():
    loss, lt = tg.Tensor(np.float32(3.14159)), torch.tensor(3.14159)
    assert f"{loss:.3f}" == f"{lt:.3f}" == "3.142"
    assert f"{tg.Tensor([1.0, 2.0])}" == str(tg.Tensor([1.0, 2.0]))
    with pytest.raises(TypeError):
        f"{tg.Tensor([1.0, 2.0]):.2f}"  # noqa: B018 - (PyTorch raises too)
    items = [10, 20, 30]
    assert items[tg.Tensor(np.array(1))] == items[torch.tensor(1)] == 20
    assert items[: tg.Tensor(np.array([2]))] == [10, 20]
    for bad in (tg.Tensor(1.0), tg.Tensor(np.array([1, 2]))):
        with pytest.raises(TypeError, match="only integer tensors of a single element"):
            items[bad]


def test_complex_values_are_not_differentiated():
    # the VJPs are those of real functions (no conjugates): a complex tensor that required
    # grad got wrong gradients (|z*z|'s was not 2z), so nothing complex is recorded
    with pytest.raises(TypeError, match="complex128 .*real functions only"):
        tg.Tensor(np.array([1 + 2j]), requires_grad=True)
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    for make in (lambda: x * 1j, lambda: x.astype(np.complex64),
                 lambda: x + tg.Tensor(np.array([1j, 2j], np.complex64))):  # fmt: skip
        with pytest.raises(TypeError, match="complex64 .*an input requires grad"):
            make()
    with pytest.raises(TypeError, match="floating-point values"):
        x.data = np.array([1j, 2j])
    # without a graph complex values work, in PyTorch's dtypes
    xt = torch.tensor([1.0, 2.0])
    with tg.no_grad():
        _same(x * 1j, xt * 1j)
    for dt, tdt in ((np.int64, torch.int64), (np.float64, torch.float64), (bool, torch.bool)):
        a = np.array([1, 0], dt)
        _same(tg.Tensor(a) * (1 + 2j), torch.tensor(a, dtype=tdt) * (1 + 2j))
        _same(tg.Tensor(a) / 1j, torch.tensor(a, dtype=tdt) / 1j)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_integer_base_to_a_float_exponent_gradient_in_the_result_dtype(dtype):
    """The exponent's gradient a^b log(a) with an integer base takes log(a) in the result's
    dtype: it was taken in float32 (8 digits lost in float64), as PyTorch does not."""
    a = tg.Tensor(np.array([3, 7, 10], np.int64))
    b = tg.Tensor(np.array([0.5, 1.3, 2.0], dtype), requires_grad=True)
    y = a**b
    y.sum().backward()
    assert y.dtype == np.result_type(np.int64, dtype) and b.grad.dtype == dtype  # (NumPy's)
    base = np.array([3.0, 7.0, 10.0])
    exact = base ** b.data.astype(np.float64) * np.log(base)
    rtol = 1e-15 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(b.grad.data, exact, rtol=rtol)


@pytest.mark.parametrize("base, exponent", [(np.float32, np.float64), (np.float16, np.float32)])
def test_a_narrower_float_base_takes_its_log_in_the_result_dtype(base, exponent):
    """gb = a^b log(a) in the result's dtype for a float base narrower than the exponent
    too (a float16 base's log in float16 was 2e-4 off), and the base's own gradient still
    flows (the cast is an op, not a constant)."""
    a = tg.Tensor(np.array([3.0, 7.0, 10.0], base), requires_grad=True)
    b = tg.Tensor(np.array([0.5, 1.3, 2.0], exponent), requires_grad=True)
    (a**b).sum().backward()
    base64, b64 = np.array([3.0, 7.0, 10.0]), b.data.astype(np.float64)
    rtol = 1e-15 if exponent == np.float64 else 2e-7
    np.testing.assert_allclose(b.grad.data, base64**b64 * np.log(base64), rtol=rtol)
    assert a.grad is not None and a.grad.dtype == base
