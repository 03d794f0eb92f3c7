"""The automatic routes against PyTorch, at the sizes where they are taken.

The seeded sweeps in test_conv.py and test_pool.py use small tensors, which the router
sends to the plain im2col or pooling loops. The faster routes (per-sample GEMMs, the wide
grid, the full correlation, depthwise band matrices, whole planes and channel-major grids, strided
phase planes, FFT, samples-last, row windows, budget-sized chunks, the stacked wide grid
and tap views of volumes, threads) are only chosen for larger
ones. Each family below builds convs that the router, left to itself, sends down one of
them; the test checks that it did (the route's function was called) and that the output
and all three gradients match PyTorch, in float64 and float32, on one thread and two.
"""

from __future__ import annotations

import numpy as np
import pytest
from _rows import count_calls

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import convmath as cm

# family: (the convmath functions the family's convs must reach, a config maker)
# a config: x shape, out channels, kernel, stride, dilation, padding pairs, groups, and
# settings of convmath (its scratch budget, the largest im2col matrix kept), if any


def _pairs(rng, nd, most=2):
    return tuple(tuple(int(v) for v in rng.integers(0, most + 1, 2)) for _ in range(nd))


def _per_sample(rng):  # 16+ filters, 256+ positions a sample
    d = int(rng.integers(1, 3))
    return (2, 8, 20, 18), 16, (3, 3), (1, 1), (d, 1), _pairs(rng, 2), 1, None


def _per_sample_uncached(rng):  # columns not kept: the bias as a column of the weight
    config = _per_sample(rng)  # and the weight gradient's own per-sample products
    return config[:-1] + ({"cache_bytes": 0},)


def _wide_grid(rng):  # fewer inputs than outputs, 4M+ multiply-adds a sample
    d = int(rng.integers(1, 3))
    return (2, 16, 32, 30), 32, (3, 3), (1, 1), (1, d), _pairs(rng, 2), 1, None


def _wide_grid_3d(rng):  # (few dropped positions: padding of one on each side)
    return (2, 4, 16, 15, 16), 8, (3, 3, 3), (1, 1, 1), (1, 1, 1), ((1, 1),) * 3, 1, None


def _full_correlation(rng):  # as many inputs as outputs
    return (2, 16, 17, 16), 16, (3, 2), (1, 1), (1, 1), _pairs(rng, 2), 1, None


def _depthwise_band(rng):  # small planes, many channels: band (Toeplitz) matrices
    m = int(rng.integers(1, 3))
    return (2, 48, 12, 13), 48 * m, (3, 3), (1, 1), (1, 1), _pairs(rng, 2, 1), 48, None


def _depthwise_plane(rng):  # tiny planes, many channels: one product of whole planes
    m, st = int(rng.integers(1, 3)), (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    d = (int(rng.integers(1, 3)), 1)
    return (8, 64, 7, 6), 64 * m, (3, 3), st, d, _pairs(rng, 2, 1), 64, None


def _depthwise_channels(rng):  # wide planes: channel-major grid, one axpy a tap
    return (4, 8, 56, 56), 8, (3, 3), (1, 1), (1, 1), _pairs(rng, 2), 8, None


def _depthwise_strided(rng):  # rows too wide for band matrices: phase planes
    s = (2, int(rng.integers(1, 3)))
    return (1, 4, 40, 120), 4, (3, 3), s, (1, 1), _pairs(rng, 2, 1), 4, None


def _few_filters_long(rng):  # 8 filters on 3000 positions: the columns in pieces
    d = int(rng.integers(1, 5))
    return (3, 16, 3000), 8, (7,), (1,), (d,), _pairs(rng, 1, 6), 1, {"cache_bytes": 0}


def _fft(rng):  # an 11x11 kernel: the cost estimate picks FFT
    return (2, 4, 64, 60), 8, (11, 11), (1, 1), (1, 1), _pairs(rng, 2, 5), 1, None


def _samples_last(rng):  # output rows of 10: col2im samples-last (LeNet-5's conv2)
    return (16, 6, 14, 14), 16, (5, 5), (1, 1), (1, 1), _pairs(rng, 2, 1), 1, None


def _row_windows(rng):  # 15+ outputs a row x 32 samples a thread, 150 taps: row windows
    s = int(rng.integers(1, 3))
    return (64, 6, 16, 19), 16, (5, 5), (s, 1), (1, 1), _pairs(rng, 2, 1), 1, None


def _row_windows_3d(rng):  # a volume whose row windows fit the cache: forward and dw
    d = int(rng.integers(1, 3))
    return (4, 4, 12, 11, 13), 16, (3, 3, 3), (1, 1, 1), (1, 1, d), _pairs(rng, 3, 1), 1, None


def _chunked(rng):  # a small scratch budget: several batch chunks, or rows of a sample
    s = int(rng.integers(1, 3))
    return (4, 3, 24, 20), 16, (3, 3), (s, s), (1, 1), _pairs(rng, 2), 1, {"scratch_bytes": 2**15}


def _volume_few_filters(rng):  # 8 filters, 4 inputs: the stacked wide grid, dw on taps
    return (3, 4, 14, 16, 15), 8, (3, 3, 3), (1, 1, 1), (1, 1, 1), _pairs(rng, 3, 1), 1, {
        "cache_bytes": 0
    }


def _volume_full_correlation(rng):  # inputs >= outputs: dx on that grid too
    d = int(rng.integers(1, 3))
    return (2, 8, 12, 11, 14), 8, (3, 2, 3), (1, 1, 1), (d, 1, 1), _pairs(rng, 3, 1), 1, {
        "cache_bytes": 0
    }


def _volume_more_inputs(rng):  # 12 inputs: dw on the stacked grid too
    return (2, 12, 10, 12, 11), 8, (3, 3, 3), (1, 1, 1), (1, 1, 1), _pairs(rng, 3, 1), 1, {
        "cache_bytes": 0
    }


def _volume_input_grad_taps(rng):  # 4 inputs, 8 filters, 24^3: dx on tap views
    return (2, 4, 24, 23, 24), 8, (3, 3, 3), (1, 1, 1), (1, 1, 1), ((1, 1),) * 3, 1, None


FAMILIES = {
    "volume_input_grad_taps": (("correlate_transpose_taps",), _volume_input_grad_taps),
    "volume_few_filters": (("correlate_thin", "correlate_weight_grad_taps"), _volume_few_filters),
    "volume_full_correlation": (
        ("correlate_thin", "correlate_transpose_full", "correlate_weight_grad_taps"),
        _volume_full_correlation,
    ),
    "volume_more_inputs": (
        ("correlate_thin", "correlate_transpose_full", "correlate_weight_grad_thin"),
        _volume_more_inputs,
    ),
    "per_sample": (("_correlate_per_sample",), _per_sample),
    "per_sample_uncached": (
        ("_correlate_per_sample", "_weight_grad_per_sample"), _per_sample_uncached
    ),
    "wide_grid": (("correlate_transpose_wide",), _wide_grid),
    "wide_grid_3d": (("correlate_transpose_wide",), _wide_grid_3d),
    "full_correlation": (("correlate_transpose_full",), _full_correlation),
    "depthwise_band": (
        ("correlate_depthwise_band", "correlate_transpose_depthwise_band"), _depthwise_band
    ),
    "depthwise_plane": (
        ("correlate_depthwise_plane", "correlate_transpose_depthwise_plane",
         "correlate_weight_grad_depthwise_plane"),
        _depthwise_plane,
    ),  # fmt: skip
    "depthwise_channels": (("correlate_depthwise_channels",), _depthwise_channels),
    "depthwise_strided": (("correlate_depthwise_channels",), _depthwise_strided),
    "few_filters_long": (("_correlate_few_pieces",), _few_filters_long),
    "fft": (("correlate_fft", "correlate_transpose_fft", "correlate_weight_grad_fft"), _fft),
    "samples_last": (("correlate_transpose_samples_last",), _samples_last),
    "chunked": (("_chunks",), _chunked),
    "row_windows": (
        ("correlate_rows", "correlate_weight_grad_rows", "correlate_transpose_rows"), _row_windows
    ),
    "row_windows_3d": (("correlate_rows", "correlate_weight_grad_rows"), _row_windows_3d),
}



def _torch_conv(torch, xt, wt, bt, stride, dilation, pads, groups):
    flat = []
    for before, after in reversed(pads):
        flat += [before, after]
    fn = getattr(torch.nn.functional, f"conv{xt.dim() - 2}d")
    return fn(torch.nn.functional.pad(xt, flat), wt, bt, stride=stride, dilation=dilation,
              groups=groups)  # fmt: skip


@pytest.mark.parametrize("threads_n", [1, 2])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_route_matches_torch(family, dtype, threads_n, threads, monkeypatch, numpy_depthwise):
    torch = pytest.importorskip("torch")
    names, make = FAMILIES[family]
    calls = count_calls(monkeypatch, cm, names)
    threads(threads_n)
    seed = sorted(FAMILIES).index(family) * 4 + threads_n + 2 * (dtype == "float32")
    rng = np.random.default_rng(seed)
    x_shape, o, kernel, stride, dilation, pads, groups, settings = make(rng)
    for key, value in (settings or {}).items():
        monkeypatch.setitem(cm._settings, key, value)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal((o, x_shape[1] // groups) + kernel) / np.sqrt(9)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    nd = len(kernel)
    X, W, B = (tg.Tensor(a, requires_grad=True) for a in (x, w, b))
    y = getattr(F, f"conv{nd}d")(X, W, B, stride=stride, padding=pads, dilation=dilation,
                                 groups=groups)  # fmt: skip
    u = rng.standard_normal(y.shape).astype(dtype)
    grads = tg.grad(y, [X, W, B], [tg.Tensor(u)])
    missing = [name for name, count in calls.items() if count == 0]
    assert not missing, f"{family}: the router did not take {missing}"
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = _torch_conv(torch, xt, wt, bt, stride, dilation, pads, groups)
    ref = [yt.detach().numpy()] + [r.numpy() for r in torch.autograd.grad(yt, [xt, wt, bt],
                                                                          torch.tensor(u))]
    tol = 1e-9 if dtype == "float64" else 2e-4
    for got, want, what in zip([y] + list(grads), ref, ["y", "gx", "gw", "gb"], strict=True):
        assert got.dtype == np.dtype(dtype), what
        assert got.shape == want.shape, what
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got.data, want, rtol=tol, atol=tol * scale, err_msg=what)


POOL_CASES = [
    # kind, x shape, kernel, stride, padding, extra
    ("max", (4, 16, 40, 42), (2, 2), (2, 2), (0, 0), {}),  # tiling windows, by taps
    ("max", (4, 16, 40, 42), (3, 3), (2, 2), (1, 1), {"ceil_mode": True}),  # overlapping
    ("max", (2, 8, 20, 18, 16), (3, 2, 3), (2, 2, 1), (1, 0, 1), {"dilation": (1, 2, 1)}),
    ("avg", (4, 16, 40, 42), (3, 3), (2, 2), (1, 1), {"count_include_pad": False}),
    ("avg", (2, 8, 20, 18, 16), (2, 3, 2), (2, 1, 2), (1, 1, 0), {"ceil_mode": True}),
]


@pytest.mark.parametrize("threads_n", [1, 2])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"{c[0]}{len(c[1]) - 2}d")
def test_large_pools_match_torch(case, threads_n, threads):
    """Pools large enough to split over threads, with ties among the maxima."""
    torch = pytest.importorskip("torch")
    threads(threads_n)
    kind, shape, kernel, stride, padding, extra = case
    rng = np.random.default_rng(len(shape) + threads_n)
    x = np.round(rng.standard_normal(shape) * 2) / 2  # many ties
    nd = len(kernel)
    X = tg.Tensor(x, requires_grad=True)
    y = getattr(F, f"{kind}_pool{nd}d")(X, kernel, stride, padding, **extra)
    u = rng.standard_normal(y.shape)
    (gx,) = tg.grad(y, [X], [tg.Tensor(u)])
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn.functional, f"{kind}_pool{nd}d")(xt, kernel, stride, padding, **extra)
    (rx,) = torch.autograd.grad(yt, [xt], torch.tensor(u))
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx.data, rx.numpy(), rtol=1e-12, atol=1e-12)
