"""Every op-table row against PyTorch: values and gradients, in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest
from _rows import cases, grad_mask
from op_table import ROWS, make_inputs

import tinygrad_np as tg

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
