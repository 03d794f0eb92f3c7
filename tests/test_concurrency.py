"""Threads, the worker pool and fork, as a concurrency check found them (fourteenth
session): a VJP run on a pool thread must not record, hooks may change the hook list,
backward calls in two threads may share a leaf, DataParallel may be called from two
threads, the conv settings' ``with`` blocks may overlap across threads, and the pool
survives being replaced, interrupted or inherited by a forked child."""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import _parallel as par
from tinygrad_np import convmath as cm
from tinygrad_np import nn


def test_a_vjp_on_a_pool_thread_records_nothing_in_a_plain_backward(threads):
    # the conv's weight gradient runs on a pool thread beside the input gradient
    threads(2)
    tg.manual_seed(0)
    x = tg.randn(8, 4, 16, 16, requires_grad=True)
    w = tg.randn(8, 4, 3, 3, requires_grad=True)
    seen = []
    w.register_hook(lambda g: seen.append(g.requires_grad))
    (gw,) = tg.autograd.grad(F.conv2d(x, w, padding=1).sum(), [w])
    assert not gw.requires_grad and gw.grad_fn is None and seen == [False]
    with pytest.raises(RuntimeError, match="does not require grad"):
        (gw * gw).sum().backward()
    # and with create_graph the pool thread records, as the caller does
    (gw,) = tg.autograd.grad(F.conv2d(x, w, padding=1).sum(), [w], create_graph=True)
    assert gw.requires_grad


def test_a_hook_that_removes_itself_does_not_skip_the_next_one():
    x = tg.tensor(np.ones(3), requires_grad=True)
    calls = []

    def once(g):
        calls.append("once")
        handle.remove()

    handle = x.register_hook(once)
    x.register_hook(lambda g: g * 10)
    (x * 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [10.0, 10.0, 10.0])
    assert calls == ["once"]


def test_a_hook_that_adds_a_hook_runs_once_per_backward():
    x = tg.tensor(np.ones(3), requires_grad=True)
    calls = []

    def rearm(g):
        calls.append(1)
        x.register_hook(rearm)  # (takes effect from the next backward on, as in PyTorch)

    x.register_hook(rearm)
    (x * 2).sum().backward()
    assert calls == [1]


def test_backward_in_two_threads_adds_both_gradients_to_a_shared_leaf():
    leaves = [tg.tensor(np.ones((1024, 1024), np.float32), requires_grad=True) for _ in range(4)]

    def backward(barrier):
        s = leaves[0] * 1.0
        for p in leaves[1:]:
            s = s + p
        barrier.wait()
        s.sum().backward()  # each leaf's gradient: ones

    for _ in range(20):
        for p in leaves:  # (an existing .grad: the read-add-write the threads race on)
            p.grad = tg.zeros(*p.shape)
        barrier = threading.Barrier(2, timeout=10)
        ts = [threading.Thread(target=backward, args=(barrier,)) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for p in leaves:
            assert (p.grad.numpy() == 2.0).all()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_data_parallel_called_from_two_threads_gives_each_its_own_rows():
    model = nn.DataParallel(nn.Linear(3, 2), workers=2)
    xs = [np.arange(24, dtype=np.float32).reshape(8, 3) + 100 * i for i in range(2)]
    expect = [model.module(tg.tensor(x)).numpy() for x in xs]
    errors = []

    def run(i):
        try:
            for _ in range(30):
                with tg.no_grad():
                    y = model(tg.tensor(xs[i])).numpy()
                if not np.allclose(y, expect[i], atol=1e-5):
                    errors.append(i)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    try:
        ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=120)
    finally:
        model.close()
    assert errors == []


def test_settings_blocks_of_two_threads_ending_out_of_order_restore_the_setting():
    before = (cm.get_conv_algorithm(), cm._settings["scratch_bytes"])
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    inside_b = []

    def thread_a():
        with cm.conv_algorithm("fft"), cm.scratch_budget(4096):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def thread_b():
        a_in.wait(10)
        with cm.conv_algorithm("gemm"), cm.scratch_budget(1 << 30):
            b_in.set()
            a_out.wait(10)  # A's blocks have ended: B's values still hold
            inside_b.append((cm.get_conv_algorithm(), cm._settings["scratch_bytes"]))

    ts = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=30)
    assert inside_b == [("gemm", 1 << 30)]
    assert (cm.get_conv_algorithm(), cm._settings["scratch_bytes"]) == before


def test_a_task_for_a_pool_another_thread_stopped_meanwhile_goes_to_the_new_pool(
    threads, monkeypatch
):
    # the race: _pool() hands out the pool, another thread replaces or stops it (a larger
    # set_num_threads, DataParallel starting its workers) before the task is submitted
    threads(2)
    stale = ThreadPoolExecutor(1)
    stale.shutdown()
    real, calls = par._pool, []

    def racy(workers):
        calls.append(workers)
        return stale if len(calls) == 1 else real(workers)

    monkeypatch.setattr(par, "_pool", racy)
    out = np.zeros(4)
    par.for_slices(4, lambda s: out.__setitem__(s, 1.0), work=1 << 30)
    assert out.tolist() == [1.0] * 4 and len(calls) == 2


def test_an_interrupt_while_the_pool_is_replaced_leaves_a_working_pool(threads, monkeypatch):
    threads(2)
    old = par._pool(1)
    real_shutdown = type(old).shutdown

    def interrupted(self, *args, **kwargs):
        real_shutdown(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(old, "shutdown", interrupted.__get__(old))
    with pytest.raises(KeyboardInterrupt):
        par._pool(par._state["pool_size"] + 1)  # replaces (and stops) the old one
    assert par._state["pool"] is not old
    out = np.zeros(4)
    par.for_slices(4, lambda s: out.__setitem__(s, 2.0), work=1 << 30)
    assert out.tolist() == [2.0] * 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_child_forked_while_another_thread_holds_the_pool_lock_does_not_hang(threads):
    threads(2)
    par.for_slices(4, lambda s: None, work=1 << 30)
    held, release = threading.Event(), threading.Event()

    def hold():
        with par._lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the lock's holder does not exist here
            code = 1
            try:
                out = np.zeros(4)
                par.for_slices(4, lambda s: out.__setitem__(s, 1.0), work=1 << 30)
                code = 0 if out.sum() == 4 else 1
            finally:
                os._exit(code)
    finally:
        release.set()
        t.join()
    for _ in range(300):  # up to 30 s
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        threading.Event().wait(0.1)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the pool's lock")
    assert os.waitstatus_to_exitcode(status) == 0
