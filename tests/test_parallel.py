"""The thread helper behind conv and pooling loops: slicing, thread counts, errors."""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np import _parallel as par


@pytest.mark.parametrize("n, parts", [(1, 4), (5, 2), (7, 3), (64, 2), (3, 3)])
def test_split_covers_the_range_once_in_order(n, parts):
    slices = par.split(n, parts)
    assert len(slices) == min(n, parts)
    covered = [i for s in slices for i in range(n)[s]]
    assert covered == list(range(n))
    assert all(s.stop > s.start for s in slices)


def test_for_slices_runs_every_slice_on_several_threads(threads):
    threads(2)
    seen: dict[int, set] = {}
    out = np.zeros(10)
    barrier = threading.Barrier(2, timeout=10)  # deadlocks (times out) unless 2 run at once

    def fn(s):
        barrier.wait()
        seen.setdefault(threading.get_ident(), set()).update(range(10)[s])
        out[s] += 1

    par.for_slices(10, fn, work=1 << 30)
    assert len(seen) == 2
    np.testing.assert_array_equal(out, np.ones(10))


def test_small_jobs_and_one_thread_stay_on_the_caller(threads):
    idents = []
    par.for_slices(8, lambda s: idents.append(threading.get_ident()), work=10)
    threads(1)
    par.for_slices(8, lambda s: idents.append(threading.get_ident()), work=1 << 30)
    assert idents == [threading.get_ident()] * 2


def test_nested_calls_run_inline(threads):
    threads(2)
    calls = []

    def inner(s):
        calls.append(("inner", s))

    def outer(s):
        par.for_slices(4, inner, work=1 << 30)

    par.for_slices(2, outer, work=1 << 30)
    assert sorted(c[1].stop - c[1].start for c in calls) == [4, 4]  # not split again


def test_a_worker_exception_reaches_the_caller(threads):
    threads(2)

    def fn(s):
        if s.start > 0:
            raise KeyError("boom in a worker")

    with pytest.raises(KeyError, match="boom in a worker"):
        par.for_slices(4, fn, work=1 << 30)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="set_num_threads: n"):
        par.set_num_threads(bad)


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("TINYGRAD_NP_NUM_THREADS", "3")
    assert par._default_threads() == 3
    monkeypatch.delenv("TINYGRAD_NP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert par._default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2,1")  # (OpenMP's nested list: the outer count;
    assert par._default_threads() == 4  # it raised ValueError at the first op)
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        par._default_threads()


def test_for_samples_splits_channels_when_the_batch_is_small(threads):
    threads(2)
    got = []
    par.for_samples(1, 6, lambda idx: got.append(idx), work=1 << 30)
    assert sorted((i[1].start, i[1].stop) for i in got) == [(0, 3), (3, 6)]
    assert all(i[0] == slice(None) for i in got)


@pytest.mark.parametrize(
    "m, k, n", [(300, 200, 8), (8, 200, 300), (25, 100352 // 16, 6), (3, 5, 7), (64, 64, 64)]
)
@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_matmul_matches_numpy_in_every_split(threads, monkeypatch, m, k, n, nthreads):
    threads(nthreads)
    monkeypatch.setitem(par._state, "own_blas", True)  # split even where BLAS is not OpenBLAS
    monkeypatch.setattr(par, "MIN_MATMUL_MACS", 1)
    monkeypatch.setattr(par, "SPLIT_K_MACS", 1)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((n, k)).T  # a transposed view, as the conv weight gradient uses
    np.testing.assert_allclose(par.matmul(a, b), a @ b, rtol=1e-12, atol=1e-10)
    out = np.full((m, n), np.nan)
    assert par.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-10)


def test_matmul_of_stacks_falls_back_to_numpy():
    a = np.ones((2, 3, 4))
    np.testing.assert_array_equal(par.matmul(a, np.ones((4, 5))), np.full((2, 3, 5), 4.0))


def test_blas_is_left_alone_when_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(par, "_openblas_thread_setters", lambda: [calls.append])
    monkeypatch.setitem(par._state, "own_blas", par._state["own_blas"])
    monkeypatch.setenv("TINYGRAD_NP_KEEP_BLAS_THREADS", "1")
    assert par.take_over_blas() is False and calls == []
    monkeypatch.delenv("TINYGRAD_NP_KEEP_BLAS_THREADS")
    assert par.take_over_blas() is True and calls == [1]


def test_tinygrad_np_threads_the_products_exactly_when_blas_is_openblas():
    """With NumPy on OpenBLAS the thread setter must be found and BLAS taken over; with
    another BLAS, tinygrad_np must leave products to it."""
    np.ones((64, 64)) @ np.ones((64, 64))  # NumPy's BLAS is loaded
    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    found = bool(par._openblas_thread_setters())
    assert found == ("openblas" in config), f"NumPy's BLAS: {config}"
    keep = os.environ.get("TINYGRAD_NP_KEEP_BLAS_THREADS", "0") not in ("", "0")
    assert par.owns_blas() == (found and not keep)


def test_blas_threads_block_restores_one_thread(monkeypatch):
    calls = []
    monkeypatch.setitem(par._state, "blas_setters", [calls.append])
    monkeypatch.setitem(par._state, "own_blas", True)
    with par.blas_threads(4):
        assert calls == [4]
    assert calls == [4, 1]


def _step_grads(nthreads):
    import tinygrad_np as tg
    import tinygrad_np.nn.functional as F

    par.set_num_threads(nthreads)
    rng = np.random.default_rng(5)
    x = tg.Tensor(rng.standard_normal((24, 8, 40, 40)).astype(np.float32))
    w = tg.Tensor(rng.standard_normal((32, 8, 3, 3)).astype(np.float32), requires_grad=True)
    w2 = tg.Tensor(rng.standard_normal((16, 32, 3, 3)).astype(np.float32), requires_grad=True)
    h = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 3, 2)
    loss = (F.conv2d(h, w2, stride=2) ** 2).mean()
    return [t.data for t in tg.grad(loss, [w, w2])]


def test_threaded_conv_pool_step_is_repeatable_and_matches_one_thread(threads, monkeypatch):
    """Big enough that im2col, col2im, pooling and the products are split: two runs with
    2 threads agree bit for bit (training is reproducible), and they agree with one
    thread to float32 rounding (a split product may sum in another order)."""
    monkeypatch.setitem(par._state, "own_blas", True)
    one = _step_grads(1)
    two_a, two_b = _step_grads(2), _step_grads(2)
    for a, b, c in zip(one, two_a, two_b, strict=True):
        np.testing.assert_array_equal(b, c)
        # (the gradients reach 400-800: an element near 0 can differ by float32 rounding
        # of those, about 1e-7 of the largest)
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6 * np.abs(a).max())


def _threaded_sum_in_child(queue):
    out = np.zeros(8)

    def fn(s):
        out[s] += 1

    par.for_slices(8, fn, work=1 << 30)
    queue.put(out.tolist())


def test_a_forked_child_gets_a_working_pool(threads):
    """A child forked after the pool started inherits the pool object but not its threads;
    it must make its own instead of waiting forever."""
    import multiprocessing

    threads(2)
    par.for_slices(4, lambda s: None, work=1 << 30)  # the pool's threads exist now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_threaded_sum_in_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0, "the forked child hung or failed"
    assert queue.get(timeout=5) == [1.0] * 8


def test_both_runs_the_two_calls_on_two_threads(threads):
    threads(2)
    barrier = threading.Barrier(2, timeout=10)  # times out unless both run at once

    def call(value):
        barrier.wait()
        return value, threading.get_ident()

    (a, ta), (b, tb) = par.both(lambda: call("a"), lambda: call("b"))
    assert (a, b) == ("a", "b") and ta != tb
    threads(1)
    assert par.both(lambda: 1, lambda: 2) == (1, 2)


def test_both_re_raises_and_waits(threads):
    threads(2)
    done = []

    def slow():
        import time

        time.sleep(0.05)
        done.append(True)

    with pytest.raises(ZeroDivisionError):
        par.both(lambda: 1 / 0, slow)
    assert done == [True]  # the second call had finished before the error came out
    with pytest.raises(KeyError):
        par.both(lambda: 1, lambda: {}["missing"])


@pytest.mark.parametrize("bad", [0, 31])
def test_the_callers_numpy_error_state_holds_on_the_pools_threads(threads, bad):
    """NumPy's error state is per thread: np.errstate(invalid="raise") held only for the
    slice the calling thread ran, so with 2 threads an inf - inf in the second half of the
    batch gave NaN silently (and "ignore" held only there too)."""
    import tinygrad_np.nn.functional as F

    threads(2)
    x = np.zeros((32, 32, 56, 56), np.float32)
    x[bad, 0, 0, :2] = [np.inf, -np.inf]
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        F.avg_pool2d(tg.Tensor(x), 2)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(F.avg_pool2d(tg.Tensor(x), 2).data).sum() == 1
    calls = []  # (mode "call": the callback too; carrying the mode alone raised NameError)
    with np.errstate(invalid="call", call=lambda kind, flag: calls.append(kind)):
        F.avg_pool2d(tg.Tensor(x), 2)
    assert calls and all("invalid" in k for k in calls)
