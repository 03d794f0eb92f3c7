"""Every op-table row against PyTorch: values and gradients, in float64 and float32."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _rows import cases, grad_mask
from op_table import ROWS, make_inputs

import tinygrad_np as tg
import tinygrad_np.nn.functional as F

torch = pytest.importorskip("torch")

# (atol, rtol) for values and gradients
TOL = {np.float64: (1e-9, 1e-7), np.float32: (2e-5, 2e-4)}
TORCH_DTYPE = {np.float64: "float64", np.float32: "float32"}


def _check(row, shapes, dtype):
    arrays = make_inputs(row, shapes, seed=5, dtype=dtype)
    mask = grad_mask(row, len(arrays))
    xs = [tg.Tensor(a, requires_grad=m) for a, m in zip(arrays, mask, strict=True)]
    ts = [torch.tensor(a, requires_grad=m) for a, m in zip(arrays, mask, strict=True)]
    out = row.fn(*xs, **row.kwargs)
    ref = row.torch_fn(*ts, **row.kwargs)
    atol, rtol = TOL[dtype]
    assert out.shape == tuple(ref.shape), f"{row.name}: shape {out.shape} vs {tuple(ref.shape)}"
    assert str(out.dtype) == str(ref.dtype).removeprefix("torch."), (out.dtype, ref.dtype)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=atol, rtol=rtol)

    u = np.random.default_rng(11).standard_normal(out.shape).astype(out.dtype)
    out.backward(tg.Tensor(u))
    ref.backward(torch.from_numpy(u))
    for i, (x, t) in enumerate(zip(xs, ts, strict=True)):
        if not x.requires_grad:
            continue
        assert x.grad is not None, f"{row.name}: no gradient reached inputs[{i}]"
        assert x.grad.dtype == x.dtype
        np.testing.assert_allclose(
            x.grad.numpy(),
            t.grad.numpy(),
            atol=atol,
            rtol=rtol,
            err_msg=f"{row.name}: gradient of inputs[{i}]",
        )


torch_cases = cases([r for r in ROWS if r.torch_fn is not None])


@pytest.mark.parametrize(("row", "shapes"), torch_cases)
def test_vs_torch_float64(row, shapes):
    _check(row, shapes, np.float64)


@pytest.mark.parametrize(("row", "shapes"), torch_cases)
def test_vs_torch_float32(row, shapes):
    _check(row, shapes, np.float32)


def test_rows_without_torch_fn_are_few_and_known():
    assert {r.name for r in ROWS if r.torch_fn is None} <= {"dropout"} | {
        r.name for r in ROWS if r.name.startswith(("conv", "pool", "max_pool", "avg_pool"))
    }


def _scalar_shapes(row):
    """The row's first case with every input 0-d, where that changes any shape."""
    shapes = row.shapes[0]
    return None if all(s == () for s in shapes) else tuple(() for _ in shapes)


def _torch_takes_zero_d(row) -> bool:
    arrays = make_inputs(row, _scalar_shapes(row), seed=5)
    try:
        row.torch_fn(*[torch.tensor(a) for a in arrays], **row.kwargs)
    except (RuntimeError, IndexError, ValueError, TypeError):
        return False  # (PyTorch refuses 0-d inputs there: conv, pool, softmax over dim 1...)
    return True


scalar_rows = [
    r for r in ROWS
    if r.torch_fn is not None and _scalar_shapes(r) is not None and _torch_takes_zero_d(r)
]  # fmt: skip


@pytest.mark.parametrize("row", scalar_rows, ids=[r.name for r in scalar_rows])
def test_zero_d_inputs_work_wherever_torch_takes_them(row):
    # (abs of a 0-d tensor raised in the forward: NumPy's sign gave a scalar there)
    shapes = _scalar_shapes(row)
    _check(row, shapes, np.float64)
    _check(row, shapes, np.float32)


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_softmax_without_dim_takes_torchs_legacy_dim(ndim):
    # F.softmax(x) took the last dim, PyTorch dim 0 for 3-dim inputs and 1 for 4-dim:
    # different values, silently
    a = np.random.default_rng(ndim).standard_normal((2, 3, 4, 5)[:ndim]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (PyTorch's own deprecation warning)
        refs = [torch.nn.functional.softmax(torch.tensor(a)),
                torch.nn.functional.log_softmax(torch.tensor(a))]  # fmt: skip
    for fn, ref in zip((F.softmax, F.log_softmax), refs, strict=True):
        with pytest.warns(UserWarning, match=f"without dim: took dim {0 if ndim in (1, 3) else 1}"):
            out = fn(tg.Tensor(a))
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-6, atol=1e-7)


def test_cross_entropy_ignored_rows_take_no_upstream_gradient():
    # reduction="none": an inf upstream gradient at an ignored row gave NaN (inf * 0)
    x = np.random.default_rng(0).standard_normal((3, 4))
    t, g = np.array([1, -100, 2]), np.array([1.0, np.inf, 2.0])
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.cross_entropy(xt, torch.tensor(t), reduction="none").backward(
        torch.tensor(g)
    )
    for record in (False, True):
        xo = tg.Tensor(x, requires_grad=True)
        (gx,) = tg.grad(F.cross_entropy(xo, t, reduction="none"), [xo], [tg.Tensor(g)],
                        create_graph=record)  # fmt: skip
        np.testing.assert_allclose(gx.numpy(), xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("case", ["cols", "cols_repeat", "cols_negative", "middle_2d",
                                  "rows_mask", "elem_mask", "mask_and_slice"])  # fmt: skip
def test_index_gather_and_scatter_routes_as_torch(case):
    # x[:, idx] takes np.take and its backward the inverse-index take where idx repeats
    # nothing; bool masks (which never repeat) are assigned instead of np.add.at
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 40, 7))
    key = {
        "cols": (slice(None), rng.permutation(40)[:25]),
        "cols_repeat": (slice(None), rng.integers(0, 40, 30)),
        "cols_negative": (slice(None), -1 - rng.permutation(40)[:9], slice(None)),
        "middle_2d": (slice(None), rng.permutation(40)[:12].reshape(3, 4)),
        "rows_mask": rng.random(6) > 0.4,
        "elem_mask": rng.random((6, 40, 7)) > 0.5,
        "mask_and_slice": (rng.random(6) > 0.4, slice(3, 30)),
    }[case]
    tkey = tuple(torch.tensor(k) if isinstance(k, np.ndarray) else k for k in key) if (
        isinstance(key, tuple)) else torch.tensor(key)  # fmt: skip
    xo, xt = tg.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = xo[key], xt[tkey]
    np.testing.assert_array_equal(yo.numpy(), yt.detach().numpy())
    g = rng.standard_normal(yo.shape)
    yo.backward(tg.Tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_array_equal(xo.grad.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32])
def test_small_int_index_arrays_into_long_dims(dtype):
    # the backward's check for repeats added the dim's length to a uint8 index (overflow)
    rng = np.random.default_rng(9)
    idx = rng.permutation(min(np.iinfo(dtype).max, 120))[:60].astype(dtype)
    for shape, key in (((3, 300, 5), (slice(None), idx)), ((300, 64), (idx,))):
        x = rng.standard_normal(shape)
        xo, xt = tg.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        g = rng.standard_normal(xo[key].shape)
        xo[key].backward(tg.Tensor(g))
        xt[tuple(torch.from_numpy(k.astype(np.int64)) if isinstance(k, np.ndarray) else k
                 for k in key)].backward(torch.tensor(g))  # fmt: skip
        np.testing.assert_array_equal(xo.grad.numpy(), xt.grad.numpy())
    with pytest.raises(IndexError, match="index 7 is out of bounds for axis 2 with size 5"):
        tg.Tensor(np.zeros((2, 4, 5)))[0, :, [7]]  # (NumPy's message for the whole key)
