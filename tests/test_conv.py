"""Convolution: convmath helpers, gradcheck sweeps, a seeded sweep against PyTorch, both
algorithms, bounded scratch memory, errors, and the users' reported cases as named tests."""

from __future__ import annotations

import contextlib
import itertools
import math
import tracemalloc
import warnings

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import _parallel as par
from tinygrad_np import convmath as cm

# the conv routes every sweep runs: im2col/GEMM in each of its two layouts, and FFT
ALGOS = ["gemm", "fft", "samples_last"]


@contextlib.contextmanager
def _route(name):
    """Force one route: "gemm" (batch-wide im2col), "samples_last" (GEMM, samples-last
    im2col) or "fft"."""
    algo, layout = {"gemm": ("gemm", "batch"), "samples_last": ("gemm", "samples_last"),
                    "fft": ("fft", "auto")}[name]  # fmt: skip
    with F.conv_algorithm(algo), F.conv_layout(layout):
        yield


def _count_calls(monkeypatch, *names) -> list:
    """Wrap each convmath function ``names`` to append its name to the returned list
    when called."""
    calls = []
    for name in names:
        real = getattr(cm, name)
        monkeypatch.setattr(
            cm, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k)
        )
    return calls


def _t(a, grad=True, dtype="float64"):
    return tg.Tensor(np.asarray(a), dtype=dtype, requires_grad=grad)


# ----------------------------------------------------------------------------- convmath


def test_output_size_and_same_padding_rules():
    assert cm.conv_output_size(96, 4, 2) == 47
    assert cm.conv_output_size(7, 3, 2, (1, 0)) == 3
    assert cm.conv_output_size(3, 5) == 0  # kernel longer than the input
    assert cm.conv_output_size(6, 3, 2, 1, dilation=2) == 2
    for n, k, s, d in itertools.product(range(1, 12), range(1, 5), range(1, 4), range(1, 3)):
        pb, pa = cm.same_padding(n, k, s, d)
        assert pa - pb in (0, 1)  # the odd pixel goes after, as TensorFlow
        assert cm.conv_output_size(n, k, s, (pb, pa), d) == -(-n // s)


def test_resolve_padding_forms():
    args = ((8, 9), (3, 2), (1, 1), (1, 1))
    assert cm.resolve_padding(1, *args) == ((1, 1), (1, 1))
    assert cm.resolve_padding((1, 2), *args) == ((1, 1), (2, 2))
    assert cm.resolve_padding("valid", *args) == ((0, 0), (0, 0))
    assert cm.resolve_padding("same", *args) == ((1, 1), (0, 1))
    assert cm.resolve_padding(((0, 3), (2, 1)), *args) == ((0, 3), (2, 1))
    for bad in ("full", -1, (1, 2, 3), ((1, -1), (0, 0)), 1.5):
        with pytest.raises(ValueError, match="padding"):
            cm.resolve_padding(bad, *args)


def test_unread_rows_match_read_mask():
    for n, k, s, d, pb, pa in itertools.product(range(3, 10), (1, 2, 3), (1, 2, 3), (1, 2),
                                                (0, 1), (0, 2)):  # fmt: skip
        if cm.conv_output_size(n, k, s, (pb, pa), d) == 0:
            continue
        mask = cm.read_mask(n, k, s, (pb, pa), d)
        r = cm.unread_rows(n, k, s, (pb, pa), d)
        assert not mask[n - r :].any() and (r == n or mask[n - r - 1])


def test_dilate_pad_and_window_view():
    x = np.arange(6.0).reshape(1, 1, 2, 3)
    d = cm.dilate(x, (2, 3))
    assert d.shape == (1, 1, 3, 7) and d[0, 0, 2, 6] == 5 and d.sum() == x.sum()
    p = cm.pad_spatial(x, ((1, 0), (0, 2)))
    assert p.shape == (1, 1, 3, 5)
    back = cm.pad_spatial(p, cm.negate(((1, 0), (0, 2))))
    np.testing.assert_array_equal(back, x)
    v = cm.window_view(np.arange(10.0), (3,), (2,), (2,))  # windows x[i*2 + k*2]
    np.testing.assert_array_equal(v, [[0, 2, 4], [2, 4, 6], [4, 6, 8]])
    assert cm.im2col_scratch_bytes(8, 3, (4, 4), (47, 47), 4) == 8 * 3 * 16 * 47 * 47 * 4


def test_algorithm_choice_and_override(monkeypatch):
    small = (32, 32, 64, 1, (34, 34), (3, 3), (32, 32))
    large = (8, 16, 32, 1, (74, 74), (11, 11), (64, 64))
    assert cm.choose_algorithm(*small) == "gemm"
    assert cm.choose_algorithm(*large) == "fft"
    with F.conv_algorithm("fft"):
        assert cm.choose_algorithm(*small) == "fft"
        with F.conv_algorithm("gemm"):
            assert cm.choose_algorithm(*large) == "gemm"
        assert cm.get_conv_algorithm() == "fft"
    assert cm.get_conv_algorithm() == "auto"
    with pytest.raises(ValueError, match="conv_algorithm"):
        with F.conv_algorithm("winograd"):
            pass


# ----------------------------------------------------------------------------- gradcheck sweep

GRAD_CONFIGS = [
    # nd, N, C, O, G, size, kernel, stride, padding, dilation
    (1, 2, 2, 3, 1, (7,), (3,), (2,), 1, (1,)),
    (1, 1, 4, 2, 2, (8,), (2,), (3,), ((2, 0),), (2,)),
    (2, 1, 2, 2, 1, (5, 6), (3, 2), (2, 1), "same", (1, 1)),
    (2, 2, 2, 4, 2, (5, 5), (2, 2), (1, 2), ((0, 2), (1, 0)), (2, 1)),
    (2, 1, 3, 3, 3, (5, 4), (3, 3), (2, 2), 1, (1, 1)),  # depthwise
    (2, 1, 1, 2, 1, (7, 5), (2, 3), (3, 2), "valid", (1, 1)),  # rows left over
    (3, 1, 2, 2, 1, (3, 4, 3), (2, 2, 2), (1, 2, 1), (1, 0, 1), (1, 1, 2)),
]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("cfg", GRAD_CONFIGS, ids=lambda c: f"{c[0]}d-{c[6]}-s{c[7]}-p{c[8]}")
def test_conv_gradcheck_and_gradgradcheck(cfg, algo):
    nd, n, c, o, g, size, k, s, p, d = cfg
    rng = np.random.default_rng(hash(str(cfg)) % 2**32)
    x = _t(rng.standard_normal((n, c) + size))
    w = _t(rng.standard_normal((o, c // g) + k))
    b = _t(rng.standard_normal(o))
    conv = getattr(F, f"conv{nd}d")

    def fn(x, w, b):
        return conv(x, w, b, stride=s, padding=p, dilation=d, groups=g)

    with _route(algo):
        assert tg.gradcheck(fn, (x, w, b))
        assert tg.gradgradcheck(fn, (x, w, b))


DEPTHWISE_GRAD_CONFIGS = [
    # nd, N, C, channel multiplier, size, kernel, stride, padding, dilation
    (2, 2, 3, 1, (6, 5), (3, 3), (1, 1), 1, (1, 1)),
    (2, 1, 2, 2, (7, 6), (3, 2), (2, 2), "same", (1, 2)),
    (1, 2, 2, 2, (11,), (4,), (3,), ((2, 1),), (2,)),
    (3, 1, 2, 1, (4, 5, 4), (2, 3, 2), (1, 2, 1), (1, 0, 1), (1, 1, 2)),
]


def _depthwise_case(cfg, seed: int):
    """(the conv of a DEPTHWISE_GRAD_CONFIGS entry as fn(x, w, b), float64 inputs)."""
    nd, n, c, m, size, k, s, p, d = cfg
    rng = np.random.default_rng(seed + nd)
    x = _t(rng.standard_normal((n, c) + size))
    w = _t(rng.standard_normal((c * m, 1) + k))
    b = _t(rng.standard_normal(c * m))
    conv = getattr(F, f"conv{nd}d")

    def fn(x, w, b):
        return conv(x, w, b, stride=s, padding=p, dilation=d, groups=c)

    return fn, (x, w, b)


@pytest.mark.parametrize(
    "cfg", DEPTHWISE_GRAD_CONFIGS, ids=lambda c: f"{c[0]}d-{c[5]}-s{c[6]}-m{c[3]}"
)
def test_depthwise_channel_route_gradcheck_and_gradgradcheck(cfg, monkeypatch, numpy_depthwise):
    """The channel-major depthwise route, forced (the sizes here are below what its cost
    estimate takes), passes the float64 finite-difference checks: the plain backward
    runs its one-pass backward, the recorded one its separate maps."""

    def forced(x_shape, w_shape, pads, strides, dilations, groups, *_, **__):
        return groups == x_shape[1] > 1 and w_shape[1] == 1 and min(map(min, pads)) >= 0

    monkeypatch.setattr(cm, "_depthwise_channel_route", forced)
    monkeypatch.setattr(cm, "_depthwise_plane_route", lambda *a, **k: False)
    fn, inputs = _depthwise_case(cfg, 41)
    calls = []
    fused = cm.backward_depthwise_channels
    monkeypatch.setattr(
        cm, "backward_depthwise_channels", lambda *a: calls.append(tuple(a[-2])) or fused(*a)
    )
    assert tg.gradcheck(fn, inputs)
    assert (True, True, True) in calls  # the one-pass backward of all three
    assert tg.gradgradcheck(fn, inputs)


@pytest.mark.parametrize(
    "cfg", DEPTHWISE_GRAD_CONFIGS, ids=lambda c: f"{c[0]}d-{c[5]}-s{c[6]}-m{c[3]}"
)
def test_depthwise_plane_route_gradcheck_and_gradgradcheck(cfg, monkeypatch, numpy_depthwise):
    """The whole-plane depthwise route (small planes: the sizes here; taken with any
    number of samples) passes the float64 finite-difference checks, its three maps called
    (the recorded backward goes through conv and conv_transpose again, which take it too)."""
    monkeypatch.setattr(cm, "PLANE_SAMPLES", 0)
    monkeypatch.setattr(cm, "PLANE_MAX_EXCESS", 1000)
    calls = set()
    for name in ("correlate_depthwise_plane", "correlate_transpose_depthwise_plane",
                 "correlate_weight_grad_depthwise_plane"):  # fmt: skip
        route = getattr(cm, name)
        monkeypatch.setattr(cm, name, lambda *a, _f=route, _n=name: calls.add(_n) or _f(*a))
    fn, inputs = _depthwise_case(cfg, 43)
    assert tg.gradcheck(fn, inputs)
    assert len(calls) == 3
    assert tg.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_transpose_gradcheck(nd, algo):
    rng = np.random.default_rng(nd)
    x = _t(rng.standard_normal((1, 4) + (3,) * nd))
    w = _t(rng.standard_normal((4, 1) + (2,) * nd))
    b = _t(rng.standard_normal(2))
    fn = lambda x, w, b: getattr(F, f"conv_transpose{nd}d")(  # noqa: E731
        x, w, b, stride=2, padding=1, output_padding=1, groups=2, dilation=1
    )
    with _route(algo):
        assert tg.gradcheck(fn, (x, w, b))
        assert tg.gradgradcheck(fn, (x, w, b))


def test_third_derivative_through_conv():
    rng = np.random.default_rng(3)
    x = _t(rng.standard_normal((1, 2, 5, 5)))
    w = _t(rng.standard_normal((2, 2, 3, 3)))

    def second(x, w):  # d/dw of sum((d/dx sum(conv(x, w)^2))^2): third-order in the end
        y = F.conv2d(x, w, stride=2, padding=1)
        (gx,) = tg.grad((y * y).sum(), x, create_graph=True)
        return (gx * gx).sum()

    assert tg.gradcheck(second, (x, w))
    assert tg.gradgradcheck(second, (x, w))


def test_fused_and_recorded_input_gradients_agree():
    """Plain backward takes the fused ConvTranspose; create_graph spells out dilate, pad and
    a correlation with the flipped kernel. Same numbers, and the nodes are visible."""
    rng = np.random.default_rng(4)
    for s, p, d, g in [((2, 3), ((1, 2), (0, 3)), (1, 2), 2), ((1, 1), "same", (2, 1), 1),
                       ((3, 2), ((4, 0), (0, 0)), (1, 1), 4)]:  # fmt: skip
        x = _t(rng.standard_normal((2, 4, 9, 8)))
        w = _t(rng.standard_normal((4, 4 // g, 3, 2)))
        shape = F.conv2d(x, w, stride=s, padding=p, dilation=d, groups=g).shape
        u = tg.Tensor(rng.standard_normal(shape), requires_grad=True)  # so dilate/pad record
        y = F.conv2d(x, w, stride=s, padding=p, dilation=d, groups=g)
        fast = tg.grad(y, [x, w], [u])
        y = F.conv2d(x, w, stride=s, padding=p, dilation=d, groups=g)
        slow = tg.grad(y, [x, w], [u], create_graph=True)
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-12)
        names = set()
        stack = [slow[0].grad_fn]
        while stack:
            node = stack.pop()
            names.add(node.name)
            stack.extend(t.grad_fn for t in node.inputs if t.grad_fn is not None)
        assert "conv2d" in names
        assert "pad" in names or "index" in names  # padding beyond the kernel: a crop
        assert ("dilate" in names) == (s != (1, 1))
        assert slow[1].grad_fn.name == "conv2d_weight_grad"


def test_op_names_and_args_for_the_graph_viewer():
    x = tg.randn(1, 2, 6, 6, requires_grad=True)
    w = tg.randn(4, 1, 3, 3, requires_grad=True)
    y = F.conv2d(x, w, stride=2, padding="same", groups=2)
    assert y.grad_fn.name == "conv2d"
    args = y.grad_fn.args
    assert args["stride"] == (2, 2) and args["padding"] == ((0, 1), (0, 1))
    assert args["groups"] == 2 and args["kernel_size"] == (3, 3) and args["dilation"] == (1, 1)
    t = F.conv_transpose1d(tg.randn(1, 2, 4), tg.randn(2, 3, 2, requires_grad=True), stride=2)
    assert t.grad_fn.name == "conv_transpose1d" and t.grad_fn.args["output_padding"] == (0,)
    z = F.conv3d(tg.randn(1, 1, 3, 3, 3), tg.randn(1, 1, 2, 2, 2, requires_grad=True))
    assert z.grad_fn.name == "conv3d"


# ----------------------------------------------------------------------------- vs PyTorch


def _random_config(rng):
    nd = int(rng.integers(1, 4))
    g = int(rng.choice([1, 1, 2, 3]))
    c, o = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 4, nd))
    s = tuple(int(v) for v in rng.integers(1, 4, nd))
    d = tuple(int(v) for v in rng.integers(1, 3, nd))
    kind = rng.choice(["int", "per_dim", "valid", "same", "pairs"])
    if kind == "int":
        p = int(rng.integers(0, 3))
    elif kind == "per_dim":
        p = tuple(int(v) for v in rng.integers(0, 3, nd))
    elif kind == "pairs":
        p = tuple((int(a), int(b)) for a, b in rng.integers(0, 4, (nd, 2)))
    else:
        p = str(kind)
    size = tuple(
        int(cm.dilated_size(ki, di) + rng.integers(0, 6)) for ki, di in zip(k, d, strict=True)
    )
    n = int(rng.integers(1, 3))
    return nd, n, c, o, g, size, k, s, p, d


def _torch_conv(torch, xt, wt, bt, nd, s, pads, d, g):
    """PyTorch reference: explicit F.pad with (before, after) pairs, then a valid conv."""
    flat = []
    for pb, pa in reversed(pads):
        flat += [pb, pa]
    xp = torch.nn.functional.pad(xt, flat)
    return getattr(torch.nn.functional, f"conv{nd}d")(xp, wt, bt, stride=s, dilation=d, groups=g)


@pytest.mark.parametrize("seed", range(100))
def test_conv_matches_torch_random_sweep(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1000 + seed)
    nd, n, c, o, g, size, k, s, p, d = _random_config(rng)
    algo = ALGOS[seed % 3]
    x = rng.standard_normal((n, c) + size)
    w = rng.standard_normal((o, c // g) + k)
    b = rng.standard_normal(o)
    pads = cm.resolve_padding(p, size, k, s, d)
    X, W, B = _t(x), _t(w), _t(b)
    with _route(algo):
        y = getattr(F, f"conv{nd}d")(X, W, B, stride=s, padding=p, dilation=d, groups=g)
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        yt = _torch_conv(torch, xt, wt, bt, nd, s, pads, d, g)
        assert y.shape == tuple(yt.shape)
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-9, atol=1e-9)
        u = rng.standard_normal(y.shape)
        grads = tg.grad(y, [X, W, B], [tg.Tensor(u)])
    ref = torch.autograd.grad(yt, [xt, wt, bt], torch.tensor(u))
    for a, r in zip(grads, ref, strict=True):
        assert a.shape == tuple(r.shape)
        np.testing.assert_allclose(a.data, r.numpy(), rtol=1e-9, atol=1e-9)
    if p == "same" or isinstance(p, tuple) and isinstance(p[0], tuple):
        # the same layer given its explicit (before, after) pairs gives the same result
        with _route(algo):
            y2 = getattr(F, f"conv{nd}d")(X, W, B, stride=s, padding=pads, dilation=d, groups=g)
        np.testing.assert_array_equal(y2.data, y.data)


@pytest.mark.parametrize("seed", range(24))
def test_conv_transpose_matches_torch_random_sweep(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2000 + seed)
    nd = int(rng.integers(1, 4))
    g = int(rng.choice([1, 2]))
    cin, cout = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 4, nd))
    s = tuple(int(v) for v in rng.integers(1, 4, nd))
    d = tuple(int(v) for v in rng.integers(1, 3, nd))
    p = tuple(int(rng.integers(0, (ki - 1) * di // 2 + 1)) for ki, di in zip(k, d, strict=True))
    op = tuple(int(rng.integers(0, max(si, di))) for si, di in zip(s, d, strict=True))
    size = tuple(int(v) for v in rng.integers(1, 5, nd))
    x = rng.standard_normal((2, cin) + size)
    w = rng.standard_normal((cin, cout // g) + k)
    b = rng.standard_normal(cout)
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    X, W, B = _t(x), _t(w), _t(b)
    with _route(ALGOS[seed % 3]):
        y = getattr(F, f"conv_transpose{nd}d")(X, W, B, **kw)
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        yt = getattr(torch.nn.functional, f"conv_transpose{nd}d")(xt, wt, bt, **kw)
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-9, atol=1e-9)
        u = rng.standard_normal(y.shape)
        grads = tg.grad(y, [X, W, B], [tg.Tensor(u)])
    ref = torch.autograd.grad(yt, [xt, wt, bt], torch.tensor(u))
    for a, r in zip(grads, ref, strict=True):
        np.testing.assert_allclose(a.data, r.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("algo", ALGOS)
def test_float32_stays_float32_and_matches_torch(algo):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 12, 11)).astype(np.float32)
    w = rng.standard_normal((6, 2, 5, 4)).astype(np.float32)
    X, W = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    with _route(algo):
        y = F.conv2d(X, W, stride=(2, 1), padding=2, groups=2)
        u = rng.standard_normal(y.shape).astype(np.float32)
        gx, gw = tg.grad(y, [X, W], [tg.Tensor(u)])
    assert y.dtype == gx.dtype == gw.dtype == np.float32
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, stride=(2, 1), padding=2, groups=2)
    rx, rw = torch.autograd.grad(yt, [xt, wt], torch.tensor(u))
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx.data, rx.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw.data, rw.numpy(), rtol=1e-4, atol=1e-3)


def test_every_route_agrees_on_a_large_kernel():
    rng = np.random.default_rng(6)
    x, w = _t(rng.standard_normal((2, 3, 20, 17))), _t(rng.standard_normal((4, 3, 11, 9)))
    out = {}
    for algo in ALGOS:
        with _route(algo):
            y = F.conv2d(x, w, stride=(1, 2), padding=(5, 4), dilation=(1, 1))
            out[algo] = [y.data] + [t.data for t in tg.grad(y.sum() * 1.0, [x, w])]
    for other in ("fft", "samples_last"):
        for a, b in zip(out["gemm"], out[other], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_samples_last_layout_choice_and_its_cache():
    """auto: the input gradient of convs with short output rows goes samples-last (the
    forward too on one thread, with runs of out_w * N long enough); the forward's kept
    im2col matrix says which layout the weight gradient reads; the results equal the
    batch-wide layout's."""
    assert cm._use_samples_last("input_grad", 64, (10, 10))
    assert not cm._use_samples_last("input_grad", 64, (32, 32))  # long rows: batch-wide
    assert not cm._use_samples_last("input_grad", 2, (10, 10))  # too few samples
    assert not cm._use_samples_last("weight_grad", 64, (10, 10))
    before = tg.get_num_threads()
    try:
        tg.set_num_threads(1)
        assert cm._use_samples_last("forward", 64, (10, 10))
        # runs of out_w * N = 9 * 16 numbers: too short to pay for the transposes
        assert not cm._use_samples_last("forward", 16, (9, 9))
        assert cm._use_samples_last("input_grad", 16, (9, 9))
        tg.set_num_threads(2)
        assert not cm._use_samples_last("forward", 64, (10, 10))
        with par.single_threaded():  # as DataParallel's own shard: one thread's choice
            assert cm._use_samples_last("forward", 64, (10, 10))
    finally:
        tg.set_num_threads(before)
    with F.conv_layout("batch"):
        assert not cm._use_samples_last("input_grad", 64, (10, 10))
    with F.conv_layout("samples_last"):
        assert cm._use_samples_last("weight_grad", 2, (99,))
    with pytest.raises(ValueError, match="conv_layout"):
        with F.conv_layout("nhwc"):
            pass

    rng = np.random.default_rng(11)
    x = _t(rng.standard_normal((9, 3, 7, 8)), dtype="float32")
    w = _t(rng.standard_normal((5, 3, 3, 2)), dtype="float32")
    b = _t(rng.standard_normal(5), dtype="float32")
    kw = dict(stride=(1, 2), padding=((2, 0), (1, 1)), dilation=(2, 1))
    u = tg.Tensor(rng.standard_normal((9, 5, 5, 5)).astype(np.float32))
    got = {}
    for layout in ("batch", "samples_last"):
        with F.conv_algorithm("gemm"), F.conv_layout(layout):
            y = F.conv2d(x, w, b, **kw)
            kept = y.grad_fn.cols
            assert kept is not None
            assert isinstance(kept, cm.SamplesLastCols) == (layout == "samples_last")
            got[layout] = [y.data] + [t.data for t in tg.grad(y, [x, w, b], [u])]
    for a, c in zip(got["batch"], got["samples_last"], strict=True):
        assert a.dtype == c.dtype == np.float32
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


ROW_CASES = [
    # x shape, w shape, strides, dilations (1 along the first dim), pads
    ((5, 6, 14, 14), (16, 6, 5, 5), (1, 1), (1, 1), ((0, 0), (0, 0))),  # LeNet-5's conv2
    ((3, 2, 11, 9), (4, 2, 3, 2), (2, 1), (1, 2), ((1, 0), (2, 1))),
    ((3, 2, 12, 13), (4, 2, 3, 3), (3, 2), (1, 1), ((0, 2), (1, 1))),  # rows no window reads
    ((2, 3, 7, 8, 9), (5, 3, 2, 3, 2), (1, 2, 1), (1, 1, 2), ((1, 1), (0, 0), (2, 0))),
    ((2, 2, 5, 6), (3, 2, 5, 1), (1, 1), (1, 1), ((0, 0), (0, 0))),  # one output row
]


@pytest.mark.parametrize("threads_n", [1, 2])
@pytest.mark.parametrize("budget", [None, 1], ids=["whole", "chunks"])
@pytest.mark.parametrize("case", ROW_CASES, ids=lambda c: f"{len(c[0]) - 2}d-{c[2]}")
def test_row_window_maps_equal_the_gemm_route(case, budget, threads_n, threads, monkeypatch):
    """The row-window maps (the first dim's kernel rows as contiguous blocks of a partial
    im2col) equal the batch-wide GEMM route, float64: the forward, the weight gradient
    from the kept windows and from its own, the input gradient; one thread or two, each
    on its share of the samples; with a budget of one sample's scratch (a chunk a sample)
    nothing is kept unless every share is one sample."""
    threads(threads_n)
    monkeypatch.setattr(par, "MIN_ELEMENTS", 1)  # split even these small jobs
    x_shape, w_shape, strides, dilations, pads = case
    rng = np.random.default_rng(len(x_shape) + w_shape[0])
    x = cm.pad_spatial(rng.standard_normal(x_shape), pads)
    w = rng.standard_normal(w_shape)
    kernel = w_shape[2:]
    if budget is not None:
        monkeypatch.setitem(cm._settings, "scratch_bytes", budget)  # one sample a chunk
    y, kept = cm.correlate_rows(x, w, strides, dilations, keep_cols=True)
    assert (kept is None) == (budget is not None and x_shape[0] > threads_n)
    np.testing.assert_allclose(y, cm.correlate_gemm(x, w, strides, dilations, 1), atol=1e-12)
    np.testing.assert_array_equal(cm.correlate_rows(x, w, strides, dilations), y)
    g = rng.standard_normal(y.shape)
    ref = cm.correlate_weight_grad_gemm(x, g, kernel, strides, dilations, 1)
    own = cm.correlate_weight_grad_rows(x, g, kernel, strides, dilations)
    np.testing.assert_allclose(own, ref, rtol=1e-12, atol=1e-12)
    if kept is not None:
        np.testing.assert_array_equal(
            cm.correlate_weight_grad_rows(x, g, kernel, strides, dilations, kept), own
        )
    gx = cm.correlate_transpose_rows(g, w, x.shape[2:], strides, dilations)
    ref = cm.correlate_transpose_gemm(g, w, x.shape[2:], strides, dilations, 1)
    np.testing.assert_allclose(gx, ref, rtol=1e-12, atol=1e-12)


def test_rows_route_where_taken(threads, monkeypatch):
    """Row windows for 2-D convs of one group, dilation 1 along the first dim and stride 1
    along the last, with at least ROWS_MIN_TAPS taps a window, 3 taps along the last dim
    and SAMPLES_LAST_MIN_RUN columns a row of each thread's share of the samples; on more
    threads only below PER_SAMPLE_MIN_P outputs a sample; the input gradient on one."""
    threads(1)
    ok = cm._rows_route
    x, w = (16, 6, 14, 18), (8, 6, 3, 3)  # 54 taps; 16 outputs a row x 16 samples = 256
    assert ok(x, w, (1, 1), (1, 1), 1)
    assert ok(x, w, (2, 1), (1, 1), 1) and ok((16, 6, 14, 20), w, (1, 1), (1, 2), 1)
    assert not ok((15, 6, 14, 18), w, (1, 1), (1, 1), 1)  # rows of 240 columns
    assert not ok((16, 5, 14, 18), (8, 5, 3, 3), (1, 1), (1, 1), 1)  # 45 taps
    assert not ok((16, 6, 14, 17), (8, 6, 3, 2), (1, 1), (1, 1), 1)  # 2 taps a row
    assert not ok(x, (8, 3, 3, 3), (1, 1), (1, 1), 2)  # groups
    assert not ok(x, w, (1, 1), (2, 1), 1)  # dilated rows: not contiguous blocks
    assert not ok(x, w, (1, 2), (1, 1), 1)  # strided rows: short copies
    vol, vw = (4, 2, 8, 8, 8), (8, 2, 3, 3, 3)  # volumes: forward (and dw) where R is kept
    assert ok(vol, vw, (1, 1, 1), (1, 1, 1), 1)
    assert not ok(vol, vw, (1, 1, 1), (1, 1, 1), 1, "input_grad")
    assert not ok((4, 1, 8, 8, 8), (8, 1, 3, 3, 3), (1, 1, 1), (1, 1, 1), 1)  # 27 taps
    with cm.scratch_budget(2**30):
        monkeypatch.setitem(cm._settings, "cache_bytes", 8 * 2 * 9 * 36 * 4 * 4 - 1)
        assert not ok(vol, vw, (1, 1, 1), (1, 1, 1), 1)  # R one byte over the cache
    with cm.conv_layout("samples_last"):
        assert not ok(x, w, (1, 1), (1, 1), 1)
    assert ok(x, w, (1, 1), (1, 1), 1, "input_grad")
    threads(2)
    assert not ok(x, w, (1, 1), (1, 1), 1)  # shares of 8 samples: rows of 128 columns
    assert ok((32, 6, 14, 18), w, (1, 1), (1, 1), 1)  # 12x16 = 192 outputs a sample
    assert not ok((32, 6, 14, 18), w, (1, 1), (1, 1), 1, "input_grad")
    assert not ok((32, 6, 18, 18), w, (1, 1), (1, 1), 1)  # 256 outputs: per sample
    with par.single_threaded():  # (each nn.DataParallel process)
        assert ok(x, w, (1, 1), (1, 1), 1) and ok((32, 6, 18, 18), w, (1, 1), (1, 1), 1)
        assert ok(x, w, (1, 1), (1, 1), 1, "input_grad")


@pytest.mark.parametrize("threads_n", [1, 2])
def test_lenet_second_conv_runs_on_row_windows(threads_n, threads, monkeypatch):
    """LeNet-5's second conv at batch 64: its forward, weight gradient (from the kept
    windows) and input gradient take row windows, on one thread or two (each thread on its
    share of the samples; the input gradient on one, beside the weight gradient). The same
    values as the batch-wide route."""
    calls = _count_calls(
        monkeypatch, "correlate_rows", "correlate_weight_grad_rows", "correlate_transpose_rows"
    )
    threads(threads_n)
    rng = np.random.default_rng(5)
    x = tg.Tensor(rng.standard_normal((64, 6, 14, 14)).astype(np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((16, 6, 5, 5)).astype(np.float32), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(16).astype(np.float32), requires_grad=True)
    y = F.conv2d(x, w, b)
    assert isinstance(y.grad_fn.cols, cm.RowWindows)
    assert len(y.grad_fn.cols.parts) == threads_n
    u = tg.Tensor(rng.standard_normal(y.shape).astype(np.float32))
    got = [y.data] + [t.data for t in tg.grad(y, [x, w, b], [u])]
    expected = ["correlate_rows", "correlate_transpose_rows", "correlate_weight_grad_rows"]
    assert sorted(calls) == expected
    with cm.conv_layout("batch"):
        y = F.conv2d(x, w, b)
        ref = [y.data] + [t.data for t in tg.grad(y, [x, w, b], [u])]
    for a, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_row_window_route_gradcheck_and_gradgradcheck(threads, monkeypatch):
    """gradcheck and gradgradcheck (float64) through F.conv2d with the row windows taken
    for small tensors."""
    threads(1)
    monkeypatch.setattr(cm, "ROWS_MIN_TAPS", 1)
    monkeypatch.setattr(cm, "SAMPLES_LAST_MIN_RUN", 1)
    monkeypatch.setattr(cm, "SAMPLES_LAST_MAX_ROW", 100)
    calls = _count_calls(monkeypatch, "correlate_rows")
    rng = np.random.default_rng(6)
    x = tg.Tensor(rng.standard_normal((8, 2, 6, 5)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((3, 2, 2, 3)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(3), requires_grad=True)

    def fn(x, w, b):
        return F.conv2d(x, w, b, stride=(2, 1), padding=((1, 0), (1, 1)), dilation=(1, 2))

    assert tg.gradcheck(fn, (x, w, b))
    assert tg.gradgradcheck(fn, (x, w, b))
    assert calls


def test_row_window_route_bounds_its_scratch_memory(threads):
    """Each row-window map's buffers stay within the scratch budget above its inputs and
    output (chunks of samples, each chunk's freed before the next one's are made), give or
    take NumPy's own buffers for strided copies."""
    threads(1)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    pads, ones = ((0, 0), (0, 0)), (1, 1)
    budget = 2**18  # 7 samples a chunk
    numpy_buffers = 2 * np.getbufsize() * x.itemsize
    g = rng.standard_normal((64, 16, 10, 10)).astype(np.float32)
    maps = {
        "forward": lambda: cm.correlate_padded(x, w, pads, ones, ones, 1),
        "weight_grad": lambda: cm.correlate_weight_grad_rows(x, g, (5, 5), ones, ones),
        "input_grad": lambda: cm.correlate_transpose_rows(g, w, (14, 14), ones, ones),
    }
    with cm.scratch_budget(budget):
        assert cm._rows_route(x.shape, w.shape, ones, ones, 1)
        for name, run in maps.items():
            tracemalloc.start()
            out = run()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak < out.nbytes + budget + numpy_buffers, (name, peak, out.nbytes)
    y = maps["forward"]()
    np.testing.assert_allclose(y, cm.correlate_gemm(x, w, ones, ones, 1), rtol=1e-4, atol=1e-4)


def test_small_pieces_divide_the_columns_within_the_small_matrix_size(monkeypatch):
    """A row's GEMM columns are cut into the fewest equal pieces whose products stay
    within SMALL_GEMM_MACS and that are at least SMALL_PIECE_COLUMNS wide; else one."""
    assert cm._small_pieces(640, 16 * 150) == 2  # LeNet-5's second conv at batch 64
    assert cm._small_pieces(1280, 16 * 150) == 4
    assert cm._small_pieces(144, 158 * 420) == 1  # pieces would be 12 columns wide
    assert cm._small_pieces(300, 10) == 1  # within the size already
    monkeypatch.setattr(cm, "SMALL_PIECE_COLUMNS", 1)
    for n in range(1, 200):
        for per_column in (1, 7, 5000, 60000):
            pieces = cm._small_pieces(n, per_column)
            assert n % pieces == 0
            least = max(1, -(-n * per_column // cm.SMALL_GEMM_MACS))
            if least <= n:  # the fewest pieces that divide n, each within the size
                assert pieces >= least and all(n % q for q in range(least, pieces))
            else:  # even one column is larger: one piece
                assert pieces == 1


def test_samples_last_rows_in_small_pieces(threads, monkeypatch):
    """Each output row's product runs as a stack of small pieces where one would be
    larger than OpenBLAS's small-matrix size: the same outputs and kept columns."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 6, 14, 14))
    w = rng.standard_normal((16, 6, 5, 5))
    threads(1)  # (the row-by-row forward: one thread)
    y, kept = cm.correlate_samples_last(x, w, (1, 1), (1, 1), 1, keep_cols=True)
    monkeypatch.setattr(cm, "SMALL_GEMM_MACS", 16 * 150 * 20)  # rows of 60: 3 pieces
    monkeypatch.setattr(cm, "SMALL_PIECE_COLUMNS", 1)
    calls = []
    real = cm._small_pieces
    monkeypatch.setattr(cm, "_small_pieces", lambda *a: calls.append(real(*a)) or calls[-1])
    y3, kept3 = cm.correlate_samples_last(x, w, (1, 1), (1, 1), 1, keep_cols=True)
    y3n = cm.correlate_samples_last(x, w, (1, 1), (1, 1), 1)
    assert calls == [3, 3]
    np.testing.assert_allclose(y3, y, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(y3n, y3)
    np.testing.assert_array_equal(kept3.cols, kept.cols)


@pytest.mark.parametrize(
    "x_shape, w_shape, strides, dilations, groups",
    [
        ((5, 6, 14, 14), (16, 6, 5, 5), (1, 1), (1, 1), 1),  # LeNet-5's second conv
        ((3, 4, 9, 8), (6, 2, 3, 2), (2, 1), (1, 2), 2),
        ((4, 3, 11), (5, 3, 3), (2,), (2,), 1),
        ((2, 2, 5, 6, 7), (4, 2, 2, 3, 2), (1, 2, 1), (2, 1, 1), 1),
        ((3, 2, 1, 9), (3, 2, 1, 3), (1, 1), (1, 1), 1),  # one output row
    ],
)
def test_samples_last_forward_row_by_row_on_one_thread(x_shape, w_shape, strides, dilations,
                                                        groups):  # fmt: skip
    """On one thread the samples-last forward builds and multiplies its columns one output
    row at a time: the same outputs as the batch-wide route, the same kept columns; when
    nothing keeps them, one row's buffer serves every row (the same outputs)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    before = tg.get_num_threads()
    try:
        tg.set_num_threads(1)
        y, kept = cm.correlate_samples_last(x, w, strides, dilations, groups, keep_cols=True)
        y1 = cm.correlate_samples_last(x, w, strides, dilations, groups)
        none, _ = cm._correlate_sl_by_rows(
            x, w.reshape(groups, w_shape[0] // groups, -1), w_shape[2:], strides, dilations,
            keep=False,
        )  # fmt: skip
    finally:
        tg.set_num_threads(before)
    ref = cm.correlate_gemm(x, w, strides, dilations, groups)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(y1, y)
    assert none is None
    cols = cm._im2col_samples_last(x, w_shape[2:], strides, dilations, groups)
    np.testing.assert_array_equal(kept.cols, cols)


@pytest.mark.parametrize(
    "shape, fs, dilations",
    [((4, 3, 11, 11), (75, 75), (1, 1)), ((2, 2, 3, 4, 5), (8, 9, 10), (1, 2, 1)),
     ((3, 2, 7), (16,), (2,)), ((2, 2, 5, 6), (12, 13), (1, 1)),
     # axes over DFT_MAX_TAPS go by FFT: alone, mixed with matrix axes, dilated
     ((3, 2, 50), (128,), (2,)), ((3, 2, 40, 5), (96, 20), (1, 2)),
     ((3, 2, 5, 40), (20, 96), (2, 1)), ((2, 3, 35, 3, 36), (40, 8, 80), (1, 2, 2)),
     # few rows for their taps (DFT_TAPS_PER_ROW) go by FFT too
     ((1, 1, 24), (1000,), (1,)), ((1, 1, 9, 2), (30, 20), (1, 1))],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_spectrum_equals_rfftn_of_the_dilated_kernel(shape, fs, dilations, dtype):
    a = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    axes = tuple(range(2, a.ndim))
    ref = np.conj(np.fft.rfftn(cm.dilate(a, dilations), s=fs, axes=axes))  # (O, Cg, *bins)
    got = cm._kernel_spectrum(a, fs, 1, dtype, dilations)  # (F, 1, O, Cg)
    assert got.dtype == np.result_type(dtype, np.complex64)
    got = np.moveaxis(got[:, 0], 0, -1).reshape(ref.shape)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("fs", [(9,), (10,), (7, 8), (8, 7), (6, 5, 4)])
def test_inverse_dft_at_the_taps_equals_irfftn_read_there(fs):
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((3,) + fs)  # batch first, as rfftn leaves it
    spec = cm._rfft(signal, fs)  # (3, *bins)
    taps = [np.arange(0, n, 2)[:3] for n in fs]  # dilation 2, at most 3 taps
    moved = np.moveaxis(spec, 0, -1)  # (*bins, 3)
    got = cm._irfft_taps(moved, fs, taps)  # (*taps, 3)
    ref = signal[(slice(None),) + np.ix_(*taps)]
    np.testing.assert_allclose(np.moveaxis(got, -1, 0), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("columns, taps", [(1, 5), (1, 40), (2, 3)])
def test_inverse_dft_at_the_taps_of_few_columns(columns, taps):
    """Few columns for their taps take the whole inverse FFT (DFT_TAPS_PER_ROW): the same
    values as the matrix of the DFT's rows."""
    rng = np.random.default_rng(2)
    fs = (50, 64)
    signal = rng.standard_normal((columns,) + fs)
    spec = np.moveaxis(cm._rfft(signal, fs), 0, -1)
    tap_sets = [np.arange(taps) % fs[0], (np.arange(taps) * 3) % fs[1]]
    got = cm._irfft_taps(spec, fs, tap_sets)
    ref = signal[(slice(None),) + np.ix_(*tap_sets)]
    np.testing.assert_allclose(np.moveaxis(got, -1, 0), ref, rtol=1e-10, atol=1e-10)


def test_one_channel_backward_on_long_signals_takes_fft_short_ones_gemm(monkeypatch):
    """A one-input-channel conv's GEMM with columns beyond the cache is memory-bound: its
    estimate is scaled up (ONE_CHANNEL_SCALE for the gradients, less for the forward), so
    long signals switch to FFT at about 33 taps for the backward and 65 for the forward
    (not 261); short signals, more input channels and 8 outputs are as before."""
    def first_fft(n, c, o, length, backward=True):
        for k in range(16, 400):
            args = (n, c, o, 1, (length,), (k,), (length - k + 1,), backward)
            if cm.choose_algorithm(*args) == "fft":
                return k
        return None
    assert 28 <= first_fft(1, 1, 1, 100_000) <= 40
    assert 55 <= first_fft(1, 1, 1, 100_000, backward=False) <= 75
    assert first_fft(16, 1, 8, 16_000) == first_fft(16, 1, 8, 16_000, backward=False)
    assert first_fft(16, 1, 2, 16_000) < first_fft(16, 1, 2, 16_000, backward=False)
    assert first_fft(8, 1, 1, 1000) > 100  # (its columns fit the cache)
    assert first_fft(8, 2, 2, 20_000) == first_fft(8, 2, 2, 20_000, backward=False)
    # the two routes agree where the switch moved
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1, 20_000))
    w = rng.standard_normal((1, 1, 40))
    y = {algo: None for algo in ("gemm", "fft")}
    for algo in y:
        xt, wt = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
        with F.conv_algorithm(algo):
            out = F.conv1d(xt, wt)
            out.backward(tg.Tensor(np.cos(np.arange(out.size)).reshape(out.shape)))
        y[algo] = (out.numpy(), xt.grad.numpy(), wt.grad.numpy())
    for a, b in zip(y["gemm"], y["fft"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(a).max())
    monkeypatch.setattr(cm, "ONE_CHANNEL_SCALE", 1.0)  # (the plain flop estimate: 261 taps)
    assert first_fft(1, 1, 1, 100_000) > 250


def test_fft_route_uses_tinygrad_np_thread_count(threads, monkeypatch):
    """scipy.fft runs on as many threads as tinygrad_np may use (1 inside a pool task or
    DataParallel's shard), not on every core."""
    import scipy.fft

    seen = []
    for name in ("rfftn", "irfftn", "rfft", "fft"):
        real = getattr(scipy.fft, name)

        def spy(*a, real=real, **k):
            seen.append(k.get("workers"))
            return real(*a, **k)

        monkeypatch.setattr(scipy.fft, name, spy)
    x = tg.randn(2, 3, 20, 20, requires_grad=True)
    w = tg.randn(4, 3, 11, 11, requires_grad=True)
    for n in (1, 2):
        threads(n)
        seen.clear()
        with F.conv_algorithm("fft"):
            F.conv2d(x, w, padding=5).sum().backward()
        assert seen and set(seen) == {n}


def test_fft_route_reuses_the_forward_spectra_and_stays_exact():
    """The forward keeps its input and kernel spectra for the backward maps, which also
    share the upstream gradient's: the result equals the GEMM route, and a second backward
    through the same graph with another upstream gradient does not see the first one's."""
    rng = np.random.default_rng(8)
    x = _t(rng.standard_normal((3, 4, 14, 13)))
    w = _t(rng.standard_normal((6, 2, 7, 6)))
    kw = dict(stride=(2, 1), padding=((3, 2), (1, 4)), dilation=(1, 2), groups=2)
    with F.conv_algorithm("fft"):
        y = F.conv2d(x, w, **kw)
    assert isinstance(y.grad_fn.cols, cm.Spectra)
    us = [rng.standard_normal(y.shape) for _ in range(2)]
    with F.conv_algorithm("fft"):
        got = [tg.grad(y, [x, w], [tg.Tensor(u)], retain_graph=True) for u in us]
    with F.conv_algorithm("gemm"):
        y2 = F.conv2d(x, w, **kw)
        ref = [tg.grad(y2, [x, w], [tg.Tensor(u)], retain_graph=True) for u in us]
    for g_fft, g_ref in zip(got, ref, strict=True):
        for a, b in zip(g_fft, g_ref, strict=True):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(y.data, y2.data, rtol=1e-9, atol=1e-9)


def test_fft_route_without_a_cache_when_the_batch_is_chunked():
    rng = np.random.default_rng(9)
    x = _t(rng.standard_normal((4, 2, 12, 12)))
    w = _t(rng.standard_normal((3, 2, 9, 9)))
    with F.conv_algorithm("fft"), F.scratch_budget(4096):  # one sample per chunk
        y = F.conv2d(x, w, padding=4)
        assert y.grad_fn.cols is None
        gx, gw = tg.grad(y.sum(), [x, w])
    with F.conv_algorithm("gemm"):
        rx, rw = tg.grad(F.conv2d(x, w, padding=4).sum(), [x, w])
    np.testing.assert_allclose(gx.data, rx.data, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gw.data, rw.data, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- memory


SL_MAPS = (cm.correlate_samples_last, cm.correlate_transpose_samples_last,
           cm.correlate_weight_grad_samples_last)  # fmt: skip
BATCH_MAPS = (cm.correlate_gemm, cm.correlate_transpose_gemm, cm.correlate_weight_grad_gemm)


@pytest.mark.parametrize("maps", [BATCH_MAPS, SL_MAPS], ids=["batch", "samples_last"])
def test_im2col_chunks_bound_scratch_memory(maps):
    """With a 1 MiB scratch budget a batch whose im2col matrix is ~30 MiB is processed in
    chunks: the peak above inputs + outputs stays near the budget, results unchanged."""
    correlate, transpose, weight_grad = maps
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 8, 20, 20)).astype(np.float32)
    w = rng.standard_normal((8, 8, 5, 5)).astype(np.float32)
    full = cm.im2col_scratch_bytes(64, 8, (5, 5), (16, 16), 4)
    assert full > 12 * 2**20
    ref = cm.correlate_gemm(x, w, (1, 1), (1, 1), 1)
    budget = 2**20
    with cm.scratch_budget(budget):
        assert cm.batch_chunk(full // 64, 64) == budget // (full // 64)
        tracemalloc.start()
        y = correlate(x, w, (1, 1), (1, 1), 1)
        gx = transpose(y, w, x.shape[2:], (1, 1), (1, 1), 1)
        gw = weight_grad(x, y, (5, 5), (1, 1), (1, 1), 1)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4)
    outputs = y.nbytes + gx.nbytes + gw.nbytes
    assert peak < outputs + 3 * budget, (peak, outputs)
    gw_ref = cm.correlate_weight_grad_gemm(x, y, (5, 5), (1, 1), (1, 1), 1)  # one chunk
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-4, atol=1e-5 * np.abs(gw_ref).max())
    gx_ref = cm.correlate_transpose_gemm(y, w, x.shape[2:], (1, 1), (1, 1), 1)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-5 * np.abs(gx_ref).max())


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_argument():
    x = tg.randn(2, 4, 8, 8)
    w = tg.randn(6, 2, 3, 3)
    cases = [
        (lambda: F.conv2d(x, tg.randn(6, 3, 3, 3)), "channels"),
        (lambda: F.conv2d(x, w, groups=3), "groups"),
        (lambda: F.conv2d(x, tg.randn(6, 4, 9, 3)), "kernel size 9"),
        (lambda: F.conv2d(x, w, groups=2, stride=0), "stride"),
        (lambda: F.conv2d(x, w, groups=2, stride=(1, -1)), "stride"),
        (lambda: F.conv2d(x, w, groups=2, dilation=0), "dilation"),
        (lambda: F.conv2d(tg.randn(4, 8), w, groups=2), "input must be"),
        (lambda: F.conv2d(x, tg.randn(6, 2, 3), groups=2), "weight must be"),
        (lambda: F.conv2d(x.double(), w, groups=2), "dtype"),
        (lambda: F.conv2d(x, w, tg.randn(5), groups=2), "bias"),
        (lambda: F.conv2d(x, w, groups=2, padding="full"), "padding"),
        (lambda: F.conv1d(tg.randn(1, 1, 3), tg.randn(1, 1, 5), dilation=2), "larger than"),
        (lambda: F.conv_transpose2d(x, tg.randn(3, 2, 3, 3)), "channels"),
        (lambda: F.conv_transpose2d(x, tg.randn(4, 2, 3, 3), output_padding=1), "output_padding"),
        (lambda: F.conv_transpose2d(x, tg.randn(4, 2, 3, 3), groups=3), "groups"),
    ]
    for fn, words in cases:
        with pytest.raises(ValueError, match=words):
            fn()


def test_unbatched_input():
    rng = np.random.default_rng(8)
    x, w = _t(rng.standard_normal((3, 7, 6))), _t(rng.standard_normal((2, 3, 3, 2)))
    y = F.conv2d(x, w, padding=1)
    yb = F.conv2d(x.unsqueeze(0), w, padding=1)
    assert y.shape == (2, 7, 7)
    np.testing.assert_array_equal(y.data, yb.data[0])
    (gx,) = tg.grad(y.sum(), [x])
    assert gx.shape == x.shape


# ----------------------------------------------------------------------------- users' cases


def _init(rng, *shape):
    return rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))


def _net96(f, p, x):
    x = f.max_pool2d(f.relu(f.conv2d(x, p[0], p[1], stride=2)), 3, 2)
    x = f.max_pool2d(f.relu(f.conv2d(x, p[2], p[3])), 4, 2)
    x = f.relu(f.conv2d(x, p[4], p[5]))
    x = f.relu(f.conv2d(x, p[6], p[7]))
    x = f.max_pool2d(f.relu(f.conv2d(x, p[8], p[9])), 3, 2)
    x = x.reshape(x.shape[0], -1)
    x = f.relu(f.linear(x, p[10], p[11]))
    x = f.relu(f.linear(x, p[12], p[13]))
    return f.linear(x, p[14], p[15])


def test_user_96x96_network_forward_backward_sgd_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    shapes = [(40, 3, 4, 4), (40,), (105, 40, 2, 2), (105,), (158, 105, 2, 2), (158,),
              (158, 158, 2, 2), (158,), (105, 158, 2, 2), (105,), (945, 945), (945,),
              (475, 945), (475,), (8, 475), (8,)]  # fmt: skip
    params = [_init(rng, *s) if len(s) > 1 else 0.1 * rng.standard_normal(s) for s in shapes]
    x = rng.standard_normal((2, 3, 96, 96))
    target = np.array([3, 7])
    ps = [_t(a) for a in params]
    loss = F.cross_entropy(_net96(F, ps, tg.Tensor(x)), target)
    loss.backward()
    pt = [torch.tensor(a, requires_grad=True) for a in params]
    lt = torch.nn.functional.cross_entropy(
        _net96(torch.nn.functional, pt, torch.tensor(x)), torch.tensor(target)
    )
    lt.backward()
    assert loss.item() == pytest.approx(lt.item(), rel=1e-10)
    for p, q in zip(ps, pt, strict=True):
        assert p.grad.shape == p.shape
        np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-7, atol=1e-10)
    lr = 0.01
    for p in ps:
        p.data -= lr * p.grad.data
    with torch.no_grad():
        for q in pt:
            q -= lr * q.grad
    loss2 = F.cross_entropy(_net96(F, ps, tg.Tensor(x)), target)
    lt2 = torch.nn.functional.cross_entropy(
        _net96(torch.nn.functional, pt, torch.tensor(x)), torch.tensor(target)
    )
    assert loss2.item() == pytest.approx(lt2.item(), rel=1e-9)
    assert loss2.item() < loss.item()  # the step went downhill


def test_user_stride_7_4_padding_keeps_36x47():
    """(N,1,36,47) with kernel (2,1,5,8) and stride (7,4): keeping the output at 36x47 takes
    (36-1)*7 + 5 - 36 = 214 rows and (47-1)*4 + 8 - 47 = 145 cols of padding; an
    asymmetric split does it. Gradients match PyTorch's F.pad + conv."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 1, 36, 47))
    w = rng.standard_normal((2, 1, 5, 8))
    pads = ((107, 107), (72, 73))
    X, W = _t(x), _t(w)
    y = F.conv2d(X, W, stride=(7, 4), padding=pads)
    assert y.shape == (3, 2, 36, 47)
    u = rng.standard_normal(y.shape)
    gx, gw = tg.grad(y, [X, W], [tg.Tensor(u)])
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(torch.nn.functional.pad(xt, (72, 73, 107, 107)), wt,
                                    stride=(7, 4))  # fmt: skip
    rx, rw = torch.autograd.grad(yt, [xt, wt], torch.tensor(u))
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gx.data, rx.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw.data, rw.numpy(), rtol=1e-10, atol=1e-10)


def test_user_stride_7_4_same_padding_gives_ceil_and_matches_explicit_pair():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 1, 36, 47))
    w = rng.standard_normal((2, 1, 5, 8))
    pads = cm.resolve_padding("same", (36, 47), (5, 8), (7, 4), (1, 1))
    assert pads == ((2, 2), (2, 3))  # 4 rows and 5 cols in total, the odd one after
    X, W = _t(x), _t(w)
    y = F.conv2d(X, W, stride=(7, 4), padding="same")
    assert y.shape == (2, 2, 6, 12)  # ceil(36/7), ceil(47/4)
    y2 = F.conv2d(X, W, stride=(7, 4), padding=pads)
    np.testing.assert_array_equal(y.data, y2.data)
    u = rng.standard_normal(y.shape)
    gx, gw = tg.grad(y, [X, W], [tg.Tensor(u)])
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(torch.nn.functional.pad(xt, (2, 3, 2, 2)), wt, stride=(7, 4))
    rx, rw = torch.autograd.grad(yt, [xt, wt], torch.tensor(u))
    np.testing.assert_allclose(gx.data, rx.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw.data, rw.numpy(), rtol=1e-10, atol=1e-10)


def test_user_5x100x100_input_10_filters_weight_gradient():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 100, 100)).astype(np.float32)  # unbatched (C, H, W)
    w = rng.standard_normal((10, 5, 5, 5)).astype(np.float32)
    X, W = tg.Tensor(x), tg.Tensor(w, requires_grad=True)
    y = F.conv2d(X, W)
    assert y.shape == (10, 96, 96)
    u = rng.standard_normal(y.shape).astype(np.float32)
    (gw,) = tg.grad(y, [W], [tg.Tensor(u)])
    assert gw.shape == (10, 5, 5, 5) and gw.dtype == np.float32
    wt = torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(torch.tensor(x), wt)
    (rw,) = torch.autograd.grad(yt, [wt], torch.tensor(u))
    np.testing.assert_allclose(gw.data, rw.numpy(), rtol=1e-4, atol=2e-3)


def test_user_valid_input_gradient_keeps_input_shape_with_rows_left_over():
    """With "valid" padding and a stride that does not divide (n - K), the last rows are
    never read: the input gradient still has the input's shape, with zeros there."""
    rng = np.random.default_rng(13)
    for n, k, s in [(8, 3, 2), (10, 4, 3), (7, 2, 4), (50, 4, 4), (9, 1, 5)]:
        x = _t(rng.standard_normal((1, 1, n, n + 1)))
        w = _t(rng.standard_normal((1, 1, k, k)))
        y = F.conv2d(x, w, stride=s, padding="valid")
        gx, gw = tg.grad(y, [x, w], [tg.Tensor(rng.standard_normal(y.shape))])
        assert gx.shape == x.shape and gw.shape == w.shape
        r = cm.unread_rows(n, k, s)
        if r:
            assert not gx.data[0, 0, n - r :, :].any()
        mask = cm.read_mask(n, k, s)
        assert not gx.data[0, 0, ~mask, :].any()
        assert gx.data[0, 0, mask, :].any()


DEPTHWISE_CASES = [
    # x shape, kernel, stride, dilation (groups = channels)
    ((2, 3, 9, 8), (3, 2), (2, 1), (1, 2)),
    ((2, 3, 9, 8), (3, 3), (1, 1), (1, 1)),
    ((3, 2, 11), (3,), (1,), (2,)),
    ((2, 2, 10), (4,), (3,), (1,)),
    ((1, 2, 5, 6, 7), (2, 3, 2), (1, 2, 1), (2, 1, 1)),
]


@pytest.mark.parametrize("path", ["band", "direct"])
@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: f"{len(c[1])}d-k{c[1]}-s{c[2]}")
def test_depthwise_paths_equal_im2col(case, m, path, monkeypatch):
    """Depthwise convs (one input channel per group) skip im2col: band-matrix products
    along the last dim, or (when those would waste too much, forced here by a zero
    allowance) per-tap multiply-adds, on the wide grid for stride 1. All three maps agree
    with the im2col route."""
    if path == "direct":
        monkeypatch.setattr(cm, "TOEPLITZ_MAX_EXCESS", 0)
    shape, k, s, d = case
    c = shape[1]
    rng = np.random.default_rng(14 + m + len(k))
    x = rng.standard_normal(shape)
    w = rng.standard_normal((c * m, 1) + k)
    y = cm.correlate_depthwise(x, w, s, d, c)
    np.testing.assert_allclose(y, cm.correlate_gemm(x, w, s, d, c), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        cm.correlate_transpose_depthwise(g, w, x.shape[2:], s, d, c),
        cm.correlate_transpose_gemm(g, w, x.shape[2:], s, d, c),
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        cm.correlate_weight_grad_depthwise(x, g, k, s, d, c),
        cm.correlate_weight_grad_gemm(x, g, k, s, d, c),
        rtol=1e-12,
        atol=1e-12,
    )


def test_depthwise_band_matrices_are_only_used_while_cheap():
    assert cm._toeplitz_ok(64, 1, (3, 3), 58, 56, 4)  # the benchmark's 56x56 maps
    assert not cm._toeplitz_ok(64, 1, (3, 3), 226, 224, 4)  # 75x the multiply-adds
    assert not cm._toeplitz_ok(4096, 1, (3, 3), 58, 56, 4)  # band matrices over 16 MiB


DEPTHWISE_CHANNELS = [
    # x shape, kernel, stride, dilation, pads, channel multiplier (groups = channels)
    ((2, 3, 9, 8), (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), 1),
    ((3, 2, 7, 10), (3, 2), (1, 1), (2, 1), ((0, 3), (2, 0)), 2),
    ((3, 2, 11), (4,), (1,), (2,), ((3, 1),), 1),
    ((2, 2, 5, 6, 7), (3, 2, 3), (1, 1, 1), (1, 1, 2), ((2, 0), (1, 1), (0, 4)), 2),
    ((2, 2, 4, 4), (3, 3), (1, 1), (2, 2), ((3, 3), (4, 2)), 1),  # taps reading only padding
    ((1, 3, 6, 5), (2, 3), (1, 1), (1, 1), ((0, 0), (0, 0)), 3),  # "valid"
    ((3, 2, 11, 10), (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), 1),  # four phase planes
    ((2, 3, 12, 9), (3, 2), (3, 2), (2, 3), ((2, 0), (1, 2)), 2),  # dilation across phases
    ((3, 2, 13), (2,), (4,), (1,), ((0, 0),), 1),  # inputs no window reads: zero gradient
    ((2, 2, 7, 6, 8), (3, 2, 3), (2, 1, 3), (1, 2, 1), ((1, 0), (0, 1), (2, 1)), 1),
]


@pytest.mark.parametrize("per_block", [None, 1, 2])
@pytest.mark.parametrize(
    "case", DEPTHWISE_CHANNELS, ids=lambda c: f"{len(c[1])}d-s{c[2]}-p{c[4]}-m{c[5]}"
)
def test_depthwise_channel_route_equals_im2col(case, per_block, monkeypatch):
    """Depthwise convs on channel-major wide grids (one axpy or dot per channel and tap
    over the tap's phase plane, the samples in blocks: all in one, one a block, or two,
    with a shorter last block for three samples): all three maps, and the bias, equal
    the im2col route on the padded input."""
    shape, k, s, d, pads, m = case
    grid = cm._ChannelGrid(shape[0], shape[2:], k, s, d, pads)
    if per_block is not None:
        monkeypatch.setattr(cm, "DEPTHWISE_BLOCK_ELEMS", per_block * grid.plane)
    c = shape[1]
    rng = np.random.default_rng(23 + m + len(k))
    x = rng.standard_normal(shape)
    w = rng.standard_normal((c * m, 1) + k)
    b = rng.standard_normal(c * m)
    xp = cm.pad_spatial(x, pads)
    ref = cm.correlate_gemm(xp, w, s, d, c, bias=b)
    y = cm.correlate_depthwise_channels(x, w, s, d, pads, x.dtype, b)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    gx = cm.correlate_transpose_depthwise_channels(g, w, x.shape[2:], s, d, pads, c, x.dtype)
    ref = cm.pad_spatial(cm.correlate_transpose_gemm(g, w, xp.shape[2:], s, d, c), cm.negate(pads))
    assert gx.shape == x.shape
    np.testing.assert_allclose(gx, ref, rtol=1e-12, atol=1e-12)
    gw = cm.correlate_weight_grad_depthwise_channels(x, g, k, s, d, pads, x.dtype)
    np.testing.assert_allclose(
        gw, cm.correlate_weight_grad_gemm(xp, g, k, s, d, c), rtol=1e-12, atol=1e-12
    )


def test_depthwise_channel_route_bounds_its_scratch_memory():
    """The channel-major route's runs (two a phase plane and one more) fit the scratch
    budget: blocks get fewer samples under a small budget (results unchanged, the peak
    above inputs and outputs near the budget), and where one sample's planes do not fit,
    the route is not taken."""
    rng = np.random.default_rng(43)
    x = rng.standard_normal((16, 4, 40, 40)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    pads, s, d = ((1, 1), (1, 1)), (1, 1), (1, 1)
    ref = cm.correlate_depthwise_channels(x, w, s, d, pads, x.dtype)
    g = rng.standard_normal(ref.shape).astype(np.float32)
    ref_b = cm.backward_depthwise_channels(x, g, w, s, d, pads, (True, True, True), x.dtype)
    plane = 42 * 42
    budget = 3 * (2 * plane + 2 * 42 + 2) * 4 + 100  # two samples a block, and the slack
    with cm.scratch_budget(budget):
        grid = cm._ChannelGrid(16, (40, 40), (3, 3), s, d, pads, 4)
        assert grid.nb == 2 and grid.scratch <= budget
        tracemalloc.start()
        y = cm.correlate_depthwise_channels(x, w, s, d, pads, x.dtype)
        got = cm.backward_depthwise_channels(x, g, w, s, d, pads, (True, True, True), x.dtype)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    outputs = y.nbytes + sum(a.nbytes for a in got)
    assert peak < outputs + 2 * budget, (peak, outputs)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-5)
    for a, r in zip(got, ref_b, strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-3)
    big = ((1, 8, 512, 512), (8, 1, 3, 3))  # one sample's runs: 3 x 1 MiB
    assert cm._depthwise_channel_route(*big, ((1, 1), (1, 1)), s, d, 8, "forward", 4)
    with cm.scratch_budget(2**21):
        assert not cm._depthwise_channel_route(*big, ((1, 1), (1, 1)), s, d, 8, "forward", 4)


def test_depthwise_channel_grid_splits_a_strided_input_into_phase_planes():
    """3x3 stride 2 on 11x10 padded by 1 (13x12, 6x5 outputs): tap k reads phase plane
    k % 2 at shift k // 2, so four phase planes of (6 + 1) x (5 + 1), tap (2, 2) in
    plane (0, 0) shifted by one row and one column; the plane (1, 1) holds the input's
    rows and columns 0, 2, 4, ... from entry 0 on."""
    grid = cm._ChannelGrid(3, (11, 10), (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)))
    assert grid.out == (6, 5) and grid.padded == (7, 6) and grid.plane == 42
    assert len(grid.inside) == 4
    assert grid.phase[0] == grid.phase[2] == grid.phase[6] == grid.phase[8]
    assert grid.offsets[8] == 6 + 1 and grid.offsets[0] == 0
    xs, ps = grid.inside[grid.phase[4]]  # tap (1, 1): phase (1, 1)
    assert xs[1:] == (slice(0, 11, 2), slice(0, 9, 2)) and ps[1:] == (slice(0, 6), slice(0, 5))
    xs, ps = grid.inside[grid.phase[0]]  # phase (0, 0): padded rows 0, 2, ..: input 1, 3, ..
    assert xs[1:] == (slice(1, 10, 2), slice(1, 10, 2)) and ps[1:] == (slice(1, 6), slice(1, 6))
    assert not grid.whole


@pytest.mark.parametrize("need", list(itertools.product([False, True], repeat=3)))
@pytest.mark.parametrize("case", [DEPTHWISE_CHANNELS[1], DEPTHWISE_CHANNELS[7]], ids=["s1", "s3x2"])
def test_depthwise_fused_backward_equals_the_separate_maps(case, need, monkeypatch):
    """A plain backward of a depthwise conv on the channel-major grids computes the input,
    weight and bias gradients in one pass over g (each block of g placed on the grid
    once): for every subset of them it gives the separate maps' numbers (two sample
    blocks, the second shorter), and None for the others."""
    shape, k, s, d, pads, m = case
    grid = cm._ChannelGrid(shape[0], shape[2:], k, s, d, pads)
    monkeypatch.setattr(cm, "DEPTHWISE_BLOCK_ELEMS", 2 * grid.plane)
    c = shape[1]
    rng = np.random.default_rng(37)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((c * m, 1) + k)
    g = rng.standard_normal(cm.correlate_depthwise_channels(x, w, s, d, pads, x.dtype).shape)
    gx, gw, gb = cm.backward_depthwise_channels(x, g, w, s, d, pads, need, x.dtype)
    ref_x = cm.correlate_transpose_depthwise_channels(g, w, x.shape[2:], s, d, pads, c, x.dtype)
    ref_w = cm.correlate_weight_grad_depthwise_channels(x, g, k, s, d, pads, x.dtype)
    ref_b = g.sum((0,) + tuple(range(2, g.ndim)))
    for got, ref, wanted in ((gx, ref_x, need[0]), (gw, ref_w, need[1]), (gb, ref_b, need[2])):
        if wanted:
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
        else:
            assert got is None


@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_depthwise_channel_route_in_other_dtypes(dtype):
    """float32 runs SciPy's saxpy and sdot, dtypes BLAS lacks the same loops in NumPy
    (exact for integers)."""
    rng = np.random.default_rng(29)
    x = rng.integers(-4, 5, (3, 4, 7, 6)).astype(dtype)
    w = rng.integers(-3, 4, (8, 1, 3, 2)).astype(dtype)
    pads, s, d = ((1, 1), (0, 2)), (1, 1), (1, 2)
    xp = cm.pad_spatial(x, pads)
    y = cm.correlate_depthwise_channels(x, w, s, d, pads, x.dtype)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, cm.correlate_gemm(xp, w, s, d, 4))
    g = rng.integers(-3, 4, y.shape).astype(dtype)
    gx = cm.correlate_transpose_depthwise_channels(g, w, x.shape[2:], s, d, pads, 4, x.dtype)
    ref = cm.pad_spatial(cm.correlate_transpose_gemm(g, w, xp.shape[2:], s, d, 4), cm.negate(pads))
    np.testing.assert_array_equal(gx, ref)
    gw = cm.correlate_weight_grad_depthwise_channels(x, g, (3, 2), s, d, pads, x.dtype)
    np.testing.assert_array_equal(gw, cm.correlate_weight_grad_gemm(xp, g, (3, 2), s, d, 4))


def test_depthwise_channel_route_is_taken_where_it_measured_faster():
    """The route replaces the band matrices for long rows (the benchmark's 56x56 maps)
    and keeps off small planes of many channels (short axpy calls), strided convs that
    band matrices serve, cropping and the FFT route; the weight gradient keeps the
    per-sample dot products for one sample (nine calls in all)."""

    def route(x_shape, w_shape, which, pads=((1, 1), (1, 1)), s=(1, 1), d=(1, 1)):
        return cm._depthwise_channel_route(x_shape, w_shape, pads, s, d, x_shape[1], which, 4)

    bench = ((16, 64, 56, 56), (64, 1, 3, 3))
    for which in ("forward", "input_grad", "weight_grad"):
        assert route(*bench, which)
        assert not route((16, 256, 14, 14), (256, 1, 3, 3), which)  # 3.4 against 1.3 ms
        assert not route(*bench, which, s=(2, 2))  # band matrices: 2.7 against 3.1 ms
        assert route((16, 64, 112, 112), (64, 1, 3, 3), which, s=(2, 2))  # 27.7 against 16.1
        assert not route(*bench, which, pads=((-1, 1), (1, 1)))
        assert not route((16, 64, 56, 56), (64, 2, 3, 3), which)  # not depthwise
        with cm.conv_algorithm("fft"):
            assert not route(*bench, which)
    assert route((2, 32, 112, 112), (32, 1, 3, 3), "forward")  # 1.38 against 5.48 ms
    for which in ("forward", "input_grad"):  # many channels of tiny planes: band matrices
        assert not route((64, 1024, 4, 4), (1024, 1, 3, 3), which)  # 15.3 against 6.9 ms
        assert not route((32, 512, 7, 7), (512, 1, 3, 3), which)  # 7.2 against 2.6 ms
        assert not route((64, 512, 16), (512, 1, 3), which, ((1, 1),), (1,), (1,))
    assert not route((1, 64, 56, 56), (64, 1, 3, 3), "weight_grad")  # 0.75 against 0.35 ms
    assert route((128, 32, 14, 14), (32, 1, 3, 3), "weight_grad")  # 1.6 against 5.7 ms
    assert route((16, 8, 300), (8, 1, 3), "forward", pads=((1, 1),), s=(1,), d=(1,))  # no band


def test_depthwise_conv_takes_the_channel_route_end_to_end(monkeypatch, numpy_depthwise):
    """F.conv2d on the benchmark's shape goes through the channel-major route for the
    forward and for the whole backward in one pass (counted), and agrees with the band
    matrices (float64); a recorded backward (create_graph) keeps the separate ops."""
    from tinygrad_np.ops import conv as ops_conv

    calls = []
    forward, fused = cm.correlate_depthwise_channels, ops_conv.Conv._depthwise_backward
    monkeypatch.setattr(
        cm, "correlate_depthwise_channels", lambda *a, **k: calls.append("fwd") or forward(*a, **k)
    )

    def backward(op, g):
        out = fused(op, g)
        calls.append("fused" if out is not None else "separate")
        return out

    monkeypatch.setattr(ops_conv.Conv, "_depthwise_backward", backward)
    rng = np.random.default_rng(31)
    x, w, b = (
        _t(rng.standard_normal((4, 64, 56, 56))),
        _t(rng.standard_normal((64, 1, 3, 3))),
        _t(rng.standard_normal(64)),
    )
    y = F.conv2d(x, w, b, padding=1, groups=64)
    g = tg.Tensor(rng.standard_normal(y.shape))
    got = [y.data] + [t.data for t in tg.grad(y, [x, w, b], [g])]
    assert calls == ["fwd", "fused"]
    calls.clear()
    y = F.conv2d(x, w, b, padding=1, groups=64)
    recorded = [t.data for t in tg.grad(y, [x, w, b], [g], create_graph=True)]
    assert calls[:2] == ["fwd", "separate"]  # (then dx as a visible conv: "fwd" again)
    monkeypatch.setattr(cm, "_depthwise_channel_route", lambda *a, **k: False)
    calls.clear()
    y = F.conv2d(x, w, b, padding=1, groups=64)
    ref = [y.data] + [t.data for t in tg.grad(y, [x, w, b], [g])]
    assert calls == ["separate"]
    for a, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-11, atol=1e-11)
    for a, r in zip(recorded, ref[1:], strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("algo", ALGOS)
def test_a_frozen_weight_keeps_no_im2col_matrix_for_the_backward(algo):
    """The forward keeps its im2col matrix (or spectra) only for a weight gradient: with a
    frozen weight, or outside grad mode, it is dropped at once; values and gradients are
    unchanged (bias included)."""
    rng = np.random.default_rng(10)
    x = tg.Tensor(rng.standard_normal((4, 3, 12, 12)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((5, 3, 3, 3)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(5))
    with _route(algo):
        y = F.conv2d(x, w, b, padding=1)
        assert y.grad_fn.cols is not None
        ref = tg.grad(y.sum(), [x])[0].data
        frozen = tg.Tensor(w.data)  # requires_grad False
        y2 = F.conv2d(x, frozen, b, padding=1)
        assert y2.grad_fn.cols is None
        np.testing.assert_allclose(y2.data, y.data, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(tg.grad(y2.sum(), [x])[0].data, ref, rtol=1e-12, atol=1e-12)
    with tg.no_grad():
        assert F.conv2d(x, w, padding=1).grad_fn is None


def test_few_filter_forward_in_cache_sized_blocks_equals_one_block(monkeypatch):
    """With few output channels the forward builds and multiplies its im2col columns a
    few samples at a time; the blocks give the same result as one pass."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((7, 2, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 1, 3, 2)).astype(np.float32)  # 2 groups of 3 filters
    b = rng.standard_normal(6).astype(np.float32)
    whole, cols = cm.correlate_gemm(x, w, (1, 2), (2, 1), 2, keep_cols=True, bias=b)
    monkeypatch.setattr(cm, "BLOCK_ELEMS", 1)  # one sample per block
    blocked, cols2 = cm.correlate_gemm(x, w, (1, 2), (2, 1), 2, keep_cols=True, bias=b)
    np.testing.assert_array_equal(blocked, whole)
    np.testing.assert_array_equal(cols2, cols)
    ref = cm.correlate_gemm(x.astype(np.float64), w.astype(np.float64), (1, 2), (2, 1), 2)
    np.testing.assert_allclose(whole, ref + b.reshape(6, 1, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize(
    "shape, kernel, strides, dilations, groups",
    [
        ((7, 2, 9, 8), (3, 2), (1, 2), (2, 1), 2),
        ((5, 3, 13), (4,), (2,), (1,), 3),
        ((4, 1, 6, 5, 7), (2, 3, 2), (1, 1, 2), (1, 2, 1), 1),
    ],
)
def test_few_filter_forward_writes_y_per_sample(
    shape, kernel, strides, dilations, groups, with_bias, n_threads, threads, monkeypatch
):
    """With few filters each sample's product is written straight into y (its bias as a
    weight column times a row of ones under the columns): the same y as the GEMM over the
    whole chunk with its transposing copy, the same kept columns, bit for bit, and the
    weight gradient from those columns equals the one that builds its own."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((3 * groups, shape[1] // groups) + kernel)
    b = rng.standard_normal(3 * groups) if with_bias else None
    args = (x, w, strides, dilations, groups)
    calls = _count_calls(monkeypatch, "_correlate_few")
    threads(n_threads)
    monkeypatch.setattr(par, "MIN_ELEMENTS", 1)  # split even these small jobs
    monkeypatch.setattr(cm, "PER_SAMPLE_MIN_P", 10**9)  # no per-sample route
    monkeypatch.setattr(cm, "BLOCK_ELEMS", 1)  # one sample a block
    few, cols = cm.correlate_gemm(*args, keep_cols=True, bias=b)
    assert len(calls) == 1 and cols is not None
    monkeypatch.setattr(cm, "FEW_OUTPUTS", 1)  # 3 filters a group: not "few"
    many, cols_many = cm.correlate_gemm(*args, keep_cols=True, bias=b)
    assert len(calls) == 1
    np.testing.assert_allclose(few, many, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(cols, cols_many)
    if b is None:  # the same products, in the same order
        np.testing.assert_array_equal(few, many)
    g = rng.standard_normal(few.shape)
    gw = cm.correlate_weight_grad_gemm(x, g, kernel, strides, dilations, groups, cols)
    ref = cm.correlate_weight_grad_gemm(x, g, kernel, strides, dilations, groups)
    np.testing.assert_allclose(gw, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize(
    "shape, kernel, strides, dilations, groups",
    [
        ((5, 4, 11, 10), (3, 2), (1, 2), (2, 1), 2),
        ((3, 3, 30), (4,), (2,), (1,), 1),
        ((4, 2, 6, 5, 7), (2, 3, 2), (1, 1, 2), (1, 2, 1), 1),
    ],
)
def test_per_sample_forward_equals_the_batch_wide_forward(
    shape, kernel, strides, dilations, groups, n_threads, threads, monkeypatch
):
    """A forward runs one sample at a time (its columns, one GEMM straight into y) when the
    samples have many positions, in pieces of a few rows of the output's first dim when the
    columns are large; a forward that keeps its columns for the weight gradient writes
    them into the kept matrix the same way. All equal the batch-wide route bit for bit,
    the kept columns too."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((6, shape[1] // groups) + kernel).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    args = (x, w, strides, dilations, groups)
    calls = []
    real = cm._correlate_per_sample
    monkeypatch.setattr(cm, "_correlate_per_sample", lambda *a: calls.append(1) or real(*a))
    threads(n_threads)
    monkeypatch.setattr(par, "MIN_ELEMENTS", 1)  # split even these small jobs
    monkeypatch.setattr(cm, "FEW_OUTPUTS", 1)  # 3 or 6 filters per group: not "few"
    monkeypatch.setattr(cm, "PER_SAMPLE_MIN_P", 10**9)  # batch-wide
    whole, cols = cm.correlate_gemm(*args, keep_cols=True, bias=b)
    assert cols is not None and not calls
    monkeypatch.setattr(cm, "PER_SAMPLE_MIN_P", 1)  # one sample at a time, where allowed
    kept, cols1 = cm.correlate_gemm(*args, keep_cols=True, bias=b)
    assert len(calls) == 1 and cols1 is not None  # written into the kept matrix
    one = cm.correlate_gemm(*args, bias=b)
    assert len(calls) == 2
    monkeypatch.setitem(cm._settings, "cache_bytes", 0)  # too large to keep
    unkept, none = cm.correlate_gemm(*args, keep_cols=True, bias=b)
    assert len(calls) == 3 and none is None
    out = whole.shape[2:]  # pieces of 3 rows (the last one shorter)
    per_sample = cm.im2col_scratch_bytes(1, shape[1], kernel, out, 4)
    monkeypatch.setattr(cm, "PER_SAMPLE_L2_BYTES", 0)
    monkeypatch.setattr(cm, "PER_SAMPLE_PIECE_BYTES", 3 * per_sample // out[0] + 1)
    assert cm._per_sample_rows(6 // groups, out, per_sample) == 3 and out[0] % 3
    pieces = cm.correlate_gemm(*args, bias=b)
    assert len(calls) == 4
    monkeypatch.setitem(cm._settings, "cache_bytes", 2**30)
    kept_pieces, cols2 = cm.correlate_gemm(*args, keep_cols=True, bias=b)
    assert len(calls) == 5
    np.testing.assert_array_equal(cols2, cols)
    for y in (kept, one, unkept, pieces, kept_pieces):
        np.testing.assert_array_equal(y, whole)
    np.testing.assert_array_equal(cols1, cols)
    ref = cm.correlate_gemm(x.astype(np.float64), w.astype(np.float64), *args[2:])
    np.testing.assert_allclose(whole, ref + b.reshape((6,) + (1,) * len(kernel)), atol=1e-4)


def test_one_sample_at_a_time_only_where_it_measured_faster(threads):
    threads(2)
    mib = 2**20
    rows = cm._per_sample_rows
    assert rows(64, (32, 32), 1 * mib) == 32  # 3x3 32->64 at 32x32: whole samples
    assert rows(16, (16, 16, 16), 2 * mib) == 16
    assert rows(16, (16, 16, 16), int(3.4 * mib)) == 4  # past L2: pieces of about 1 MiB
    assert rows(64, (56, 56), 7 * mib) == 8
    assert rows(32, (128, 128), 9 * mib) == 14  # (9 MiB / 128 rows: 14 rows to 1 MiB)
    assert rows(8, (64, 64), mib) == 0  # few outputs: cache-sized blocks instead
    assert rows(64, (10, 10), mib) == 0  # too few positions (LeNet-5's 10x10 maps)
    assert rows(64, (4, 64), 8 * mib) == 0  # a piece would hold too few positions
    assert rows(64, (4096,), 8 * mib) == 512  # 1-D: pieces of positions
    with cm.scratch_budget(mib):  # each thread's buffer within its share of the budget
        assert rows(64, (32, 32), mib) == 16
        assert rows(64, (2, 512), 4 * mib) == 0  # one row is over the share


FULL_CORRELATION_CASES = [
    # x shape, O, kernel, dilation, pads, groups
    ((2, 4, 9, 8), 4, (3, 3), (1, 1), ((1, 1), (1, 1)), 1),
    ((2, 6, 9, 8), 4, (3, 2), (2, 1), ((0, 3), (2, 0)), 2),  # asymmetric, grouped
    ((3, 4, 11), 2, (4,), (1,), ((5, 0),), 1),  # padding beyond the kernel: g is cropped
    ((1, 4, 5, 6, 7), 4, (3, 2, 3), (1, 2, 1), ((2, 0), (1, 1), (0, 4)), 2),
]


def test_full_correlation_is_chosen_only_where_it_measured_faster(monkeypatch):
    by_corr = cm._input_grad_by_correlation
    assert by_corr((64, 64, 3, 3), (16, 16), (1, 1), 1)
    assert by_corr((8, 16, 3, 3, 3), (16, 16, 16), (1, 1, 1), 1)  # fewer outputs
    assert by_corr((8, 8, 3, 3), (16, 16), (1, 1), 2)  # per group: 8 inputs, 4 outputs
    assert not by_corr((64, 32, 3, 3), (32, 32), (1, 1), 1)  # more outputs than inputs
    assert not by_corr((16, 16, 3, 3), (10, 10), (1, 1), 1)  # under 256 positions
    assert not by_corr((64, 64, 3, 3), (32, 32), (2, 2), 1)  # strided
    assert not by_corr((32, 1, 3, 3), (32, 32), (1, 1), 32)  # depthwise: a route of its own
    monkeypatch.setitem(cm._settings, "layout", "batch")  # a forced layout keeps col2im
    assert not by_corr((64, 64, 3, 3), (16, 16), (1, 1), 1)


@pytest.mark.parametrize(
    "route, x_shape, w_shape",
    [
        ("correlate_transpose_full", (2, 64, 16, 16), (64, 64, 3, 3)),  # 3x3 64->64 at 16x16
        ("correlate_transpose_wide", (2, 8, 16, 16, 16), (16, 8, 3, 3, 3)),  # 8->16 at 16^3
        ("correlate_transpose_wide", (2, 32, 32, 32), (64, 32, 3, 3)),  # 32->64 at 32x32
    ],
)
def test_large_input_grads_take_their_route_by_themselves_and_match_torch(
    route, x_shape, w_shape, monkeypatch
):
    """A 3x3 64->64 conv at 16x16 takes the full-correlation input gradient, a 3x3x3 8->16
    conv at 16^3 and a 3x3 32->64 conv at 32x32 the wide grid, by themselves; their
    gradients match PyTorch's (float32)."""
    torch = pytest.importorskip("torch")
    calls = []
    real = getattr(cm, route)
    monkeypatch.setattr(cm, route, lambda *a: calls.append(1) or real(*a))
    nd = len(x_shape) - 2
    rng = np.random.default_rng(19)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    u = rng.standard_normal((x_shape[0], w_shape[0]) + x_shape[2:]).astype(np.float32)
    X, W = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    getattr(F, f"conv{nd}d")(X, W, padding=1).backward(tg.Tensor(u))
    assert calls
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    getattr(torch.nn.functional, f"conv{nd}d")(xt, wt, padding=1).backward(torch.tensor(u))
    np.testing.assert_allclose(X.grad.data, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(W.grad.data, wt.grad.numpy(), rtol=1e-4, atol=1e-3)


WIDE_GRID_CASES = [
    # x shape, O, kernel, dilation, pads, groups
    ((3, 2, 6, 7), 4, (3, 3), (1, 1), ((1, 1), (1, 1)), 1),
    ((2, 4, 7, 6), 6, (3, 2), (1, 2), ((2, 0), (0, 3)), 2),  # asymmetric, groups, dilated
    ((3, 3, 5, 4), 5, (2, 4), (2, 1), ((0, 0), (4, 1)), 1),  # padding wider than the kernel
    ((3, 2, 6, 5, 7), 4, (3, 3, 3), (1, 1, 1), ((1, 1), (1, 1), (1, 1)), 1),
    ((2, 4, 7, 6, 5), 6, (3, 2, 3), (1, 2, 1), ((2, 0), (1, 1), (0, 3)), 2),  # asymmetric
    ((2, 2, 5, 4, 6), 2, (2, 2, 2), (2, 1, 1), ((0, 0), (0, 0), (4, 1)), 1),  # pad > kernel
    ((2, 3, 4, 5, 3, 4), 3, (2, 3, 2, 2), (1, 1, 1, 2), ((1, 0), (1, 1), (0, 1), (1, 1)), 1),
]


ROUTE_CASES = [("correlate_transpose_full", c) for c in FULL_CORRELATION_CASES] + [
    ("correlate_transpose_wide", c) for c in WIDE_GRID_CASES
]


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize(
    "route, case", ROUTE_CASES, ids=lambda c: c if isinstance(c, str) else f"{len(c[2])}d-g{c[5]}"
)
def test_stride_1_input_grad_routes_equal_col2im(route, case, n_threads, threads, monkeypatch):
    """A stride-1 conv's input gradient as the correlation of the padded g with the flipped,
    transposed kernel (1-D, 2-D and 3-D), and one sample at a time on the wide grid, every
    tap a shift of the flattened padded image (2-D, 3-D and 4-D), equal GEMM + col2im
    (cropped): with groups, dilations, asymmetric padding and padding wider than the
    kernel."""
    shape, o, k, d, pads, groups = case
    threads(n_threads)
    monkeypatch.setattr(par, "MIN_ELEMENTS", 1)
    rng = np.random.default_rng(18)
    w = rng.standard_normal((o, shape[1] // groups) + k)
    padded = tuple(i + a + b for i, (a, b) in zip(shape[2:], pads, strict=True))
    out = tuple(p - cm.dilated_size(ki, di) + 1 for p, ki, di in zip(padded, k, d, strict=True))
    g = rng.standard_normal((shape[0], o) + out)
    ones = (1,) * len(k)
    with cm.conv_algorithm("gemm"):
        ref = cm.pad_spatial(cm.correlate_transpose(g, w, padded, ones, d, groups), cm.negate(pads))
        if route == "correlate_transpose_wide":  # small images: many dropped positions
            monkeypatch.setattr(cm, "WIDE_MAX_EXCESS", 1e9)
            monkeypatch.setattr(cm, "WIDE_MIN_MACS", 0)
            monkeypatch.setattr(cm, "PER_SAMPLE_MIN_P", 1)
            monkeypatch.setattr(cm, "_taps_input_grad", lambda *a: False)  # (the volumes'
            monkeypatch.setattr(cm, "_thin_input_grad", lambda *a: False)  # own routes)
        else:  # small inputs: few positions
            monkeypatch.setattr(cm, "PER_SAMPLE_MIN_P", 1)
        calls = []
        real = getattr(cm, route)
        monkeypatch.setattr(cm, route, lambda *a: calls.append(1) or real(*a))
        gx = cm.correlate_transpose_cropped(g, w, shape[2:], pads, ones, d, groups)
        assert calls and gx.shape == shape and gx.flags.c_contiguous
        np.testing.assert_allclose(gx, ref, rtol=1e-12, atol=1e-12)
        if route == "correlate_transpose_wide":  # the taps in blocks: one tap a block, and
            for block_bytes in (1, 3000):  # blocks of a few taps (the last one shorter)
                monkeypatch.setattr(cm, "WIDE_BLOCK_BYTES", block_bytes)
                gx = cm.correlate_transpose_cropped(g, w, shape[2:], pads, ones, d, groups)
                np.testing.assert_allclose(gx, ref, rtol=1e-12, atol=1e-12)


def test_wide_grid_is_chosen_only_where_it_measured_faster(monkeypatch):
    wide = cm._input_grad_on_wide_grid
    same = ((1, 1),) * 3
    assert wide((16, 8, 3, 3, 3), (16, 16, 16), same, (1, 1, 1), (1, 1, 1), 1, 4)
    assert wide((16, 16, 3, 3, 3), (16, 16, 16), same, (1, 1, 1), (1, 1, 1), 1, 4)
    assert wide((8, 4, 3, 3, 3), (32, 32, 32), same, (1, 1, 1), (1, 1, 1), 1, 4)
    assert not wide((8, 16, 3, 3, 3), (16, 16, 16), same, (1, 1, 1), (1, 1, 1), 1, 4)  # C > O
    assert not wide((16, 16, 3, 3, 3), (8, 8, 8), same, (1, 1, 1), (1, 1, 1), 1, 4)  # small
    assert not wide((16, 8, 3, 3, 3), (16, 16, 16), same, (2, 2, 2), (1, 1, 1), 1, 4)  # strided
    assert not wide((16, 8, 3, 3, 3), (16, 16, 16), same, (1, 1, 1), (2, 2, 2), 1, 4)  # dilated
    assert not wide((8, 1, 3, 3, 3), (16, 16, 16), same, (1, 1, 1), (1, 1, 1), 8, 4)  # depthwise
    same2 = ((1, 1),) * 2
    assert wide((64, 32, 3, 3), (32, 32), same2, (1, 1), (1, 1), 1, 4)  # 2-D: 32->64 at 32x32
    assert wide((64, 32, 3, 3), (32, 32), ((2, 2),) * 2, (1, 1), (2, 2), 1, 4)  # dilated
    assert wide((105, 40, 2, 2), (23, 23), ((0, 0),) * 2, (1, 1), (1, 1), 1, 4)
    assert not wide((64, 64, 3, 3), (32, 32), same2, (1, 1), (1, 1), 1, 4)  # 2-D, C == O
    assert not wide((128, 64, 3, 3), (8, 8), same2, (1, 1), (1, 1), 1, 4)  # 80 positions
    assert not wide((16, 3, 3, 3), (32, 32), same2, (1, 1), (1, 1), 1, 4)  # small products
    assert not wide((16, 6, 5, 5), (14, 14), ((0, 0),) * 2, (1, 1), (1, 1), 1, 4)  # excess
    assert not wide((64, 32, 3), (1024,), ((1, 1),), (1,), (1,), 1, 4)  # 1-D
    with cm.scratch_budget(2**20):  # each thread's buffers within its share of the budget
        assert not wide((16, 8, 3, 3, 3), (16, 16, 16), same, (1, 1, 1), (1, 1, 1), 1, 4)
    monkeypatch.setitem(cm._settings, "layout", "batch")  # a forced layout keeps col2im
    assert not wide((16, 8, 3, 3, 3), (16, 16, 16), same, (1, 1, 1), (1, 1, 1), 1, 4)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("groups", [1, 2])
def test_weight_grad_per_sample_products_equal_one_product(groups, n_threads, threads, monkeypatch):
    """The weight gradient as one product per sample (no transposed copy of g) equals the
    one-GEMM form, with the forward's columns and with recomputed ones: per sample (each
    thread summing its samples) or batch-wide in chunks."""
    threads(n_threads)
    monkeypatch.setattr(par, "MIN_ELEMENTS", 1)  # split even these small jobs
    monkeypatch.setattr(cm, "FEW_OUTPUTS", 1)  # 3 or 6 filters a group: not "few"
    calls = []
    real = cm._weight_grad_per_sample
    monkeypatch.setattr(cm, "_weight_grad_per_sample", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(16)
    x = rng.standard_normal((5, 4, 11, 10))
    w = rng.standard_normal((6, 4 // groups, 3, 2))
    y, cols = cm.correlate_gemm(x, w, (2, 1), (1, 2), groups, keep_cols=True)
    g = rng.standard_normal(y.shape)
    results = []
    for min_p, max_rows in ((0, 10**6), (10**9, 0)):  # per sample, then one product
        monkeypatch.setattr(cm, "PER_SAMPLE_MIN_P", min_p)
        monkeypatch.setattr(cm, "PER_SAMPLE_MAX_ROWS", max_rows)
        kept = cm.correlate_weight_grad_gemm(x, g, (3, 2), (2, 1), (1, 2), groups, cols)
        with cm.scratch_budget(cm.im2col_scratch_bytes(2, 4, (3, 2), y.shape[2:], 8)):
            chunked = cm.correlate_weight_grad_gemm(x, g, (3, 2), (2, 1), (1, 2), groups)
        results += [kept, chunked]
    assert len(calls) == 1  # the recomputed columns of the first round: one sample at a time
    monkeypatch.setattr(cm, "PER_SAMPLE_MIN_P", 0)  # per sample, in pieces of 3 output rows
    per_sample = cm.im2col_scratch_bytes(1, 4, (3, 2), y.shape[2:], 8)
    monkeypatch.setattr(cm, "PER_SAMPLE_L2_BYTES", 0)
    monkeypatch.setattr(cm, "PER_SAMPLE_PIECE_BYTES", 3 * per_sample // y.shape[2] + 1)
    assert cm._per_sample_rows(6 // groups, y.shape[2:], per_sample) == 3 and y.shape[2] % 3
    results.append(cm.correlate_weight_grad_gemm(x, g, (3, 2), (2, 1), (1, 2), groups))
    assert len(calls) == 2
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize(
    "x_shape, o, kernel, strides, dilations, pads, groups",
    [((5, 4, 9, 8), 6, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), 1),
     ((4, 4, 11, 10), 6, (3, 2), (2, 1), (1, 2), ((2, 0), (0, 3)), 2),  # asymmetric, strided
     ((3, 2, 6, 5, 7), 4, (3, 2, 3), (1, 2, 1), (2, 1, 1), ((1, 1), (0, 2), (3, 0)), 1)],
)  # fmt: skip
def test_samples_padded_one_at_a_time_equal_the_padded_batch(
    x_shape, o, kernel, strides, dilations, pads, groups, n_threads, threads, monkeypatch
):
    """The per-sample routes pad each sample into a buffer of their thread's own instead of
    reading a padded copy of the batch: the forward (with and without kept columns, whole
    samples and pieces of rows), the weight gradient and the stride-1 input gradient as a
    full correlation give the same bits, and no padded copy of the batch is made."""
    threads(n_threads)
    monkeypatch.setattr(par, "MIN_ELEMENTS", 1)  # several samples a thread, on 2 threads
    monkeypatch.setattr(cm, "FEW_OUTPUTS", 1)
    monkeypatch.setattr(cm, "PER_SAMPLE_MIN_P", 1)
    rng = np.random.default_rng(21)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((o, x_shape[1] // groups) + kernel)
    xp = cm.pad_spatial(x, pads)
    g = rng.standard_normal(cm.correlate_gemm(xp, w, strides, dilations, groups).shape)
    padded_batches = []
    real_pad = cm.pad_spatial
    monkeypatch.setattr(
        cm, "pad_spatial", lambda a, p, *v: padded_batches.append(a.shape) or real_pad(a, p, *v)
    )
    with cm.conv_algorithm("gemm"), cm.conv_layout("batch"):
        for piece in (cm.PER_SAMPLE_L2_BYTES, 0):  # whole samples, then pieces of rows
            monkeypatch.setattr(cm, "PER_SAMPLE_L2_BYTES", piece)
            ref = cm.correlate_gemm(xp, w, strides, dilations, groups, keep_cols=True)
            got = cm.correlate_padded(x, w, pads, strides, dilations, groups, keep_cols=True)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
            ref = cm.correlate_gemm(xp, w, strides, dilations, groups)
            np.testing.assert_array_equal(
                cm.correlate_padded(x, w, pads, strides, dilations, groups), ref
            )
            ref = cm.correlate_weight_grad_gemm(xp, g, kernel, strides, dilations, groups)
            got = cm.correlate_weight_grad_padded(x, g, kernel, pads, strides, dilations, groups)
            np.testing.assert_array_equal(got, ref)
        if strides == (1,) * len(kernel):  # (g padded by d*(K-1) - p: here 1 and 1)
            ref = real_pad(
                cm.correlate_transpose_gemm(g, w, xp.shape[2:], strides, dilations, groups),
                cm.negate(pads),
            )
            got = cm.correlate_transpose_full(g, w, pads, dilations, groups)
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert not padded_batches  # no copy of the batch (of x, or of g) padded


DEPTHWISE_PADDED = [
    # x shape, kernel, stride, dilation, pads (groups = channels)
    ((2, 3, 9, 8), (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1))),
    ((2, 3, 9, 8), (3, 2), (2, 3), (2, 1), ((0, 3), (2, 0))),
    ((3, 2, 11), (4,), (2,), (1,), ((3, 1),)),
    ((1, 2, 5, 6, 7), (3, 2, 3), (1, 2, 1), (1, 1, 2), ((2, 0), (1, 1), (0, 4))),
    ((2, 2, 4, 4), (3, 3), (1, 1), (2, 2), ((3, 3), (4, 2))),  # taps reading only padding
]


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("case", DEPTHWISE_PADDED, ids=lambda c: f"{len(c[1])}d-p{c[4]}")
def test_depthwise_band_route_reads_the_unpadded_input(case, m):
    """The depthwise routes leave the padding out (of the band matrices, of each tap's row
    range, of each tap's box for the weight gradient) instead of copying the input padded:
    all three maps equal the im2col route on the padded input (cropped)."""
    shape, k, s, d, pads = case
    c = shape[1]
    rng = np.random.default_rng(17 + m + len(k))
    x = rng.standard_normal(shape)
    w = rng.standard_normal((c * m, 1) + k)
    assert cm._depthwise_band_route(x.shape, w.shape, pads, s, d, c, x.dtype)
    xp = cm.pad_spatial(x, pads)
    y = cm.correlate_padded(x, w, pads, s, d, c)
    np.testing.assert_allclose(y, cm.correlate_gemm(xp, w, s, d, c), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    gx = cm.correlate_transpose_cropped(g, w, x.shape[2:], pads, s, d, c)
    ref = cm.pad_spatial(cm.correlate_transpose_gemm(g, w, xp.shape[2:], s, d, c), cm.negate(pads))
    assert gx.shape == x.shape
    np.testing.assert_allclose(gx, ref, rtol=1e-12, atol=1e-12)
    gw = cm.correlate_weight_grad_padded(x, g, k, pads, s, d, c)
    np.testing.assert_allclose(
        gw, cm.correlate_weight_grad_gemm(xp, g, k, s, d, c), rtol=1e-12, atol=1e-12
    )


# ------------------------------------------------------------------ volumes, stacked wide grid

THIN_CASES = [
    # x shape, O, kernel, dilation, pads
    ((3, 2, 5, 6, 7), 4, (3, 3, 3), (1, 1, 1), ((1, 1), (1, 1), (1, 1))),
    ((2, 3, 6, 5, 8), 5, (2, 3, 2), (2, 1, 1), ((0, 2), (1, 0), (2, 1))),  # asymmetric
    ((2, 1, 4, 4, 9), 3, (3, 1, 4), (1, 1, 2), ((0, 0), (0, 0), (0, 0))),  # no padding
    ((2, 2, 3, 4, 3, 5), 2, (2, 2, 2, 3), (1, 1, 1, 1), ((1, 0), (0, 1), (1, 1), (1, 1))),
    ((3, 2, 7, 9), 3, (3, 3), (1, 1), ((1, 1), (2, 0))),  # images: the maps work too
]


def _thin_reference(x, w, pads, dilations, bias, g):
    """The window route's forward and (given g) weight gradient."""
    nd = len(w.shape) - 2
    xp = cm.pad_spatial(x, pads)
    with cm.conv_layout("batch"):
        y = cm.correlate_gemm(xp, w, (1,) * nd, dilations, 1, bias=bias)
        if g is None:
            return y, None
        return y, cm.correlate_weight_grad_gemm(xp, g, w.shape[2:], (1,) * nd, dilations, 1)


@pytest.mark.parametrize("chunk", [64, 2**20], ids=["rows", "samples"])
@pytest.mark.parametrize("threads_n", [1, 2])
@pytest.mark.parametrize("case", THIN_CASES, ids=lambda c: f"{len(c[0]) - 2}d-{c[2]}")
def test_thin_grid_maps_equal_the_window_route(case, threads_n, chunk, threads, monkeypatch):
    """The stacked wide grid's forward (with and without bias) and weight gradient equal
    the window im2col route, float64, to rounding: chunks of whole samples (with a
    shorter last one) and of first-dim rows of one sample, on one thread and two."""
    threads(threads_n)
    monkeypatch.setattr(cm, "THIN_CHUNK_BYTES", chunk)
    x_shape, o, kernel, d, pads = case
    rng = np.random.default_rng(len(x_shape) + o)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((o, x_shape[1]) + kernel)
    b = rng.standard_normal(o)
    y_ref, _ = _thin_reference(x, w, pads, d, b, None)
    g = rng.standard_normal(y_ref.shape)
    _, gw_ref = _thin_reference(x, w, pads, d, None, g)
    grid = cm._ThinGrid(x.shape, kernel, pads, d, w[0].size + 1, o, 8)
    if chunk == 64:
        assert grid.samples == 1 and grid.first == 1  # one row of pieces at a time
    else:
        assert grid.samples == x_shape[0]
    np.testing.assert_allclose(cm.correlate_thin(x, w, pads, d, b), y_ref, rtol=1e-12, atol=1e-12)
    y_nb = cm.correlate_thin(x, w, pads, d)
    np.testing.assert_allclose(y_nb, y_ref - b.reshape((o,) + (1,) * len(kernel)), atol=1e-12)
    gw = cm.correlate_weight_grad_thin(x, g, kernel, pads, d)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-12, atol=1e-12)


def test_thin_grid_pieces_fit_the_small_matrix_size():
    """A piece's product stays within SMALL_GEMM_MACS, in whole lines of the dim before
    the last (a divisor of its output size), with the last dim's padded width."""
    grid = cm._ThinGrid((8, 8, 16, 16, 16), (3, 3, 3), ((1, 1),) * 3, (1, 1, 1), 217, 16, 4)
    assert (grid.wp, grid.lines, grid.width) == (18, 16, 288)  # 16 * 217 * 288 <= 1e6
    assert 16 * 217 * grid.width <= cm.SMALL_GEMM_MACS < 16 * 217 * (grid.width + 18)
    assert grid.axes == (16, 1)  # 16 rows of the first dim, one piece each
    grid = cm._ThinGrid((2, 16, 32, 32, 32), (3, 3, 3), ((1, 1),) * 3, (1, 1, 1), 433, 16, 4)
    assert grid.lines == 4 and grid.axes == (32, 8)  # 16 * 433 * 34 * 4 <= 1e6, 4 | 32


@pytest.mark.parametrize("case", THIN_CASES, ids=lambda c: f"{len(c[0]) - 2}d-{c[2]}")
def test_thin_grid_windows_stay_inside_their_buffer(case):
    """The last piece's dropped columns read past the last padded sample: the buffer has
    just that many zeros more (``slack``), so no window reads outside it."""
    x_shape, o, kernel, d, pads = case
    grid = cm._ThinGrid(x_shape, kernel, pads, d, 10, o, 8)
    buf, windows = grid.buffer(np.float64)
    last = sum((n - 1) * st for n, st in zip(windows.shape, windows.strides, strict=True))
    extent = last // 8 + 1  # entries from the buffer's start to the last one read
    assert extent <= buf.size
    assert grid.slack == 0 or extent == buf.size  # (the slack all read, no more)


def _thin_taken(x_shape, w_shape, which="forward", keep=False, strides=None, pads=None):
    nd = len(w_shape) - 2
    pads = pads or ((1, 1),) * nd
    strides = strides or (1,) * nd
    return cm._thin_route(x_shape, w_shape, pads, strides, (1,) * nd, 1, which, 4, keep)


def test_thin_route_is_taken_where_it_measured_faster(threads, monkeypatch):
    x, w = (8, 8, 16, 16, 16), (16, 8, 3, 3, 3)  # the benchmark's conv3d: 27 MiB of columns
    small_x, small_w = (8, 4, 16, 16, 16), (8, 4, 3, 3, 3)  # 14 MiB: kept for dw
    for n in (1, 2):
        threads(n)
        assert _thin_taken(x, w) and _thin_taken(x, w, keep=True)
        assert _thin_taken(small_x, small_w)
        assert not _thin_taken((8, 8, 16, 16, 16), (17, 8, 3, 3, 3))  # 17 filters
        assert not _thin_taken((8, 8, 64, 64), (16, 8, 3, 3))  # images
        assert not _thin_taken(x, w, strides=(1, 2, 1))
        assert not _thin_taken(x, w, pads=((1, 1), (1, 1), (-1, 0)))  # a cropped input
        assert not cm._thin_route(x, (16, 4, 3, 3, 3), ((1, 1),) * 3, (1,) * 3, (1,) * 3, 2,
                                  "forward", 4)  # fmt: skip
        assert _thin_taken(small_x, small_w, "weight_grad")  # 8 filters, 108 rows
    threads(1)
    assert _thin_taken(small_x, small_w, keep=True)  # one thread: always
    assert _thin_taken(x, w, "weight_grad")
    assert _thin_taken((8, 1, 16, 16, 16), (8, 1, 3, 3, 3), "weight_grad")
    threads(2)
    assert _thin_taken(small_x, small_w, keep=True)  # 4 inputs: dw on tap views
    kept_x, kept_w = (4, 16, 12, 12, 12), (8, 16, 3, 3, 3)  # 12 MiB of columns, 16 inputs
    assert not _thin_taken(kept_x, kept_w, keep=True)  # the kept columns serve dw
    assert _thin_taken(kept_x, kept_w, keep=False)
    assert not _thin_taken(x, w, "weight_grad")  # 16 filters: the per-sample route
    assert not _thin_taken((8, 1, 16, 16, 16), (8, 1, 3, 3, 3), "weight_grad")  # 27 rows
    assert not _thin_taken((8, 8, 16, 16, 3), (8, 8, 3, 3, 3))  # pieces under 64 columns
    assert not _thin_taken((2, 8, 8, 8, 12), (8, 8, 3, 3, 8))  # padded 14 of 5: too wide
    with cm.scratch_budget(2**16):
        assert not _thin_taken(x, w)
    with cm.conv_layout("batch"):
        assert not _thin_taken(x, w)
    with cm.conv_algorithm("fft"):
        assert not _thin_taken(x, w)
    # the input gradient: as the full correlation, where inputs >= outputs
    assert cm._thin_input_grad((8, 8, 16, 16, 16), (8, 8, 3, 3, 3), ((1, 1),) * 3, (1,) * 3,
                               (1,) * 3, 1, 4)  # fmt: skip
    assert not cm._thin_input_grad((8, 8, 8, 8, 8), (8, 8, 3, 3, 3), ((1, 1),) * 3,
                                   (1, 2, 1), (1,) * 3, 1, 4)  # fmt: skip


def test_thin_weight_grad_redoes_a_result_an_inf_made_nan(threads):
    """An inf in x: the windows' weight gradient is +inf where g > 0; the wide grids'
    dropped columns (stacked or tap views) would add 0 * inf = NaN, so that result is
    redone by the windows."""
    threads(1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 6, 6, 64))
    x[0, 1, 2, 3, 0] = np.inf  # a line's first entry: the line before's dropped columns
    w_shape, pads, ones = (8, 4, 3, 3, 3), ((1, 1),) * 3, (1, 1, 1)
    g = rng.random((2, 8, 6, 6, 64)) + 0.5  # all positive
    assert cm._thin_route(x.shape, w_shape, pads, ones, ones, 1, "weight_grad", 8)
    raw = cm.correlate_weight_grad_thin(x, g, (3, 3, 3), pads, ones)
    assert np.isnan(raw).any()
    assert np.isnan(cm.correlate_weight_grad_taps(x, g, (3, 3, 3), pads, ones)).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no RuntimeWarning from the route's own NaN)
        gw = cm.correlate_weight_grad_padded(x, g, (3, 3, 3), pads, ones, ones, 1)
    with cm.conv_layout("batch"):
        ref = cm.correlate_weight_grad_padded(x, g, (3, 3, 3), pads, ones, ones, 1)
    assert np.isposinf(ref).any() and not np.isnan(ref).any()
    np.testing.assert_array_equal(gw, ref)


THIN_GRAD_CONFIGS = [
    # N, C, O, size, kernel, padding, dilation
    (2, 2, 3, (3, 4, 5), (2, 3, 2), ((1, 0), (1, 1), (0, 2)), (1, 1, 2)),
    (1, 3, 2, (4, 3, 4), (3, 2, 3), 1, (1, 1, 1)),  # inputs >= outputs: dx on the grid too
]


@pytest.mark.parametrize("cfg", THIN_GRAD_CONFIGS, ids=lambda c: f"{c[1]}->{c[2]}-{c[4]}")
def test_thin_route_gradcheck_and_gradgradcheck(cfg, monkeypatch):
    """The volume route, forced (these sizes are below what it takes), passes the float64
    finite-difference checks through F.conv3d, its maps called."""

    def forced(x_shape, w_shape, pads, strides, dilations, groups, *_, **__):
        return groups == 1 and set(strides) == {1} and min(map(min, pads)) >= 0

    monkeypatch.setattr(cm, "_thin_route", forced)
    calls = []
    for name in ("correlate_thin", "correlate_weight_grad_thin"):
        real = getattr(cm, name)
        monkeypatch.setattr(cm, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    n, c, o, size, k, p, d = cfg
    rng = np.random.default_rng(47 + c)
    x = _t(rng.standard_normal((n, c) + size))
    w = _t(rng.standard_normal((o, c) + k))
    b = _t(rng.standard_normal(o))

    def fn(x, w, b):
        return F.conv3d(x, w, b, padding=p, dilation=d)

    assert tg.gradcheck(fn, (x, w, b))
    assert tg.gradgradcheck(fn, (x, w, b))
    assert {"correlate_thin", "correlate_weight_grad_thin"} <= set(calls)


def test_thin_route_bounds_its_scratch_memory(threads):
    """The volume route's buffers (each thread's padded samples, columns and products)
    stay within the scratch budget above inputs and outputs."""
    threads(1)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((16, 8, 16, 16, 16)).astype(np.float32)  # 2 MiB a sample padded
    w = rng.standard_normal((8, 8, 3, 3, 3)).astype(np.float32)
    pads, ones = ((1, 1),) * 3, (1, 1, 1)
    budget = 2**22
    with cm.scratch_budget(budget):
        assert cm._thin_route(x.shape, w.shape, pads, ones, ones, 1, "forward", 4)
        assert cm._thin_route(x.shape, w.shape, pads, ones, ones, 1, "weight_grad", 4)
        tracemalloc.start()
        y = cm.correlate_padded(x, w, pads, ones, ones, 1)
        gw = cm.correlate_weight_grad_padded(x, y, (3, 3, 3), pads, ones, ones, 1)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < y.nbytes + gw.nbytes + budget, (peak, y.nbytes)
    with cm.conv_layout("batch"):
        ref = cm.correlate_padded(x, w, pads, ones, ones, 1)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4)


TAPS_CASES = [case for case in THIN_CASES if len(case[0]) > 4]  # the volumes


@pytest.mark.parametrize("slab", [48, 2**18], ids=["slabs", "whole"])
@pytest.mark.parametrize("threads_n", [1, 2])
@pytest.mark.parametrize("case", TAPS_CASES, ids=lambda c: f"{len(c[0]) - 2}d-{c[2]}")
def test_weight_grad_on_tap_views_equals_the_window_route(
    case, threads_n, slab, threads, monkeypatch
):
    """The weight gradient from tap views of the wide grid equals the window route's,
    float64: whole samples or slabs of a few positions, one thread or two."""
    threads(threads_n)
    monkeypatch.setattr(cm, "TAPS_SLAB_BYTES", slab)
    x_shape, o, kernel, d, pads = case
    rng = np.random.default_rng(len(x_shape) + 2 * o)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((o, x_shape[1]) + kernel)
    y, _ = _thin_reference(x, w, pads, d, None, None)
    g = rng.standard_normal(y.shape)
    _, ref = _thin_reference(x, w, pads, d, None, g)
    gw = cm.correlate_weight_grad_taps(x, g, kernel, pads, d)
    np.testing.assert_allclose(gw, ref, rtol=1e-12, atol=1e-12)


def test_tap_views_are_taken_for_volumes_with_few_inputs(threads):
    ones, pads = (1, 1, 1), ((1, 1),) * 3
    for n in (1, 2):
        threads(n)
        assert cm._taps_route((8, 8, 16, 16, 16), (16, 8, 3, 3, 3), pads, ones, ones, 1, 4)
        assert cm._taps_route((8, 1, 32, 32, 32), (8, 1, 3, 3, 3), pads, ones, ones, 1, 4)
        assert not cm._taps_route((8, 9, 16, 16, 16), (16, 9, 3, 3, 3), pads, ones, ones, 1, 4)
        assert not cm._taps_route((8, 8, 16, 16, 16), (17, 8, 3, 3, 3), pads, ones, ones, 1, 4)
        assert not cm._taps_route((8, 8, 64, 64), (16, 8, 3, 3), pads[:2], ones[:2], ones[:2],
                                  1, 4)  # fmt: skip
        assert not cm._taps_route((8, 8, 16, 16, 16), (16, 8, 3, 3, 3), pads, (1, 2, 1), ones,
                                  1, 4)  # fmt: skip
        assert not cm._taps_route((8, 8, 16, 16, 16), (16, 4, 3, 3, 3), pads, ones, ones, 2, 4)
        # 8^3 padded to 10^3: 8x10x10 grid positions for 8^3 windows, 1.56x
        assert not cm._taps_route((8, 8, 8, 8, 8), (16, 8, 3, 3, 3), pads, ones, ones, 1, 4)
    with cm.conv_layout("batch"):
        assert not cm._taps_route((8, 8, 16, 16, 16), (16, 8, 3, 3, 3), pads, ones, ones, 1, 4)
    with cm.scratch_budget(2**16):
        assert not cm._taps_route((8, 8, 16, 16, 16), (16, 8, 3, 3, 3), pads, ones, ones, 1, 4)


TAPS_DX_CASES = [
    # x shape, O, kernel, dilation, pads (fewer inputs than outputs)
    ((3, 2, 5, 6, 7), 4, (3, 3, 3), (1, 1, 1), ((1, 1), (1, 1), (1, 1))),
    ((2, 3, 6, 5, 8), 5, (2, 3, 2), (2, 1, 1), ((0, 2), (1, 0), (1, 1))),  # asymmetric
    ((2, 1, 4, 4, 9), 3, (3, 1, 4), (1, 1, 2), ((0, 0), (0, 0), (0, 0))),  # no padding
    ((2, 2, 3, 4, 3, 5), 3, (2, 2, 2, 3), (1, 1, 1, 1), ((1, 0), (0, 1), (1, 1), (1, 1))),
]


@pytest.mark.parametrize("slab", [200, 2**22], ids=["slabs", "whole"])
@pytest.mark.parametrize("threads_n", [1, 2])
@pytest.mark.parametrize("case", TAPS_DX_CASES, ids=lambda c: f"{len(c[0]) - 2}d-{c[2]}")
def test_input_grad_on_tap_views_equals_col2im(case, threads_n, slab, threads, monkeypatch):
    """The input gradient from tap views of the padded g equals GEMM + col2im, float64:
    slabs of a few positions or whole samples, one thread or two."""
    threads(threads_n)
    monkeypatch.setattr(cm, "TAPS_DX_SLAB_BYTES", slab)
    x_shape, o, kernel, d, pads = case
    rng = np.random.default_rng(len(x_shape) + 3 * o)
    w = rng.standard_normal((o, x_shape[1]) + kernel)
    padded = cm.padded_sizes(x_shape[2:], pads)
    out = tuple(p - cm.dilated_size(k, di) + 1 for p, k, di in zip(padded, kernel, d, strict=True))
    g = rng.standard_normal((x_shape[0], o) + out)
    ones = (1,) * len(kernel)
    with cm.conv_algorithm("gemm"), cm.conv_layout("batch"):
        ref = cm.pad_spatial(cm.correlate_transpose(g, w, padded, ones, d, 1), cm.negate(pads))
    gx = cm.correlate_transpose_taps(g, w, x_shape[2:], pads, d)
    assert gx.shape == x_shape and gx.flags.c_contiguous
    np.testing.assert_allclose(gx, ref, rtol=1e-12, atol=1e-12)


def test_input_grad_tap_views_are_taken_for_volumes_with_few_inputs(threads):
    ones, pads = (1, 1, 1), ((1, 1),) * 3

    def taken(g_shape, w_shape, pads=pads, strides=ones):
        return cm._taps_input_grad(g_shape, w_shape, pads, strides, ones, 1, 4)

    threads(2)
    assert taken((8, 16, 16, 16, 16), (16, 8, 3, 3, 3))  # the benchmark's conv3d
    assert not taken((8, 8, 16, 16, 16), (8, 8, 3, 3, 3))  # inputs >= outputs
    assert not taken((8, 16, 16, 16, 16), (16, 9, 3, 3, 3))  # 9 inputs
    assert not taken((8, 17, 16, 16, 16), (17, 8, 3, 3, 3))  # 17 outputs
    assert not taken((8, 16, 16, 16), (16, 8, 3, 3), pads[:2], ones[:2])  # images
    assert not taken((8, 16, 8, 16, 16), (16, 8, 3, 3, 3), strides=(2, 1, 1))
    assert not taken((8, 16, 18, 18, 18), (16, 8, 3, 3, 3), ((3, 0),) * 3)  # g cropped
    threads(1)  # one thread: only on larger grids
    assert not taken((8, 16, 16, 16, 16), (16, 8, 3, 3, 3))  # 16x18x18 = 5184 positions
    assert taken((4, 16, 24, 24, 24), (16, 8, 3, 3, 3))  # 24x26x26 = 16224
    with cm.conv_layout("batch"):
        assert not taken((4, 16, 24, 24, 24), (16, 8, 3, 3, 3))


def test_each_gemm_map_holds_one_chunk_of_buffers_at_a_time(threads):
    """Each map's chunk buffers (the transposed g and the columns for the input gradient,
    the columns for the weight gradient) are freed before the next chunk's are made, and
    g's transposed copy counts in the chunk's size: the peak stays within the budget
    above the output (two chunks' were live, and the input gradient of a 3x3 s2 layer
    reached 90 MiB with the default 64)."""
    threads(1)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((24, 8, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    g = rng.standard_normal((24, 16, 9, 9)).astype(np.float32)
    s, ones = (2, 2), (1, 1)
    budget = 2**18
    numpy_buffers = 2 * np.getbufsize() * x.itemsize
    with cm.scratch_budget(budget):
        for name, run in {
            "input_grad": lambda: cm.correlate_transpose_gemm(g, w, (20, 20), s, ones, 1),
            "weight_grad": lambda: cm.correlate_weight_grad_gemm(x, g, (3, 3), s, ones, 1),
        }.items():
            tracemalloc.start()
            out = run()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            # (a quarter of the budget for the small buffers: two chunks would be a whole)
            assert peak < out.nbytes + 1.25 * budget + numpy_buffers, (name, peak, out.nbytes)
    ref = cm.correlate_transpose_gemm(g, w, (20, 20), s, ones, 1)  # one chunk
    with cm.scratch_budget(budget):
        np.testing.assert_allclose(
            cm.correlate_transpose_gemm(g, w, (20, 20), s, ones, 1), ref, rtol=1e-5, atol=1e-5
        )


def test_depthwise_plane_route_keeps_an_inf_to_the_windows_that_read_it():
    """The whole-plane matrices hold zeros wherever an output does not read an input; an
    inf or NaN in x or g (0 * inf = NaN) sends the maps to the other routes, and the
    results match PyTorch's, NaNs and infs in the same places."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 64, 7, 6)).astype(np.float32)
    w = rng.standard_normal((64, 1, 3, 3)).astype(np.float32)
    assert cm._depthwise_plane_route(x.shape, w.shape, ((1, 1),) * 2, (1, 1), (1, 1), 64, 4)
    x[3, 5, 2, 2] = np.inf
    g = rng.standard_normal((16, 64, 7, 6)).astype(np.float32)
    g[1, 7, 0, 5] = np.nan
    xt, wt = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    y = F.conv2d(xt, wt, padding=1, groups=64)
    y.backward(tg.Tensor(g))
    xr, wr = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yr = torch.nn.functional.conv2d(xr, wr, padding=1, groups=64)
    yr.backward(torch.tensor(g))
    # (the weight gradient where a NaN in g meets the padding: 0 * NaN, whose NaN PyTorch
    # keeps on some routes and skips on others; see correlate_weight_grad_padded)
    for ours, theirs in ((y, yr), (xt.grad, xr.grad), (wt.grad[:7], wr.grad[:7])):
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-4, atol=1e-4)
    assert np.isinf(y.numpy()[3, 5]).sum() == 9  # (the nine outputs that read the inf)
    assert np.isnan(xt.grad.numpy()[1, 7]).sum() == 4  # (the 2x2 inputs output (0, 5) reads)


def test_a_zero_tap_times_an_inf_is_nan_on_the_channel_major_route_as_pytorch():
    """BLAS axpy skips a multiple of 0, so the channel-major depthwise route gave a finite
    sum where a zero tap meets an inf (0 * inf = NaN, as the definition and PyTorch give);
    those maps now take another route."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (4, 8, 56, 56)).astype(np.float32)
    w = rng.integers(1, 4, (8, 1, 3, 3)).astype(np.float32)
    w[0, 0, 1, 1] = 0.0
    assert cm._depthwise_channel_route(x.shape, w.shape, ((1, 1),) * 2, (1, 1), (1, 1), 8,
                                       "forward", 4)  # fmt: skip
    x[0, 0, 10, 10] = np.inf
    g = rng.integers(-3, 4, x.shape).astype(np.float32)
    g[1, 0, 20, 20] = -np.inf
    xt, wt = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    with np.errstate(invalid="ignore"):
        y = F.conv2d(xt, wt, padding=1, groups=8)
        y.backward(tg.Tensor(g))
    xr, wr = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yr = torch.nn.functional.conv2d(xr, wr, padding=1, groups=8)
    yr.backward(torch.tensor(g))
    assert np.isnan(y.numpy()[0, 0, 10, 10]) and np.isnan(xt.grad.numpy()[1, 0, 20, 20])
    for ours, theirs in ((y, yr), (xt.grad, xr.grad), (wt.grad, wr.grad)):
        np.testing.assert_array_equal(np.isnan(ours.numpy()), np.isnan(theirs.detach().numpy()))
        np.testing.assert_array_equal(np.isinf(ours.numpy()), np.isinf(theirs.detach().numpy()))


@pytest.mark.parametrize(
    "x_shape, o, k",
    [((2, 16, 17, 16), 16, (3, 3)),  # the full correlation
     ((2, 16, 32, 30), 32, (3, 3)),  # the wide grid
     ((2, 4, 24, 23, 24), 8, (3, 3, 3)),  # tap views
     ((4, 8, 56, 56), 8, (3, 3))],  # depthwise, channel-major  # fmt: skip
)
def test_an_inf_weight_reaches_only_the_inputs_its_tap_reads(x_shape, o, k):
    """The input-gradient routes that correlate a zero-padded g multiplied the padding by
    an inf tap (0 * inf = NaN) at inputs that tap never reads; with a non-finite weight
    they give way to col2im, whose products are all the definition's (as PyTorch's)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 4, x_shape).astype(np.float64)
    groups = x_shape[1] if x_shape[2] == 56 else 1
    w = rng.integers(-3, 4, (o, x_shape[1] // groups) + k).astype(np.float64)
    w[0, 0] = 0.0
    w[(0, 0) + (0,) * len(k)] = np.inf
    conv = getattr(F, f"conv{len(k)}d")
    xt = tg.Tensor(x, requires_grad=True)
    y = conv(xt, tg.Tensor(w), padding=1, groups=groups)
    g = rng.integers(-3, 4, y.shape).astype(np.float64)
    with np.errstate(invalid="ignore"):
        y.backward(tg.Tensor(g))
    xr = torch.tensor(x, requires_grad=True)
    getattr(torch.nn.functional, f"conv{len(k)}d")(
        xr, torch.tensor(w), padding=1, groups=groups
    ).backward(torch.tensor(g))
    np.testing.assert_array_equal(np.isnan(xt.grad.numpy()), np.isnan(xr.grad.numpy()))
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-12)


def test_plane_route_weight_gradient_adds_only_each_taps_own_products():
    """The whole-plane route forms x_c^T g_c for every (input, output) pair; a pair no tap
    reads whose product overflows (inf) must not reach the taps' sums (a product with a
    0/1 matrix made it NaN in every tap: a regression hunt)."""
    torch = pytest.importorskip("torch")
    x = np.ones((16, 4, 5, 5))
    x[0, 0, 0, 0] = 1e300
    g = np.ones((16, 4, 5, 5))
    g[0, 0, 3:, 3:] = 1e10  # outputs whose 3x3 windows (pad 1) do not reach (0, 0)
    w = np.ones((4, 1, 3, 3))
    assert cm._depthwise_plane_route(x.shape, w.shape, ((1, 1),) * 2, (1, 1), (1, 1), 4, 8)
    wt = tg.Tensor(w, requires_grad=True)
    with np.errstate(over="ignore"):
        F.conv2d(tg.Tensor(x), wt, padding=1, groups=4).backward(tg.Tensor(g))
    wr = torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(torch.tensor(x), wr, padding=1, groups=4).backward(torch.tensor(g))
    assert np.isfinite(wt.grad.numpy()).all()
    np.testing.assert_allclose(wt.grad.numpy(), wr.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("budget", [None, 2**17])  # one chunk; several (a sample each)
def test_transposed_conv_weight_gradient_with_many_channels_few_positions(budget):
    """The weight gradient's chunks are summed as gw^T and transposed once (a transposed
    add into gw per chunk took 6x the products' time): the same values as PyTorch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    x = rng.standard_normal((3, 256, 4, 4))
    w = rng.standard_normal((256, 64, 4, 4)) * 0.05
    g = rng.standard_normal((3, 64, 8, 8))
    xt, wt = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    with contextlib.ExitStack() as stack:
        if budget:
            stack.enter_context(cm.scratch_budget(budget))
        F.conv_transpose2d(xt, wt, stride=2, padding=1).backward(tg.Tensor(g))
    xr, wr = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv_transpose2d(xr, wr, stride=2, padding=1).backward(torch.tensor(g))
    np.testing.assert_allclose(wt.grad.numpy(), wr.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "g_shape, w_shape, strides, dilations, groups, extra",
    [((3, 6, 9, 8), (6, 4, 4, 4), (2, 2), (1, 1), 1, (0, 0)),
     ((2, 6, 7, 9), (6, 2, 3, 5), (3, 2), (1, 2), 3, (2, 1)),   # leftover rows, groups
     ((2, 4, 6, 7), (4, 3, 2, 3), (2, 1), (3, 1), 1, (1, 0)),   # stride 1 along one dim
     ((2, 4, 11), (4, 5, 7), (4,), (3,), 1, (3,)),              # 1-D, d > s
     ((2, 4, 4, 5, 3), (4, 2, 3, 2, 3), (2, 3, 2), (1, 1, 2), 2, (1, 0, 1)),
     ((1, 5, 6, 6), (5, 3, 2, 2), (3, 3), (1, 1), 1, (0, 2))],  # phases no tap reaches
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("per_block", [None, 2, 1])  # samples a block: all, 2, 1
def test_phase_planes_equal_col2im_to_the_bit(g_shape, w_shape, strides, dilations, groups,
                                              extra, dtype, per_block, monkeypatch):  # fmt: skip
    """The strided input gradient on the phase planes adds each position's taps in the
    same order as col2im: the same bits, for any stride, dilation, group and leftover, a
    block of samples at a time (with a short last block) or one."""
    rng = np.random.default_rng(22)
    g = rng.standard_normal(g_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    geometry = zip(g_shape[2:], strides, w_shape[2:], dilations, extra, strict=True)
    padded = tuple((o - 1) * s + (k - 1) * d + 1 + e for o, s, k, d, e in geometry)
    if per_block:
        grid = cm._PhaseGrid(padded, w_shape[2:], strides, dilations, g_shape[2:])
        row_bytes = math.prod(w_shape[2:]) * w_shape[1] * grid.plane * np.dtype(dtype).itemsize
        monkeypatch.setattr(cm, "PHASE_BLOCK_BYTES", per_block * row_bytes)
    want = cm.correlate_transpose_gemm(g, w, padded, strides, dilations, groups)
    got = cm.correlate_transpose_phases(g, w, padded, strides, dilations, groups)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_phase_planes_are_taken_where_they_gain_and_match_torch():
    torch = pytest.importorskip("torch")
    assert cm._phases_route((32, 40, 47, 47), (40, 3, 4, 4), (96, 96), (2, 2), (1, 1), 1, 4)
    assert not cm._phases_route((8, 16, 9, 9), (16, 8, 3, 3), (20, 20), (2, 2), (1, 1), 1, 4)
    assert not cm._phases_route((8, 16, 9, 9), (16, 8, 3, 3), (20, 20), (1, 1), (1, 1), 1, 4)
    # many small groups: one tap of all groups a product, one flat add over all channels
    assert cm._phases_route((16, 128, 16, 16), (128, 4, 4, 4), (34, 34), (2, 2), (1, 1), 32, 4)
    rng_g = np.random.default_rng(24)
    xg = rng_g.standard_normal((16, 128, 16, 16))
    wg = rng_g.standard_normal((128, 4, 4, 4))
    ours = F.conv_transpose2d(tg.Tensor(xg), tg.Tensor(wg), stride=2, padding=1, groups=32)
    ref = torch.nn.functional.conv_transpose2d(torch.tensor(xg), torch.tensor(wg), stride=2,
                                               padding=1, groups=32)  # fmt: skip
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-10, atol=1e-10)
    rng = np.random.default_rng(23)
    x = rng.standard_normal((4, 24, 16, 16))
    w = rng.standard_normal((24, 16, 4, 4))
    assert cm._phases_route(x.shape, w.shape, (34, 34), (2, 2), (1, 1), 1, 8)
    w[0, 0, 0, 0] = np.inf  # (an inf weight: the planes' zeros would make NaN; col2im serves)
    for weight in (w.copy(), np.where(np.isinf(w), 0.5, w)):
        xt = tg.Tensor(x, requires_grad=True)
        wt = tg.Tensor(weight, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            y = F.conv_transpose2d(xt, wt, stride=2, padding=1)
        xr = torch.tensor(x, requires_grad=True)
        wr = torch.tensor(weight, requires_grad=True)
        yr = torch.nn.functional.conv_transpose2d(xr, wr, stride=2, padding=1)
        np.testing.assert_allclose(y.numpy(), yr.detach().numpy(), rtol=1e-10, atol=1e-10)
        g = rng.standard_normal(y.shape)
        if np.isfinite(weight).all():
            y.backward(tg.Tensor(g))
            yr.backward(torch.tensor(g))
            np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(wt.grad.numpy(), wr.grad.numpy(), rtol=1e-10, atol=1e-9)


def _torch_conv_and_grads(x, w, g, **kw):
    torch = pytest.importorskip("torch")
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, **kw)
    yt.backward(torch.tensor(g))
    return yt.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize(
    "x_shape, kernel, padding",
    [((2, 2, 5, 5), (3, 3), 1),  # whole planes
     ((1, 2, 20, 20), (3, 3), 1),  # band matrices
     ((1, 2, 3, 300), (3, 3), 1),  # rows too wide for band matrices
     ((1, 2, 2, 400), (1, 3), 0)],
)  # fmt: skip
def test_depthwise_with_an_infinite_tap_matches_torch(x_shape, kernel, padding):
    """An inf tap: the forward is NaN where it reads the zero padding (0 * inf, as
    PyTorch's float64 conv), on every depthwise route (the plane and band routes left the
    padding out and gave finite values); the input gradient is NaN-free at inputs that
    tap never reads (the wide grid spread 0 * inf from its zeros off the windows)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((2, 1) + kernel)
    w[0, 0, 0, 0] = np.inf
    X, W = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    y = F.conv2d(X, W, padding=padding, groups=2)
    g = rng.standard_normal(y.shape)
    y.backward(tg.Tensor(g))
    yt, gxt = _torch_conv_and_grads(x, w, g, padding=padding, groups=2)
    np.testing.assert_allclose(y.data, yt, rtol=1e-10, atol=1e-12)  # (NaN where torch's)
    np.testing.assert_allclose(X.grad.data, gxt, rtol=1e-10, atol=1e-12)
    gt = F.conv_transpose2d(tg.Tensor(g), W.detach(), padding=padding, groups=2)
    np.testing.assert_allclose(gt.data, gxt, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "x_shape, w_shape, kw",
    [((1, 1, 1), (1, 1, 1), dict(stride=5, padding=2)),
     ((1, 1, 1, 4), (1, 1, 1, 3), dict(stride=(3, 2), padding=((2, 0), (2, 1))))],
)  # fmt: skip
def test_recorded_input_grad_with_padding_past_the_windows(x_shape, w_shape, kw):
    """create_graph=True where the padding reaches past what the strided windows read: the
    recorded input gradient cropped g by more than it holds and raised; the gradients now
    match the unrecorded ones, and a second derivative runs."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    conv = F.conv1d if len(x_shape) == 3 else F.conv2d
    X, W = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    plain = tg.grad(conv(X, W, **kw).sum(), [X, W])
    recorded = tg.grad(conv(X, W, **kw).sum(), [X, W], create_graph=True)
    for a, b in zip(plain, recorded, strict=True):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-12, atol=1e-15)
    (ggw,) = tg.grad((recorded[0] * recorded[0]).sum() + recorded[1].sum(), [W], allow_unused=True)
    assert ggw is None or np.isfinite(ggw.data).all()
    assert tg.gradgradcheck(lambda a, b: conv(a, b, **kw), (X, W))


def test_one_int_sequences_count_for_every_dim():
    """``stride=(2,)``, ``padding=(1,)``, ``dilation=[2]``, ``output_padding=(1,)`` and a
    pool's ``kernel_size=(2,)`` apply to every spatial dim, as PyTorch's functions take
    them (they raised); other lengths still raise, naming the argument."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 8, 8)), rng.standard_normal((2, 2, 3, 3))
    X, W = tg.Tensor(x), tg.Tensor(w)
    xt, wt = torch.tensor(x), torch.tensor(w)
    TF = torch.nn.functional
    for kw in (dict(stride=(2,)), dict(padding=(1,)), dict(dilation=[2])):
        np.testing.assert_allclose(F.conv2d(X, W, **kw).data, TF.conv2d(xt, wt, **kw).numpy(),
                                   rtol=1e-12)  # fmt: skip
    kw = dict(stride=2, output_padding=(1,))
    np.testing.assert_allclose(F.conv_transpose2d(X, W, **kw).data,
                               TF.conv_transpose2d(xt, wt, **kw).numpy(), rtol=1e-12)  # fmt: skip
    np.testing.assert_array_equal(F.max_pool2d(X, (2,)).data, TF.max_pool2d(xt, (2,)).numpy())
    ours, theirs = F.avg_pool2d(X, (2,), stride=(1,)), TF.avg_pool2d(xt, (2,), stride=(1,))
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="stride"):
        F.conv2d(X, W, stride=(2, 2, 2))
    with pytest.raises(ValueError, match="padding"):
        F.max_pool2d(X, 2, padding=(1, 1, 1))


def test_without_numba_depthwise_convs_run_on_the_numpy_routes(tmp_path):
    """numba is optional: where it does not import, the package, its depthwise convs and
    their gradients work on the NumPy routes (a process with a stand-in `numba` module
    that raises on import)."""
    import os
    import subprocess
    import sys

    (tmp_path / "numba.py").write_text("raise ImportError('no numba here')\n")
    code = """
import numpy as np
import tinygrad_np as tg, tinygrad_np.nn.functional as F
x = tg.Tensor(np.ones((2, 3, 9, 9)), requires_grad=True)
w = tg.Tensor(np.ones((6, 1, 3, 3)), requires_grad=True)
y = F.conv2d(x, w, padding=1, groups=3)
gx, gw = tg.grad(y.sum(), [x, w])
print(F.has_compiled_kernels(), y.numpy()[0, 0, 4, 4], gx.numpy()[0, 0, 4, 4])
print(gw.numpy()[0, 0, 1, 1])
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), root]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split() == ["False", "9.0", "18.0", "162.0"], out.stderr
