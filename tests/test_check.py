"""The conformance kit: passes correct user code, catches planted bugs, shrinks, never raises."""

import numpy as np
import pytest
import user_conv as uc

from tinygrad_np import check
from tinygrad_np.cli import main


def test_correct_reference_passes_every_dim_and_the_whole_sweep():
    report = check.conv(forward=uc.conv_forward, backward=uc.conv_backward)
    assert report.ok, str(report)
    assert report.failures == [] and report.first is None
    assert len(report.checked) == 48  # 16 configurations x 1-D, 2-D, 3-D
    labels = " ".join(report.checked)
    for feature in ("stride 2 leaves a row over", "asymmetric padding", "SAME padding",
                    "dilation 2", "groups 2", "depthwise", "non-square kernel"):  # fmt: skip
        assert feature in labels
    assert str(report).startswith("check.conv (forward and backward): OK, 48 configurations")


def test_sweep_catches_a_bug_of_depthwise_convs_with_a_channel_multiplier_only():
    """A dw wrong only where each channel has several filters (a hunt: the sweep's one
    depthwise configuration had one filter a channel, and this passed)."""

    def backward(x, w, b, dy, stride, padding, dilation, groups):
        dx, dw, db = uc.conv_backward(x, w, b, dy, stride, padding, dilation, groups)
        if groups > 1 and w.shape[1] == 1 and w.shape[0] > x.shape[1]:
            dw = dw[..., ::-1].copy()
        return dx, dw, db

    report = check.conv(forward=uc.conv_forward, backward=backward)
    assert not report.ok and report.failures
    assert all("3 filters a channel" in f.config.label and f.what == "dw"
               for f in report.failures), report.failures  # fmt: skip


def test_sweep_really_leaves_rows_over_and_splits_same_unevenly():
    cfgs = {c.label: c for c in check.conv_configs(2)}
    c = cfgs["stride 2 leaves a row over"]
    leftover = [(n - k) % s for n, k, s in zip(c.size, c.kernel, c.stride, strict=True)]
    assert all(r > 0 for r in leftover)
    same = cfgs["SAME padding, stride 1, even kernel"]
    assert any(pb != pa for pb, pa in same.padding)


def _features(cfg):
    return {
        "stride": any(s > 1 for s in cfg.stride),
        "asym": any(pb != pa for pb, pa in cfg.padding),
        "groups": cfg.groups > 1,
        "dilation": any(d > 1 for d in cfg.dilation),
    }


@pytest.mark.parametrize(
    "bug, what, needs",
    [
        ("no_stride_dilation", "dx", "stride"),
        ("wrong_padding_side", "dx", "asym"),
        ("dw_wrong_axis", "dw", None),
        ("no_groups_split", "dx", "groups"),
        ("kernel_not_flipped", "dx", None),
    ],
)
def test_planted_bug_is_caught_and_shrunk(bug, what, needs):
    report = check.conv(forward=uc.conv_forward, backward=uc.make_backward(bug), ndim=2)
    assert not report.ok
    first = report.first
    assert first.function == "backward" and first.what == what
    assert first.shrunk_from is not None
    assert first.config.cost() < first.shrunk_from.cost()
    feats = _features(first.config)
    if needs:
        assert feats[needs], first.config.describe()
        # shrinking removed everything the bug does not need
        assert [k for k, v in feats.items() if v] == [needs]
    else:
        assert not any(feats.values())
    text = str(report)
    assert "shrunk to the smallest configuration" in text and first.config.describe() in text
    if first.kind == "value":
        assert f"worst element {what}[" in text and first.index is not None
        assert first.expected != first.actual
    else:
        assert first.kind == "shape" and "expected shape" in text
    assert all(f.config.ndim == 2 for f in report.failures)


def test_value_failure_names_the_worst_element_exactly():
    report = check.conv(backward=uc.make_backward("no_stride_dilation"), ndim=1)
    f = report.first
    # reproduce it: the element named must be the one with the largest error
    cfg = f.config
    rng = check._rng(cfg, 0)
    x, w = rng.standard_normal(cfg.x_shape), rng.standard_normal(cfg.w_shape)
    b = rng.standard_normal(cfg.out_channels) if cfg.bias else None
    y, dy, grads = check._conv_reference(cfg, x, w, b, 0)
    args = (x, w, b, dy, cfg.stride, cfg.padding, cfg.dilation, cfg.groups)
    dx = uc.conv_backward(*args, bug="no_stride_dilation")[0]
    err = np.abs(dx - grads[0])
    assert f.index == tuple(int(i) for i in np.unravel_index(err.argmax(), err.shape))
    assert f.actual == pytest.approx(dx[f.index]) and f.expected == pytest.approx(grads[0][f.index])


def test_signature_restricts_the_sweep():
    report = check.conv(forward=uc.conv2d_forward_nodilation)
    assert report.ok, str(report)
    assert any("no `dilation` parameter" in n for n in report.notes)
    assert any("no `groups` parameter" in n for n in report.notes)
    for d in (1, 2, 3):
        for c in check.conv_configs(d, dilation=False, groups=False):
            assert c.groups == 1 and set(c.dilation) == {1}


def _only_2d(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape  # a learner's 2-D-only code fails to unpack other ranks
    return uc.conv_forward(x, w, b, stride, padding, dilation, groups)


def test_unsupported_dims_are_skipped_with_a_note_unless_asked_for():
    report = check.conv(forward=_only_2d)
    assert report.ok, str(report)
    assert len(report.checked) == 16 and all(c.startswith("2-D") for c in report.checked)
    notes = " ".join(report.notes)
    assert "1-D skipped" in notes and "3-D skipped" in notes and "pass ndim=1" in notes
    explicit = check.conv(forward=_only_2d, ndim=(1, 2))
    assert not explicit.ok
    f = explicit.failures[0]
    assert f.kind == "exception" and "n, c, h, wd = x.shape" in f.traceback
    assert "ValueError" in f.traceback


def test_a_backward_that_raises_where_the_forward_works_is_a_failure_not_a_skip():
    def backward(x, w, b, dy, stride, padding, dilation, groups):
        n, c, h, wd = x.shape  # 2-D only, while the forward handles every rank
        return uc.conv_backward(x, w, b, dy, stride, padding, dilation, groups)

    report = check.conv(forward=uc.conv_forward, backward=backward)
    assert not report.ok
    assert {f.function for f in report.failures} == {"backward"}
    assert {f.config.ndim for f in report.failures} == {1, 3}
    only_backward = check.conv(backward=backward)  # (no forward ran: 1-D and 3-D skipped)
    assert only_backward.ok and "3-D skipped" in " ".join(only_backward.notes)


def test_exceptions_in_user_code_are_failures_not_crashes():
    def backward(x, w, b, dy, stride, padding, dilation, groups):
        if groups > 1:
            raise IndexError("my groups code is unfinished")
        return uc.conv_backward(x, w, b, dy, stride, padding, dilation, groups)

    report = check.conv(backward=backward, ndim=2)
    assert not report.ok
    assert {f.kind for f in report.failures} == {"exception"}
    assert report.first.config.groups > 1
    assert "IndexError: my groups code is unfinished" in str(report)
    assert 'raise IndexError("my groups code is unfinished")' in str(report)


def test_wrong_output_shape_reports_both_shapes_and_the_formula():
    def forward(x, w, b, stride, padding):
        y = uc.conv_forward(x, w, b, stride, padding, [1] * (x.ndim - 2), 1)
        return y[..., :-1] if any(s > 1 for s in stride) else y  # off by one with stride

    report = check.conv(forward=forward, ndim=1)
    f = report.first
    assert f.kind == "shape" and f.expected_shape[-1] == f.actual_shape[-1] + 1
    assert f"expected shape {f.expected_shape}, got {f.actual_shape}" in str(report)
    assert "floor((" in f.hint  # the explain formula with the numbers filled in


def test_db_may_be_left_out_and_bias_free_signatures_work():
    def backward(x, w, b, dy, stride, padding, dilation, groups):
        dx, dw, _ = uc.conv_backward(x, w, b, dy, stride, padding, dilation, groups)
        return dx, dw, None

    assert check.conv(backward=backward, ndim=1).ok

    def nobias_fwd(x, w, stride, padding, dilation, groups):
        return uc.conv_forward(x, w, None, stride, padding, dilation, groups)

    def nobias_bwd(x, w, dy, stride, padding, dilation, groups):
        return uc.conv_backward(x, w, None, dy, stride, padding, dilation, groups)[:2]

    report = check.conv(nobias_fwd, nobias_bwd, ndim=2)
    assert report.ok, str(report) and any("no bias" in n for n in report.notes)


def test_unusable_arguments_raise_naming_the_argument():
    with pytest.raises(TypeError, match="forward=..., backward="):
        check.conv()
    with pytest.raises(TypeError, match="forward must be a function"):
        check.conv(forward=42)
    with pytest.raises(ValueError, match="ndim"):
        check.conv(forward=uc.conv_forward, ndim=4)
    with pytest.raises(TypeError, match="backward must take"):
        check.conv(backward=lambda x, dy: x)
    with pytest.raises(ValueError, match="atol"):
        check.conv(forward=uc.conv_forward, atol=-1)
    with pytest.raises(ValueError, match="kind"):
        check.pool(forward=uc.max_pool_forward, kind="min")


def test_pooling_reference_passes_and_overwrite_bug_is_caught():
    assert check.pool(uc.max_pool_forward, uc.max_pool_backward, kind="max").ok
    assert check.pool(uc.avg_pool_forward, uc.avg_pool_backward, kind="avg").ok

    def bad(x, dy, kernel_size, stride, padding, dilation, ceil_mode):
        return uc.max_pool_backward(x, dy, kernel_size, stride, padding, dilation, ceil_mode,
                                    bug="overwrite_overlaps")  # fmt: skip

    report = check.pool(backward=bad, kind="max", ndim=2)
    assert not report.ok
    cfg = report.first.config
    assert any(s < k for s, k in zip(cfg.stride, cfg.kernel, strict=True))
    assert "add (+=)" in report.first.hint


def test_vjp_against_finite_differences_and_the_framework():
    def f(a, b):
        return np.tanh(a @ b)

    def good(a, b, dy):
        g = dy * (1 - np.tanh(a @ b) ** 2)
        return g @ b.T, a.T @ g

    def bad(a, b, dy):
        ga, gb = good(a, b, dy)
        gb[:, -1] = 0.0  # forgets the last column
        return ga, gb

    assert check.vjp(f, good, (4, 5), (5, 6)).ok
    report = check.vjp(f, bad, (4, 5), (5, 6))
    assert not report.ok and report.first.what == "grad[1]"
    assert report.first.config.shapes == ((1, 1), (1, 1))  # shrunk, inner dims together
    ref = check.vjp(f, bad, configs=[((2, 3), (3, 2))], reference=lambda a, b: (a @ b).tanh())
    assert not ref.ok and "vs the framework" in str(ref)
    boom = check.vjp(f, lambda a, b, dy: 1 / 0, (2, 2), (2, 2))
    assert boom.first.kind == "exception" and "ZeroDivisionError" in str(boom)


def test_cli_check_runs_module_functions(monkeypatch, capsys, tmp_path):
    src = tmp_path / "mine.py"
    src.write_text(
        "import user_conv as uc\n"
        "def backward(x, w, b, dy, stride, padding, dilation, groups):\n"
        "    return uc.conv_backward(x, w, b, dy, stride, padding, dilation, groups,\n"
        "                            bug='no_stride_dilation')\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["check", "mine:backward", "--ndim", "2"]) == 1
    out = capsys.readouterr().out
    assert "check.conv (backward)" in out and "stride > 1" in out
    assert main(["check", f"{src}:backward", "--ndim", "1"]) == 1


def test_ties_and_the_ceil_mode_drop_rule_are_swept():
    # (a backward sending a tie to the last maximum, and a ceil_mode that keeps a last
    # window starting in the padding, both passed the whole sweep)
    def last_tie(x, dy, kernel_size, stride, padding, dilation, ceil_mode):
        return uc.max_pool_backward(x, dy, kernel_size, stride, padding, dilation, ceil_mode,
                                    bug="last_tie")  # fmt: skip

    report = check.pool(backward=last_tie, kind="max")
    assert not report.ok
    assert report.first.config.ties and "tied maxima" in report.first.hint
    assert "x rounded to integers" in str(report)

    def keeps_window(x, kernel_size, stride, padding, dilation, ceil_mode):
        return uc.max_pool_forward(x, kernel_size, stride, padding, dilation, ceil_mode,
                                   bug="keep_window_in_padding")  # fmt: skip

    report = check.pool(forward=keeps_window, kind="max", ndim=1)
    assert not report.ok  # (its window wholly in the padding has no input to take the max of)
    assert report.first.kind in ("shape", "exception")
    cfg = report.first.config
    assert cfg.ceil_mode and any(cfg.padding)
    labels = [c.label for c in check.pool_configs(2, "avg")]
    assert "ceil_mode and padding without counting it" in labels
    assert not any(c.ties for c in check.pool_configs(2, "avg"))  # (ties matter for max only)


def test_a_forward_returning_none_is_a_type_failure():
    report = check.conv(forward=lambda x, w, b, stride, padding: None, ndim=(1,))
    assert not report.ok and report.first.kind == "type"
    assert "got None (nothing computed)" in report.first.message


def test_a_backward_returning_none_gradients_fails():
    """dx and dw returned as None fail (nothing would be compared; an empty submission
    passed with exit code 0); only db may be None. A VJP's None counts as a zero
    gradient: it passes only where the gradient is zero."""
    report = check.conv(backward=lambda x, w, b, dy, stride, padding: (None, None, None),
                        ndim=(2,))  # fmt: skip
    assert not report.ok and report.first.kind == "type" and report.first.what == "dx"
    assert "got None (nothing computed)" in str(report)

    def half(x, w, b, dy, stride, padding):
        return uc.conv_backward(x, w, b, dy, stride, padding, (1, 1), 1)[0], None, None

    report = check.conv(backward=half, ndim=(2,))
    assert not report.ok and report.first.what == "dw"
    report = check.vjp(lambda a, b: a * b, lambda a, b, dy: (None, None), (3,), (3,))
    assert not report.ok and report.first.what == "grad[0]"
    assert check.vjp(lambda a, b: a * 2.0, lambda a, b, dy: (2 * dy, None), (3,), (3,)).ok


def test_the_overlap_hint_needs_two_windows():
    """"overlapping windows" is hinted only where a dim has two windows that share cells
    (a failure shrunk to one window a row was told to add overlapping gradients)."""
    one = check.PoolConfig(1, 1, (3, 2), (1, 2), (2, 1), (0, 0), (1, 1), ties=True)
    assert "overlapping" not in (check._pool_hint(one, "max") or "")
    two = check.PoolConfig(1, 1, (3, 3), (1, 2), (2, 1), (0, 0), (1, 1), ties=True)
    assert "overlapping" in check._pool_hint(two, "max")


def test_cli_check_loads_forward_and_backward_options_as_the_positional_ones(tmp_path, capsys):
    bad = tmp_path / "broken.py"
    bad.write_text("def forward(x, w:\n    pass\n")
    for option in ("--forward", "--backward"):
        assert main(["check", option, f"{bad}:forward"]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and "SyntaxError" in err
    good = tmp_path / "two.py"
    good.write_text("def f1(x, w, b, stride, padding):\n    pass\n"
                    "def f2(x, w, b, stride, padding):\n    pass\n")  # fmt: skip
    assert main(["check", f"{good}:f1", f"{good}:f2"]) == 1
    assert "a second forward" in capsys.readouterr().err
