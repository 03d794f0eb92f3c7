"""Max and average pooling: a seeded sweep against PyTorch, gradchecks, tie-breaking,
higher derivatives of max pooling, unbatched inputs and errors."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import convmath as cm


def _t(a):
    return tg.Tensor(np.asarray(a), dtype="float64", requires_grad=True)


def _random_pool(rng):
    nd = int(rng.integers(1, 4))
    k = tuple(int(v) for v in rng.integers(1, 4, nd))
    s = tuple(int(v) for v in rng.integers(1, 4, nd))
    d = tuple(int(v) for v in rng.integers(1, 3, nd))
    p = tuple(int(rng.integers(0, ki // 2 + 1)) for ki in k)  # PyTorch: pad <= K // 2
    size = tuple(
        int(cm.dilated_size(ki, di) + rng.integers(0, 5)) for ki, di in zip(k, d, strict=True)
    )
    return nd, k, s, p, d, size, bool(rng.integers(0, 2))


@pytest.mark.parametrize("seed", range(40))
def test_max_pool_matches_torch_random_sweep(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    nd, k, s, p, d, size, ceil = _random_pool(rng)
    x = rng.standard_normal((2, 3) + size)
    X = _t(x)
    y = getattr(F, f"max_pool{nd}d")(X, k, s, p, d, ceil)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn.functional, f"max_pool{nd}d")(xt, k, s, p, d, ceil)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_array_equal(y.data, yt.detach().numpy())
    u = rng.standard_normal(y.shape)
    (gx,) = tg.grad(y, [X], [tg.Tensor(u)])
    (rx,) = torch.autograd.grad(yt, [xt], torch.tensor(u))
    np.testing.assert_allclose(gx.data, rx.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_avg_pool_matches_torch_random_sweep(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 + seed)
    nd, k, s, p, _, size, ceil = _random_pool(rng)
    p = tuple(min(pi, ki // 2) for pi, ki in zip(p, k, strict=True))
    include = bool(rng.integers(0, 2))
    x = rng.standard_normal((2, 2) + size)
    X = _t(x)
    y = getattr(F, f"avg_pool{nd}d")(X, k, s, p, ceil, include)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn.functional, f"avg_pool{nd}d")(xt, k, s, p, ceil, include)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    u = rng.standard_normal(y.shape)
    (gx,) = tg.grad(y, [X], [tg.Tensor(u)])
    (rx,) = torch.autograd.grad(yt, [xt], torch.tensor(u))
    np.testing.assert_allclose(gx.data, rx.numpy(), rtol=1e-12, atol=1e-12)


POOL_CONFIGS = [
    (1, (7,), 3, 2, 1, 1, True),
    (2, (5, 6), (2, 3), (2, 1), (1, 1), (2, 1), False),
    (2, (6, 5), 3, 2, 1, 1, True),
    (3, (3, 4, 4), 2, (1, 2, 2), (0, 1, 1), 1, True),
]


@pytest.mark.parametrize("cfg", POOL_CONFIGS, ids=lambda c: f"{c[0]}d-k{c[2]}-s{c[3]}")
def test_pool_gradcheck_and_gradgradcheck(cfg):
    nd, size, k, s, p, d, ceil = cfg
    x = _t(np.random.default_rng(0).standard_normal((1, 2) + size))
    mp = getattr(F, f"max_pool{nd}d")
    ap = getattr(F, f"avg_pool{nd}d")
    assert tg.gradcheck(lambda a: mp(a, k, s, p, d, ceil), x)
    assert tg.gradgradcheck(lambda a: mp(a, k, s, p, d, ceil), x)
    assert tg.gradcheck(lambda a: ap(a, k, s, p, ceil, False), x)
    assert tg.gradgradcheck(lambda a: ap(a, k, s, p, ceil, True), x)


def test_max_pool_ties_go_to_the_first_element_as_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 3.0, 3.0], [0.0, 0.0, 3.0, 1.0]]]])
    X = _t(x)
    y = F.max_pool2d(X, 2, 1)
    y.backward(tg.Tensor(np.ones(y.shape)))
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, 2, 1).backward(torch.ones(1, 1, 2, 3, dtype=torch.float64))
    np.testing.assert_array_equal(X.grad.data, xt.grad.numpy())
    assert X.grad.data[0, 0, 0, 1] == 2  # windows 0 and 1 both pick (0, 1), the first 3


@pytest.mark.parametrize(
    "kernel, padding, size",
    [
        ((2,), (0,), (9,)),
        ((2,), (1,), (8,)),
        ((2, 2), (0, 0), (6, 8)),  # LeNet's case: the windows cover the input
        ((2, 2), (1, 0), (7, 9)),  # leftover rows and columns, padding
        ((3, 2), (1, 1), (8, 5)),
        ((1, 2), (0, 0), (3, 6)),
        ((2, 2, 2), (0, 1, 0), (4, 5, 6)),
    ],
)
def test_tiling_max_pool_backward_with_many_ties_matches_torch(kernel, padding, size):
    # windows that tile the input with a last kernel dim of 2 take the pair-mask route;
    # small integers after a relu make ties (zeros above all) in most windows
    torch = pytest.importorskip("torch")
    nd = len(kernel)
    rng = np.random.default_rng(sum(size))
    for dtype in (np.float64, np.float32):
        x = np.maximum(rng.integers(-2, 3, (2, 3) + size), 0).astype(dtype)
        X = tg.Tensor(x, requires_grad=True)
        y = getattr(F, f"max_pool{nd}d")(X, kernel, kernel, padding)
        g = rng.standard_normal(y.shape).astype(dtype)
        y.backward(tg.Tensor(g))
        xt = torch.tensor(x, requires_grad=True)
        yt = getattr(torch.nn.functional, f"max_pool{nd}d")(xt, kernel, kernel, padding)
        yt.backward(torch.tensor(g))
        np.testing.assert_array_equal(y.data, yt.detach().numpy())
        np.testing.assert_array_equal(X.grad.data, xt.grad.numpy())
        assert X.grad.dtype == dtype


@pytest.mark.parametrize("k, s", [(2, 2), (3, 1), (3, 2)])
def test_max_pool_nan_window_routes_to_its_last_nan_as_torch(k, s):
    torch = pytest.importorskip("torch")
    x = np.array(
        [[[[1.0, np.nan, 3.0, np.nan, 2.0], [5.0, 2.0, 0.0, 1.0, 0.0], [0.0, 0.0, np.nan, 0.0, 7.0],
           [1.0, 1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 1.0, 3.0, 1.0]]]]
    )  # fmt: skip
    X = _t(x)
    y = F.max_pool2d(X, k, s)
    y.backward(tg.Tensor(np.ones(y.shape)))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, k, s)
    yt.backward(torch.ones_like(yt))
    np.testing.assert_array_equal(y.data, yt.detach().numpy())  # NaN == NaN here
    np.testing.assert_array_equal(X.grad.data, xt.grad.numpy())


@pytest.mark.parametrize("k, s", [(2, 2), (3, 2)])
def test_max_pool_results_do_not_depend_on_the_thread_count(k, s):
    from tinygrad_np import _parallel as par

    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((6, 5, 40, 40)), 0).astype(np.float32)  # many ties
    g = rng.standard_normal(F.max_pool2d(tg.Tensor(x), k, s).shape).astype(np.float32)
    results = []
    before = par.get_num_threads()
    try:
        for n in (1, 2, 3):
            par.set_num_threads(n)
            X = tg.Tensor(x, requires_grad=True)
            y = F.max_pool2d(X, k, s)
            y.backward(tg.Tensor(g))
            results.append((y.data, X.grad.data))
    finally:
        par.set_num_threads(before)
    for y, gx in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(gx, results[0][1])


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize(
    "pool, k, s, p",
    [("max", 3, 2, 1), ("max", 2, 2, 0), ("max", (2, 3), (1, 2), (1, 0)), ("avg", 3, 2, 1),
     ("avg", 2, 2, 0)],
)  # fmt: skip
def test_pool_in_sample_blocks_gives_the_same_bits(monkeypatch, threads, n_threads, pool, k, s, p):
    """The pooling passes run in blocks of samples (POOL_BLOCK_BYTES of input each); a
    block size of a few samples, uneven against the batch, must not change a bit of the
    forward or backward (nor the ties, taken by the first maximum)."""
    from tinygrad_np.ops import pool as pool_ops

    threads(n_threads)
    rng = np.random.default_rng(4)
    x = np.maximum(rng.standard_normal((11, 3, 13, 12)), 0).astype(np.float32)  # many ties
    fn = getattr(F, f"{pool}_pool2d")
    g = rng.standard_normal(fn(tg.Tensor(x), k, s, p).shape).astype(np.float32)

    def run():
        X = tg.Tensor(x, requires_grad=True)
        y = fn(X, k, s, p)
        y.backward(tg.Tensor(g))
        return y.data, X.grad.data

    whole = run()  # one block: the batch is far below the default block size
    monkeypatch.setattr(pool_ops, "POOL_BLOCK_BYTES", 3 * x[0].nbytes + 1)  # 3 samples
    assert pool_ops._block_samples(x.shape, 4) in (3, 6)  # (per thread: budget x threads)
    blocked = run()
    for a, b in zip(blocked, whole, strict=True):
        np.testing.assert_array_equal(a, b)
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn.functional, f"{pool}_pool2d")(xt, k, s, p)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(blocked[0], yt.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(blocked[1], xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_max_pool_vjp_is_differentiable_scatter_and_gather():
    """The input gradient of max pooling is a scatter to the argmax; its VJP with respect to
    the upstream gradient is a gather at the same places (and so on, every order)."""
    rng = np.random.default_rng(1)
    x = _t(rng.standard_normal((1, 2, 5, 5)))
    g = _t(rng.standard_normal((1, 2, 4, 4)))
    y = F.max_pool2d(x, 2, 1)
    (gx,) = tg.grad(y, [x], [g], create_graph=True)
    assert gx.grad_fn.name == "max_pool2d_backward"
    h = _t(rng.standard_normal(x.shape))
    (gg,) = tg.grad(gx, [g], [h], create_graph=True)
    assert gg.grad_fn.name == "max_pool2d_gather"
    # <scatter(g), h> == <g, gather(h)>: the two are adjoint
    assert np.sum(gx.data * h.data) == pytest.approx(np.sum(g.data * gg.data), rel=1e-12)
    u = rng.standard_normal(g.shape)
    (gh,) = tg.grad(gg, [h], [tg.Tensor(u)], create_graph=True)  # gather's VJP: scatter
    assert gh.grad_fn is None or gh.grad_fn.name == "max_pool2d_backward"
    np.testing.assert_allclose(gh.data, tg.grad(y, [x], [tg.Tensor(u)])[0].data)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 64])
def test_max_pool_window_of_padding_only_gives_minus_inf_and_no_gradient(dtype, batch, threads):
    """Kernel 2 with dilation 2 and padding 1 along a width-1 axis: both taps of every window
    fall in the padding (-1 and +1). The output is -inf, as PyTorch's; no gradient flows
    (PyTorch writes it outside the window, past the input's end for the last one, so it
    cannot be the reference here). With a second column the windows are real again."""
    threads(2)  # (the batch-64 case is large enough to be split)
    rng = np.random.default_rng(5)
    col = rng.standard_normal((batch, 8, 400, 1)).astype(dtype)
    X = tg.Tensor(col, requires_grad=True)
    y = F.max_pool2d(X, (2, 2), (2, 3), (0, 1), (1, 2))
    assert y.shape == (batch, 8, 200, 1)
    assert np.all(np.isneginf(y.data))
    (gx,) = tg.grad(y, [X], [tg.ones(*y.shape, dtype=dtype)])
    np.testing.assert_array_equal(gx.data, np.zeros_like(col))
    two = np.concatenate([col, 2 * col], axis=3)  # tap +1 now reads column 1
    X2 = tg.Tensor(two, requires_grad=True)
    y2 = F.max_pool2d(X2, (2, 2), (2, 3), (0, 1), (1, 2))
    pairs = two[..., 1].reshape(batch, 8, 200, 2)
    np.testing.assert_array_equal(y2.data[..., 0], pairs.max(axis=3))
    (gx2,) = tg.grad(y2, [X2], [tg.ones(*y2.shape, dtype=dtype)])
    assert not gx2.data[..., 0].any()
    first = pairs.argmax(axis=3)  # (no ties in random data)
    np.testing.assert_array_equal(gx2.data[..., 1].reshape(batch, 8, 200, 2).argmax(3), first)
    assert gx2.data.sum() == y2.size


def test_avg_pool_count_include_pad_divisors():
    x = tg.ones(1, 1, 3, 3)
    a = F.avg_pool2d(x, 3, 1, padding=1, count_include_pad=True)
    b = F.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False)
    assert a.data[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert a.data[0, 0, 1, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(b.data, 1.0)


def test_unbatched_pool_and_names():
    x = _t(np.random.default_rng(2).standard_normal((3, 6, 6)))
    y = F.max_pool2d(x, 2)
    assert y.shape == (3, 3, 3)
    yb = F.max_pool2d(x.unsqueeze(0), 2)
    np.testing.assert_array_equal(y.data, yb.data[0])
    assert yb.grad_fn.name == "max_pool2d"
    assert yb.grad_fn.args["kernel_size"] == (2, 2) and yb.grad_fn.args["stride"] == (2, 2)
    assert F.avg_pool1d(x, 3, 2).shape == (3, 6, 2)
    assert F.avg_pool1d(x[:1], 3, 2).grad_fn.name == "avg_pool1d"
    assert F.max_pool3d(x.unsqueeze(0), 2).shape == (1, 1, 3, 3)
    assert F.max_pool2d(x.float(), 2).dtype == np.float32


def test_pool_errors_name_the_argument():
    x = tg.randn(1, 2, 6, 6)
    cases = [
        (lambda: F.max_pool2d(x, 3, padding=2), "padding"),
        (lambda: F.max_pool2d(x, 0), "kernel_size"),
        (lambda: F.max_pool2d(x, 2, stride=0), "stride"),
        (lambda: F.max_pool2d(x, 2, dilation=0), "dilation"),
        (lambda: F.max_pool2d(tg.randn(6), 2), "input must be"),
        (lambda: F.avg_pool2d(x, 7), "larger than"),
        (lambda: F.avg_pool2d(x, (2, 2, 2)), "kernel_size"),
    ]
    for fn, words in cases:
        with pytest.raises(ValueError, match=words):
            fn()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_avg_pool_divides_as_pytorch_to_the_last_bit(dtype):
    """y = window sum / divisor, correctly rounded (it was sum * (1/divisor), an ulp off on
    a third of windows of 3), in the forward and the backward, every divisor rule."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = rng.integers(-4, 5, (2, 3, 9, 8)).astype(dtype)
    configs = [(3, 1, 1, False, True), (3, 2, 1, True, False), ((2, 3), 2, 0, True, True),
               (3, 3, 1, False, False)]  # fmt: skip
    for k, s, p, ceil, cip in configs:
        kw = dict(stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip)
        xt = tg.Tensor(x, requires_grad=True)
        y = F.avg_pool2d(xt, k, **kw)
        g = rng.integers(-4, 5, y.shape).astype(dtype)
        y.backward(tg.Tensor(g))
        xr = torch.tensor(x, requires_grad=True)
        yr = torch.nn.functional.avg_pool2d(xr, k, **kw)
        yr.backward(torch.tensor(g))
        assert np.array_equal(y.numpy(), yr.detach().numpy())
        # (each input's gradient adds g / divisor over its windows: the same quotients,
        # added in another order: to a few ulps of the terms)
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=0, atol=32 * eps)


@pytest.mark.parametrize("shape, k", [((6, 3, 8, 10), 2), ((4, 5, 12), 3), ((2, 2, 4, 6, 4), 2)])
def test_tiling_windows_route_the_first_maximum_as_torch(shape, k):
    # the scatter that finds each window's first maximum tap by tap (no padding, stride =
    # kernel): ties (relu's zeros), -0.0 against 0.0, infinities, an inf and a NaN in g
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    a = np.maximum(rng.standard_normal(shape), 0)
    a.reshape(-1)[:6] = [np.inf, -np.inf, 1.0, 1.0, 0.0, -0.0]
    nd = a.ndim - 2
    x = tg.Tensor(a, requires_grad=True)
    y = getattr(F, f"max_pool{nd}d")(x, k)
    g = rng.standard_normal(y.shape)
    g.reshape(-1)[:2] = [np.inf, np.nan]
    y.backward(tg.Tensor(g))
    xt = torch.tensor(a, requires_grad=True)
    getattr(torch.nn.functional, f"max_pool{nd}d")(xt, k).backward(torch.tensor(g))
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())
    assert tg.gradgradcheck(lambda t: getattr(F, f"max_pool{nd}d")(t, k), (tg.Tensor(
        rng.standard_normal(shape), requires_grad=True),))  # fmt: skip


@pytest.mark.parametrize("stride", [2, 1])
def test_max_pool_output_changed_in_place_raises(stride):
    """The VJP finds each window's winner by comparing x with the saved output: a change
    to that output in place must raise at backward (it gave zero gradients, or gradients
    at the wrong elements), as must a change to x."""
    for changed in ("output", "input"):
        x = _t(np.arange(16.0).reshape(1, 1, 4, 4))
        y = F.max_pool2d(x, 2, stride)
        with tg.no_grad():
            (y if changed == "output" else x).__iadd__(1)
        with pytest.raises(RuntimeError, match="max_pool2d"):
            y.sum().backward()
    x = _t(np.arange(16.0).reshape(1, 1, 4, 4))  # untouched: the usual gradient
    F.max_pool2d(x, 2, 2).relu().sum().backward()
    assert x.grad.data.ravel().tolist() == [0, 0, 0, 0, 0, 1, 0, 1] * 2


@pytest.mark.parametrize(
    "shape, k, s, value",
    [((1, 1, 3, 3), 3, 1, 8000.0), ((1, 1, 16, 16), 8, 8, 2000.0), ((2, 1, 7, 7), 7, 7, 2000.0),
     ((1, 2, 130), 130, 1, 600.0)],
)  # fmt: skip
def test_avg_pool_float16_sums_in_float32(shape, k, s, value):
    """float16 windows are summed in float32, as PyTorch: in float16 the sums overflowed
    to inf (nine values of 8000), in the forward and in the backward's overlapping adds."""
    nd = len(shape) - 2
    pool = getattr(F, f"avg_pool{nd}d")
    x = tg.Tensor(np.full(shape, value, np.float16), requires_grad=True)
    y = pool(x, k, s)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y.data, np.full(y.shape, value, np.float16))
    g = np.full(y.shape, 30000.0, np.float16)
    y.backward(tg.Tensor(g))
    assert x.grad.dtype == np.float16 and np.isfinite(x.grad.data).all()
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x.data, requires_grad=True)
    yt = getattr(torch.nn.functional, f"avg_pool{nd}d")(xt, k, s)
    yt.backward(torch.tensor(g))
    np.testing.assert_array_equal(y.data, yt.detach().numpy())
    np.testing.assert_allclose(x.grad.data.astype(np.float64), xt.grad.numpy(), rtol=1e-3)


@pytest.mark.parametrize("shape", [(2, 3, 0), (2, 0, 4), (3, 0), (1, 2, 0, 4)])
def test_pool_of_empty_channel_or_spatial_dims_raises(shape):
    """An empty channel or spatial dim raises, naming the input, as PyTorch: with padding
    and ceil_mode an empty length made a window of padding only (-inf, or 0 / NaN for the
    averages). An empty batch is an empty result."""
    nd = len(shape) - 2 if len(shape) == 4 else 1
    for pool in (getattr(F, f"max_pool{nd}d"), getattr(F, f"avg_pool{nd}d")):
        with pytest.raises(ValueError, match="non-empty"):
            pool(tg.Tensor(np.zeros(shape)), 3, 2, 1, ceil_mode=True)
    assert F.max_pool1d(tg.Tensor(np.zeros((0, 3, 4))), 2).shape == (0, 3, 2)
