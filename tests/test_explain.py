"""explain: the formulas it prints agree with what the ops really do."""

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np import convmath as cm
from tinygrad_np import explain
from tinygrad_np.cli import main
from tinygrad_np.nn import functional as F


def test_issue_example_numbers():
    e = explain.conv2d((128, 3, 96, 96), (40, 3, 4, 4), stride=2, quiet=True)
    assert e.output_shape == (128, 40, 47, 47)
    text = str(e)
    assert "dim 0 (H): floor((96 + 0 + 0 - 1*(4-1) - 1) / 2) + 1 = floor(92 / 2) + 1 = 47" in text
    assert "-> (128, 40, 93, 93)" in text  # the stride-dilated upstream gradient
    assert "(40, 3, 4, 4) -> (3, 40, 4, 4)" in text  # flipped, channels swapped
    assert e.algorithm == "gemm"
    assert "51.8 MiB" in text  # the whole batch's im2col matrix: too large to keep, so
    assert "one sample's columns at a time" in text  # each thread builds one sample's
    per_sample = cm.im2col_scratch_bytes(1, 3, (4, 4), (47, 47), 4)
    assert e.scratch_bytes == tg.get_num_threads() * per_sample


CONV_CASES = [
    ((2, 3, 11), (4, 3, 3), dict(stride=2)),
    ((1, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 3), padding=((0, 2), (1, 0)), groups=2)),
    ((1, 2, 10, 7), (3, 2, 4, 3), dict(stride=(3, 2), padding="same", dilation=(1, 2))),
    ((2, 2, 6, 5, 7), (2, 2, 2, 3, 2), dict(stride=(1, 2, 3), padding=1, dilation=(2, 1, 1))),
]


@pytest.mark.parametrize("xs, ws, kw", CONV_CASES)
def test_conv_output_shape_and_unread_rows_match_the_op(xs, ws, kw):
    nd = len(xs) - 2
    e = getattr(explain, f"conv{nd}d")(xs, ws, quiet=True, **kw)
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal(xs), requires_grad=True)
    w = tg.Tensor(rng.standard_normal(ws) + 3.0)  # no zero weights: zero grad = never read
    y = getattr(F, f"conv{nd}d")(x, w, **kw)
    assert y.shape == e.output_shape
    y.backward(tg.Tensor(rng.standard_normal(y.shape) + 5.0))
    g = np.abs(x.grad.data)
    for axis, unread in enumerate(e.unread):
        other = tuple(a for a in range(g.ndim) if a != axis + 2)
        zero_rows = tuple(int(i) for i in np.flatnonzero(g.sum(axis=other) == 0))
        assert zero_rows == unread


def test_unread_rows_are_named_with_the_reason():
    e = explain.conv1d((1, 1, 8), (1, 1, 3), stride=2, quiet=True)
    assert e.unread == ((7,),)
    assert "rows 7 of 0-7 are never read (the last 1 after the last window)" in str(e)
    gaps = explain.conv1d((1, 1, 9), (1, 1, 2), stride=3, quiet=True)
    assert gaps.unread == ((2, 5, 8),) and "gaps between windows" in str(gaps)


def test_same_padding_split_is_spelled_out():
    e = explain.conv2d((1, 1, 10, 36), (1, 1, 4, 5), stride=(1, 7), padding="same", quiet=True)
    text = str(e)
    assert e.pads == ((1, 2), (2, 2)) == cm.resolve_padding("same", (10, 36), (4, 5), (1, 7),
                                                            (1, 1))  # fmt: skip
    assert "= 3 -> 1 before, 2 after" in text and "= 4 -> 2 before, 2 after" in text
    assert e.output_shape[2:] == (10, 6)  # ceil(n / s)


def test_large_kernel_chooses_fft_and_reports_its_scratch():
    e = explain.conv2d((8, 64, 64, 64), (64, 64, 7, 7), padding=3, quiet=True)
    assert e.algorithm == "fft" == cm.choose_algorithm(8, 64, 64, 1, (70, 70), (7, 7), (64, 64))
    assert "FFT size (72, 72)" in str(e) and e.scratch_bytes > 0
    with cm.conv_algorithm("gemm"):
        forced = explain.conv2d((8, 64, 64, 64), (64, 64, 7, 7), padding=3, quiet=True)
    assert forced.algorithm == "gemm" and "forced by conv_algorithm('gemm')" in str(forced)


@pytest.mark.parametrize(
    "xs, ws, kw",
    [
        ((1, 4, 5, 5), (4, 2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
        ((2, 2, 7), (2, 3, 4), dict(stride=3, dilation=2)),
    ],
)
def test_conv_transpose_output_shape_matches_the_op(xs, ws, kw):
    nd = len(xs) - 2
    e = getattr(explain, f"conv_transpose{nd}d")(xs, ws, quiet=True, **kw)
    y = getattr(F, f"conv_transpose{nd}d")(tg.Tensor(np.ones(xs)), tg.Tensor(np.ones(ws)), **kw)
    assert y.shape == e.output_shape


@pytest.mark.parametrize(
    "kind, xs, kw",
    [
        ("max", (1, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ("max", (1, 1, 9), dict(kernel_size=2, stride=3, dilation=2)),
        ("avg", (2, 1, 5, 6, 4), dict(kernel_size=2)),
        (
            "avg",
            (1, 1, 8, 5),
            dict(kernel_size=(3, 2), stride=(2, 1), padding=1, count_include_pad=False),
        ),  # fmt: skip
    ],
)
def test_pool_output_shape_and_unread_rows_match_the_op(kind, xs, kw):
    nd = len(xs) - 2
    e = getattr(explain, f"{kind}_pool{nd}d")(xs, quiet=True, **kw)
    x = tg.Tensor(np.random.default_rng(1).standard_normal(xs), requires_grad=True)
    y = getattr(F, f"{kind}_pool{nd}d")(x, **kw)
    assert y.shape == e.output_shape
    if kind == "avg":  # every read row gets gradient from an average
        y.backward(tg.Tensor(np.ones(y.shape)))
        g = x.grad.data
        for axis, unread in enumerate(e.unread):
            other = tuple(a for a in range(g.ndim) if a != axis + 2)
            assert tuple(np.flatnonzero(g.sum(axis=other) == 0)) == unread


def test_prints_by_default_and_returns_an_object(capsys):
    e = explain.max_pool2d((1, 3, 7, 8), 3, stride=2, padding=1, ceil_mode=True)
    out = capsys.readouterr().out
    assert out.strip() == str(e) and "ceil((7 + 1 + 1 - 1*(3-1) - 1) / 2) + 1" in out
    assert repr(e) == "<Explanation of max_pool2d: output (1, 3, 4, 5)>"
    explain.avg_pool1d((1, 1, 4), 2, quiet=True)
    assert capsys.readouterr().out == ""


def test_bad_configurations_are_explained_or_rejected_with_numbers():
    e = explain.conv1d((1, 1, 3), (1, 1, 5), quiet=True)
    assert e.output_shape == (1, 1, 0)
    assert "the dilated kernel, 5, is longer than the padded input, 3" in str(e)
    with pytest.raises(ValueError, match=r"input has 3 channels but weight .* expects 2"):
        explain.conv2d((1, 3, 8, 8), (2, 2, 3, 3), quiet=True)
    with pytest.raises(ValueError, match=r"groups=2 must divide the input channels \(3\)"):
        explain.conv2d((1, 3, 8, 8), (2, 2, 3, 3), groups=2, quiet=True)
    with pytest.raises(ValueError, match="input_shape"):
        explain.conv2d((3, 8), (2, 3, 3, 3), quiet=True)
    # the op itself states the same numbers
    with pytest.raises(ValueError, match=r"dilated extent 5\) is larger than the padded input 3"):
        F.conv1d(tg.Tensor(np.ones((1, 1, 3))), tg.Tensor(np.ones((1, 1, 5))))


def test_cli_explain(capsys):
    argv = ["explain", "conv2d", "--input", "128x3x96x96", "--weight", "40x3x4x4", "--stride", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "-> output (128, 40, 47, 47)" in out
    assert main(["explain", "conv1d", "--input", "1x1x10", "--weight", "1x1x4",
                 "--padding", "same"]) == 0  # fmt: skip
    assert "-> 1 before, 2 after" in capsys.readouterr().out
    assert main(["explain", "max_pool2d", "--input", "1x1x7x7", "--kernel-size", "2"]) == 0
    assert "(1, 1, 3, 3)" in capsys.readouterr().out
    assert main(["explain", "conv2d", "--input", "1x3x8x8"]) == 1


def test_explain_names_the_depthwise_route_and_the_im2col_layout(threads, numpy_depthwise):
    threads(2)  # (a 5x2 kernel: not on the row windows, below)
    dw = str(explain.conv2d((16, 64, 56, 56), (64, 1, 3, 3), padding=1, groups=64, quiet=True))
    assert "no im2col" in dw and "forward, dx, dw: one axpy" in dw and "3364 entries" in dw
    assert "band-matrix" not in dw
    band = str(explain.conv2d((16, 256, 14, 14), (256, 1, 3, 3), padding=1, groups=256, quiet=True))
    assert "forward and dx: band-matrix products" in band and "5.3x" in band
    assert "dw: one dot product per sample and kernel tap" in band
    plane = str(explain.conv2d((64, 512, 7, 7), (512, 1, 3, 3), padding=1, groups=512, quiet=True))
    assert "forward, dx and dw: one product of whole planes per channel, a 49x49 matrix" in plane
    assert "49/9 = 5.4x the multiply-adds" in plane and "band-matrix" not in plane
    wide = str(
        explain.conv2d((2, 8, 300, 300), (8, 1, 3, 3), stride=2, padding=1, groups=8, quiet=True)
    )
    assert "forward, dx, dw: one axpy" in wide  # (rows too wide for band matrices)
    assert "split into 4 phase planes by the stride, 22801 entries a sample each" in wide
    small = str(explain.conv2d((64, 6, 14, 14), (16, 6, 5, 2), quiet=True))
    assert "samples-last for dx (output rows of 13 <= 16)" in small
    assert "and for the forward on one thread (runs of 13*64 = 832 >= 256)" in small
    few = str(explain.conv2d((16, 158, 9, 9), (158, 158, 2, 2), quiet=True))
    assert "not for the forward (runs of 8*16 = 128 < 256)" in few
    large = str(explain.conv2d((64, 6, 40, 40), (16, 6, 5, 5), quiet=True))
    assert "im2col layout" not in large  # 36-wide rows: batch-wide, nothing to say
    with cm.conv_layout("batch"):
        forced = str(explain.conv2d((64, 6, 14, 14), (16, 6, 5, 2), quiet=True))
    assert "im2col layout: batch (forced by conv_layout('batch'))" in forced
    assert "dx: GEMM with the transposed weight, then col2im" in small
    assert "kept from the forward for dw" in small


def test_explain_names_the_row_windows(threads):
    """LeNet-5's second conv runs all three maps by row windows; explain says so, with R's
    size and whether the forward keeps it for dw; with two threads, 256 outputs a sample
    go to the per-sample route instead."""
    threads(1)
    small = str(explain.conv2d((64, 6, 14, 14), (16, 6, 5, 5), quiet=True))
    assert "forward and dw: by row windows (2-D; 1 thread(s), each on its share" in small
    assert "14 rows x C x 5 x 10 outputs x N = 1.0 MiB" in small
    assert "(150 taps x 640 columns)" in small and "R kept from the forward for dw" in small
    assert "dx: by row windows" in small and "im2col matrix" not in small
    with cm.scratch_budget(2**18):
        chunked = str(explain.conv2d((64, 6, 14, 14), (16, 6, 5, 5), quiet=True))
    assert "7 sample(s) a chunk" in chunked and "R not kept" in chunked
    wide = str(explain.conv2d((8, 16, 40, 40), (32, 16, 3, 3), padding=1, quiet=True))
    assert "forward and dw: by row windows" in wide
    assert "dx: one sample at a time on the padded input's grid" in wide  # the wide grid
    threads(2)
    two = str(explain.conv2d((64, 6, 14, 14), (16, 6, 5, 5), quiet=True))
    assert "by row windows (2-D; 2 thread(s)" in two and "32 sample(s) a chunk" in two
    assert "dx: by row windows (on one thread, beside dw)" in two
    vol = str(explain.conv3d((8, 8, 16, 16, 16), (16, 8, 3, 3, 3), padding=1, quiet=True))
    assert "forward and dw: by row windows (3-D; 2 thread(s)" in vol
    assert "18 rows x C x 3x3 x 16x16 outputs x N = 10.1 MiB" in vol
    assert "dx: the full correlation of steps 2-4 from tap views" in vol  # (not by rows)
    per_sample = str(explain.conv2d((32, 6, 18, 18), (8, 6, 3, 3), quiet=True))
    assert "forward and dw: by row windows" not in per_sample
    assert "dx: by row windows (on one thread, beside dw)" in per_sample  # (a small conv)


def test_explain_names_the_full_correlation_and_the_per_sample_columns():
    big = str(explain.conv2d((32, 128, 16, 16), (128, 128, 3, 3), padding=1, quiet=True))
    assert "dx: the full correlation of steps 2-4 as one GEMM" in big
    assert "one sample's columns at a time" in big and "1.1 MiB a thread" in big
    strided = str(explain.conv2d((32, 128, 16, 16), (128, 128, 3, 3), stride=2, quiet=True))
    assert "then col2im" in strided  # (the full correlation needs stride 1; 7-wide rows:
    # the samples-last col2im, not the phase planes)
    wide = str(explain.conv2d((16, 128, 64, 64), (128, 128, 3, 3), stride=2, quiet=True))
    assert "on the 4 phase planes of the stride" in wide and "then col2im" not in wide
    small = str(explain.conv2d((8, 8, 20, 20), (16, 8, 3, 3), stride=2, quiet=True))
    assert "then col2im" in small  # (too few entries a sample for the planes)
    tconv = str(explain.conv_transpose2d((16, 64, 32, 32), (64, 32, 4, 4), stride=2,
                                         padding=1, quiet=True))  # fmt: skip
    assert "Algorithm of the forward (float32; the matching conv's dx): gemm" in tconv
    assert "on the 4 phase planes of the stride" in tconv


def test_explain_names_the_wide_grid_input_gradient():
    vol = str(explain.conv3d((8, 12, 16, 16, 16), (16, 12, 3, 3, 3), padding=1, quiet=True))
    assert "dx: one sample at a time on the padded input's grid" in vol  # (12 inputs: not
    assert "16x18x18 = 5184 grid positions (1.27x the 4096 windows" in vol  # on tap views)
    assert "for 4 of the 27 taps at a time" in vol  # 273 KiB of rows a tap, in 1 MiB blocks
    fewer = str(explain.conv3d((8, 16, 16, 16, 16), (8, 16, 3, 3, 3), padding=1, quiet=True))
    assert "dx: the full correlation" in fewer  # more inputs than outputs
    small = str(explain.conv3d((8, 16, 8, 8, 8), (16, 16, 3, 3, 3), padding=1, quiet=True))
    assert "padded input's grid" not in small  # 1.56x the windows' positions
    image = str(explain.conv2d((32, 32, 32, 32), (64, 32, 3, 3), padding=1, quiet=True))
    assert "32x34 = 1088 grid positions (1.06x the 1024 windows" in image
    same = str(explain.conv2d((32, 64, 32, 32), (64, 64, 3, 3), padding=1, quiet=True))
    assert "padded input's grid" not in same  # images: only with fewer inputs than outputs


def test_explain_says_kept_columns_are_written_one_sample_at_a_time():
    net96 = str(explain.conv2d((16, 40, 23, 23), (105, 40, 2, 2), quiet=True))
    assert "kept from the forward for dw" in net96
    assert "the forward writes one sample's columns at a time into it" in net96


def test_explain_names_the_volume_route(threads, monkeypatch):
    """A 3x3x3 conv with 16 or fewer filters: the forward on the stacked wide grid; dw on
    tap views with up to 8 inputs, else on that grid where the forward keeps no columns
    (on two threads: fewer than 16 filters); dx too where inputs >= outputs."""
    monkeypatch.setattr(cm, "ROWS_MIN_TAPS", 10**9)  # (no row windows: see the next test)
    threads(1)
    vol = str(explain.conv3d((8, 8, 16, 16, 16), (16, 8, 3, 3, 3), padding=1, quiet=True))
    assert "forward: on the stacked wide grid" in vol
    assert "pieces of 16 line(s) of the padded last dim's 18 entries (16 of them" in vol
    assert "= 288 columns" in vol and "4 of a sample's 16 rows a chunk" in vol
    assert "dw: from tap views of the wide grid, no columns" in vol
    assert "a slab of 4096 positions" in vol  # 256 KiB of g: 16 filters x 4096 x 4 B
    assert "im2col matrix:" not in vol and "dx: one sample at a time on the padded" in vol
    big = str(explain.conv3d((4, 8, 24, 24, 24), (16, 8, 3, 3, 3), padding=1, quiet=True))
    assert "dx: the full correlation of steps 2-4 from tap views of the padded dy" in big
    assert "a slab of 4854 positions" in big  # 4 MiB of 27 taps x 8 channels x 4 B
    more = str(explain.conv3d((8, 12, 16, 16, 16), (8, 12, 3, 3, 3), padding=1, quiet=True))
    assert "forward and dw: on the stacked wide grid" in more
    assert "dx: the full correlation of steps 2-4 on the stacked wide grid" in more
    threads(2)
    wide = str(explain.conv3d((8, 12, 16, 16, 16), (16, 12, 3, 3, 3), padding=1, quiet=True))
    assert "  forward: on the stacked wide grid" in wide  # dw: the per-sample products
    assert "not kept for dw (over 16.0 MiB or chunked): dw builds one sample's" in wide
    assert "in pieces of 3 of its 16 output rows" in wide  # 5.1 MiB of columns a sample
    kept = str(explain.conv3d((4, 16, 12, 12, 12), (8, 16, 3, 3, 3), padding=1, quiet=True))
    assert "forward: on the stacked" not in kept and "kept from the forward for dw" in kept
    many = str(explain.conv3d((8, 8, 16, 16, 16), (17, 8, 3, 3, 3), padding=1, quiet=True))
    assert "stacked wide grid" not in many  # 17 filters


def test_ceil_mode_rows_of_the_extra_window_count_as_read():
    e = explain.avg_pool1d((1, 1, 5), kernel_size=4, stride=2, ceil_mode=True, quiet=True)
    assert e.output_shape == (1, 1, 2) and e.unread == ((),)
    x = tg.Tensor(np.ones((1, 1, 5)), requires_grad=True)
    F.avg_pool1d(x, 4, 2, ceil_mode=True).sum().backward()
    assert np.all(x.grad.numpy() != 0)  # row 4 gets gradient, as explain now says
    e = explain.max_pool1d((1, 1, 7), kernel_size=3, stride=3, padding=1, dilation=2,
                           ceil_mode=True, quiet=True)  # fmt: skip
    assert 5 not in e.unread[0]


def test_conv_transpose_explain_rejects_what_the_op_rejects():
    with pytest.raises(ValueError, match="output_padding must be non-negative and smaller"):
        explain.conv_transpose1d((1, 1, 4), (1, 1, 3), stride=1, output_padding=1)
    with pytest.raises(ValueError, match="output_padding must be non-negative and smaller"):
        F.conv_transpose1d(tg.zeros(1, 1, 4), tg.zeros(1, 1, 3), stride=1, output_padding=1)


def _op_output(fn, xs, *args, **kw):
    x = tg.Tensor(np.random.default_rng(0).standard_normal(xs))
    return fn(x, *args, **kw)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_unbatched_inputs_get_the_ops_unbatched_output_shape(nd):
    xs = (3,) + (7,) * nd
    w = tg.Tensor(np.ones((4, 3) + (2,) * nd))
    e = getattr(explain, f"conv{nd}d")(xs, w.shape, quiet=True)
    assert e.output_shape == _op_output(getattr(F, f"conv{nd}d"), xs, w).shape
    assert any("unbatched input" in line for line in e.lines)
    wt = tg.Tensor(np.ones((3, 2) + (2,) * nd))
    e = getattr(explain, f"conv_transpose{nd}d")(xs, wt.shape, quiet=True)
    assert e.output_shape == _op_output(getattr(F, f"conv_transpose{nd}d"), xs, wt).shape
    e = getattr(explain, f"max_pool{nd}d")(xs, 2, quiet=True)
    assert e.output_shape == _op_output(getattr(F, f"max_pool{nd}d"), xs, 2).shape
    e = explain.conv2d((0, 3, 8, 8), (4, 3, 3, 3), quiet=True)  # an empty batch, as the op
    assert e.output_shape == (0, 4, 6, 6)


def test_explain_checks_pooling_and_groups_arguments_as_the_ops():
    for kernel in (0, -1):
        with pytest.raises(ValueError, match="kernel_size"):
            explain.avg_pool1d((1, 1, 5), kernel, stride=1, quiet=True)
        with pytest.raises(ValueError, match="kernel_size"):
            F.avg_pool1d(tg.zeros(1, 1, 5), kernel, stride=1)
    e = explain.max_pool2d((1, 1, 6, 6), 2, stride=(), quiet=True)  # () means the default
    assert e.output_shape == F.max_pool2d(tg.zeros(1, 1, 6, 6), 2, stride=()).shape
    e = explain.conv2d((1, 4, 6, 6), (4, 2, 3, 3), groups=np.int64(2), quiet=True)
    assert e.output_shape == (1, 4, 4, 4)
    for bad in (True, 0, 2.0):
        with pytest.raises(ValueError, match="groups must be a positive int"):
            explain.conv2d((1, 4, 6, 6), (4, 2, 3, 3), groups=bad, quiet=True)
        with pytest.raises(ValueError, match="groups must be a positive int"):
            explain.conv_transpose2d((1, 4, 6, 6), (4, 2, 3, 3), groups=bad, quiet=True)


def test_conv_transpose_vjp_line_crops_when_output_padding_reaches_the_stride():
    kw = dict(stride=1, padding=1, output_padding=2, dilation=3)
    e = explain.conv_transpose1d((1, 2, 5), (2, 3, 3), quiet=True, **kw)
    line = next(t for t in e.lines if "-> dx = conv1d" in t)
    assert "padding ((1, -1),)" in line and "a negative pad crops dy" in line
    # what the line says: crop dy's last row, pad (1, 0), correlate: the input's shape
    x = tg.Tensor(np.random.default_rng(0).standard_normal((1, 2, 5)), requires_grad=True)
    w = tg.Tensor(np.random.default_rng(1).standard_normal((2, 3, 3)))
    y = F.conv_transpose1d(x, w, **kw)
    g = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(tg.Tensor(g))
    dx = F.conv1d(tg.Tensor(g[..., :-1]), w, padding=((1, 0),), dilation=3)
    np.testing.assert_allclose(dx.numpy(), x.grad.numpy(), rtol=1e-12)


def test_ceil_mode_size_line_agrees_with_the_output():
    e = explain.max_pool1d((1, 1, 1), 2, ceil_mode=True, quiet=True)
    assert e.output_shape == F.max_pool1d(tg.zeros(1, 1, 1), 2, ceil_mode=True).shape == (1, 1, 1)
    assert e.lines[3].endswith("= ceil(-1 / 2) + 1 = 1")


def test_a_dim_no_window_reads_leaves_the_whole_input_unread():
    kw = dict(stride=1, padding=((2, 1), (0, 0)), dilation=(3, 1))
    e = explain.conv2d((1, 1, 1, 4), (1, 1, 2, 2), quiet=True, **kw)
    assert e.unread == ((0,), (0, 1, 2, 3))
    x = tg.Tensor(np.ones((1, 1, 1, 4)), requires_grad=True)
    F.conv2d(x, tg.Tensor(np.ones((1, 1, 2, 2))), **kw).sum().backward()
    assert not x.grad.numpy().any()
    assert any("the whole input gradient is zero" in t for t in e.lines)
    # a row inside the last window that the dilation skips is a gap, not "after the last"
    e = explain.conv1d((1, 1, 6), (1, 1, 2), stride=2, padding="same", dilation=3, quiet=True)
    line = next(t for t in e.lines if "never read" in t)
    assert "rows 0, 5" in line and "after the last window" not in line and "gaps" in line


def test_numpy_int_groups_print_as_ints():
    e = explain.conv_transpose2d((1, 4, 5, 5), (4, 1, 3, 3), groups=np.int64(2), quiet=True)
    assert e.output_shape == (1, 2, 7, 7) and all(type(v) is int for v in e.output_shape)
    assert not any("np.int64" in line for line in e.lines)


def test_explain_names_the_routes_the_backward_maps_take(threads, monkeypatch):
    """explain's dx line is the route the op runs: a one-channel conv's FFT backward (its
    own estimate), and a volume's dx decided on one thread where it runs beside dw."""
    import numpy as np

    import tinygrad_np as tg
    import tinygrad_np.nn.functional as F
    from tinygrad_np import convmath as cm

    ran = []

    def spy(name):
        real = getattr(cm, name)

        def run(*args, **kwargs):
            ran.append(name)
            return real(*args, **kwargs)

        return run

    for name in ("correlate_transpose_fft", "correlate_transpose_wide",
                 "correlate_transpose_taps"):  # fmt: skip
        monkeypatch.setattr(cm, name, spy(name))
    one = str(explain.conv1d((1, 1, 100000), (1, 1, 40), quiet=True))
    assert "dx: FFT, by the backward maps' own estimate" in one
    x = tg.Tensor(np.ones((1, 1, 100000), np.float32), requires_grad=True)
    F.conv1d(x, tg.Tensor(np.ones((1, 1, 40), np.float32))).sum().backward()
    assert ran == ["correlate_transpose_fft"]
    threads(2)
    ran.clear()
    vol = str(explain.conv3d((4, 8, 16, 16, 16), (16, 8, 3, 3, 3), padding=1, quiet=True))
    assert "dx: one sample at a time on the padded input's grid" in vol
    xv = tg.Tensor(np.ones((4, 8, 16, 16, 16), np.float32), requires_grad=True)
    wv = tg.Tensor(np.ones((16, 8, 3, 3, 3), np.float32), requires_grad=True)
    F.conv3d(xv, wv, padding=1).sum().backward()
    assert ran == ["correlate_transpose_wide"]


@pytest.mark.parametrize(
    "xs, ws, kw, says, runs",
    [((32, 2, 12, 12), (4, 2, 5, 5), {}, "then col2im", "correlate_transpose_samples_last"),
     ((1, 4, 8, 8, 8), (16, 4, 2, 2, 2), {"padding": 1}, "tap views", "correlate_transpose_taps")],
)  # fmt: skip
def test_explained_input_gradient_route_is_the_one_run_on_two_threads(
    threads, monkeypatch, xs, ws, kw, says, runs
):
    """On two threads a conv's backward maps share them only from 1M multiply-adds
    (ops/conv.maps_side_by_side); below, dx runs on both threads and takes other routes.
    explain assumed dx ran on one thread beside dw whenever the maps were below the upper
    bound, and named the row-window or wide-grid route the op did not take."""
    threads(2)
    nd = len(xs) - 2
    lines = [ln for ln in getattr(explain, f"conv{nd}d")(xs, ws, quiet=True, **kw).lines
             if ln.startswith("  dx")]  # fmt: skip
    assert len(lines) == 1 and says in lines[0]
    ran = []
    real = getattr(cm, runs)
    monkeypatch.setattr(cm, runs, lambda *a, **k: (ran.append(runs), real(*a, **k))[1])
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal(xs).astype(np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal(ws).astype(np.float32), requires_grad=True)
    getattr(F, f"conv{nd}d")(x, w, **kw).sum().backward()
    assert ran == [runs]


def test_row_windows_not_kept_explain_the_weight_gradients_own_route(threads, monkeypatch):
    """Where the forward's row windows are not kept for dw (over the cache), dw runs
    correlate_weight_grad's GEMM route: explain said "forward and dw: by row windows ...
    dw builds its own" and described no route for it."""
    threads(1)
    xs, ws = (16, 32, 64, 64), (32, 32, 3, 3)
    lines = explain.conv2d(xs, ws, quiet=True).lines
    rows = [ln for ln in lines if "by row windows" in ln]
    assert len(rows) == 1 and rows[0].startswith("  forward: by row windows")
    assert "dw takes the GEMM route below" in rows[0]
    assert any("dw builds one sample's columns" in ln for ln in lines)
    ran = []
    real = cm.correlate_weight_grad_gemm
    monkeypatch.setattr(cm, "correlate_weight_grad_gemm",
                        lambda *a, **k: (ran.append(1), real(*a, **k))[1])  # fmt: skip
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal(xs).astype(np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal(ws).astype(np.float32), requires_grad=True)
    F.conv2d(x, w).sum().backward()
    assert ran == [1]
