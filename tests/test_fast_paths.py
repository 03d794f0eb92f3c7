"""Fast paths taken for speed give the same results as the general code: whole-number
powers of negative bases, leaky_relu without np.where, gelu's saved factor, batch norm
on rows too short for BLAS (a speed hunt found each 5-60x slower than PyTorch)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import special

import tinygrad_np as tg
import tinygrad_np.nn.functional as F

torch = pytest.importorskip("torch")
SPECIAL = [0.0, -0.0, 1.5, -1.5, np.inf, -np.inf, np.nan, 1e-30, -3e20, 7.0, -2.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [-3, -2, -1, 0, 1, 2, 3, 4, 5, 7, 2.0, 3.0])
def test_whole_powers_match_numpy_to_the_last_bit_and_its_signs(dtype, n):
    x = np.concatenate([np.random.default_rng(0).standard_normal(1000), SPECIAL]).astype(dtype)
    with np.errstate(all="ignore"):
        want = np.power(x, np.asarray(n, dtype))
    got = (tg.Tensor(x) ** n).numpy()
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got, want, rtol=eps, atol=0)  # (both within an ulp)
    assert got.dtype == dtype
    assert np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("slope", [0.01, 0.0, 1.0, 2.5, -0.3])
def test_leaky_relu_for_every_slope_and_special_values_as_torch(slope):
    x = np.concatenate([np.random.default_rng(1).standard_normal(1000), SPECIAL])
    g = np.random.default_rng(2).standard_normal(x.shape)
    for dtype in (np.float32, np.float64):
        xt = tg.Tensor(x.astype(dtype), requires_grad=True)
        y = F.leaky_relu(xt, slope)
        y.backward(tg.Tensor(g.astype(dtype)))
        tt = torch.tensor(x.astype(dtype), requires_grad=True)
        yt = torch.nn.functional.leaky_relu(tt, slope)
        yt.backward(torch.tensor(g.astype(dtype)))
        np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
        np.testing.assert_array_equal(xt.grad.numpy(), tt.grad.numpy())
    x = tg.Tensor(np.array([-2.0, 3.0]), requires_grad=True)
    assert tg.gradgradcheck(lambda a: F.leaky_relu(a, slope) * a, (x,))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_plain_and_recorded_backward_agree_with_torch(approximate):
    x = np.random.default_rng(3).standard_normal((64, 50)) * 3
    g = np.random.default_rng(4).standard_normal(x.shape)
    xt = tg.Tensor(x, requires_grad=True)
    F.gelu(xt, approximate).backward(tg.Tensor(g))  # plain: the saved factor
    xr = tg.Tensor(x, requires_grad=True)
    (gr,) = tg.grad(F.gelu(xr, approximate), [xr], [tg.Tensor(g)], create_graph=True)
    tt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.gelu(tt, approximate=approximate).backward(torch.tensor(g))
    np.testing.assert_allclose(xt.grad.numpy(), tt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gr.numpy(), tt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(300, 7), (300, 7, 1), (40, 3, 5), (16, 4, 31), (8, 2, 40)])
def test_batch_norm_on_short_rows_matches_torch(shape):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape) + 3.0
    g = rng.standard_normal(shape)
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    ours = [tg.Tensor(a, requires_grad=True) for a in (x, w, b)]
    F.batch_norm(ours[0], None, None, ours[1], ours[2], training=True).backward(tg.Tensor(g))
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    yt = torch.nn.functional.batch_norm(theirs[0], None, None, theirs[1], theirs[2], True)
    yt.backward(torch.tensor(g))
    for o, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-11)


POOLS = [  # (input shape, kernel, stride, padding, ceil_mode): windows of 64 taps or more
    ((2, 3, 128), 64, None, 0, False),
    ((2, 3, 140), 64, None, 0, False),  # 12 rows over
    ((2, 3, 140), 64, None, 0, True),  # a partial last window
    ((2, 3, 150), 70, None, 35, False),  # padding
    ((2, 2, 16, 17), 8, None, 0, False),
    ((2, 2, 3, 150), (1, 64), (1, 64), 0, False),  # one long dim
    ((2, 2, 12, 13), 12, None, 0, False),  # global, with a column over
    ((2, 2, 17, 18), 8, None, 4, True),
    ((1, 2, 8, 9, 10), 4, None, 0, False),
    ((2, 2, 7, 7), 7, None, 0, False),  # global 7x7: the average's reshaped route only
]


@pytest.mark.parametrize("shape, k, s, p, ceil", POOLS)
@pytest.mark.parametrize("data", ["normal", "ties", "specials"])
def test_pools_over_tiling_windows_match_torch(shape, k, s, p, ceil, data):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape)
    if data == "ties":
        x = np.round(x)
    elif data == "specials":
        x.reshape(-1)[::7] = -np.inf
        x.reshape(-1)[3::11] = np.nan
    nd = len(shape) - 2
    for kind in ("max", "avg"):
        if kind == "avg" and data == "specials":
            continue
        kw = dict(stride=s, padding=p, ceil_mode=ceil)
        fn, tfn = getattr(F, f"{kind}_pool{nd}d"), getattr(torch.nn.functional, f"{kind}_pool{nd}d")
        xt = tg.Tensor(x, requires_grad=True)
        y = fn(xt, k, **kw)
        g = rng.standard_normal(y.shape)
        y.backward(tg.Tensor(g))
        tt = torch.tensor(x, requires_grad=True)
        yt = tfn(tt, k, **kw)
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(xt.grad.numpy(), tt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_tiled_max_pool_is_differentiable_twice():
    x = tg.Tensor(np.random.default_rng(7).standard_normal((1, 2, 16, 16)), requires_grad=True)
    assert tg.gradgradcheck(lambda a: F.max_pool2d(a, 8) ** 2, (x,))
    assert tg.gradgradcheck(lambda a: F.avg_pool2d(a, 8) ** 2, (x,))


@pytest.mark.parametrize("w_shape", [(2, 3, 41), (2, 3, 40, 3), (2, 3, 3, 40), (3, 1, 35, 33)])
def test_fft_weight_gradient_of_long_kernels_matches_gemm(w_shape):
    # (a kernel axis longer than DFT_MAX_TAPS takes the whole inverse FFT, then its taps:
    # the K x n DFT matrix took 800 MB and 1.8 s for a 1001-tap 1-D kernel)
    nd = len(w_shape) - 2
    rng = np.random.default_rng(8)
    c = w_shape[1] * (3 if w_shape[1] == 1 else 1)
    x = rng.standard_normal((2, c) + (50,) * nd)
    w = rng.standard_normal(w_shape)
    groups = c // w_shape[1]
    fn = getattr(F, f"conv{nd}d")
    grads = []
    for algo in ("gemm", "fft"):
        xt, wt = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
        with F.conv_algorithm(algo):
            y = fn(xt, wt, padding=2, dilation=1, groups=groups) if groups > 1 else fn(xt, wt)
            g = np.random.default_rng(9).standard_normal(y.shape)
            y.backward(tg.Tensor(g))
        grads.append((xt.grad.numpy(), wt.grad.numpy()))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(b).max())


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@pytest.mark.parametrize("largest", [True, False])
def test_max_and_min_along_any_dim_match_torch(dim, largest):
    # (the indices come from the op's own argmax on its contiguous copy, the gradient is
    # put at them in x's layout: a second argmax along a leading axis took 305 ms)
    rng = np.random.default_rng(10)
    x = np.round(rng.standard_normal((5, 6, 7)) * 2)  # ties
    x[0, 0, 0] = np.nan
    g = rng.standard_normal(np.delete(x.shape, dim % 3))
    g.reshape(-1)[0] = np.inf  # (a blocked position must stay 0, not nan)
    xt = tg.Tensor(x, requires_grad=True)
    values, indices = (xt.max if largest else xt.min)(dim)
    values.backward(tg.Tensor(g))
    tt = torch.tensor(x, requires_grad=True)
    tv, ti = (tt.max if largest else tt.min)(dim)
    tv.backward(torch.tensor(g))
    np.testing.assert_array_equal(values.numpy(), tv.detach().numpy())
    np.testing.assert_array_equal(indices.numpy(), ti.numpy())
    np.testing.assert_array_equal(xt.grad.numpy(), tt.grad.numpy())
    xs = tg.Tensor(rng.standard_normal((3, 4, 5)), requires_grad=True)
    assert tg.gradgradcheck(lambda a: a.max(dim).values ** 2, (xs,))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("idx_shape, row", [((6000,), (5,)), ((80, 70), (2, 3)), ((5000,), ())])
def test_gathers_with_many_repeated_rows_scatter_back_as_np_add_at(dtype, idx_shape, row):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((50,) + row).astype(dtype)
    idx = rng.integers(-50, 50, idx_shape)  # (negative rows too)
    g = rng.standard_normal(idx_shape + row).astype(dtype)
    xt = tg.Tensor(x, requires_grad=True)
    y = xt[idx]
    y.backward(tg.Tensor(g))
    want = np.zeros_like(x)
    np.add.at(want, idx, g)
    np.testing.assert_array_equal(xt.grad.numpy(), want)  # the same sums, in the same order
    assert xt.grad.dtype == dtype


def test_the_sparse_scatter_is_differentiable_twice():
    small = tg.Tensor(np.random.default_rng(12).standard_normal((2, 4)), requires_grad=True)
    assert tg.gradgradcheck(lambda a: (a[np.arange(4100) % 2] ** 2).sum(0), (small,))


@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_stack_of_many_tensors_is_one_node_with_torchs_values_and_gradients(dim):
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((3, 2)) for _ in range(300)]
    ours = [tg.Tensor(x, requires_grad=i % 3 != 1) for i, x in enumerate(xs)]
    theirs = [torch.tensor(x, requires_grad=i % 3 != 1) for i, x in enumerate(xs)]
    y = tg.stack(ours, dim)
    assert len(y.grad_fn.inputs) == len(xs)  # one node, not an unsqueeze per input
    yt = torch.stack(theirs, dim)
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
    g = rng.standard_normal(y.shape)
    y.backward(tg.Tensor(g))
    yt.backward(torch.tensor(g))
    for a, b in zip(ours, theirs, strict=True):
        if b.grad is None:
            assert a.grad is None
        else:
            np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())
    # differentiable twice: the gradient of sum(stack(xs) ** 2) is 2 x, through the VJP
    x1 = tg.Tensor(xs[0], requires_grad=True)
    x2 = tg.Tensor(xs[1], requires_grad=True)
    (gx1,) = tg.grad((tg.stack([x1, x2], dim) ** 2).sum(), [x1], create_graph=True)
    (hx1,) = tg.grad(gx1.sum(), [x1])
    np.testing.assert_allclose(hx1.numpy(), np.full(x1.shape, 2.0))


def _gelu_ulps(x32, y32):
    """|y - x Phi(x)| in float32 ulps of the exact value (float64 reference)."""
    exact = x32.astype(np.float64) * special.ndtr(x32.astype(np.float64))
    return np.abs(y32.astype(np.float64) - exact) / np.spacing(np.abs(exact).astype(np.float32))


def test_exact_gelu_float32_is_accurate_in_both_tails():
    # Phi from erfc for x < 0, not 1 + erf: no cancellation in the negative tail
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.uniform(-9, 6, 400_000), rng.standard_normal(200_000),
                        rng.uniform(-1e-3, 1e-3, 10_000)]).astype(np.float32)
    y = F.gelu(tg.Tensor(x)).numpy()
    assert y.dtype == np.float32
    err = _gelu_ulps(x, y)
    assert err[x >= 0].max() <= 6
    assert err[x >= -4].max() <= 40 and err[x >= -4].mean() <= 2
    assert err[x >= -9].max() <= 150
    # 0.5 (1 + erf(x / sqrt 2)) in float32, as PyTorch computes it, loses the tail
    torch_err = _gelu_ulps(x, torch.nn.functional.gelu(torch.from_numpy(x)).numpy())
    assert torch_err[x >= -4].max() > 1000


def test_exact_gelu_float32_special_values_and_layouts():
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30, 1e-40, -1e-40, 50, -50],
                 np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no overflow or invalid-value warnings)
        y = F.gelu(tg.Tensor(x)).numpy()
    expected = [np.inf, np.nan, np.nan, 0.0, -0.0, 1e30, -0.0, 5e-41, -5e-41, 50, -0.0]
    np.testing.assert_array_equal(y, np.array(expected, np.float32))
    assert np.signbit(y[[4, 6, 10]]).all()
    # chunk and thread boundaries, and a non-contiguous input, give the same values
    a = np.random.default_rng(12).standard_normal((3, 70_000)).astype(np.float32) * 3
    whole = F.gelu(tg.Tensor(a)).numpy()
    with tg.no_grad():
        pieces = np.concatenate([F.gelu(tg.Tensor(a[:, i:i + 2000])).numpy()
                                 for i in range(0, a.shape[1], 2000)], axis=1)
        strided = F.gelu(tg.Tensor(a.T)).numpy().T
        # (under PHI_SMALL entries: SciPy's correctly rounded Phi, within the same ulps)
        small = np.concatenate([F.gelu(tg.Tensor(a[:, i:i + 100])).numpy()
                                for i in range(0, a.shape[1], 100)], axis=1)
    np.testing.assert_array_equal(whole, pieces)
    np.testing.assert_array_equal(whole, strided)
    assert _gelu_ulps(a, small).max() <= 2  # (Phi rounded, then the product)
    assert _gelu_ulps(a, whole)[a >= -4].max() <= 40
    big = np.tile(x, 400)  # (the special values on the chunked route too)
    y_big = F.gelu(tg.Tensor(big)).numpy()[: x.size]
    np.testing.assert_array_equal(y_big, np.array(expected, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_gelu_gradient_matches_its_formula(dtype):
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((5, 40_000)) * 3).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    xt = tg.Tensor(x, requires_grad=True)
    F.gelu(xt).backward(tg.Tensor(g))
    x64 = x.astype(np.float64)
    exact = g * (special.ndtr(x64) + x64 * np.exp(-0.5 * x64 * x64) / np.sqrt(2 * np.pi))
    assert xt.grad.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-13  # (atol: Phi + x phi cancels near -0.75)
    np.testing.assert_allclose(xt.grad.numpy(), exact, rtol=tol, atol=tol * 0.1)


def test_relu_in_chunks_and_short_row_sums():
    from tinygrad_np.ops import activation, reduce

    n = 2 * activation.RELU_CHUNK + 123  # (chunks and a short last one, on two threads)
    x = np.random.default_rng(4).standard_normal(n).astype(np.float32)
    x[[0, 5, n - 1]] = [np.nan, -np.inf, np.inf]
    np.testing.assert_array_equal(tg.Tensor(x).relu().numpy(), np.maximum(x, 0))
    rows = np.random.default_rng(5).standard_normal((300, 7, 64)).astype(np.float32) + 1e3
    assert reduce.short_rows(rows, 2)
    for keepdim in (False, True):
        got = tg.Tensor(rows).sum(-1, keepdim=keepdim).numpy()
        want = rows.astype(np.float64).sum(-1, keepdims=keepdim)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-7)
    bad = rows[:2].copy()
    bad[0, 0, 3], bad[1, 2, 0], bad[1, 2, 1] = np.nan, np.inf, -np.inf
    s = tg.Tensor(bad).sum(-1).numpy()
    assert np.isnan(s[0, 0]) and np.isnan(s[1, 2]) and np.isfinite(s[0, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_gelu_in_chunks_gives_the_whole_array_expressions_bits(dtype):
    # large arrays run the tanh GELU and its VJP by chunks on the threads: the same
    # operations in the same order as the whole-array formulas, so the same bits
    from tinygrad_np.ops import activation

    rng = np.random.default_rng(12)
    n = 2 * activation.PHI_CHUNK + 77
    x = (rng.standard_normal(n) * 4).astype(dtype)
    x[:6] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 30.0]
    g = rng.standard_normal(n).astype(dtype)
    c = activation._TANH_C
    with np.errstate(all="ignore"):
        t = np.tanh(c * (x + 0.044715 * (x * x * x)))
        y = 0.5 * x * (1 + t)
        d = 0.5 * (1 + t) + (0.5 * c) * x * (1 - t * t) * (1 + (3 * 0.044715) * (x * x))
    xt = tg.Tensor(x, requires_grad=True)
    out = F.gelu(xt, approximate="tanh")
    out.backward(tg.Tensor(g))
    np.testing.assert_array_equal(out.numpy().view(np.uint8), y.view(np.uint8))
    np.testing.assert_array_equal(xt.grad.numpy().view(np.uint8), (g * d).view(np.uint8))
    torch = pytest.importorskip("torch")
    tt = torch.tensor(x[6:], requires_grad=True)
    ref = torch.nn.functional.gelu(tt, approximate="tanh")
    ref.backward(torch.tensor(g[6:]))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.numpy()[6:], ref.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(xt.grad.numpy()[6:], tt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_backward_in_chunks_give_the_formulas_bits(dtype):
    from tinygrad_np.ops import activation

    rng = np.random.default_rng(13)
    n = 2 * activation.PHI_CHUNK + 5
    x = (rng.standard_normal(n) * 5).astype(dtype)
    x[:5] = [np.inf, -np.inf, np.nan, 0.0, -0.0]
    g = rng.standard_normal(n).astype(dtype)
    g[5] = np.inf
    for name, factor in (("sigmoid", lambda y: y * (1 - y)), ("tanh", lambda y: 1 - y * y)):
        xt = tg.Tensor(x, requires_grad=True)
        y = getattr(xt, name)()
        y.backward(tg.Tensor(g))
        with np.errstate(all="ignore"):
            want = g * factor(y.numpy())
        np.testing.assert_array_equal(xt.grad.numpy().view(np.uint8), want.view(np.uint8))
