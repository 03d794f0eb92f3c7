"""The compiled depthwise kernels (tinygrad_np/_compiled.py, numba): against PyTorch, against
the NumPy routes they replace, by finite differences, on one and two threads, and the
switches that turn them off. (`make test` reruns the depthwise tests with the kernels
off: this module skips itself there.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from _rows import count_calls

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import _compiled
from tinygrad_np import convmath as cm

torch = pytest.importorskip("torch")
if not cm.has_compiled_kernels():  # (CI without numba fails instead: tests/conftest.py)
    pytest.skip(
        "compiled kernels unavailable (numba missing or NUMBA_DISABLE_JIT) or turned off "
        "(TINYGRAD_NP_COMPILED=0)",
        allow_module_level=True,
    )

PLANE_ROUTE = cm._depthwise_plane_route
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TCONV = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
         3: torch.nn.functional.conv3d}  # fmt: skip


@pytest.fixture(autouse=True)
def no_plane_matrices(monkeypatch):
    """The small planes here would take whole-plane matrices (where the kernels give way,
    see convmath._compiled_route): this module's tests are of the kernels."""
    monkeypatch.setattr(cm, "_depthwise_plane_route", lambda *a, **k: False)


@pytest.fixture
def calls(monkeypatch):
    """Counts of the compiled maps that ran, by name."""
    return count_calls(monkeypatch, _compiled, ("forward", "input_grad", "weight_grad"))


def _random_case(rng, nd):
    """A depthwise conv with random sizes, multiplier, strides, dilations and padding
    (an int, per dim, asymmetric pairs or "same"), that PyTorch also accepts."""
    while True:
        n, m = (int(v) for v in rng.integers(1, 4, 2))
        c = int(rng.integers(2, 5))  # (one channel is groups=1: a plain conv)
        kernel = tuple(int(v) for v in rng.integers(1, 4, nd))
        strides = tuple(int(v) for v in rng.integers(1, 4, nd))
        dilations = tuple(int(v) for v in rng.integers(1, 3, nd))
        sizes = tuple(int(v) for v in rng.integers(3, 10, nd))
        kind = rng.integers(0, 4)
        if kind == 0:
            padding = int(rng.integers(0, 3))
        elif kind == 1:
            padding = tuple(int(v) for v in rng.integers(0, 3, nd))
        elif kind == 2:
            padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (nd, 2)))
        else:
            padding, strides = "same", (1,) * nd
        pads = cm.resolve_padding(padding, sizes, kernel, strides, dilations)
        padded = cm.padded_sizes(sizes, pads)
        if all(p >= d * (k - 1) + 1 for p, k, d in zip(padded, kernel, dilations, strict=True)):
            return (n, c, m, sizes, kernel, dict(stride=strides, padding=padding,
                                                 dilation=dilations, groups=c))  # fmt: skip


def _torch_padded(x, pads):
    """x (a torch tensor) padded explicitly by (before, after) pairs (PyTorch's conv takes
    only symmetric padding)."""
    flat = [p for pair in reversed(pads) for p in pair]
    return torch.nn.functional.pad(x, flat)


def _both(n, c, m, sizes, kernel, kw, dtype, rng):
    """(ours, PyTorch's): (y, gx, gw, gb) of one depthwise conv with a bias."""
    nd = len(sizes)
    x = rng.standard_normal((n, c) + sizes).astype(dtype)
    w = rng.standard_normal((c * m, 1) + kernel).astype(dtype)
    b = rng.standard_normal(c * m).astype(dtype)
    xt, wt, bt = (tg.Tensor(a, requires_grad=True) for a in (x, w, b))
    y = CONV[nd](xt, wt, bt, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    ours = (y.data,) + tuple(t.data for t in tg.grad(y, [xt, wt, bt], [tg.Tensor(g)]))
    pads = cm.resolve_padding(kw["padding"], sizes, kernel, kw["stride"], kw["dilation"])
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = TCONV[nd](_torch_padded(tx, pads), tw, tb, stride=kw["stride"],
                   dilation=kw["dilation"], groups=c)  # fmt: skip
    grads = torch.autograd.grad(ty, [tx, tw, tb], torch.tensor(g))
    return ours, (ty.detach().numpy(),) + tuple(t.numpy() for t in grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_compiled_depthwise_matches_torch_over_a_random_sweep(nd, dtype, calls):
    rng = np.random.default_rng(100 * nd + (dtype == np.float32))
    tol = 2e-4 if dtype == np.float32 else 1e-11
    for _ in range(20):
        case = _random_case(rng, nd)
        ours, ref = _both(*case, dtype, rng)
        for name, a, r in zip(("y", "gx", "gw", "gb"), ours, ref, strict=True):
            assert a.dtype == dtype and a.shape == r.shape, (name, case)
            np.testing.assert_allclose(a, r, rtol=tol, atol=tol, err_msg=f"{name} {case}")
    assert calls["forward"] >= 20 and calls["input_grad"] >= 20 and calls["weight_grad"] >= 20


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_compiled_depthwise_agrees_with_the_numpy_routes(nd, calls):
    rng = np.random.default_rng(7 + nd)
    for _ in range(10):
        case = _random_case(rng, nd)
        seed = int(rng.integers(1 << 30))
        compiled, _ = _both(*case, np.float32, np.random.default_rng(seed))
        ran = dict(calls)
        with cm.compiled_kernels(False):
            numpy_routes, _ = _both(*case, np.float32, np.random.default_rng(seed))
        assert calls == ran  # (none ran with the kernels off)
        for a, r in zip(compiled, numpy_routes, strict=True):
            np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=1, padding=1, dilation=1),
        dict(stride=(2, 1), padding=((0, 2), (1, 0)), dilation=(1, 2)),
        dict(stride=3, padding=2, dilation=2),
    ],
)
def test_compiled_depthwise_gradcheck_and_gradgradcheck(kw, calls):
    """float64 finite differences through the compiled maps, second derivatives included
    (the recorded backward is convs whose forwards run compiled too)."""
    rng = np.random.default_rng(3)
    x = tg.Tensor(rng.standard_normal((2, 3, 7, 6)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((6, 1, 3, 2)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(6), requires_grad=True)

    def fn(x, w, b):
        return F.conv2d(x, w, b, groups=3, **kw)

    assert tg.gradcheck(fn, (x, w, b))
    assert tg.gradgradcheck(fn, (x, w, b))
    assert calls["forward"] and calls["input_grad"] and calls["weight_grad"]


def test_compiled_depthwise_transposed_conv_matches_torch(calls):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    # (C_in, C_out / groups, *K): its conv (from C_out = 2 channels to C_in) is depthwise
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    xt, wt = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    y = F.conv_transpose2d(xt, wt, stride=2, padding=1, output_padding=1, groups=2)
    g = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw = tg.grad(y, [xt, wt], [tg.Tensor(g)])
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv_transpose2d(tx, tw, stride=2, padding=1, output_padding=1,
                                              groups=2)  # fmt: skip
    tgx, tgw = torch.autograd.grad(ty, [tx, tw], torch.tensor(g))
    for a, r in ((y.data, ty.detach()), (gx.data, tgx), (gw.data, tgw)):
        np.testing.assert_allclose(a, r.numpy(), rtol=1e-4, atol=1e-4)
    # its forward is the depthwise conv's input gradient, its dx that conv, dw its dw
    assert calls["input_grad"] and calls["forward"] and calls["weight_grad"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_depthwise_in_several_blocks_of_samples(dtype, monkeypatch, calls):
    """The wide grid takes the samples in blocks (as many planes as BLOCK_ENTRIES holds):
    with small blocks, every sample is in a later block or a last, shorter one."""
    monkeypatch.setattr(_compiled, "BLOCK_ENTRIES", 200)  # (2-4 samples a block here)
    rng = np.random.default_rng(21)
    for case in [
        (7, 3, 2, (6, 5), (3, 3), dict(stride=1, padding=1, dilation=1, groups=3)),
        (9, 2, 1, (9, 7), (3, 2), dict(stride=(2, 3), padding=(1, 2), dilation=1, groups=2)),
        (5, 2, 1, (30,), (5,), dict(stride=2, padding=2, dilation=2, groups=2)),
    ]:
        ours, ref = _both(*case, dtype, rng)
        tol = 2e-4 if dtype == np.float32 else 1e-11
        for name, a, r in zip(("y", "gx", "gw", "gb"), ours, ref, strict=True):
            np.testing.assert_allclose(a, r, rtol=tol, atol=tol, err_msg=f"{name} {case}")
    assert calls["forward"] == calls["input_grad"] == calls["weight_grad"] == 3


@pytest.mark.parametrize("where", ["x", "w", "g"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernels", ["wide", "rows"])
def test_compiled_depthwise_non_finite_values_as_torch(
    where, value, stride, kernels, calls, monkeypatch
):
    """An inf or NaN at the border (whose windows read padding) and one inside: every
    output and gradient is inf or NaN exactly where PyTorch's float64 conv has it (the
    wide grid's zeros between rows must not meet them; the row kernels, for cropping
    pads and planes over the scratch budget, add the padding's products themselves)."""
    if kernels == "rows":
        monkeypatch.setattr(_compiled, "_wide", lambda *a: None)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 8, 9))
    w = rng.standard_normal((3, 1, 3, 3))
    out = (2, 3) + ((8, 9) if stride == 1 else (4, 5))
    g = rng.standard_normal(out)
    target = {"x": x, "w": w, "g": g}[where]
    # a corner (read by windows that also read padding) and an inside entry
    target[(0, 1, 0, 0) if where != "w" else (1, 0, 0, 0)] = value
    target[(1, 2, 2, 1) if where != "w" else (2, 0, 1, 1)] = value
    if where == "w":
        g[0, 0, 1, 2] = 0.0  # a zero upstream entry meeting the inf weight
    xt, wt = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    y = F.conv2d(xt, wt, stride=stride, padding=1, groups=3)
    gx, gw = tg.grad(y, [xt, wt], [tg.Tensor(g)])
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, stride=stride, padding=1, groups=3)
    tgx, tgw = torch.autograd.grad(ty, [tx, tw], torch.tensor(g))
    for name, a, r in (("y", y.data, ty.detach()), ("gx", gx.data, tgx), ("gw", gw.data, tgw)):
        r = r.numpy()
        np.testing.assert_array_equal(np.isnan(a), np.isnan(r), err_msg=name)
        np.testing.assert_array_equal(np.isinf(a), np.isinf(r), err_msg=name)
        fin = np.isfinite(r)
        np.testing.assert_allclose(a[fin], r[fin], rtol=1e-10, atol=1e-10, err_msg=name)
    assert calls["forward"] and calls["input_grad"] and calls["weight_grad"]


def test_compiled_depthwise_gives_the_same_bits_on_one_and_two_threads(threads):
    """Each thread computes whole channels: the thread count does not change a bit."""
    rng = np.random.default_rng(9)
    x = tg.Tensor(rng.standard_normal((4, 32, 30, 30)).astype(np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((64, 1, 3, 3)).astype(np.float32), requires_grad=True)
    results = []
    for n in (1, 2):
        threads(n)
        for kw in (dict(padding=1), dict(stride=2, padding=1)):
            y = F.conv2d(x, w, groups=32, **kw)
            results.append((n, y.data) + tuple(t.data for t in tg.grad(y.sum(), [x, w])))
    for one, two in zip(results[:2], results[2:], strict=True):
        for a, b in zip(one[1:], two[1:], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_compiled_row_kernels_agree_with_the_wide_grid(nd, monkeypatch, calls):
    """The wide-grid kernels (every conv without a cropping pad) and the row kernels (for
    cropping pads and non-finite operands) give the same results, strided convs
    included."""
    rng = np.random.default_rng(13 + nd)
    for _ in range(8):
        case = _random_case(rng, nd)
        seed = int(rng.integers(1 << 30))
        wide, ref = _both(*case, np.float64, np.random.default_rng(seed))
        with monkeypatch.context() as m:
            m.setattr(_compiled, "_wide", lambda *a: None)
            rows, _ = _both(*case, np.float64, np.random.default_rng(seed))
        for a, b, r in zip(wide, rows, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
    assert calls["weight_grad"] == 16


def test_compiled_kernels_over_the_scratch_budget_take_the_row_kernels(monkeypatch, threads):
    """The wide grid's buffers (two of a sample's padded plane a thread) stay within the
    scratch budget: over it on all threads, the work runs on one; over it on one, the
    row kernels (no buffers) run. Neither depends on the thread count, so neither does
    a bit of the result."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 3, 40, 40))
    g = rng.standard_normal((2, 3, 40, 40))
    w = rng.standard_normal((3, 1, 3, 3))
    wide_runs = []
    kern = _compiled.kernels()
    for name in ("depthwise_forward_wide", "depthwise_input_grad_wide",
                 "depthwise_weight_grad_wide"):  # fmt: skip
        real = getattr(kern, name)
        monkeypatch.setattr(kern, name, lambda *a, _r=real: wide_runs.append(1) or _r(*a))
    geo = (((1, 1), (1, 1)), (1, 1), (1, 1))
    dt = np.dtype(np.float64)

    def maps():
        return (_compiled.forward(x, w, None, *geo, dt),
                _compiled.input_grad(g, w, 3, (40, 40), *geo, dt),
                _compiled.weight_grad(x, g, (3, 3), *geo, dt))  # fmt: skip

    plane = 42 * 42 * 8
    results = {}
    for budget in (1 << 24, 3 * plane, plane):  # all threads' buffers, one's, none
        for n in (1, 2):
            threads(n)
            wide_runs.clear()
            with cm.scratch_budget(budget):
                results[budget, n] = maps()
            assert len(wide_runs) == (3 if budget > plane else 0), (budget, n)
        for a, b in zip(results[budget, 1], results[budget, 2], strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(results[1 << 24, 1], results[plane, 1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_compiled_geometry_caches_keep_small_tables_only():
    """Tables of up to CACHE_MAX_ROWS rows are kept between calls; larger ones (a tall
    input keeps 40 bytes a row) are made again each time, not held."""
    geo = ((3, 3), ((1, 1), (1, 1)), (1, 1), (1, 1))
    small = _compiled._wide((20, 20), *geo)
    assert _compiled._wide((20, 20), *geo)[0] is small[0]
    tall = (_compiled.CACHE_MAX_ROWS + 1, 3)
    assert _compiled._wide(tall, *geo)[0] is not _compiled._wide(tall, *geo)[0]
    table = _compiled._rowmap((20,), (20,), (3,), (1,), (1,), (1,))
    assert _compiled._rowmap((20,), (20,), (3,), (1,), (1,), (1,)) is table
    big = (_compiled.CACHE_MAX_ROWS,)
    assert _compiled._rowmap(big, big, (3,), (1,), (1,), (1,)) is not _compiled._rowmap(
        big, big, (3,), (1,), (1,), (1,)
    )


def test_compiled_route_with_cropping_pads_matches_the_numpy_routes():
    """convmath's maps take negative pads (a crop) from internal callers: the row kernels
    read them as offsets."""
    rng = np.random.default_rng(19)
    x = rng.standard_normal((2, 3, 10, 9))
    w = rng.standard_normal((6, 1, 3, 2))
    pads = ((-1, 2), (1, -2))
    args = ((1, 2), (2, 1), 3)
    assert cm._compiled_route(x.shape, w.shape, pads, *args, np.float64)
    y = cm.correlate_padded(x, w, [list(p) for p in pads], *args)  # (lists as well)
    g = rng.standard_normal(y.shape)
    gx = cm.correlate_transpose_cropped(g, w, x.shape[2:], pads, *args)
    gw = cm.correlate_weight_grad_padded(x, g, (3, 2), pads, *args)
    with cm.compiled_kernels(False):
        assert not cm._compiled_route(x.shape, w.shape, pads, *args, np.float64)
        ry = cm.correlate_padded(x, w, pads, *args)
        rgx = cm.correlate_transpose_cropped(g, w, x.shape[2:], pads, *args)
        rgw = cm.correlate_weight_grad_padded(x, g, (3, 2), pads, *args)
    for a, r in ((y, ry), (gx, rgx), (gw, rgw)):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


def test_compiled_kernels_switches(monkeypatch, calls):
    x = tg.Tensor(np.ones((1, 2, 5, 5), np.float32))
    w = tg.Tensor(np.ones((2, 1, 3, 3), np.float32))
    assert cm.has_compiled_kernels()
    with cm.compiled_kernels(False):
        assert not cm.has_compiled_kernels()
        F.conv2d(x, w, groups=2)
        with cm.compiled_kernels(True):
            assert cm.has_compiled_kernels()
    with cm.conv_algorithm("gemm"):  # a forced algorithm keeps the NumPy routes
        F.conv2d(x, w, groups=2)
    assert calls["forward"] == 0
    F.conv2d(x, w, groups=2)
    assert calls["forward"] == 1
    F.conv2d(tg.Tensor(np.ones((1, 2, 5, 5), np.float16)),
             tg.Tensor(np.ones((2, 1, 3, 3), np.float16)), groups=2)  # fmt: skip
    assert calls["forward"] == 1  # (float16: the NumPy routes)
    with pytest.raises(TypeError, match="enabled must be a bool"):
        with cm.compiled_kernels("no"):
            pass
    monkeypatch.setattr(cm, "_depthwise_plane_route", PLANE_ROUTE)  # (tiny planes go there)
    tiny = ((64, 256, 4, 4), (256, 1, 3, 3), ((1, 1), (1, 1)), (1, 1), (1, 1), 256)
    assert not cm._compiled_route(*tiny, np.float32)
    assert cm._compiled_route((64, 256, 40, 40), *tiny[1:], np.float32)
    monkeypatch.setattr(_compiled, "_module", [None])  # as where numba does not import
    assert not cm.has_compiled_kernels()
    y = F.conv2d(x, w, padding=1, groups=2)
    assert calls["forward"] == 1 and y.data[0, 0, 2, 2] == 9 and y.data[0, 0, 0, 0] == 4


def test_compiled_kernels_off_by_environment():
    code = (
        "from tinygrad_np import convmath as cm; "
        "print(cm.has_compiled_kernels(), cm._compiled.available())"
    )
    env = dict(os.environ, TINYGRAD_NP_COMPILED="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split() == ["False", "True"]


def test_compiled_kernels_off_where_numba_runs_python_only():
    """NUMBA_DISABLE_JIT=1 makes numba run the loops as Python (70x slower than the NumPy
    routes): the kernels count as unavailable there."""
    code = "from tinygrad_np import convmath as cm; print(cm.has_compiled_kernels())"
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split() == ["False"]


def test_compiled_kernels_compile_without_a_disk_cache(monkeypatch):
    """Where numba has nowhere to write its cache (it raises when a cached function is
    declared), the kernels are declared without one."""
    import numba

    kern = _compiled.kernels()
    assert kern._cache_works()  # (here: beside the module, or the user's cache folder)
    real = numba.njit

    def no_locator(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function '_probe': no locator available")
        return real(*args, **kwargs)

    monkeypatch.setattr(kern.numba, "njit", no_locator)
    assert not kern._cache_works()


def test_explain_names_the_compiled_kernels():
    from tinygrad_np import explain

    args = ((16, 64, 56, 56), (64, 1, 3, 3))
    text = str(explain.conv2d(*args, stride=2, padding=1, groups=64, quiet=True))
    assert "compiled loops (numba" in text and "as their phase planes by the stride" in text
    assert "a buffer of 3364 entries a sample" in text  # (4 phase planes of 29x29)
    plain = str(explain.conv2d(*args, padding=1, groups=64, quiet=True))
    assert "3364 entries" in plain and "phase planes" not in plain
    with cm.scratch_budget(1000):  # (two buffers of 3364 floats do not fit)
        rows = str(explain.conv2d(*args, padding=1, groups=64, quiet=True))
    assert "each tap one loop along each output row, reading the input in place" in rows
    with cm.compiled_kernels(False):
        off = str(explain.conv2d(*args, padding=1, groups=64, quiet=True))
    assert "compiled" not in off and "one axpy" in off


def test_compiled_route_against_plane_matrices_and_fft(monkeypatch):
    """Which depthwise convs the kernels take (measured, see convmath.PLANE_OVER_COMPILED):
    planes up to 6x6 stay on the whole-plane matrices, larger ones come here; kernels the
    estimate sends to FFT come here up to COMPILED_MAX_TAPS taps."""
    monkeypatch.setattr(cm, "_depthwise_plane_route", PLANE_ROUTE)

    def route(n, c, size, k):
        pads = ((k // 2, k // 2),) * 2
        return cm._compiled_route((n, c, size, size), (c, 1, k, k), pads, (1, 1), (1, 1), c,
                                  np.float32)  # fmt: skip

    assert not route(64, 512, 6, 3) and PLANE_ROUTE(
        (64, 512, 6, 6), (512, 1, 3, 3), ((1, 1), (1, 1)), (1, 1), (1, 1), 512, 4
    )
    assert route(32, 512, 7, 3) and route(32, 256, 8, 3)
    fft = cm._depthwise_on_gemm((16, 64, 56, 56), (64, 1, 15, 15), ((7, 7),) * 2, (1, 1),
                                (1, 1), 64)  # fmt: skip
    assert fft is None and route(16, 64, 56, 15)  # (FFT by the estimate: 2x slower)
    assert not route(16, 64, 56, 31)  # (961 taps: FFT)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
@pytest.mark.parametrize("lock", ["module", "numba"])
def test_a_fork_while_a_thread_imports_or_compiles_does_not_hang_the_child(lock, monkeypatch):
    """A thread importing numba (this module's lock) or compiling a kernel (numba's lock)
    while another forks (nn.DataParallel's workers) left the lock held in the child,
    which hung on its first depthwise conv (a thread hunt). The fork now waits for both."""
    from numba.core.compiler_lock import global_compiler_lock

    if lock == "module":  # (as before the first import: kernels() takes the lock)
        monkeypatch.setattr(_compiled, "_module", [])
    held = threading.Event()

    def hold():  # holds the lock for half a second, as an import or a compile would
        with _compiled._lock if lock == "module" else global_compiler_lock:
            held.set()
            time.sleep(0.5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    pid = os.fork()  # (waits for the lock)
    if pid == 0:
        code = 1
        try:
            x = tg.tensor(np.ones((2, 4, 9, 9), np.float64))
            y = F.conv2d(x, tg.tensor(np.ones((4, 1, 3, 3))), padding=1, groups=4)
            code = 0 if y.numpy()[0, 0, 4, 4] == 9 else 1
        finally:
            os._exit(code)
    t.join()
    for _ in range(300):  # up to 30 s
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail(f"the forked child hung on the {lock} lock")
    assert os.waitstatus_to_exitcode(status) == 0


def test_compiled_maps_called_directly_with_wrong_shapes_raise():
    """The kernels read without bounds checks: shapes convmath never passes raise."""
    x = np.ones((4, 8, 8, 8))
    geo = (((1, 1), (1, 1)), (1, 1), (1, 1), np.dtype(np.float64))
    w = np.ones((8, 1, 3, 3))
    with pytest.raises(ValueError, match="output sizes"):
        _compiled.weight_grad(x, np.ones((4, 8, 200, 200)), (3, 3), *geo)
    with pytest.raises(ValueError, match="output sizes"):
        _compiled.input_grad(np.ones((4, 8, 200, 200)), w, 8, (8, 8), *geo)
    with pytest.raises(ValueError, match="7 filters for 8 channels"):
        _compiled.forward(x, np.ones((7, 1, 3, 3)), None, *geo)
    with pytest.raises(ValueError, match="bias"):
        _compiled.forward(x, w, np.ones(3), *geo)
    assert _compiled.forward(x, w, None, *geo)[0, 0, 3, 3] == 9
